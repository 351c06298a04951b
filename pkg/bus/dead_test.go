package bus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
)

// deadBus is a bus whose duplicates window is short enough for a
// re-drive to come after it within a test.
func deadBus(t *testing.T, window time.Duration) *bus.Bus {
	t.Helper()
	node := bustest.Server(t)
	b := bustest.Connect(t, node.URL)
	if err := b.Ensure(testContext(t), bus.TopologyConfig{Duplicates: window}); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDeadLetterKeepsAttemptHistory(t *testing.T) {
	b := deadBus(t, time.Second)
	publish(t, b, inboxSubject(t), "h1")
	startConsume(t, b, bus.ConsumerConfig{
		Stream: bus.StreamInbox, Durable: "history", MaxDeliver: 3, ExhaustedReason: "callback-failed",
		BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond, Jitter: true,
	}, func(ctx context.Context, m *bus.Message) error {
		return fmt.Errorf("receiver answered 503 on attempt %d", m.Attempt)
	})
	deadLetter(t, b, "callback-failed")
	settled(t, b, bus.StreamInbox, "history")

	ctx := testContext(t)
	list, total, err := b.DeadLetters(ctx, bus.DeadFilter{Reason: "callback-failed"}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if total != 1 || len(list) != 1 {
		t.Fatalf("%d dead letters (%d listed), want 1", total, len(list))
	}
	d := list[0]
	if d.DestinationID != destID || d.MsgID != "h1" || d.Subject != inboxSubject(t) || d.Attempts != 3 || d.Consumer != "history" {
		t.Errorf("dead letter %+v", d)
	}
	if len(d.History) != 3 {
		t.Fatalf("history %+v, want 3 attempts", d.History)
	}
	for i, a := range d.History {
		want := fmt.Sprintf("receiver answered 503 on attempt %d", i+1)
		if a.Attempt != i+1 || a.Error != want || a.At.IsZero() {
			t.Errorf("attempt %d: %+v, want error %q", i+1, a, want)
		}
	}
	one, err := b.DeadLetter(ctx, d.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if one.Seq != d.Seq || string(one.Data) != string(newEvent(t, "h1").Data()) {
		t.Errorf("dead letter %d: %+v", d.Seq, one)
	}
	if _, err := b.DeadLetter(ctx, d.Seq+100); !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("unknown dead letter: %v, want ErrNotFound", err)
	}
}

func TestDeadLettersFilterAndPage(t *testing.T) {
	b := deadBus(t, time.Second)
	other := "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
	otherSubject, err := bus.InboxSubject(freiARS, other)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		publish(t, b, inboxSubject(t), fmt.Sprintf("a%d", i))
	}
	publish(t, b, otherSubject, "b0")
	publish(t, b, ingressSubject(t), "i0")
	startConsume(t, b, bus.ConsumerConfig{Stream: bus.StreamInbox, Durable: "inbox"}, func(ctx context.Context, m *bus.Message) error {
		return bus.PermanentReason("inbox-broken", errors.New("broken"))
	})
	startConsume(t, b, bus.ConsumerConfig{Stream: bus.StreamIngress, Durable: "ingress"}, func(ctx context.Context, m *bus.Message) error {
		return bus.PermanentReason("unroutable", errors.New("nowhere"))
	})
	settled(t, b, bus.StreamInbox, "inbox")
	settled(t, b, bus.StreamIngress, "ingress")
	ctx := testContext(t)
	eventually(t, 10*time.Second, func() error {
		if _, n, err := b.DeadLetters(ctx, bus.DeadFilter{}, 0, 0); err != nil || n != 5 {
			return fmt.Errorf("%d dead letters (%v), want 5", n, err)
		}
		return nil
	})
	tests := []struct {
		name          string
		f             bus.DeadFilter
		offset, limit int
		wantIDs       []string
		wantTotal     int
	}{
		{"all", bus.DeadFilter{}, 0, 0, []string{"a0", "a1", "a2", "b0", "i0"}, 5},
		{"reason", bus.DeadFilter{Reason: "unroutable"}, 0, 0, []string{"i0"}, 1},
		{"destination", bus.DeadFilter{DestinationID: other}, 0, 0, []string{"b0"}, 1},
		{"reason and destination", bus.DeadFilter{Reason: "inbox-broken", DestinationID: destID}, 0, 0, []string{"a0", "a1", "a2"}, 3},
		{"page", bus.DeadFilter{Reason: "inbox-broken"}, 1, 2, []string{"a1", "a2"}, 4},
		{"past the end", bus.DeadFilter{}, 9, 2, nil, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list, total, err := b.DeadLetters(ctx, tt.f, tt.offset, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, d := range list {
				ids = append(ids, d.MsgID)
			}
			// Two consumers dead-letter at once; within a reason the order is the stream's.
			if tt.f.Reason == "" {
				slices.Sort(ids)
			}
			if fmt.Sprint(ids) != fmt.Sprint(tt.wantIDs) || total != tt.wantTotal {
				t.Errorf("ids %v total %d, want %v total %d", ids, total, tt.wantIDs, tt.wantTotal)
			}
		})
	}
	if _, _, err := b.DeadLetters(ctx, bus.DeadFilter{Reason: "no.dots"}, 0, 0); !errors.Is(err, bus.ErrInvalidToken) {
		t.Errorf("bad reason: %v, want ErrInvalidToken", err)
	}
}

func TestRedriveDeliversOnceWithItsID(t *testing.T) {
	// Long enough that the early re-drive below comes within it on a
	// loaded machine too.
	const window = 3 * time.Second
	b := deadBus(t, window)
	publish(t, b, inboxSubject(t), "r1")

	var (
		mu    sync.Mutex
		seen  []string
		fixed bool
	)
	startConsume(t, b, bus.ConsumerConfig{Stream: bus.StreamInbox, Durable: "redrive"}, func(ctx context.Context, m *bus.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if !fixed {
			return bus.PermanentReason("down", errors.New("down"))
		}
		seen = append(seen, m.Event.ID()+" "+m.Header.Get(bus.HeaderDeadReason))
		return nil
	})
	deadLetter(t, b, "down")
	settled(t, b, bus.StreamInbox, "redrive")
	ctx := testContext(t)
	list, _, err := b.DeadLetters(ctx, bus.DeadFilter{Reason: "down"}, 0, 0)
	if err != nil || len(list) != 1 {
		t.Fatalf("dead letters %v, %v", list, err)
	}
	seq := list[0].Seq

	// Right away the stream would drop it as the original.
	if _, err := b.Redrive(ctx, seq); !errors.Is(err, bus.ErrRedriveTooSoon) {
		t.Fatalf("early re-drive: %v, want ErrRedriveTooSoon", err)
	}
	if _, err := b.DeadLetter(ctx, seq); err != nil {
		t.Fatalf("an early re-drive removed the dead letter: %v", err)
	}
	mu.Lock()
	fixed = true
	mu.Unlock()
	eventually(t, 20*time.Second, func() error {
		_, err := b.Redrive(ctx, seq)
		return err
	})
	eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) != 1 {
			return fmt.Errorf("delivered %v", seen)
		}
		return nil
	})
	settled(t, b, bus.StreamInbox, "redrive")
	mu.Lock()
	if seen[0] != "r1 " {
		t.Errorf("re-driven message %q: want id r1 without dead-letter headers", seen[0])
	}
	mu.Unlock()
	if _, err := b.Redrive(ctx, seq); !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("second re-drive: %v, want ErrNotFound", err)
	}
	if n := streamMsgs(t, b, bus.StreamDead); n != 0 {
		t.Errorf("DEAD holds %d messages after the re-drive", n)
	}
}

func TestPurgeDead(t *testing.T) {
	b := deadBus(t, time.Second)
	publish(t, b, inboxSubject(t), "p1")
	startConsume(t, b, bus.ConsumerConfig{Stream: bus.StreamInbox, Durable: "purge"}, func(ctx context.Context, m *bus.Message) error {
		return bus.PermanentReason("junk", errors.New("junk"))
	})
	deadLetter(t, b, "junk")
	ctx := testContext(t)
	list, _, err := b.DeadLetters(ctx, bus.DeadFilter{}, 0, 0)
	if err != nil || len(list) != 1 {
		t.Fatalf("dead letters %v, %v", list, err)
	}
	d, err := b.PurgeDead(ctx, list[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	if d.MsgID != "p1" || d.Reason != "junk" {
		t.Errorf("purged %+v", d)
	}
	if _, err := b.PurgeDead(ctx, list[0].Seq); !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("second purge: %v, want ErrNotFound", err)
	}
	if n := streamMsgs(t, b, bus.StreamDead); n != 0 {
		t.Errorf("DEAD holds %d messages", n)
	}
}

// TestRedriveOnlyToConsumedStreams: a dead letter's headers are written by
// whoever may publish to DEAD, a subscriber's user among them; one that
// names a subject outside INGRESS, INBOX and CALLBACKS is not re-driven.
func TestRedriveOnlyToConsumedStreams(t *testing.T) {
	b := deadBus(t, time.Minute)
	ctx := testContext(t)
	dest := uuid.NewString()
	registrySubject, err := bus.RegistryDestination(dest)
	if err != nil {
		t.Fatal(err)
	}
	before, err := b.RegistryRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, forged := range []struct{ stream, subject string }{
		{bus.StreamRegistry, registrySubject},
		{bus.StreamInbox, registrySubject},
		{bus.StreamEvents, "ab.events." + uuid.NewString()},
		{bus.StreamInbox, "ab.events." + uuid.NewString()},
	} {
		m := nats.NewMsg(bus.PrefixDead + ".permanent")
		m.Header.Set(bus.HeaderDeadReason, "permanent")
		m.Header.Set(bus.HeaderOriginalSubject, forged.subject)
		m.Header.Set(bus.HeaderOriginalStream, forged.stream)
		m.Data = []byte(`{"forged":true}`)
		ack, err := b.JetStream().PublishMsg(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Redrive(ctx, ack.Sequence); !errors.Is(err, bus.ErrInvalidSubject) {
			t.Errorf("re-drive to %s of %s: %v, want ErrInvalidSubject", forged.subject, forged.stream, err)
		}
		if _, err := b.DeadLetter(ctx, ack.Sequence); err != nil {
			t.Errorf("the refused dead letter is gone: %v", err)
		}
	}
	if after, err := b.RegistryRevision(ctx); err != nil || after != before {
		t.Errorf("registry revision %d → %d (%v)", before, after, err)
	}
}

// TestRedriveIsForTheConsumerThatGaveUp: a stream's other consumers
// handled the message already and pass its re-drive by; when the
// consumer that gave up is gone, every consumer has it again.
func TestRedriveIsForTheConsumerThatGaveUp(t *testing.T) {
	b := deadBus(t, 500*time.Millisecond)
	ctx := testContext(t)
	var (
		mu    sync.Mutex
		seen  = map[string][]string{}
		fixed bool
	)
	handler := func(durable string) bus.Handler {
		return func(ctx context.Context, m *bus.Message) error {
			mu.Lock()
			defer mu.Unlock()
			if durable == "gave-up" && !fixed {
				return bus.PermanentReason("down", errors.New("down"))
			}
			seen[durable] = append(seen[durable], m.Event.ID())
			return nil
		}
	}
	gaveUp := startConsume(t, b, bus.ConsumerConfig{Stream: bus.StreamInbox, Durable: "gave-up"}, handler("gave-up"))
	startConsume(t, b, bus.ConsumerConfig{Stream: bus.StreamInbox, Durable: "other"}, handler("other"))
	deadOne := func(id string) uint64 {
		t.Helper()
		publish(t, b, inboxSubject(t), id)
		settled(t, b, bus.StreamInbox, "gave-up")
		settled(t, b, bus.StreamInbox, "other")
		list, _, err := b.DeadLetters(ctx, bus.DeadFilter{Reason: "down"}, 0, 0)
		if err != nil || len(list) != 1 || list[0].Consumer != "gave-up" {
			t.Fatalf("dead letters %+v, %v", list, err)
		}
		return list[0].Seq
	}
	redrive := func(seq uint64) {
		t.Helper()
		eventually(t, 20*time.Second, func() error {
			_, err := b.Redrive(ctx, seq)
			return err
		})
	}
	want := func(durable string, ids ...string) {
		t.Helper()
		eventually(t, 10*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(seen[durable], ids) {
				return fmt.Errorf("%s had %v, want %v", durable, seen[durable], ids)
			}
			return nil
		})
	}

	seq := deadOne("r1")
	mu.Lock()
	fixed = true
	mu.Unlock()
	redrive(seq)
	want("gave-up", "r1")
	settled(t, b, bus.StreamInbox, "other")
	want("other", "r1")

	// Gone, the consumer that gave up leaves the re-drive to all.
	mu.Lock()
	fixed = false
	mu.Unlock()
	seq = deadOne("r2")
	if err := gaveUp.stop(t); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if err := b.JetStream().DeleteConsumer(ctx, bus.StreamInbox, "gave-up"); err != nil {
		t.Fatal(err)
	}
	redrive(seq)
	want("other", "r1", "r2", "r2")
}
