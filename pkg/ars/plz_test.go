package ars

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestParsePLZReal(t *testing.T) {
	f, err := os.Open(dataFile(t, "plz.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pcs, err := ParsePLZ(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(pcs) != 12883 {
		t.Errorf("%d rows, want 12883", len(pcs))
	}
	d := readDirectory(t, "GV100AD_30112025.txt")
	merged := 0
	for _, p := range pcs {
		if p.ARS == "" {
			merged++
			if p.Current {
				t.Errorf("%s %s: current without ARS", p.Code, p.Name)
			}
			continue
		}
		g, ok := d.Get(MustParse(p.ARS), Gemeinde)
		if !ok || g.AGS != p.AGS {
			t.Errorf("%s: ARS %s (AGS %s) not in the directory", p.Code, p.ARS, p.AGS)
		}
		if _, ok := d.Get(MustParse(p.DistrictARS), Kreis); !ok {
			t.Errorf("%s: district %s not in the directory", p.Code, p.DistrictARS)
		}
	}
	if merged != 56 {
		t.Errorf("%d rows of merged Gemeinden, want 56", merged)
	}
	if p := pcs[0]; p != (PostalCode{Code: "01067", AGS: "14612000", ARS: "146120000000", Name: "Dresden, Stadt", DistrictARS: "146120000000", Current: true}) {
		t.Errorf("first row = %+v", p)
	}
}

func TestParsePLZErrors(t *testing.T) {
	const header = "plz,ags,ars,name,district_ars,in_gv2025\n"
	const row = "79098,08311000,083110000000,\"Freiburg im Breisgau, Stadt\",083110000000,yes\n"
	tests := []struct {
		name   string
		in     string
		line   int
		field  string
		substr string
	}{
		{"no header", "", 1, "", "no header"},
		{"missing ars column", "plz,ags,name\n79098,08311000,Freiburg\n", 1, "ars", "missing column"},
		{"missing name column", "plz,ags,ars\n", 1, "name", "missing column"},
		{"repeated column", "plz,ags,ars,name,plz\n", 1, "plz", "column repeated"},
		{"short row", header + row + "79100,08311000,083110000000\n", 3, "", "3 fields, header has 6"},
		{"long row", header + row + row[:len(row)-1] + ",x\n", 3, "", "7 fields, header has 6"},
		{"bad plz", header + row + strings.Replace(row, "79098", "7909", 1), 3, "plz", "not 5 digits"},
		{"plz letter", header + strings.Replace(row, "79098", "7909X", 1), 2, "plz", "non-digit 'X'"},
		{"bad ags", header + row + row + strings.Replace(row, "08311000", "0831100", 1), 4, "ags", "length 7"},
		{"short ags", header + strings.Replace(row, "08311000,", "08311,", 1), 2, "ags", "not 8 digits"},
		{"bad ars", header + strings.Replace(row, "083110000000,\"", "08311000000,\"", 1), 2, "ars", "length 11"},
		{"bad district", header + strings.Replace(row, "083110000000,yes", "08311,yes", 1), 2, "district_ars", "not 12 digits"},
		{"bad flag", header + strings.Replace(row, "yes", "ja", 1), 2, "in_gv2025", `"ja" is not yes or no`},
		{"quote", header + "79098,\"08311000,x\n", 2, "", "quote"},
		{"latin-1", header + row + "79280,08315074,083155008074,Au\xdfen,083150000000,yes\n", 3, "name", "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePLZ(strings.NewReader(tt.in))
			var le *LineError
			if !errors.As(err, &le) {
				t.Fatalf("err = %v, want a *LineError", err)
			}
			if le.Line != tt.line || le.Field != tt.field || !strings.Contains(err.Error(), tt.substr) {
				t.Errorf("err = %v (line %d field %q), want line %d field %q containing %q", err, le.Line, le.Field, tt.line, tt.field, tt.substr)
			}
		})
	}
	t.Run("optional columns", func(t *testing.T) {
		pcs, err := ParsePLZ(strings.NewReader("name,plz,ags,ars\nAuggen,79424,08315004,083155001004\n"))
		if err != nil {
			t.Fatal(err)
		}
		if len(pcs) != 1 || pcs[0] != (PostalCode{Code: "79424", AGS: "08315004", ARS: "083155001004", Name: "Auggen"}) {
			t.Errorf("%+v", pcs)
		}
	})
	t.Run("missing column wraps ErrMissingColumn", func(t *testing.T) {
		_, err := ParsePLZ(strings.NewReader("plz,ags,name\n"))
		if !errors.Is(err, ErrMissingColumn) || !errors.Is(err, ErrFormat) {
			t.Errorf("err = %v", err)
		}
	})
}
