package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/leika"
)

// ErrStale means an import is older than the data it would replace: a
// directory whose Gebietsstand precedes the one imported before.
var ErrStale = errors.New("older than the current data")

// ErrIncomplete means a directory lacks areas that it cannot have lost: a
// file cut short. An area leaves the directory only with a later
// Gebietsstand, and a Land never does.
var ErrIncomplete = errors.New("incomplete")

// CheckComplete refuses, with ErrIncomplete, a directory of Gebietsstand
// stand that lacks current areas it cannot have lost: any, when it is of
// the stored Gebietsstand (same), else a Land. left are the stored areas
// the directory does not list.
func CheckComplete(stand time.Time, same bool, left iter.Seq[Area]) error {
	var missing []Area
	for a := range left {
		if a.Retired == nil && (same || a.Level == ars.Land) {
			missing = append(missing, a)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.SortFunc(missing, func(a, b Area) int { return strings.Compare(a.ARS, b.ARS) })
	var first []string
	for _, a := range missing[:min(3, len(missing))] {
		first = append(first, a.ARS[:a.Level.Digits()]+" "+a.Name)
	}
	if !same {
		return fmt.Errorf("%w: the directory of Gebietsstand %s lacks Länder the stored directory holds (%s): "+
			"is the file cut short? A directory lists every Land",
			ErrIncomplete, stand.Format(time.DateOnly), strings.Join(first, ", "))
	}
	return fmt.Errorf("%w: the directory of Gebietsstand %s lacks %d areas the stored directory of the same Gebietsstand holds (%s …): "+
		"is the file cut short? An area leaves the directory only with a later Gebietsstand",
		ErrIncomplete, stand.Format(time.DateOnly), len(missing), strings.Join(first, ", "))
}

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
	// Seeded marks an area SeedAreas wrote, a stand-in until a directory
	// is imported.
	Seeded bool
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
	Areas     int       `json:"areas"`              // areas in the directory
	Added     int       `json:"added"`              // new keys
	Updated   int       `json:"updated"`            // names or figures changed
	Restored  int       `json:"restored"`           // retired keys listed again
	Retired   int       `json:"retired"`            // keys the directory no longer lists
	Unchanged int       `json:"unchanged"`          // listed as they were
	Replaced  int       `json:"replaced,omitempty"` // seeded areas an import deleted
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
// term of digits is a postcode; other terms match the name as FoldName
// folds both, so case, umlauts typed as ae, oe, ue, composed or combining
// diacritics and "St." for "Sankt" do not matter. '*' stands for any run of
// characters: without it at an end, a term begins or ends at a word
// boundary of the name ("Hanau" finds "Hanau, Brüder-Grimm-Stadt", "Mag*"
// finds Magdeburg, "*burg" Hamburg). A word "St" just before a '*' stands
// for "St" and "Sankt" alike, so "St*" finds "St. Peter" while it is typed.
// Postcode terms match whole postcodes ("79098", "790*"). Only current
// areas match, and Gemeindeverbände that merely mirror their one Gemeinde
// (verbandsfreie Gemeinden) are left out.
type AreaQuery struct {
	Terms []string
}

// Term limits of an AreaQuery: 1 to 10 terms, each made of runs of at
// least 2 characters between '*' (the Routing API's parameter schema), at
// most 100 characters long (the longest name in the directory has 50) and
// free of control characters.
const (
	MaxAreaTerms   = 10
	MinTermLetters = 2
	MaxTermLength  = 100
)

// ErrAreaQuery is wrapped by every error about a malformed AreaQuery, from
// Check and from a store's SearchAreas: the request is at fault, and the
// Routing API answers 400 naming areaSearchexpression.
var ErrAreaQuery = errors.New("invalid area search")

// AreaQueryError says what is wrong with an AreaQuery. It wraps
// ErrAreaQuery.
type AreaQueryError struct {
	Term   int    // 1-based number of the offending term, 0 for the whole query
	Reason string // what is wrong
}

// Error names the term and what is wrong with it.
func (e *AreaQueryError) Error() string {
	if e.Term == 0 {
		return e.Reason
	}
	return fmt.Sprintf("term %d %s", e.Term, e.Reason)
}

// Unwrap returns ErrAreaQuery.
func (e *AreaQueryError) Unwrap() error { return ErrAreaQuery }

// Check validates the query against the limits. Its errors are
// *AreaQueryError.
func (q AreaQuery) Check() error {
	if len(q.Terms) == 0 || len(q.Terms) > MaxAreaTerms {
		return &AreaQueryError{Reason: fmt.Sprintf("%d search terms, want 1 to %d", len(q.Terms), MaxAreaTerms)}
	}
	for i, t := range q.Terms {
		if reason := checkTerm(t); reason != "" {
			return &AreaQueryError{Term: i + 1, Reason: reason}
		}
	}
	return nil
}

// checkTerm returns what is wrong with term t, or "".
func checkTerm(t string) string {
	// Bound the work before normalising: no character takes more than
	// utf8.UTFMax bytes.
	if len(t) > MaxTermLength*utf8.UTFMax {
		return fmt.Sprintf("of %d bytes: longer than %d characters", len(t), MaxTermLength)
	}
	if !utf8.ValidString(t) {
		return "is not valid UTF-8"
	}
	show := t
	t = norm.NFC.String(t)
	if n := utf8.RuneCountInString(t); n > MaxTermLength {
		return fmt.Sprintf("of %d characters: longer than %d", n, MaxTermLength)
	}
	if i := strings.IndexFunc(t, unicode.IsControl); i >= 0 {
		r, _ := utf8.DecodeRuneInString(t[i:])
		return fmt.Sprintf("%q: control character %U", show, r)
	}
	segs := segments(t)
	if len(segs) == 0 {
		return fmt.Sprintf("%q: no characters besides '*'", show)
	}
	for _, s := range segs {
		if utf8.RuneCountInString(s) < MinTermLetters {
			return fmt.Sprintf("%q: %q is shorter than %d characters; '*' separates runs of at least %d", show, s, MinTermLetters, MinTermLetters)
		}
	}
	if !termPattern.MatchString(t) {
		return fmt.Sprintf("%q: at most one '*' at each end, as the pattern %s allows", show, termPattern)
	}
	return ""
}

// termPattern is the Routing API's pattern of an areaSearchexpression.
var termPattern = regexp.MustCompile(`^(\*?([^\*]{2,})\*?)*$`)

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
	// Contains holds folded texts of which every match contains at least
	// one, as long as can be told from the term, so that a store can find
	// candidates by them. It has two texts where the term ends a run in
	// "St" before a '*' ("…st" or "…sankt"), else one.
	Contains []string
	Postcode bool // the term is digits: a postcode or postcode pattern
	re       *regexp.Regexp
}

// ParseTerms parses the query's terms; call Check first.
func (q AreaQuery) ParseTerms() []SearchTerm {
	out := make([]SearchTerm, 0, len(q.Terms))
	for _, t := range q.Terms {
		t = norm.NFC.String(t)
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
		best := -1
		for i, s := range segs {
			f := FoldName(s)
			texts := []string{f}
			if i > 0 {
				b.WriteString(open)
			}
			if (i < len(segs)-1 || strings.HasSuffix(t, "*")) && endsInWordSt(f) {
				// "St" while typed may become "St." (folded "sankt").
				stem := f[:len(f)-2]
				b.WriteString(regexp.QuoteMeta(stem) + "(?:st|sankt)")
				texts = []string{stem + "st", stem + "sankt"}
			} else {
				b.WriteString(regexp.QuoteMeta(f))
			}
			if n := len(texts[0]); n > best {
				best, st.Contains = n, texts
			}
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

// endsInWordSt reports whether folded text f ends in the word "st".
func endsInWordSt(f string) bool {
	return strings.HasSuffix(f, "st") && wordStart(f, len(f)-2)
}

// wordStart reports whether byte offset i of s begins a word: no letter or
// digit precedes it.
func wordStart(s string, i int) bool {
	if i == 0 {
		return true
	}
	r, _ := utf8.DecodeLastRuneInString(s[:i])
	return !unicode.IsLetter(r) && !unicode.IsNumber(r)
}

// FoldName returns the form names and search terms are compared in, so
// that a search finds a name however it is typed: Unicode NFC, lower case,
// ä, ö, ü as ae, oe, ue and ß as ss ("Köln" and "Koeln" fold alike, and
// "Soest" stays as it is), runs of spaces as one, no space at either end,
// and "st." or "st " at the start of a word as "sankt " ("St. Georgen",
// "St.Georgen" and "Sankt Georgen" fold alike; "Neumarkt-Sankt Veit, St"
// keeps its last word, which means Stadt). Stores keep this form of every
// name to search by; changing it needs a migration that rewrites theirs.
func FoldName(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	space := false
	for _, r := range strings.TrimSpace(norm.NFC.String(s)) {
		if unicode.IsSpace(r) {
			if !space {
				b.WriteByte(' ')
			}
			space = true
			continue
		}
		space = false
		switch r = unicode.ToLower(r); r {
		case 'ä':
			b.WriteString("ae")
		case 'ö':
			b.WriteString("oe")
		case 'ü':
			b.WriteString("ue")
		case 'ß', 'ẞ':
			b.WriteString("ss")
		default:
			b.WriteRune(r)
		}
	}
	return expandSankt(b.String())
}

// expandSankt writes "st." and "st " at the start of a word in folded text
// f as "sankt ", with one space after it unless it ends f.
func expandSankt(f string) string {
	if !strings.Contains(f, "st.") && !strings.Contains(f, "st ") {
		return f
	}
	var b strings.Builder
	b.Grow(len(f) + 8)
	for i := 0; i < len(f); {
		if i+2 < len(f) && f[i] == 's' && f[i+1] == 't' && (f[i+2] == '.' || f[i+2] == ' ') && wordStart(f, i) {
			b.WriteString("sankt")
			i += 3
			if f[i-1] == '.' && i < len(f) && f[i] == ' ' {
				i++
			}
			if i < len(f) {
				b.WriteByte(' ')
			}
			continue
		}
		b.WriteByte(f[i])
		i++
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
	// with ErrStale. Seeded areas (see SeedAreas) are no directory: they
	// are deleted first, whatever d's date, and AreaImport.Replaced
	// counts them.
	ImportAreas(ctx context.Context, actor string, d *ars.Directory) (AreaImport, error)
	// SeedAreas stores the areas of d as seeded: stand-ins, such as a
	// demo's hand-typed places, until a directory is imported. They are
	// read, found and searched like imported areas, with d's date as
	// their Stand, but set no Gebietsstand: ImportAreas of any date
	// replaces them. Seeding again makes the seeded areas those of d,
	// deleting the ones d does not list (counted as Retired). Once
	// ImportAreas has stored a directory, SeedAreas changes nothing and
	// returns ErrConflict.
	SeedAreas(ctx context.Context, actor string, d *ars.Directory) (AreaImport, error)
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
	// AreaByAGS returns the area an AGS names, current before retired:
	// the Gemeinde of an 8-digit AGS, else the Kreis, Regierungsbezirk or
	// Land the AGS names padded with zeros, the deepest first ("08315000"
	// is the Kreis 08315; see ars.Directory.Resolve). ErrNotFound if there
	// is none.
	AreaByAGS(ctx context.Context, g ars.AGS) (Area, error)
	// SearchAreas returns a page of the current areas matching q and the
	// total number of matches (see AreaQuery and FilterAreas). A query
	// that fails AreaQuery.Check is refused with an error wrapping
	// ErrAreaQuery.
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
