// Package flowtest holds the fixtures the tests of the submission flow's
// services (gateway, router, ledger) share: Amtsbote's signing key, fresh
// stores on SQLite and PostgreSQL, a component running in the background,
// polling with a deadline, and reads of what JetStream streams and
// Prometheus registries hold. Everything it starts ends with the test.
package flowtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/issuer"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/pkg/store/postgres"
	"github.com/amtsbote/amtsbote/pkg/store/sqlite"
)

// DatabaseURLEnv names the environment variable holding the PostgreSQL
// test database's URL.
const DatabaseURLEnv = "AMTSBOTE_TEST_DATABASE_URL"

// signer is Amtsbote's test signing key: RSA-4096 is slow to make, so it
// is made once per test binary, on first use.
var signer = sync.OnceValues(func() (jose.KeyPair, error) {
	return jose.GenerateKeyPair(jose.Signing, "amtsbote-test-signing", "Amtsbote test")
})

// Signer returns Amtsbote's signing key for tests (PS512, kid
// "amtsbote-test-signing"), the same key on every call.
func Signer(tb testing.TB) jose.KeyPair {
	tb.Helper()
	kp, err := signer()
	if err != nil {
		tb.Fatalf("generate signing key: %v", err)
	}
	return kp
}

// JTI returns the jti Amtsbote's issuers signing with Signer give their
// event uri about a submission.
func JTI(tb testing.TB, submissionID, uri string) string {
	tb.Helper()
	return sealed.NewJTIKey(Signer(tb).Private.D.Bytes()).EventJTI(submissionID, uri)
}

// Issuer returns an issuer of Amtsbote's events on b, signing with
// Signer as Amtsbote at url.
func Issuer(tb testing.TB, b *bus.Bus, url string) *issuer.Issuer {
	tb.Helper()
	i, err := issuer.New(b, Signer(tb), url, nil)
	if err != nil {
		tb.Fatalf("new issuer: %v", err)
	}
	return i
}

// Backend is a store implementation a test runs on.
type Backend struct {
	// Name is the subtest's name: "sqlite" or "postgres".
	Name string
	// Open returns a fresh, empty store, closed when the test ends.
	Open func(t *testing.T) store.Store
}

// Backends are SQLite and PostgreSQL. A test runs a subtest per backend;
// the PostgreSQL one skips without a test database (see OpenPostgres).
func Backends() []Backend {
	return []Backend{
		{"sqlite", func(t *testing.T) store.Store { t.Helper(); return OpenSQLite(t) }},
		{"postgres", func(t *testing.T) store.Store { t.Helper(); return OpenPostgres(t) }},
	}
}

// OpenSQLite opens a store in a new file under tb.TempDir() and closes it
// when the test ends.
func OpenSQLite(tb testing.TB) *sqlite.DB {
	tb.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "amtsbote.db"))
	if err != nil {
		tb.Fatalf("open sqlite: %v", err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	return db
}

// OpenPostgres opens a store in a fresh schema of the database
// DatabaseURLEnv names and drops the schema when the test ends. Without a
// database the test skips, or fails under CI, where the database belongs
// to the run.
func OpenPostgres(tb testing.TB) *postgres.DB {
	tb.Helper()
	db, err := postgres.Open(context.Background(), FreshSchema(tb))
	if err != nil {
		tb.Fatalf("open postgres: %v", err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	return db
}

// FreshSchema creates an empty schema in the test database, drops it when
// the test ends and returns the database's connection string (URL or
// key=value form, as given) with search_path selecting the schema. It
// skips or fails as OpenPostgres does.
func FreshSchema(tb testing.TB) string {
	tb.Helper()
	base := os.Getenv(DatabaseURLEnv)
	if base == "" {
		if os.Getenv("CI") != "" {
			tb.Fatal(DatabaseURLEnv + " is unset, and CI needs the PostgreSQL tests")
		}
		tb.Skip(DatabaseURLEnv + " is unset; set it (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to run the PostgreSQL tests")
	}
	ctx := context.Background()
	exec := func(sql string) error {
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			return fmt.Errorf("connect to %s: %w", DatabaseURLEnv, err)
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	schema := "t_" + hex.EncodeToString(b)
	if err := exec("CREATE SCHEMA " + schema); err != nil {
		tb.Fatalf("create schema: %v", err)
	}
	tb.Cleanup(func() {
		if err := exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	if !strings.HasPrefix(base, "postgres://") && !strings.HasPrefix(base, "postgresql://") {
		return base + " search_path=" + schema
	}
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatalf("parse %s: %v", DatabaseURLEnv, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Eventually polls f until it returns nil, and fails the test with f's
// last error when timeout passes first.
func Eventually(tb testing.TB, timeout time.Duration, f func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Runner is a component that runs until its context is cancelled.
type Runner interface {
	Run(ctx context.Context) error
}

// Running is a Runner started by Start.
type Running struct {
	cancel  context.CancelFunc
	done    chan error
	stopped sync.Once
}

// Start runs r in the background until Stop is called or the test ends.
func Start(tb testing.TB, r Runner) *Running {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	run := &Running{cancel: cancel, done: make(chan error, 1)}
	go func() { run.done <- r.Run(ctx) }()
	tb.Cleanup(func() { run.Stop(tb) })
	return run
}

// Stop cancels the component and waits for Run to return, failing the
// test unless it returns nil within 30 seconds. Later calls do nothing.
func (r *Running) Stop(tb testing.TB) {
	tb.Helper()
	r.stopped.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				tb.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			tb.Fatal("did not stop within 30s")
		}
	})
}

// Messages returns the messages stream holds whose subject starts with
// prefix ("" for all), oldest first. Messages deleted or, on a work
// queue, acknowledged are gone.
func Messages(tb testing.TB, b *bus.Bus, stream, prefix string) []*jetstream.RawStreamMsg {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := b.JetStream().Stream(ctx, stream)
	if err != nil {
		tb.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatalf("stream %s info: %v", stream, err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		if strings.HasPrefix(m.Subject, prefix) {
			out = append(out, m)
		}
	}
	return out
}

// Settled waits until the durable consumer of stream has settled (acked
// or terminated) every message the stream ever stored.
func Settled(tb testing.TB, b *bus.Bus, stream, durable string) {
	tb.Helper()
	Eventually(tb, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := b.JetStream().Stream(ctx, stream)
		if err != nil {
			return err
		}
		si, err := s.Info(ctx)
		if err != nil {
			return err
		}
		c, err := b.JetStream().Consumer(ctx, stream, durable)
		if err != nil {
			return err
		}
		ci, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if ci.AckFloor.Stream != si.State.LastSeq || ci.NumPending != 0 || ci.NumAckPending != 0 {
			return fmt.Errorf("%s/%s settled up to %d of %d, %d pending, %d unacknowledged",
				stream, durable, ci.AckFloor.Stream, si.State.LastSeq, ci.NumPending, ci.NumAckPending)
		}
		return nil
	})
}

// Counter returns the sum of reg's counters name whose labels include
// labels (nil for all); 0 when there are none.
func Counter(tb testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatalf("gather: %v", err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metric
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// Buffer is a bytes.Buffer that goroutines may write while the test reads
// it: a log sink for concurrent handlers, a child process's report lines.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
