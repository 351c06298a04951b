package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/ledger"
)

// seconds is FIT-Connect's retention with seconds instead of days.
var seconds = ledger.Retention{
	Incomplete:     1 * time.Second,
	AfterPickup:    2 * time.Second,
	RejectUnpicked: 2 * time.Second,
	DeleteUnpicked: 4 * time.Second,
	Interval:       100 * time.Millisecond,
}

// withContent stores s's payload and uploaded attachments in the object
// store and returns their names.
func withContent(t *testing.T, b *bus.Bus, s store.Submission) []string {
	t.Helper()
	names := []string{sealed.PayloadObject(s.ID)}
	for _, id := range s.UploadedAttachments {
		names = append(names, sealed.AttachmentObject(s.ID, id))
	}
	for _, name := range names {
		if _, err := b.PutObject(context.Background(), name, strings.NewReader("sealed "+name)); err != nil {
			t.Fatalf("put %s: %v", name, err)
		}
	}
	return names
}

func TestRetention(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			b, node := bustest.Bus(t)
			st := be.open(t)
			now := time.Now()
			later := now.Add(time.Hour) // never due within the test

			incomplete := newSubmission(store.SubmissionIncomplete, now, nil, nil, nil)
			incomplete.UploadedAttachments = incomplete.AnnouncedAttachments[:1]
			accepted := newSubmission(store.SubmissionAccepted, now, &now, &now, &now)
			accepted.UploadedAttachments = accepted.AnnouncedAttachments
			unpicked := newSubmission(store.SubmissionSubmitted, now, &now, &now, nil)
			unpicked.UploadedAttachments = unpicked.AnnouncedAttachments
			// Controls, whose clocks started an hour from now.
			freshIncomplete := newSubmission(store.SubmissionIncomplete, later, nil, nil, nil)
			freshAccepted := newSubmission(store.SubmissionAccepted, now, &now, &now, &later)
			freshUnpicked := newSubmission(store.SubmissionSubmitted, now, &later, &later, nil)

			content := make(map[string][]string)
			for _, s := range []store.Submission{incomplete, accepted, unpicked, freshIncomplete, freshAccepted, freshUnpicked} {
				createSubmission(t, st, s)
				content[s.ID] = withContent(t, b, s)
			}

			// Two ledgers, as in two processes, keep the same deadlines.
			regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
			for _, reg := range regs {
				start(t, newLedger(t, bustest.Connect(t, node.URL), st, reg, seconds))
			}

			// The rejection comes on "day 14", before the deletion on "day 21".
			eventually(t, 20*time.Second, func() error {
				if s := submissionOf(t, st, unpicked.ID); s.Status != store.SubmissionRejected && s.Status != store.SubmissionDeleted {
					return fmt.Errorf("unpicked submission is %s", s.Status)
				}
				return nil
			})
			eventually(t, 20*time.Second, func() error {
				for _, s := range []store.Submission{incomplete, accepted, unpicked} {
					if got := submissionOf(t, st, s.ID); got.Status != store.SubmissionDeleted {
						return fmt.Errorf("submission %s is %s", s.ID, got.Status)
					}
				}
				return nil
			})
			settled(t, b, bus.StreamEvents, ledger.DurableEvents)

			wantEvents := map[string][]string{
				incomplete.ID: {set.DeleteSubmission},
				accepted.ID:   {set.DeleteSubmission},
				unpicked.ID:   {set.RejectSubmission, set.DeleteSubmission},
			}
			for _, s := range []store.Submission{incomplete, accepted, unpicked} {
				got := submissionOf(t, st, s.ID)
				if got.DeletedAt == nil {
					t.Errorf("submission %s deleted without DeletedAt", s.ID)
				}
				for _, name := range content[s.ID] {
					if _, err := b.StatObject(context.Background(), name); !errors.Is(err, bus.ErrNotFound) {
						t.Errorf("object %s after deletion: %v, want ErrNotFound", name, err)
					}
				}
				checkAmtsboteEvents(t, b, st, s, wantEvents[s.ID])
			}

			for _, s := range []store.Submission{freshIncomplete, freshAccepted, freshUnpicked} {
				if got := submissionOf(t, st, s.ID); got.Status != s.Status || got.DeletedAt != nil {
					t.Errorf("control %s is %s, deleted at %v", s.ID, got.Status, got.DeletedAt)
				}
				for _, name := range content[s.ID] {
					if _, err := b.StatObject(context.Background(), name); err != nil {
						t.Errorf("control object %s: %v", name, err)
					}
				}
				if n := len(events(t, st, s.CaseID)); n != 0 {
					t.Errorf("control %s has %d events", s.ID, n)
				}
			}

			var kept float64
			for _, reg := range regs {
				kept += counter(t, reg, "amtsbote_ledger_deadlines_total", map[string]string{"outcome": "applied"})
			}
			if kept < 4 {
				t.Errorf("%v deadlines kept, want at least 4", kept)
			}
		})
	}
}

// checkAmtsboteEvents checks that s's case has exactly the events uris,
// in that order, each signed by Amtsbote, recorded in the store and
// published to EVENTS once.
func checkAmtsboteEvents(t *testing.T, b *bus.Bus, st store.Store, s store.Submission, uris []string) {
	t.Helper()
	recorded := events(t, st, s.CaseID)
	if len(recorded) != len(uris) {
		t.Fatalf("submission %s: %d events recorded, want %d", s.ID, len(recorded), len(uris))
	}
	subject, _ := bus.EventsSubject(s.CaseID)
	published := messages(t, b, bus.StreamEvents, subject)
	if len(published) != len(uris) {
		t.Errorf("submission %s: %d events published, want %d", s.ID, len(published), len(uris))
	}
	for i, e := range recorded {
		if e.Type != uris[i] {
			t.Errorf("submission %s: event %d is %s, want %s", s.ID, i, e.Type, uris[i])
		}
		// Sweeps may run on a clock days ahead.
		v := set.Verifier{Now: func() time.Time { return time.Now().Add(60 * 24 * time.Hour) }}
		c, err := v.Verify(e.Token, &signer(t).Private.PublicKey)
		if err != nil {
			t.Fatalf("verify %s: %v", e.Type, err)
		}
		if c.Issuer != issuer || c.JTI != e.JTI || c.JTI != sealed.EventJTI(s.ID, e.Type) {
			t.Errorf("event %s: iss %q, jti %q, want the derived %s", e.Type, c.Issuer, c.JTI, sealed.EventJTI(s.ID, e.Type))
		}
		if e.Type == set.RejectSubmission {
			problems, err := c.Problems()
			if err != nil || len(problems) != 1 || problems[0].Type != ledger.ProblemNotPickedUp {
				t.Errorf("reject problems %+v (%v)", problems, err)
			}
		}
	}
}

func TestSweepKeepsEachDeadlineOnce(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			b, _ := bustest.Bus(t)
			st := be.open(t)
			now := time.Now()
			incomplete := newSubmission(store.SubmissionIncomplete, now, nil, nil, nil)
			forwarded := newSubmission(store.SubmissionForwarded, now, &now, &now, &now)
			unpicked := newSubmission(store.SubmissionSubmitted, now, &now, &now, nil)
			unpicked.UploadedAttachments = unpicked.AnnouncedAttachments
			content := make(map[string][]string)
			for _, s := range []store.Submission{incomplete, forwarded, unpicked} {
				createSubmission(t, st, s)
				content[s.ID] = withContent(t, b, s)
			}
			day := 24 * time.Hour
			clock := now
			l, err := ledger.New(ledger.Config{
				Bus: b, Store: st, Signer: signer(t), Issuer: issuer, Now: func() time.Time { return clock },
			})
			if err != nil {
				t.Fatalf("new ledger: %v", err)
			}
			sweep := func(at time.Duration) {
				t.Helper()
				clock = now.Add(at)
				if err := l.Sweep(context.Background()); err != nil {
					t.Fatalf("sweep on day %v: %v", at/day, err)
				}
			}
			status := func(s store.Submission) store.SubmissionStatus { return submissionOf(t, st, s.ID).Status }
			present := func(s store.Submission) int {
				n := 0
				for _, name := range content[s.ID] {
					if _, err := b.StatObject(context.Background(), name); err == nil {
						n++
					}
				}
				return n
			}

			steps := []struct {
				day                     time.Duration
				incomplete, fwd, unpick store.SubmissionStatus
				unpickedContent         int
			}{
				{0, store.SubmissionIncomplete, store.SubmissionForwarded, store.SubmissionSubmitted, 3},
				{1*day + time.Second, store.SubmissionDeleted, store.SubmissionForwarded, store.SubmissionSubmitted, 3},
				{7*day + time.Second, store.SubmissionDeleted, store.SubmissionDeleted, store.SubmissionSubmitted, 3},
				{14*day + time.Second, store.SubmissionDeleted, store.SubmissionDeleted, store.SubmissionRejected, 3},
				{21*day + time.Second, store.SubmissionDeleted, store.SubmissionDeleted, store.SubmissionDeleted, 0},
				{30 * day, store.SubmissionDeleted, store.SubmissionDeleted, store.SubmissionDeleted, 0},
			}
			for _, step := range steps {
				sweep(step.day)
				if got := status(incomplete); got != step.incomplete {
					t.Errorf("day %v: incomplete submission %s, want %s", step.day/day, got, step.incomplete)
				}
				if got := status(forwarded); got != step.fwd {
					t.Errorf("day %v: picked-up submission %s, want %s", step.day/day, got, step.fwd)
				}
				if got := status(unpicked); got != step.unpick {
					t.Errorf("day %v: unpicked submission %s, want %s", step.day/day, got, step.unpick)
				}
				if got := present(unpicked); got != step.unpickedContent {
					t.Errorf("day %v: %d objects of the unpicked submission, want %d", step.day/day, got, step.unpickedContent)
				}
			}
			for _, s := range []store.Submission{incomplete, forwarded} {
				if n := present(s); n != 0 {
					t.Errorf("%d objects left of %s", n, s.ID)
				}
			}
			checkAmtsboteEvents(t, b, st, incomplete, []string{set.DeleteSubmission})
			checkAmtsboteEvents(t, b, st, forwarded, []string{set.DeleteSubmission})
			checkAmtsboteEvents(t, b, st, unpicked, []string{set.RejectSubmission, set.DeleteSubmission})
		})
	}
}
