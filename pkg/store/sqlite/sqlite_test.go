package sqlite_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/pkg/store/sqlite"
	"github.com/amtsbote/amtsbote/pkg/store/storetest"
)

func open(tb testing.TB) *sqlite.DB {
	tb.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "amtsbote.db"))
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	return db
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}

func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store { return open(b) })
}

func TestReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "amtsbote.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	c := store.Client{ID: "c1", Name: "Portal", Scopes: []string{"send:region:DE"}}
	if err := db.CreateClient(ctx, "cli", c); err != nil {
		t.Fatalf("create client: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	// Migrating an up-to-date file again changes nothing.
	db, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db.Close()
	got, err := db.Client(ctx, "c1")
	if err != nil {
		t.Fatalf("client after reopen: %v", err)
	}
	if got.Name != c.Name {
		t.Errorf("client after reopen: %+v", got)
	}
	if err := db.CreateClient(ctx, "cli", c); !errors.Is(err, store.ErrConflict) {
		t.Errorf("create again after reopen: %v, want ErrConflict", err)
	}
}

func TestOpenRefusesMemory(t *testing.T) {
	for _, path := range []string{"", ":memory:", "file.db?mode=memory"} {
		t.Run(path, func(t *testing.T) {
			if db, err := sqlite.Open(context.Background(), path); err == nil {
				db.Close()
				t.Fatal("opened")
			}
		})
	}
}

func TestReferenceConformance(t *testing.T) {
	storetest.RunReference(t, func(t *testing.T) store.Store { return open(t) })
}
