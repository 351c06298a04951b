package leika

import (
	"github.com/amtsbote/amtsbote/internal/sharedtest"

	"errors"
	"os"
	"strings"
	"testing"
)

func TestParseKey(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		pos    int
		reason string
	}{
		{"valid", "99001001000000", 0, ""},
		{"empty", "", 0, "0 digits, want 14"},
		{"short", "9900100100000", 0, "13 digits, want 14"},
		{"long", "990010010000000", 0, "15 digits, want 14"},
		{"letter", "9900100100000x", 14, `non-digit 'x'`},
		{"space", " 99001001000000", 1, `non-digit ' '`},
		{"not 99", "98001001000000", 2, "does not start with 99"},
		{"not 9", "09001001000000", 1, "does not start with 99"},
		{"urn given", URNPrefix + "99001001000000", 1, `non-digit 'u'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseKey(tt.in)
			if tt.reason == "" {
				if err != nil || string(k) != tt.in {
					t.Fatalf("ParseKey(%q) = %q, %v", tt.in, k, err)
				}
				return
			}
			var se *SyntaxError
			if !errors.Is(err, ErrSyntax) || !errors.As(err, &se) {
				t.Fatalf("ParseKey(%q) err = %v, want a SyntaxError", tt.in, err)
			}
			if se.Pos != tt.pos || se.Reason != tt.reason {
				t.Errorf("ParseKey(%q): pos %d reason %q, want %d %q", tt.in, se.Pos, se.Reason, tt.pos, tt.reason)
			}
		})
	}
}

func TestURN(t *testing.T) {
	k := MustParseKey("99010003001006")
	if got := k.URN(); got != "urn:de:fim:leika:leistung:99010003001006" {
		t.Fatalf("URN() = %q", got)
	}
	tests := []struct {
		name string
		in   string
		pos  int
		ok   bool
	}{
		{"canonical", "urn:de:fim:leika:leistung:99010003001006", 0, true},
		{"upper case prefix", "URN:DE:FIM:LEIKA:LEISTUNG:99010003001006", 0, true},
		{"bare key", "99010003001006", 0, false},
		{"other namespace", "urn:de:fim:xyz:leistung:99010003001006", 0, false},
		{"bad key", "urn:de:fim:leika:leistung:9901000300100x", 40, false},
		{"short key", "urn:de:fim:leika:leistung:990100", 0, false},
		{"prefix only", "urn:de:fim:leika:leistung:", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromURN(tt.in)
			if tt.ok {
				if err != nil || got != k {
					t.Fatalf("FromURN(%q) = %q, %v", tt.in, got, err)
				}
				return
			}
			var se *SyntaxError
			if !errors.As(err, &se) || !errors.Is(err, ErrSyntax) || se.Pos != tt.pos || se.Input != tt.in {
				t.Fatalf("FromURN(%q) err = %v (%+v), want SyntaxError at %d", tt.in, err, se, tt.pos)
			}
		})
	}
}

func dataFile(tb testing.TB, name string) string {
	tb.Helper()
	return sharedtest.Data(tb, name)
}

func TestParseCatalogueReal(t *testing.T) {
	f, err := os.Open(dataFile(t, "leika.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	svcs, err := ParseCatalogue(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(svcs) != 4813 {
		t.Errorf("%d services, want 4813", len(svcs))
	}
	want := Service{Key: "99001001000000", Name: "Abfallgebühr", Level: "kommune", Typisierung: "5", Kind: "lo",
		OZGID: "10110", OZGLeistung: "Abfallentsorgung", Themenfeld: "Bauen & Wohnen"}
	if svcs[0] != want {
		t.Errorf("first = %+v\nwant    %+v", svcs[0], want)
	}
	levels := map[string]int{}
	for _, s := range svcs {
		levels[s.Level]++
	}
	if levels["bund"] != 648 || levels["land_or_kommune"] != 4099 || levels[""] != 8 {
		t.Errorf("levels = %v", levels)
	}
}

func TestParseCatalogueErrors(t *testing.T) {
	const header = "leika_key,name,level,typisierung,leika_kind,ozg_id,ozg_leistung,themenfeld\n"
	const row = "99001001000000,Abfallgebühr,kommune,5,lo,10110,Abfallentsorgung,Bauen & Wohnen\n"
	tests := []struct {
		name   string
		in     string
		line   int
		field  string
		substr string
	}{
		{"no header", "", 1, "", "no header"},
		{"missing leika_key", "name,level\nAbfallgebühr,kommune\n", 1, "leika_key", "missing column"},
		{"missing name", "leika_key,level\n", 1, "name", "missing column"},
		{"repeated", "leika_key,name,name\n", 1, "name", "column repeated"},
		{"bad key", header + row + strings.Replace(row, "99001001000000", "9900100100000", 1), 3, "leika_key", "13 digits, want 14"},
		{"letter in key", header + strings.Replace(row, "99001001000000", "9900100100000O", 1), 2, "leika_key", "non-digit 'O' at position 14"},
		{"duplicate", header + row + "99001001002000,Abfallgebühr Festsetzung,kommune,5,lov,10110,Abfallentsorgung,Bauen & Wohnen\n" + row, 4, "leika_key", "repeats line 2"},
		{"short row", header + row + "99001001002000,Abfallgebühr\n", 3, "", "2 fields, header has 8"},
		{"empty name", header + strings.Replace(row, "Abfallgebühr", " ", 1), 2, "name", "empty"},
		{"quote", header + row + "99001001002000,\"Abfall\n", 3, "", "quote"},
		{"latin-1", header + row + strings.Replace(strings.Replace(row, "99001001000000", "99001001002000", 1), "ü", "\xfc", 1), 3, "name", "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCatalogue(strings.NewReader(tt.in))
			var le *LineError
			if !errors.As(err, &le) || !errors.Is(err, ErrFormat) {
				t.Fatalf("err = %v, want a *LineError", err)
			}
			if le.Line != tt.line || le.Field != tt.field || !strings.Contains(err.Error(), tt.substr) {
				t.Errorf("err = %v (line %d field %q), want line %d field %q containing %q", err, le.Line, le.Field, tt.line, tt.field, tt.substr)
			}
		})
	}
	t.Run("minimal columns", func(t *testing.T) {
		svcs, err := ParseCatalogue(strings.NewReader("\uFEFFname,extra,leika_key\nAbfallgebühr,x,99001001000000\n"))
		if err != nil {
			t.Fatal(err)
		}
		if len(svcs) != 1 || svcs[0] != (Service{Key: "99001001000000", Name: "Abfallgebühr"}) {
			t.Errorf("%+v", svcs)
		}
	})
	t.Run("missing column wraps ErrMissingColumn", func(t *testing.T) {
		if _, err := ParseCatalogue(strings.NewReader("name\n")); !errors.Is(err, ErrMissingColumn) {
			t.Errorf("err = %v", err)
		}
	})
}
