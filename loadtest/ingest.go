package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// busWatch follows, on the target's NATS, what the backbone does after a
// submit is answered: the router's publish to an inbox and the signer's
// publish of each create- and submit-submission SET. With receivers
// "none" nothing picks submissions up, so this is how a run sees them
// routed and how long the signing trails the ingest.
type busWatch struct {
	t    *traffic
	subs []*nats.Subscription

	mu     sync.Mutex
	routed map[string]bool // submission ids seen in an inbox
	signed map[string]bool // jtis of this run's submissions' events
	// backlog is the SETs issued but not yet published, sampled each second.
	backlog []int
	// stopped is when the senders stopped, drained when the last
	// submission was routed and the last SET published after that.
	stopped, drained time.Time
}

func watchBus(nc *nats.Conn, t *traffic) (*busWatch, error) {
	w := &busWatch{t: t, routed: map[string]bool{}, signed: map[string]bool{}}
	for subject, fn := range map[string]nats.MsgHandler{"ab.inbox.>": w.onRouted, "ab.events.>": w.onEvent} {
		sub, err := nc.Subscribe(subject, fn)
		if err != nil {
			w.stop()
			return nil, fmt.Errorf("watch %s: %w", subject, err)
		}
		// A slow handler must not make the server drop what it counts.
		if err := sub.SetPendingLimits(-1, -1); err != nil {
			w.stop()
			return nil, err
		}
		w.subs = append(w.subs, sub)
	}
	if err := nc.Flush(); err != nil {
		w.stop()
		return nil, fmt.Errorf("watch the bus: %w", err)
	}
	return w, nil
}

func (w *busWatch) stop() {
	for _, s := range w.subs {
		_ = s.Unsubscribe()
	}
}

// onRouted counts a submission of this run the first time it reaches an
// inbox (the router's publish carries its id as Nats-Msg-Id).
func (w *busWatch) onRouted(m *nats.Msg) {
	sid := m.Header.Get(nats.MsgIdHdr)
	now := time.Now()
	f := w.t.created(sid)
	if f == nil {
		return
	}
	w.mu.Lock()
	first := !w.routed[sid]
	w.routed[sid] = true
	w.mu.Unlock()
	if !first {
		return
	}
	w.t.rec.count("routed", now)
	// The router may publish before the submit's answer arrives, so
	// this counts from the request.
	if sent := w.t.submitSentAt(sid); !sent.IsZero() {
		w.t.rec.observe("submit sent→routed", now.Sub(sent))
	}
}

// onEvent counts a SET of this run's submissions once (the event's
// subject attribute is its submission, Nats-Msg-Id its jti).
func (w *busWatch) onEvent(m *nats.Msg) {
	if w.t.created(m.Header.Get("ce-subject")) == nil {
		return
	}
	if w.t.sc.Receivers.Mode == "nats" {
		if sid, uri := decision(string(m.Data)); sid != "" {
			w.t.decided(sid, uri)
		}
	}
	jti := m.Header.Get(nats.MsgIdHdr)
	w.mu.Lock()
	first := !w.signed[jti]
	w.signed[jti] = true
	w.mu.Unlock()
	if first {
		w.t.rec.count("signed", time.Now())
	}
}

// outstanding is the SETs the backbone issued for this run (one at each
// create, one at each submit) and has not yet published.
func (w *busWatch) outstanding() int {
	issued := w.t.rec.total("created") + w.t.rec.total("submitted")
	return max(0, issued-w.t.rec.total("signed"))
}

// unrouted is the submitted submissions not yet seen in an inbox.
func (w *busWatch) unrouted() int {
	return max(0, w.t.rec.total("submitted")-w.t.rec.total("routed"))
}

// await samples the signing backlog each second and returns once the
// senders stopped and every submission was routed and every SET
// published, or when drain passed after the senders stopped.
func (w *busWatch) await(ctx context.Context, sendersDone <-chan struct{}, drain time.Duration) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var drainBy <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-sendersDone:
			sendersDone = nil
			drainBy = time.After(drain)
			w.mu.Lock()
			w.stopped = time.Now()
			w.mu.Unlock()
		case <-drainBy:
			return fmt.Errorf("%d submissions not routed and %d SETs not published within %s after the senders stopped", w.unrouted(), w.outstanding(), drain)
		case <-tick.C:
		}
		n := w.outstanding()
		w.mu.Lock()
		w.backlog = append(w.backlog, n)
		w.mu.Unlock()
		if sendersDone == nil && w.t.active.Load() == 0 && n == 0 && w.unrouted() == 0 {
			w.mu.Lock()
			w.drained = w.t.rec.last("signed", "routed")
			w.mu.Unlock()
			return nil
		}
	}
}

// figures are the peak signing backlog and the seconds from the senders'
// stop until it was drained (negative when it was not).
func (w *busWatch) figures() (peak int, drainSeconds float64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range w.backlog {
		peak = max(peak, n)
	}
	if w.drained.IsZero() || w.stopped.IsZero() {
		return peak, -1
	}
	return peak, max(0, w.drained.Sub(w.stopped).Seconds())
}
