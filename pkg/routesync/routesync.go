// Package routesync keeps a process's routing table and reference data in
// step with the registry, so that every gateway and router resolves
// (service, place, time) in memory and all of them agree.
//
// The store is the source of truth. After a successful write, the writer
// publishes the destination's full routing state on the JetStream stream
// REGISTRY, subject ab.registry.destination.<id> (reference imports publish
// ab.registry.reference). The stream keeps the last message per subject;
// its sequence number is the registry revision. A process:
//
//  1. notes the stream's last sequence L,
//  2. loads every destination and the reference data from the store,
//  3. follows the stream from L+1 with an ordered consumer, applying each
//     destination's state as a whole.
//
// Whatever was published up to L was written before step 2 read the store;
// whatever comes later is replayed, and replaying a state is harmless. A
// message carries the destination's update time and an older state never
// replaces a newer one, so publishers racing each other cannot roll a
// destination back. A process is current when its revision equals the
// stream's last sequence (CatchUp, WaitFor).
//
// Without a bus the Syncer is process-local: Publish applies the change at
// once. That suits one process on SQLite.
package routesync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/routing"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// ErrNotLoaded is returned by methods that need the registry before Load.
var ErrNotLoaded = errors.New("routing registry not loaded")

// Entry is what a process knows of a destination for routing: its status,
// names and services. It is the payload of a destination's message.
type Entry struct {
	DestinationID string                  `json:"destinationId"`
	Status        store.DestinationStatus `json:"status"`
	Name          string                  `json:"name"`
	ShortName     string                  `json:"shortName,omitempty"`
	Services      []store.Service         `json:"services"`
	UpdatedAt     time.Time               `json:"updatedAt"`
}

// EntryOf returns the routing entry of d.
func EntryOf(d store.Destination) Entry {
	return Entry{
		DestinationID: d.ID,
		Status:        d.Status,
		Name:          d.Contact.LegalName,
		ShortName:     d.Contact.Unit,
		Services:      d.Services,
		UpdatedAt:     d.UpdatedAt,
	}
}

// Claims reports whether the destination's routes are in the table: once
// it has been activated, until it is decommissioned. A destination still
// in status created claims nothing, so registering it leaves the places it
// names with whoever serves them now. An inactive destination stays
// responsible for its regions (submissions for it go to the dead letters
// rather than to a neighbour's authority) until it is decommissioned or
// its routes end.
func (e Entry) Claims() bool {
	return e.Status != store.StatusDecommissioned && e.Status != store.StatusCreated
}

// Routes returns the routes the destination claims: one per service and
// region, bounded by the service's validity; none unless it Claims.
func (e Entry) Routes() []routing.Route {
	if !e.Claims() {
		return nil
	}
	return e.written()
}

// written returns the destination's routes whatever its status but
// decommissioned: what a write is checked against, so that activating a
// destination never meets a conflict its registration did not.
func (e Entry) written() []routing.Route {
	if e.Status == store.StatusDecommissioned {
		return nil
	}
	var out []routing.Route
	for _, s := range e.Services {
		for _, region := range s.Regions {
			r := routing.Route{Service: s.Identifier, Region: region, DestinationID: e.DestinationID}
			if s.ValidFrom != nil {
				r.ValidFrom = *s.ValidFrom
			}
			if s.ValidUntil != nil {
				r.ValidUntil = *s.ValidUntil
			}
			out = append(out, r)
		}
	}
	return out
}

// Config configures a Syncer. Store is required.
type Config struct {
	// Store is the registry and reference data.
	Store store.Reference
	// Bus carries changes between processes on its REGISTRY stream (the
	// topology must exist); nil keeps them in this one.
	Bus *bus.Bus
	// Resync reloads everything from the store at this interval, as a
	// backstop for a publish lost after a write; 0 never does.
	Resync time.Duration
	// Logger (default: discard).
	Logger *slog.Logger
	// Registry, when set, receives amtsbote_route_resolutions_total (see
	// Route).
	Registry prometheus.Registerer
}

// Syncer holds the routing table and reference data of a process. It is
// safe for concurrent use; readers never wait for writers.
type Syncer struct {
	cfg Config
	log *slog.Logger

	cur atomic.Pointer[state]
	// mu serializes changes of cur and guards changed.
	mu      sync.Mutex
	changed chan struct{} // closed and replaced at every change
	// local is the revision counter without a bus.
	local uint64
	// loadMu makes a lazy Load happen once at a time.
	loadMu sync.Mutex
	// resolutions counts Route's resolutions by level; nil counts none.
	resolutions []prometheus.Counter
}

// state is one immutable version of what the process knows.
type state struct {
	table *routing.Table
	dests map[string]*Entry
	ref   *Reference
}

// New returns a Syncer; it holds nothing until Load.
func New(cfg Config) (*Syncer, error) {
	if cfg.Store == nil {
		return nil, errors.New("new routing syncer: no store")
	}
	s := &Syncer{cfg: cfg, log: cfg.Logger, changed: make(chan struct{})}
	var err error
	if s.resolutions, err = newResolutions(cfg.Registry); err != nil {
		return nil, fmt.Errorf("new routing syncer: %w", err)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// Loaded reports whether Load has run.
func (s *Syncer) Loaded() bool { return s.cur.Load() != nil }

// EnsureLoaded loads the registry unless it is loaded.
func (s *Syncer) EnsureLoaded(ctx context.Context) error {
	if s.Loaded() {
		return nil
	}
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	if s.Loaded() {
		return nil
	}
	return s.Load(ctx)
}

// Load reads every destination and the reference data from the store and
// makes them current, at the stream's last sequence (with a bus) or the
// local revision. Call it before Run; Run calls it itself when needed.
func (s *Syncer) Load(ctx context.Context) error {
	var rev uint64
	if s.cfg.Bus != nil {
		var err error
		if rev, err = s.cfg.Bus.RegistryRevision(ctx); err != nil {
			return fmt.Errorf("load routing registry: %w", err)
		}
	} else {
		s.mu.Lock()
		rev = s.local
		s.mu.Unlock()
	}
	next, err := s.read(ctx, rev)
	if err != nil {
		return fmt.Errorf("load routing registry: %w", err)
	}
	s.mu.Lock()
	s.swap(next)
	s.mu.Unlock()
	s.log.InfoContext(ctx, "routing registry loaded", "revision", rev, "routes", next.table.Len(), "destinations", len(next.dests))
	return nil
}

// read builds a state at revision rev from the store.
func (s *Syncer) read(ctx context.Context, rev uint64) (*state, error) {
	var entries []Entry
	err := s.cfg.Store.EachDestination(ctx, func(d store.Destination) error {
		entries = append(entries, EntryOf(d))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.build(ctx, rev, entries)
}

// LoadEntries makes entries the registry at revision rev, with the
// reference data read from the store, as Load does with the store's
// destinations. It serves tools and benchmarks that build a registry
// without storing it; a Syncer following a bus replaces it at its next
// resync.
func (s *Syncer) LoadEntries(ctx context.Context, rev uint64, entries []Entry) error {
	next, err := s.build(ctx, rev, entries)
	if err != nil {
		return fmt.Errorf("load routing registry: %w", err)
	}
	s.mu.Lock()
	s.swap(next)
	s.mu.Unlock()
	return nil
}

// build makes the state of entries at revision rev.
func (s *Syncer) build(ctx context.Context, rev uint64, entries []Entry) (*state, error) {
	next := &state{dests: make(map[string]*Entry, len(entries))}
	n := 0
	for i := range entries {
		for _, sv := range entries[i].Services {
			n += len(sv.Regions)
		}
	}
	routes := make([]routing.Route, 0, n)
	for i := range entries {
		e := &entries[i]
		next.dests[e.DestinationID] = e
		routes = append(routes, e.Routes()...)
	}
	tab, err := routing.NewTable(routes)
	if err != nil {
		// Routes the registry refused never reach the store; a conflict
		// here means two writers raced. Keep serving without the later
		// destination's routes and say so.
		tab, err = s.buildSkipping(ctx, next.dests, err)
		if err != nil {
			return nil, err
		}
	}
	if next.table, err = tab.With(rev); err != nil {
		return nil, err
	}
	if next.ref, err = readReference(ctx, s.cfg.Store); err != nil {
		return nil, err
	}
	return next, nil
}

// buildSkipping builds the table destination by destination, leaving out
// the routes of destinations that conflict with those before them.
func (s *Syncer) buildSkipping(ctx context.Context, dests map[string]*Entry, first error) (*routing.Table, error) {
	var ce *routing.ConflictError
	if !errors.As(first, &ce) {
		return nil, first
	}
	tab, _ := routing.NewTable(nil)
	ids := make([]string, 0, len(dests))
	for id := range dests {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		nt, err := tab.ReplaceDestination(0, id, dests[id].Routes())
		if err != nil {
			s.log.ErrorContext(ctx, "routes of destination left out of the routing table", "destination_id", id, "err", err)
			continue
		}
		tab = nt
	}
	return tab, nil
}

// swap makes next current; s.mu is held.
func (s *Syncer) swap(next *state) {
	s.cur.Store(next)
	close(s.changed)
	s.changed = make(chan struct{})
}

// Run loads the registry unless it is loaded, then follows changes on the
// bus until ctx ends, reloading from the store every Resync. An outage of
// the bus or the store must not end the process: when following fails,
// Run follows again after 1 s doubling to 30 s and reloads first; when a
// reload fails, the table stays as it was (Current reports it), Run goes
// on following the bus and reloads at the next resync. Without a bus it
// returns after loading.
func (s *Syncer) Run(ctx context.Context) error {
	if err := s.EnsureLoaded(ctx); err != nil {
		return err
	}
	if s.cfg.Bus == nil {
		return nil
	}
	var wait time.Duration
	for {
		err := s.follow(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errResync) {
			wait = 0
		} else {
			if err == nil {
				err = errors.New("the registry's subscription ended")
			}
			wait = retryWait(wait)
			s.log.WarnContext(ctx, "following the routing registry failed; the table stays as it was until it is read again", "err", err, "retry_in", wait)
			if !sleep(ctx, wait) {
				return nil
			}
		}
		if err := s.Load(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.log.WarnContext(ctx, "reading the routing registry failed; the table stays as it was, following the bus, until the next resync", "err", err)
		}
	}
}

// retryWait is the wait after one of wait: 1 s doubling to 30 s.
func retryWait(wait time.Duration) time.Duration {
	return min(max(2*wait, time.Second), 30*time.Second)
}

// sleep waits d or until ctx ends, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

var errResync = errors.New("resync due")

// follow applies the stream's messages after the current revision until
// ctx ends or a resync is due.
func (s *Syncer) follow(ctx context.Context) error {
	fctx := ctx
	if s.cfg.Resync > 0 {
		var cancel context.CancelFunc
		fctx, cancel = context.WithTimeout(ctx, s.cfg.Resync)
		defer cancel()
	}
	err := s.cfg.Bus.FollowRegistry(fctx, s.Revision()+1, func(c bus.RegistryChange) {
		s.apply(ctx, c.Revision, c.Subject, c.Data)
	})
	if err == nil && ctx.Err() == nil && fctx.Err() != nil {
		return errResync
	}
	return err
}

// apply applies one registry message at revision rev.
func (s *Syncer) apply(ctx context.Context, rev uint64, subject string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.cur.Load()
	if cur == nil || rev <= cur.table.Revision() {
		return
	}
	next := &state{table: cur.table, dests: cur.dests, ref: cur.ref}
	_, reference, err := bus.ParseRegistrySubject(subject)
	switch {
	case subject == bus.RegistryInstallation:
		// Not routing state; the revision moves all the same.
	case err != nil:
		s.log.ErrorContext(ctx, "registry message on an unknown subject", "subject", subject, "err", err)
	case !reference:
		var e Entry
		if err := json.Unmarshal(data, &e); err != nil || e.DestinationID == "" {
			s.log.ErrorContext(ctx, "undecodable registry message", "subject", subject, "err", err)
			break
		}
		if old, ok := cur.dests[e.DestinationID]; ok && old.UpdatedAt.After(e.UpdatedAt) {
			break // an older state published late
		}
		tab, err := cur.table.ReplaceDestination(rev, e.DestinationID, e.Routes())
		if err != nil {
			s.log.ErrorContext(ctx, "registry change refused by the routing table", "destination_id", e.DestinationID, "revision", rev, "err", err)
			break
		}
		next.table = tab
		next.dests = cloneMap(cur.dests)
		next.dests[e.DestinationID] = &e
	default:
		ref, err := readReference(ctx, s.cfg.Store)
		if err != nil {
			s.log.ErrorContext(ctx, "reload reference data", "revision", rev, "err", err)
			break
		}
		next.ref = ref
	}
	if next.table.Revision() != rev {
		next.table, _ = next.table.With(rev)
	}
	s.swap(next)
}

func cloneMap(m map[string]*Entry) map[string]*Entry {
	out := make(map[string]*Entry, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// PublishDestination announces the stored state d of a destination after
// a successful write and returns the revision it got. With a bus it waits
// (within ctx) until this process has applied it, so the writer's next
// request sees its change; without one it applies the change at once.
func (s *Syncer) PublishDestination(ctx context.Context, d store.Destination) (uint64, error) {
	e := EntryOf(d)
	data, err := json.Marshal(e)
	if err != nil {
		return 0, fmt.Errorf("publish destination %s: %w", d.ID, err)
	}
	subject, err := bus.RegistryDestination(d.ID)
	if err != nil {
		return 0, err
	}
	rev, err := s.publish(ctx, subject, data)
	if err != nil {
		return 0, fmt.Errorf("publish destination %s: %w", d.ID, err)
	}
	return rev, nil
}

// PublishReference announces a reference data import; every process
// reloads the directory and catalogue from the store.
func (s *Syncer) PublishReference(ctx context.Context) (uint64, error) {
	data, _ := json.Marshal(struct {
		At time.Time `json:"at"`
	}{time.Now().UTC()})
	rev, err := s.publish(ctx, bus.RegistryReference, data)
	if err != nil {
		return 0, fmt.Errorf("publish reference import: %w", err)
	}
	return rev, nil
}

func (s *Syncer) publish(ctx context.Context, subject string, data []byte) (uint64, error) {
	if err := s.EnsureLoaded(ctx); err != nil {
		return 0, err
	}
	if s.cfg.Bus == nil {
		s.mu.Lock()
		s.local = max(s.local, s.cur.Load().table.Revision()) + 1
		rev := s.local
		s.mu.Unlock()
		s.apply(ctx, rev, subject, data)
		return rev, nil
	}
	rev, err := s.cfg.Bus.Announce(ctx, subject, data)
	if err != nil {
		return 0, err
	}
	if err := s.WaitFor(ctx, rev); err != nil {
		return rev, err
	}
	return rev, nil
}

// Revision returns the registry revision the process has applied; 0
// before Load.
func (s *Syncer) Revision() uint64 {
	if st := s.cur.Load(); st != nil {
		return st.table.Revision()
	}
	return 0
}

// WaitFor blocks until the process has applied revision rev or ctx ends.
func (s *Syncer) WaitFor(ctx context.Context, rev uint64) error {
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if s.Revision() >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for registry revision %d (at %d): %w", rev, s.Revision(), ctx.Err())
		}
	}
}

// Latest returns the stream's last revision: what a current process has
// applied. Without a bus it is the local revision.
func (s *Syncer) Latest(ctx context.Context) (uint64, error) {
	if s.cfg.Bus == nil {
		return s.Revision(), nil
	}
	return s.cfg.Bus.RegistryRevision(ctx)
}

// CatchUp waits until the process has applied the stream's last revision.
func (s *Syncer) CatchUp(ctx context.Context) error {
	if err := s.EnsureLoaded(ctx); err != nil {
		return err
	}
	rev, err := s.Latest(ctx)
	if err != nil {
		return err
	}
	return s.WaitFor(ctx, rev)
}

// Prepare brings the registry up to the stream's latest revision before a
// destination write is checked against it: loaded, and caught up within a
// second; past that the check runs against what the process holds.
func (s *Syncer) Prepare(ctx context.Context) error {
	if err := s.EnsureLoaded(ctx); err != nil {
		return fmt.Errorf("load routing registry: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := s.CatchUp(cctx); err != nil {
		s.log.WarnContext(ctx, "routing registry behind; checking routes against the revision held", "revision", s.Revision(), "err", err)
	}
	return nil
}

// writesLockKey names the state entry that orders destination writes
// across processes.
const writesLockKey = "lock.registry-writes"

// LockWrites orders this destination write after those of every other
// process that shares the bus: each is checked after the previous one was
// announced. It waits within ctx and returns the function that ends the
// hold; without a bus there is no other process.
func (s *Syncer) LockWrites(ctx context.Context) (unlock func(), err error) {
	if s.cfg.Bus == nil {
		return func() {}, nil
	}
	// A holder that stopped leaves it free after bus.LockStale.
	wctx, cancel := context.WithTimeout(ctx, 2*bus.LockStale)
	defer cancel()
	l, err := s.cfg.Bus.Lock(wctx, writesLockKey, []byte("destination write"), nil)
	if err != nil {
		return nil, fmt.Errorf("lock destination writes: %w", err)
	}
	return func() {
		if err := l.Release(ctx); err != nil {
			s.log.WarnContext(ctx, "destination write lock left; it lapses", "err", err)
		}
	}, nil
}

// Check reports whether the stored state d of a destination may be
// written: its routes must not conflict with another destination's,
// whether that one claims its routes yet or is still in status created.
// The error is a *routing.ConflictError naming the other destination, or a
// *routing.RouteError for a malformed route. Check judges against what the
// process holds; call CatchUp first to judge against the latest revision.
func (s *Syncer) Check(ctx context.Context, d store.Destination) error {
	if err := s.EnsureLoaded(ctx); err != nil {
		return err
	}
	cur := s.cur.Load()
	routes := EntryOf(d).written()
	if _, err := cur.table.ReplaceDestination(cur.table.Revision(), d.ID, routes); err != nil {
		return err
	}
	var pending []string
	for id, e := range cur.dests {
		if id != d.ID && !e.Claims() && e.Status != store.StatusDecommissioned {
			pending = append(pending, id)
		}
	}
	if len(pending) == 0 || len(routes) == 0 {
		return nil
	}
	slices.Sort(pending)
	own, err := routing.NewTable(routes)
	if err != nil {
		return err
	}
	for _, id := range pending {
		_, err := own.ReplaceDestination(0, id, cur.dests[id].written())
		var ce *routing.ConflictError
		if errors.As(err, &ce) {
			// Seen from d: its route is the one refused.
			return &routing.ConflictError{Route: ce.Other, Other: ce.Route}
		}
		if err != nil {
			s.log.ErrorContext(ctx, "routes of a destination not yet active are malformed", "destination_id", id, "err", err)
		}
	}
	return nil
}

// Match is a resolution: the route, the level it matched at and what the
// process knows of its destination.
type Match struct {
	Route       routing.Route
	Level       ars.Level
	Destination Entry
}

// Resolve returns the destination responsible for service at place a at
// time at, whatever its status (see Entry.Claims): the caller decides what
// an inactive destination means. It is false when no route covers a or
// before Load.
func (s *Syncer) Resolve(service string, a ars.ARS, at time.Time) (Match, bool) {
	cur := s.cur.Load()
	if cur == nil {
		return Match{}, false
	}
	r, l, ok := cur.table.Resolve(service, a, at)
	if !ok {
		return Match{}, false
	}
	m := Match{Route: r, Level: l}
	if e := cur.dests[r.DestinationID]; e != nil {
		m.Destination = *e
	}
	return m, true
}

// Resolver returns Route in the form the router takes: service a LeiKa
// key or service URN, ars an ARS prefix of 0, 2, 3, 5, 9 or 12 digits, with
// or without "DE". It returns the responsible destination's id.
func (s *Syncer) Resolver() func(service, arsKey string, at time.Time) (destinationID string, ok bool) {
	return func(service, arsKey string, at time.Time) (string, bool) {
		a, err := ars.ParseRegion("DE" + strings.TrimPrefix(arsKey, "DE"))
		if err != nil {
			return "", false
		}
		m, ok := s.Route(service, a, at)
		return m.Route.DestinationID, ok
	}
}

// Destination returns what the process knows of destination id.
func (s *Syncer) Destination(id string) (Entry, bool) {
	cur := s.cur.Load()
	if cur == nil {
		return Entry{}, false
	}
	e, ok := cur.dests[id]
	if !ok {
		return Entry{}, false
	}
	return *e, true
}

// Table returns the current routing table; nil before Load.
func (s *Syncer) Table() *routing.Table {
	if cur := s.cur.Load(); cur != nil {
		return cur.table
	}
	return nil
}

// Reference returns the current reference data; nil before Load.
func (s *Syncer) Reference() *Reference {
	if cur := s.cur.Load(); cur != nil {
		return cur.ref
	}
	return nil
}

// Coverage resolves service at time at for every current Gemeinde and
// counts those /routes answers a route for.
func (s *Syncer) Coverage(ctx context.Context, service string, at time.Time) (routing.Coverage, error) {
	if err := s.EnsureLoaded(ctx); err != nil {
		return routing.Coverage{}, err
	}
	cur := s.cur.Load()
	if cur.ref.dir == nil {
		return routing.Coverage{}, fmt.Errorf("coverage of %s: %w", service, ErrNoDirectory)
	}
	// A place counts when /routes answers a route for it: the route's
	// destination must be active, not merely responsible.
	active := func(id string) bool {
		e := cur.dests[id]
		return e != nil && e.Status == store.StatusActive
	}
	return cur.table.Coverage(cur.ref.dir, service, at, active), nil
}

// Announcer announces reference imports on a bus without following the
// registry, as an operator command does.
type Announcer struct{ Bus *bus.Bus }

// PublishReference announces a reference import and returns the revision.
func (a Announcer) PublishReference(ctx context.Context) (uint64, error) {
	return AnnounceReference(ctx, a.Bus)
}

// AnnounceReference tells the processes following the registry on b that
// reference data was imported, without following the registry itself (as
// an operator command does). It returns the revision.
func AnnounceReference(ctx context.Context, b *bus.Bus) (uint64, error) {
	rev, err := b.Announce(ctx, bus.RegistryReference, []byte(`{}`))
	if err != nil {
		return 0, fmt.Errorf("announce reference import: %w", err)
	}
	return rev, nil
}
