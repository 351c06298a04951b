package leika

import (
	"errors"
	"strings"
	"testing"
)

func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"99001001000000", "99010003001006", URNPrefix + "99107004018000", "9900100100000",
		"98001001000000", "9900100100000x", "", "URN:DE:FIM:LEIKA:LEISTUNG:99001001000000", "٩٩001001000000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKey(s)
		if err != nil {
			var se *SyntaxError
			if !errors.Is(err, ErrSyntax) || !errors.As(err, &se) || se.Pos < 0 || se.Pos > len(s) {
				t.Fatalf("%q: error %v", s, err)
			}
		} else {
			if string(k) != s || len(s) != 14 || !strings.HasPrefix(s, "99") {
				t.Fatalf("%q parsed to %q", s, k)
			}
			if u, err := FromURN(k.URN()); err != nil || u != k {
				t.Fatalf("%q: URN round trip %q, %v", s, u, err)
			}
		}
		u, err := FromURN(s)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Pos < 0 || se.Pos > len(s) {
				t.Fatalf("FromURN(%q): error %v", s, err)
			}
			return
		}
		if !strings.EqualFold(u.URN(), s) {
			t.Fatalf("FromURN(%q) = %q", s, u)
		}
	})
}

func FuzzParseCatalogue(f *testing.F) {
	f.Add("leika_key,name,level,typisierung,leika_kind,ozg_id,ozg_leistung,themenfeld\n" +
		"99001001000000,Abfallgebühr,kommune,5,lo,10110,Abfallentsorgung,Bauen & Wohnen\n")
	f.Add("name,leika_key\n\"Abfall, Gebühr\",99001001000000\n")
	f.Add("leika_key,name\n99001001000000,a\n99001001000000,b\n")
	f.Fuzz(func(t *testing.T, in string) {
		svcs, err := ParseCatalogue(strings.NewReader(in))
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		seen := map[Key]bool{}
		for _, s := range svcs {
			if _, err := ParseKey(string(s.Key)); err != nil || seen[s.Key] || strings.TrimSpace(s.Name) == "" {
				t.Fatalf("service %+v", s)
			}
			seen[s.Key] = true
		}
	})
}
