package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// submission returns a submission to destination destID with every field
// set, created created after t0.
func submission(id, destID string, status sealed.Status, created time.Duration) store.Submission {
	return store.Submission{
		ID:                   id,
		CaseID:               "case-" + id,
		DestinationID:        destID,
		SenderClientID:       "portal-a",
		ServiceIdentifier:    "urn:de:fim:leika:leistung:99050012104000",
		ServiceName:          "Anmeldung einer Wohnung",
		Region:               "DE083110000000",
		Progress:             sealed.Progress{Status: status, SubmittedAt: ptr(at(created + time.Minute))},
		AnnouncedAttachments: []string{"a1-" + id, "a2-" + id},
		UploadedAttachments:  []string{"a1-" + id},
		CallbackURL:          "https://portal.example/callback/" + id,
		CallbackSecret:       "sender-secret-" + id,
		CreatedAt:            at(created),
		RoutedAt:             ptr(at(created + 2*time.Minute)),
		UpdatedAt:            at(created + 2*time.Minute),
	}
}

var submissionTests = []test{
	{"create and read back", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		sub := submission("s1", "d1", sealed.Deleted, 0)
		sub.PickedUpAt = ptr(at(time.Hour))
		sub.DeletedAt = ptr(at(2 * time.Hour))
		must(t, "create", s.CreateSubmission(ctx, sub))
		got, err := s.Submission(ctx, "s1")
		must(t, "submission", err)
		equal(t, "submission", got, sub)
	}},
	{"sparse fields round-trip", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		start := time.Now()
		sub := store.Submission{ID: "s1", CaseID: "c1", DestinationID: "d1", Progress: sealed.Progress{Status: sealed.Incomplete}, AnnouncedAttachments: []string{}}
		must(t, "create", s.CreateSubmission(ctx, sub))
		got, err := s.Submission(ctx, "s1")
		must(t, "submission", err)
		checkNow(t, "created", got.CreatedAt, start)
		if !got.UpdatedAt.Equal(got.CreatedAt) {
			t.Errorf("updated %v, want created %v", got.UpdatedAt, got.CreatedAt)
		}
		sub.CreatedAt, sub.UpdatedAt = got.CreatedAt, got.UpdatedAt
		equal(t, "submission", got, sub)
	}},
	{"duplicate id conflicts", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		sub := submission("s1", "d1", sealed.Incomplete, 0)
		must(t, "create", s.CreateSubmission(ctx, sub))
		other := submission("s1", "d2", sealed.Submitted, time.Hour)
		if err := s.CreateSubmission(ctx, other); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("create again: %v, want ErrConflict", err)
		}
		got, err := s.Submission(ctx, "s1")
		must(t, "submission", err)
		equal(t, "submission", got, sub)
	}},
	{"unknown submission is not found", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		if _, err := s.Submission(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("submission: %v, want ErrNotFound", err)
		}
		called := false
		_, err := s.UpdateSubmission(ctx, "nope", func(*store.Submission) error { called = true; return nil })
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("update: %v, want ErrNotFound", err)
		}
		if called {
			t.Error("update func called for an unknown submission")
		}
	}},
	{"update writes back", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		sub := submission("s1", "d1", sealed.Incomplete, 0)
		sub.SubmittedAt, sub.RoutedAt = nil, nil
		must(t, "create", s.CreateSubmission(ctx, sub))
		start := time.Now()
		got, err := s.UpdateSubmission(ctx, "s1", func(u *store.Submission) error {
			u.Status = sealed.Submitted
			u.SubmittedAt = ptr(at(2 * time.Minute))
			u.RoutedAt = ptr(at(3 * time.Minute))
			u.UploadedAttachments = append(u.UploadedAttachments, "a2-s1")
			return nil
		})
		must(t, "update", err)
		want := sub
		want.Status = sealed.Submitted
		want.SubmittedAt = ptr(at(2 * time.Minute))
		want.RoutedAt = ptr(at(3 * time.Minute))
		want.UploadedAttachments = []string{"a1-s1", "a2-s1"}
		checkNow(t, "updated", got.UpdatedAt, start)
		want.UpdatedAt = got.UpdatedAt
		equal(t, "returned", got, want)
		read, err := s.Submission(ctx, "s1")
		must(t, "submission", err)
		equal(t, "read back", read, want)
	}},
	{"update func error aborts", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		sub := submission("s1", "d1", sealed.Submitted, 0)
		must(t, "create", s.CreateSubmission(ctx, sub))
		_, err := s.UpdateSubmission(ctx, "s1", func(u *store.Submission) error {
			u.Status = sealed.Deleted
			return errAbort
		})
		if !errors.Is(err, errAbort) {
			t.Fatalf("update: %v, want the update func's error", err)
		}
		got, err := s.Submission(ctx, "s1")
		must(t, "submission", err)
		equal(t, "submission", got, sub)
	}},
	{"update cannot change the id or creation time", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		sub := submission("s1", "d1", sealed.Submitted, 0)
		must(t, "create", s.CreateSubmission(ctx, sub))
		if _, err := s.UpdateSubmission(ctx, "s1", func(u *store.Submission) error {
			u.ID = "s2"
			return nil
		}); err == nil {
			t.Fatal("update changed the id")
		}
		got, err := s.UpdateSubmission(ctx, "s1", func(u *store.Submission) error {
			u.CreatedAt = at(time.Hour)
			return nil
		})
		must(t, "update", err)
		equal(t, "created", got.CreatedAt, sub.CreatedAt)
	}},
	{"concurrent updates lose nothing", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		sub := submission("s1", "d1", sealed.Incomplete, 0)
		sub.UploadedAttachments = nil
		must(t, "create", s.CreateSubmission(ctx, sub))
		const n = 20
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				_, err := s.UpdateSubmission(ctx, "s1", func(u *store.Submission) error {
					u.UploadedAttachments = append(u.UploadedAttachments, fmt.Sprintf("att-%02d", i))
					return nil
				})
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			must(t, "concurrent update", err)
		}
		got, err := s.Submission(ctx, "s1")
		must(t, "submission", err)
		slices.Sort(got.UploadedAttachments)
		var want []string
		for i := range n {
			want = append(want, fmt.Sprintf("att-%02d", i))
		}
		equal(t, "attachments", got.UploadedAttachments, want)
	}},
	{"submissions by case", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		first := submission("s-first", "A", sealed.Accepted, 0)
		reply := submission("s-reply", "B", sealed.Incomplete, time.Hour)
		same := submission("s-same", "A", sealed.Submitted, time.Hour) // same time: by id
		other := submission("s-other", "A", sealed.Submitted, 0)
		for _, sub := range []*store.Submission{&first, &reply, &same} {
			sub.CaseID = "case-1"
		}
		for _, sub := range []store.Submission{reply, other, same, first} {
			must(t, "create "+sub.ID, s.CreateSubmission(ctx, sub))
		}
		list, err := s.SubmissionsByCase(ctx, "case-1")
		must(t, "submissions by case", err)
		equal(t, "submissions of case-1", list, []store.Submission{first, reply, same})
		// A new case has its submission before any event.
		if _, total, err := s.Events(ctx, "case-1", store.Page{}); err != nil || total != 0 {
			t.Fatalf("events of case-1: %d, %v", total, err)
		}
		list, err = s.SubmissionsByCase(ctx, "case-unknown")
		must(t, "submissions of an unknown case", err)
		if len(list) != 0 {
			t.Errorf("unknown case lists %d submissions", len(list))
		}
	}},
	{"pickup list", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		picked := submission("a-picked", "A", sealed.Submitted, 0)
		picked.PickedUpAt = ptr(at(time.Hour))
		unrouted := submission("a-unrouted", "A", sealed.Submitted, 0)
		unrouted.RoutedAt = nil
		all := []store.Submission{
			unrouted,
			submission("a3", "A", sealed.Submitted, 3*time.Minute),
			submission("b1", "B", sealed.Submitted, 4*time.Minute),
			submission("a1", "A", sealed.Submitted, 1*time.Minute),
			picked,
			submission("a-incomplete", "A", sealed.Incomplete, 0),
			submission("b-accepted", "B", sealed.Accepted, 0),
			submission("b-forwarded", "B", sealed.Forwarded, 0),
			submission("a2", "A", sealed.Submitted, 2*time.Minute),
			submission("b0", "B", sealed.Submitted, 0),
			submission("c1", "C", sealed.Submitted, 0),
		}
		for _, sub := range all {
			must(t, "create "+sub.ID, s.CreateSubmission(ctx, sub))
		}
		byID := make(map[string]store.Submission)
		for _, sub := range all {
			byID[sub.ID] = sub
		}
		for _, tc := range []struct {
			name  string
			dests []string
			page  store.Page
			want  []string
			total int
		}{
			{"one destination", []string{"A"}, store.Page{}, []string{"a-picked", "a1", "a2", "a3"}, 4},
			{"two destinations", []string{"B", "A"}, store.Page{}, []string{"a-picked", "b0", "a1", "a2", "a3", "b1"}, 6},
			{"paged", []string{"A", "B"}, store.Page{Limit: 2, Offset: 2}, []string{"a1", "a2"}, 6},
			{"past the end", []string{"A", "B"}, store.Page{Limit: 2, Offset: 6}, nil, 6},
			{"unknown destination", []string{"X"}, store.Page{}, nil, 0},
			{"no destinations", nil, store.Page{}, nil, 0},
		} {
			t.Run(tc.name, func(t *testing.T) {
				list, total, err := s.PickupList(ctx, tc.dests, tc.page)
				must(t, "pickup list", err)
				var got []string
				for _, sub := range list {
					got = append(got, sub.ID)
					equal(t, "listed "+sub.ID, sub, byID[sub.ID])
				}
				equal(t, "ids", got, tc.want)
				if total != tc.total {
					t.Errorf("total %d, want %d", total, tc.total)
				}
			})
		}
		// A fetch keeps a submission on the list; routing puts one on it; a
		// status change or deletion takes one off.
		for _, step := range []struct {
			name   string
			id     string
			change func(*store.Submission)
			want   []string
		}{
			{"fetch", "a1", func(u *store.Submission) { u.PickedUpAt = ptr(at(time.Hour)) },
				[]string{"a-picked", "a1", "a2", "a3"}},
			{"route", "a-unrouted", func(u *store.Submission) { u.RoutedAt = ptr(at(time.Hour)) },
				[]string{"a-picked", "a-unrouted", "a1", "a2", "a3"}},
			{"accept", "a1", func(u *store.Submission) { u.Status = sealed.Accepted },
				[]string{"a-picked", "a-unrouted", "a2", "a3"}},
			{"reject", "a-picked", func(u *store.Submission) { u.Status = sealed.Rejected },
				[]string{"a-unrouted", "a2", "a3"}},
			{"forward", "a2", func(u *store.Submission) { u.Status = sealed.Forwarded },
				[]string{"a-unrouted", "a3"}},
			{"delete", "a3", func(u *store.Submission) {
				u.Status, u.DeletedAt = sealed.Deleted, ptr(at(time.Hour))
			}, []string{"a-unrouted"}},
		} {
			_, err := s.UpdateSubmission(ctx, step.id, func(u *store.Submission) error {
				step.change(u)
				return nil
			})
			must(t, step.name+" "+step.id, err)
			list, total, err := s.PickupList(ctx, []string{"A"}, store.Page{})
			must(t, "pickup list after "+step.name, err)
			var got []string
			for _, sub := range list {
				got = append(got, sub.ID)
			}
			equal(t, "pickup list after "+step.name+" of "+step.id, got, step.want)
			if total != len(step.want) {
				t.Errorf("after %s: total %d, want %d", step.name, total, len(step.want))
			}
		}
	}},
	{"due submissions", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		// fixture builds a submission with the times each deadline looks at;
		// a negative duration leaves the time unset.
		fixture := func(id string, status sealed.Status, created, submitted, picked time.Duration) store.Submission {
			sub := submission(id, "A", status, created)
			sub.SubmittedAt, sub.RoutedAt, sub.PickedUpAt = nil, nil, nil
			if submitted >= 0 {
				sub.SubmittedAt, sub.RoutedAt = ptr(at(submitted)), ptr(at(submitted))
			}
			if picked >= 0 {
				sub.PickedUpAt = ptr(at(picked))
			}
			if status == sealed.Deleted {
				sub.DeletedAt = ptr(at(10 * time.Hour))
			}
			return sub
		}
		const none = -1
		h := time.Hour
		all := []store.Submission{
			fixture("inc-new", sealed.Incomplete, 2*h, none, none),
			fixture("inc-old", sealed.Incomplete, 0, none, none),
			fixture("inc-older", sealed.Incomplete, -h, none, none),
			fixture("inc-deleted", sealed.Deleted, -h, none, none),
			fixture("picked-accepted", sealed.Accepted, 0, 0, 2*h),
			fixture("picked-submitted", sealed.Submitted, 0, 0, h),
			fixture("picked-late", sealed.Accepted, 0, 0, 5*h),
			fixture("picked-deleted", sealed.Deleted, 0, 0, h),
			fixture("unpicked-submitted", sealed.Submitted, 0, 2*h, none),
			fixture("unpicked-rejected", sealed.Rejected, 0, h, none),
			fixture("unpicked-forwarded", sealed.Forwarded, 0, 3*h, none),
			fixture("unpicked-late", sealed.Submitted, 0, 5*h, none),
			fixture("unpicked-deleted", sealed.Deleted, 0, h, none),
		}
		byID := make(map[string]store.Submission)
		for _, sub := range all {
			must(t, "create "+sub.ID, s.CreateSubmission(ctx, sub))
			byID[sub.ID] = sub
		}
		for _, tc := range []struct {
			name     string
			deadline store.Deadline
			before   time.Time
			limit    int
			want     []string
		}{
			{"incomplete", store.DeadlineIncomplete, at(h), 0, []string{"inc-older", "inc-old"}},
			{"incomplete, cut-off excluded", store.DeadlineIncomplete, at(0), 0, []string{"inc-older"}},
			{"incomplete, limited", store.DeadlineIncomplete, at(10 * h), 1, []string{"inc-older"}},
			{"picked up", store.DeadlinePickedUp, at(4 * h), 0, []string{"picked-submitted", "picked-accepted"}},
			{"picked up, none due", store.DeadlinePickedUp, at(h), 0, nil},
			{"unpicked reject", store.DeadlineUnpickedReject, at(4 * h), 0, []string{"unpicked-submitted"}},
			{"unpicked delete", store.DeadlineUnpickedDelete, at(4 * h), 0,
				[]string{"unpicked-rejected", "unpicked-submitted", "unpicked-forwarded"}},
			{"unpicked delete, limited", store.DeadlineUnpickedDelete, at(10 * h), 2, []string{"unpicked-rejected", "unpicked-submitted"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				list, err := s.DueSubmissions(ctx, tc.deadline, tc.before, tc.limit)
				must(t, "due submissions", err)
				var got []string
				for _, sub := range list {
					got = append(got, sub.ID)
					equal(t, "listed "+sub.ID, sub, byID[sub.ID])
				}
				equal(t, "ids", got, tc.want)
			})
		}
		t.Run("done work leaves the list", func(t *testing.T) {
			_, err := s.UpdateSubmission(ctx, "unpicked-submitted", func(u *store.Submission) error {
				u.Status = sealed.Rejected
				return nil
			})
			must(t, "reject", err)
			list, err := s.DueSubmissions(ctx, store.DeadlineUnpickedReject, at(10*h), 0)
			must(t, "due submissions", err)
			if len(list) != 1 || list[0].ID != "unpicked-late" {
				t.Errorf("after reject: %d due", len(list))
			}
			_, err = s.UpdateSubmission(ctx, "inc-older", func(u *store.Submission) error {
				u.Status, u.DeletedAt = sealed.Deleted, ptr(at(h))
				return nil
			})
			must(t, "delete", err)
			list, err = s.DueSubmissions(ctx, store.DeadlineIncomplete, at(h), 0)
			must(t, "due submissions", err)
			if len(list) != 1 || list[0].ID != "inc-old" {
				t.Errorf("after delete: %d due", len(list))
			}
		})
		t.Run("unknown deadline", func(t *testing.T) {
			if _, err := s.DueSubmissions(ctx, "someday", at(h), 0); err == nil {
				t.Fatal("listed for an unknown deadline")
			}
		})
	}},
}

// overdueTests are the cases of Store.Overdue.
var overdueTests = []test{
	{"per destination and cut-off", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		h := time.Hour
		fixture := func(id, dest string, status sealed.Status, submitted time.Duration, picked bool) {
			sub := submission(id, dest, status, submitted-time.Minute)
			sub.SubmittedAt, sub.RoutedAt = ptr(at(submitted)), ptr(at(submitted))
			if picked {
				sub.PickedUpAt = ptr(at(submitted + time.Minute))
			}
			must(t, "create "+id, s.CreateSubmission(ctx, sub))
		}
		fixture("a-old", "A", sealed.Submitted, 0, false)
		fixture("a-mid", "A", sealed.Submitted, 5*h, false)
		fixture("a-new", "A", sealed.Submitted, 9*h, false)
		fixture("a-picked", "A", sealed.Submitted, 0, true)
		fixture("a-accepted", "A", sealed.Accepted, 0, false)
		fixture("b-older", "B", sealed.Submitted, -h, false)
		fixture("c-new", "C", sealed.Submitted, 9*h, false)
		sub := submission("d-incomplete", "D", sealed.Incomplete, 0)
		sub.SubmittedAt, sub.RoutedAt = nil, nil
		must(t, "create d-incomplete", s.CreateSubmission(ctx, sub))

		got, err := s.Overdue(ctx, []time.Time{at(6 * h), at(2 * h)})
		must(t, "overdue", err)
		equal(t, "overdue", got, []store.OverdueDestination{
			{DestinationID: "B", Counts: []int{1, 1}, Oldest: at(-h)},
			{DestinationID: "A", Counts: []int{2, 1}, Oldest: at(0)},
		})
		got, err = s.Overdue(ctx, []time.Time{at(-2 * h)})
		must(t, "overdue", err)
		if len(got) != 0 {
			t.Errorf("before every submission: %+v", got)
		}
	}},
	{"cut-offs checked", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		for _, cutoffs := range [][]time.Time{nil, {at(0), at(time.Hour)}, {at(0), at(0)}} {
			if _, err := s.Overdue(ctx, cutoffs); err == nil {
				t.Errorf("cut-offs %v accepted", cutoffs)
			}
		}
	}},
}

// event returns an event of caseID.
func event(jti, caseID string, issued time.Duration) store.Event {
	return store.Event{
		JTI:          jti,
		CaseID:       caseID,
		SubmissionID: "sub-" + caseID,
		Type:         "https://schema.fitko.de/fit-connect/events/submit-submission",
		Issuer:       "https://amtsbote.example",
		IssuedAt:     at(issued),
		Token:        "eyJhbGciOiJQUzUxMiJ9.eyJqdGkiOiI" + jti + "In0.c2ln",
	}
}

// foldProgress is the ledger's fold: from the state the gateway creates,
// every event in stream order along sealed's status model.
func foldProgress(s *store.Submission, evs []store.Event) {
	s.Progress = sealed.Progress{Status: sealed.Incomplete}
	for _, e := range evs {
		_, _ = s.Progress.Apply(e.Type, e.IssuedAt)
	}
}

// noFold leaves the progress as it is.
func noFold(*store.Submission, []store.Event) {}

// lifecycleEvent returns the event uri of the submission of caseID at
// stream position seq.
func lifecycleEvent(caseID, uri string, seq uint64) store.Event {
	e := event(fmt.Sprintf("%s-%d", caseID, seq), caseID, time.Duration(seq)*time.Minute)
	e.Type, e.StreamSeq = uri, seq
	return e
}

var eventTests = []test{
	{"record in stream order, idempotent on jti", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		// Arrival out of stream order: the log keeps stream order.
		evs := []store.Event{
			event("e3", "case-1", 3*time.Second),
			event("e1", "case-1", 1*time.Second),
			event("x1", "case-2", 0),
			event("e2", "case-1", 2*time.Second),
		}
		evs[0].StreamSeq, evs[1].StreamSeq, evs[2].StreamSeq, evs[3].StreamSeq = 30, 10, 15, 20
		for _, e := range evs {
			p, err := s.ProjectEvent(ctx, e, noFold)
			if !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("project %s of an unknown submission: %v, want ErrNotFound", e.JTI, err)
			}
			if !p.Recorded {
				t.Errorf("%s not recorded", e.JTI)
			}
		}
		replay := event("e1", "case-1", time.Hour)
		replay.Token, replay.StreamSeq = "a different token", 99
		for _, e := range []store.Event{replay, evs[0]} {
			if p, _ := s.ProjectEvent(ctx, e, noFold); p.Recorded {
				t.Errorf("replay of %s recorded again", e.JTI)
			}
		}

		got, total, err := s.Events(ctx, "case-1", store.Page{})
		must(t, "events", err)
		equal(t, "events", got, []store.Event{evs[1], evs[3], evs[0]})
		if total != 3 {
			t.Errorf("total %d, want 3", total)
		}
		got, total, err = s.Events(ctx, "case-2", store.Page{})
		must(t, "events", err)
		equal(t, "events", got, []store.Event{evs[2]})
		if total != 1 {
			t.Errorf("total %d, want 1", total)
		}
		got, total, err = s.Events(ctx, "case-none", store.Page{})
		must(t, "events", err)
		if len(got) != 0 || total != 0 {
			t.Errorf("events of unknown case: %v, total %d", got, total)
		}
	}},
	{"paging", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		var jtis []string
		for i := range 7 {
			e := event(fmt.Sprintf("e%d", i), "case-1", 0)
			e.StreamSeq = uint64(i + 1)
			_, err := s.ProjectEvent(ctx, e, noFold)
			if !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("project: %v", err)
			}
			jtis = append(jtis, e.JTI)
		}
		for _, tc := range []struct {
			page store.Page
			want []string
		}{
			{store.Page{}, jtis},
			{store.Page{Limit: 3}, jtis[:3]},
			{store.Page{Limit: 3, Offset: 3}, jtis[3:6]},
			{store.Page{Limit: 3, Offset: 6}, jtis[6:]},
			{store.Page{Limit: 3, Offset: 9}, nil},
		} {
			t.Run(fmt.Sprintf("limit %d offset %d", tc.page.Limit, tc.page.Offset), func(t *testing.T) {
				list, total, err := s.Events(ctx, "case-1", tc.page)
				must(t, "events", err)
				var got []string
				for _, e := range list {
					got = append(got, e.JTI)
				}
				equal(t, "jtis", got, tc.want)
				if total != 7 {
					t.Errorf("total %d, want 7", total)
				}
			})
		}
	}},
	{"the fold sees the submission's events in stream order, whatever the arrival", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		sub := submission("s1", "d1", sealed.Incomplete, 0)
		sub.Progress = sealed.Progress{Status: sealed.Incomplete}
		sub.CaseID = "case-s1"
		must(t, "create", s.CreateSubmission(ctx, sub))
		create := lifecycleEvent("case-s1", "https://schema.fitko.de/fit-connect/events/create-submission", 1)
		submit := lifecycleEvent("case-s1", "https://schema.fitko.de/fit-connect/events/submit-submission", 2)
		notify := lifecycleEvent("case-s1", "https://schema.fitko.de/fit-connect/events/notify-submission", 3)
		accept := lifecycleEvent("case-s1", "https://schema.fitko.de/fit-connect/events/accept-submission", 4)
		for _, e := range []*store.Event{&create, &submit, &notify, &accept} {
			e.SubmissionID = "s1"
		}
		// The accept arrives first: alone it is no transition of an
		// incomplete submission; the submit and notify arriving later make it one.
		var seen [][]string
		fold := func(s *store.Submission, evs []store.Event) {
			var jtis []string
			for _, e := range evs {
				jtis = append(jtis, e.JTI)
			}
			seen = append(seen, jtis)
			foldProgress(s, evs)
		}
		p, err := s.ProjectEvent(ctx, accept, fold)
		must(t, "project accept", err)
		if !p.Recorded || p.Changed || p.Submission.Status != sealed.Incomplete {
			t.Errorf("accept alone: %+v, want recorded, unchanged, incomplete", p)
		}
		p, err = s.ProjectEvent(ctx, submit, fold)
		must(t, "project submit", err)
		if !p.Changed || p.Submission.Status != sealed.Accepted || p.Submission.SubmittedAt == nil || !p.Submission.SubmittedAt.Equal(submit.IssuedAt) {
			t.Errorf("after submit: %+v, want accepted, submitted at the submit's iat", p.Submission.Progress)
		}
		p, err = s.ProjectEvent(ctx, notify, fold)
		must(t, "project notify", err)
		if !p.Changed || p.Submission.PickedUpAt == nil || !p.Submission.PickedUpAt.Equal(notify.IssuedAt) {
			t.Errorf("after notify: %+v, want picked up at the notify's iat", p.Submission.Progress)
		}
		p, err = s.ProjectEvent(ctx, create, fold)
		must(t, "project create", err)
		if p.Changed {
			t.Errorf("a late create changed the progress: %+v", p.Submission.Progress)
		}
		equal(t, "folds", seen, [][]string{
			{accept.JTI},
			{submit.JTI, accept.JTI},
			{submit.JTI, notify.JTI, accept.JTI},
			{create.JTI, submit.JTI, notify.JTI, accept.JTI},
		})
		got, err := s.Submission(ctx, "s1")
		must(t, "read", err)
		equal(t, "stored progress", got.Progress, p.Submission.Progress)
		if got.Status != sealed.Accepted {
			t.Errorf("status %s, want accepted", got.Status)
		}
		again, err := s.ProjectEvent(ctx, accept, fold)
		must(t, "replay", err)
		if again.Recorded || again.Changed {
			t.Errorf("replayed accept: %+v, want neither recorded nor changed", again)
		}
		alien := lifecycleEvent("case-other", "https://schema.fitko.de/fit-connect/events/reject-submission", 5)
		alien.SubmissionID = "s1"
		if _, err := s.ProjectEvent(ctx, alien, fold); !errors.Is(err, store.ErrConflict) {
			t.Errorf("event of another case naming s1: %v, want ErrConflict", err)
		}
		if _, total, _ := s.Events(ctx, "case-other", store.Page{}); total != 0 {
			t.Errorf("the other case's event was recorded")
		}
	}},
	{"concurrent projections of one submission converge", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		sub := submission("s1", "d1", sealed.Incomplete, 0)
		sub.Progress = sealed.Progress{Status: sealed.Incomplete}
		sub.CaseID = "case-s1"
		must(t, "create", s.CreateSubmission(ctx, sub))
		uris := []string{"create-submission", "submit-submission", "notify-submission", "forward-submission", "accept-submission"}
		var wg sync.WaitGroup
		for round := range 4 {
			for i, name := range uris {
				wg.Go(func() {
					e := lifecycleEvent("case-s1", "https://schema.fitko.de/fit-connect/events/"+name, uint64(i+1))
					e.SubmissionID = "s1"
					if _, err := s.ProjectEvent(ctx, e, foldProgress); err != nil {
						t.Errorf("round %d: project %s: %v", round, name, err)
					}
				})
			}
		}
		wg.Wait()
		got, err := s.Submission(ctx, "s1")
		must(t, "read", err)
		if got.Status != sealed.Accepted || got.SubmittedAt == nil || got.PickedUpAt == nil {
			t.Errorf("progress %+v, want accepted, submitted and picked up", got.Progress)
		}
		_, total, err := s.Events(ctx, "case-s1", store.Page{})
		must(t, "events", err)
		if total != len(uris) {
			t.Errorf("total %d, want %d", total, len(uris))
		}
	}},
}

var idempotencyTests = []test{
	{"first write wins", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		first := store.IdempotencyRecord{
			Key:         "submit:s1",
			RequestHash: []byte{0x01, 0x02, 0x00, 0xff},
			Status:      202,
			Body:        []byte(`{"submissionId":"s1"}`),
			CreatedAt:   at(0),
		}
		got, created, err := s.PutIdempotency(ctx, first)
		must(t, "put", err)
		if !created {
			t.Error("first put not created")
		}
		equal(t, "first put", got, first)

		second := store.IdempotencyRecord{Key: "submit:s1", RequestHash: []byte{0x09}, Status: 500, Body: []byte("other"), CreatedAt: at(time.Hour)}
		got, created, err = s.PutIdempotency(ctx, second)
		must(t, "put again", err)
		if created {
			t.Error("second put created")
		}
		equal(t, "second put", got, first)

		start := time.Now()
		other := store.IdempotencyRecord{Key: "submit:s2", RequestHash: []byte{0x02}, Status: 204}
		got, created, err = s.PutIdempotency(ctx, other)
		must(t, "put other", err)
		if !created {
			t.Error("other key not created")
		}
		checkNow(t, "created", got.CreatedAt, start)
		other.CreatedAt = got.CreatedAt
		equal(t, "other", got, other)
		again, _, err := s.PutIdempotency(ctx, store.IdempotencyRecord{Key: "submit:s2"})
		must(t, "put other again", err)
		equal(t, "other read back", again, other)
		read, err := s.Idempotency(ctx, "submit:s1")
		must(t, "read", err)
		equal(t, "read", read, first)
		if _, err := s.Idempotency(ctx, "submit:none"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("read of a missing record: %v, want ErrNotFound", err)
		}
	}},
	{"concurrent puts create once", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		const n = 10
		var created atomic.Int32
		var wg sync.WaitGroup
		results := make(chan store.IdempotencyRecord, n)
		for i := range n {
			wg.Go(func() {
				r, c, err := s.PutIdempotency(ctx, store.IdempotencyRecord{
					Key: "submit:race", RequestHash: []byte{byte(i)}, Status: 200 + i, Body: []byte{byte(i)}, CreatedAt: at(0),
				})
				if err != nil {
					t.Errorf("put %d: %v", i, err)
					return
				}
				if c {
					created.Add(1)
				}
				results <- r
			})
		}
		wg.Wait()
		close(results)
		if created.Load() != 1 {
			t.Fatalf("%d puts created the record, want 1", created.Load())
		}
		var first *store.IdempotencyRecord
		for r := range results {
			if first == nil {
				first = &r
				continue
			}
			equal(t, "record", r, *first)
		}
	}},
}
