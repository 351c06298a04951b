package ars

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestKeyCandidates(t *testing.T) {
	tests := []struct {
		param, value string
		want         []string // regions, deepest first
	}{
		{"ars", "083155003064", []string{"DE083155003064"}},
		{"ars", "083110000000", []string{"DE083110000000", "DE083110000", "DE08311"}},
		{"ars", "083150000000", []string{"DE083150000000", "DE083150000", "DE08315"}},
		{"ars", "083150000", []string{"DE083150000", "DE08315"}},
		{"ars", "08315", []string{"DE08315"}},
		{"ars", "08000", []string{"DE08000", "DE080", "DE08"}},
		{"ars", "110000000000", []string{"DE110000000000", "DE110000000", "DE11000", "DE110", "DE11"}},
		{"ars", "08", []string{"DE08"}},
		{"ags", "08315064", nil},
		{"ags", "08315000", []string{"DE08315"}},
		{"ags", "08300000", []string{"DE08300", "DE083"}},
		{"ags", "08000000", []string{"DE08000", "DE080", "DE08"}},
		{"ags", "08000", []string{"DE08000", "DE080", "DE08"}},
		{"ags", "08315", []string{"DE08315"}},
		{"ags", "083", []string{"DE083"}},
	}
	for _, tt := range tests {
		t.Run(tt.param+" "+tt.value, func(t *testing.T) {
			k, err := ParseKey(tt.param, tt.value)
			if err != nil {
				t.Fatalf("ParseKey: %v", err)
			}
			var got []string
			for _, c := range k.Candidates() {
				got = append(got, c.Region())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("candidates %v, want %v", got, tt.want)
			}
			if k.Param() != tt.param || k.String() != tt.value {
				t.Errorf("key %s %s, want %s %s", k.Param(), k, tt.param, tt.value)
			}
		})
	}
}

func TestParseKeyErrors(t *testing.T) {
	tests := []struct{ param, value string }{
		{"ars", "08311000"}, // an AGS length
		{"ars", "0831"},
		{"ars", "17"},
		{"ags", "083110000000"}, // an ARS length
		{"ags", "083110000"},
		{"ags", "0831x000"},
		{"ags", ""},
		{"areaId", "08"},
	}
	for _, tt := range tests {
		t.Run(tt.param+" "+tt.value, func(t *testing.T) {
			k, err := ParseKey(tt.param, tt.value)
			var se *SyntaxError
			if !errors.Is(err, ErrSyntax) || !errors.As(err, &se) || se.Kind != tt.param {
				t.Fatalf("ParseKey = %v, %v; want a SyntaxError of %s", k, err, tt.param)
			}
			if !k.IsZero() {
				t.Errorf("key %v with an error", k)
			}
		})
	}
}

// keyDirectory holds real areas of the GV100AD of 30.11.2025, typed in:
// Baden-Württemberg with the Regierungsbezirk Freiburg, the Landkreis
// Breisgau-Hochschwarzwald with Kirchzarten in the GVV Dreisamtal, the
// Stadtkreis Freiburg (Kreis, Gemeindeverband and Gemeinde at once), and
// Berlin (Land, Kreis, Gemeindeverband and Gemeinde at once).
func keyDirectory(t *testing.T) *Directory {
	t.Helper()
	d, err := NewDirectory(time.Date(2025, 11, 30, 0, 0, 0, 0, time.UTC), []Area{
		{ARS: "080000000000", AGS: "08000000", Name: "Baden-Württemberg", Level: Land},
		{ARS: "083000000000", AGS: "08300000", Name: "Reg.-Bez. Freiburg", Level: Regierungsbezirk},
		{ARS: "083110000000", AGS: "08311000", Name: "Freiburg im Breisgau, Stadt", Level: Kreis, Kind: Stadtkreis},
		{ARS: "083110000000", Name: "Freiburg im Breisgau, Stadt", Level: Gemeindeverband, Kind: VerbandsfreieGemeinde},
		{ARS: "083110000000", AGS: "08311000", Name: "Freiburg im Breisgau, Stadt", Level: Gemeinde, Kind: StadtkreisGemeinde},
		{ARS: "083150000000", AGS: "08315000", Name: "Breisgau-Hochschwarzwald", Level: Kreis, Kind: Landkreis},
		{ARS: "083155003000", Name: "GVV Dreisamtal", Level: Gemeindeverband, Kind: Verwaltungsverband},
		{ARS: "083155003064", AGS: "08315064", Name: "Kirchzarten", Level: Gemeinde, Kind: KreisangehoerigeGemeinde},
		{ARS: "110000000000", AGS: "11000000", Name: "Berlin", Level: Land},
		{ARS: "110000000000", AGS: "11000000", Name: "Berlin, Stadt", Level: Kreis, Kind: KreisfreieStadt},
		{ARS: "110000000000", Name: "Berlin, Stadt", Level: Gemeindeverband, Kind: VerbandsfreieGemeinde},
		{ARS: "110000000000", AGS: "11000000", Name: "Berlin, Stadt", Level: Gemeinde, Kind: KreisfreieStadtGemeinde},
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestResolve(t *testing.T) {
	d := keyDirectory(t)
	tests := []struct {
		param, value string
		want         string // region of the area, "" for none
	}{
		// Breisgau-Hochschwarzwald in every form.
		{"ars", "08315", "DE08315"},
		{"ars", "083150000", "DE08315"},
		{"ars", "083150000000", "DE08315"},
		{"ags", "08315", "DE08315"},
		{"ags", "08315000", "DE08315"},
		// Regierungsbezirk Freiburg.
		{"ars", "083", "DE083"},
		{"ars", "08300", "DE083"},
		{"ars", "083000000000", "DE083"},
		{"ags", "083", "DE083"},
		{"ags", "08300", "DE083"},
		{"ags", "08300000", "DE083"},
		// Baden-Württemberg.
		{"ars", "08", "DE08"},
		{"ars", "080", "DE08"},
		{"ars", "08000", "DE08"},
		{"ars", "080000000000", "DE08"},
		{"ags", "08", "DE08"},
		{"ags", "080", "DE08"},
		{"ags", "08000", "DE08"},
		{"ags", "08000000", "DE08"},
		// Freiburg: the deepest level the key's length allows.
		{"ars", "083110000000", "DE083110000000"},
		{"ars", "083110000", "DE083110000"},
		{"ars", "08311", "DE08311"},
		{"ags", "08311000", "DE083110000000"},
		{"ags", "08311", "DE08311"},
		// Berlin likewise.
		{"ars", "110000000000", "DE110000000000"},
		{"ars", "11000", "DE11000"},
		{"ars", "11", "DE11"},
		{"ags", "11000000", "DE110000000000"},
		{"ags", "11000", "DE11000"},
		{"ags", "11", "DE11"},
		// Kirchzarten: its AGS lacks the Gemeindeverband its ARS holds.
		{"ars", "083155003064", "DE083155003064"},
		{"ags", "08315064", "DE083155003064"},
		{"ars", "083155003", "DE083155003"},
		// Keys the directory lacks.
		{"ags", "08315999", ""},
		{"ags", "08316000", ""},
		{"ars", "083159999000", ""},
		{"ars", "12", ""},
		{"ags", "09000000", ""},
	}
	for _, tt := range tests {
		t.Run(tt.param+" "+tt.value, func(t *testing.T) {
			k, err := ParseKey(tt.param, tt.value)
			if err != nil {
				t.Fatalf("ParseKey: %v", err)
			}
			a, ok := d.Resolve(k)
			got := ""
			if ok {
				got = a.Key().Region()
			}
			if got != tt.want {
				t.Errorf("Resolve = %q, want %q", got, tt.want)
			}
			// Find and ByAGS answer alike.
			var b Area
			var okb bool
			if tt.param == "ars" {
				b, okb = d.Find(MustParse(tt.value))
			} else {
				g, _ := ParseAGS(tt.value)
				b, okb = d.ByAGS(g)
			}
			if b != a || okb != ok {
				t.Errorf("Find or ByAGS = %s %s %v, Resolve %s %s %v", b.Level, b.ARS, okb, a.Level, a.ARS, ok)
			}
		})
	}
}

// TestResolveReal resolves every area of the real directory by its own
// key, and every Land, Regierungsbezirk and Kreis by its key padded to 5,
// 8 and 12 digits, as ARS and as AGS.
func TestResolveReal(t *testing.T) {
	d := readDirectory(t, "GV100AD_30112025.txt")
	resolve := func(param, value string) Area {
		t.Helper()
		k, err := ParseKey(param, value)
		if err != nil {
			t.Fatalf("%s %s: %v", param, value, err)
		}
		a, ok := d.Resolve(k)
		if !ok {
			t.Fatalf("%s %s resolves to nothing", param, value)
		}
		return a
	}
	for _, l := range Levels[1:] {
		for _, a := range d.Areas(l) {
			if got := resolve("ars", a.Key().Code()); got != a {
				t.Errorf("ars %s resolves to %s %s, want %s", a.Key().Code(), got.Level, got.ARS, l)
			}
			if l == Gemeinde {
				if got := resolve("ags", a.AGS); got != a {
					t.Errorf("ags %s resolves to %s %s", a.AGS, got.Level, got.ARS)
				}
			}
			if l > Kreis {
				continue
			}
			code := a.Key().Code()
			five := code + "00000"[len(code):]
			ars5, ags5 := resolve("ars", five), resolve("ags", five)
			if ars5 != ags5 || ars5.ARS != a.ARS || ars5.Level < l {
				t.Errorf("%s %s padded to %s: ars %s %s, ags %s %s", l, code, five, ars5.Level, ars5.ARS, ags5.Level, ags5.ARS)
			}
			// Padded to 8 or 12 digits the key may also name the Gemeinde
			// of a kreisfreie Stadt: the deepest area wins.
			ags8, ars12 := resolve("ags", a.ARS[:8]), resolve("ars", a.ARS)
			if ags8.ARS != a.ARS || ars12.ARS != a.ARS || ags8.Level < l || ars12.Level < l {
				t.Errorf("%s %s padded: ags %s %s, ars %s %s", l, code, ags8.Level, ags8.ARS, ars12.Level, ars12.ARS)
			}
		}
	}
	if k := resolve("ags", "08315000"); k.Level != Kreis || k.Name != "Breisgau-Hochschwarzwald" {
		t.Errorf("ags 08315000 = %s %s", k.Level, k.Name)
	}
}

func TestResolveNoAllocations(t *testing.T) {
	d := keyDirectory(t)
	k, err := ParseKey("ags", "08315000")
	if err != nil {
		t.Fatal(err)
	}
	n := testing.AllocsPerRun(100, func() {
		if _, ok := d.Resolve(k); !ok {
			t.Fatal("not found")
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per run, want 0", n)
	}
}
