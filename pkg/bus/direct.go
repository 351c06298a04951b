package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A case's events are read with one batched direct get where that is as
// current as the stream leader's answer: a stream of one replica (its
// only server answers) with direct gets allowed, on nats-server 2.11 or
// later (batches). Elsewhere CaseEvents asks the leader once per event.

// directGets routes the replies of batched direct gets, which come as
// several messages to one inbox, to the request waiting for them.
type directGets struct {
	once   sync.Once
	err    error
	prefix string
	// off is set once a server answered a batch as no 2.11 server does.
	off atomic.Bool

	mu      sync.Mutex
	pending map[string]*directReq
	next    uint64
}

// directReq is one request's replies; done is closed when its reader
// stops taking them.
type directReq struct {
	ch   chan *nats.Msg
	done chan struct{}
}

// directTimeout bounds a direct get whose context has no deadline.
const directTimeout = 5 * time.Second

// start subscribes to the replies' inboxes once.
func (d *directGets) start(nc *nats.Conn) error {
	d.once.Do(func() {
		d.prefix = nc.NewRespInbox() + "."
		d.pending = make(map[string]*directReq)
		_, d.err = nc.Subscribe(d.prefix+"*", func(m *nats.Msg) {
			d.mu.Lock()
			r := d.pending[strings.TrimPrefix(m.Subject, d.prefix)]
			d.mu.Unlock()
			if r != nil {
				// The reader takes every reply until the end of its batch,
				// or gives up.
				select {
				case r.ch <- m:
				case <-r.done:
				}
			}
		})
	})
	return d.err
}

// open registers a request and returns its reply subject and channel.
func (d *directGets) open() (string, <-chan *nats.Msg, func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.next++
	token := strconv.FormatUint(d.next, 36)
	r := &directReq{ch: make(chan *nats.Msg, 4), done: make(chan struct{})}
	d.pending[token] = r
	return d.prefix + token, r.ch, func() {
		d.mu.Lock()
		delete(d.pending, token)
		d.mu.Unlock()
		close(r.done)
	}
}

// usable reports whether a batched direct get of st is answered as
// currently as the leader answers: one replica, direct gets allowed, a
// server with batches (2.11 or later), and none has answered otherwise.
func (d *directGets) usable(nc *nats.Conn, cfg jetstream.StreamConfig) bool {
	if d.off.Load() || !cfg.AllowDirect || cfg.Replicas > 1 {
		return false
	}
	return batches(nc)
}

// batches reports whether the server answers direct gets in batches
// (nats-server 2.11 or later).
func batches(nc *nats.Conn) bool { return atLeast(nc.ConnectedServerVersion(), 2, 11) }

// atLeast reports whether the server version v ("2.11.3") is major.minor
// or later.
func atLeast(v string, major, minor int) bool {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	return err1 == nil && err2 == nil && (ma > major || ma == major && mi >= minor)
}

// directGetRequest is the body of a batched direct get.
type directGetRequest struct {
	Seq     uint64 `json:"seq"`
	NextFor string `json:"next_by_subj"`
	Batch   int    `json:"batch"`
}

// errNoDirect means a direct get was refused or did not end as a batch
// does: the caller asks the leader instead.
var errNoDirect = errors.New("direct get not available")

// directBatch reads up to limit messages of subject from stream, from
// sequence seq on, with batched direct gets. It answers errNoDirect when
// the server does not answer as nats-server 2.11 does.
func (b *Bus) directBatch(ctx context.Context, stream, subject string, seq uint64, limit int) ([]CaseEvent, error) {
	if err := b.direct.start(b.nc); err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, directTimeout)
		defer cancel()
	}
	var out []CaseEvent
	for {
		more, last, err := b.directOnce(ctx, stream, subject, seq, limit-len(out), &out)
		if errors.Is(err, errNoDirect) {
			b.direct.off.Store(true)
		}
		if err != nil || !more || len(out) >= limit {
			return out, err
		}
		seq = last + 1
	}
}

// directOnce sends one batched direct get and appends the messages it
// answers to out; more says that the server stopped early (its byte limit)
// and more messages wait after sequence last.
func (b *Bus) directOnce(ctx context.Context, stream, subject string, seq uint64, batch int, out *[]CaseEvent) (more bool, last uint64, err error) {
	body, err := json.Marshal(directGetRequest{Seq: seq, NextFor: subject, Batch: batch})
	if err != nil {
		return false, 0, err
	}
	reply, ch, closeReq := b.direct.open()
	defer closeReq()
	if err := b.nc.PublishRequest("$JS.API.DIRECT.GET."+stream, reply, body); err != nil {
		return false, 0, err
	}
	got := 0
	for {
		var m *nats.Msg
		select {
		case <-ctx.Done():
			return false, 0, ctx.Err()
		case m = <-ch:
		}
		status := m.Header.Get("Status")
		switch {
		case status == "404" && got == 0:
			return false, 0, nil // none
		case status == "204":
			// End of the batch: what is still pending was left out for the
			// server's byte limit.
			np, err := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
			if err != nil {
				return false, 0, fmt.Errorf("%w: end of batch without a pending count", errNoDirect)
			}
			last, _ := strconv.ParseUint(m.Header.Get("Nats-Last-Sequence"), 10, 64)
			return np > 0 && last > 0, last, nil
		case status != "":
			return false, 0, fmt.Errorf("%w: %s %s", errNoDirect, status, m.Header.Get("Description"))
		}
		s, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
		if err != nil || m.Header.Get("Nats-Num-Pending") == "" {
			// A server without batches answers one message as a plain
			// direct get.
			return false, 0, fmt.Errorf("%w: reply is not part of a batch", errNoDirect)
		}
		*out = append(*out, CaseEvent{Seq: s, Token: strings.TrimSpace(string(m.Data))})
		got++
	}
}
