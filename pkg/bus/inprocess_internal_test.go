package bus

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestBufferedConnHandsOnInOrder: writes return before the other end
// reads, and it reads them all, in order, also what was written just
// before Close.
func TestBufferedConnHandsOnInOrder(t *testing.T) {
	client, server := net.Pipe()
	b := newBufferedConn(client)
	var want bytes.Buffer
	for i := range 100 {
		p := bytes.Repeat([]byte{byte(i)}, 1000+i)
		want.Write(p)
		if n, err := b.Write(p); n != len(p) || err != nil {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	// Nobody has read yet: the writes were buffered.
	got := make(chan []byte)
	go func() {
		all, _ := io.ReadAll(server)
		got <- all
	}()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if all := <-got; !bytes.Equal(all, want.Bytes()) {
		t.Errorf("read %d bytes, want the %d written in order", len(all), want.Len())
	}
	if _, err := b.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after close: %v, want net.ErrClosed", err)
	}
}

// TestBufferedConnFullWaitsForDeadline: with the buffer full and the other
// end not reading, a write waits and fails at its deadline with a timeout.
func TestBufferedConnFullWaitsForDeadline(t *testing.T) {
	client, server := net.Pipe()
	b := newBufferedConn(client)
	defer b.Close()
	defer server.Close()
	// The first write is being handed on (the pipe blocks); the second fills the buffer.
	if _, err := b.Write(make([]byte, pipeBuffer)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Write(make([]byte, pipeBuffer)); err != nil {
		t.Fatal(err)
	}
	if err := b.SetWriteDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	_, err := b.Write([]byte("more"))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("write into a full buffer: %v, want a timeout", err)
	}
}

// TestBufferedConnPeerGone: once the other end is closed, writes fail
// instead of piling up.
func TestBufferedConnPeerGone(t *testing.T) {
	client, server := net.Pipe()
	b := newBufferedConn(client)
	defer b.Close()
	server.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := b.Write([]byte("x")); err != nil {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Error("writes kept succeeding after the other end closed")
}

// TestInProcessCarriesEverything: a client on InProcess gets back every
// message it published, in order, and its Flush waits for the server.
func TestInProcessCarriesEverything(t *testing.T) {
	s, err := RunEmbedded(EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		s.Shutdown()
		s.WaitForShutdown()
	}()
	nc, err := nats.Connect(s.ClientURL(), InProcess(s))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("in.process")
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000 // 32 MiB, within a subscription's default pending limit
	payload := bytes.Repeat([]byte("x"), 16<<10)
	for i := range n {
		if err := nc.Publish("in.process", append([]byte(strconv.Itoa(i)+":"), payload...)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if want := strconv.Itoa(i) + ":"; !bytes.HasPrefix(m.Data, []byte(want)) || len(m.Data) != len(want)+len(payload) {
			t.Fatalf("message %d starts %q, %d bytes", i, m.Data[:8], len(m.Data))
		}
	}
}
