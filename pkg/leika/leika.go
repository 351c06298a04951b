// Package leika holds service keys of the Leistungskatalog (LeiKa), the
// catalogue of German administrative services, their FIT-Connect URN form
// and an importer for the catalogue as CSV.
//
// The package does no I/O of its own: the importer reads from an io.Reader
// handed in.
package leika

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// URNPrefix precedes a LeiKa key in a FIT-Connect service identifier.
const URNPrefix = "urn:de:fim:leika:leistung:"

// ErrSyntax is wrapped by every error about a malformed key.
var ErrSyntax = errors.New("invalid syntax")

// SyntaxError says what is wrong with a key and where. It wraps ErrSyntax.
type SyntaxError struct {
	Input  string // the text as given
	Pos    int    // 1-based position of the offending character, 0 if none
	Reason string // what is wrong
}

// Error names the key, what is wrong and where.
func (e *SyntaxError) Error() string {
	in := e.Input
	if len(in) > 60 {
		in = in[:60] + "..."
	}
	if e.Pos > 0 {
		return fmt.Sprintf("leika key %q: %s at position %d", in, e.Reason, e.Pos)
	}
	return fmt.Sprintf("leika key %q: %s", in, e.Reason)
}

// Unwrap returns ErrSyntax.
func (e *SyntaxError) Unwrap() error { return ErrSyntax }

// Key is a LeiKa service key: 14 digits starting with 99.
type Key string

// ParseKey parses a LeiKa key of 14 digits starting with 99. Errors wrap
// ErrSyntax and are *SyntaxError.
func ParseKey(s string) (Key, error) {
	return parseKey(s, s, 0)
}

// parseKey checks the key digits, counting positions in whole from offset+1.
func parseKey(whole, s string, offset int) (Key, error) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < '0' || c > '9' {
			r, _ := utf8.DecodeRuneInString(s[i:])
			return "", &SyntaxError{Input: whole, Pos: offset + i + 1, Reason: fmt.Sprintf("non-digit %q", r)}
		}
	}
	if len(s) != 14 {
		return "", &SyntaxError{Input: whole, Reason: fmt.Sprintf("%d digits, want 14", len(s))}
	}
	for i := 0; i < 2; i++ {
		if s[i] != '9' {
			return "", &SyntaxError{Input: whole, Pos: offset + i + 1, Reason: "does not start with 99"}
		}
	}
	return Key(s), nil
}

// MustParseKey is ParseKey for keys known to be valid; it panics on error.
func MustParseKey(s string) Key {
	k, err := ParseKey(s)
	if err != nil {
		panic(err)
	}
	return k
}

// FromURN parses a FIT-Connect service identifier
// "urn:de:fim:leika:leistung:" + 14 digits. The prefix is matched without
// regard to case, as URN namespace identifiers are case-insensitive.
// Errors wrap ErrSyntax and are *SyntaxError.
func FromURN(urn string) (Key, error) {
	rest, ok := TrimURN(urn)
	if !ok {
		return "", &SyntaxError{Input: urn, Reason: fmt.Sprintf("missing prefix %q", URNPrefix)}
	}
	return parseKey(urn, rest, len(URNPrefix))
}

// TrimURN removes URNPrefix from s, matched without regard to case, and
// reports whether it was there. It does not check what follows.
func TrimURN(s string) (string, bool) {
	if len(s) < len(URNPrefix) || !strings.EqualFold(s[:len(URNPrefix)], URNPrefix) {
		return s, false
	}
	return s[len(URNPrefix):], true
}

// String returns the 14 digits.
func (k Key) String() string { return string(k) }

// URN returns the FIT-Connect service identifier of the key.
func (k Key) URN() string { return URNPrefix + string(k) }
