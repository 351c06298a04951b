package gateway

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// DefaultOutboxRetry is how long an event waits in the outbox before a
// sweep signs and publishes it again.
const DefaultOutboxRetry = 30 * time.Second

const (
	// outboxQueue bounds the events waiting in memory for a worker; more
	// stay in the outbox until a sweep finds them.
	outboxQueue = 4096
	// eventTimeout bounds signing, publishing and recording one event.
	eventTimeout = 30 * time.Second
	// eventContentType is the datacontenttype of SETs on EVENTS: the
	// compact token, as receivers post it.
	eventContentType = "application/jose"
)

// outboxEntry is an event accepted but perhaps not yet published: its
// claims, complete with jti and iat, and the trace it belongs to.
type outboxEntry struct {
	Claims      set.Claims `json:"claims"`
	Traceparent string     `json:"traceparent,omitempty"`
}

// eventSigner signs Amtsbote's own security event tokens (create-,
// submit- and notify-submission) and publishes them to EVENTS, off the
// request path. A request writes the event's claims to an outbox in the
// key-value bucket, one small write JetStream acknowledges durably, and
// hands it to a pool of workers, one per core by default. A worker signs
// (RSA-4096 PS512 costs milliseconds of CPU), publishes with Nats-Msg-Id
// = jti, records the event in the store, so the event log shows it at
// once, and removes the entry. What a crash, a failure or a full queue
// leaves in the outbox a sweep signs again after retry.
type eventSigner struct {
	bus     *bus.Bus
	store   store.Store
	key     *rsa.PrivateKey
	kid     string
	issuer  string
	log     *slog.Logger
	now     func() time.Time
	workers int
	retry   time.Duration

	jobs chan outboxEntry
	mu   sync.Mutex
	// queued holds the jtis in jobs or in a worker's hands, so that a
	// sweep does not queue them twice.
	queued map[string]bool
}

// newEvent builds the claims of Amtsbote's event uri about a submission,
// with the jti derived from both (sealed.EventJTI), so that a retried
// request, a second gateway or a sweep that signs the same event again
// produce the same jti.
func (s *eventSigner) newEvent(uri string, sub store.Submission, payload any) (set.Claims, error) {
	c, err := set.New(uri, s.issuer, sub.ID, sub.CaseID, payload, s.now())
	if err != nil {
		return set.Claims{}, err
	}
	c.JTI = sealed.EventJTI(sub.ID, uri)
	return c, nil
}

// enqueue writes an event to the outbox and offers it to the workers. Once
// it returns nil the event will be published, by this process or, after a
// crash, by the next sweep of any gateway.
func (s *eventSigner) enqueue(ctx context.Context, c set.Claims, traceparent string) error {
	e := outboxEntry{Claims: c, Traceparent: traceparent}
	raw, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("outbox %s: %w", c.JTI, err)
	}
	if _, err := s.bus.PutState(ctx, sealed.OutboxKey(c.JTI), raw); err != nil {
		return fmt.Errorf("outbox %s: %w", c.JTI, err)
	}
	s.offer(e)
	return nil
}

// offer queues e for a worker unless it is queued already or the queue is
// full; then it waits in the outbox for a sweep.
func (s *eventSigner) offer(e outboxEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queued[e.Claims.JTI] {
		return
	}
	select {
	case s.jobs <- e:
		s.queued[e.Claims.JTI] = true
	default:
	}
}

func (s *eventSigner) done(jti string) {
	s.mu.Lock()
	delete(s.queued, jti)
	s.mu.Unlock()
}

// run signs and publishes with s.workers workers and sweeps the outbox
// every s.retry until ctx is cancelled. Then each worker finishes the
// event in its hands; queued ones stay in the outbox.
func (s *eventSigner) run(ctx context.Context) {
	var wg sync.WaitGroup
	for range s.workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case e := <-s.jobs:
					s.process(ctx, e)
				}
			}
		})
	}
	tick := time.NewTicker(s.retry)
	defer tick.Stop()
	for {
		s.sweep(ctx)
		select {
		case <-ctx.Done():
			wg.Wait()
			for {
				select {
				case e := <-s.jobs:
					s.done(e.Claims.JTI)
				default:
					return
				}
			}
		case <-tick.C:
		}
	}
}

// process signs, publishes and records one event and clears its outbox
// entry. A failure is logged and leaves the entry for the next sweep.
func (s *eventSigner) process(ctx context.Context, e outboxEntry) {
	defer s.done(e.Claims.JTI)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), eventTimeout)
	defer cancel()
	c := e.Claims
	token, err := set.Sign(c, s.key, s.kid)
	if err == nil {
		err = s.send(ctx, c, token, e.Traceparent)
	}
	if err == nil {
		err = s.record(ctx, c, token)
	}
	if err == nil {
		err = s.bus.DeleteState(ctx, sealed.OutboxKey(c.JTI))
	}
	if err != nil {
		sid, _ := c.SubmissionID()
		s.log.WarnContext(ctx, "event left in the outbox for a retry", "jti", c.JTI, "submission_id", sid, "err", err)
	}
}

// send publishes a SET to its case's EVENTS subject with Nats-Msg-Id =
// jti, so a repeat within the stream's window is dropped.
func (s *eventSigner) send(ctx context.Context, c set.Claims, token, traceparent string) error {
	sid, err := c.SubmissionID()
	if err != nil {
		return fmt.Errorf("publish event %s: %w", c.JTI, err)
	}
	caseID, err := c.CaseID()
	if err != nil {
		return fmt.Errorf("publish event %s: %w", c.JTI, err)
	}
	subject, err := bus.EventsSubject(caseID)
	if err != nil {
		return fmt.Errorf("publish event %s: %w", c.JTI, err)
	}
	ev := event.New()
	ev.SetID(c.JTI)
	ev.SetSource(s.issuer)
	ev.SetType(sealed.TypeEvent)
	ev.SetSubject(sid)
	ev.SetTime(c.IssuedAt)
	if traceparent != "" {
		ev.SetExtension(bus.ExtensionTraceparent, traceparent)
	}
	if err := ev.SetData(eventContentType, []byte(token)); err != nil {
		return fmt.Errorf("publish event %s: %w", c.JTI, err)
	}
	if _, err := s.bus.Publish(ctx, subject, ev, c.JTI); err != nil {
		return fmt.Errorf("publish event %s: %w", c.JTI, err)
	}
	return nil
}

// record writes a SET to the store's event log, which ignores a jti it
// has, so the log shows the event before the ledger projects it.
func (s *eventSigner) record(ctx context.Context, c set.Claims, token string) error {
	sid, err := c.SubmissionID()
	if err != nil {
		return fmt.Errorf("record event %s: %w", c.JTI, err)
	}
	caseID, err := c.CaseID()
	if err != nil {
		return fmt.Errorf("record event %s: %w", c.JTI, err)
	}
	uri, _, err := c.Event()
	if err != nil {
		return fmt.Errorf("record event %s: %w", c.JTI, err)
	}
	err = s.store.AppendEvent(ctx, store.Event{
		JTI: c.JTI, CaseID: caseID, SubmissionID: sid, Type: uri,
		Issuer: c.Issuer, IssuedAt: c.IssuedAt, Token: token,
	})
	if err != nil {
		return fmt.Errorf("record event %s: %w", c.JTI, err)
	}
	return nil
}

// sweep queues the outbox entries older than s.retry: events whose
// request crashed, whose publish failed or that found the queue full.
func (s *eventSigner) sweep(ctx context.Context) {
	entries, err := s.stale(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.WarnContext(ctx, "outbox sweep", "err", err)
		}
		return
	}
	for _, e := range entries {
		s.offer(e)
	}
}

// stale reads the outbox entries last written before now - s.retry.
func (s *eventSigner) stale(ctx context.Context) ([]outboxEntry, error) {
	kv, err := s.bus.JetStream().KeyValue(ctx, bus.BucketState)
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	w, err := kv.Watch(ctx, sealed.OutboxPrefix+">", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	defer func() { _ = w.Stop() }()
	cutoff := time.Now().Add(-s.retry)
	var out []outboxEntry
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("outbox: %w", ctx.Err())
		case kve, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("outbox: watcher closed")
			}
			if kve == nil {
				return out, nil
			}
			if !kve.Created().Before(cutoff) || len(out) >= outboxQueue {
				continue
			}
			var e outboxEntry
			if err := json.Unmarshal(kve.Value(), &e); err != nil || kve.Key() != sealed.OutboxKey(e.Claims.JTI) {
				s.log.WarnContext(ctx, "outbox: unreadable entry dropped", "key", kve.Key(), "err", err)
				_ = s.bus.DeleteState(ctx, kve.Key())
				continue
			}
			out = append(out, e)
		}
	}
}
