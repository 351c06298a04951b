package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecode checks Decode against encoding/json: what Decode accepts
// json.Unmarshal decodes to the same value; input with a duplicate
// member or invalid UTF-8 is refused; and input that json.Unmarshal
// decodes and that has none of the faults Decode looks for is accepted.
// The seeds are in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	// Bodies of the flat struct's shape, which Decode fills itself.
	f.Add([]byte(`{"encryptedMetadata":"m","encryptedData":"d","name":"n","kind":"k","tags":{"a":[1,"x"]},"list":["a","b"],"payload":{"encryptedMetadata":"p","encryptedData":"q","more":[{}],"list":[]},"inline":{"list":["c"]}}`))
	f.Add([]byte(`{"payload":{},"inline":{"encryptedMetadata":"a\u0041","more":null},"list":[ "x" ,"y\n"]}`))
	names := memberNames()
	f.Fuzz(func(t *testing.T, data []byte) {
		in := inspect(data)

		var got body
		lenient := Decode(data, &got, Options{})
		checkError(t, data, lenient)
		if lenient == nil {
			var want body
			if err := json.Unmarshal(data, &want); err != nil {
				t.Fatalf("Decode accepted what json.Unmarshal refuses: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Decode = %+v; json.Unmarshal gives %+v", got, want)
			}
		}
		if (in.duplicate || !utf8.Valid(data)) && lenient == nil {
			t.Fatalf("Decode accepted a duplicate member or invalid UTF-8")
		}
		if lenient != nil && in.clean() && !in.nameLike(names) && !bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
			var want body
			if json.Unmarshal(data, &want) == nil && !sameIntKeys(data, want) {
				// Two names of one integer key, like "1" and "01".
				if !errors.Is(lenient, ErrDuplicateKey) {
					t.Fatalf("Decode = %v; want ErrDuplicateKey", lenient)
				}
			} else if json.Unmarshal(data, &want) == nil {
				t.Fatalf("Decode refused a body json.Unmarshal takes without fault: %v", lenient)
			}
		}

		var strict body
		err := Decode(data, &strict, Options{DisallowUnknown: true})
		checkError(t, data, err)
		if err == nil && lenient != nil {
			t.Fatalf("Decode accepted with DisallowUnknown what it refuses without: %v", lenient)
		}

		// A flat struct is filled from the checked members, not by the
		// JSON engine: over a value set before too, as encoding/json
		// writes through pointers already set.
		for _, preset := range []bool{false, true} {
			var flatGot, flatWant flat
			if preset {
				a, b := "a", "a"
				flatGot.Metadata, flatWant.Metadata = &a, &b
				flatGot.Tags, flatWant.Tags = json.RawMessage(`{"x":1}`), json.RawMessage(`{"x":1}`)
				flatGot.List, flatWant.List = []string{"a", "b"}, []string{"a", "b"}
				flatGot.Payload, flatWant.Payload = &leaf{Metadata: "m", List: []string{"l"}}, &leaf{Metadata: "m", List: []string{"l"}}
			}
			err := Decode(data, &flatGot, Options{})
			checkError(t, data, err)
			if err == nil {
				if err := json.Unmarshal(data, &flatWant); err != nil {
					t.Fatalf("Decode into a flat struct accepted what json.Unmarshal refuses: %v", err)
				}
				if !reflect.DeepEqual(flatGot, flatWant) {
					t.Fatalf("Decode into a flat struct = %+v; json.Unmarshal gives %+v", flatGot, flatWant)
				}
			}
		}

		var anyGot any
		err = Decode(data, &anyGot, Options{})
		checkError(t, data, err)
		var anyWant any
		jsonErr := json.Unmarshal(data, &anyWant)
		switch {
		case err == nil && jsonErr != nil:
			t.Fatalf("Decode into any accepted what json.Unmarshal refuses: %v", jsonErr)
		case err == nil && !reflect.DeepEqual(anyGot, anyWant):
			t.Fatalf("Decode into any = %#v; json.Unmarshal gives %#v", anyGot, anyWant)
		case err != nil && jsonErr == nil && in.clean():
			t.Fatalf("Decode into any refused a value json.Unmarshal takes without fault: %v", err)
		}
	})
}

// checkError fails unless err is nil or an *Error of a known kind.
func checkError(t *testing.T, data []byte, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Decode = %T %v; want *Error", err, err)
	}
	kinds := []error{ErrSyntax, ErrInvalidUTF8, ErrDuplicateKey, ErrCaseMismatch, ErrUnknownMember, ErrType, ErrTrailingData, ErrTooDeep}
	known := false
	for _, k := range kinds {
		known = known || e.Kind == k
	}
	if !known || e.Reason == "" || e.Offset < 0 || e.Offset > int64(len(data)) {
		t.Fatalf("Decode = %#v", e)
	}
}

// findings are what encoding/json's tokenizer shows of a document,
// independent of the scanner under test.
type findings struct {
	tokens    bool // the tokenizer read one whole value
	duplicate bool // some object names a member twice
	replaced  bool // some string holds U+FFFD, maybe for invalid input
	deep      bool // nested beyond DefaultMaxDepth
	names     []string
}

func (f findings) clean() bool { return f.tokens && !f.duplicate && !f.replaced && !f.deep }

// nameLike reports whether a member name equals one of names when case
// is ignored but not exactly; Decode refuses those where they matter.
func (f findings) nameLike(names []string) bool {
	for _, n := range f.names {
		for _, m := range names {
			if n != m && strings.EqualFold(n, m) {
				return true
			}
		}
	}
	return false
}

func inspect(data []byte) findings {
	var f findings
	dec := json.NewDecoder(bytes.NewReader(data))
	var walk func(level int) bool
	walk = func(level int) bool {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		switch tok := tok.(type) {
		case string:
			f.replaced = f.replaced || strings.ContainsRune(tok, utf8.RuneError)
		case json.Delim:
			if level > DefaultMaxDepth {
				f.deep = true
				return false
			}
			seen := map[string]bool{}
			for dec.More() {
				if tok == '{' {
					name, err := dec.Token()
					if err != nil {
						return false
					}
					n := name.(string)
					f.duplicate = f.duplicate || seen[n]
					f.replaced = f.replaced || strings.ContainsRune(n, utf8.RuneError)
					f.names = append(f.names, n)
					seen[n] = true
				}
				if !walk(level + 1) {
					return false
				}
			}
			if _, err := dec.Token(); err != nil {
				return false
			}
		}
		return true
	}
	f.tokens = walk(1)
	return f
}

// memberNames lists the member names of body and the structs in it.
func memberNames() []string {
	var names []string
	for _, t := range []reflect.Type{reflect.TypeFor[body](), reflect.TypeFor[serviceType](), reflect.TypeFor[attachment]()} {
		for _, f := range typeFields(t) {
			names = append(names, f.name)
		}
	}
	return names
}

// sameIntKeys reports whether b.ByNumber has a key for each member of
// the byNumber object in data.
func sameIntKeys(data []byte, b body) bool {
	var raw struct {
		ByNumber map[string]json.RawMessage `json:"byNumber"`
	}
	if json.Unmarshal(data, &raw) != nil {
		return true
	}
	return len(raw.ByNumber) == len(b.ByNumber)
}
