package ledger_test

import (
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

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/pkg/store/postgres"
	"github.com/amtsbote/amtsbote/pkg/store/sqlite"
)

const (
	issuer  = "https://amtsbote.test"
	service = "urn:de:fim:leika:leistung:99050012104000"
)

var (
	signerOnce sync.Once
	signerKey  jose.KeyPair
	signerErr  error
)

// signer returns Amtsbote's signing key, generated once per test binary.
func signer(t testing.TB) jose.KeyPair {
	t.Helper()
	signerOnce.Do(func() {
		signerKey, signerErr = jose.GenerateKeyPair(jose.Signing, "amtsbote-test-signing", "Amtsbote test")
	})
	if signerErr != nil {
		t.Fatalf("generate signing key: %v", signerErr)
	}
	return signerKey
}

// backend opens a fresh, empty store for a test.
type backend struct {
	name string
	open func(t *testing.T) store.Store
}

// backends are SQLite, and PostgreSQL when AMTSBOTE_TEST_DATABASE_URL is
// set (required under CI).
func backends(t *testing.T) []backend {
	t.Helper()
	bs := []backend{{"sqlite", openSQLite}}
	if os.Getenv("AMTSBOTE_TEST_DATABASE_URL") != "" {
		bs = append(bs, backend{"postgres", openPostgres})
	} else if os.Getenv("CI") != "" {
		t.Fatal("AMTSBOTE_TEST_DATABASE_URL is unset, and CI needs the PostgreSQL tests")
	} else {
		t.Log("AMTSBOTE_TEST_DATABASE_URL is unset; running on SQLite only")
	}
	return bs
}

func openSQLite(t *testing.T) store.Store {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "amtsbote.db"))
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// openPostgres opens the store in a fresh schema it drops afterwards.
func openPostgres(t *testing.T) store.Store {
	t.Helper()
	ctx := context.Background()
	base := os.Getenv("AMTSBOTE_TEST_DATABASE_URL")
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to AMTSBOTE_TEST_DATABASE_URL: %v", err)
	}
	defer conn.Close(ctx)
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	schema := "t_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("connect to drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse AMTSBOTE_TEST_DATABASE_URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	db, err := postgres.Open(ctx, u.String())
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// running is a ledger (or router) running in the background until stopped.
type running struct {
	cancel  context.CancelFunc
	done    chan error
	stopped sync.Once
}

// stop cancels it and waits for Run to return nil; later calls
// do nothing.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.stopped.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("did not stop")
		}
	})
}

// start runs rt until the test ends or stop is called.
func start(t *testing.T, rt interface{ Run(context.Context) error }) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- rt.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// eventually polls f until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// messages returns every message stored in stream whose subject starts
// with prefix, oldest first.
func messages(t *testing.T, b *bus.Bus, stream, prefix string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := b.JetStream().Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", stream, err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted or acknowledged (work queue)
		}
		if strings.HasPrefix(m.Subject, prefix) {
			out = append(out, m)
		}
	}
	return out
}

// counter returns the sum of the counters name whose labels include
// labels in reg; 0 if there are none.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
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

// settled waits until the consumer durable of stream has settled (acked
// or termed) every message the stream ever stored.
func settled(t *testing.T, b *bus.Bus, stream, durable string) {
	t.Helper()
	eventually(t, 30*time.Second, func() error {
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

// newSubmission returns a submission in status to a fresh destination,
// with the times of its steps: nil times stay unset.
func newSubmission(status store.SubmissionStatus, created time.Time, submitted, routed, picked *time.Time) store.Submission {
	return store.Submission{
		ID:                   uuid.NewString(),
		CaseID:               uuid.NewString(),
		DestinationID:        uuid.NewString(),
		SenderClientID:       "portal",
		ServiceIdentifier:    service,
		Status:               status,
		AnnouncedAttachments: []string{uuid.NewString(), uuid.NewString()},
		UploadedAttachments:  []string{},
		CreatedAt:            created,
		SubmittedAt:          submitted,
		RoutedAt:             routed,
		PickedUpAt:           picked,
	}
}

func createSubmission(t *testing.T, st store.Store, s store.Submission) {
	t.Helper()
	if err := st.CreateSubmission(context.Background(), s); err != nil {
		t.Fatalf("create submission: %v", err)
	}
}

// sign returns a SET of event uri about s, issued by iss.
func sign(t *testing.T, uri, iss string, s store.Submission, payload any) (set.Claims, string) {
	t.Helper()
	c, err := set.New(uri, iss, s.ID, s.CaseID, payload, time.Now())
	if err != nil {
		t.Fatalf("new %s: %v", uri, err)
	}
	token, err := set.Sign(c, signer(t).Private, signer(t).Public.KeyID)
	if err != nil {
		t.Fatalf("sign %s: %v", uri, err)
	}
	return c, token
}

// publishEvent publishes data to the EVENTS subject of caseID as the
// gateway does, with the given CloudEvent type and Nats-Msg-Id.
func publishEvent(t *testing.T, b *bus.Bus, caseID, typ string, data []byte, msgID string) {
	t.Helper()
	subject, err := bus.EventsSubject(caseID)
	if err != nil {
		t.Fatal(err)
	}
	ev := event.New()
	ev.SetID(msgID)
	ev.SetSource(issuer)
	ev.SetType(typ)
	if err := ev.SetData("application/jose", data); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.Publish(ctx, subject, ev, msgID); err != nil {
		t.Fatalf("publish event: %v", err)
	}
}

// events returns the recorded events of a case.
func events(t *testing.T, st store.Store, caseID string) []store.Event {
	t.Helper()
	list, _, err := st.Events(context.Background(), caseID, store.Page{})
	if err != nil {
		t.Fatalf("events: %v", err)
	}
	return list
}

func submissionOf(t *testing.T, st store.Store, id string) store.Submission {
	t.Helper()
	s, err := st.Submission(context.Background(), id)
	if err != nil {
		t.Fatalf("submission: %v", err)
	}
	return s
}

func ptr[T any](v T) *T { return &v }
