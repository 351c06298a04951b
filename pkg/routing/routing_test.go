package routing

import (
	"github.com/amtsbote/amtsbote/internal/sharedtest"

	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/leika"
)

const (
	svcA = "99001001000000"
	svcB = "99010003001006"
)

var (
	t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t1 = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
)

func mustTable(t *testing.T, routes ...Route) *Table {
	t.Helper()
	tab, err := NewTable(routes)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func TestResolve(t *testing.T) {
	tab := mustTable(t,
		Route{Service: leika.URNPrefix + svcA, Region: "DE08", DestinationID: "land-bw"},
		Route{Service: svcA, Region: "DE083", DestinationID: "rp-freiburg"},
		Route{Service: svcA, Region: "DE08315", DestinationID: "lra-bh"},
		Route{Service: svcA, Region: "DE083155012", DestinationID: "vg-muellheim"},
		Route{Service: svcA, Region: "DE083155012074", DestinationID: "muellheim"},
		Route{Service: svcA, Region: "DE", DestinationID: "bund"},
		Route{Service: "urn:de:example:service:1", Region: "DE09", DestinationID: "by"},
	)
	tests := []struct {
		name    string
		service string
		ars     string
		dest    string
		region  string
		level   ars.Level
	}{
		{"gemeinde", svcA, "083155012074", "muellheim", "DE083155012074", ars.Gemeinde},
		{"gemeindeverband", svcA, "083155012004", "vg-muellheim", "DE083155012", ars.Gemeindeverband},
		{"kreis", svcA, "083150001001", "lra-bh", "DE08315", ars.Kreis},
		{"regierungsbezirk", svcA, "083110000000", "rp-freiburg", "DE083", ars.Regierungsbezirk},
		{"land", svcA, "081110000000", "land-bw", "DE08", ars.Land},
		{"bund", svcA, "091620000000", "bund", "DE", ars.Bund},
		{"kreis asked", svcA, "08315", "lra-bh", "DE08315", ars.Kreis},
		{"verband asked", svcA, "083155012", "vg-muellheim", "DE083155012", ars.Gemeindeverband},
		{"land asked", svcA, "08", "land-bw", "DE08", ars.Land},
		{"urn asked", leika.URNPrefix + svcA, "083155012074", "muellheim", "DE083155012074", ars.Gemeinde},
		{"other urn", "urn:de:example:service:1", "091620000000", "by", "DE09", ars.Land},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, l, ok := tab.Resolve(tt.service, ars.MustParse(tt.ars), t0)
			if !ok || r.DestinationID != tt.dest || r.Region != tt.region || l != tt.level {
				t.Fatalf("Resolve(%s) = %+v at %s, %v; want %s in %s at %s", tt.ars, r, l, ok, tt.dest, tt.region, tt.level)
			}
			want := svcA
			if strings.HasPrefix(tt.service, "urn:de:example") {
				want = tt.service
			}
			if r.Service != want {
				t.Errorf("Service = %q, want %q", r.Service, want)
			}
		})
	}
	for _, miss := range []struct{ service, ars string }{
		{svcB, "083155012074"},
		{"urn:de:example:service:1", "083155012074"},
		{"urn:de:example:service:2", "091620000000"},
	} {
		if r, _, ok := tab.Resolve(miss.service, ars.MustParse(miss.ars), t0); ok {
			t.Errorf("Resolve(%s, %s) = %+v, want none", miss.service, miss.ars, r)
		}
	}
	if _, _, ok := tab.Resolve(svcA, ars.ARS{}, t0); ok {
		t.Error("the zero ARS resolved")
	}
	if tab.Len() != 7 || tab.Revision() != 0 {
		t.Errorf("Len %d, Revision %d", tab.Len(), tab.Revision())
	}
}

func TestResolveTakeover(t *testing.T) {
	start := time.Date(2026, 7, 1, 0, 0, 0, 0, time.FixedZone("CEST", 2*3600))
	tests := []struct {
		name            string
		routes          []Route
		before, after   string
		lBefore, lAfter ars.Level
	}{
		{
			name: "gemeinde route starts",
			routes: []Route{
				{Service: svcA, Region: "DE08315", DestinationID: "lra"},
				{Service: svcA, Region: "DE083155012074", DestinationID: "muellheim", ValidFrom: start},
			},
			before: "lra", after: "muellheim", lBefore: ars.Kreis, lAfter: ars.Gemeinde,
		},
		{
			name: "handover in one region",
			routes: []Route{
				{Service: svcA, Region: "DE083155012074", DestinationID: "old", ValidUntil: start},
				{Service: svcA, Region: "DE083155012074", DestinationID: "new", ValidFrom: start},
			},
			before: "old", after: "new", lBefore: ars.Gemeinde, lAfter: ars.Gemeinde,
		},
		{
			name: "gemeinde route ends",
			routes: []Route{
				{Service: svcA, Region: "DE08", DestinationID: "land"},
				{Service: svcA, Region: "DE083155012074", DestinationID: "muellheim", ValidFrom: start.Add(-time.Hour), ValidUntil: start},
			},
			before: "muellheim", after: "land", lBefore: ars.Gemeinde, lAfter: ars.Land,
		},
	}
	a := ars.MustParse("083155012074")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := mustTable(t, tt.routes...)
			r, l, ok := tab.Resolve(svcA, a, start.Add(-time.Nanosecond))
			if !ok || r.DestinationID != tt.before || l != tt.lBefore {
				t.Errorf("before: %+v at %s, %v; want %s at %s", r, l, ok, tt.before, tt.lBefore)
			}
			r, l, ok = tab.Resolve(svcA, a, start.UTC())
			if !ok || r.DestinationID != tt.after || l != tt.lAfter {
				t.Errorf("at start: %+v at %s, %v; want %s at %s", r, l, ok, tt.after, tt.lAfter)
			}
		})
	}
}

func TestConflicts(t *testing.T) {
	base := Route{Service: svcA, Region: "DE08315", DestinationID: "lra"}
	tests := []struct {
		name     string
		routes   []Route
		conflict bool
		other    string
	}{
		{"same region", []Route{base, {Service: svcA, Region: "DE08315", DestinationID: "other"}}, true, "lra"},
		{"urn and key", []Route{base, {Service: leika.URNPrefix + svcA, Region: "DE08315", DestinationID: "other"}}, true, "lra"},
		{"future overlaps unbounded", []Route{base, {Service: svcA, Region: "DE08315", DestinationID: "next", ValidFrom: t1}}, true, "lra"},
		{"windows overlap", []Route{
			{Service: svcA, Region: "DE08315", DestinationID: "a", ValidFrom: t0, ValidUntil: t1},
			{Service: svcA, Region: "DE08315", DestinationID: "b", ValidFrom: t1.Add(-time.Nanosecond)},
		}, true, "a"},
		{"long window overlaps a later one", []Route{
			{Service: svcA, Region: "DE08315", DestinationID: "a", ValidUntil: t1},
			{Service: svcA, Region: "DE08315", DestinationID: "b", ValidFrom: t0, ValidUntil: t0.Add(time.Hour)},
			{Service: svcA, Region: "DE08315", DestinationID: "c", ValidFrom: t0.Add(2 * time.Hour), ValidUntil: t0.Add(3 * time.Hour)},
		}, true, "a"},
		{"same destination twice in other windows", []Route{base, {Service: svcA, Region: "DE08315", DestinationID: "lra", ValidFrom: t0}}, true, "lra"},
		{"adjacent windows", []Route{
			{Service: svcA, Region: "DE08315", DestinationID: "a", ValidUntil: t0},
			{Service: svcA, Region: "DE08315", DestinationID: "b", ValidFrom: t0, ValidUntil: t1},
			{Service: svcA, Region: "DE08315", DestinationID: "c", ValidFrom: t1},
		}, false, ""},
		{"exact duplicate", []Route{base, base}, false, ""},
		{"other region", []Route{base, {Service: svcA, Region: "DE083150000000", DestinationID: "other"}}, false, ""},
		{"other service", []Route{base, {Service: svcB, Region: "DE08315", DestinationID: "other"}}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := NewTable(tt.routes)
			if !tt.conflict {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ce *ConflictError
			if !errors.As(err, &ce) || !errors.Is(err, ErrConflict) {
				t.Fatalf("NewTable = %v, %v; want a ConflictError", tab, err)
			}
			if ce.Other.DestinationID != tt.other || !strings.Contains(err.Error(), "destination "+tt.other+"'s route") {
				t.Errorf("err = %v; want the other destination %s named", err, tt.other)
			}
			if ce.Route.Service != svcA || ce.Route.Region != "DE08315" || ce.Route.DestinationID == ce.Other.DestinationID && ce.Route.ValidFrom.Equal(ce.Other.ValidFrom) {
				t.Errorf("conflict %+v", ce)
			}
		})
	}
}

func TestInvalidRoutes(t *testing.T) {
	tests := []struct {
		name  string
		route Route
		field string
	}{
		{"region without DE", Route{Service: svcA, Region: "08315", DestinationID: "d"}, "region"},
		{"region length", Route{Service: svcA, Region: "DE0831", DestinationID: "d"}, "region"},
		{"region land", Route{Service: svcA, Region: "DE17", DestinationID: "d"}, "region"},
		{"short key", Route{Service: "9900100100000", Region: "DE08", DestinationID: "d"}, "service"},
		{"bad leika urn", Route{Service: leika.URNPrefix + "123", Region: "DE08", DestinationID: "d"}, "service"},
		{"not a urn", Route{Service: "Abfallgebühr", Region: "DE08", DestinationID: "d"}, "service"},
		{"no destination", Route{Service: svcA, Region: "DE08"}, "destinationId"},
		{"empty window", Route{Service: svcA, Region: "DE08", DestinationID: "d", ValidFrom: t0, ValidUntil: t0}, "validUntil"},
		{"reversed window", Route{Service: svcA, Region: "DE08", DestinationID: "d", ValidFrom: t1, ValidUntil: t0}, "validUntil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewTable([]Route{{Service: svcA, Region: "DE09", DestinationID: "ok"}, tt.route})
			var re *RouteError
			if !errors.As(err, &re) || !errors.Is(err, ErrInvalidRoute) || re.Field != tt.field {
				t.Fatalf("err = %v, want a RouteError on %s", err, tt.field)
			}
			_, err = mustTable(t).With(1, Change{Route: tt.route})
			if !errors.As(err, &re) || re.Field != tt.field {
				t.Fatalf("With: err = %v, want a RouteError on %s", err, tt.field)
			}
		})
	}
}

func TestWith(t *testing.T) {
	a := ars.MustParse("083155012074")
	kreis := Route{Service: svcA, Region: "DE08315", DestinationID: "lra"}
	gem := Route{Service: leika.URNPrefix + svcA, Region: "DE083155012074", DestinationID: "muellheim"}
	other := Route{Service: svcB, Region: "DE08", DestinationID: "land"}
	t1Tab := mustTable(t, kreis, other)

	t2, err := t1Tab.With(7, Change{Route: gem})
	if err != nil {
		t.Fatal(err)
	}
	if r, _, _ := t2.Resolve(svcA, a, t0); r.DestinationID != "muellheim" || t2.Revision() != 7 || t2.Len() != 3 {
		t.Errorf("after add: %+v, revision %d, len %d", r, t2.Revision(), t2.Len())
	}
	if r, _, _ := t1Tab.Resolve(svcA, a, t0); r.DestinationID != "lra" || t1Tab.Len() != 2 {
		t.Errorf("the old table changed: %+v", r)
	}
	if t2.services[svcB] != t1Tab.services[svcB] {
		t.Error("an unchanged service was rebuilt")
	}

	again, err := t2.With(8, Change{Route: gem})
	if err != nil || again.Len() != 3 {
		t.Errorf("replayed add: %v, len %d", err, again.Len())
	}

	_, err = t2.With(9, Change{Route: Route{Service: svcA, Region: "DE083155012074", DestinationID: "usurper"}})
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Route.DestinationID != "usurper" || ce.Other.DestinationID != "muellheim" {
		t.Fatalf("conflicting add: %v", err)
	}

	// Handing over in one step: remove and add together.
	t3, err := t2.With(10, Change{Route: gem, Remove: true}, Change{Route: Route{Service: svcA, Region: "DE083155012074", DestinationID: "successor"}})
	if err != nil {
		t.Fatal(err)
	}
	if r, _, _ := t3.Resolve(svcA, a, t0); r.DestinationID != "successor" {
		t.Errorf("after handover: %+v", r)
	}

	t4, err := t3.With(11, Change{Route: Route{Service: svcA, Region: "DE083155012074", DestinationID: "successor"}, Remove: true}, Change{Route: kreis, Remove: true}, Change{Route: kreis, Remove: true})
	if err != nil {
		t.Fatal(err)
	}
	if r, _, ok := t4.Resolve(svcA, a, t0); ok || t4.Len() != 1 || t4.Routes(svcA) != nil {
		t.Errorf("after removing all: %+v, len %d", r, t4.Len())
	}
	if t5, err := t4.With(12, Change{Route: kreis, Remove: true}); err != nil || t5.Len() != 1 {
		t.Errorf("removing an absent route: %v", err)
	}
}

func TestReplaceDestination(t *testing.T) {
	tab := mustTable(t,
		Route{Service: svcA, Region: "DE08315", DestinationID: "lra"},
		Route{Service: svcB, Region: "DE08315", DestinationID: "lra"},
		Route{Service: svcB, Region: "DE08316", DestinationID: "lra"},
		Route{Service: svcA, Region: "DE08", DestinationID: "land"},
	)
	nt, err := tab.ReplaceDestination(3, "lra", []Route{
		{Service: leika.URNPrefix + svcB, Region: "DE08315", DestinationID: "lra"},
		{Service: svcB, Region: "DE08317", DestinationID: "lra", ValidFrom: t1},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(nt.Routes(svcA), nt.Routes(svcB))
	want := fmt.Sprint([]Route{{Service: svcA, Region: "DE08", DestinationID: "land"}},
		[]Route{{Service: svcB, Region: "DE08315", DestinationID: "lra"}, {Service: svcB, Region: "DE08317", DestinationID: "lra", ValidFrom: t1}})
	if got != want || nt.Revision() != 3 || nt.Len() != 3 {
		t.Errorf("routes = %s\nwant     %s (revision %d, len %d)", got, want, nt.Revision(), nt.Len())
	}
	if _, err := tab.ReplaceDestination(4, "lra", []Route{{Service: svcA, Region: "DE08", DestinationID: "land"}}); !errors.Is(err, ErrInvalidRoute) {
		t.Errorf("foreign route accepted: %v", err)
	}
	if _, err := tab.ReplaceDestination(4, "new", []Route{{Service: svcA, Region: "DE08", DestinationID: "new"}}); !errors.Is(err, ErrConflict) {
		t.Errorf("conflict accepted: %v", err)
	}
}

func TestResolveAllocs(t *testing.T) {
	tab := mustTable(t,
		Route{Service: svcA, Region: "DE08", DestinationID: "land"},
		Route{Service: svcA, Region: "DE083155012074", DestinationID: "old", ValidUntil: t1},
		Route{Service: svcA, Region: "DE083155012074", DestinationID: "new", ValidFrom: t1},
	)
	places := []ars.ARS{ars.MustParse("083155012074"), ars.MustParse("081110000000"), ars.MustParse("091620000000")}
	urn := leika.URNPrefix + svcA
	n := testing.AllocsPerRun(100, func() {
		for _, p := range places {
			tab.Resolve(svcA, p, t0)
			tab.Resolve(urn, p, t1)
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per run, want 0", n)
	}
}

// TestSwap resolves from many goroutines while the table is replaced, as a
// gateway does on registry events; run with -race.
func TestSwap(t *testing.T) {
	var cur atomic.Pointer[Table]
	cur.Store(mustTable(t, Route{Service: svcA, Region: "DE08", DestinationID: "d0"}))
	a := ars.MustParse("083155012074")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				tab := cur.Load()
				r, _, ok := tab.Resolve(svcA, a, t0)
				if !ok || r.DestinationID != fmt.Sprintf("d%d", tab.Revision()) {
					t.Errorf("revision %d resolved to %+v", tab.Revision(), r)
					return
				}
			}
		}()
	}
	for rev := uint64(1); rev <= 200; rev++ {
		old := cur.Load()
		nt, err := old.ReplaceDestination(rev, fmt.Sprintf("d%d", rev), []Route{{Service: svcA, Region: "DE08", DestinationID: fmt.Sprintf("d%d", rev)}})
		if !errors.Is(err, ErrConflict) {
			t.Fatalf("replacing another destination's region: %v", err)
		}
		nt, err = old.With(rev,
			Change{Route: Route{Service: svcA, Region: "DE08", DestinationID: fmt.Sprintf("d%d", rev-1)}, Remove: true},
			Change{Route: Route{Service: svcA, Region: "DE08", DestinationID: fmt.Sprintf("d%d", rev)}})
		if err != nil {
			t.Fatal(err)
		}
		cur.Store(nt)
	}
	close(stop)
	wg.Wait()
}

func dataFile(tb testing.TB, name string) string {
	tb.Helper()
	return sharedtest.Data(tb, name)
}

func readDirectory(tb testing.TB) *ars.Directory {
	tb.Helper()
	f, err := os.Open(dataFile(tb, "GV100AD_30112025.txt"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	d, err := ars.ParseGV100AD(f)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func TestResolveDirectory(t *testing.T) {
	d := readDirectory(t)
	var routes []Route
	for _, k := range d.Areas(ars.Kreis) {
		routes = append(routes, Route{Service: svcA, Region: "DE" + k.ARS[:5], DestinationID: "kreis-" + k.ARS[:5]})
	}
	for _, l := range d.Areas(ars.Land) {
		routes = append(routes, Route{Service: svcA, Region: "DE" + l.ARS[:2], DestinationID: "land-" + l.ARS[:2]})
	}
	// Müllheim has its own route; its neighbour Auggen has not.
	routes = append(routes, Route{Service: svcA, Region: "DE083155012074", DestinationID: "muellheim"})
	tab := mustTable(t, routes...)

	tests := []struct {
		name  string
		ars   string
		dest  string
		level ars.Level
	}{
		{"gemeinde route wins over kreis", "083155012074", "muellheim", ars.Gemeinde},
		{"gemeinde falls back to kreis", "083155012004", "kreis-08315", ars.Kreis},
		{"kreisfreie Stadt Freiburg", "083110000000", "kreis-08311", ars.Kreis},
		{"Berlin", "110000000000", "kreis-11000", ars.Kreis},
		{"Hamburg", "020000000000", "kreis-02000", ars.Kreis},
		{"Berlin as Land", "11", "land-11", ars.Land},
		{"gemeindefrei without Kreis", "070009999999", "land-07", ars.Land},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := ars.MustParse(tt.ars)
			if _, ok := d.Find(a); !ok {
				t.Fatalf("%s not in the directory", tt.ars)
			}
			r, l, ok := tab.Resolve(svcA, a, t0)
			if !ok || r.DestinationID != tt.dest || l != tt.level {
				t.Errorf("Resolve(%s) = %+v at %s, %v; want %s at %s", tt.ars, r, l, ok, tt.dest, tt.level)
			}
		})
	}

	// Without Kreis routes a Gemeinde falls back to its Land.
	landOnly := mustTable(t, append(routes[len(routes)-17:len(routes)-1:len(routes)-1], Route{Service: svcA, Region: "DE083110000000", DestinationID: "freiburg"})...)
	for _, c := range []struct {
		ars, dest string
		level     ars.Level
	}{
		{"083155012004", "land-08", ars.Land},
		{"083110000000", "freiburg", ars.Gemeinde},
		{"110000000000", "land-11", ars.Land},
		{"020000000000", "land-02", ars.Land},
	} {
		r, l, ok := landOnly.Resolve(svcA, ars.MustParse(c.ars), t0)
		if !ok || r.DestinationID != c.dest || l != c.level {
			t.Errorf("Land fallback: Resolve(%s) = %+v at %s; want %s at %s", c.ars, r, l, c.dest, c.level)
		}
	}
	// A 12-digit Freiburg route serves the Gemeinde, not the Kreis asked
	// for as such.
	if r, l, _ := landOnly.Resolve(svcA, ars.MustParse("08311"), t0); r.DestinationID != "land-08" || l != ars.Land {
		t.Errorf("Kreis 08311 resolved to %+v at %s", r, l)
	}
}

func TestCoverage(t *testing.T) {
	d := readDirectory(t)
	// Baden-Württemberg by Kreis except Freiburg, Bayern by Land, Nordrhein-
	// Westfalen for Gemeinden with an odd last digit, and a Gemeinde route
	// in Freiburg valid only from t1.
	var routes []Route
	for _, k := range d.Areas(ars.Kreis) {
		if k.ARS[:2] == "08" && k.ARS[:5] != "08311" {
			routes = append(routes, Route{Service: svcA, Region: "DE" + k.ARS[:5], DestinationID: "kreis-" + k.ARS[:5]})
		}
	}
	routes = append(routes, Route{Service: svcA, Region: "DE09", DestinationID: "by"})
	routes = append(routes, Route{Service: svcA, Region: "DE083110000000", DestinationID: "freiburg", ValidFrom: t1})
	for _, g := range d.Areas(ars.Gemeinde) {
		if g.ARS[:2] == "05" && (g.ARS[11]-'0')%2 == 1 {
			routes = append(routes, Route{Service: svcA, Region: "DE" + g.ARS, DestinationID: "g-" + g.ARS})
		}
	}
	tab := mustTable(t, routes...)

	for _, at := range []time.Time{t0, t1} {
		c := tab.Coverage(d, svcA, at, nil)
		// The independent count: by ARS digits, not by resolution.
		type count struct{ gem, cov, pop, covPop, uncovered int }
		want := map[string]*count{}
		for _, g := range d.Areas(ars.Gemeinde) {
			w := want[g.ARS[:2]]
			if w == nil {
				w = &count{}
				want[g.ARS[:2]] = w
			}
			w.gem++
			w.pop += g.Population
			covered := g.ARS[:2] == "09" ||
				g.ARS[:2] == "08" && (g.ARS[:5] != "08311" || !at.Before(t1)) ||
				g.ARS[:2] == "05" && (g.ARS[11]-'0')%2 == 1
			if covered {
				w.cov++
				w.covPop += g.Population
			} else {
				w.uncovered++
			}
		}
		if len(c.Lands) != 16 {
			t.Fatalf("%d Länder", len(c.Lands))
		}
		totalPop := 0
		for _, lc := range c.Lands {
			w := want[lc.Land]
			if lc.Gemeinden != w.gem || lc.Covered != w.cov || lc.Population != w.pop || lc.CoveredPopulation != w.covPop || len(lc.Uncovered) != w.uncovered {
				t.Errorf("%s %s at %v: %d/%d Gemeinden, %d/%d people, %d uncovered; want %+v", lc.Land, lc.Name, at.Year(), lc.Covered, lc.Gemeinden, lc.CoveredPopulation, lc.Population, len(lc.Uncovered), *w)
			}
			totalPop += lc.Population
		}
		if c.Population != 83577140 || totalPop != c.Population || c.Gemeinden != 10953 {
			t.Errorf("totals: %d Gemeinden, %d people", c.Gemeinden, c.Population)
		}
		bw := c.Lands[7]
		if bw.Land != "08" || bw.Name != "Baden-Württemberg" {
			t.Fatalf("Lands[7] = %s %s", bw.Land, bw.Name)
		}
		if at.Before(t1) {
			if len(bw.Uncovered) != 1 || bw.Uncovered[0].ARS != "083110000000" {
				t.Errorf("uncovered in BW before %v: %d", t1, len(bw.Uncovered))
			}
		} else if len(bw.Uncovered) != 0 {
			t.Errorf("uncovered in BW from %v: %d", t1, len(bw.Uncovered))
		}
	}
}

// A Gemeinde whose route's destination the caller does not count is
// uncovered, and does not fall back to a broader route: /routes answers
// nothing for it either.
func TestCoverageCountsOnlyServingDestinations(t *testing.T) {
	d := readDirectory(t)
	tab := mustTable(t,
		Route{Service: svcA, Region: "DE09", DestinationID: "by"},
		Route{Service: svcA, Region: "DE08", DestinationID: "bw"},
		Route{Service: svcA, Region: "DE083110000000", DestinationID: "freiburg"},
	)
	c := tab.Coverage(d, svcA, t0, func(id string) bool { return id != "by" && id != "freiburg" })
	for _, lc := range c.Lands {
		switch lc.Land {
		case "09":
			if lc.Covered != 0 || len(lc.Uncovered) != lc.Gemeinden {
				t.Errorf("Bayern: %d of %d covered, %d uncovered; want none covered", lc.Covered, lc.Gemeinden, len(lc.Uncovered))
			}
		case "08":
			if lc.Covered != lc.Gemeinden-1 || len(lc.Uncovered) != 1 || lc.Uncovered[0].ARS != "083110000000" {
				t.Errorf("Baden-Württemberg: %d of %d covered, uncovered %v; want all but Freiburg", lc.Covered, lc.Gemeinden, lc.Uncovered)
			}
		}
	}
}
