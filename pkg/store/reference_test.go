package store_test

import (
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
	}
	for _, tt := range tests {
		t.Run(tt.term, func(t *testing.T) {
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

// FuzzAreaQuery feeds search terms as they come from a query string: a
// term that passes Check must parse and match without panicking.
func FuzzAreaQuery(f *testing.F) {
	for _, s := range []string{"Hanau", "Mag*", "*burg*", "79098", "790*", "a*b", "**", "(x", `\p{L}`, "ß*ẞ"} {
		f.Add(s, "Magdeburg, Landeshauptstadt")
	}
	f.Fuzz(func(t *testing.T, term, name string) {
		q := store.AreaQuery{Terms: []string{term}}
		if q.Check() != nil {
			return
		}
		st := q.ParseTerms()[0]
		folded := store.FoldName(name)
		st.MatchName(folded)
		st.MatchPostcode(name)
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
