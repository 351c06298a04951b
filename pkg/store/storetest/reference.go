package storetest

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

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
	{"SearchFoldedNames", testSearchFolded},
	{"SeedAreas", testSeedAreas},
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
		// Keys padded with zeros name the area above.
		{"083150000000", ars.Kreis, false, nil},
		{"083150000", ars.Kreis, false, nil},
		{"08300", ars.Regierungsbezirk, false, nil},
		{"083000000000", ars.Regierungsbezirk, false, nil},
		{"08000", ars.Land, false, nil},
		{"080000000000", ars.Land, false, nil},
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
		// Keys padded with zeros name the area above, as an ARS does.
		{"08315000", "083150000000", ars.Kreis, nil},
		{"08300000", "083000000000", ars.Regierungsbezirk, nil},
		{"08000000", "080000000000", ars.Land, nil},
		{"08300", "083000000000", ars.Regierungsbezirk, nil},
		{"08000", "080000000000", ars.Land, nil},
		{"080", "080000000000", ars.Land, nil},
		{"09162000", "091620000000", ars.Gemeinde, nil}, // kreisfreie Stadt: the Gemeinde
		{"08316000", "", 0, store.ErrNotFound},
		{"08310000", "", 0, store.ErrNotFound},
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
	bad := [][]string{nil, {"a"}, {"*x*"}, {"Frei*b"}, {"***"}, {"ab", "ab", "ab", "ab", "ab", "ab", "ab", "ab", "ab", "ab", "ab"},
		{strings.Repeat("a", store.MaxTermLength+1)}, {strings.Repeat("a", 49999)}, {strings.Repeat("a", 50000)},
		{"*" + strings.Repeat("ab*", 20000)}, {strings.Repeat("ä", 1<<19)}, {"Frei\x00burg"}, {"Frei\xffburg"}}
	for _, terms := range bad {
		_, _, err := r.SearchAreas(ctx, store.AreaQuery{Terms: terms}, store.Page{})
		var qe *store.AreaQueryError
		if !errors.Is(err, store.ErrAreaQuery) || !errors.As(err, &qe) {
			t.Errorf("search %.40q: %v, want an AreaQueryError", terms, err)
		}
	}
}

// foldingDirectory holds real names of the GV100AD of 30.11.2025 that
// people type in other forms: umlauts as ae, oe, ue, "St." for "Sankt"
// and the other way round, and names with an "oe" or "St" of their own.
func foldingDirectory(t *testing.T) *ars.Directory {
	t.Helper()
	return newDirectory(t, stand2025, []ars.Area{
		area("010000000000", ars.Land, 0, "Schleswig-Holstein", 0, ""),
		area("050000000000", ars.Land, 0, "Nordrhein-Westfalen", 0, ""),
		area("060000000000", ars.Land, 0, "Hessen", 0, ""),
		area("080000000000", ars.Land, 0, "Baden-Württemberg", 0, ""),
		area("090000000000", ars.Land, 0, "Bayern", 0, ""),
		area("100000000000", ars.Land, 0, "Saarland", 0, ""),
		area("160000000000", ars.Land, 0, "Thüringen", 0, ""),
		area("053150000000", ars.Kreis, ars.KreisfreieStadt, "Köln, Stadt", 0, ""),
		area("053150000000", ars.Gemeinde, ars.KreisfreieStadtGemeinde, "Köln, Stadt", 1024621, "50667"),
		area("051110000000", ars.Gemeinde, ars.KreisfreieStadtGemeinde, "Düsseldorf, Stadt", 618685, "40213"),
		area("081110000000", ars.Gemeinde, ars.StadtkreisGemeinde, "Stuttgart, Landeshauptstadt", 612663, "70173"),
		area("055620028028", ars.Gemeinde, ars.Stadt, "Oer-Erkenschwick, Stadt", 31404, "45739"),
		area("059740000000", ars.Kreis, ars.KreisKind, "Soest", 0, ""),
		area("059740040040", ars.Gemeinde, ars.Stadt, "Soest, Stadt", 47776, "59494"),
		area("065310005005", ars.Gemeinde, ars.Stadt, "Gießen, Universitätsstadt", 89179, "35390"),
		area("053820056056", ars.Gemeinde, ars.Stadt, "Sankt Augustin, Stadt", 56521, "53757"),
		area("100450117117", ars.Gemeinde, ars.Stadt, "St. Ingbert, Stadt", 35453, "66386"),
		area("083260052052", ars.Gemeinde, ars.Stadt, "St. Georgen im Schwarzwald, Stadt", 12301, "78112"),
		area("091835149129", ars.Gemeinde, ars.Stadt, "Neumarkt-Sankt Veit, St", 6334, "84494"),
		area("010515163000", ars.Gemeindeverband, ars.Amt, "Burg-St. Michaelisdonn", 0, ""),
		area("010515163097", ars.Gemeinde, ars.KreisangehoerigeGemeinde, "Sankt Michaelisdonn", 3487, "25693"),
		area("160695002047", ars.Gemeinde, ars.KreisangehoerigeGemeinde, "St.Bernhard", 232, "98660"),
	})
}

// testSearchFolded holds both stores to one answer for names typed as
// people type them.
func testSearchFolded(t *testing.T, _ store.Store, r store.Reference) {
	ctx := context.Background()
	_, err := r.ImportAreas(ctx, "cli", foldingDirectory(t))
	must(t, "import", err)
	id := func(l ars.Level, a string) string { return store.AreaID(a, l) }
	var (
		kKoeln         = id(ars.Kreis, "053150000000")
		gKoeln         = id(ars.Gemeinde, "053150000000")
		gDuesseldorf   = id(ars.Gemeinde, "051110000000")
		gStuttgart     = id(ars.Gemeinde, "081110000000")
		gOer           = id(ars.Gemeinde, "055620028028")
		kSoest         = id(ars.Kreis, "059740000000")
		gSoest         = id(ars.Gemeinde, "059740040040")
		gGiessen       = id(ars.Gemeinde, "065310005005")
		gSanktAugustin = id(ars.Gemeinde, "053820056056")
		gStIngbert     = id(ars.Gemeinde, "100450117117")
		gStGeorgen     = id(ars.Gemeinde, "083260052052")
		gNeumarkt      = id(ars.Gemeinde, "091835149129")
		gvBurg         = id(ars.Gemeindeverband, "010515163000")
		gMichaelisdonn = id(ars.Gemeinde, "010515163097")
		gStBernhard    = id(ars.Gemeinde, "160695002047")
		koeln          = []string{kKoeln, gKoeln}
		sankt          = []string{gSanktAugustin, gStIngbert, gStGeorgen, gNeumarkt, gvBurg, gMichaelisdonn, gStBernhard}
	)
	tests := []struct {
		terms []string
		want  []string
	}{
		{[]string{"Köln"}, koeln},
		{[]string{"Koeln"}, koeln},
		{[]string{"KOELN"}, koeln},
		{[]string{"Ko\u0308ln"}, koeln},
		{[]string{"Kö*"}, koeln},
		{[]string{"Koe*"}, koeln},
		{[]string{"Ko\u0308*"}, koeln},
		{[]string{"Duesseldorf"}, []string{gDuesseldorf}},
		{[]string{"Dü*"}, []string{gDuesseldorf}},
		{[]string{"Giessen"}, []string{gGiessen}},
		{[]string{"GIESSEN"}, []string{gGiessen}},
		{[]string{"Universitaetsstadt"}, []string{gGiessen}},
		{[]string{"Oer*"}, []string{gOer}},
		{[]string{"Oer-Erkenschwick"}, []string{gOer}},
		{[]string{"Soest"}, []string{kSoest, gSoest}},
		{[]string{"St. Georgen"}, []string{gStGeorgen}},
		{[]string{"St Georgen"}, []string{gStGeorgen}},
		{[]string{"St.Georgen"}, []string{gStGeorgen}},
		{[]string{"Sankt Georgen"}, []string{gStGeorgen}},
		{[]string{"Sankt Georgen im Schwarzwald, Stadt"}, []string{gStGeorgen}},
		{[]string{"Sankt Ingbert"}, []string{gStIngbert}},
		{[]string{"St. Augustin"}, []string{gSanktAugustin}},
		{[]string{"St. Bernhard"}, []string{gStBernhard}},
		{[]string{"Sankt Bernhard"}, []string{gStBernhard}},
		{[]string{"St*Bern*"}, []string{gStBernhard}},
		{[]string{"St *Bern*"}, []string{gStBernhard}},
		{[]string{"Sankt"}, sankt},
		{[]string{"Sankt*"}, sankt},
		{[]string{"St."}, sankt},
		{[]string{"St.*"}, sankt},
		{[]string{"Sa*"}, slices.Insert(slices.Clone(sankt), 1, id(ars.Land, "100000000000"))}, // Saarland
		{[]string{"Sankt", "Michaelisdonn"}, []string{gvBurg, gMichaelisdonn}},
		{[]string{"Burg-Sankt*"}, []string{gvBurg}},
		{[]string{"Burg-St*"}, []string{gvBurg}},
		{[]string{"Neumarkt-St*"}, []string{gNeumarkt}},
		{[]string{"Veit, St"}, []string{gNeumarkt}}, // St is Stadt here
		{[]string{"Veit, Sankt"}, nil},
		{[]string{"St*", "Stadt"}, []string{kKoeln, gKoeln, gDuesseldorf, gSanktAugustin, gSoest, gStIngbert, gOer, gStGeorgen}},
		{[]string{"Stu*"}, []string{gStuttgart}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.terms, "+"), func(t *testing.T) {
			list, total, err := r.SearchAreas(ctx, store.AreaQuery{Terms: tc.terms}, store.Page{Limit: store.MaxPageLimit})
			must(t, "search", err)
			var got []string
			for _, a := range list {
				got = append(got, a.ID())
			}
			if !slices.Equal(got, tc.want) || total != len(tc.want) {
				t.Errorf("search %q = %v (total %d), want %v", tc.terms, got, total, tc.want)
			}
		})
	}
}

// demoAreas are hand-typed areas of the GV100AD of 30.11.2025, as a demo
// seeds them: Kirchzarten and the areas above it.
func demoAreas(t *testing.T) *ars.Directory {
	t.Helper()
	return newDirectory(t, stand2025, []ars.Area{
		area("080000000000", ars.Land, 0, "Baden-Württemberg", 0, ""),
		area("083000000000", ars.Regierungsbezirk, 0, "Reg.-Bez. Freiburg", 0, ""),
		area("083150000000", ars.Kreis, ars.Landkreis, "Breisgau-Hochschwarzwald", 0, ""),
		area("083155003000", ars.Gemeindeverband, ars.Verwaltungsverband, "GVV Dreisamtal", 0, ""),
		area("083155003064", ars.Gemeinde, ars.KreisangehoerigeGemeinde, "Kirchzarten", 10266, "79199"),
	})
}

func testSeedAreas(t *testing.T, s store.Store, r store.Reference) {
	ctx := context.Background()
	seeds := demoAreas(t)
	res, err := r.SeedAreas(ctx, "dev", seeds)
	must(t, "seed", err)
	equal(t, "seed result", res, store.AreaImport{Stand: stand2025, Areas: 5, Added: 5})
	got := allAreas(t, r)
	want := seeds.All()
	if len(got) != len(want) {
		t.Fatalf("%d areas, want %d", len(got), len(want))
	}
	for i := range got {
		equal(t, "seeded area "+want[i].ARS, got[i], store.Area{Area: want[i], Stand: stand2025, Seeded: true})
	}
	// Seeded areas are found and searched like imported ones.
	a, err := r.FindArea(ctx, ars.MustParse("083155003064"))
	must(t, "find", err)
	if a.Name != "Kirchzarten" || !a.Seeded {
		t.Errorf("find: %+v", a)
	}
	k, err := r.AreaByAGS(ctx, mustAGS(t, "08315000"))
	must(t, "by ags", err)
	if k.Level != ars.Kreis || k.Name != "Breisgau-Hochschwarzwald" {
		t.Errorf("by ags: %+v", k)
	}
	list, total, err := r.SearchAreas(ctx, store.AreaQuery{Terms: []string{"Kirchzarten"}}, store.Page{})
	must(t, "search", err)
	if total != 1 || list[0].Name != "Kirchzarten" {
		t.Errorf("search: %+v, %d", list, total)
	}
	entries, err := s.AuditLog(ctx, "reference:areas", store.Page{})
	must(t, "audit", err)
	if len(entries) != 1 || entries[0].Action != "reference.areas.seed" || entries[0].Actor != "dev" {
		t.Fatalf("audit: %+v", entries)
	}

	// Seeding the same areas again changes nothing; other areas replace
	// them, and a seeded area no longer listed is gone, not retired (the
	// areas above it lose its population).
	n := auditCount(t, s)
	res, err = r.SeedAreas(ctx, "dev", seeds)
	must(t, "seed again", err)
	equal(t, "second seed", res, store.AreaImport{Stand: stand2025, Areas: 5, Unchanged: 5})
	if c := auditCount(t, s); c != n {
		t.Errorf("audit grew from %d to %d", n, c)
	}
	var fewer []ars.Area
	for _, a := range seeds.All() {
		switch a.Level {
		case ars.Gemeinde:
			continue
		case ars.Land:
			a.Name = "Land Baden-Württemberg"
		}
		fewer = append(fewer, a)
	}
	res, err = r.SeedAreas(ctx, "dev", newDirectory(t, stand2025, fewer))
	must(t, "seed fewer", err)
	equal(t, "seed fewer", res, store.AreaImport{Stand: stand2025, Areas: 4, Updated: 4, Retired: 1})
	if _, err := r.Area(ctx, "083155003064", ars.Gemeinde); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a seeded area no longer listed: %v, want ErrNotFound", err)
	}

	// An import of an older directory replaces the seeded areas.
	d := directory2024(t)
	res, err = r.ImportAreas(ctx, "cli", d)
	must(t, "import an older directory", err)
	equal(t, "import", res, store.AreaImport{Stand: stand2024, Areas: 12, Added: 12, Replaced: 4})
	got = allAreas(t, r)
	want = d.All()
	if len(got) != len(want) {
		t.Fatalf("%d areas after the import, want %d", len(got), len(want))
	}
	for i := range got {
		equal(t, "area "+want[i].ARS, got[i], store.Area{Area: want[i], Stand: stand2024})
	}

	// Once a directory is imported, seeding changes nothing.
	n = auditCount(t, s)
	if _, err := r.SeedAreas(ctx, "dev", seeds); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("seed over an imported directory: %v, want ErrConflict", err)
	}
	equal(t, "areas after a refused seed", allAreas(t, r), got)
	if c := auditCount(t, s); c != n {
		t.Errorf("audit grew from %d to %d", n, c)
	}
}

func mustAGS(t *testing.T, s string) ars.AGS {
	t.Helper()
	g, err := ars.ParseAGS(s)
	must(t, "parse ags", err)
	return g
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

// testRealDirectories seeds a demo's areas of 2025, imports the real 2021
// directory over them, then the 2025 one, and searches it.
func testRealDirectories(t *testing.T, s store.Store, r store.Reference) {
	ctx := context.Background()
	d2021 := readDirectory(t, "GV100AD_31122021.txt")
	d2025 := readDirectory(t, "GV100AD_30112025.txt")
	_, err := r.SeedAreas(ctx, "dev", demoAreas(t))
	must(t, "seed", err)
	start := time.Now()
	res, err := r.ImportAreas(ctx, "cli", d2021)
	must(t, "import 2021", err)
	t.Logf("2021: %+v in %v", res, time.Since(start))
	if res.Added != len(d2021.All()) || res.Replaced != len(demoAreas(t).All()) {
		t.Errorf("2021 added %d of %d, replaced %d seeded areas", res.Added, len(d2021.All()), res.Replaced)
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
	searchReal(t, r)
}

// searchReal searches the real 2025 directory for names as people type
// them, and holds each answer to store.FilterAreas over every stored area:
// a store's candidates miss no match.
func searchReal(t *testing.T, r store.Reference) {
	ctx := context.Background()
	var all []store.AreaCandidate
	must(t, "areas", r.Areas(ctx, func(a store.Area) error {
		all = append(all, store.AreaCandidate{Area: a})
		return nil
	}))
	tests := []struct {
		terms []string
		has   string // a name among the matches, "" to check only against FilterAreas
	}{
		{[]string{"Koeln"}, "Köln, Stadt"},
		{[]string{"Ko\u0308ln"}, "Köln, Stadt"},
		{[]string{"Muenchen"}, "München, Landeshauptstadt"},
		{[]string{"Mue*"}, "München, Landeshauptstadt"},
		{[]string{"Duesseldorf"}, "Düsseldorf, Stadt"},
		{[]string{"Oer-Erkenschwick"}, "Oer-Erkenschwick, Stadt"},
		{[]string{"Soest"}, "Soest"},
		{[]string{"Sankt Georgen"}, "St. Georgen im Schwarzwald, Stadt"},
		{[]string{"St. Georgen"}, "St. Georgen im Schwarzwald, Stadt"},
		{[]string{"Sankt Ingbert"}, "St. Ingbert, Stadt"},
		{[]string{"St. Augustin"}, "Sankt Augustin, Stadt"},
		{[]string{"Sankt Wendel"}, "St. Wendel"},
		{[]string{"Sankt Bernhard"}, "St.Bernhard"},
		{[]string{"St. Peter-Ording"}, "Sankt Peter-Ording"},
		{[]string{"Neumarkt-St. Veit"}, "Neumarkt-Sankt Veit, St"},
		{[]string{"St*"}, ""},
		{[]string{"St *"}, ""},
		{[]string{"Sankt*"}, ""},
		{[]string{"*ue*"}, ""},
		{[]string{"*oe*", "*st*"}, ""},
		{[]string{"Frankfurt am Main"}, "Frankfurt am Main, Stadt"},
		{[]string{"Neu*"}, ""},
		{[]string{"*burg"}, ""},
	}
	for _, tc := range tests {
		t.Run("search "+strings.Join(tc.terms, "+"), func(t *testing.T) {
			q := store.AreaQuery{Terms: tc.terms}
			p := store.Page{Limit: store.MaxPageLimit}
			list, total, err := r.SearchAreas(ctx, q, p)
			must(t, "search", err)
			want, wantTotal := store.FilterAreas(all, q, p)
			if total != wantTotal || len(list) != len(want) {
				t.Fatalf("search %q: %d of %d matches, want %d of %d", tc.terms, len(list), total, len(want), wantTotal)
			}
			for i := range list {
				if list[i].ID() != want[i].ID() {
					t.Fatalf("search %q: match %d is %s %s, want %s %s", tc.terms, i, list[i].ID(), list[i].Name, want[i].ID(), want[i].Name)
				}
			}
			if tc.has != "" && !slices.ContainsFunc(list, func(a store.Area) bool { return a.Name == tc.has }) {
				t.Errorf("search %q: %d matches without %q", tc.terms, total, tc.has)
			}
		})
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

// ReadDirectory parses a GV100AD file of the shared reference data,
// skipping the test when the data is absent.
func ReadDirectory(t *testing.T, name string) *ars.Directory { return readDirectory(t, name) }

// LegacySearchName returns search_name as the stores kept it before
// migration 00006: the name lower-cased, ß as ss, runs of spaces as one.
func LegacySearchName(name string) string {
	var b strings.Builder
	space := false
	for _, r := range strings.TrimSpace(name) {
		switch {
		case unicode.IsSpace(r):
			if !space {
				b.WriteByte(' ')
			}
			space = true
			continue
		case r == 'ß' || r == 'ẞ':
			b.WriteString("ss")
		default:
			b.WriteRune(unicode.ToLower(r))
		}
		space = false
	}
	return b.String()
}

// upStatements returns the statements of the Up part of the goose SQL
// migration in file that begin with prefix, in order.
func upStatements(t *testing.T, file, prefix string) []string {
	t.Helper()
	raw, err := os.ReadFile(file)
	must(t, "read migration", err)
	_, up, ok := strings.Cut(string(raw), "-- +goose Up")
	if !ok {
		t.Fatalf("%s: no Up part", file)
	}
	up, _, _ = strings.Cut(up, "-- +goose Down")
	var out []string
	for _, stmt := range strings.Split(up, ";") {
		var lines []string
		for _, l := range strings.Split(stmt, "\n") {
			if !strings.HasPrefix(strings.TrimSpace(l), "--") {
				lines = append(lines, l)
			}
		}
		if stmt = strings.TrimSpace(strings.Join(lines, "\n")); strings.HasPrefix(stmt, prefix) {
			out = append(out, stmt)
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no statement begins with %q", file, prefix)
	}
	return out
}

// CheckSearchNameMigration checks the statements of migration file that
// fold search_name in SQL: from the search_name kept before it
// (LegacySearchName), they must give store.FoldName of every name of the
// real directories of 2021 and 2025, which it imports into r, an empty
// store. db is r's database; bind returns the placeholder of the i-th
// argument of a statement, from 1.
func CheckSearchNameMigration(t *testing.T, r store.Reference, db *sql.DB, bind func(i int) string, file string) {
	t.Helper()
	ctx := context.Background()
	for _, name := range []string{"GV100AD_31122021.txt", "GV100AD_30112025.txt"} {
		_, err := r.ImportAreas(ctx, "cli", ReadDirectory(t, name))
		must(t, "import "+name, err)
	}
	names := make(map[string]string) // name by ARS and level
	must(t, "areas", r.Areas(ctx, func(a store.Area) error {
		names[a.ID()] = a.Name
		return nil
	}))
	tx, err := db.BeginTx(ctx, nil)
	must(t, "begin", err)
	set, err := tx.PrepareContext(ctx, `UPDATE areas SET search_name = `+bind(1)+` WHERE ars = `+bind(2)+` AND level = `+bind(3))
	must(t, "prepare", err)
	for id, name := range names {
		_, err := set.ExecContext(ctx, LegacySearchName(name), id[1:], int(id[0]-'0'))
		must(t, "set legacy search_name", err)
	}
	must(t, "close", set.Close())
	must(t, "commit", tx.Commit())
	for _, stmt := range upStatements(t, file, "UPDATE areas SET search_name") {
		_, err := db.ExecContext(ctx, stmt)
		must(t, "migrate", err)
	}
	rows, err := db.QueryContext(ctx, `SELECT ars, level, name, search_name FROM areas`)
	must(t, "read search_name", err)
	defer rows.Close()
	n, bad := 0, 0
	for rows.Next() {
		var arsDigits, name, folded string
		var level int
		must(t, "scan", rows.Scan(&arsDigits, &level, &name, &folded))
		n++
		if want := store.FoldName(name); folded != want {
			if bad++; bad <= 10 {
				t.Errorf("%s %s %q: migrated to %q, FoldName gives %q", ars.Level(level), arsDigits, name, folded, want)
			}
		}
	}
	must(t, "read search_name", rows.Err())
	if n != len(names) || bad > 0 {
		t.Errorf("%d of %d names folded otherwise", bad, n)
	}
}

// CheckSeededMigration checks the statements of migration file that mark
// seeded areas: areas only the dev command's demo imported (as the actor
// "dev", before SeedAreas) become seeded, so that a directory of any date
// can be imported over them; once another actor imported areas, none are
// marked. r is an empty store, db its database.
func CheckSeededMigration(t *testing.T, r store.Reference, db *sql.DB, file string) {
	t.Helper()
	ctx := context.Background()
	stmts := upStatements(t, file, "UPDATE areas SET seeded")
	migrate := func() {
		t.Helper()
		for _, stmt := range stmts {
			_, err := db.ExecContext(ctx, stmt)
			must(t, "migrate", err)
		}
	}
	seededAreas := func() (seeded, all int) {
		t.Helper()
		for _, a := range allAreas(t, r) {
			if a.Seeded {
				seeded++
			}
			all++
		}
		return seeded, all
	}
	_, err := r.ImportAreas(ctx, "dev", demoAreas(t))
	must(t, "import the demo's areas", err)
	migrate()
	if seeded, all := seededAreas(); seeded != all || all != 5 {
		t.Fatalf("%d of %d areas the demo imported are seeded", seeded, all)
	}
	res, err := r.ImportAreas(ctx, "cli", directory2024(t))
	must(t, "import an older directory over the demo's areas", err)
	if res.Replaced != 5 {
		t.Errorf("import replaced %d seeded areas, want 5", res.Replaced)
	}
	_, err = r.ImportAreas(ctx, "dev", directory2025(t))
	must(t, "import as dev", err)
	migrate()
	if seeded, all := seededAreas(); seeded != 0 {
		t.Errorf("%d of %d imported areas seeded", seeded, all)
	}
}
