package leika

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// ErrFormat is wrapped by every error about a malformed catalogue.
var ErrFormat = errors.New("malformed input")

// ErrMissingColumn is wrapped by errors about a required column the header
// lacks.
var ErrMissingColumn = errors.New("missing column")

// LineError is an error in one line of the catalogue. It wraps ErrFormat and Err.
type LineError struct {
	Line  int    // 1-based line number
	Field string // the column at fault, "" for the whole line
	Err   error
}

// Error names the line, the column and what is wrong.
func (e *LineError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("line %d: %v", e.Line, e.Err)
	}
	return fmt.Sprintf("line %d: %s: %v", e.Line, e.Field, e.Err)
}

// Unwrap returns ErrFormat and the underlying error.
func (e *LineError) Unwrap() []error { return []error{ErrFormat, e.Err} }

// Service is one entry of the catalogue. Only Key and Name are always set.
type Service struct {
	Key  Key
	Name string
	// Level is the executing level the catalogue derives from the LeiKa
	// type ("bund", "land_or_kommune", ...). It says nothing about which
	// authority is responsible in a place: that is Land law, and routes
	// come from the authorities.
	Level       string
	Typisierung string // LeiKa type, such as "2/3" or "1, 2/3"
	Kind        string // leika_kind: "lo", "lov", "lovd"
	OZGID       string // OZG service id
	OZGLeistung string // OZG service name
	Themenfeld  string // OZG subject area
}

// Column names of the catalogue CSV.
var catalogueColumns = []string{"leika_key", "name", "level", "typisierung", "leika_kind", "ozg_id", "ozg_leistung", "themenfeld"}

// ParseCatalogue reads a LeiKa catalogue in CSV whose header names the
// columns leika_key, name, level, typisierung, leika_kind, ozg_id,
// ozg_leistung, themenfeld in any order; leika_key and name are required,
// other columns are ignored. Every key must be valid and appear once. Errors
// name the line and wrap ErrFormat.
func ParseCatalogue(r io.Reader) ([]Service, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	header, err := cr.Read()
	// ReuseRecord: the next Read overwrites header's slice.
	header = slices.Clone(header)
	if err == io.EOF {
		return nil, fmt.Errorf("parse leika catalogue: %w", &LineError{Line: 1, Err: errors.New("no header")})
	}
	if err != nil {
		return nil, fmt.Errorf("parse leika catalogue: %w", csvError(err))
	}
	idx := make([]int, len(catalogueColumns))
	for i := range idx {
		idx[i] = -1
	}
	for i, h := range header {
		if i == 0 {
			h = strings.TrimPrefix(h, "\uFEFF")
		}
		for j, c := range catalogueColumns {
			if h != c {
				continue
			}
			if idx[j] >= 0 {
				return nil, fmt.Errorf("parse leika catalogue: %w", &LineError{Line: 1, Field: h, Err: errors.New("column repeated")})
			}
			idx[j] = i
		}
	}
	for _, j := range []int{0, 1} {
		if idx[j] < 0 {
			return nil, fmt.Errorf("parse leika catalogue: %w", &LineError{Line: 1, Field: catalogueColumns[j], Err: ErrMissingColumn})
		}
	}
	seen := make(map[Key]int)
	var out []Service
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("parse leika catalogue: %w", csvError(err))
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != len(header) {
			return nil, fmt.Errorf("parse leika catalogue: %w", &LineError{Line: line, Err: fmt.Errorf("%d fields, header has %d", len(rec), len(header))})
		}
		// A file in Latin-1 or Windows-1252 would store garbled names.
		for i, f := range rec {
			if !utf8.ValidString(f) {
				return nil, fmt.Errorf("parse leika catalogue: %w", &LineError{Line: line, Field: header[i], Err: errors.New("not valid UTF-8")})
			}
		}
		var v [8]string
		for j, i := range idx {
			if i >= 0 {
				v[j] = rec[i]
			}
		}
		k, err := ParseKey(v[0])
		if err != nil {
			return nil, fmt.Errorf("parse leika catalogue: %w", &LineError{Line: line, Field: "leika_key", Err: err})
		}
		if first, dup := seen[k]; dup {
			return nil, fmt.Errorf("parse leika catalogue: %w", &LineError{Line: line, Field: "leika_key", Err: fmt.Errorf("%s repeats line %d", k, first)})
		}
		seen[k] = line
		if strings.TrimSpace(v[1]) == "" {
			return nil, fmt.Errorf("parse leika catalogue: %w", &LineError{Line: line, Field: "name", Err: errors.New("empty")})
		}
		out = append(out, Service{Key: k, Name: v[1], Level: v[2], Typisierung: v[3], Kind: v[4], OZGID: v[5], OZGLeistung: v[6], Themenfeld: v[7]})
	}
}

// csvError turns an encoding/csv error into a LineError.
func csvError(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &LineError{Line: pe.Line, Err: pe.Err}
	}
	return err
}
