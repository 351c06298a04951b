package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/client"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/services/subscriber"
	"github.com/amtsbote/amtsbote/services/subscriber/config"
	"github.com/amtsbote/amtsbote/services/subscriber/sink"
)

// receiveNATS runs the project's own NATS-native back office,
// services/subscriber, for every destination of the run: one durable
// consumer on the target's INBOX, each submission fetched, decrypted and
// checked through the Submission API, delivered into a sink that reads it
// to the end and keeps nothing, and accepted. The run learns each decision
// from EVENTS (busWatch), and returns once every started submission was
// decided, or when the drain passed after sendersDone. The durable is
// removed at the end.
func (t *traffic) receiveNATS(ctx context.Context, sendersDone <-chan struct{}, natsURL string, api *client.Client, nc *nats.Conn) error {
	conf := &config.Config{
		Mode:        config.ModeNATS,
		Concurrency: t.sc.Receivers.Workers,
		NATS: config.NATS{
			URL:     natsURL,
			Durable: "loadtest-" + uuid.NewString()[:8],
			Filters: []string{bus.PrefixInbox + ".>"},
		},
	}
	for _, id := range sortedKeys(t.dests) {
		d := t.dests[id]
		if d.receive != nil {
			return errors.New("receivers nats: the run's destinations have back offices of their own; one subscriber serves one client's destinations (use sdk or ack)")
		}
		if len(d.enc) == 0 {
			return fmt.Errorf("receivers nats: no decryption key of destination %s", d.id)
		}
		conf.Destinations = append(conf.Destinations, config.Destination{ID: d.id, EncryptionKeys: d.enc, SigningKey: d.signer})
	}
	b, err := bus.Connect(ctx, natsURL, nats.Name("amtsbote-loadtest subscriber"), nats.CustomInboxPrefix(bus.SubscriberInboxPrefix(conf.NATS.Durable)))
	if err != nil {
		return fmt.Errorf("receivers nats: %w", err)
	}
	defer b.Close()
	sub, err := subscriber.New(subscriber.Config{Conf: conf, Sink: discardSink{}, API: api, Bus: b})
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- sub.Run(runCtx) }()
	err = t.awaitDecisions(ctx, sendersDone, ran)
	stop()
	if rerr := <-ran; rerr != nil && err == nil {
		err = rerr
	}
	if js, jerr := jetstream.New(nc); jerr == nil {
		del, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		_ = js.DeleteConsumer(del, bus.StreamInbox, conf.NATS.Durable)
		cancel()
	}
	return err
}

// awaitDecisions returns once the senders stopped and every submission
// they started was decided, when the drain passed after that, or when the
// subscriber stopped on its own.
func (t *traffic) awaitDecisions(ctx context.Context, sendersDone <-chan struct{}, ran <-chan error) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var drainBy <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-ran:
			return fmt.Errorf("the subscriber stopped: %w", err)
		case <-sendersDone:
			sendersDone = nil
			drainBy = time.After(time.Duration(t.sc.Drain))
		case <-drainBy:
			return fmt.Errorf("%d submitted submissions were not decided within %s after the senders stopped", t.pendingCount(), time.Duration(t.sc.Drain))
		case <-tick.C:
			if sendersDone == nil && t.active.Load() == 0 && t.pendingCount() == 0 {
				return nil
			}
		}
	}
}

// decided finishes submission sid on its back office's decision, the
// event uri seen in EVENTS, once.
func (t *traffic) decided(sid, uri string) {
	now := time.Now()
	t.mu.Lock()
	f := t.byID[sid]
	if f == nil || f.finished {
		t.mu.Unlock()
		return
	}
	f.finished = true
	delete(t.pending[f.destination], sid)
	t.mu.Unlock()
	defer close(f.decided)
	if uri != set.AcceptSubmission {
		t.rec.fail("decide", fmt.Errorf("submission %s: %s, want accept-submission", sid, set.Name(uri)))
		return
	}
	t.rec.observe("lifecycle", now.Sub(f.scheduled))
	if !f.submitted.IsZero() {
		t.rec.observe("submitted→accepted", now.Sub(f.submitted))
	}
	t.rec.count("accepted", now)
	t.done.Add(1)
}

// decision is the back office's decision a SET of EVENTS carries, "" for
// any other event.
func decision(token string) (sid, uri string) {
	_, c, err := set.Parse(token)
	if err != nil {
		return "", ""
	}
	uri, _, err = c.Event()
	if err != nil || (uri != set.AcceptSubmission && uri != set.RejectSubmission) {
		return "", ""
	}
	sid, err = c.SubmissionID()
	if err != nil {
		return "", ""
	}
	return sid, uri
}

// discardSink is the NATS-native back offices' Fachverfahren: it reads
// every attachment of a delivery to the end and keeps nothing, as the
// SDK's receivers do.
type discardSink struct{}

func (discardSink) Deliver(ctx context.Context, d sink.Delivery) error {
	for _, a := range d.Attachments {
		r, err := a.Open()
		if err != nil {
			return fmt.Errorf("%w: attachment %s: %w", sink.ErrTransient, a.ID, err)
		}
		_, err = io.Copy(io.Discard, r)
		r.Close()
		if err != nil {
			return fmt.Errorf("%w: attachment %s: %w", sink.ErrTransient, a.ID, err)
		}
	}
	return nil
}

func (discardSink) Kind() string { return "discard" }

func (discardSink) Close() error { return nil }
