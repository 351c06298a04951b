package client

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/set"
)

// TestDecisionRetried: a decision whose answer is lost, because the
// backbone crashed after recording it, is completed by posting it again:
// the same token, recorded once. A receiver that lost its Received learns
// from Decided what was recorded, and a second Accept of the submission
// succeeds while a Reject of it does not.
func TestDecisionRetried(t *testing.T) {
	api := newFitAPI(t)
	sender := api.client(t).Sender()
	receiver := api.client(t).Receiver()
	k := testKeys(t)
	ctx := context.Background()
	ring, err := NewKeyRing(k.enc)
	if err != nil {
		t.Fatal(err)
	}
	received := func(t *testing.T) (Receipt, *Received) {
		t.Helper()
		receipt, err := sender.Submit(ctx, submission(randomBytes(100), randomBytes(100)))
		if err != nil {
			t.Fatalf("submit: %v", err)
		}
		rec, err := receiver.Fetch(ctx, receipt.SubmissionID, ring)
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		t.Cleanup(func() { _ = rec.Close() })
		return receipt, rec
	}
	// decisions returns the destination's recorded decisions of r.
	decisions := func(t *testing.T, r Receipt) []Event {
		t.Helper()
		st, err := sender.StatusOf(ctx, r)
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		var out []Event
		for _, ev := range st.Events {
			if ev.Type == set.AcceptSubmission || ev.Type == set.RejectSubmission {
				out = append(out, ev)
			}
		}
		return out
	}

	t.Run("answer lost once", func(t *testing.T) {
		r, rec := received(t)
		api.locked(func() { api.lostDecisions = 1 })
		if err := receiver.Accept(ctx, rec, k.sig); err != nil || rec.DecidedBefore() {
			t.Fatalf("accept, retried after the lost answer: %v, decided before %v", err, rec.DecidedBefore())
		}
		if d := decisions(t, r); len(d) != 1 || d[0].Type != set.AcceptSubmission {
			t.Fatalf("recorded decisions %+v, want one accept", d)
		}
	})

	t.Run("answer lost until the retries ran out", func(t *testing.T) {
		r, rec := received(t)
		api.locked(func() { api.lostDecisions = 3 })
		err := receiver.Accept(ctx, rec, k.sig)
		if _, ok := problem.As(err); err == nil || ok {
			t.Fatalf("accept with every answer lost = %v, want a network error", err)
		}
		first := decisions(t, r)
		if len(first) != 1 {
			t.Fatalf("recorded decisions %+v, want the one whose answer was lost", first)
		}
		if err := receiver.Accept(ctx, rec, k.sig); err != nil {
			t.Fatalf("accept again: %v", err)
		}
		if d := decisions(t, r); len(d) != 1 || d[0].Token != first[0].Token {
			t.Fatalf("after accepting again the log holds %d decisions, want the first token once", len(d))
		}
		var posted []string
		api.locked(func() { posted = slices.Clone(api.posted) })
		if n := len(posted); n < 4 || slices.ContainsFunc(posted[n-4:], func(tok string) bool { return tok != first[0].Token }) {
			t.Fatalf("accept posted %d tokens; want the first one again each time", n)
		}

		// A receiver that restarted has lost rec.
		restarted := api.client(t).Receiver()
		pickup := Pickup{DestinationID: rec.DestinationID, SubmissionID: rec.SubmissionID, CaseID: rec.CaseID}
		ev, err := restarted.Decided(ctx, pickup)
		if err != nil || ev == nil || ev.Token != first[0].Token {
			t.Fatalf("decided = %+v, %v; want the recorded accept", ev, err)
		}
		again, err := restarted.Fetch(ctx, rec.SubmissionID, ring)
		if err != nil {
			t.Fatalf("fetch again: %v", err)
		}
		defer again.Close()
		if err := restarted.Accept(ctx, again, k.sig); err != nil || !again.DecidedBefore() {
			t.Errorf("accept of an accepted submission with a new token = %v, decided before %v; want success, decided before", err, again.DecidedBefore())
		}
		err = restarted.Reject(ctx, again, k.sig, set.Problem{Type: problem.Base + "late", Instance: "submission"})
		if p, ok := problem.As(err); !ok || p.Status != http.StatusConflict {
			t.Errorf("reject of an accepted submission = %v, want the 409", err)
		}
		if d := decisions(t, r); len(d) != 1 || d[0].Token != first[0].Token {
			t.Errorf("the log holds %d decisions, want the first token once", len(d))
		}
	})

	t.Run("undecided", func(t *testing.T) {
		_, rec := received(t)
		ev, err := receiver.Decided(ctx, Pickup{DestinationID: rec.DestinationID, SubmissionID: rec.SubmissionID, CaseID: rec.CaseID})
		if err != nil || ev != nil {
			t.Fatalf("decided = %+v, %v; want none", ev, err)
		}
	})

	t.Run("rejected", func(t *testing.T) {
		_, rec := received(t)
		late := set.Problem{Type: problem.Base + "late", Instance: "submission"}
		if err := receiver.Reject(ctx, rec, k.sig, late); err != nil {
			t.Fatal(err)
		}
		err := receiver.Accept(ctx, rec, k.sig)
		if p, ok := problem.As(err); !ok || p.Status != http.StatusConflict {
			t.Fatalf("accept after reject = %v, want the 409", err)
		}
		ev, err := receiver.Decided(ctx, Pickup{DestinationID: rec.DestinationID, SubmissionID: rec.SubmissionID, CaseID: rec.CaseID})
		if err != nil || ev == nil || ev.Type != set.RejectSubmission {
			t.Fatalf("decided = %+v, %v; want the reject", ev, err)
		}
	})
}
