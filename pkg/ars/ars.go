// Package ars holds the German official area keys and the area directory:
// the Amtlicher Regionalschlüssel (ARS, 12 digits: Land, Regierungsbezirk,
// Kreis, Gemeindeverband, Gemeinde), the Amtlicher Gemeindeschlüssel (AGS,
// 8 digits), FIT-Connect regions ("DE" + an ARS prefix), and importers for the
// Destatis GV100AD directory and a postcode table.
//
// The package does no I/O of its own: parsers read from an io.Reader handed in.
// Values are immutable and safe for concurrent use.
package ars

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Level is a tier of the administrative hierarchy an ARS prefix denotes.
// The zero Level is no level.
type Level uint8

// The levels, from the top. Their order is the nesting order.
const (
	Bund             Level = iota + 1 // Germany, region "DE"
	Land                              // 2 digits
	Regierungsbezirk                  // 3 digits
	Kreis                             // 5 digits
	Gemeindeverband                   // 9 digits
	Gemeinde                          // 12 digits
)

// Levels lists every level from Bund down to Gemeinde.
var Levels = [...]Level{Bund, Land, Regierungsbezirk, Kreis, Gemeindeverband, Gemeinde}

var levelNames = [...]string{"none", "bund", "land", "regierungsbezirk", "kreis", "gemeindeverband", "gemeinde"}

var levelDigits = [...]int{0, 0, 2, 3, 5, 9, 12}

// String returns the lower-case German name of the level ("gemeinde"), or
// "none" for the zero Level.
func (l Level) String() string {
	if int(l) < len(levelNames) {
		return levelNames[l]
	}
	return "level(" + strconv.Itoa(int(l)) + ")"
}

// Digits returns how many leading ARS digits denote an area of this level:
// 0, 2, 3, 5, 9 or 12. It returns 0 for the zero and unknown levels.
func (l Level) Digits() int {
	if int(l) < len(levelDigits) {
		return levelDigits[l]
	}
	return 0
}

// Valid reports whether l is one of the six levels.
func (l Level) Valid() bool { return l >= Bund && l <= Gemeinde }

// LevelOf returns the level whose ARS prefix has n digits.
func LevelOf(n int) (Level, bool) {
	switch n {
	case 0:
		return Bund, true
	case 2:
		return Land, true
	case 3:
		return Regierungsbezirk, true
	case 5:
		return Kreis, true
	case 9:
		return Gemeindeverband, true
	case 12:
		return Gemeinde, true
	}
	return 0, false
}

// ErrSyntax is wrapped by every error about a malformed key.
var ErrSyntax = errors.New("invalid syntax")

// SyntaxError says what is wrong with a key and where. It wraps ErrSyntax.
type SyntaxError struct {
	Kind   string // "ars", "ags" or "region"
	Input  string // the text as given
	Pos    int    // 1-based position of the offending character, 0 if none
	Reason string // what is wrong
}

// Error names the key, what is wrong and where.
func (e *SyntaxError) Error() string {
	in := e.Input
	if len(in) > 40 {
		in = in[:40] + "..."
	}
	if e.Pos > 0 {
		return fmt.Sprintf("%s %q: %s at position %d", e.Kind, in, e.Reason, e.Pos)
	}
	return fmt.Sprintf("%s %q: %s", e.Kind, in, e.Reason)
}

// Unwrap returns ErrSyntax.
func (e *SyntaxError) Unwrap() error { return ErrSyntax }

const zeros = "000000000000"

// ARS is an Amtlicher Regionalschlüssel, kept as 12 digits together with the
// level of the key it was parsed from (a 5-digit key is a Kreis, padded with
// zeros). The zero ARS is no key. ARS values are comparable.
type ARS struct {
	// s is "DE" and the 12 digits, so that String and Region are substrings
	// and cost no allocation.
	s     string
	level Level
}

func newARS(digits string, l Level) ARS {
	return ARS{s: "DE" + digits + zeros[len(digits):], level: l}
}

// Parse parses an ARS of 2, 3, 5, 9 or 12 digits. Shorter keys are padded
// with zeros to 12 digits and keep the level their length denotes. The Land
// must be 01 to 16. Errors wrap ErrSyntax and are *SyntaxError.
func Parse(s string) (ARS, error) {
	if err := checkDigits("ars", s, s, 0); err != nil {
		return ARS{}, err
	}
	l, ok := LevelOf(len(s))
	if !ok || l == Bund {
		return ARS{}, &SyntaxError{Kind: "ars", Input: s, Reason: fmt.Sprintf("length %d is not one of 2, 3, 5, 9, 12", len(s))}
	}
	if err := checkLand("ars", s, s, 0); err != nil {
		return ARS{}, err
	}
	return newARS(s, l), nil
}

// MustParse is Parse for keys known to be valid; it panics on error.
func MustParse(s string) ARS {
	a, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return a
}

// ParseRegion parses a FIT-Connect region: "DE" followed by an ARS prefix of
// 0, 2, 3, 5, 9 or 12 digits. The result's level is the level of the prefix;
// "DE" alone is Bund. Errors wrap ErrSyntax and are *SyntaxError.
func ParseRegion(s string) (ARS, error) {
	for i := 0; i < 2; i++ {
		if i >= len(s) {
			return ARS{}, &SyntaxError{Kind: "region", Input: s, Reason: `missing prefix "DE"`}
		}
		if s[i] != "DE"[i] {
			return ARS{}, &SyntaxError{Kind: "region", Input: s, Pos: i + 1, Reason: `missing prefix "DE"`}
		}
	}
	d := s[2:]
	if err := checkDigits("region", s, d, 2); err != nil {
		return ARS{}, err
	}
	l, ok := LevelOf(len(d))
	if !ok {
		return ARS{}, &SyntaxError{Kind: "region", Input: s, Reason: fmt.Sprintf("%d digits after DE is not one of 0, 2, 3, 5, 9, 12", len(d))}
	}
	if l == Bund {
		return ARS{s: "DE" + zeros, level: Bund}, nil
	}
	if err := checkLand("region", s, d, 2); err != nil {
		return ARS{}, err
	}
	if l == Gemeinde {
		return ARS{s: s, level: l}, nil
	}
	return newARS(d, l), nil
}

func pad(s string) string {
	if len(s) == 12 {
		return s
	}
	return s + zeros[len(s):]
}

// checkDigits reports the first non-digit of digits, counting positions in
// whole from offset+1.
func checkDigits(kind, whole, digits string, offset int) error {
	for i := 0; i < len(digits); i++ {
		if c := digits[i]; c < '0' || c > '9' {
			r, _ := utf8.DecodeRuneInString(digits[i:])
			return &SyntaxError{Kind: kind, Input: whole, Pos: offset + i + 1, Reason: fmt.Sprintf("non-digit %q", r)}
		}
	}
	return nil
}

func checkLand(kind, whole, digits string, offset int) error {
	land := int(digits[0]-'0')*10 + int(digits[1]-'0')
	if land < 1 || land > 16 {
		return &SyntaxError{Kind: kind, Input: whole, Pos: offset + 1, Reason: fmt.Sprintf("Land %s is not 01 to 16", digits[:2])}
	}
	return nil
}

// String returns the 12 digits, or "" for the zero ARS.
func (a ARS) String() string {
	if a.s == "" {
		return ""
	}
	return a.s[2:]
}

// IsZero reports whether a is the zero ARS.
func (a ARS) IsZero() bool { return a.s == "" }

// Level returns the level of the key as parsed: Gemeinde for 12 digits,
// Kreis for 5, Bund for the region "DE".
func (a ARS) Level() Level { return a.level }

// Land returns the two Land digits.
func (a ARS) Land() string { return a.Prefix(Land) }

// Kreis returns the five digits of Land, Regierungsbezirk and Kreis.
func (a ARS) Kreis() string { return a.Prefix(Kreis) }

// Prefix returns the leading digits that denote level l ("" for Bund).
func (a ARS) Prefix(l Level) string {
	if a.s == "" {
		return ""
	}
	return a.s[2 : 2+l.Digits()]
}

// Code returns the digits of the key at its own level: 5 digits for a Kreis.
func (a ARS) Code() string { return a.Prefix(a.level) }

// Region returns the FIT-Connect region of the key: "DE" + Code(), or "" for
// the zero ARS.
func (a ARS) Region() string {
	if a.s == "" {
		return ""
	}
	return a.s[:2+a.level.Digits()]
}

// RegionOf returns the FIT-Connect region of the enclosing area at level l:
// "DE" + Prefix(l). Unlike Truncate(l).Region() it does not allocate.
func (a ARS) RegionOf(l Level) string {
	if a.s == "" {
		return ""
	}
	return a.s[:2+l.Digits()]
}

// Truncate returns the key of the enclosing area at level l: the prefix of l
// padded with zeros. It returns a unchanged when l is below a's level.
func (a ARS) Truncate(l Level) ARS {
	if a.s == "" || !l.Valid() || l >= a.level {
		return a
	}
	return newARS(a.Prefix(l), l)
}

// Contains reports whether the area of a encloses (or is) the area of b.
func (a ARS) Contains(b ARS) bool {
	return a.s != "" && b.s != "" && a.level <= b.level && a.Prefix(a.level) == b.Prefix(a.level)
}

// AGS returns the Amtlicher Gemeindeschlüssel of the key: Land, Regierungsbezirk,
// Kreis and the last three Gemeinde digits for a Gemeinde; the prefix padded
// to 8 digits for a Land, Regierungsbezirk or Kreis. A Gemeindeverband and the
// Bund have no AGS.
func (a ARS) AGS() (AGS, bool) {
	switch a.level {
	case Gemeinde:
		return AGS{s: a.s[2:7] + a.s[11:], level: Gemeinde}, true
	case Land, Regierungsbezirk, Kreis:
		return AGS{s: a.s[2:10], level: a.level}, true
	}
	return AGS{}, false
}

// AGS is an Amtlicher Gemeindeschlüssel, kept as 8 digits together with the
// level of the key it was parsed from (Land, Regierungsbezirk, Kreis or
// Gemeinde). The zero AGS is no key.
type AGS struct {
	s     string
	level Level
}

// ParseAGS parses an AGS of 2, 3, 5 or 8 digits. Shorter keys are padded
// with zeros to 8 digits and keep the level their length denotes. Errors
// wrap ErrSyntax and are *SyntaxError.
func ParseAGS(s string) (AGS, error) {
	if err := checkDigits("ags", s, s, 0); err != nil {
		return AGS{}, err
	}
	var l Level
	switch len(s) {
	case 2:
		l = Land
	case 3:
		l = Regierungsbezirk
	case 5:
		l = Kreis
	case 8:
		l = Gemeinde
	default:
		return AGS{}, &SyntaxError{Kind: "ags", Input: s, Reason: fmt.Sprintf("length %d is not one of 2, 3, 5, 8", len(s))}
	}
	if err := checkLand("ags", s, s, 0); err != nil {
		return AGS{}, err
	}
	return AGS{s: s + zeros[:8-len(s)], level: l}, nil
}

// String returns the 8 digits, or "" for the zero AGS.
func (g AGS) String() string { return g.s }

// IsZero reports whether g is the zero AGS.
func (g AGS) IsZero() bool { return g.s == "" }

// Level returns the level of the key as parsed.
func (g AGS) Level() Level { return g.level }

// Code returns the digits of the key at its own level: 8 for a Gemeinde,
// 5 for a Kreis.
func (g AGS) Code() string {
	if g.level == Gemeinde {
		return g.s
	}
	return g.s[:g.level.Digits()]
}

// ARS returns the ARS of a Land, Regierungsbezirk or Kreis key. A Gemeinde's
// ARS also holds its Gemeindeverband, which the AGS lacks: look it up with
// Directory.ByAGS instead.
func (g AGS) ARS() (ARS, bool) {
	switch g.level {
	case Land, Regierungsbezirk, Kreis:
		return newARS(g.s[:g.level.Digits()], g.level), true
	}
	return ARS{}, false
}
