package ars

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"
)

// ErrFormat is wrapped by every error about malformed input data.
var ErrFormat = errors.New("malformed input")

// LineError is an error in one line of an input file. It wraps ErrFormat and Err.
type LineError struct {
	Line  int    // 1-based line number
	Field string // the field at fault, "" for the whole line
	Err   error
}

// Error names the line, the field and what is wrong.
func (e *LineError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("line %d: %v", e.Line, e.Err)
	}
	return fmt.Sprintf("line %d: %s: %v", e.Line, e.Field, e.Err)
}

// Unwrap returns ErrFormat and the underlying error.
func (e *LineError) Unwrap() []error { return []error{ErrFormat, e.Err} }

// recordLen is the GV100AD record length in characters (not bytes: the
// export is UTF-8 and names hold umlauts).
const recordLen = 220

// field is a GV100AD field by its 1-based, inclusive character positions as
// the Destatis record layout ("Datensatzbeschreibung") gives them.
type field struct {
	name     string
	from, to int
}

var (
	fType       = field{"Satzart", 1, 2}
	fDate       = field{"Gebietsstand", 3, 10}
	fLand       = field{"Land", 11, 12}
	fRB         = field{"Regierungsbezirk", 13, 13}
	fKreis      = field{"Kreis", 14, 15}
	fRegion     = field{"Region", 14, 14}
	fRegionRest = field{"Region", 15, 15}
	fGemeinde   = field{"Gemeinde", 16, 18}
	fVerband    = field{"Gemeindeverband", 19, 22}
	fName       = field{"Bezeichnung", 23, 72}
	fSeat       = field{"Verwaltungssitz", 73, 122}
	fKind       = field{"Textkennzeichen", 123, 124}
	fHectares   = field{"Fläche", 129, 139}
	fPopulation = field{"Bevölkerung", 140, 150}
	fMale       = field{"Bevölkerung männlich", 151, 161}
	fPostalCode = field{"Postleitzahl", 166, 170}
	fPLZUnique  = field{"PLZ eindeutig", 171, 175}
)

// Area is one entry of the area directory: a Land, Regierungsbezirk, Kreis,
// Gemeindeverband or Gemeinde (including gemeindefreie Gebiete).
type Area struct {
	ARS   string // 12 digits
	AGS   string // 8 digits; "" for a Gemeindeverband
	Name  string
	Seat  string // seat of the administration; "" for a Gemeinde
	Level Level
	Kind  Kind // Textkennzeichen; zero for Land and Regierungsbezirk
	// Parent is the ARS of the nearest enclosing area in the directory, at
	// ParentLevel; "" and the zero Level for a Land.
	Parent      string
	ParentLevel Level
	// Population is the Gemeinde's population, or for a higher level the sum
	// over its Gemeinden.
	Population int
	Male       int   // male population, summed like Population
	Hectares   int64 // area in hectares, summed like Population
	// PostalCode is a Gemeinde's postcode, the seat's if it has several
	// (then PostalCodeUnique is false). Empty for other levels.
	PostalCode       string
	PostalCodeUnique bool
}

// Gemeindefrei reports whether the area is a gemeindefreies Gebiet rather than
// a political Gemeinde.
func (a *Area) Gemeindefrei() bool {
	return a.Kind == GemeindefreiesGebiet || a.Kind == GemeindefreiesGebietLeer
}

// Key returns the area's ARS at its level.
func (a *Area) Key() ARS { return ARS{s: "DE" + a.ARS, level: a.Level} }

// Region is a planning region of Baden-Württemberg (GV100AD record type 30).
// Regions group Kreise but are not a level of the ARS.
type Region struct {
	Code string // Land, Regierungsbezirk and the region digit, e.g. "0811"
	Name string
	Seat string
}

// record is one GV100AD line with the byte offset of every character.
type record struct {
	b    []byte
	off  [recordLen + 1]int32
	line int
}

func (r *record) index(b []byte) error {
	r.b = b
	if len(b) == recordLen && isASCII(b) {
		for i := range r.off {
			r.off[i] = int32(i)
		}
		return nil
	}
	if !utf8.Valid(b) {
		return errors.New("not valid UTF-8")
	}
	if n := utf8.RuneCount(b); n != recordLen {
		return fmt.Errorf("record has %d characters, want %d", n, recordLen)
	}
	n := 0
	for i := range string(b) {
		r.off[n] = int32(i)
		n++
	}
	r.off[recordLen] = int32(len(b))
	return nil
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func (r *record) raw(f field) []byte { return r.b[r.off[f.from-1]:r.off[f.to]] }

func (r *record) err(f field, format string, args ...any) error {
	return &LineError{Line: r.line, Field: f.name, Err: fmt.Errorf(format, args...)}
}

// digits returns the field, which must be all digits.
func (r *record) digits(f field) ([]byte, error) {
	v := r.raw(f)
	for i, c := range v {
		if c < '0' || c > '9' {
			return nil, r.err(f, "%q at column %d is not a digit", c, f.from+i)
		}
	}
	return v, nil
}

// blank checks that the field holds only spaces.
func (r *record) blank(f field) error {
	v := r.raw(f)
	for i, c := range v {
		if c != ' ' {
			return r.err(f, "%q at column %d, want blank", c, f.from+i)
		}
	}
	return nil
}

// number parses an unsigned decimal field.
func (r *record) number(f field) (int64, error) {
	v, err := r.digits(f)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, c := range v {
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

func (r *record) text(f field) string {
	return string(bytes.TrimRight(r.raw(f), " "))
}

// ParseGV100AD reads a Destatis GV100AD file (fixed-width records of 220
// characters, UTF-8) into a Directory. Every record must be well-formed, carry
// the same Gebietsstand and lie within a Land of the file; the first offending
// line aborts with a *LineError.
func ParseGV100AD(r io.Reader) (*Directory, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1024), 4096)
	b := newBuilder()
	var rec record
	for sc.Scan() {
		rec.line++
		line := sc.Bytes()
		if rec.line == 1 {
			line = bytes.TrimPrefix(line, []byte("\uFEFF"))
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if err := rec.index(line); err != nil {
			return nil, fmt.Errorf("parse gv100ad: %w", &LineError{Line: rec.line, Err: err})
		}
		if err := b.add(&rec); err != nil {
			return nil, fmt.Errorf("parse gv100ad: %w", err)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = &LineError{Line: rec.line + 1, Err: errors.New("line longer than 4096 bytes")}
		}
		return nil, fmt.Errorf("parse gv100ad: %w", err)
	}
	d, err := b.finish()
	if err != nil {
		return nil, fmt.Errorf("parse gv100ad: %w", err)
	}
	return d, nil
}

type builder struct {
	d        *Directory
	lines    []int32
	date     string
	dateLine int
}

func newBuilder() *builder {
	return &builder{d: &Directory{
		byKey: make(map[areaKey]int32),
		byAGS: make(map[string]int32),
	}}
}

func (b *builder) add(r *record) error {
	typ, err := r.digits(fType)
	if err != nil {
		return err
	}
	date, err := r.digits(fDate)
	if err != nil {
		return err
	}
	if b.date == "" {
		t, err := time.Parse("20060102", string(date))
		if err != nil {
			return r.err(fDate, "%s is not a date", date)
		}
		b.date, b.dateLine = string(date), r.line
		b.d.date = t
	} else if string(date) != b.date {
		return r.err(fDate, "%s differs from %s on line %d", date, b.date, b.dateLine)
	}
	land, err := r.digits(fLand)
	if err != nil {
		return err
	}
	if n := int(land[0]-'0')*10 + int(land[1]-'0'); n < 1 || n > 16 {
		return r.err(fLand, "%s is not 01 to 16", land)
	}

	// Which key parts a record type carries; the others must be blank.
	var level Level
	var digits, blanks []field
	switch string(typ) {
	case "10":
		level, blanks = Land, []field{fRB, fKreis, fGemeinde, fVerband}
	case "20":
		level, digits, blanks = Regierungsbezirk, []field{fRB}, []field{fKreis, fGemeinde, fVerband}
	case "30":
		return b.addRegion(r, land)
	case "40":
		level, digits, blanks = Kreis, []field{fRB, fKreis}, []field{fGemeinde, fVerband}
	case "50":
		level, digits, blanks = Gemeindeverband, []field{fRB, fKreis, fVerband}, []field{fGemeinde}
	case "60":
		level, digits = Gemeinde, []field{fRB, fKreis, fVerband, fGemeinde}
	default:
		return r.err(fType, "%q is not one of 10, 20, 30, 40, 50, 60", typ)
	}
	var key [12]byte
	copy(key[:], zeros)
	copy(key[:], land)
	for _, f := range digits {
		v, err := r.digits(f)
		if err != nil {
			return err
		}
		// ARS order is Land, RB, Kreis, Gemeindeverband, Gemeinde; the record
		// holds the Gemeinde before the Gemeindeverband.
		switch f {
		case fRB:
			copy(key[2:], v)
		case fKreis:
			copy(key[3:], v)
		case fVerband:
			copy(key[5:], v)
		case fGemeinde:
			copy(key[9:], v)
		}
	}
	for _, f := range blanks {
		if err := r.blank(f); err != nil {
			return err
		}
	}
	a := Area{ARS: string(key[:]), Level: level, Name: r.text(fName)}
	if a.Name == "" {
		return r.err(fName, "empty")
	}
	switch level {
	case Land, Regierungsbezirk, Kreis:
		a.AGS = a.ARS[:8]
	case Gemeinde:
		a.AGS = a.ARS[:5] + a.ARS[9:]
	}
	if level != Gemeinde {
		a.Seat = r.text(fSeat)
	}
	if level >= Kreis {
		k, err := r.number(fKind)
		if err != nil {
			return err
		}
		a.Kind = Kind(k)
	}
	if level == Gemeinde {
		ha, err := r.number(fHectares)
		if err != nil {
			return err
		}
		pop, err := r.number(fPopulation)
		if err != nil {
			return err
		}
		male, err := r.number(fMale)
		if err != nil {
			return err
		}
		if male > pop {
			return r.err(fMale, "%d exceeds the population %d", male, pop)
		}
		a.Hectares, a.Population, a.Male = ha, int(pop), int(male)
		if raw := r.raw(fPostalCode); !bytes.Equal(raw, []byte("     ")) {
			pc, err := r.digits(fPostalCode)
			if err != nil {
				return err
			}
			a.PostalCode = string(pc)
			a.PostalCodeUnique = len(bytes.TrimSpace(r.raw(fPLZUnique))) == 0
		}
	}
	k := areaKey{a.ARS, level}
	if i, ok := b.d.byKey[k]; ok {
		return &LineError{Line: r.line, Field: "Regionalschlüssel", Err: fmt.Errorf("%s %s repeats line %d", level, a.ARS, b.lines[i])}
	}
	i := int32(len(b.d.areas))
	b.d.byKey[k] = i
	if level == Gemeinde {
		b.d.byAGS[a.AGS] = i
	}
	b.d.areas = append(b.d.areas, a)
	b.lines = append(b.lines, int32(r.line))
	return nil
}

func (b *builder) addRegion(r *record, land []byte) error {
	rb, err := r.digits(fRB)
	if err != nil {
		return err
	}
	reg, err := r.digits(fRegion)
	if err != nil {
		return err
	}
	for _, f := range []field{fRegionRest, fGemeinde, fVerband} {
		if err := r.blank(f); err != nil {
			return err
		}
	}
	g := Region{Code: string(land) + string(rb) + string(reg), Name: r.text(fName), Seat: r.text(fSeat)}
	if g.Name == "" {
		return r.err(fName, "empty")
	}
	b.d.regions = append(b.d.regions, g)
	return nil
}

// parentLevels lists, per level, where to look for the enclosing area,
// nearest first: a Kreis may lie in no Regierungsbezirk, a gemeindefreies
// Gebiet in no Kreis.
var parentLevels = [...][]Level{
	Regierungsbezirk: {Land},
	Kreis:            {Regierungsbezirk, Land},
	Gemeindeverband:  {Kreis, Regierungsbezirk, Land},
	Gemeinde:         {Gemeindeverband, Kreis, Regierungsbezirk, Land},
}

func (b *builder) finish() (*Directory, error) {
	d := b.d
	if len(d.areas) == 0 {
		return nil, fmt.Errorf("%w: no records", ErrFormat)
	}
	d.children = make(map[areaKey][]int32, len(d.areas)/2)
	for i := range d.areas {
		a := &d.areas[i]
		d.byLevel[a.Level] = append(d.byLevel[a.Level], int32(i))
		if a.Level == Land {
			continue
		}
		found := false
		for _, l := range parentLevels[a.Level] {
			k := areaKey{pad(a.ARS[:l.Digits()]), l}
			if _, ok := d.byKey[k]; ok {
				a.Parent, a.ParentLevel = k.ars, l
				d.children[k] = append(d.children[k], int32(i))
				found = true
				break
			}
		}
		if !found {
			return nil, &LineError{Line: int(b.lines[i]), Field: "Land", Err: fmt.Errorf("%s %s lies in no Land of the file", a.Level, a.ARS)}
		}
	}
	for _, i := range d.byLevel[Gemeinde] {
		g := &d.areas[i]
		d.population += g.Population
		for k := (areaKey{g.Parent, g.ParentLevel}); k.level != 0; {
			p := &d.areas[d.byKey[k]]
			p.Population += g.Population
			p.Male += g.Male
			p.Hectares += g.Hectares
			k = areaKey{p.Parent, p.ParentLevel}
		}
	}
	return d, nil
}
