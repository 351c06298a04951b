package ars

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// gvRecord builds a GV100AD record: values are placed at their 1-based
// columns, the rest is blank.
func gvRecord(fields map[int]string) string {
	b := []rune(strings.Repeat(" ", recordLen))
	for col, v := range fields {
		copy(b[col-1:], []rune(v))
	}
	return string(b)
}

// gvFile is a small well-formed GV100AD file: a Land with a Regierungsbezirk,
// a Kreis, a Gemeindeverband and two Gemeinden, one with an umlaut.
func gvFile() []string {
	return []string{
		gvRecord(map[int]string{1: "10", 3: "20251130", 11: "08", 23: "Baden-Württemberg", 73: "Stuttgart"}),
		gvRecord(map[int]string{1: "20", 3: "20251130", 11: "083", 23: "Freiburg", 73: "Freiburg im Breisgau"}),
		gvRecord(map[int]string{1: "30", 3: "20251130", 11: "0833", 23: "Region Südlicher Oberrhein", 73: "Freiburg im Breisgau"}),
		gvRecord(map[int]string{1: "40", 3: "20251130", 11: "08315", 23: "Breisgau-Hochschwarzwald", 73: "Freiburg im Breisgau", 123: "44"}),
		gvRecord(map[int]string{1: "50", 3: "20251130", 11: "08315", 19: "5001", 23: "Verwaltungsgemeinschaft Müllheim", 123: "54"}),
		gvRecord(map[int]string{1: "60", 3: "20251130", 11: "08315074", 19: "5001", 23: "Müllheim im Markgräflerland, Stadt", 123: "63",
			129: "00000005784", 140: "00000019640", 151: "00000009646", 166: "79379", 171: "*****"}),
		gvRecord(map[int]string{1: "60", 3: "20251130", 11: "08315004", 19: "5001", 23: "Auggen", 123: "64",
			129: "00000001883", 140: "00000002706", 151: "00000001347", 166: "79424"}),
	}
}

func parseLines(lines []string) (*Directory, error) {
	return ParseGV100AD(strings.NewReader(strings.Join(lines, "\n") + "\n"))
}

func TestParseGV100ADSmall(t *testing.T) {
	d, err := parseLines(gvFile())
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2025, 11, 30, 0, 0, 0, 0, time.UTC); !d.Date().Equal(want) {
		t.Errorf("Date = %v, want %v", d.Date(), want)
	}
	g, ok := d.Get(MustParse("083155001074"), Gemeinde)
	if !ok {
		t.Fatal("Müllheim not found")
	}
	want := Area{ARS: "083155001074", AGS: "08315074", Name: "Müllheim im Markgräflerland, Stadt", Level: Gemeinde, Kind: Stadt,
		Parent: "083155001000", ParentLevel: Gemeindeverband, Population: 19640, Male: 9646, Hectares: 5784, PostalCode: "79379"}
	if g != want {
		t.Errorf("Müllheim = %+v\nwant       %+v", g, want)
	}
	vg, _ := d.Get(MustParse("083155001"), Gemeindeverband)
	if vg.Population != 19640+2706 || vg.Parent != "083150000000" || vg.ParentLevel != Kreis || vg.AGS != "" {
		t.Errorf("Verwaltungsgemeinschaft = %+v", vg)
	}
	for _, l := range []Level{Kreis, Regierungsbezirk, Land} {
		a, _ := d.Find(MustParse("083155001074").Truncate(l))
		if a.Level != l || a.Population != 19640+2706 {
			t.Errorf("%s = %+v", l, a)
		}
	}
	if a, _ := d.Get(MustParse("08315"), Kreis); a.ParentLevel != Regierungsbezirk || a.Parent != "083000000000" {
		t.Errorf("Kreis parent = %s %s", a.ParentLevel, a.Parent)
	}
	if got := d.Regions(); len(got) != 1 || got[0].Code != "0833" || got[0].Name != "Region Südlicher Oberrhein" {
		t.Errorf("Regions = %+v", got)
	}
	if got := d.Children(MustParse("083155001"), Gemeindeverband); len(got) != 2 || got[0].Name != "Müllheim im Markgräflerland, Stadt" {
		t.Errorf("Children = %+v", got)
	}
	a, ok := d.Get(MustParse("083155001004"), Gemeinde)
	if !ok || !a.PostalCodeUnique || a.PostalCode != "79424" {
		t.Errorf("Auggen = %+v", a)
	}
}

func TestParseGV100ADErrors(t *testing.T) {
	good := gvFile()
	set := func(i int, col int, v string) func([]string) []string {
		return func(l []string) []string {
			r := []rune(l[i])
			copy(r[col-1:], []rune(v))
			l[i] = string(r)
			return l
		}
	}
	tests := []struct {
		name   string
		edit   func([]string) []string
		line   int
		field  string
		substr string
	}{
		{"truncated", func(l []string) []string { l[5] = l[5][:150]; return l }, 6, "", "record has 148 characters, want 220"},
		{"too long", func(l []string) []string { l[2] += "x"; return l }, 3, "", "record has 221 characters"},
		{"empty line", func(l []string) []string { return slices.Insert(l, 3, "") }, 4, "", "record has 0 characters"},
		{"garbled population", set(6, 145, "x"), 7, "Bevölkerung", `'x' at column 145 is not a digit`},
		{"garbled area", set(5, 129, " "), 6, "Fläche", `' ' at column 129 is not a digit`},
		{"male above total", set(6, 151, "00000009999"), 7, "Bevölkerung männlich", "exceeds the population"},
		{"bad postcode", set(6, 166, "7942a"), 7, "Postleitzahl", "is not a digit"},
		{"record type", set(3, 1, "41"), 4, "Satzart", `"41" is not one of`},
		{"date", set(1, 3, "20251131"), 2, "Gebietsstand", "differs from 20251130 on line 1"},
		{"first date", set(0, 3, "20251131"), 1, "Gebietsstand", "is not a date"},
		{"land", set(3, 11, "17"), 4, "Land", "17 is not 01 to 16"},
		{"kreis blank", set(3, 14, " 1"), 4, "Kreis", "is not a digit"},
		{"land with kreis", set(0, 14, "15"), 1, "Kreis", "want blank"},
		{"verband on kreis", set(3, 19, "0001"), 4, "Gemeindeverband", "want blank"},
		{"kind", set(3, 123, "  "), 4, "Textkennzeichen", "is not a digit"},
		{"name", set(4, 23, strings.Repeat(" ", 32)), 5, "Bezeichnung", "empty"},
		{"duplicate", func(l []string) []string { return append(l, l[6]) }, 8, "Regionalschlüssel", "repeats line 7"},
		{"no land", func(l []string) []string { return l[1:] }, 1, "Land", "lies in no Land"},
		{"latin-1", func(l []string) []string { l[4] = strings.Replace(l[4], "ü", "\xfc", 1); return l }, 5, "", "not valid UTF-8"},
		{"no seat for gemeinde is fine but unknown kind digits", set(6, 123, "6x"), 7, "Textkennzeichen", "not a digit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines := tt.edit(slices.Clone(good))
			_, err := parseLines(lines)
			var le *LineError
			if !errors.As(err, &le) {
				t.Fatalf("err = %v, want a *LineError", err)
			}
			if le.Line != tt.line || le.Field != tt.field || !strings.Contains(err.Error(), tt.substr) {
				t.Errorf("err = %v (line %d field %q), want line %d field %q containing %q", err, le.Line, le.Field, tt.line, tt.field, tt.substr)
			}
			if !errors.Is(err, ErrFormat) {
				t.Errorf("err = %v does not wrap ErrFormat", err)
			}
		})
	}
	t.Run("long line", func(t *testing.T) {
		_, err := ParseGV100AD(strings.NewReader(good[0] + "\n" + strings.Repeat("6", 5000) + "\n"))
		var le *LineError
		if !errors.As(err, &le) || le.Line != 2 {
			t.Fatalf("err = %v, want a LineError on line 2", err)
		}
	})
	t.Run("empty", func(t *testing.T) {
		if _, err := ParseGV100AD(strings.NewReader("")); !errors.Is(err, ErrFormat) {
			t.Fatalf("err = %v, want ErrFormat", err)
		}
	})
	t.Run("crlf", func(t *testing.T) {
		if _, err := ParseGV100AD(strings.NewReader(strings.Join(good, "\r\n"))); err != nil {
			t.Fatal(err)
		}
	})
}

func readDirectory(tb testing.TB, name string) *Directory {
	tb.Helper()
	f, err := os.Open(dataFile(tb, name))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	d, err := ParseGV100AD(f)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func TestParseGV100ADReal(t *testing.T) {
	d := readDirectory(t, "GV100AD_30112025.txt")
	if want := time.Date(2025, 11, 30, 0, 0, 0, 0, time.UTC); !d.Date().Equal(want) {
		t.Errorf("Date = %v, want %v", d.Date(), want)
	}
	counts := map[Level]int{Land: 16, Regierungsbezirk: 29, Kreis: 400, Gemeindeverband: 4590, Gemeinde: 10953}
	for l, n := range counts {
		if got := d.Len(l); got != n {
			t.Errorf("Len(%s) = %d, want %d", l, got, n)
		}
	}
	if got := len(d.Regions()); got != 12 {
		t.Errorf("%d regions, want 12", got)
	}
	political, free, politicalPop, sum := 0, 0, 0, 0
	for _, g := range d.Areas(Gemeinde) {
		sum += g.Population
		if g.Gemeindefrei() {
			free++
			continue
		}
		political++
		politicalPop += g.Population
	}
	// The README's 83,577,140 counts every Gemeinde-level record, the 917
	// inhabitants of gemeindefreie Gebiete included.
	if political != 10751 || free != 202 || sum != 83577140 || politicalPop != 83577140-917 || d.Population() != sum {
		t.Errorf("political %d, gemeindefrei %d, population %d (political %d, Population() %d)", political, free, sum, politicalPop, d.Population())
	}
	landSum := 0
	for _, l := range d.Areas(Land) {
		landSum += l.Population
	}
	if landSum != sum {
		t.Errorf("Länder sum to %d, Gemeinden to %d", landSum, sum)
	}

	t.Run("Freiburg", func(t *testing.T) {
		a := MustParse("083110000000")
		if got := d.Levels(a); !slices.Equal(got, []Level{Kreis, Gemeindeverband, Gemeinde}) {
			t.Errorf("Levels = %v", got)
		}
		k, _ := d.Get(a, Kreis)
		g, _ := d.Get(a, Gemeinde)
		if k.Name != "Freiburg im Breisgau, Stadtkreis" || k.Kind != Stadtkreis || k.Parent != "083000000000" || k.ParentLevel != Regierungsbezirk {
			t.Errorf("Kreis = %+v", k)
		}
		if g.Name != "Freiburg im Breisgau, Stadt" || g.Kind != StadtkreisGemeinde || g.Population != 237460 || g.PostalCode != "79098" || g.PostalCodeUnique || g.AGS != "08311000" {
			t.Errorf("Gemeinde = %+v", g)
		}
		if k.Population != g.Population {
			t.Errorf("Kreis population %d, Gemeinde %d", k.Population, g.Population)
		}
		if f, _ := d.Find(MustParse("08311")); f.Level != Kreis {
			t.Errorf("Find(08311) = %s", f.Level)
		}
		if f, _ := d.Find(a); f.Level != Gemeinde {
			t.Errorf("Find(083110000000) = %s", f.Level)
		}
		ags, _ := ParseAGS("08311000")
		if f, ok := d.ByAGS(ags); !ok || f != g {
			t.Errorf("ByAGS = %+v", f)
		}
	})
	for _, c := range []struct {
		name, ars string
		pop       int
	}{{"Berlin", "110000000000", 3685265}, {"Hamburg", "020000000000", 1862565}} {
		t.Run(c.name, func(t *testing.T) {
			a := MustParse(c.ars)
			if got := d.Levels(a); !slices.Equal(got, []Level{Land, Kreis, Gemeindeverband, Gemeinde}) {
				t.Errorf("Levels = %v", got)
			}
			for _, l := range []Level{Land, Kreis, Gemeindeverband, Gemeinde} {
				x, _ := d.Get(a, l)
				if x.Population != c.pop || !strings.HasPrefix(x.Name, c.name) {
					t.Errorf("%s: %+v", l, x)
				}
			}
			if k, _ := d.Get(a, Kreis); k.ParentLevel != Land || k.Parent != c.ars {
				t.Errorf("Kreis parent %s %s", k.ParentLevel, k.Parent)
			}
			if f, _ := d.Find(MustParse(c.ars[:2])); f.Level != Land {
				t.Errorf("Find(%s) = %s", c.ars[:2], f.Level)
			}
		})
	}
	t.Run("gemeindefrei without Kreis", func(t *testing.T) {
		g, ok := d.Get(MustParse("070009999999"), Gemeinde)
		if !ok || g.Kind != GemeindefreiesGebietLeer || g.ParentLevel != Gemeindeverband {
			t.Fatalf("%+v", g)
		}
		v, _ := d.Get(MustParse("070009999"), Gemeindeverband)
		if v.ParentLevel != Land {
			t.Errorf("Gemeindeverband parent %s", v.ParentLevel)
		}
	})
}

func TestParseGV100ADRealDamaged(t *testing.T) {
	raw, err := os.ReadFile(dataFile(t, "GV100AD_30112025.txt"))
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(raw, []byte("\n"))
	tests := []struct {
		name  string
		line  int // 1-based
		edit  func([]byte) []byte
		field string
	}{
		{"truncated", 5000, func(b []byte) []byte { return append(b[:100:100], '\n') }, ""},
		{"garbled population", 12345, func(b []byte) []byte {
			r := []rune(string(b))
			r[141] = 'O'
			return []byte(string(r))
		}, "Bevölkerung"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !bytes.HasPrefix(lines[tt.line-1], []byte("60")) && tt.field != "" {
				t.Fatalf("line %d is not a Gemeinde record", tt.line)
			}
			var buf bytes.Buffer
			for i, l := range lines {
				if i == tt.line-1 {
					l = tt.edit(slices.Clone(l))
				}
				buf.Write(l)
			}
			_, err := ParseGV100AD(&buf)
			var le *LineError
			if !errors.As(err, &le) || le.Line != tt.line || le.Field != tt.field {
				t.Fatalf("err = %v, want a LineError on line %d field %q", err, tt.line, tt.field)
			}
		})
	}
}

func TestDiff(t *testing.T) {
	prev := readDirectory(t, "GV100AD_31122021.txt")
	next := readDirectory(t, "GV100AD_30112025.txt")
	if prev.Date().Year() != 2021 {
		t.Errorf("2021 directory dated %v", prev.Date())
	}
	added, removed := Diff(prev, next)
	var a, r []Area
	for _, x := range added {
		if x.Level == Gemeinde {
			a = append(a, x)
		}
	}
	for _, x := range removed {
		if x.Level == Gemeinde {
			r = append(r, x)
		}
	}
	if len(a) != 25 || len(r) != 69 {
		t.Fatalf("%d Gemeinde ARS appeared, %d disappeared; want 25, 69", len(a), len(r))
	}
	// A re-keyed Gemeinde keeps its AGS: find one that is both removed and
	// added under another ARS.
	byAGS := map[string]Area{}
	for _, x := range a {
		byAGS[x.AGS] = x
	}
	rekeyed := 0
	for _, x := range r {
		if y, ok := byAGS[x.AGS]; ok && y.ARS != x.ARS {
			rekeyed++
		}
	}
	if rekeyed == 0 {
		t.Error("no Gemeinde re-keyed under the same AGS")
	}
	if a, r := Diff(next, next); len(a)+len(r) != 0 {
		t.Errorf("Diff of a directory with itself: %d, %d", len(a), len(r))
	}
}

func BenchmarkParseGV100AD(b *testing.B) {
	raw, err := os.ReadFile(dataFile(b, "GV100AD_30112025.txt"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := ParseGV100AD(bytes.NewReader(raw)); err != nil {
			b.Fatal(err)
		}
	}
}

func TestNewDirectoryRoundTrip(t *testing.T) {
	d := readDirectory(t, "GV100AD_30112025.txt")
	all := d.All()
	// As a store returns them: any order, higher levels with stale sums.
	slices.Reverse(all)
	for i := range all {
		if all[i].Level != Gemeinde {
			all[i].Population = -1
		}
		all[i].Parent = ""
	}
	n, err := NewDirectory(d.Date(), all)
	if err != nil {
		t.Fatal(err)
	}
	if n.Population() != d.Population() || !n.Date().Equal(d.Date()) {
		t.Fatalf("population %d, date %v", n.Population(), n.Date())
	}
	for _, l := range Levels[1:] {
		// NewDirectory orders by ARS, the file by AGS within a Kreis.
		got, want := n.Areas(l), d.Areas(l)
		byKey := func(a, b Area) int { return strings.Compare(a.ARS, b.ARS) }
		slices.SortFunc(got, byKey)
		slices.SortFunc(want, byKey)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("areas of level %s differ", l)
		}
	}
	if _, err := NewDirectory(d.Date(), append(all, all[0])); !errors.Is(err, ErrFormat) {
		t.Errorf("repeated area: %v", err)
	}
	if _, err := NewDirectory(d.Date(), []Area{{ARS: "1700000000", Level: Land, Name: "x"}}); !errors.Is(err, ErrFormat) {
		t.Errorf("bad ARS: %v", err)
	}
}
