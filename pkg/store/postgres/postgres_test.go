package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/pkg/store/postgres"
	"github.com/amtsbote/amtsbote/pkg/store/storetest"
)

// baseURL returns the test database's URL. Without one the test skips, or
// fails under CI, where the database belongs to the run.
func baseURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("AMTSBOTE_TEST_DATABASE_URL")
	if u == "" {
		if os.Getenv("CI") != "" {
			tb.Fatal("AMTSBOTE_TEST_DATABASE_URL is unset, and CI needs the PostgreSQL tests")
		}
		tb.Skip("AMTSBOTE_TEST_DATABASE_URL is unset; set it (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to run the PostgreSQL tests")
	}
	return u
}

// freshSchema creates an empty schema for one test, drops it afterwards and
// returns a URL whose search_path selects it.
func freshSchema(tb testing.TB) string {
	tb.Helper()
	base := baseURL(tb)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatalf("connect to AMTSBOTE_TEST_DATABASE_URL: %v", err)
	}
	defer conn.Close(ctx)
	schema := "t_" + hex.EncodeToString(randomBytes(tb, 8))
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		tb.Fatalf("create schema: %v", err)
	}
	tb.Cleanup(func() {
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Errorf("connect to drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return withSearchPath(tb, base, schema)
}

// withSearchPath sets search_path in a URL or key=value connection string.
func withSearchPath(tb testing.TB, conn, schema string) string {
	tb.Helper()
	if !strings.HasPrefix(conn, "postgres://") && !strings.HasPrefix(conn, "postgresql://") {
		return conn + " search_path=" + schema
	}
	u, err := url.Parse(conn)
	if err != nil {
		tb.Fatalf("parse AMTSBOTE_TEST_DATABASE_URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func randomBytes(tb testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return b
}

func open(tb testing.TB) *postgres.DB {
	tb.Helper()
	db, err := postgres.Open(context.Background(), freshSchema(tb))
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	return db
}

func TestConformance(t *testing.T) {
	baseURL(t)
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}

func BenchmarkStore(b *testing.B) {
	baseURL(b)
	storetest.Bench(b, func(b *testing.B) store.Store { return open(b) })
}

func TestConcurrentOpenMigratesOnce(t *testing.T) {
	ctx := context.Background()
	u := freshSchema(t)
	const n = 4
	var wg sync.WaitGroup
	dbs := make([]*postgres.DB, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { dbs[i], errs[i] = postgres.Open(ctx, u) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		defer dbs[i].Close()
	}
	c := store.Client{ID: "c1", Name: "Portal", Scopes: []string{"send:region:DE"}}
	if err := dbs[0].CreateClient(ctx, "cli", c); err != nil {
		t.Fatalf("create client: %v", err)
	}
	got, err := dbs[n-1].Client(ctx, "c1")
	if err != nil {
		t.Fatalf("client through another pool: %v", err)
	}
	if got.Name != c.Name {
		t.Errorf("client: %+v", got)
	}
}

func TestOpenNeedsASchema(t *testing.T) {
	u := withSearchPath(t, baseURL(t), "t_does_not_exist_"+hex.EncodeToString(randomBytes(t, 4)))
	if db, err := postgres.Open(context.Background(), u); err == nil {
		db.Close()
		t.Fatal("opened with a search_path naming no schema")
	}
}

func TestReferenceConformance(t *testing.T) {
	baseURL(t)
	storetest.RunReference(t, func(t *testing.T) store.Store { return open(t) })
}

// TestTransient tells PostgreSQL being unreachable from other failures,
// with the errors the server and the driver give.
func TestTransient(t *testing.T) {
	db := open(t)
	ctx := context.Background()

	_, refused := pgx.Connect(ctx, "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2")
	conn, err := pgx.Connect(ctx, baseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	_, terminated := conn.Exec(ctx, "SELECT pg_terminate_backend(pg_backend_pid())")
	conn.Close(ctx)
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(db.CreateClient(ctx, "test", store.Client{ID: "c1"}))
	conflict := db.CreateClient(ctx, "test", store.Client{ID: "c1"})
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", refused, true},
		{"backend terminated", terminated, true},
		{"unique violation", conflict, false},
		{"another error", errors.New("boom"), false},
	} {
		if tt.err == nil {
			t.Fatalf("%s: no error to classify", tt.name)
		}
		if got := db.Transient(tt.err); got != tt.want {
			t.Errorf("%s (%v): Transient = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}
