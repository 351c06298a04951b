package signer_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
	"github.com/amtsbote/amtsbote/pkg/issuer"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/services/signer"
)

const url = "https://amtsbote.example"

// TestSignerTakesOverAnExpiredClaim proves that an outbox entry a signer
// claimed and never finished (it crashed) is published by another once
// the claim runs out, and that several signers publish each event once.
func TestSignerTakesOverAnExpiredClaim(t *testing.T) {
	b, _ := bustest.Bus(t)
	ctx := context.Background()
	events := flowtest.Issuer(t, b, url)

	var cases []string
	for range 5 {
		sid, cid := uuid.NewString(), uuid.NewString()
		cases = append(cases, cid)
		if err := events.Enqueue(ctx, set.CreateSubmission, sid, cid, nil); err != nil {
			t.Fatal(err)
		}
	}
	// The first entry was claimed by a signer that stopped.
	entries, err := b.Outbox(ctx)
	if err != nil || len(entries) != 5 {
		t.Fatalf("outbox %d entries (%v), want 5", len(entries), err)
	}
	if _, err := b.Claim(ctx, entries[0], "crashed", time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}

	for range 3 {
		s, err := signer.New(signer.Config{Bus: b, Issuer: events, Workers: 2, Lease: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		flowtest.Start(t, s)
	}
	flowtest.Eventually(t, 10*time.Second, func() error {
		left, err := b.Outbox(ctx)
		if err != nil {
			return err
		}
		if len(left) > 0 {
			return fmt.Errorf("outbox holds %d entries", len(left))
		}
		// The listing can miss an entry a signer is claiming
		// (Bus.OutboxHead), whose event is then still on its way; a
		// second event would stay.
		for _, cid := range cases {
			evs, err := b.CaseEvents(ctx, cid)
			if err != nil {
				return err
			}
			if len(evs) != 1 {
				return fmt.Errorf("case %s has %d events, want 1", cid, len(evs))
			}
		}
		return nil
	})
}

// TestSignerRefillsFromTheOutbox proves that a backlog larger than the
// signer's queue is signed without waiting for the periodic sweep: what
// the watch could not queue is read from the outbox's head once there is
// room. With a queue of one each refill's head fits the queue exactly, and
// the refill after it must still read on.
func TestSignerRefillsFromTheOutbox(t *testing.T) {
	b, _ := bustest.Bus(t)
	events := flowtest.Issuer(t, b, url)
	const n = 24
	enqueueCreates(t, events, n)
	s, err := signer.New(signer.Config{Bus: b, Issuer: events, Workers: 1, Queue: 1, Lease: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	flowtest.Start(t, s)
	outboxEmpties(t, b)
}

func TestNewChecksConfig(t *testing.T) {
	b, _ := bustest.Bus(t)
	events := flowtest.Issuer(t, b, url)
	for _, cfg := range []signer.Config{
		{Issuer: events},
		{Bus: b},
		{Bus: b, Issuer: events, Workers: -1},
		{Bus: b, Issuer: events, Lease: -time.Second},
		{Bus: b, Issuer: events, Queue: -1},
		{Bus: b, Issuer: events, MaxDefer: -time.Second},
	} {
		if _, err := signer.New(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

// TestSignerKeepsASubmissionsOrder proves that a submission's events
// stand in its case in the order they were accepted, create- before
// submit-submission, while several workers sign at once.
func TestSignerKeepsASubmissionsOrder(t *testing.T) {
	b, _ := bustest.Bus(t)
	events := flowtest.Issuer(t, b, url)
	const n = 24
	ctx := context.Background()
	cases := make([]string, n)
	tags := set.SubmitPayload{AuthenticationTags: set.AuthenticationTags{Metadata: "AAECAwQFBgcICQoLDA0ODw"}}
	for i := range cases {
		sid, cid := uuid.NewString(), uuid.NewString()
		cases[i] = cid
		if err := events.Enqueue(ctx, set.CreateSubmission, sid, cid, nil); err != nil {
			t.Fatal(err)
		}
		if err := events.Enqueue(ctx, set.SubmitSubmission, sid, cid, tags); err != nil {
			t.Fatal(err)
		}
	}
	s, err := signer.New(signer.Config{Bus: b, Issuer: events, Workers: 4, Busy: func() bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	flowtest.Start(t, s)
	outboxEmpties(t, b)
	for _, cid := range cases {
		evs, err := b.CaseEvents(ctx, cid)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range evs {
			_, c, err := set.Parse(e.Token)
			if err != nil {
				t.Fatal(err)
			}
			uri, _, _ := c.Event()
			names = append(names, set.Name(uri))
		}
		if !slices.Equal(names, []string{"create-submission", "submit-submission"}) {
			t.Errorf("case %s: events %v, want create- before submit-submission", cid, names)
		}
	}
}

// TestSignerYieldsWhileBusy proves that while other work waits for a CPU
// only one worker signs, and that it still signs everything.
func TestSignerYieldsWhileBusy(t *testing.T) {
	b, _ := bustest.Bus(t)
	events := flowtest.Issuer(t, b, url)
	const n = 12
	enqueueCreates(t, events, n)
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	var asked atomic.Int64
	busy := func() bool { asked.Add(1); return true }
	s, err := signer.New(signer.Config{Bus: b, Issuer: events, Workers: 4, Busy: busy, Tracer: tp})
	if err != nil {
		t.Fatal(err)
	}
	flowtest.Start(t, s)
	outboxEmpties(t, b)
	if asked.Load() == 0 {
		t.Error("the workers never asked whether others wait")
	}
	// A worker ends its span after it has deleted the entry.
	var signed []sdktrace.ReadOnlySpan
	flowtest.Eventually(t, 10*time.Second, func() error {
		signed = signed[:0]
		for _, sp := range spans.Ended() {
			if strings.HasPrefix(sp.Name(), "sign ") {
				signed = append(signed, sp)
			}
		}
		if len(signed) != n {
			return fmt.Errorf("%d signing spans, want %d", len(signed), n)
		}
		return nil
	})
	slices.SortFunc(signed, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
	for i := 1; i < len(signed); i++ {
		if signed[i].StartTime().Before(signed[i-1].EndTime()) {
			t.Errorf("signing %d began at %s, before signing %d ended at %s: two workers signed at once",
				i, signed[i].StartTime().Format(time.StampMicro), i-1, signed[i-1].EndTime().Format(time.StampMicro))
		}
	}
}

// TestSignerDefersWhileBusy proves that with MaxDefer no worker signs
// while other work waits for a CPU and the events are young, that they are
// signed once nothing waits, and that an event older than MaxDefer is
// signed however busy the process is.
func TestSignerDefersWhileBusy(t *testing.T) {
	b, _ := bustest.Bus(t)
	events := flowtest.Issuer(t, b, url)
	const n = 4
	enqueueCreates(t, events, n)
	var busy, late atomic.Bool
	busy.Store(true)
	now := func() time.Time {
		if late.Load() {
			return time.Now().Add(2 * time.Hour)
		}
		return time.Now()
	}
	s, err := signer.New(signer.Config{Bus: b, Issuer: events, Workers: 2, Busy: busy.Load, MaxDefer: time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	flowtest.Start(t, s)
	time.Sleep(500 * time.Millisecond)
	if left, err := b.Outbox(context.Background()); err != nil || len(left) != n {
		t.Fatalf("while busy the outbox holds %d entries (%v), want all %d", len(left), err, n)
	}
	busy.Store(false)
	outboxEmpties(t, b)

	busy.Store(true)
	enqueueCreates(t, events, n)
	time.Sleep(200 * time.Millisecond)
	if left, err := b.Outbox(context.Background()); err != nil || len(left) != n {
		t.Fatalf("while busy the outbox holds %d entries (%v), want all %d", len(left), err, n)
	}
	late.Store(true)
	outboxEmpties(t, b)
}

// enqueueCreates puts n create-submission events of new cases in the
// outbox.
func enqueueCreates(t *testing.T, events *issuer.Issuer, n int) {
	t.Helper()
	for range n {
		if err := events.Enqueue(context.Background(), set.CreateSubmission, uuid.NewString(), uuid.NewString(), nil); err != nil {
			t.Fatal(err)
		}
	}
}

// outboxEmpties waits up to a minute for the signers to empty the outbox.
func outboxEmpties(t *testing.T, b *bus.Bus) {
	t.Helper()
	flowtest.Eventually(t, time.Minute, func() error {
		left, err := b.Outbox(context.Background())
		if err != nil {
			return err
		}
		if len(left) > 0 {
			return fmt.Errorf("outbox holds %d entries", len(left))
		}
		return nil
	})
}
