// Package strictjson decodes untrusted JSON, refusing what encoding/json
// lets pass: invalid UTF-8 (which it would store as U+FFFD), duplicate
// member names (it keeps the last), member names that match a field only
// when case is ignored (it takes "DESTINATIONID" for "destinationId"),
// deep nesting and trailing data. A refusal is an *Error that names the
// member at fault.
//
// Decode checks the bytes against the target type in one pass, then has
// encoding/json's semantics decode them (a flat struct of strings, string
// lists, raw values and structs of those, such as a submission's body or
// message, it fills from the members it checked), so what it accepts
// decodes exactly as encoding/json decodes it.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"unsafe"

	jsonv1 "github.com/go-json-experiment/json/v1"
)

// DefaultMaxDepth is the nesting Decode allows when Options.MaxDepth is 0.
const DefaultMaxDepth = 64

// maxMaxDepth is encoding/json's own bound on nesting.
const maxMaxDepth = 10000

// Options adjust Decode.
type Options struct {
	// DisallowUnknown refuses members that the target's structs do not
	// declare. Without it they are ignored, as FIT-Connect allows; a
	// member that differs from a declared one only in case is refused
	// either way.
	DisallowUnknown bool
	// MaxDepth bounds the nesting of objects and arrays; the top level
	// is 1. Zero means DefaultMaxDepth; at most 10000 counts.
	MaxDepth int
	// ShareLong lets strings of ShareLongMin bytes and more that Decode
	// sets from its checking scan refer to data instead of a copy: data
	// must then stay unchanged for as long as v's strings are in use.
	// Shorter strings are copied, so that a small value kept does not
	// keep all of data alive.
	ShareLong bool
}

// ShareLongMin is the length from which Options.ShareLong shares a
// string: a JWE of a submission's metadata or data, not an id.
const ShareLongMin = 4096

// Decode decodes the single JSON value in data into v, which must be a
// non-nil pointer, as json.Unmarshal would, after refusing:
//   - invalid UTF-8 in strings and member names, also as escaped lone
//     surrogates (ErrInvalidUTF8);
//   - a member name twice in one object, anywhere, also inside
//     json.RawMessage and interface values (ErrDuplicateKey);
//   - a member name that matches a struct field of v's type only when
//     case is ignored (ErrCaseMismatch);
//   - with DisallowUnknown, a member that no struct field names
//     (ErrUnknownMember);
//   - values that do not fit their field, numbers out of range
//     (ErrType); a top level other than an object when v points to a
//     struct or map (ErrType);
//   - nesting beyond MaxDepth (ErrTooDeep), anything after the value
//     (ErrTrailingData), and what is not JSON (ErrSyntax).
//
// Every refusal is an *Error. Member names are matched by v's static
// types: a value decoded into an interface holding a pointer is checked
// as an interface{} value, and the values of types with UnmarshalJSON or
// UnmarshalText (json.RawMessage, time.Time) for syntax, UTF-8, depth and
// duplicates only; what their methods refuse is ErrType at their path.
// On error, v may have been partly written.
func Decode(data []byte, v any, opts Options) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return &json.InvalidUnmarshalError{Type: reflect.TypeOf(v)}
	}
	ti := infoFor(rv.Type())
	s := newScanner(data, opts)
	flat := ti.flat != nil && rv.Elem().Kind() == reflect.Struct
	if flat {
		s.members, s.flat = make(map[string]json.RawMessage, len(ti.flat)), ti.flat
	}
	if err := s.document(ti); err != nil {
		return err
	}
	if flat && canSetFlat(ti.flat, s.members, s.nested) {
		setFlat(rv.Elem(), ti.flat, s.members, s.nested, opts.ShareLong)
		return nil
	}
	// encoding/json's semantics on the v2 engine (the mirror of Go's
	// encoding/json/v2) read long strings, such as a submission's JWEs,
	// several times faster. Where it refuses, encoding/json decides and
	// words the refusal, from v as it was.
	before := reflect.New(rv.Elem().Type()).Elem()
	before.Set(rv.Elem())
	if jsonv1.Unmarshal(data, v) == nil {
		return nil
	}
	rv.Elem().Set(before)
	if err := json.Unmarshal(data, v); err != nil {
		return explain(data, ti, opts, err)
	}
	return nil
}

func newScanner(data []byte, opts Options) scanner {
	depth := opts.MaxDepth
	switch {
	case depth <= 0:
		depth = DefaultMaxDepth
	case depth > maxMaxDepth:
		depth = maxMaxDepth
	}
	return scanner{data: data, maxDepth: depth, strict: opts.DisallowUnknown}
}

// explain turns an error of encoding/json on a document that the scanner
// accepted into an *Error, finding the value at fault by decoding each
// value the scanner could not check on its own.
func explain(data []byte, ti *typeInfo, opts Options, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &Error{Offset: se.Offset, Reason: "invalid JSON: " + trimJSON(err), Kind: ErrSyntax, Err: err}
	}
	s := newScanner(data, opts)
	s.probe = true
	if perr := s.document(ti); perr != nil {
		return perr
	}
	e := &Error{Reason: trimJSON(err), Kind: ErrType, Err: err}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		e.Path, e.Offset = te.Field, te.Offset
		e.Reason = "cannot take JSON " + te.Value + " as " + te.Type.String()
	}
	return e
}

// Object decodes a JSON object into its members. It refuses what Decode
// refuses, with nesting bounded at 32: with two "alg" members, two
// parsers could read two different headers from the same bytes.
func Object(data []byte) (map[string]json.RawMessage, error) {
	s := newScanner(bytes.Clone(data), Options{MaxDepth: 32})
	s.members = make(map[string]json.RawMessage)
	if err := s.document(objectInfo); err != nil {
		return nil, err
	}
	return s.members, nil
}

// objectInfo describes what Object decodes into.
var objectInfo = infoFor(reflect.TypeFor[*map[string]json.RawMessage]())

// String reads member name of m, as Object returned it, as a string;
// present reports whether it exists.
func String(m map[string]json.RawMessage, name string) (s string, present bool, err error) {
	raw, ok := m[name]
	if !ok {
		return "", false, nil
	}
	if s, ok := plainString(raw); ok {
		return s, true, nil
	}
	if bytes.Equal(bytes.TrimSpace(raw), null) || json.Unmarshal(raw, &s) != nil {
		return "", true, errors.New("must be a string")
	}
	return s, true, nil
}

// canSetFlat reports whether setFlat can fill a flat struct from members
// (and the members of its struct fields' objects, nested) as encoding/json
// would: not when a member is null or a string holds an escape, which are
// left to the JSON engine.
func canSetFlat(fields map[string]flatField, members map[string]json.RawMessage, nested map[string]map[string]json.RawMessage) bool {
	for name, raw := range members {
		f, ok := fields[name]
		if !ok {
			continue // unknown, and allowed, or the scanner had refused it
		}
		if bytes.Equal(raw, null) {
			return false
		}
		switch f.kind {
		case flatString, flatStringPtr:
			if !isPlain(raw) {
				return false
			}
		case flatStrings:
			if bytes.IndexByte(raw, '\\') >= 0 {
				return false
			}
		case flatStruct, flatStructPtr:
			if !canSetFlat(f.inner, nested[name], nil) {
				return false
			}
		}
	}
	return true
}

var null = []byte("null")

// setFlat fills the flat struct v as canSetFlat allowed.
func setFlat(v reflect.Value, fields map[string]flatField, members map[string]json.RawMessage, nested map[string]map[string]json.RawMessage, share bool) {
	for name, raw := range members {
		f, ok := fields[name]
		if !ok {
			continue
		}
		fv := v.Field(f.index)
		if f.kind == flatStringPtr || f.kind == flatStructPtr {
			// encoding/json writes through a pointer already set.
			if fv.IsNil() {
				fv.Set(reflect.New(fv.Type().Elem()))
			}
			fv = fv.Elem()
		}
		switch f.kind {
		case flatString, flatStringPtr:
			if b := raw[1 : len(raw)-1]; share && len(b) >= ShareLongMin {
				fv.SetString(unsafe.String(unsafe.SliceData(b), len(b)))
			} else {
				fv.SetString(string(b))
			}
		case flatRaw:
			// As json.RawMessage's UnmarshalJSON: a copy, into what was there.
			fv.SetBytes(append(fv.Bytes()[:0], raw...))
		case flatStrings:
			fv.Set(reflect.ValueOf(plainStrings(raw, fv.Interface().([]string))))
		case flatStruct, flatStructPtr:
			setFlat(fv, f.inner, nested[name], nil, share)
		}
	}
}

// plainStrings returns the strings of raw, a checked array of strings
// without escapes, in dst's array as encoding/json reuses it; an empty
// array is an empty slice, not nil.
func plainStrings(raw []byte, dst []string) []string {
	dst = dst[:0]
	for i := 0; i < len(raw); i++ {
		if raw[i] != '"' {
			continue
		}
		end := i + 1 + bytes.IndexByte(raw[i+1:], '"')
		dst = append(dst, string(raw[i+1:end]))
		i = end
	}
	if dst == nil {
		dst = []string{}
	}
	return dst
}

// plainString returns what the JSON string raw holds when it has no
// escapes, as most members of headers and claims have, without
// encoding/json's unquoting: Object checked the rest.
func plainString(raw []byte) (string, bool) {
	if !isPlain(raw) {
		return "", false
	}
	return string(raw[1 : len(raw)-1]), true
}

// isPlain reports whether raw is a JSON string without escapes.
func isPlain(raw []byte) bool {
	return len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' && bytes.IndexByte(raw[1:len(raw)-1], '\\') < 0
}
