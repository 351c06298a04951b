package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/store"
)

var backlogTests = []test{
	{"backlogs by destination", func(t *testing.T, s store.Store) {
		bs, ok := s.(store.Backlogs)
		if !ok {
			t.Fatalf("%T does not report backlogs", s)
		}
		ctx := context.Background()
		h := time.Hour
		a := destination("A")
		a.HomeRegion = "083110000000"
		must(t, "create destination A", s.CreateDestination(ctx, "test", a, nil))
		// fixture is a submission to dest in status, submitted at
		// submitted after t0, routed or not, fetched or not.
		fixture := func(id, dest string, status sealed.Status, submitted time.Duration, routed, picked bool) store.Submission {
			sub := submission(id, dest, status, submitted-time.Minute)
			sub.SubmittedAt, sub.RoutedAt, sub.PickedUpAt = ptr(at(submitted)), nil, nil
			if routed {
				sub.RoutedAt = ptr(at(submitted + time.Minute))
			}
			if picked {
				sub.PickedUpAt = ptr(at(submitted + 2*time.Minute))
			}
			return sub
		}
		for _, sub := range []store.Submission{
			fixture("a-old", "A", sealed.Submitted, 0, true, false),
			fixture("a-mid", "A", sealed.Submitted, 5*h, true, false),
			fixture("a-new", "A", sealed.Submitted, 9*h, true, false),
			fixture("a-fetched", "A", sealed.Submitted, -h, true, true),
			fixture("a-unrouted", "A", sealed.Submitted, -2*h, false, false),
			fixture("a-accepted", "A", sealed.Accepted, -3*h, true, false),
			fixture("b-fetched", "B", sealed.Submitted, h, true, true),
			fixture("c-rejected", "C", sealed.Rejected, h, true, false),
		} {
			must(t, "create "+sub.ID, s.CreateSubmission(ctx, sub))
		}
		got, err := bs.Backlogs(ctx, at(6*h), at(h))
		must(t, "backlogs", err)
		equal(t, "backlogs", got, []store.Backlog{
			{DestinationID: "A", HomeRegion: "083110000000", Listed: 4, Unpicked: 3, OldestUnpicked: ptr(at(0)), Overdue: []int{2, 1}},
			{DestinationID: "B", Listed: 1, Unpicked: 0, Overdue: []int{0, 0}},
		})

		none, err := bs.Backlogs(ctx)
		must(t, "backlogs without cut-offs", err)
		if len(none) != 2 || len(none[0].Overdue) != 0 {
			t.Errorf("without cut-offs: %+v", none)
		}
	}},
}
