package store_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/store"
)

func TestAreaID(t *testing.T) {
	tests := []struct {
		id    string
		ars   string
		level ars.Level
		ok    bool
	}{
		{"6083110000000", "083110000000", ars.Gemeinde, true},
		{"4083110000000", "083110000000", ars.Kreis, true},
		{"2110000000000", "110000000000", ars.Land, true},
		{"1083110000000", "", 0, false}, // Bund is no area
		{"7083110000000", "", 0, false},
		{"608311000000", "", 0, false},
		{"6173110000000", "", 0, false},
		{"60831100000x0", "", 0, false},
		{"", "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			a, l, err := store.ParseAreaID(tt.id)
			if (err == nil) != tt.ok {
				t.Fatalf("ParseAreaID(%q) = %v", tt.id, err)
			}
			if tt.ok && (a.String() != tt.ars || l != tt.level || store.AreaID(a.String(), l) != tt.id) {
				t.Errorf("ParseAreaID(%q) = %s, %s", tt.id, a, l)
			}
		})
	}
}

func TestSearchTerms(t *testing.T) {
	tests := []struct {
		term, name string
		match      bool
	}{
		{"Hanau", "Hanau, Brüder-Grimm-Stadt", true},
		{"hanau", "Hanau, Brüder-Grimm-Stadt", true},
		{"Grimm", "Hanau, Brüder-Grimm-Stadt", true},
		{"Han", "Hanau, Brüder-Grimm-Stadt", false},
		{"Mag*", "Magdeburg, Landeshauptstadt", true},
		{"*burg", "Magdeburg, Landeshauptstadt", true},
		{"*debu*", "Magdeburg, Landeshauptstadt", true},
		{"Mag*burg", "Magdeburg, Landeshauptstadt", true},
		{"Mag*stadt", "Magdeburg, Landeshauptstadt", true},
		{"Mag*haupt", "Magdeburg, Landeshauptstadt", false},
		{"Straße", "Neustadt an der Weinstrasse", false},
		{"*strasse", "Neustadt an der Weinstraße", true},
		{"MÜNCHEN", "München, Landeshauptstadt", true},
		{"Frankfurt am Main", "Frankfurt am Main, Stadt", true},
		{"Frankfurt  am   Main", "Frankfurt am Main, Stadt", true},
		{"a.b", "axb", false},
		// Umlauts typed as ae, oe, ue, and the other way round.
		{"Koeln", "Köln, Stadt", true},
		{"Muenchen", "München, Landeshauptstadt", true},
		{"MUENCHEN", "München, Landeshauptstadt", true},
		{"Mue*", "München, Landeshauptstadt", true},
		{"Mün*", "München, Landeshauptstadt", true},
		{"Duesseldorf", "Düsseldorf, Stadt", true},
		{"Gießen", "Giessen, Universitätsstadt", true},
		{"Oer-Erkenschwick", "Oer-Erkenschwick, Stadt", true},
		{"Oer*", "Oer-Erkenschwick, Stadt", true},
		{"Soest", "Soest, Stadt", true},
		{"Söst", "Soest, Stadt", true}, // ö and oe are one letter to the search
		// A combining diaeresis is the composed letter.
		{"Ko\u0308ln", "Köln, Stadt", true},
		{"Ko\u0308*", "Köln, Stadt", true},
		{"Köln", "Ko\u0308ln, Stadt", true},
		// St. and Sankt.
		{"St. Georgen", "Sankt Georgen", true},
		{"St Georgen", "Sankt Georgen", true},
		{"Sankt Georgen", "St. Georgen im Schwarzwald, Stadt", true},
		{"St.Bernhard", "St.Bernhard", true},
		{"Sankt Bernhard", "St.Bernhard", true},
		{"St. Bernhard", "St.Bernhard", true},
		{"Sankt Michaelisdonn", "Burg-St. Michaelisdonn", true},
		{"Burg-Sankt*", "Burg-St. Michaelisdonn", true},
		{"St*", "St. Peter", true},
		{"St *", "St. Peter", true},
		{"St*", "Stuttgart, Landeshauptstadt", true},
		{"St. P*", "St. Peter", true},
		{"St.*", "Sankt Peter-Ording", true},
		{"Sa*", "St. Peter", true},
		{"*St*", "Sankt Peter-Ording", true},
		{"Burg-St*", "Burg-St. Michaelisdonn", true},
		{"Neumarkt-St*", "Neumarkt-Sankt Veit, St", true},
		{"Sankt", "Neumarkt-Sankt Veit, St", true},
		{"Veit, St", "Neumarkt-Sankt Veit, St", true},     // Stadt, not Sankt
		{"Veit, Sankt", "Neumarkt-Sankt Veit, St", false}, // likewise
		{"Barbarossast*", "Gelnhausen, Barbarossast., Krst.", true},
		{"Barbarossasankt*", "Gelnhausen, Barbarossast., Krst.", false},
		{"St", "Stuttgart, Landeshauptstadt", false},
	}
	for _, tt := range tests {
		t.Run(tt.term+" "+tt.name, func(t *testing.T) {
			q := store.AreaQuery{Terms: []string{tt.term}}
			if err := q.Check(); err != nil {
				t.Fatal(err)
			}
			if got := q.ParseTerms()[0].MatchName(store.FoldName(tt.name)); got != tt.match {
				t.Errorf("%q matches %q: %v, want %v", tt.term, tt.name, got, tt.match)
			}
		})
	}
	pc := store.AreaQuery{Terms: []string{"790*", "*098", "79098"}}.ParseTerms()
	for i, t0 := range pc {
		if !t0.Postcode || !t0.MatchPostcode("79098") || t0.MatchPostcode("80331") {
			t.Errorf("postcode term %d", i)
		}
	}
}

func TestFoldName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"München, Landeshauptstadt", "muenchen, landeshauptstadt"},
		{"MÜNCHEN", "muenchen"},
		{"Mu\u0308nchen", "muenchen"},
		{"Gießen", "giessen"},
		{"GIEẞEN", "giessen"},
		{"Äpfingen", "aepfingen"},
		{"  Frankfurt  am \t Main ", "frankfurt am main"},
		{"St. Georgen im Schwarzwald, Stadt", "sankt georgen im schwarzwald, stadt"},
		{"St.Gangloff", "sankt gangloff"},
		{"St Peter", "sankt peter"},
		{"Burg-St. Michaelisdonn", "burg-sankt michaelisdonn"},
		{"GVV St. Blasien", "gvv sankt blasien"},
		{"Sankt Augustin, Stadt", "sankt augustin, stadt"},
		{"Neumarkt-Sankt Veit, St", "neumarkt-sankt veit, st"},
		{"Gelnhausen, Barbarossast., Krst.", "gelnhausen, barbarossast., krst."},
		{"Oer-Erkenschwick", "oer-erkenschwick"},
		{"St.", "sankt"},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := store.FoldName(tt.in); got != tt.want {
				t.Errorf("FoldName(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if again := store.FoldName(tt.want); again != tt.want {
				t.Errorf("FoldName(%q) = %q: folding is not idempotent", tt.want, again)
			}
		})
	}
}

func TestAreaQueryCheck(t *testing.T) {
	long := strings.Repeat("ab", store.MaxTermLength/2)
	tests := []struct {
		name  string
		terms []string
		term  int // 1-based, 0 for the whole query or no error
		ok    bool
	}{
		{"one term", []string{"Hanau"}, 0, true},
		{"ten terms", slices.Repeat([]string{"ab"}, store.MaxAreaTerms), 0, true},
		{"no term", nil, 0, false},
		{"eleven terms", slices.Repeat([]string{"ab"}, store.MaxAreaTerms+1), 0, false},
		{"longest term", []string{long}, 0, true},
		{"longest term with umlauts", []string{strings.Repeat("ü", store.MaxTermLength)}, 0, true},
		{"combining marks count once", []string{strings.Repeat("u\u0308", store.MaxTermLength)}, 0, true},
		{"term too long", []string{"Hanau", long + "x"}, 2, false},
		{"term of 50000 bytes", []string{strings.Repeat("a", 50000)}, 1, false},
		{"term of 1 MiB", []string{strings.Repeat("ä", 1<<19)}, 1, false},
		{"one letter", []string{"a"}, 1, false},
		{"one letter between stars", []string{"Frei*b"}, 1, false},
		{"one letter with a combining mark", []string{"u\u0308"}, 1, false},
		{"only stars", []string{"***"}, 1, false},
		{"a star at each end", []string{"*kirch*"}, 0, true},
		{"two stars between runs", []string{"Bad**burg"}, 0, true},
		{"two stars at the end", []string{"Hanau", "Kirch**"}, 2, false},
		{"two stars at the start", []string{"**Kirch"}, 1, false},
		{"NUL", []string{"Han\x00au"}, 1, false},
		{"newline", []string{"Hanau\n"}, 1, false},
		{"not UTF-8", []string{"M\xfcnchen"}, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := store.AreaQuery{Terms: tt.terms}.Check()
			if tt.ok {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			var qe *store.AreaQueryError
			if !errors.Is(err, store.ErrAreaQuery) || !errors.As(err, &qe) || qe.Term != tt.term {
				t.Fatalf("Check = %v, want an AreaQueryError of term %d", err, tt.term)
			}
			if len(err.Error()) > 200 {
				t.Errorf("error of %d bytes: %.200s", len(err.Error()), err)
			}
		})
	}
}

// FuzzAreaQuery feeds search terms as they come from a query string: a
// term that passes Check must parse and match without panicking, and a
// name it matches holds one of its Contains texts, by which stores find
// candidates.
func FuzzAreaQuery(f *testing.F) {
	for _, s := range []string{"Hanau", "Mag*", "*burg*", "79098", "790*", "a*b", "**", "(x", `\p{L}`, "ß*ẞ",
		"St*", "St. P*", "Ko\u0308ln", "Mue*", "Burg-St*"} {
		f.Add(s, "Magdeburg, Landeshauptstadt")
	}
	f.Fuzz(func(t *testing.T, term, name string) {
		q := store.AreaQuery{Terms: []string{term}}
		if q.Check() != nil {
			return
		}
		if utf8.RuneCountInString(term) > store.MaxTermLength {
			t.Fatalf("a term of %d characters passes", utf8.RuneCountInString(term))
		}
		st := q.ParseTerms()[0]
		folded := store.FoldName(name)
		if st.MatchName(folded) && !slices.ContainsFunc(st.Contains, func(c string) bool { return strings.Contains(folded, c) }) {
			t.Errorf("%q matches %q, which holds none of %q", term, folded, st.Contains)
		}
		if st.Postcode && st.MatchPostcode(name) && !slices.ContainsFunc(st.Contains, func(c string) bool { return strings.Contains(name, c) }) {
			t.Errorf("%q matches postcode %q, which holds none of %q", term, name, st.Contains)
		}
		// The name itself, if it is a valid term, matches itself.
		if !strings.Contains(name, "*") && utf8.ValidString(name) && store.FoldName(name) != "" {
			self := store.AreaQuery{Terms: []string{name}}
			if self.Check() == nil && !self.ParseTerms()[0].MatchName(folded) && !self.ParseTerms()[0].Postcode {
				t.Errorf("%q does not match itself", name)
			}
		}
	})
}

// FuzzParseAreaID: an id that parses prints back the same.
func FuzzParseAreaID(f *testing.F) {
	for _, s := range []string{"6083110000000", "4083110000000", "1", "", "7xxxxxxxxxxxx"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		a, l, err := store.ParseAreaID(id)
		if err != nil {
			return
		}
		if got := store.AreaID(a.String(), l); got != id {
			t.Errorf("ParseAreaID(%q) prints back as %q", id, got)
		}
	})
}
