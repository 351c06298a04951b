package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/amtsbote/amtsbote/internal/flowtest"
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

// withState writes s's entries in the state bucket as the gateway does on
// upload and submit, the tags of the submit and of each uploaded
// attachment and the payload, and returns their keys.
func withState(t *testing.T, b *bus.Bus, s store.Submission) []string {
	t.Helper()
	keys := []string{sealed.TagsKey(s.ID), sealed.PayloadKey(s.ID)}
	for _, id := range s.UploadedAttachments {
		keys = append(keys, sealed.AttachmentTagKey(s.ID, id), sealed.AttachmentUploadKey(s.ID, id))
	}
	for _, key := range keys {
		if _, err := b.PutState(context.Background(), key, []byte("tag of "+key)); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	return keys
}

// stateLeft returns those of keys the state bucket holds.
func stateLeft(t *testing.T, b *bus.Bus, keys []string) []string {
	t.Helper()
	var left []string
	for _, key := range keys {
		_, err := b.GetState(context.Background(), key)
		switch {
		case err == nil:
			left = append(left, key)
		case !errors.Is(err, bus.ErrNotFound):
			t.Fatalf("get %s: %v", key, err)
		}
	}
	return left
}

func TestRetention(t *testing.T) {
	for _, be := range flowtest.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			b, node := bustest.Bus(t)
			st := be.Open(t)
			now := time.Now()
			later := now.Add(time.Hour) // never due within the test

			incomplete := newSubmission(sealed.Incomplete, now, nil, nil, nil)
			incomplete.UploadedAttachments = incomplete.AnnouncedAttachments[:1]
			accepted := newSubmission(sealed.Accepted, now, &now, &now, &now)
			accepted.UploadedAttachments = accepted.AnnouncedAttachments
			unpicked := newSubmission(sealed.Submitted, now, &now, &now, nil)
			unpicked.UploadedAttachments = unpicked.AnnouncedAttachments
			// Controls, whose clocks started an hour from now.
			freshIncomplete := newSubmission(sealed.Incomplete, later, nil, nil, nil)
			freshAccepted := newSubmission(sealed.Accepted, now, &now, &now, &later)
			freshUnpicked := newSubmission(sealed.Submitted, now, &later, &later, nil)

			content := make(map[string][]string)
			state := make(map[string][]string)
			for _, s := range []store.Submission{incomplete, accepted, unpicked, freshIncomplete, freshAccepted, freshUnpicked} {
				createSubmission(t, st, s)
				content[s.ID] = withContent(t, b, s)
				state[s.ID] = withState(t, b, s)
			}

			// Two ledgers, as in two processes, keep the same deadlines.
			regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
			for _, reg := range regs {
				flowtest.Start(t, newLedger(t, bustest.Connect(t, node.URL), st, reg, seconds))
			}

			// The rejection comes on "day 14", before the deletion on "day 21".
			flowtest.Eventually(t, 20*time.Second, func() error {
				if s := submissionOf(t, st, unpicked.ID); s.Status != sealed.Rejected && s.Status != sealed.Deleted {
					return fmt.Errorf("unpicked submission is %s", s.Status)
				}
				return nil
			})
			flowtest.Eventually(t, 20*time.Second, func() error {
				for _, s := range []store.Submission{incomplete, accepted, unpicked} {
					if got := submissionOf(t, st, s.ID); got.Status != sealed.Deleted {
						return fmt.Errorf("submission %s is %s", s.ID, got.Status)
					}
				}
				return nil
			})
			flowtest.Settled(t, b, bus.StreamEvents, ledger.DurableEvents)

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
				if left := stateLeft(t, b, state[s.ID]); len(left) != 0 {
					t.Errorf("state entries %v left after deletion", left)
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
				if left := stateLeft(t, b, state[s.ID]); len(left) != len(state[s.ID]) {
					t.Errorf("control state entries %v left of %v", left, state[s.ID])
				}
				if n := len(events(t, st, s.CaseID)); n != 0 {
					t.Errorf("control %s has %d events", s.ID, n)
				}
			}

			var kept float64
			for _, reg := range regs {
				kept += flowtest.Counter(t, reg, "amtsbote_ledger_deadlines_total", map[string]string{"outcome": "applied"})
			}
			if kept < 4 {
				t.Errorf("%v deadlines kept, want at least 4", kept)
			}
			// Amtsbote's day-14 reject counts as expired, not as a
			// receiver's reject; each stage once over both ledgers.
			for stage, want := range map[string]float64{ledger.StageExpired: 1, ledger.StageRejected: 0, ledger.StageDeleted: 3} {
				var n float64
				for _, reg := range regs {
					n += flowtest.Counter(t, reg, "amtsbote_submissions_total", map[string]string{"stage": stage})
				}
				if n != want {
					t.Errorf("stage %s counted %v times, want %v", stage, n, want)
				}
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
	published := flowtest.Messages(t, b, bus.StreamEvents, subject)
	if len(published) != len(uris) {
		t.Errorf("submission %s: %d events published, want %d", s.ID, len(published), len(uris))
	}
	for i, e := range recorded {
		if e.Type != uris[i] {
			t.Errorf("submission %s: event %d is %s, want %s", s.ID, i, e.Type, uris[i])
		}
		// Sweeps may run on a clock days ahead.
		v := set.Verifier{Now: func() time.Time { return time.Now().Add(60 * 24 * time.Hour) }}
		c, err := v.Verify(e.Token, &flowtest.Signer(t).Private.PublicKey)
		if err != nil {
			t.Fatalf("verify %s: %v", e.Type, err)
		}
		if c.Issuer != issuer || c.JTI != e.JTI || c.JTI != flowtest.JTI(t, s.ID, e.Type) {
			t.Errorf("event %s: iss %q, jti %q, want the derived %s", e.Type, c.Issuer, c.JTI, flowtest.JTI(t, s.ID, e.Type))
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
	for _, be := range flowtest.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			b, _ := bustest.Bus(t)
			st := be.Open(t)
			now := time.Now()
			incomplete := newSubmission(sealed.Incomplete, now, nil, nil, nil)
			forwarded := newSubmission(sealed.Forwarded, now, &now, &now, &now)
			unpicked := newSubmission(sealed.Submitted, now, &now, &now, nil)
			unpicked.UploadedAttachments = unpicked.AnnouncedAttachments
			content := make(map[string][]string)
			for _, s := range []store.Submission{incomplete, forwarded, unpicked} {
				createSubmission(t, st, s)
				content[s.ID] = withContent(t, b, s)
			}
			day := 24 * time.Hour
			clock := now
			l, err := ledger.New(ledger.Config{
				Bus: b, Store: st, Issuer: flowtest.Issuer(t, b, issuer), Now: func() time.Time { return clock },
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
			status := func(s store.Submission) sealed.Status { return submissionOf(t, st, s.ID).Status }
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
				incomplete, fwd, unpick sealed.Status
				unpickedContent         int
			}{
				{0, sealed.Incomplete, sealed.Forwarded, sealed.Submitted, 3},
				{1*day + time.Second, sealed.Deleted, sealed.Forwarded, sealed.Submitted, 3},
				{7*day + time.Second, sealed.Deleted, sealed.Deleted, sealed.Submitted, 3},
				{14*day + time.Second, sealed.Deleted, sealed.Deleted, sealed.Rejected, 3},
				{21*day + time.Second, sealed.Deleted, sealed.Deleted, sealed.Deleted, 0},
				{30 * day, sealed.Deleted, sealed.Deleted, sealed.Deleted, 0},
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

// TestDeletionClearsOutbox: deleting a submission's content deletes the
// outbox entries of its events the store has recorded (published, their
// entry left by a gateway that stopped before clearing it) and keeps the
// entry of an event not yet recorded, which the gateway's sweep still
// publishes.
func TestDeletionClearsOutbox(t *testing.T) {
	for _, be := range flowtest.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			b, _ := bustest.Bus(t)
			st := be.Open(t)
			ctx := context.Background()
			now := time.Now()
			picked := now.Add(-time.Hour)
			sub := newSubmission(sealed.Submitted, now.Add(-2*time.Hour), &picked, &picked, &picked)
			sub.UploadedAttachments = sub.AnnouncedAttachments
			createSubmission(t, st, sub)
			withContent(t, b, sub)
			keys := withState(t, b, sub)

			outbox := func(uri string) string { return sealed.OutboxKey(flowtest.JTI(t, sub.ID, uri)) }
			for _, uri := range []string{set.CreateSubmission, set.SubmitSubmission} {
				if _, err := b.PutState(ctx, outbox(uri), []byte(`{}`)); err != nil {
					t.Fatalf("put outbox entry: %v", err)
				}
			}
			// create-submission was recorded, submit-submission not yet.
			c, token := sign(t, set.CreateSubmission, issuer, sub, nil)
			if _, err := st.ProjectEvent(ctx, store.Event{
				JTI: flowtest.JTI(t, sub.ID, set.CreateSubmission), CaseID: sub.CaseID, SubmissionID: sub.ID, Type: set.CreateSubmission,
				Issuer: issuer, IssuedAt: c.IssuedAt, Token: token, StreamSeq: 1,
			}, func(*store.Submission, []store.Event) {}); err != nil {
				t.Fatalf("record create-submission: %v", err)
			}
			// Another submission's entries stay.
			other := newSubmission(sealed.Submitted, now, &now, &now, &now)
			other.UploadedAttachments = other.AnnouncedAttachments
			createSubmission(t, st, other)
			otherKeys := append(withState(t, b, other), sealed.OutboxKey(flowtest.JTI(t, other.ID, set.CreateSubmission)))
			if _, err := b.PutState(ctx, otherKeys[len(otherKeys)-1], []byte(`{}`)); err != nil {
				t.Fatalf("put outbox entry: %v", err)
			}

			reg := prometheus.NewRegistry()
			l := newLedger(t, b, st, reg, ledger.Retention{AfterPickup: time.Minute})
			for range 2 { // a second sweep finds nothing more to do
				if err := l.Sweep(ctx); err != nil {
					t.Fatalf("sweep: %v", err)
				}
			}
			if got := submissionOf(t, st, sub.ID); got.Status != sealed.Deleted {
				t.Fatalf("submission is %s, want deleted", got.Status)
			}
			all := append(slices.Clone(keys), outbox(set.CreateSubmission), outbox(set.SubmitSubmission))
			if left := stateLeft(t, b, all); !slices.Equal(left, []string{outbox(set.SubmitSubmission)}) {
				t.Errorf("state entries left %v, want only the unrecorded submit-submission's outbox entry", left)
			}
			if left := stateLeft(t, b, otherKeys); len(left) != len(otherKeys) {
				t.Errorf("other submission's entries %v left of %v", left, otherKeys)
			}
			if n := flowtest.Counter(t, reg, "amtsbote_ledger_state_deleted_total", nil); n != float64(len(keys)+1) {
				t.Errorf("%v state entries counted deleted, want %d", n, len(keys)+1)
			}
		})
	}
}
