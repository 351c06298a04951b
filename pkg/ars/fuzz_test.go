package ars

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func FuzzParseARS(f *testing.F) {
	for _, s := range []string{"08", "083", "08311", "083110000", "083110000000", "110000000000", "020000000000",
		"00", "17", "0831", "08311x000000", "", "DE", "DE08311", "DE083110000000", "０８", "08\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, parse := range []func(string) (ARS, error){Parse, ParseRegion} {
			a, err := parse(s)
			if err != nil {
				var se *SyntaxError
				if !errors.Is(err, ErrSyntax) || !errors.As(err, &se) || se.Input != s || se.Pos < 0 || se.Pos > len(s) {
					t.Fatalf("%q: error %v is not a proper SyntaxError", s, err)
				}
				continue
			}
			if len(a.String()) != 12 || !a.Level().Valid() {
				t.Fatalf("%q: parsed to %q at %s", s, a, a.Level())
			}
			if r, err := ParseRegion(a.Region()); err != nil || r != a {
				t.Fatalf("%q: region %q parses to %v, %v", s, a.Region(), r, err)
			}
			if a.Level() != Bund {
				if b, err := Parse(a.Code()); err != nil || b != a {
					t.Fatalf("%q: code %q parses to %v, %v", s, a.Code(), b, err)
				}
			}
			if g, ok := a.AGS(); ok {
				if h, err := ParseAGS(g.Code()); err != nil || h != g {
					t.Fatalf("%q: AGS %q parses to %v, %v", s, g.Code(), h, err)
				}
			}
		}
		if g, err := ParseAGS(s); err == nil {
			if len(g.String()) != 8 || g.Code() != s {
				t.Fatalf("%q: AGS %q code %q", s, g, g.Code())
			}
		} else if !errors.Is(err, ErrSyntax) {
			t.Fatalf("%q: AGS error %v", s, err)
		}
	})
}

// FuzzParseKey: a key of either kind parses or fails with a SyntaxError;
// its candidates share its digits, run from its level upwards and stop
// where a digit other than padding follows; resolving it never panics and
// finds an area that one of them or its AGS names.
func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"08315000", "08300000", "08000000", "08000", "083", "08", "083150000000", "083150000",
		"110000000000", "11000000", "08315064", "0831500", "", "17", "00000", "08x", "０８"} {
		f.Add(s)
	}
	d, err := parseLines(gvFile())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, param := range []string{"ars", "ags"} {
			k, err := ParseKey(param, s)
			if err != nil {
				var se *SyntaxError
				if !errors.Is(err, ErrSyntax) || !errors.As(err, &se) || se.Kind != param || se.Input != s || !k.IsZero() {
					t.Fatalf("%s %q: error %v, key %v", param, s, err, k)
				}
				continue
			}
			if k.Param() != param || k.String() != s {
				t.Fatalf("%s %q: key %s %s", param, s, k.Param(), k)
			}
			cs := k.Candidates()
			for i, c := range cs {
				if i > 0 && c.Level() != cs[i-1].Level()-1 || c.String() != cs[0].String() {
					t.Fatalf("%s %q: candidates %v", param, s, cs)
				}
				if b, err := Parse(c.Code()); err != nil || b != c || strings.Trim(c.String()[len(c.Code()):], "0") != "" {
					t.Fatalf("%s %q: candidate %v parses to %v, %v", param, s, c, b, err)
				}
			}
			if n := len(cs); n > 0 && cs[n-1].Level() > Land {
				if up := cs[n-1].Level() - 1; strings.Trim(cs[n-1].String()[up.Digits():], "0") == "" {
					t.Fatalf("%s %q: candidates stop at %s", param, s, cs[n-1].Level())
				}
			}
			a, ok := d.Resolve(k)
			if !ok {
				continue
			}
			g, isAGS := k.AGS()
			if !slices.Contains(cs, a.Key()) && !(isAGS && a.Level == Gemeinde && a.AGS == g.String()) {
				t.Fatalf("%s %q resolves to %s %s, no candidate", param, s, a.Level, a.ARS)
			}
		}
	})
}

func FuzzParseGV100AD(f *testing.F) {
	lines := gvFile()
	f.Add(strings.Join(lines, "\n"))
	f.Add(strings.Join(lines[:2], "\r\n"))
	f.Add(lines[0] + "\n" + lines[3][:100])
	f.Add(gvRecord(map[int]string{1: "10", 3: "20251130", 11: "11", 23: "Berlin", 73: "Berlin"}) + "\n" +
		gvRecord(map[int]string{1: "40", 3: "20251130", 11: "11000", 23: "Berlin, Stadt", 73: "Berlin", 123: "41"}) + "\n" +
		gvRecord(map[int]string{1: "50", 3: "20251130", 11: "11000", 19: "0000", 23: "Berlin, Stadt", 123: "50"}) + "\n" +
		gvRecord(map[int]string{1: "60", 3: "20251130", 11: "11000000", 19: "0000", 23: "Berlin, Stadt", 123: "61",
			129: "00000089112", 140: "00000368526", 151: "00000181025", 166: "10178", 171: "*****"}))
	f.Fuzz(func(t *testing.T, in string) {
		d, err := ParseGV100AD(strings.NewReader(in))
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			var le *LineError
			if errors.As(err, &le) && le.Line < 1 {
				t.Fatalf("line %d", le.Line)
			}
			return
		}
		total := 0
		for _, l := range Levels[1:] {
			for _, a := range d.Areas(l) {
				k, err := Parse(a.ARS)
				if err != nil {
					t.Fatalf("area ARS %q: %v", a.ARS, err)
				}
				if got, ok := d.Get(k, l); !ok || got != a {
					t.Fatalf("Get(%s, %s) = %+v", k, l, got)
				}
				if l == Land {
					total += a.Population
					continue
				}
				p, err := Parse(a.Parent)
				if err != nil || a.ParentLevel >= l {
					t.Fatalf("%s %s: parent %q at %s", l, a.ARS, a.Parent, a.ParentLevel)
				}
				if _, ok := d.Get(p, a.ParentLevel); !ok {
					t.Fatalf("%s %s: parent %s %s missing", l, a.ARS, a.ParentLevel, a.Parent)
				}
			}
		}
		if total != d.Population() {
			t.Fatalf("Länder hold %d people, Gemeinden %d", total, d.Population())
		}
	})
}

func FuzzParsePLZ(f *testing.F) {
	f.Add("plz,ags,ars,name,district_ars,in_gv2025\n79098,08311000,083110000000,\"Freiburg im Breisgau, Stadt\",083110000000,yes\n")
	f.Add("plz,ags,ars,name,district_ars,in_gv2025\n04720,14522620,,Zschaitz-Ottewig,,no\n")
	f.Add("name,plz,ags,ars\nAuggen,79424,08315004,083155001004\n")
	f.Add("plz,ags\n1,2\n")
	f.Fuzz(func(t *testing.T, in string) {
		pcs, err := ParsePLZ(strings.NewReader(in))
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		for _, p := range pcs {
			if len(p.Code) != 5 || len(p.AGS) != 8 || (p.ARS != "" && len(p.ARS) != 12) || p.Name == "" {
				t.Fatalf("row %+v", p)
			}
		}
	})
}
