package bus

import (
	"net"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// InProcess connects to s, a NATS server in this process, through a pipe
// rather than loopback TCP. What the client writes is handed to the server
// in the background: a pipe's write waits until the other end has read it
// all, and nats.go writes while holding its connection's lock, so every
// publisher would otherwise wait for the server's read loop.
func InProcess(s *server.Server) nats.Option {
	return nats.InProcessServer(inProcess{s})
}

type inProcess struct{ s *server.Server }

func (p inProcess) InProcessConn() (net.Conn, error) {
	c, err := p.s.InProcessConn()
	if err != nil {
		return nil, err
	}
	return newBufferedConn(c), nil
}

// pipeBuffer bounds what a bufferedConn holds for the server; a writer
// waits beyond it, as it would for a socket's send buffer.
const pipeBuffer = 4 << 20

// closeDrain is how long Close waits for what is buffered to reach the
// server, as a socket's close lets the kernel deliver what was sent.
const closeDrain = time.Second

// bufferedConn is a net.Conn whose writes return once buffered; one
// goroutine hands the buffer on to the underlying connection.
type bufferedConn struct {
	net.Conn

	mu       sync.Mutex
	cond     *sync.Cond
	buf      []byte // written, not yet handed on
	spare    []byte
	err      error // the first failed hand-on, or net.ErrClosed
	deadline time.Time
	done     chan struct{}
}

func newBufferedConn(c net.Conn) *bufferedConn {
	b := &bufferedConn{Conn: c, done: make(chan struct{})}
	b.cond = sync.NewCond(&b.mu)
	go b.run()
	return b
}

func (b *bufferedConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for b.err == nil && len(b.buf) > 0 && len(b.buf)+len(p) > pipeBuffer {
		if !b.deadline.IsZero() {
			wait := time.Until(b.deadline)
			if wait <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			if timer == nil {
				timer = time.AfterFunc(wait, func() {
					b.mu.Lock()
					b.cond.Broadcast()
					b.mu.Unlock()
				})
			}
		}
		b.cond.Wait()
	}
	if b.err != nil {
		return 0, b.err
	}
	b.buf = append(b.buf, p...)
	b.cond.Broadcast()
	return len(p), nil
}

// SetWriteDeadline bounds a write that waits for room; the hand-on itself
// is bounded by closing the connection.
func (b *bufferedConn) SetWriteDeadline(t time.Time) error {
	b.mu.Lock()
	b.deadline = t
	b.mu.Unlock()
	return nil
}

func (b *bufferedConn) SetDeadline(t time.Time) error {
	if err := b.Conn.SetReadDeadline(t); err != nil {
		return err
	}
	return b.SetWriteDeadline(t)
}

func (b *bufferedConn) run() {
	defer close(b.done)
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		for b.err == nil && len(b.buf) == 0 {
			b.cond.Wait()
		}
		if len(b.buf) == 0 {
			return
		}
		out := b.buf
		b.buf, b.spare = b.spare[:0], nil
		b.cond.Broadcast()
		b.mu.Unlock()
		_, err := b.Conn.Write(out)
		b.mu.Lock()
		b.spare = out[:0]
		if err != nil {
			if b.err == nil {
				b.err = err
			}
			b.buf = nil
			b.cond.Broadcast()
			return
		}
		b.cond.Broadcast()
	}
}

// Close hands on what is buffered, for at most closeDrain, and closes.
func (b *bufferedConn) Close() error {
	b.mu.Lock()
	if b.err == nil {
		b.err = net.ErrClosed
	}
	b.cond.Broadcast()
	b.mu.Unlock()
	select {
	case <-b.done:
	case <-time.After(closeDrain):
	}
	return b.Conn.Close()
}
