package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/store"
)

var installationTests = []test{
	{"first record wins", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		id, used, err := s.Installation(ctx)
		must(t, "installation", err)
		if id != "" || used {
			t.Fatalf("new store: installation %q, used %v; want none, unused", id, used)
		}
		got, err := s.RecordInstallation(ctx, "a")
		must(t, "record a", err)
		if got != "a" {
			t.Fatalf("record a: %q", got)
		}
		if got, err = s.RecordInstallation(ctx, "b"); err != nil || got != "a" {
			t.Fatalf("record b: %q, %v; want a", got, err)
		}
		if id, used, err = s.Installation(ctx); err != nil || id != "a" || used {
			t.Fatalf("installation: %q, used %v, %v; want a, unused", id, used, err)
		}
	}},
	{"empty id refused", func(t *testing.T, s store.Store) {
		if _, err := s.RecordInstallation(context.Background(), ""); err == nil {
			t.Fatal("recorded an empty id")
		}
	}},
	{"used once it holds a submission", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		must(t, "create", s.CreateSubmission(ctx, submission("s1", "d1", sealed.Incomplete, 0)))
		if _, used, err := s.Installation(ctx); err != nil || !used {
			t.Fatalf("installation: used %v, %v; want used", used, err)
		}
	}},
	{"used once it holds an event", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		// An event of a submission the store does not know is recorded all the same.
		if _, err := s.ProjectEvent(ctx, event("e1", "c1", 0), noFold); err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("project: %v", err)
		}
		if _, used, err := s.Installation(ctx); err != nil || !used {
			t.Fatalf("installation: used %v, %v; want used", used, err)
		}
	}},
}
