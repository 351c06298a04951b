package routesync_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
	"github.com/amtsbote/amtsbote/pkg/routesync"
	"github.com/amtsbote/amtsbote/pkg/routing"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/pkg/store/sqlite"
)

const (
	svc    = "urn:de:fim:leika:leistung:99108008000000"
	svcKey = "99108008000000"
	idA    = "a0000000-0000-4000-8000-00000000000a"
	idB    = "b0000000-0000-4000-8000-00000000000b"
	idC    = "c0000000-0000-4000-8000-00000000000c"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func openStore(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "amtsbote.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func destination(id string, status store.DestinationStatus, regions ...string) store.Destination {
	return store.Destination{
		ID:               id,
		Status:           status,
		Contact:          store.ContactInformation{LegalName: "Behörde " + id[:1], Address: "Markt 1", Phone: "+49 1", Email: "a@b.example", Unit: "Amt " + id[:1]},
		Services:         []store.Service{{Identifier: svc, Regions: regions, SubmissionSchemas: []store.SubmissionSchema{{MimeType: "application/json", SchemaURI: "https://schema.example/s.json"}}}},
		EncryptionKID:    "enc-" + id[:8],
		SigningKID:       "sig-" + id[:8],
		MetadataVersions: []string{"1.0.0"},
	}
}

func create(t *testing.T, st store.Store, d store.Destination) store.Destination {
	t.Helper()
	if err := st.CreateDestination(context.Background(), "test", d, nil); err != nil {
		t.Fatalf("create %s: %v", d.ID, err)
	}
	got, err := st.Destination(context.Background(), d.ID)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func update(t *testing.T, st store.Store, id string, f func(*store.Destination)) store.Destination {
	t.Helper()
	d, err := st.UpdateDestination(context.Background(), "test", id, func(d *store.Destination) error { f(d); return nil })
	if err != nil {
		t.Fatalf("update %s: %v", id, err)
	}
	return d
}

func newSyncer(t *testing.T, cfg routesync.Config) *routesync.Syncer {
	t.Helper()
	s, err := routesync.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func wantDest(t *testing.T, s *routesync.Syncer, arsKey, want string, level ars.Level) {
	t.Helper()
	m, ok := s.Resolve(svc, ars.MustParse(arsKey), t0)
	if want == "" {
		if ok {
			t.Fatalf("Resolve(%s) = %s, want none", arsKey, m.Route.DestinationID)
		}
		return
	}
	if !ok || m.Route.DestinationID != want || m.Level != level {
		t.Fatalf("Resolve(%s) = %s at %s (%v), want %s at %s", arsKey, m.Route.DestinationID, m.Level, ok, want, level)
	}
}

func TestLocal(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	create(t, st, destination(idA, store.StatusActive, "DE08311"))
	create(t, st, destination(idB, store.StatusActive, "DE08"))
	s := newSyncer(t, routesync.Config{Store: st})
	if _, ok := s.Resolve(svc, ars.MustParse("08311"), t0); ok || s.Loaded() {
		t.Fatal("resolved before Load")
	}
	if err := s.Run(ctx); err != nil { // without a bus: loads and returns
		t.Fatal(err)
	}
	wantDest(t, s, "083110000000", idA, ars.Kreis)
	wantDest(t, s, "081110000000", idB, ars.Land)
	wantDest(t, s, "091620000000", "", 0)
	if m, _ := s.Resolve(svcKey, ars.MustParse("08311"), t0); m.Destination.Name != "Behörde a" || m.Destination.ShortName != "Amt a" || m.Destination.Status != store.StatusActive {
		t.Errorf("destination of the match: %+v", m.Destination)
	}

	// A third destination claiming A's Kreis is refused, naming A.
	c := destination(idC, store.StatusCreated, "DE08311", "DE09")
	var ce *routing.ConflictError
	if err := s.Check(ctx, c); !errors.As(err, &ce) || ce.Other.DestinationID != idA || ce.Route.DestinationID != idC {
		t.Fatalf("Check(conflicting) = %v", err)
	}
	// A handover: C from a date on, A until then, is no conflict.
	handover := t0.Add(24 * time.Hour)
	c.Services[0].ValidFrom = &handover
	a := update(t, st, idA, func(d *store.Destination) { d.Services[0].ValidUntil = &handover })
	if err := s.Check(ctx, a); err != nil {
		t.Fatalf("Check(A until the handover) = %v", err)
	}
	rev, err := s.PublishDestination(ctx, a)
	if err != nil || rev != 1 || s.Revision() != 1 {
		t.Fatalf("publish: revision %d, %v", rev, err)
	}
	if err := s.Check(ctx, c); err != nil {
		t.Fatalf("Check(C from the handover) = %v", err)
	}
	c = create(t, st, c)
	if _, err := s.PublishDestination(ctx, c); err != nil {
		t.Fatal(err)
	}
	wantDest(t, s, "083110000000", idA, ars.Kreis)
	// C, still created, claims nothing until it is activated: after the
	// handover the Land's destination serves the Kreis.
	if m, _ := s.Resolve(svc, ars.MustParse("083110000000"), handover); m.Route.DestinationID != idB || m.Level != ars.Land {
		t.Errorf("at the handover before C is active: %s at %s, want %s at Land", m.Route.DestinationID, m.Level, idB)
	}
	c = update(t, st, idC, func(d *store.Destination) { d.Status = store.StatusActive })
	if _, err := s.PublishDestination(ctx, c); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.Resolve(svc, ars.MustParse("083110000000"), handover); m.Route.DestinationID != idC {
		t.Errorf("at the handover: %s, want %s", m.Route.DestinationID, idC)
	}

	// An inactive destination keeps its regions; a decommissioned one
	// releases them.
	b := update(t, st, idB, func(d *store.Destination) { d.Status = store.StatusInactive })
	if _, err := s.PublishDestination(ctx, b); err != nil {
		t.Fatal(err)
	}
	if m, ok := s.Resolve(svc, ars.MustParse("081110000000"), t0); !ok || m.Route.DestinationID != idB || m.Destination.Status != store.StatusInactive {
		t.Fatalf("inactive B: %+v %v", m, ok)
	}
	b = update(t, st, idB, func(d *store.Destination) { d.Status = store.StatusDecommissioned })
	if _, err := s.PublishDestination(ctx, b); err != nil {
		t.Fatal(err)
	}
	wantDest(t, s, "081110000000", "", 0)
	if s.Revision() != 5 {
		t.Errorf("revision %d, want 5", s.Revision())
	}

	resolve := s.Resolver()
	for _, tc := range []struct {
		key, want string
		ok        bool
	}{
		{"083110000000", idA, true},
		{"DE08311", idA, true},
		{"08311", idA, true},
		{"DE081", "", false},
		{"", "", false},
		{"DE", "", false},
		{"0831", "", false},
		{"x", "", false},
	} {
		if got, ok := resolve(svc, tc.key, t0); got != tc.want || ok != tc.ok {
			t.Errorf("resolver(%q) = %q, %v; want %q, %v", tc.key, got, ok, tc.want, tc.ok)
		}
	}
}

// A destination in status created claims its regions from its first
// activation on; its routes are checked for conflicts when they are
// written, against active destinations and others not yet active alike.
func TestCreatedClaimsFromActivation(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	create(t, st, destination(idA, store.StatusActive, "DE08315"))
	s := newSyncer(t, routesync.Config{Store: st})
	if err := s.Load(ctx); err != nil {
		t.Fatal(err)
	}
	// B overrides one Gemeinde of A's Kreis; registered, not activated.
	b := create(t, st, destination(idB, store.StatusCreated, "DE083150000000", "DE09"))
	if err := s.Check(ctx, b); err != nil {
		t.Fatalf("Check(B) = %v", err)
	}
	if _, err := s.PublishDestination(ctx, b); err != nil {
		t.Fatal(err)
	}
	wantDest(t, s, "083150000000", idA, ars.Kreis)
	wantDest(t, s, "091620000000", "", 0)

	// C names B's Land: a conflict with B though B claims nothing yet,
	// whether C is checked or B is checked again with C in the registry.
	c := destination(idC, store.StatusCreated, "DE09")
	var ce *routing.ConflictError
	if err := s.Check(ctx, c); !errors.As(err, &ce) || ce.Route.DestinationID != idC || ce.Other.DestinationID != idB || ce.Route.Region != "DE09" {
		t.Fatalf("Check(C against created B) = %v", err)
	}
	if err := s.Check(ctx, b); err != nil {
		t.Fatalf("Check(B unchanged) = %v", err)
	}

	// Activated, B takes the Gemeinde and Bayern.
	b = update(t, st, idB, func(d *store.Destination) { d.Status = store.StatusActive })
	if err := s.Check(ctx, b); err != nil {
		t.Fatalf("Check(B active) = %v", err)
	}
	if _, err := s.PublishDestination(ctx, b); err != nil {
		t.Fatal(err)
	}
	wantDest(t, s, "083150000000", idB, ars.Gemeinde)
	wantDest(t, s, "091620000000", idB, ars.Land)
	wantDest(t, s, "083150001001", idA, ars.Kreis)

	// Inactive after active keeps the regions, also after a reload.
	b = update(t, st, idB, func(d *store.Destination) { d.Status = store.StatusInactive })
	if _, err := s.PublishDestination(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := s.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if m, ok := s.Resolve(svc, ars.MustParse("083150000000"), t0); !ok || m.Route.DestinationID != idB || m.Destination.Status != store.StatusInactive {
		t.Fatalf("inactive B: %+v %v", m, ok)
	}
}

// eventually polls f until it returns nil or the deadline passes.
func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// run starts s.Run for the test's duration.
func run(t *testing.T, s *routesync.Syncer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	ctxWait, cancelWait := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelWait()
	for !s.Loaded() {
		select {
		case <-ctxWait.Done():
			t.Fatal("syncer did not load")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestFollowAcrossProcesses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := openStore(t)
	b1, node := bustest.Bus(t)
	b2 := bustest.Connect(t, node.URL)

	// A destination written and announced before the second process starts.
	s1 := newSyncer(t, routesync.Config{Store: st, Bus: b1})
	run(t, s1)
	a := create(t, st, destination(idA, store.StatusActive, "DE08311"))
	rev, err := s1.PublishDestination(ctx, a)
	if err != nil || rev != 1 {
		t.Fatalf("publish A: %d, %v", rev, err)
	}
	wantDest(t, s1, "083110000000", idA, ars.Kreis)

	s2 := newSyncer(t, routesync.Config{Store: st, Bus: b2})
	run(t, s2)
	if s2.Revision() != 1 {
		t.Errorf("s2 loaded at revision %d, want 1", s2.Revision())
	}
	wantDest(t, s2, "083110000000", idA, ars.Kreis)

	// A change in one process reaches the other at the same revision.
	b := create(t, st, destination(idB, store.StatusActive, "DE08"))
	rev, err = s1.PublishDestination(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.WaitFor(ctx, rev); err != nil {
		t.Fatal(err)
	}
	wantDest(t, s2, "081110000000", idB, ars.Land)
	if latest, err := s2.Latest(ctx); err != nil || latest != rev || s2.Revision() != rev {
		t.Errorf("latest %d (%v), s2 at %d, want %d", latest, err, s2.Revision(), rev)
	}
	if err := s2.CatchUp(ctx); err != nil {
		t.Errorf("catch up: %v", err)
	}

	// A state published late, older than the one applied, does not roll
	// the destination back.
	stale := routesync.EntryOf(b)
	stale.UpdatedAt = b.UpdatedAt.Add(-time.Hour)
	stale.Services[0].Regions = []string{"DE09"}
	data, _ := json.Marshal(stale)
	ack, err := b1.JetStream().Publish(ctx, "ab.registry.destination."+idB, data)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.WaitFor(ctx, ack.Sequence); err != nil {
		t.Fatal(err)
	}
	wantDest(t, s2, "081110000000", idB, ars.Land)
	wantDest(t, s2, "091620000000", "", 0)

	// A reference import reaches the other process.
	dir, err := ars.NewDirectory(t0, []ars.Area{
		{ARS: "080000000000", AGS: "08000000", Level: ars.Land, Name: "Baden-Württemberg"},
		{ARS: "083110000000", AGS: "08311000", Level: ars.Gemeinde, Name: "Freiburg im Breisgau, Stadt", Population: 237460},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.ImportAreas(ctx, "test", dir); err != nil {
		t.Fatal(err)
	}
	if s2.Reference().Directory() != nil {
		t.Fatal("directory before the import was announced")
	}
	rev, err = s1.PublishReference(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.WaitFor(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if d := s2.Reference().Directory(); d == nil || d.Population() != 237460 {
		t.Fatalf("directory after the import: %v", d)
	}
	cov, err := s2.Coverage(ctx, svc, t0)
	if err != nil || cov.Covered != 1 || cov.CoveredPopulation != 237460 {
		t.Errorf("coverage %+v, %v", cov, err)
	}
}

func TestResync(t *testing.T) {
	st := openStore(t)
	b, _ := bustest.Bus(t)
	s := newSyncer(t, routesync.Config{Store: st, Bus: b, Resync: 50 * time.Millisecond})
	run(t, s)
	// Written but never announced: the resync finds it.
	create(t, st, destination(idA, store.StatusActive, "DE08311"))
	eventually(t, 10*time.Second, func() error {
		if _, ok := s.Resolve(svc, ars.MustParse("08311"), t0); !ok {
			return errors.New("not resolved yet")
		}
		return nil
	})
}

func TestLoadKeepsServingPastAConflict(t *testing.T) {
	// Two writers raced and the store holds conflicting destinations: the
	// table keeps the first and leaves the other's routes out.
	st := openStore(t)
	create(t, st, destination(idA, store.StatusActive, "DE08311"))
	create(t, st, destination(idB, store.StatusActive, "DE08311", "DE09"))
	s := newSyncer(t, routesync.Config{Store: st})
	if err := s.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantDest(t, s, "083110000000", idA, ars.Kreis)
	wantDest(t, s, "091620000000", "", 0)
}

// failingStore fails reading destinations while fail is set.
type failingStore struct {
	store.Reference
	fail atomic.Bool
}

func (f *failingStore) EachDestination(ctx context.Context, fn func(store.Destination) error) error {
	if f.fail.Load() {
		return errors.New("connection refused")
	}
	return f.Reference.EachDestination(ctx, fn)
}

func TestRunOutlivesAStoreOutage(t *testing.T) {
	st := openStore(t)
	fs := &failingStore{Reference: st}
	b, _ := bustest.Bus(t)
	s := newSyncer(t, routesync.Config{Store: fs, Bus: b, Resync: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	eventually(t, 10*time.Second, func() error {
		if !s.Loaded() {
			return errors.New("not loaded")
		}
		return nil
	})
	fs.fail.Store(true)
	select {
	case err := <-done:
		done <- err
		t.Fatalf("Run ended while the store failed: %v", err)
	case <-time.After(1500 * time.Millisecond):
	}
	// Written while the store failed for the syncer, never announced: the
	// first resync after the outage finds it.
	create(t, st, destination(idA, store.StatusActive, "DE08311"))
	fs.fail.Store(false)
	eventually(t, 10*time.Second, func() error {
		if _, ok := s.Resolve(svc, ars.MustParse("08311"), t0); !ok {
			return errors.New("not resolved yet")
		}
		return nil
	})
}
