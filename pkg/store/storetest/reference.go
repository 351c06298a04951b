package storetest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/leika"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// RunReference runs the conformance suite of store.Reference. open must
// return a new, empty store that also implements store.Reference; the
// suite closes it when the subtest ends.
func RunReference(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	for _, tc := range referenceTests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
			})
			r, ok := s.(store.Reference)
			if !ok {
				t.Fatalf("%T does not implement store.Reference", s)
			}
			tc.run(t, s, r)
		})
	}
}

type referenceTest struct {
	name string
	run  func(t *testing.T, s store.Store, r store.Reference)
}

var referenceTests = []referenceTest{
	{"ImportAreas", testImportAreas},
	{"ReimportRetiresAndRestores", testReimportAreas},
	{"StaleDirectory", testStaleDirectory},
	{"AreaLookups", testAreaLookups},
	{"SearchAreas", testSearchAreas},
	{"Catalogue", testCatalogue},
	{"Postcodes", testPostcodes},
	{"EachDestination", testEachDestination},
	{"RealDirectories", testRealDirectories},
}

// area builds a directory entry; AGS follows from the ARS.
func area(arsDigits string, l ars.Level, kind ars.Kind, name string, pop int, plz string) ars.Area {
	a := ars.Area{ARS: arsDigits, Level: l, Kind: kind, Name: name, Population: pop, Male: pop / 2, Hectares: int64(pop / 10), PostalCode: plz, PostalCodeUnique: plz != ""}
	switch l {
	case ars.Land, ars.Regierungsbezirk, ars.Kreis:
		a.AGS = arsDigits[:8]
	case ars.Gemeinde:
		a.AGS = arsDigits[:5] + arsDigits[9:]
	}
	if l != ars.Gemeinde {
		a.Seat = name
	}
	return a
}

var (
	stand2024 = time.Date(2024, 12, 31, 0, 0, 0, 0, time.UTC)
	stand2025 = time.Date(2025, 11, 30, 0, 0, 0, 0, time.UTC)
)

// directory2024 is a small directory of real places: Freiburg (kreisfrei,
// the same ARS at three levels), two Gemeinden of a Gemeindeverband in a
// Landkreis, and München.
func directory2024(t *testing.T) *ars.Directory {
	t.Helper()
	return newDirectory(t, stand2024, []ars.Area{
		area("080000000000", ars.Land, 0, "Baden-Württemberg", 0, ""),
		area("083000000000", ars.Regierungsbezirk, 0, "Freiburg", 0, ""),
		area("083110000000", ars.Kreis, ars.KreisfreieStadt, "Freiburg im Breisgau, Stadt", 0, ""),
		area("083110000000", ars.Gemeindeverband, ars.VerbandsfreieGemeinde, "Freiburg im Breisgau, Stadt", 0, ""),
		area("083110000000", ars.Gemeinde, ars.KreisfreieStadtGemeinde, "Freiburg im Breisgau, Stadt", 237460, "79098"),
		area("083150000000", ars.Kreis, ars.Landkreis, "Breisgau-Hochschwarzwald", 0, ""),
		area("083155012000", ars.Gemeindeverband, ars.Verwaltungsverband, "Müllheim-Badenweiler", 0, ""),
		area("083155012074", ars.Gemeinde, ars.Stadt, "Müllheim, Stadt", 19650, "79379"),
		area("083155012004", ars.Gemeinde, ars.KreisangehoerigeGemeinde, "Auggen", 2750, "79424"),
		area("090000000000", ars.Land, 0, "Bayern", 0, ""),
		area("091620000000", ars.Kreis, ars.KreisfreieStadt, "München, Landeshauptstadt", 0, ""),
		area("091620000000", ars.Gemeinde, ars.KreisfreieStadtGemeinde, "München, Landeshauptstadt", 1510378, "80331"),
	})
}

// directory2025 renames Auggen, drops Müllheim and adds Neuenburg.
func directory2025(t *testing.T) *ars.Directory {
	t.Helper()
	var areas []ars.Area
	for _, a := range directory2024(t).All() {
		switch a.ARS + a.Level.String() {
		case "083155012074gemeinde":
			continue
		case "083155012004gemeinde":
			a.Name = "Auggen am Rhein"
		}
		areas = append(areas, a)
	}
	areas = append(areas, area("083155012076", ars.Gemeinde, ars.Stadt, "Neuenburg am Rhein, Stadt", 12900, "79395"))
	return newDirectory(t, stand2025, areas)
}

func newDirectory(t *testing.T, stand time.Time, areas []ars.Area) *ars.Directory {
	t.Helper()
	d, err := ars.NewDirectory(stand, areas)
	if err != nil {
		t.Fatalf("new directory: %v", err)
	}
	return d
}

func auditCount(t *testing.T, s store.Store) int {
	t.Helper()
	entries, err := s.AuditLog(context.Background(), "", store.Page{Limit: store.MaxPageLimit})
	must(t, "audit log", err)
	return len(entries)
}

func allAreas(t *testing.T, r store.Reference) []store.Area {
	t.Helper()
	var out []store.Area
	must(t, "areas", r.Areas(context.Background(), func(a store.Area) error {
		out = append(out, a)
		return nil
	}))
	return out
}

func testImportAreas(t *testing.T, s store.Store, r store.Reference) {
	ctx := context.Background()
	d := directory2024(t)
	start := time.Now()
	res, err := r.ImportAreas(ctx, "cli", d)
	must(t, "import", err)
	equal(t, "import result", res, store.AreaImport{Stand: stand2024, Areas: 12, Added: 12})

	got := allAreas(t, r)
	want := d.All() // NewDirectory's order is the store's: ARS, then level
	if len(got) != len(want) {
		t.Fatalf("%d areas, want %d", len(got), len(want))
	}
	for i := range got {
		equal(t, "area "+want[i].ARS, got[i], store.Area{Area: want[i], Stand: stand2024})
	}
	// The Regierungsbezirk's population is the sum over its Gemeinden.
	rb, err := r.Area(ctx, "083000000000", ars.Regierungsbezirk)
	must(t, "area", err)
	if rb.Population != 237460+19650+2750 || rb.ID() != "3083000000000" {
		t.Errorf("Regierungsbezirk: population %d, id %s", rb.Population, rb.ID())
	}

	entries, err := s.AuditLog(ctx, "reference:areas", store.Page{})
	must(t, "audit", err)
	if len(entries) != 1 || entries[0].Action != "reference.areas.import" || entries[0].Actor != "cli" {
		t.Fatalf("audit: %+v", entries)
	}
	checkNow(t, "audit time", entries[0].At, start)

	// The same directory again changes nothing, not even the audit log.
	n := auditCount(t, s)
	res, err = r.ImportAreas(ctx, "cli", d)
	must(t, "import again", err)
	equal(t, "second import", res, store.AreaImport{Stand: stand2024, Areas: 12, Unchanged: 12})
	equal(t, "areas after the second import", allAreas(t, r), got)
	if c := auditCount(t, s); c != n {
		t.Errorf("audit grew from %d to %d", n, c)
	}
}

func testReimportAreas(t *testing.T, s store.Store, r store.Reference) {
	ctx := context.Background()
	_, err := r.ImportAreas(ctx, "cli", directory2024(t))
	must(t, "import 2024", err)
	start := time.Now()
	res, err := r.ImportAreas(ctx, "cli", directory2025(t))
	must(t, "import 2025", err)
	equal(t, "2025 import", res, store.AreaImport{Stand: stand2025, Areas: 12, Added: 1, Updated: 5, Retired: 1, Unchanged: 6})

	m, err := r.Area(ctx, "083155012074", ars.Gemeinde)
	must(t, "retired area", err)
	if m.Retired == nil || m.RetiredStand == nil || !m.RetiredStand.Equal(stand2025) || !m.Stand.Equal(stand2024) || m.Name != "Müllheim, Stadt" {
		t.Fatalf("retired Müllheim: %+v", m)
	}
	checkNow(t, "retired", *m.Retired, start)
	a, err := r.Area(ctx, "083155012004", ars.Gemeinde)
	must(t, "renamed area", err)
	if a.Name != "Auggen am Rhein" || a.Retired != nil || !a.Stand.Equal(stand2025) {
		t.Errorf("renamed Auggen: %+v", a)
	}
	f, err := r.Area(ctx, "083110000000", ars.Gemeinde)
	must(t, "unchanged area", err)
	if !f.Stand.Equal(stand2025) {
		t.Errorf("Freiburg's stand %v, want %v", f.Stand, stand2025)
	}

	// Re-importing 2025 is a no-op; the retired key keeps its date.
	res, err = r.ImportAreas(ctx, "cli", directory2025(t))
	must(t, "import 2025 again", err)
	equal(t, "2025 again", res, store.AreaImport{Stand: stand2025, Areas: 12, Unchanged: 12})
	again, err := r.Area(ctx, "083155012074", ars.Gemeinde)
	must(t, "retired area", err)
	equal(t, "retired area after a re-import", again, m)

	// A later directory listing the key again restores it.
	later := stand2025.AddDate(0, 1, 0)
	areas := directory2025(t).All()
	areas = append(areas, area("083155012074", ars.Gemeinde, ars.Stadt, "Müllheim, Stadt", 19650, "79379"))
	res, err = r.ImportAreas(ctx, "cli", newDirectory(t, later, areas))
	must(t, "import with Müllheim", err)
	if res.Restored != 1 || res.Retired != 0 || res.Added != 0 {
		t.Errorf("restore: %+v", res)
	}
	m, err = r.Area(ctx, "083155012074", ars.Gemeinde)
	must(t, "restored area", err)
	if m.Retired != nil || m.RetiredStand != nil || !m.Stand.Equal(later) {
		t.Errorf("restored Müllheim: %+v", m)
	}
}

func testStaleDirectory(t *testing.T, s store.Store, r store.Reference) {
	ctx := context.Background()
	_, err := r.ImportAreas(ctx, "cli", directory2025(t))
	must(t, "import 2025", err)
	before := allAreas(t, r)
	n := auditCount(t, s)
	if _, err := r.ImportAreas(ctx, "cli", directory2024(t)); !errors.Is(err, store.ErrStale) {
		t.Fatalf("older directory: %v, want ErrStale", err)
	}
	equal(t, "areas after a refused import", allAreas(t, r), before)
	if c := auditCount(t, s); c != n {
		t.Errorf("audit grew from %d to %d", n, c)
	}
}

func testAreaLookups(t *testing.T, _ store.Store, r store.Reference) {
	ctx := context.Background()
	_, err := r.ImportAreas(ctx, "cli", directory2024(t))
	must(t, "import 2024", err)
	_, err = r.ImportAreas(ctx, "cli", directory2025(t))
	must(t, "import 2025", err)

	find := []struct {
		key       string
		level     ars.Level
		retired   bool
		wantError error
	}{
		{"083110000000", ars.Gemeinde, false, nil},
		{"08311", ars.Kreis, false, nil},
		{"083", ars.Regierungsbezirk, false, nil},
		{"08", ars.Land, false, nil},
		{"083155012", ars.Gemeindeverband, false, nil},
		{"083155012074", ars.Gemeinde, true, nil},
		{"083155012099", 0, false, store.ErrNotFound},
		{"16", 0, false, store.ErrNotFound},
	}
	for _, tc := range find {
		t.Run("find "+tc.key, func(t *testing.T) {
			a, err := r.FindArea(ctx, ars.MustParse(tc.key))
			if tc.wantError != nil {
				if !errors.Is(err, tc.wantError) {
					t.Fatalf("FindArea(%s) = %+v, %v; want %v", tc.key, a, err, tc.wantError)
				}
				return
			}
			must(t, "find", err)
			if a.Level != tc.level || (a.Retired != nil) != tc.retired || a.ARS != ars.MustParse(tc.key).String() {
				t.Errorf("FindArea(%s) = %s %s retired %v", tc.key, a.Level, a.ARS, a.Retired != nil)
			}
		})
	}
	byAGS := []struct {
		ags, ars  string
		level     ars.Level
		wantError error
	}{
		{"08311000", "083110000000", ars.Gemeinde, nil},
		{"08315004", "083155012004", ars.Gemeinde, nil},
		{"08315074", "083155012074", ars.Gemeinde, nil}, // retired
		{"08311", "083110000000", ars.Kreis, nil},
		{"09", "090000000000", ars.Land, nil},
		{"08315999", "", 0, store.ErrNotFound},
	}
	for _, tc := range byAGS {
		t.Run("ags "+tc.ags, func(t *testing.T) {
			g, err := ars.ParseAGS(tc.ags)
			must(t, "parse", err)
			a, err := r.AreaByAGS(ctx, g)
			if tc.wantError != nil {
				if !errors.Is(err, tc.wantError) {
					t.Fatalf("AreaByAGS(%s) = %+v, %v", tc.ags, a, err)
				}
				return
			}
			must(t, "by ags", err)
			if a.ARS != tc.ars || a.Level != tc.level {
				t.Errorf("AreaByAGS(%s) = %s %s", tc.ags, a.Level, a.ARS)
			}
		})
	}
	if _, err := r.Area(ctx, "083110000000", ars.Regierungsbezirk); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Area at a level it lacks: %v", err)
	}
}

func testSearchAreas(t *testing.T, _ store.Store, r store.Reference) {
	ctx := context.Background()
	_, err := r.ImportAreas(ctx, "cli", directory2024(t))
	must(t, "import 2024", err)
	_, err = r.ImportAreas(ctx, "cli", directory2025(t))
	must(t, "import 2025", err)
	_, err = r.ImportPostcodes(ctx, "cli", []ars.PostalCode{
		{Code: "79098", AGS: "08311000", ARS: "083110000000", Name: "Freiburg im Breisgau, Stadt", Current: true},
		{Code: "79100", AGS: "08311000", ARS: "083110000000", Name: "Freiburg im Breisgau, Stadt", Current: true},
		{Code: "79379", AGS: "08315074", ARS: "083155012074", Name: "Müllheim, Stadt", Current: true},
		{Code: "79424", AGS: "08315004", ARS: "083155012004", Name: "Auggen", Current: true},
		{Code: "79395", AGS: "08315076", ARS: "083155012076", Name: "Neuenburg am Rhein, Stadt", Current: true},
	})
	must(t, "import postcodes", err)

	id := func(l ars.Level, a string) string { return store.AreaID(a, l) }
	var (
		rbFreiburg   = id(ars.Regierungsbezirk, "083000000000")
		kFreiburg    = id(ars.Kreis, "083110000000")
		gFreiburg    = id(ars.Gemeinde, "083110000000")
		kBreisgauHS  = id(ars.Kreis, "083150000000")
		gAuggen      = id(ars.Gemeinde, "083155012004")
		gNeuenburg   = id(ars.Gemeinde, "083155012076")
		kMuenchen    = id(ars.Kreis, "091620000000")
		gMuenchen    = id(ars.Gemeinde, "091620000000")
		gvMuellheimB = id(ars.Gemeindeverband, "083155012000")
	)
	tests := []struct {
		name  string
		terms []string
		page  store.Page
		want  []string
		total int
	}{
		{"word", []string{"Freiburg"}, store.Page{}, []string{rbFreiburg, kFreiburg, gFreiburg}, 3},
		{"case and umlaut", []string{"MÜNCHEN"}, store.Page{}, []string{kMuenchen, gMuenchen}, 2},
		{"no partial word without *", []string{"Frei"}, store.Page{}, nil, 0},
		{"prefix", []string{"Frei*"}, store.Page{}, []string{rbFreiburg, kFreiburg, gFreiburg}, 3},
		{"suffix", []string{"*burg"}, store.Page{}, []string{rbFreiburg, kFreiburg, gFreiburg, gNeuenburg}, 4},
		{"infix", []string{"*isga*"}, store.Page{}, []string{kFreiburg, gFreiburg, kBreisgauHS}, 3},
		{"hyphen bounds a word", []string{"Breisgau"}, store.Page{}, []string{kFreiburg, gFreiburg, kBreisgauHS}, 3},
		{"inner wildcard", []string{"Frei*Breis*"}, store.Page{}, []string{kFreiburg, gFreiburg}, 2},
		{"phrase", []string{"am Rhein"}, store.Page{}, []string{gNeuenburg, gAuggen}, 2},
		{"all terms", []string{"Rhein", "Neuen*"}, store.Page{}, []string{gNeuenburg}, 1},
		{"postcode", []string{"79098"}, store.Page{}, []string{gFreiburg}, 1},
		{"second postcode", []string{"79100"}, store.Page{}, []string{gFreiburg}, 1},
		{"postcode prefix", []string{"7939*"}, store.Page{}, []string{gNeuenburg}, 1},
		{"name and postcode", []string{"Auggen", "79424"}, store.Page{}, []string{gAuggen}, 1},
		{"name and another postcode", []string{"Auggen", "79098"}, store.Page{}, nil, 0},
		{"retired Gemeinde left out, its Verband found", []string{"Müllheim"}, store.Page{}, []string{gvMuellheimB}, 1},
		{"retired area's postcode", []string{"79379"}, store.Page{}, nil, 0},
		{"gemeindeverband", []string{"Müllheim-Badenweiler"}, store.Page{}, []string{gvMuellheimB}, 1},
		{"page", []string{"*burg"}, store.Page{Limit: 2, Offset: 1}, []string{kFreiburg, gFreiburg}, 4},
		{"page past the end", []string{"*burg"}, store.Page{Offset: 9}, nil, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			list, total, err := r.SearchAreas(ctx, store.AreaQuery{Terms: tc.terms}, tc.page)
			must(t, "search", err)
			var got []string
			for _, a := range list {
				got = append(got, a.ID())
			}
			if !slices.Equal(got, tc.want) || total != tc.total {
				t.Errorf("search %q = %v (total %d), want %v (total %d)", tc.terms, got, total, tc.want, tc.total)
			}
		})
	}
	for _, terms := range [][]string{nil, {"a"}, {"*x*"}, {"Frei*b"}, {"***"}, {"ab", "ab", "ab", "ab", "ab", "ab", "ab", "ab", "ab", "ab", "ab"}} {
		if _, _, err := r.SearchAreas(ctx, store.AreaQuery{Terms: terms}, store.Page{}); err == nil {
			t.Errorf("search %q: no error", terms)
		}
	}
}

func testCatalogue(t *testing.T, s store.Store, r store.Reference) {
	ctx := context.Background()
	a := leika.Service{Key: "99108008000000", Name: "Aufenthaltstitel", Level: "bund", Typisierung: "1", Kind: "lo", OZGID: "10001", OZGLeistung: "Aufenthalt", Themenfeld: "Ein- und Auswanderung"}
	b := leika.Service{Key: "99050012104000", Name: "Gewerbeanmeldung", Level: "kommune"}
	start := time.Now()
	res, err := r.ImportCatalogue(ctx, "cli", []leika.Service{a, b})
	must(t, "import", err)
	equal(t, "first import", res, store.CatalogueImport{Services: 2, Added: 2})
	e, err := r.CatalogueEntry(ctx, a.Key)
	must(t, "entry", err)
	if e.Service != a {
		t.Errorf("entry %+v, want %+v", e.Service, a)
	}
	checkNow(t, "updated", e.UpdatedAt, start)

	n := auditCount(t, s)
	res, err = r.ImportCatalogue(ctx, "cli", []leika.Service{a, b})
	must(t, "import again", err)
	equal(t, "second import", res, store.CatalogueImport{Services: 2, Unchanged: 2})
	if c := auditCount(t, s); c != n {
		t.Errorf("a repeated import grew the audit log from %d to %d", n, c)
	}

	// A partial catalogue updates what it lists and keeps the rest.
	b.Name = "Gewerbe anmelden"
	c := leika.Service{Key: "99001001000000", Name: "Abfallgebühr"}
	res, err = r.ImportCatalogue(ctx, "cli", []leika.Service{b, c})
	must(t, "partial import", err)
	equal(t, "partial import", res, store.CatalogueImport{Services: 2, Added: 1, Updated: 1})
	var keys []leika.Key
	must(t, "catalogue", r.Catalogue(ctx, func(e store.CatalogueEntry) error {
		keys = append(keys, e.Key)
		return nil
	}))
	if !slices.Equal(keys, []leika.Key{c.Key, b.Key, a.Key}) {
		t.Errorf("catalogue keys %v", keys)
	}
	if e, _ := r.CatalogueEntry(ctx, b.Key); e.Name != b.Name {
		t.Errorf("updated name %q", e.Name)
	}
	if _, err := r.CatalogueEntry(ctx, "99999999999999"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown key: %v", err)
	}
}

func testPostcodes(t *testing.T, s store.Store, r store.Reference) {
	ctx := context.Background()
	codes := []ars.PostalCode{
		{Code: "79098", AGS: "08311000", ARS: "083110000000", Name: "Freiburg im Breisgau, Stadt", DistrictARS: "083110000000", Current: true},
		{Code: "04720", AGS: "14522620", Name: "Zschaitz-Ottewig"},
	}
	res, err := r.ImportPostcodes(ctx, "cli", codes)
	must(t, "import", err)
	equal(t, "first import", res, store.PostcodeImport{Rows: 2})
	n := auditCount(t, s)
	res, err = r.ImportPostcodes(ctx, "cli", codes)
	must(t, "import again", err)
	equal(t, "second import", res, store.PostcodeImport{Rows: 2, Previous: 2})
	if c := auditCount(t, s); c != n {
		t.Errorf("a repeated import grew the audit log from %d to %d", n, c)
	}
	res, err = r.ImportPostcodes(ctx, "cli", codes[:1])
	must(t, "import fewer", err)
	equal(t, "third import", res, store.PostcodeImport{Rows: 1, Previous: 2})
	if c := auditCount(t, s); c != n+1 {
		t.Errorf("audit has %d entries, want %d", c, n+1)
	}
}

func testEachDestination(t *testing.T, s store.Store, r store.Reference) {
	ctx := context.Background()
	ids := []string{"c0000000-0000-4000-8000-000000000003", "a0000000-0000-4000-8000-000000000001", "b0000000-0000-4000-8000-000000000002"}
	want := map[string]store.Destination{}
	for _, id := range ids {
		d := destination(id)
		must(t, "create", s.CreateDestination(ctx, "test", d, keysOf(d)))
		want[id] = d
	}
	var got []string
	must(t, "each", r.EachDestination(ctx, func(d store.Destination) error {
		equal(t, "destination "+d.ID, d, want[d.ID])
		got = append(got, d.ID)
		return nil
	}))
	if !slices.Equal(got, []string{ids[1], ids[2], ids[0]}) {
		t.Errorf("order %v", got)
	}
	stop := errors.New("stop")
	calls := 0
	if err := r.EachDestination(ctx, func(store.Destination) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Errorf("stopping: %v after %d calls", err, calls)
	}
}

// testRealDirectories imports the real 2021 directory, then the 2025 one.
func testRealDirectories(t *testing.T, s store.Store, r store.Reference) {
	ctx := context.Background()
	d2021 := readDirectory(t, "GV100AD_31122021.txt")
	d2025 := readDirectory(t, "GV100AD_30112025.txt")
	start := time.Now()
	res, err := r.ImportAreas(ctx, "cli", d2021)
	must(t, "import 2021", err)
	t.Logf("2021: %+v in %v", res, time.Since(start))
	if res.Added != len(d2021.All()) {
		t.Errorf("2021 added %d of %d", res.Added, len(d2021.All()))
	}
	start = time.Now()
	res, err = r.ImportAreas(ctx, "cli", d2025)
	must(t, "import 2025", err)
	t.Logf("2025: %+v in %v", res, time.Since(start))

	added, removed := ars.Diff(d2021, d2025)
	if res.Added != len(added) || res.Retired != len(removed) || res.Areas != len(d2025.All()) {
		t.Errorf("2025 import %+v; Diff says %d added, %d removed", res, len(added), len(removed))
	}
	gemeinden := 0
	for _, a := range removed {
		if a.Level == ars.Gemeinde {
			gemeinden++
		}
	}
	if gemeinden != 69 {
		t.Errorf("%d Gemeinden retired, want 69", gemeinden)
	}
	current, retired := 0, 0
	must(t, "areas", r.Areas(ctx, func(a store.Area) error {
		if a.Retired != nil {
			retired++
			if !a.RetiredStand.Equal(d2025.Date()) || !a.Stand.Equal(d2021.Date()) {
				t.Fatalf("retired %s %s: stand %v, retired stand %v", a.Level, a.ARS, a.Stand, a.RetiredStand)
			}
		} else {
			current++
		}
		return nil
	}))
	if current != len(d2025.All()) || retired != len(removed) {
		t.Errorf("%d current, %d retired areas", current, retired)
	}
	// A Gemeinde re-keyed into another Gemeindeverband: its old ARS is
	// retired, its AGS leads to the new one.
	for _, a := range removed {
		if a.Level != ars.Gemeinde {
			continue
		}
		g, _ := ars.ParseAGS(a.AGS)
		if n, ok := d2025.ByAGS(g); ok {
			got, err := r.AreaByAGS(ctx, g)
			must(t, "by ags", err)
			if got.ARS != n.ARS || got.Retired != nil {
				t.Errorf("AGS %s: %s, want the current %s", a.AGS, got.ARS, n.ARS)
			}
			break
		}
	}
	n := auditCount(t, s)
	res, err = r.ImportAreas(ctx, "cli", d2025)
	must(t, "re-import 2025", err)
	if res.Unchanged != len(d2025.All()) || auditCount(t, s) != n {
		t.Errorf("re-import: %+v", res)
	}
}

// readDirectory parses a GV100AD file of the shared reference data,
// skipping the test when the data is absent.
func readDirectory(t *testing.T, name string) *ars.Directory {
	t.Helper()
	f, err := os.Open(DataFile(t, name))
	must(t, "open", err)
	defer f.Close()
	d, err := ars.ParseGV100AD(f)
	must(t, "parse "+name, err)
	return d
}

// DataFile returns the path of a file of the shared reference data beside
// the module root (../shared/data), skipping the test when it is absent.
func DataFile(tb testing.TB, name string) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Skip("module root not found")
		}
		dir = parent
	}
	p := filepath.Join(dir, "..", "shared", "data", name)
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("reference data absent: %v", err)
	}
	return p
}
