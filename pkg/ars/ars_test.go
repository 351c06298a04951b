package ars

import (
	"github.com/amtsbote/amtsbote/internal/sharedtest"

	"errors"
	"slices"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in     string
		want   string
		level  Level
		code   string
		region string
	}{
		{"08", "080000000000", Land, "08", "DE08"},
		{"083", "083000000000", Regierungsbezirk, "083", "DE083"},
		{"08311", "083110000000", Kreis, "08311", "DE08311"},
		{"083110000", "083110000000", Gemeindeverband, "083110000", "DE083110000"},
		{"083110000000", "083110000000", Gemeinde, "083110000000", "DE083110000000"},
		{"057540024024", "057540024024", Gemeinde, "057540024024", "DE057540024024"},
		{"16", "160000000000", Land, "16", "DE16"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			a, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if a.String() != tt.want || a.Level() != tt.level || a.Code() != tt.code || a.Region() != tt.region {
				t.Errorf("Parse(%q) = %s %s code %s region %s, want %s %s %s %s", tt.in, a, a.Level(), a.Code(), a.Region(), tt.want, tt.level, tt.code, tt.region)
			}
			if a.Land() != tt.want[:2] || a.Kreis() != tt.want[:5] {
				t.Errorf("Land, Kreis = %s, %s", a.Land(), a.Kreis())
			}
			r, err := ParseRegion(a.Region())
			if err != nil || r != a {
				t.Errorf("ParseRegion(%q) = %v, %v; want %v", a.Region(), r, err, a)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name   string
		parse  func(string) error
		in     string
		pos    int
		reason string
	}{
		{"ars empty", parseARS, "", 0, "length 0 is not one of 2, 3, 5, 9, 12"},
		{"ars length", parseARS, "0831", 0, "length 4 is not one of 2, 3, 5, 9, 12"},
		{"ars 8 digits", parseARS, "08311000", 0, "length 8 is not one of 2, 3, 5, 9, 12"},
		{"ars 13 digits", parseARS, "0831100000000", 0, "length 13 is not one of 2, 3, 5, 9, 12"},
		{"ars letter", parseARS, "08311x000000", 6, `non-digit 'x'`},
		{"ars space", parseARS, " 8", 1, `non-digit ' '`},
		{"ars sign", parseARS, "+08", 1, `non-digit '+'`},
		{"ars arabic digit", parseARS, "0١", 2, `non-digit '١'`},
		{"ars land 00", parseARS, "00", 1, "Land 00 is not 01 to 16"},
		{"ars land 17", parseARS, "170000000000", 1, "Land 17 is not 01 to 16"},
		{"ars land 99", parseARS, "99311", 1, "Land 99 is not 01 to 16"},
		{"region no DE", parseRegion, "08311", 1, `missing prefix "DE"`},
		{"region lower", parseRegion, "De08", 2, `missing prefix "DE"`},
		{"region short", parseRegion, "D", 0, `missing prefix "DE"`},
		{"region letter", parseRegion, "DE08x11", 5, `non-digit 'x'`},
		{"region length", parseRegion, "DE0831", 0, "4 digits after DE is not one of 0, 2, 3, 5, 9, 12"},
		{"region land", parseRegion, "DE17", 3, "Land 17 is not 01 to 16"},
		{"ags length", parseAGS, "083110000", 0, "length 9 is not one of 2, 3, 5, 8"},
		{"ags letter", parseAGS, "0831100O", 8, `non-digit 'O'`},
		{"ags land", parseAGS, "00000000", 1, "Land 00 is not 01 to 16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.parse(tt.in)
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("%q: err = %v, want ErrSyntax", tt.in, err)
			}
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("%q: err = %T, want *SyntaxError", tt.in, err)
			}
			if se.Pos != tt.pos || se.Reason != tt.reason || se.Input != tt.in {
				t.Errorf("%q: got pos %d reason %q input %q, want pos %d reason %q", tt.in, se.Pos, se.Reason, se.Input, tt.pos, tt.reason)
			}
		})
	}
}

func parseARS(s string) error    { _, err := Parse(s); return err }
func parseRegion(s string) error { _, err := ParseRegion(s); return err }
func parseAGS(s string) error    { _, err := ParseAGS(s); return err }

func TestParseRegionBund(t *testing.T) {
	a, err := ParseRegion("DE")
	if err != nil {
		t.Fatal(err)
	}
	if a.Level() != Bund || a.Code() != "" || a.Region() != "DE" || !a.Contains(MustParse("083110000000")) {
		t.Errorf("DE = %v level %s code %q region %q", a, a.Level(), a.Code(), a.Region())
	}
}

func TestAGS(t *testing.T) {
	tests := []struct {
		ars, ags string
		ok       bool
	}{
		{"057540024024", "05754024", true},
		{"083110000000", "08311000", true},
		{"08311", "08311000", true},
		{"083", "08300000", true},
		{"08", "08000000", true},
		{"083150001", "", false}, // Gemeindeverband
	}
	for _, tt := range tests {
		t.Run(tt.ars, func(t *testing.T) {
			g, ok := MustParse(tt.ars).AGS()
			if ok != tt.ok || g.String() != tt.ags {
				t.Fatalf("AGS() = %q, %v; want %q, %v", g, ok, tt.ags, tt.ok)
			}
			if !ok {
				return
			}
			p, err := ParseAGS(g.Code())
			if err != nil || p != g {
				t.Errorf("ParseAGS(%q) = %v, %v; want %v", g.Code(), p, err, g)
			}
		})
	}
	g, err := ParseAGS("08311")
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := g.ARS(); !ok || a != MustParse("08311") {
		t.Errorf("ARS() of AGS 08311 = %v, %v", a, ok)
	}
	g, _ = ParseAGS("05754024")
	if _, ok := g.ARS(); ok {
		t.Error("a Gemeinde AGS converted to an ARS without the directory")
	}
}

func TestTruncateContains(t *testing.T) {
	g := MustParse("057540024024")
	tests := []struct {
		l    Level
		want string
	}{
		{Gemeindeverband, "057540024000"},
		{Kreis, "057540000000"},
		{Regierungsbezirk, "057000000000"},
		{Land, "050000000000"},
		{Gemeinde, "057540024024"},
	}
	for _, tt := range tests {
		t.Run(tt.l.String(), func(t *testing.T) {
			p := g.Truncate(tt.l)
			if p.String() != tt.want || p.Level() != tt.l {
				t.Fatalf("Truncate(%s) = %s at %s, want %s", tt.l, p, p.Level(), tt.want)
			}
			if g.RegionOf(tt.l) != p.Region() {
				t.Errorf("RegionOf(%s) = %s, want %s", tt.l, g.RegionOf(tt.l), p.Region())
			}
			if !p.Contains(g) {
				t.Errorf("%s does not contain %s", p.Code(), g)
			}
			if tt.l != Gemeinde && g.Contains(p) {
				t.Errorf("%s contains %s", g, p.Code())
			}
		})
	}
	if MustParse("05754").Contains(MustParse("057550000000")) {
		t.Error("Kreis 05754 contains a Gemeinde of 05755")
	}
}

func TestLevel(t *testing.T) {
	var got []string
	for _, l := range Levels {
		got = append(got, l.String())
		if m, ok := LevelOf(l.Digits()); !ok || m != l {
			t.Errorf("LevelOf(%d) = %s, want %s", l.Digits(), m, l)
		}
	}
	want := []string{"bund", "land", "regierungsbezirk", "kreis", "gemeindeverband", "gemeinde"}
	if !slices.Equal(got, want) {
		t.Errorf("levels = %v, want %v", got, want)
	}
	if Level(0).String() != "none" || Level(0).Valid() {
		t.Error("zero Level is not none")
	}
}

func dataFile(tb testing.TB, name string) string {
	tb.Helper()
	return sharedtest.Data(tb, name)
}

func TestNoAllocations(t *testing.T) {
	a := MustParse("057540024024")
	var sink string
	n := testing.AllocsPerRun(100, func() {
		sink = a.String()
		sink = a.Region()
		sink = a.Prefix(Kreis)
		sink = a.RegionOf(Kreis)
		sink = a.Truncate(Gemeinde).Code()
		if r, err := ParseRegion("DE057540024024"); err != nil || r != a {
			t.Fatal(r, err)
		}
	})
	_ = sink
	if n != 0 {
		t.Errorf("%v allocations per run, want 0", n)
	}
}
