package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
)

// eventually polls f until it returns nil or timeout passes.
func eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// consumer runs Consume in the background; stop cancels it and returns
// its result.
type consumer struct {
	cancel context.CancelFunc
	done   chan error
}

func startConsume(t testing.TB, b *bus.Bus, cfg bus.ConsumerConfig, h bus.Handler) *consumer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &consumer{cancel: cancel, done: make(chan error, 1)}
	go func() { c.done <- b.Consume(ctx, cfg, h) }()
	t.Cleanup(func() { c.stop(t) })
	return c
}

func (c *consumer) stop(t testing.TB) error {
	t.Helper()
	c.cancel()
	select {
	case err, ok := <-c.done:
		if ok {
			close(c.done)
		}
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Consume did not return after cancel")
		return nil
	}
}

// settled waits until the consumer holds no pending and no unacknowledged
// messages: nothing is left to deliver or redeliver.
func settled(t testing.TB, b *bus.Bus, stream, durable string) {
	t.Helper()
	waitConsumer(t, b, stream, durable, func(info *jetstream.ConsumerInfo) error {
		if info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Errorf("consumer %s: %d pending, %d awaiting ack", durable, info.NumPending, info.NumAckPending)
		}
		return nil
	})
}

// waitConsumer waits until the durable's info passes ok.
func waitConsumer(t testing.TB, b *bus.Bus, stream, durable string, ok func(*jetstream.ConsumerInfo) error) {
	t.Helper()
	ctx := testContext(t)
	eventually(t, 10*time.Second, func() error {
		c, err := b.JetStream().Consumer(ctx, stream, durable)
		if err != nil {
			return err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		return ok(info)
	})
}

func inboxSubject(t testing.TB) string {
	t.Helper()
	s, err := bus.InboxSubject(freiARS, destID)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ingressSubject(t testing.TB) string {
	t.Helper()
	s, err := bus.IngressSubject(freiARS, leika)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func publish(t testing.TB, b *bus.Bus, subject, id string) *jetstream.PubAck {
	t.Helper()
	ack, err := b.Publish(testContext(t), subject, newEvent(t, id), id)
	if err != nil {
		t.Fatalf("publish %s: %v", id, err)
	}
	return ack
}

func streamMsgs(t testing.TB, b *bus.Bus, stream string) uint64 {
	t.Helper()
	ctx := testContext(t)
	s, err := b.JetStream().Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestEnsureIdempotent(t *testing.T) {
	node := bustest.Server(t)
	b := bustest.Connect(t, node.URL)
	ctx := testContext(t)

	for i := range 2 {
		if err := b.Ensure(ctx, bus.TopologyConfig{}); err != nil {
			t.Fatalf("ensure #%d: %v", i+1, err)
		}
	}
	want := map[string]struct {
		subject   string
		retention jetstream.RetentionPolicy
		maxAge    time.Duration
	}{
		bus.StreamIngress:   {"ab.ingress.>", jetstream.WorkQueuePolicy, bus.DefaultSubmissionMaxAge},
		bus.StreamInbox:     {"ab.inbox.>", jetstream.LimitsPolicy, bus.DefaultSubmissionMaxAge},
		bus.StreamEvents:    {"ab.events.>", jetstream.LimitsPolicy, 730 * 24 * time.Hour},
		bus.StreamDead:      {"ab.dead.>", jetstream.LimitsPolicy, bus.DefaultSubmissionMaxAge},
		bus.StreamCallbacks: {"ab.callbacks.>", jetstream.WorkQueuePolicy, bus.DefaultSubmissionMaxAge},
	}
	for name, w := range want {
		t.Run(name, func(t *testing.T) {
			s, err := b.JetStream().Stream(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			cfg := s.CachedInfo().Config
			if len(cfg.Subjects) != 1 || cfg.Subjects[0] != w.subject {
				t.Errorf("subjects %v, want [%s]", cfg.Subjects, w.subject)
			}
			if cfg.Retention != w.retention {
				t.Errorf("retention %v, want %v", cfg.Retention, w.retention)
			}
			if cfg.MaxAge != w.maxAge {
				t.Errorf("max age %s, want %s", cfg.MaxAge, w.maxAge)
			}
			if cfg.Replicas != 1 || cfg.Duplicates != 2*time.Minute || cfg.Storage != jetstream.FileStorage {
				t.Errorf("replicas %d, duplicates %s, storage %v", cfg.Replicas, cfg.Duplicates, cfg.Storage)
			}
		})
	}
	if _, err := b.JetStream().ObjectStore(ctx, bus.BucketPayloads); err != nil {
		t.Errorf("object store: %v", err)
	}
	if _, err := b.JetStream().KeyValue(ctx, bus.BucketState); err != nil {
		t.Errorf("key-value bucket: %v", err)
	}

	// A changed setting updates the existing stream, keeping its messages.
	publish(t, b, "ab.events."+caseID, "e1")
	if err := b.Ensure(ctx, bus.TopologyConfig{EventsMaxAge: 365 * 24 * time.Hour, Duplicates: time.Minute}); err != nil {
		t.Fatalf("ensure with new settings: %v", err)
	}
	s, err := b.JetStream().Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := s.CachedInfo().Config; cfg.MaxAge != 365*24*time.Hour || cfg.Duplicates != time.Minute {
		t.Errorf("after update: max age %s, duplicates %s", cfg.MaxAge, cfg.Duplicates)
	}
	if n := streamMsgs(t, b, bus.StreamEvents); n != 1 {
		t.Errorf("EVENTS holds %d messages after update, want 1", n)
	}

	for _, bad := range []bus.TopologyConfig{{Replicas: 7}, {Duplicates: -time.Second}, {Duplicates: 48 * time.Hour, SubmissionMaxAge: time.Hour}} {
		if err := b.Ensure(ctx, bad); err == nil {
			t.Errorf("Ensure(%+v) succeeded, want an error", bad)
		}
	}
}

func TestPublishConsumeRoundTrip(t *testing.T) {
	b, _ := bustest.Bus(t)
	subject := inboxSubject(t)
	sent := newEvent(t, "e1")
	ack, err := b.Publish(testContext(t), subject, sent, "e1")
	if err != nil {
		t.Fatal(err)
	}
	if ack.Stream != bus.StreamInbox || ack.Duplicate {
		t.Fatalf("ack %+v", ack)
	}

	got := make(chan *bus.Message, 1)
	c := startConsume(t, b, bus.ConsumerConfig{Stream: bus.StreamInbox, Durable: "roundtrip", FilterSubjects: []string{mustFilter(t, "08311")}},
		func(ctx context.Context, m *bus.Message) error {
			got <- m
			return nil
		})
	var m *bus.Message
	select {
	case m = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no message")
	}
	if m.Subject != subject || m.Attempt != 1 || m.Stream != bus.StreamInbox || m.Sequence != ack.Sequence {
		t.Errorf("message %s attempt %d in %s#%d", m.Subject, m.Attempt, m.Stream, m.Sequence)
	}
	assertSameEvent(t, m.Event, sent)
	if string(m.Data) != string(sent.Data()) {
		t.Errorf("data %q", m.Data)
	}
	if m.Header.Get(jetstream.MsgIDHeader) != "e1" {
		t.Errorf("Nats-Msg-Id %q, want e1", m.Header.Get(jetstream.MsgIDHeader))
	}
	settled(t, b, bus.StreamInbox, "roundtrip")
	if err := c.stop(t); err != nil {
		t.Errorf("Consume returned %v after cancel, want nil", err)
	}
}

func mustFilter(t testing.TB, prefix string) string {
	t.Helper()
	f, err := bus.InboxFilter(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestPublishDeduplicates(t *testing.T) {
	b, _ := bustest.Bus(t)
	subject := ingressSubject(t)
	first := publish(t, b, subject, "s1")
	second := publish(t, b, subject, "s1")
	if first.Duplicate || !second.Duplicate {
		t.Errorf("duplicate flags %v then %v, want false then true", first.Duplicate, second.Duplicate)
	}
	if second.Sequence != first.Sequence {
		t.Errorf("duplicate got sequence %d, want %d", second.Sequence, first.Sequence)
	}
	if n := streamMsgs(t, b, bus.StreamIngress); n != 1 {
		t.Errorf("INGRESS holds %d messages, want 1", n)
	}

	ctx := testContext(t)
	if _, err := b.Publish(ctx, subject, newEvent(t, "x"), ""); !errors.Is(err, bus.ErrMissingMsgID) {
		t.Errorf("empty message id: %v, want ErrMissingMsgID", err)
	}
	if _, err := b.Publish(ctx, "ab.inbox.>", newEvent(t, "x"), "x"); !errors.Is(err, bus.ErrInvalidSubject) {
		t.Errorf("wildcard subject: %v, want ErrInvalidSubject", err)
	}
	if _, err := b.Publish(ctx, subject, newEvent(t, "x"), "x\r\ny"); err == nil {
		t.Error("message id with CRLF accepted")
	}
	bad := newEvent(t, "x")
	bad.SetType("")
	if _, err := b.Publish(ctx, subject, bad, "x"); !errors.Is(err, bus.ErrInvalidEvent) {
		t.Errorf("event without type: %v, want ErrInvalidEvent", err)
	}
}

// deadLetter returns the last dead letter written for reason.
func deadLetter(t testing.TB, b *bus.Bus, reason string) *jetstream.RawStreamMsg {
	t.Helper()
	ctx := testContext(t)
	s, err := b.JetStream().Stream(ctx, bus.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	var msg *jetstream.RawStreamMsg
	eventually(t, 10*time.Second, func() error {
		msg, err = s.GetLastMsgForSubject(ctx, "ab.dead."+reason)
		return err
	})
	return msg
}

func TestPermanentErrorDeadLetters(t *testing.T) {
	b, _ := bustest.Bus(t)
	ack := publish(t, b, ingressSubject(t), "s1")

	var calls atomic.Int32
	startConsume(t, b, bus.ConsumerConfig{Stream: bus.StreamIngress, Durable: "router", BackoffBase: time.Millisecond, BackoffMax: time.Millisecond},
		func(ctx context.Context, m *bus.Message) error {
			calls.Add(1)
			return bus.PermanentReason("unroutable", fmt.Errorf("no destination for %s", m.Subject))
		})

	dead := deadLetter(t, b, "unroutable")
	settled(t, b, bus.StreamIngress, "router")
	if n := calls.Load(); n != 1 {
		t.Errorf("handler ran %d times, want 1", n)
	}
	if n := streamMsgs(t, b, bus.StreamIngress); n != 0 {
		t.Errorf("INGRESS still holds %d messages", n)
	}
	wantHeaders := map[string]string{
		bus.HeaderDeadReason:       "unroutable",
		bus.HeaderDeadError:        "no destination for " + ingressSubject(t),
		bus.HeaderDeadAttempts:     "1",
		bus.HeaderDeadConsumer:     "router",
		bus.HeaderOriginalSubject:  ingressSubject(t),
		bus.HeaderOriginalStream:   bus.StreamIngress,
		bus.HeaderOriginalSequence: strconv.FormatUint(ack.Sequence, 10),
		bus.HeaderOriginalMsgID:    "s1",
		"ce-id":                    "s1",
		"ce-traceparent":           traceparent,
	}
	for k, v := range wantHeaders {
		if got := dead.Header.Get(k); got != v {
			t.Errorf("dead letter header %s = %q, want %q", k, got, v)
		}
	}
	if string(dead.Data) != string(newEvent(t, "s1").Data()) {
		t.Errorf("dead letter data %q", dead.Data)
	}
	// The dead letter is itself a valid CloudEvent, ready for re-drive.
	if _, err := bus.EventFromHeaders(dead.Header, dead.Data); err != nil {
		t.Errorf("dead letter event: %v", err)
	}
}

func TestPermanentErrorDetection(t *testing.T) {
	if bus.Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
	cause := errors.New("bad input")
	err := fmt.Errorf("handle: %w", bus.Permanent(cause))
	var perm *bus.PermanentError
	if !errors.As(err, &perm) || perm.Reason != bus.ReasonPermanent || !errors.Is(err, cause) {
		t.Errorf("errors.As(%v) = %v, %+v", err, errors.As(err, &perm), perm)
	}
}

func TestTransientErrorRedelivers(t *testing.T) {
	b, _ := bustest.Bus(t)
	const trace = "4bf92f3577b34da6a3ce929d0e0e4736"
	ctx := bus.ContextWithTraceparent(testContext(t), "00-"+trace+"-00f067aa0ba902b7-01")
	if _, err := b.Publish(ctx, inboxSubject(t), newEvent(t, "e1"), "e1"); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var attempts []int
	done := make(chan struct{})
	var logs flowtest.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	startConsume(t, b, bus.ConsumerConfig{Stream: bus.StreamInbox, Durable: "retry", BackoffBase: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond, Logger: log},
		func(ctx context.Context, m *bus.Message) error {
			mu.Lock()
			defer mu.Unlock()
			attempts = append(attempts, m.Attempt)
			switch m.Attempt {
			case 1:
				return errors.New("fachverfahren unavailable")
			case 2:
				// Reported by the handler itself: a debug line only.
				return bus.Quiet(errors.New("fachverfahren still unavailable"))
			}
			close(done)
			return nil
		})
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("message not redelivered to success")
	}
	settled(t, b, bus.StreamInbox, "retry")
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(attempts) != "[1 2 3]" {
		t.Errorf("attempts %v, want [1 2 3]", attempts)
	}
	if n := streamMsgs(t, b, bus.StreamDead); n != 0 {
		t.Errorf("DEAD holds %d messages, want 0", n)
	}
	// The failures are logged under the trace of the request that published.
	levels := map[string]int{}
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "handler failed") {
			var l struct{ Level string }
			_ = json.Unmarshal([]byte(line), &l)
			levels[l.Level]++
			if !strings.Contains(line, `"trace_id":"`+trace+`"`) {
				t.Errorf("a failure is logged without the message's trace id: %s", line)
			}
		}
	}
	if levels["WARN"] != 1 || levels["DEBUG"] != 1 || len(levels) != 2 {
		t.Errorf("failures logged at %v, want one WARN and one DEBUG (the quiet one):\n%s", levels, logs.String())
	}
}

// TestSlowHandlerAcked: a handler that takes longer than settling may
// (a subscriber waiting for its sink) still has its message acked, not
// redelivered: settling's time counts from the handler's return.
func TestSlowHandlerAcked(t *testing.T) {
	t.Cleanup(bus.SetSettleTimeout(time.Second))
	b, _ := bustest.Bus(t)
	publish(t, b, inboxSubject(t), "slow")
	var logs flowtest.Buffer
	var calls atomic.Int32
	startConsume(t, b, bus.ConsumerConfig{Stream: bus.StreamInbox, Durable: "slow", AckWait: time.Second,
		HandleTimeout: 10 * time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))},
		func(ctx context.Context, m *bus.Message) error {
			calls.Add(1)
			time.Sleep(2 * time.Second)
			return nil
		})
	settled(t, b, bus.StreamInbox, "slow")
	time.Sleep(1500 * time.Millisecond) // an ack wait and more: a lost ack would redeliver
	if n := calls.Load(); n != 1 || strings.Contains(logs.String(), "ack lost") {
		t.Errorf("handled %d times, want once; the log:\n%s", n, logs.String())
	}
}

func TestPanicRecoveredAndRedelivered(t *testing.T) {
	b, _ := bustest.Bus(t)
	publish(t, b, inboxSubject(t), "e1")

	done := make(chan int, 1)
	startConsume(t, b, bus.ConsumerConfig{Stream: bus.StreamInbox, Durable: "panic", BackoffBase: 10 * time.Millisecond, BackoffMax: 10 * time.Millisecond},
		func(ctx context.Context, m *bus.Message) error {
			if m.Attempt == 1 {
				panic("nil map in sink")
			}
			done <- m.Attempt
			return nil
		})
	select {
	case a := <-done:
		if a != 2 {
			t.Errorf("succeeded on attempt %d, want 2", a)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("message not redelivered after panic")
	}
	settled(t, b, bus.StreamInbox, "panic")
}

func TestMaxDeliverDeadLetters(t *testing.T) {
	b, _ := bustest.Bus(t)
	publish(t, b, inboxSubject(t), "e1")
	var calls atomic.Int32
	startConsume(t, b, bus.ConsumerConfig{Stream: bus.StreamInbox, Durable: "give-up", MaxDeliver: 2, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond},
		func(ctx context.Context, m *bus.Message) error {
			calls.Add(1)
			return errors.New("still down")
		})
	dead := deadLetter(t, b, bus.ReasonMaxDeliver)
	settled(t, b, bus.StreamInbox, "give-up")
	if got := dead.Header.Get(bus.HeaderDeadAttempts); got != "2" {
		t.Errorf("attempts header %q, want 2", got)
	}
	if got := dead.Header.Get(bus.HeaderDeadError); got != "still down" {
		t.Errorf("error header %q", got)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("handler ran %d times, want 2", n)
	}
}

func TestMalformedEventDeadLettered(t *testing.T) {
	b, _ := bustest.Bus(t)
	msg := nats.NewMsg(inboxSubject(t))
	msg.Header.Set("ce-specversion", "1.0")
	msg.Header.Set("ce-id", "m1")
	msg.Header.Set("ce-source", "/somewhere")
	msg.Data = []byte("payload")
	if _, err := b.JetStream().PublishMsg(testContext(t), msg, jetstream.WithMsgID("m1")); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	startConsume(t, b, bus.ConsumerConfig{Stream: bus.StreamInbox, Durable: "strict"}, func(ctx context.Context, m *bus.Message) error {
		calls.Add(1)
		return nil
	})
	dead := deadLetter(t, b, bus.ReasonMalformedEvent)
	settled(t, b, bus.StreamInbox, "strict")
	if calls.Load() != 0 {
		t.Error("handler saw a malformed event")
	}
	if got := dead.Header.Get(bus.HeaderDeadError); !strings.Contains(got, "header ce-type: missing") {
		t.Errorf("error header %q, want it to name ce-type", got)
	}
}

func TestSharedDurable(t *testing.T) {
	node := bustest.Server(t)
	setup := bustest.Connect(t, node.URL)
	if err := setup.Ensure(testContext(t), bus.TopologyConfig{}); err != nil {
		t.Fatal(err)
	}
	const total = 100
	subject := ingressSubject(t)
	for i := range total {
		publish(t, setup, subject, fmt.Sprintf("s%03d", i))
	}

	var (
		mu     sync.Mutex
		seen   = map[string]int{}
		byProc = map[string]int{}
		both   = make(chan struct{})
	)
	handler := func(proc string) bus.Handler {
		return func(ctx context.Context, m *bus.Message) error {
			mu.Lock()
			seen[m.Event.ID()]++
			byProc[proc]++
			if len(byProc) == 2 && byProc["a"] > 0 && byProc["b"] > 0 {
				select {
				case <-both:
				default:
					close(both)
				}
			}
			mu.Unlock()
			// Hold each delivery until both processes have work, so one
			// cannot take everything before the other starts.
			select {
			case <-both:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	// Two connections stand for two processes.
	cfg := bus.ConsumerConfig{Stream: bus.StreamIngress, Durable: "router", Concurrency: 4}
	startConsume(t, bustest.Connect(t, node.URL), cfg, handler("a"))
	startConsume(t, bustest.Connect(t, node.URL), cfg, handler("b"))

	eventually(t, 20*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) != total {
			return fmt.Errorf("%d of %d messages handled", len(seen), total)
		}
		return nil
	})
	settled(t, setup, bus.StreamIngress, "router")
	mu.Lock()
	defer mu.Unlock()
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s handled %d times", id, n)
		}
	}
	if byProc["a"]+byProc["b"] != total || byProc["a"] == 0 || byProc["b"] == 0 {
		t.Errorf("split %v, want both sharing %d", byProc, total)
	}
}

func TestConsumeWaitsForInFlightHandlers(t *testing.T) {
	b, _ := bustest.Bus(t)
	publish(t, b, inboxSubject(t), "e1")
	started, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	c := startConsume(t, b, bus.ConsumerConfig{Stream: bus.StreamInbox, Durable: "drain"}, func(ctx context.Context, m *bus.Message) error {
		close(started)
		<-release
		if ctx.Err() != nil {
			return ctx.Err()
		}
		finished.Store(true)
		return nil
	})
	<-started
	c.cancel()
	close(release)
	if err := c.stop(t); err != nil {
		t.Fatalf("Consume: %v", err)
	}
	if !finished.Load() {
		t.Fatal("Consume returned before its handler finished")
	}
	settled(t, b, bus.StreamInbox, "drain")
}

// TestConsumeStoppingReachesHandlers checks that a handler learns that
// its consumer stops (bus.Stopping) while its own context goes on for the
// grace, so that one waiting for something gives its message back.
func TestConsumeStoppingReachesHandlers(t *testing.T) {
	b, _ := bustest.Bus(t)
	publish(t, b, inboxSubject(t), "e1")
	started := make(chan struct{})
	var sawStop, ctxLive atomic.Bool
	c := startConsume(t, b, bus.ConsumerConfig{Stream: bus.StreamInbox, Durable: "waiting"}, func(ctx context.Context, m *bus.Message) error {
		close(started)
		select {
		case <-bus.Stopping(ctx):
			sawStop.Store(true)
			ctxLive.Store(ctx.Err() == nil)
		case <-time.After(time.Minute):
		}
		return bus.Later(errors.New("not there yet"))
	})
	<-started
	c.cancel()
	if err := c.stop(t); err != nil {
		t.Fatalf("Consume: %v", err)
	}
	if !sawStop.Load() || !ctxLive.Load() {
		t.Fatalf("handler saw the stop %v with its context live %v; want both", sawStop.Load(), ctxLive.Load())
	}
	if bus.Stopping(context.Background()) != nil {
		t.Error("Stopping of no consumer's context is not nil")
	}
}

func TestConsumeConfigErrors(t *testing.T) {
	b, _ := bustest.Bus(t)
	h := func(context.Context, *bus.Message) error { return nil }
	for _, cfg := range []bus.ConsumerConfig{
		{Durable: "x"},
		{Stream: bus.StreamInbox},
		{Stream: bus.StreamInbox, Durable: "a.b"},
		{Stream: bus.StreamInbox, Durable: "x", Concurrency: -1},
		{Stream: "NOPE", Durable: "x"},
	} {
		if err := b.Consume(testContext(t), cfg, h); err == nil {
			t.Errorf("Consume(%+v) = nil, want an error", cfg)
		}
	}
}

func TestRestartKeepsMessages(t *testing.T) {
	node := bustest.Server(t)
	ctx := testContext(t)
	b, err := bus.Connect(ctx, node.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Ensure(ctx, bus.TopologyConfig{}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		publish(t, b, inboxSubject(t), fmt.Sprintf("e%d", i))
	}
	if _, err := b.PutState(ctx, "submission.s1", []byte("announced")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.PutObject(ctx, "s1/data", strings.NewReader("sealed")); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	node.Restart(t)

	b2 := bustest.Connect(t, node.URL)
	got := make(chan string, 3)
	startConsume(t, b2, bus.ConsumerConfig{Stream: bus.StreamInbox, Durable: "after-restart"}, func(ctx context.Context, m *bus.Message) error {
		got <- m.Event.ID()
		return nil
	})
	for i := range 3 {
		select {
		case id := <-got:
			if id != fmt.Sprintf("e%d", i) {
				t.Errorf("message %d is %s", i, id)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d messages after restart", i)
		}
	}
	if e, err := b2.GetState(ctx, "submission.s1"); err != nil || string(e.Value) != "announced" {
		t.Errorf("state after restart: %q, %v", e.Value, err)
	}
	if info, err := b2.StatObject(ctx, "s1/data"); err != nil || info.Size != 6 {
		t.Errorf("object after restart: %+v, %v", info, err)
	}
}

func TestConsumeSurvivesServerRestart(t *testing.T) {
	node := bustest.Server(t)
	ctx := testContext(t)
	b, err := bus.Connect(ctx, node.URL, nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if err := b.Ensure(ctx, bus.TopologyConfig{}); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 2)
	c := startConsume(t, b, bus.ConsumerConfig{Stream: bus.StreamInbox, Durable: "steady", PullExpiry: time.Second},
		func(ctx context.Context, m *bus.Message) error {
			got <- m.Event.ID()
			return nil
		})
	publish(t, b, inboxSubject(t), "before")
	if id := <-got; id != "before" {
		t.Fatalf("got %s", id)
	}

	node.Shutdown()
	// Long enough without a server for heartbeats to go missing.
	eventually(t, 10*time.Second, func() error {
		if b.Conn().IsConnected() {
			return errors.New("still connected")
		}
		return nil
	})
	node.Restart(t)

	eventually(t, 20*time.Second, func() error {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := b.Publish(pctx, inboxSubject(t), newEvent(t, "after"), "after")
		return err
	})
	select {
	case id := <-got:
		if id != "after" {
			t.Fatalf("got %s, want after", id)
		}
	case err := <-c.done:
		t.Fatalf("Consume ended: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("no message after the server came back")
	}
}

// A consumer stopped while the server delivers to its pull hands back
// what arrives: its successor gets it at once, not after the ack wait.
func TestConsumeStopHandsBackWhatArrives(t *testing.T) {
	node := bustest.Server(t)
	b := bustest.Connect(t, node.URL)
	ctx := testContext(t)
	if err := b.Ensure(ctx, bus.TopologyConfig{}); err != nil {
		t.Fatal(err)
	}
	cfg := bus.ConsumerConfig{Stream: bus.StreamInbox, Durable: "restarted", AckWait: time.Minute}
	handled := make(chan string, 100)
	h := func(ctx context.Context, m *bus.Message) error {
		handled <- m.Event.ID()
		return nil
	}
	const stops = 20
	for i := range stops {
		c := startConsume(t, b, cfg, h)
		// Its pull waits at the server: the message goes straight into it.
		waitConsumer(t, b, cfg.Stream, cfg.Durable, func(info *jetstream.ConsumerInfo) error {
			if info.NumWaiting == 0 {
				return errors.New("no pull waiting")
			}
			return nil
		})
		publish(t, b, inboxSubject(t), fmt.Sprintf("m%d", i))
		if err := c.stop(t); err != nil {
			t.Fatal(err)
		}
	}
	startConsume(t, b, cfg, h)
	seen := map[string]bool{}
	deadline := time.After(20 * time.Second)
	for len(seen) < stops {
		select {
		case id := <-handled:
			seen[id] = true
		case <-deadline:
			t.Fatalf("%d of %d messages handled within 20 s of the last stop (ack wait: a minute)", len(seen), stops)
		}
	}
}

// A handler that takes longer than the ack wait, within HandleTimeout,
// keeps its message: it is reported in progress, not redelivered to a
// second handler, and its context lasts.
func TestConsumeLongHandling(t *testing.T) {
	node := bustest.Server(t)
	b := bustest.Connect(t, node.URL)
	ctx := testContext(t)
	if err := b.Ensure(ctx, bus.TopologyConfig{}); err != nil {
		t.Fatal(err)
	}
	cfg := bus.ConsumerConfig{Stream: bus.StreamInbox, Durable: "slow", AckWait: time.Second, HandleTimeout: time.Minute, Concurrency: 2}
	var deliveries atomic.Int32
	done := make(chan error, 2)
	h := func(ctx context.Context, m *bus.Message) error {
		deliveries.Add(1)
		select {
		case <-time.After(3500 * time.Millisecond):
			done <- nil
		case <-ctx.Done():
			done <- ctx.Err()
		}
		return nil
	}
	startConsume(t, b, cfg, h)
	publish(t, b, inboxSubject(t), "slow-1")
	if err := <-done; err != nil {
		t.Fatalf("the handler's context ended after the ack wait: %v", err)
	}
	time.Sleep(1500 * time.Millisecond)
	if n := deliveries.Load(); n != 1 {
		t.Errorf("%d deliveries, want 1: the message was handed out again while in hand", n)
	}
}
