package routing

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/leika"
)

// Table is an immutable routing table. It is safe for concurrent use;
// With and ReplaceDestination return new tables and leave the receiver as
// it was.
type Table struct {
	revision uint64
	services map[string]*serviceTable
	// dests holds destination ids by index. A table never appends to a
	// slice it shares with another: With copies it first.
	dests   []string
	destIdx map[string]int32
	routes  int
}

// serviceTable holds the routes of one service, by region key.
type serviceTable struct {
	id string
	// regions maps a region key to the index of the destination of its one
	// unbounded route, or to ^i where windows[i] starts the region's run
	// of time-bounded routes.
	regions map[uint64]int32
	windows []window
	levels  uint8 // bit l is set when some region of level l has routes
	routes  int
}

// window is a time-bounded route; a region's windows are contiguous,
// sorted by start and disjoint.
type window struct {
	from, until time.Time
	dest        int32
	last        bool // the last window of its region
}

func (w *window) activeAt(t time.Time) bool {
	return (w.from.IsZero() || !t.Before(w.from)) && (w.until.IsZero() || t.Before(w.until))
}

// NewTable builds a table at revision 0 from routes. It refuses a malformed
// route with a *RouteError and two routes for the same service and region
// with overlapping validity with a *ConflictError naming both; exact
// duplicates count once.
func NewTable(routes []Route) (*Table, error) {
	t := &Table{services: make(map[string]*serviceTable), destIdx: make(map[string]int32)}
	if len(routes) > 1<<31-1 {
		return nil, errors.New("new routing table: too many routes")
	}
	keys := make([]uint64, len(routes))
	dst := make([]int32, len(routes))
	svc := make([]int32, len(routes))
	svcIdx := make(map[string]int32)
	var ids []string
	var counts []int32
	for i := range routes {
		r := &routes[i]
		k, err := check(r)
		if err != nil {
			return nil, fmt.Errorf("new routing table: %w", err)
		}
		// svcIdx knows services by every spelling met, so that most
		// routes skip ServiceID.
		s, ok := svcIdx[r.Service]
		if !ok {
			id, err := ServiceID(r.Service)
			if err != nil {
				return nil, fmt.Errorf("new routing table: %w", &RouteError{Route: *r, Field: "service", Err: err})
			}
			if s, ok = svcIdx[id]; !ok {
				s = int32(len(ids))
				id = strings.Clone(id)
				svcIdx[id] = s
				ids = append(ids, id)
				counts = append(counts, 0)
			}
			svcIdx[strings.Clone(r.Service)] = s
		}
		svc[i], keys[i], dst[i] = s, k, t.intern(r.DestinationID)
		counts[s]++
	}
	// Order the routes by service, keeping input order within a service.
	start := make([]int32, len(ids)+1)
	for s, c := range counts {
		start[s+1] = start[s] + c
	}
	order := make([]int32, len(routes))
	next := slices.Clone(start[:len(ids)])
	for i, s := range svc {
		order[next[s]] = int32(i)
		next[s]++
	}
	for s, id := range ids {
		st, err := buildService(id, routes, order[start[s]:start[s+1]], keys, dst, t.dests, len(routes))
		if err != nil {
			return nil, fmt.Errorf("new routing table: %w", err)
		}
		t.services[id] = st
		t.routes += st.routes
	}
	return t, nil
}

// intern returns the index of destination id, adding it if new.
func (t *Table) intern(id string) int32 {
	if i, ok := t.destIdx[id]; ok {
		return i
	}
	i := int32(len(t.dests))
	id = strings.Clone(id)
	t.dests = append(t.dests, id)
	t.destIdx[id] = i
	return i
}

// buildService builds the table of service id from routes[idx...], whose
// region keys and destination indexes are keys[i] and dst[i]. Routes with
// an index of firstNew or above are the ones being added: a conflict names
// them as the refused route.
func buildService(id string, routes []Route, idx []int32, keys []uint64, dst []int32, dests []string, firstNew int) (*serviceTable, error) {
	st := &serviceTable{id: id, regions: make(map[uint64]int32, len(idx))}
	// While building, regions maps to a route index, -1 for several routes.
	var multi map[uint64][]int32
	for _, i := range idx {
		k := keys[i]
		j, ok := st.regions[k]
		if !ok {
			st.regions[k] = i
			l, _ := ars.LevelOf(int(k >> keyShift))
			st.levels |= 1 << l
			continue
		}
		if multi == nil {
			multi = make(map[uint64][]int32)
		}
		if j >= 0 {
			multi[k] = append(multi[k], j)
			st.regions[k] = -1
		}
		multi[k] = append(multi[k], i)
	}
	for k, i := range st.regions {
		if i < 0 {
			continue
		}
		r := &routes[i]
		st.routes++
		if r.ValidFrom.IsZero() && r.ValidUntil.IsZero() {
			st.regions[k] = dst[i]
			continue
		}
		st.regions[k] = ^int32(len(st.windows))
		st.windows = append(st.windows, window{from: r.ValidFrom, until: r.ValidUntil, dest: dst[i], last: true})
	}
	// Regions with several routes, in key order so that the conflict
	// reported is the same on every build.
	for _, k := range slices.Sorted(maps.Keys(multi)) {
		list := multi[k]
		slices.SortStableFunc(list, func(a, b int32) int {
			return compareFrom(routes[a].ValidFrom, routes[b].ValidFrom)
		})
		first := len(st.windows)
		reach := int32(-1) // the route reaching furthest so far
		for _, i := range list {
			r := &routes[i]
			if reach >= 0 {
				o := &routes[reach]
				if dst[i] == dst[reach] && r.ValidFrom.Equal(o.ValidFrom) && r.ValidUntil.Equal(o.ValidUntil) {
					continue // an exact duplicate
				}
				if earlier(r.ValidFrom, o.ValidUntil) {
					// The list is sorted by start, so r overlaps o.
					refused, other := i, reach
					isNew := func(x int32) bool { return int(x) >= firstNew }
					if isNew(reach) && !isNew(i) || isNew(reach) == isNew(i) && reach > i {
						refused, other = reach, i
					}
					return nil, &ConflictError{
						Route: routeOf(id, k, dests, dst[refused], routes[refused]),
						Other: routeOf(id, k, dests, dst[other], routes[other]),
					}
				}
			}
			if reach < 0 || compareUntil(r.ValidUntil, routes[reach].ValidUntil) > 0 {
				reach = i
			}
			st.windows = append(st.windows, window{from: r.ValidFrom, until: r.ValidUntil, dest: dst[i]})
			st.routes++
		}
		st.windows[len(st.windows)-1].last = true
		st.regions[k] = ^int32(first)
	}
	return st, nil
}

// compareFrom orders start times, the zero time first.
func compareFrom(a, b time.Time) int {
	switch {
	case a.IsZero() && b.IsZero():
		return 0
	case a.IsZero():
		return -1
	case b.IsZero():
		return 1
	}
	return a.Compare(b)
}

// compareUntil orders end times, the zero time last.
func compareUntil(a, b time.Time) int {
	switch {
	case a.IsZero() && b.IsZero():
		return 0
	case a.IsZero():
		return 1
	case b.IsZero():
		return -1
	}
	return a.Compare(b)
}

func routeOf(id string, k uint64, dests []string, d int32, r Route) Route {
	return Route{Service: id, Region: regionOfKey(k), DestinationID: dests[d], ValidFrom: r.ValidFrom, ValidUntil: r.ValidUntil}
}

// Revision returns the revision of the registry the table reflects.
func (t *Table) Revision() uint64 { return t.revision }

// Len returns the number of routes in the table.
func (t *Table) Len() int { return t.routes }

// Resolve returns the route for service at place a valid at time at: the one
// with the longest region prefix of a, looking no deeper than the level a
// was parsed at, and the level it matched. service is a LeiKa key, a LeiKa
// URN or another service URN. Resolve does not allocate.
func (t *Table) Resolve(service string, a ars.ARS, at time.Time) (Route, ars.Level, bool) {
	if k, ok := leika.TrimURN(service); ok {
		service = k
	}
	st := t.services[service]
	if st == nil || a.IsZero() {
		return Route{}, 0, false
	}
	code := a.String()
	var v uint64
	for i := 0; i < len(code); i++ {
		v = v*10 + uint64(code[i]-'0')
	}
	for l := a.Level(); l >= ars.Bund; l-- {
		if st.levels&(1<<l) == 0 {
			continue
		}
		n := l.Digits()
		x, ok := st.regions[uint64(n)<<keyShift|v/pow10[12-n]]
		if !ok {
			continue
		}
		if x >= 0 {
			return Route{Service: st.id, Region: a.RegionOf(l), DestinationID: t.dests[x]}, l, true
		}
		for w := ^x; ; w++ {
			win := &st.windows[w]
			if win.activeAt(at) {
				return Route{Service: st.id, Region: a.RegionOf(l), DestinationID: t.dests[win.dest], ValidFrom: win.from, ValidUntil: win.until}, l, true
			}
			if win.last {
				break
			}
		}
	}
	return Route{}, 0, false
}

// Has reports whether the table holds a route for service, a LeiKa key,
// LeiKa URN or another service URN, at any time and place.
func (t *Table) Has(service string) bool {
	if k, ok := leika.TrimURN(service); ok {
		service = k
	}
	return t.services[service] != nil
}

// Routes returns the routes of service, sorted by region and start.
func (t *Table) Routes(service string) []Route {
	if k, ok := leika.TrimURN(service); ok {
		service = k
	}
	st := t.services[service]
	if st == nil {
		return nil
	}
	return st.expand(t.dests)
}

func (st *serviceTable) expand(dests []string) []Route {
	out := make([]Route, 0, st.routes)
	for _, k := range slices.Sorted(maps.Keys(st.regions)) {
		x := st.regions[k]
		region := regionOfKey(k)
		if x >= 0 {
			out = append(out, Route{Service: st.id, Region: region, DestinationID: dests[x]})
			continue
		}
		for w := ^x; ; w++ {
			win := &st.windows[w]
			out = append(out, Route{Service: st.id, Region: region, DestinationID: dests[win.dest], ValidFrom: win.from, ValidUntil: win.until})
			if win.last {
				break
			}
		}
	}
	return out
}

// Change is one edit of a table: add Route, or remove it when Remove is set.
type Change struct {
	Route  Route
	Remove bool
}

// With returns a new table at revision with changes applied: first all
// removals, then all additions. Removing a route the table lacks and adding
// one it already holds are no-ops, so replaying a change is harmless.
// A conflict with a remaining route is a *ConflictError whose Route is the
// added one. Only the services changed are rebuilt; the rest is shared.
func (t *Table) With(revision uint64, changes ...Change) (*Table, error) {
	nt := &Table{revision: revision, services: t.services, dests: t.dests, destIdx: t.destIdx, routes: t.routes}
	type edit struct {
		add, remove []Route
	}
	edits := make(map[string]*edit)
	var order []string
	for _, c := range changes {
		r, _, err := normalize(c.Route)
		if err != nil {
			return nil, fmt.Errorf("change routing table: %w", err)
		}
		e := edits[r.Service]
		if e == nil {
			e = &edit{}
			edits[r.Service] = e
			order = append(order, r.Service)
		}
		if c.Remove {
			e.remove = append(e.remove, r)
		} else {
			e.add = append(e.add, r)
		}
	}
	if len(order) == 0 {
		return nt, nil
	}
	nt.services = maps.Clone(t.services)
	shared := true
	for _, id := range order {
		e := edits[id]
		var cur []Route
		old := t.services[id]
		if old != nil {
			cur = old.expand(t.dests)
			id = old.id
		} else {
			id = strings.Clone(id)
		}
		if len(e.remove) > 0 {
			type at struct{ region, dest string }
			removed := make(map[at][]*Route, len(e.remove))
			for i := range e.remove {
				r := &e.remove[i]
				removed[at{r.Region, r.DestinationID}] = append(removed[at{r.Region, r.DestinationID}], r)
			}
			cur = slices.DeleteFunc(cur, func(r Route) bool {
				return slices.ContainsFunc(removed[at{r.Region, r.DestinationID}], func(x *Route) bool { return same(&r, x) })
			})
		}
		// Additions already present are exact duplicates, which the build
		// drops.
		firstNew := len(cur)
		cur = append(cur, e.add...)
		keys := make([]uint64, len(cur))
		dst := make([]int32, len(cur))
		idx := make([]int32, len(cur))
		for i := range cur {
			a, _ := ars.ParseRegion(cur[i].Region)
			keys[i] = regionKey(a.Code())
			d, ok := nt.destIdx[cur[i].DestinationID]
			if !ok {
				if shared {
					nt.dests = slices.Clip(slices.Clone(t.dests))
					nt.destIdx = maps.Clone(t.destIdx)
					shared = false
				}
				d = nt.intern(cur[i].DestinationID)
			}
			dst[i], idx[i] = d, int32(i)
		}
		if old != nil {
			nt.routes -= old.routes
			delete(nt.services, id)
		}
		if len(cur) == 0 {
			continue
		}
		st, err := buildService(id, cur, idx, keys, dst, nt.dests, firstNew)
		if err != nil {
			return nil, fmt.Errorf("change routing table: %w", err)
		}
		nt.services[id] = st
		nt.routes += st.routes
	}
	return nt, nil
}

// same reports whether two routes of one service are the same route.
func same(a, b *Route) bool {
	return a.Region == b.Region && a.DestinationID == b.DestinationID &&
		a.ValidFrom.Equal(b.ValidFrom) && a.ValidUntil.Equal(b.ValidUntil)
}

// ReplaceDestination returns a new table at revision in which destination
// id has exactly routes: its routes absent from routes are removed. Every
// route must name destination id. This is the change a registry update of
// one destination makes.
func (t *Table) ReplaceDestination(revision uint64, id string, routes []Route) (*Table, error) {
	var changes []Change
	for _, r := range routes {
		if r.DestinationID != id {
			return nil, fmt.Errorf("replace routes of destination %s: %w", id, &RouteError{Route: r, Field: "destinationId", Err: fmt.Errorf("not %s", id)})
		}
		changes = append(changes, Change{Route: r})
	}
	if d, ok := t.destIdx[id]; ok {
		for _, st := range t.services {
			if !st.serves(d) {
				continue
			}
			for _, r := range st.expand(t.dests) {
				if r.DestinationID == id {
					changes = append(changes, Change{Route: r, Remove: true})
				}
			}
		}
	}
	// Removals of routes that stay and additions of routes already there
	// cancel out in With.
	nt, err := t.With(revision, changes...)
	if err != nil {
		return nil, fmt.Errorf("replace routes of destination %s: %w", id, err)
	}
	return nt, nil
}

func (st *serviceTable) serves(d int32) bool {
	for _, x := range st.regions {
		if x == d {
			return true
		}
	}
	for _, w := range st.windows {
		if w.dest == d {
			return true
		}
	}
	return false
}
