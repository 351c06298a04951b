package ars

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"unicode/utf8"
)

// ErrMissingColumn is wrapped by errors about a required column a CSV
// header lacks.
var ErrMissingColumn = errors.New("missing column")

// PostalCode is one row of a postcode table: a postcode and a Gemeinde it
// reaches. A postcode may reach several Gemeinden and a Gemeinde have several
// postcodes.
type PostalCode struct {
	Code string // 5 digits
	AGS  string // 8 digits
	// ARS is the Gemeinde's 12-digit key, "" when the Gemeinde has since
	// been merged into another and the table does not know the successor.
	ARS         string
	Name        string
	DistrictARS string // the Kreis's 12-digit key, "" like ARS
	Current     bool   // the Gemeinde is in the current directory
}

// ParsePLZ reads a postcode table in CSV with the header
// plz,ags,ars,name,district_ars,in_gv2025 (columns in any order; plz, ags,
// ars and name required). Errors name the line and wrap ErrFormat.
func ParsePLZ(r io.Reader) ([]PostalCode, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	header, err := cr.Read()
	// ReuseRecord: the next Read overwrites header's slice.
	header = slices.Clone(header)
	if err != nil {
		if err == io.EOF {
			return nil, fmt.Errorf("parse plz: %w", &LineError{Line: 1, Err: errors.New("no header")})
		}
		return nil, fmt.Errorf("parse plz: %w", csvError(err))
	}
	col, err := columns(header, []string{"plz", "ags", "ars", "name"})
	if err != nil {
		return nil, fmt.Errorf("parse plz: %w", err)
	}
	var out []PostalCode
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("parse plz: %w", csvError(err))
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != len(header) {
			return nil, fmt.Errorf("parse plz: %w", &LineError{Line: line, Err: fmt.Errorf("%d fields, header has %d", len(rec), len(header))})
		}
		// A file in Latin-1 or Windows-1252 would store garbled names.
		for i, f := range rec {
			if !utf8.ValidString(f) {
				return nil, fmt.Errorf("parse plz: %w", &LineError{Line: line, Field: header[i], Err: errors.New("not valid UTF-8")})
			}
		}
		get := func(name string) string {
			if i, ok := col[name]; ok {
				return rec[i]
			}
			return ""
		}
		p := PostalCode{Code: get("plz"), AGS: get("ags"), ARS: get("ars"), Name: get("name"), DistrictARS: get("district_ars")}
		bad := func(field string, err error) error {
			return fmt.Errorf("parse plz: %w", &LineError{Line: line, Field: field, Err: err})
		}
		if len(p.Code) != 5 {
			return nil, bad("plz", fmt.Errorf("%q is not 5 digits", p.Code))
		}
		if err := checkDigits("plz", p.Code, p.Code, 0); err != nil {
			return nil, bad("plz", err)
		}
		if g, err := ParseAGS(p.AGS); err != nil {
			return nil, bad("ags", err)
		} else if g.Level() != Gemeinde {
			return nil, bad("ags", fmt.Errorf("%q is not 8 digits", p.AGS))
		}
		for _, f := range []struct {
			name string
			v    string
		}{{"ars", p.ARS}, {"district_ars", p.DistrictARS}} {
			if f.v == "" {
				continue
			}
			if a, err := Parse(f.v); err != nil {
				return nil, bad(f.name, err)
			} else if a.Level() != Gemeinde {
				return nil, bad(f.name, fmt.Errorf("%q is not 12 digits", f.v))
			}
		}
		if p.Name == "" {
			return nil, bad("name", errors.New("empty"))
		}
		switch v := get("in_gv2025"); v {
		case "yes":
			p.Current = true
		case "no", "":
		default:
			return nil, bad("in_gv2025", fmt.Errorf("%q is not yes or no", v))
		}
		out = append(out, p)
	}
}

// columns maps the header's column names to their indexes, requiring the
// names in required.
func columns(header, required []string) (map[string]int, error) {
	col := make(map[string]int, len(header))
	for i, h := range header {
		if i == 0 {
			h = trimBOM(h)
		}
		if _, dup := col[h]; dup {
			return nil, &LineError{Line: 1, Field: h, Err: errors.New("column repeated")}
		}
		col[h] = i
	}
	for _, name := range required {
		if _, ok := col[name]; !ok {
			return nil, &LineError{Line: 1, Field: name, Err: ErrMissingColumn}
		}
	}
	return col, nil
}

func trimBOM(s string) string {
	if len(s) >= 3 && s[:3] == "\uFEFF" {
		return s[3:]
	}
	return s
}

// csvError turns an encoding/csv error into a LineError.
func csvError(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &LineError{Line: pe.Line, Err: pe.Err}
	}
	return err
}
