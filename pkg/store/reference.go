package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/leika"
)

// ErrStale means an import is older than the data it would replace: a
// directory whose Gebietsstand precedes the one imported before.
var ErrStale = errors.New("older than the current data")

// Area is one area of the imported directory (GV100AD): a Land,
// Regierungsbezirk, Kreis, Gemeindeverband or Gemeinde. An area is kept
// after it disappears from a newer directory, as retired.
type Area struct {
	ars.Area
	// Stand is the Gebietsstand of the last directory that listed the area.
	Stand time.Time
	// Retired is when the import of a directory without the area ran; nil
	// while the area is current.
	Retired *time.Time
	// RetiredStand is the Gebietsstand of that directory.
	RetiredStand *time.Time
}

// ID returns the area's identifier in the Routing API (areaId): the level's
// number (ars.Land is 2 … ars.Gemeinde 6) followed by the 12-digit ARS.
// (ARS, level) is unique, so the id is, and it is the same in every
// process and after every import.
func (a Area) ID() string { return AreaID(a.ARS, a.Level) }

// AreaID returns the Routing API id of the area (arsDigits, level).
func AreaID(arsDigits string, l ars.Level) string {
	return strconv.Itoa(int(l)) + arsDigits
}

// ParseAreaID splits an area id into the ARS and the level it names. It
// checks the form only, not that the area exists.
func ParseAreaID(id string) (ars.ARS, ars.Level, error) {
	if len(id) != 13 {
		return ars.ARS{}, 0, fmt.Errorf("area id %q: want 13 digits, the level 2 to 6 and a 12-digit ARS", id)
	}
	l := ars.Level(id[0] - '0')
	if id[0] < '0' || id[0] > '9' || l < ars.Land || l > ars.Gemeinde {
		return ars.ARS{}, 0, fmt.Errorf("area id %q: level digit %q is not 2 to 6", id, id[0])
	}
	a, err := ars.Parse(id[1:])
	if err != nil {
		return ars.ARS{}, 0, fmt.Errorf("area id %q: %w", id, err)
	}
	return a, l, nil
}

// AreaImport tells what an import of a directory changed.
type AreaImport struct {
	Stand     time.Time `json:"stand"`
	Areas     int       `json:"areas"`     // areas in the directory
	Added     int       `json:"added"`     // new keys
	Updated   int       `json:"updated"`   // names or figures changed
	Restored  int       `json:"restored"`  // retired keys listed again
	Retired   int       `json:"retired"`   // keys the directory no longer lists
	Unchanged int       `json:"unchanged"` // listed as they were
}

// CatalogueEntry is one service of the LeiKa catalogue as imported.
type CatalogueEntry struct {
	leika.Service
	UpdatedAt time.Time
}

// CatalogueImport tells what an import of the service catalogue changed.
// Keys absent from the file stay: catalogues are often published in parts.
type CatalogueImport struct {
	Services  int `json:"services"`
	Added     int `json:"added"`
	Updated   int `json:"updated"`
	Unchanged int `json:"unchanged"`
}

// PostcodeImport tells what an import of the postcode table changed. The
// table replaces the previous one.
type PostcodeImport struct {
	Rows     int `json:"rows"`
	Previous int `json:"previous"`
}

// AreaQuery selects areas by name and postcode (the Routing API's
// areaSearchexpression): an area matches when it matches every term. A
// term of digits is a postcode; other terms match the name, regardless of
// case. '*' stands for any run of characters: without it at an end, a term
// begins or ends at a word boundary of the name ("Hanau" finds "Hanau,
// Brüder-Grimm-Stadt", "Mag*" finds Magdeburg, "*burg" Hamburg). Postcode
// terms match whole postcodes ("79098", "790*"). Only current areas match,
// and Gemeindeverbände that merely mirror their one Gemeinde (verbandsfreie
// Gemeinden) are left out.
type AreaQuery struct {
	Terms []string
}

// Term limits of an AreaQuery, after the Routing API's parameter schema:
// 1 to 10 terms, each made of runs of at least 2 characters between '*'.
const (
	MaxAreaTerms   = 10
	MinTermLetters = 2
)

// Check validates the query against the limits.
func (q AreaQuery) Check() error {
	if len(q.Terms) == 0 || len(q.Terms) > MaxAreaTerms {
		return fmt.Errorf("%d search terms, want 1 to %d", len(q.Terms), MaxAreaTerms)
	}
	for i, t := range q.Terms {
		if !utf8.ValidString(t) {
			return fmt.Errorf("term %d: not valid UTF-8", i+1)
		}
		segs := segments(t)
		if len(segs) == 0 {
			return fmt.Errorf("term %d %q: no characters besides '*'", i+1, t)
		}
		for _, s := range segs {
			if utf8.RuneCountInString(s) < MinTermLetters {
				return fmt.Errorf("term %d %q: %q is shorter than %d characters; '*' separates runs of at least %d", i+1, t, s, MinTermLetters, MinTermLetters)
			}
		}
	}
	return nil
}

// segments returns the runs of t between '*', without empty ones.
func segments(t string) []string {
	var out []string
	for _, s := range strings.Split(t, "*") {
		if strings.TrimSpace(s) != "" {
			out = append(out, s)
		}
	}
	return out
}

// SearchTerm is one term of an AreaQuery, parsed.
type SearchTerm struct {
	// Text is the longest run of the term without '*', folded: every
	// match contains it, so a store can find candidates by it.
	Text     string
	Postcode bool // the term is digits: a postcode or postcode pattern
	re       *regexp.Regexp
}

// ParseTerms parses the query's terms; call Check first.
func (q AreaQuery) ParseTerms() []SearchTerm {
	out := make([]SearchTerm, 0, len(q.Terms))
	for _, t := range q.Terms {
		segs := segments(t)
		st := SearchTerm{Postcode: strings.Trim(t, "0123456789*") == ""}
		// A name term's closed end is a word boundary; a postcode term's
		// is the end of the postcode.
		open, closedStart, closedEnd := ".*", `(?:.*[^\p{L}\p{N}])?`, `(?:[^\p{L}\p{N}].*)?`
		if st.Postcode {
			closedStart, closedEnd = "", ""
		}
		var b strings.Builder
		b.WriteString("^")
		if strings.HasPrefix(t, "*") {
			b.WriteString(open)
		} else {
			b.WriteString(closedStart)
		}
		for i, s := range segs {
			f := FoldName(s)
			if len(f) > len(st.Text) {
				st.Text = f
			}
			if i > 0 {
				b.WriteString(open)
			}
			b.WriteString(regexp.QuoteMeta(f))
		}
		if strings.HasSuffix(t, "*") {
			b.WriteString(open)
		} else {
			b.WriteString(closedEnd)
		}
		b.WriteString("$")
		st.re = regexp.MustCompile(b.String())
		out = append(out, st)
	}
	return out
}

// FoldName returns the form names are compared in: lower case, ß as ss,
// runs of spaces as one.
func FoldName(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range strings.TrimSpace(s) {
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

// MatchName reports whether folded name matches the name term t.
func (t SearchTerm) MatchName(folded string) bool { return t.re.MatchString(folded) }

// MatchPostcode reports whether postcode matches the postcode term t.
func (t SearchTerm) MatchPostcode(postcode string) bool { return t.re.MatchString(postcode) }

// Searchable reports whether an area takes part in area searches: it is
// current and not a Gemeindeverband that only mirrors its Gemeinde.
func Searchable(a Area) bool {
	return a.Retired == nil && !(a.Level == ars.Gemeindeverband && a.Kind == ars.VerbandsfreieGemeinde)
}

// FilterAreas applies q to candidates, each given with the postcodes that
// reach it, and returns the page p of the matches and their total count.
// Matches are ordered by population (largest first), then level and ARS,
// so that where people live comes first. Implementations fetch candidates
// by an index and leave matching and order to this function, so every
// store answers alike.
func FilterAreas(candidates []AreaCandidate, q AreaQuery, p Page) ([]Area, int) {
	p = p.Normalize()
	terms := q.ParseTerms()
	var hits []Area
	for _, c := range candidates {
		if !Searchable(c.Area) {
			continue
		}
		folded := FoldName(c.Name)
		ok := true
		for _, t := range terms {
			if t.Postcode {
				ok = slices.ContainsFunc(c.Postcodes, t.MatchPostcode) || t.MatchPostcode(c.PostalCode)
			} else {
				ok = t.MatchName(folded)
			}
			if !ok {
				break
			}
		}
		if ok {
			hits = append(hits, c.Area)
		}
	}
	slices.SortFunc(hits, func(a, b Area) int {
		return cmp.Or(cmp.Compare(b.Population, a.Population), cmp.Compare(a.Level, b.Level), cmp.Compare(a.ARS, b.ARS))
	})
	hits = slices.CompactFunc(hits, func(a, b Area) bool { return a.ARS == b.ARS && a.Level == b.Level })
	total := len(hits)
	if p.Offset >= total {
		return []Area{}, total
	}
	return hits[p.Offset:min(total, p.Offset+p.Limit)], total
}

// AreaCandidate is an area a store's index found for a query, with the
// postcodes (from the postcode table) that reach it.
type AreaCandidate struct {
	Area
	Postcodes []string
}

// Reference is the official reference data and the registry's view for
// routing: the area directory with retired keys, the LeiKa catalogue, the
// postcode table, and every destination for building the routing table.
// All methods are safe for concurrent use. Imports run in one transaction
// that also writes their audit entry: either all of an import happens or
// nothing. Errors wrap ErrNotFound, ErrConflict or ErrStale where those
// apply.
type Reference interface {
	// ImportAreas makes the stored directory that of d: new keys are
	// added, names and figures of listed keys updated (a retired key
	// listed again is current again), and keys d does not list are kept
	// as retired at the import time. Importing the same directory again
	// changes nothing. A directory older than the stored one is refused
	// with ErrStale.
	ImportAreas(ctx context.Context, actor string, d *ars.Directory) (AreaImport, error)
	// Areas calls fn for every stored area, retired ones included, in ARS
	// then level order, within one snapshot. An error from fn stops the
	// walk and is returned as is.
	Areas(ctx context.Context, fn func(Area) error) error
	// Area returns the area (ARS, level), current or retired. ErrNotFound
	// if it was never imported.
	Area(ctx context.Context, arsDigits string, level ars.Level) (Area, error)
	// FindArea returns the most specific area under the key a, looking no
	// deeper than a's level, current areas before retired ones (see
	// ars.Directory.Find). ErrNotFound if there is none.
	FindArea(ctx context.Context, a ars.ARS) (Area, error)
	// AreaByAGS returns the area an AGS names, current before retired.
	// ErrNotFound if there is none.
	AreaByAGS(ctx context.Context, g ars.AGS) (Area, error)
	// SearchAreas returns a page of the current areas matching q and the
	// total number of matches (see AreaQuery and FilterAreas).
	SearchAreas(ctx context.Context, q AreaQuery, p Page) ([]Area, int, error)

	// ImportCatalogue adds and updates LeiKa services; keys not listed stay.
	ImportCatalogue(ctx context.Context, actor string, services []leika.Service) (CatalogueImport, error)
	// CatalogueEntry returns one service. ErrNotFound if absent.
	CatalogueEntry(ctx context.Context, key leika.Key) (CatalogueEntry, error)
	// Catalogue calls fn for every service in key order.
	Catalogue(ctx context.Context, fn func(CatalogueEntry) error) error

	// ImportPostcodes replaces the postcode table.
	ImportPostcodes(ctx context.Context, actor string, codes []ars.PostalCode) (PostcodeImport, error)

	// EachDestination calls fn for every destination, in id order, within
	// one snapshot: what a process needs to build its routing table
	// without missing a destination created while it reads.
	EachDestination(ctx context.Context, fn func(Destination) error) error
}

// ChangedArea reports whether importing a changes the stored area s: a
// name, a figure, the seat, kind, parent or postcode differs, or s is
// retired.
func ChangedArea(s Area, a ars.Area) bool {
	return s.Area != a || s.Retired != nil
}

// ChangedService reports whether importing v changes the stored entry s.
func ChangedService(s CatalogueEntry, v leika.Service) bool { return s.Service != v }
