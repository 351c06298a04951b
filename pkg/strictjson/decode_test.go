package strictjson

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"
)

type serviceType struct {
	Name       string `json:"name"`
	Identifier string `json:"identifier"`
}

type attachment struct {
	Name string `json:"name"`
	N    int8   `json:"n"`
}

type meta struct {
	Kind string `json:"kind"`
}

// body is a request body with the shapes the HTTP APIs use.
type body struct {
	meta
	DestinationID        string             `json:"destinationId"`
	AnnouncedAttachments *[]string          `json:"announcedAttachments"`
	ServiceType          *serviceType       `json:"serviceType"`
	List                 []attachment       `json:"list"`
	Pair                 [2]uint8           `json:"pair"`
	Labels               map[string]string  `json:"labels"`
	ByNumber             map[int]attachment `json:"byNumber"`
	Raw                  json.RawMessage    `json:"raw"`
	Any                  any                `json:"any"`
	Ratio                float32            `json:"ratio"`
	Count                uint16             `json:"count,omitempty"`
	Quoted               int                `json:"quoted,string"`
	Num                  json.Number        `json:"num"`
	Bytes                []byte             `json:"bytes"`
	When                 *time.Time         `json:"when"`
	OK                   bool               `json:"ok"`
	Ignored              string             `json:"-"`
	private              string
}

func newBody() any { return new(body) }

// flat is a body Decode fills from the members it checked.
type flat struct {
	Metadata *string         `json:"encryptedMetadata"`
	Data     *string         `json:"encryptedData"`
	Name     string          `json:"name"`
	Kind     label           `json:"kind"`
	Tags     json.RawMessage `json:"tags"`
	List     []string        `json:"list"`
	Payload  *leaf           `json:"payload"`
	Inline   leaf            `json:"inline"`
}

// leaf is a struct field of flat.
type leaf struct {
	Metadata string          `json:"encryptedMetadata"`
	Data     *string         `json:"encryptedData"`
	More     json.RawMessage `json:"more"`
	List     []string        `json:"list"`
}

type label string

func TestDecodeFlat(t *testing.T) {
	if infoFor(reflect.TypeFor[*flat]()).flat == nil {
		t.Fatal("flat is not decoded as a flat struct")
	}
	if infoFor(reflect.TypeFor[*body]()).flat != nil {
		t.Fatal("body is decoded as a flat struct")
	}
	// Without nulls and escapes the JSON engine is not needed.
	ti := infoFor(reflect.TypeFor[*flat]())
	s := newScanner([]byte(`{"encryptedMetadata":"m","list":["a"],"tags":{"a":1},"payload":{"encryptedMetadata":"p","list":[]},"inline":{"more":[1]}}`), Options{})
	s.members, s.flat = make(map[string]json.RawMessage), ti.flat
	if err := s.document(ti); err != nil || !canSetFlat(ti.flat, s.members, s.nested) || len(s.nested) != 2 {
		t.Errorf("the scan of a flat body: %v, members %q, nested %q", err, s.members, s.nested)
	}
	for _, doc := range []string{
		`{"encryptedMetadata":"eyJhbGciOiJSU0EtT0FFUC0yNTYifQ..a.b.c","encryptedData":"x.y.z","name":"Gewerbe","kind":"k"}`,
		`{"encryptedMetadata":"a","other":{"x":[1,2]},"name":"ü €"}`,
		`{"encryptedMetadata":"a\u0041","name":"b"}`,
		`{"encryptedMetadata":null,"name":"b"}`,
		`{"name":"\"quoted\""}`,
		`{}`,
		` { "kind" : "spaced" } `,
		`{"tags": { "a" : [1, 2.5e3, "\u00fc"] } ,"name":"x"}`,
		`{"tags":"plain","list":[ "a" , "b,c" ,"[d]"],"payload":{"encryptedMetadata":"m","more":{"x":[]}},"inline":{"list":[]}}`,
		`{"tags":null}`,
		`{"list":null}`,
		`{"list":[]}`,
		`{"list":["a\"b"]}`,
		`{"payload":null,"inline":{}}`,
		`{"payload":{},"inline":{"encryptedData":"d","other":{"list":["x"]}}}`,
		`{"payload":{"encryptedMetadata":"a\/b"}}`,
		`{"payload":{"list":["a"],"more":null}}`,
	} {
		for _, preset := range []bool{false, true} {
			var got, want flat
			if preset {
				a, b := "before", "before"
				got.Metadata, want.Metadata = &a, &b
				got.Tags, want.Tags = json.RawMessage(`[0,1,2,3,4,5,6,7,8,9]`), json.RawMessage(`[0,1,2,3,4,5,6,7,8,9]`)
				got.List, want.List = []string{"x", "y", "z"}, []string{"x", "y", "z"}
				got.Payload, want.Payload = &leaf{Metadata: "before"}, &leaf{Metadata: "before"}
			}
			if err := Decode([]byte(doc), &got, Options{}); err != nil {
				t.Fatalf("Decode(%s): %v", doc, err)
			}
			if err := json.Unmarshal([]byte(doc), &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Decode(%s) = %+v; json.Unmarshal gives %+v", doc, got, want)
			}
		}
	}
	for doc, kind := range map[string]error{
		`{"encryptedMetadata":1}`:                ErrType,
		`{"EncryptedMetadata":"a"}`:              ErrCaseMismatch,
		`{"name":"a","name":"b"}`:                ErrDuplicateKey,
		`{"name":"a","other":"b"}`:               nil,
		`{"name":"a"`:                            ErrSyntax,
		"{\"name\":\"\xff\"}":                    ErrInvalidUTF8,
		`{"encryptedMetadata":"a","extra":true}`: nil,
	} {
		var got flat
		err := Decode([]byte(doc), &got, Options{})
		if !errors.Is(err, kind) || (kind == nil) != (err == nil) {
			t.Errorf("Decode(%s) = %v; want %v", doc, err, kind)
		}
	}
	var strict flat
	if err := Decode([]byte(`{"name":"a","other":"b"}`), &strict, Options{DisallowUnknown: true}); !errors.Is(err, ErrUnknownMember) || strict.Name != "" {
		t.Errorf("Decode with DisallowUnknown = %v, %+v; want ErrUnknownMember and nothing set", err, strict)
	}
}

func TestDecodeRefuses(t *testing.T) {
	manyMembers := func(dup string) string {
		var b strings.Builder
		b.WriteString(`{"labels":{`)
		for i := range 40 {
			fmt.Fprintf(&b, `"k%d":"v",`, i)
		}
		b.WriteString(`"` + dup + `":"again"}}`)
		return b.String()
	}
	nested := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }

	tests := []struct {
		name   string
		target func() any
		strict bool
		depth  int
		in     string
		kind   error
		path   string
	}{
		{name: "duplicate at the top", in: `{"destinationId":"a","destinationId":"b"}`, kind: ErrDuplicateKey, path: "destinationId"},
		{name: "duplicate in a nested object", in: `{"serviceType":{"name":"a","identifier":"x","name":"b"}}`, kind: ErrDuplicateKey, path: "serviceType.name"},
		{name: "duplicate in an array element", in: `{"list":[{"name":"a"},{"name":"a","name":"b"}]}`, kind: ErrDuplicateKey, path: "list[1].name"},
		{name: "duplicate unknown member", in: `{"extra":1,"extra":1}`, kind: ErrDuplicateKey, path: "extra"},
		{name: "duplicate inside a RawMessage", in: `{"raw":{"a":[{"b":1,"b":2}]}}`, kind: ErrDuplicateKey, path: "raw.a[0].b"},
		{name: "duplicate inside an interface", in: `{"any":[{"x":1,"x":1}]}`, kind: ErrDuplicateKey, path: "any[0].x"},
		{name: "duplicate in a map", in: `{"labels":{"a":"1","a":"2"}}`, kind: ErrDuplicateKey, path: "labels.a"},
		{name: "duplicate in a large map", in: manyMembers("k7"), kind: ErrDuplicateKey, path: "labels.k7"},
		{name: "duplicate integer key", in: `{"byNumber":{"1":{},"01":{}}}`, kind: ErrDuplicateKey, path: "byNumber.01"},
		{name: "duplicate through an escape", in: `{"destinationId":"a","destinationI\u0064":"b"}`, kind: ErrDuplicateKey, path: "destinationId"},
		{name: "duplicate embedded member", in: `{"kind":"a","kind":"b"}`, kind: ErrDuplicateKey, path: "kind"},
		{name: "duplicate in a map target", target: func() any { return new(map[string]int) }, in: `{"a":1,"a":2}`, kind: ErrDuplicateKey, path: "a"},
		{name: "duplicate in an interface target", target: func() any { return new(any) }, in: `[[{"a":1,"a":2}]]`, kind: ErrDuplicateKey, path: "[0][0].a"},
		{name: "duplicate in a RawMessage target", target: func() any { return new(json.RawMessage) }, in: `{"a":1,"a":2}`, kind: ErrDuplicateKey, path: "a"},
		{name: "duplicate with an odd name", in: `{"labels":{"a.b":"1","a.b":"2"}}`, kind: ErrDuplicateKey, path: `labels["a.b"]`},

		{name: "invalid UTF-8 at the top", in: "{\"destinationId\":\"a\xffb\"}", kind: ErrInvalidUTF8, path: "destinationId"},
		{name: "invalid UTF-8 nested", in: "{\"serviceType\":{\"name\":\"\xc3(\"}}", kind: ErrInvalidUTF8, path: "serviceType.name"},
		{name: "invalid UTF-8 in an array", in: "{\"announcedAttachments\":[\"ok\",\"\xe2\x82\"]}", kind: ErrInvalidUTF8, path: "announcedAttachments[1]"},
		{name: "invalid UTF-8 in a member name", in: "{\"serviceType\":{\"n\xffame\":\"x\"}}", kind: ErrInvalidUTF8, path: "serviceType"},
		{name: "invalid UTF-8 inside a RawMessage", in: "{\"raw\":[\"\xff\"]}", kind: ErrInvalidUTF8, path: "raw[0]"},
		{name: "UTF-8 encoded surrogate", in: "{\"destinationId\":\"\xed\xa0\x80\"}", kind: ErrInvalidUTF8, path: "destinationId"},
		{name: "overlong UTF-8", in: "{\"destinationId\":\"\xc0\xaf\"}", kind: ErrInvalidUTF8, path: "destinationId"},
		{name: "lone high surrogate", in: `{"destinationId":"\ud800"}`, kind: ErrInvalidUTF8, path: "destinationId"},
		{name: "lone low surrogate", in: `{"announcedAttachments":["\udc00"]}`, kind: ErrInvalidUTF8, path: "announcedAttachments[0]"},
		{name: "high surrogate before a letter", in: `{"destinationId":"\ud800\u0041"}`, kind: ErrInvalidUTF8, path: "destinationId"},
		{name: "two high surrogates", in: `{"destinationId":"\ud800\ud800\udc00"}`, kind: ErrInvalidUTF8, path: "destinationId"},
		{name: "lone surrogate in a member name", in: `{"labels":{"\udfff":"x"}}`, kind: ErrInvalidUTF8, path: "labels"},

		{name: "case differs at the top", in: `{"DESTINATIONID":"x"}`, kind: ErrCaseMismatch, path: "DESTINATIONID"},
		{name: "case differs after the right name", in: `{"destinationId":"a","DestinationId":"b"}`, kind: ErrCaseMismatch, path: "DestinationId"},
		{name: "case differs nested", in: `{"serviceType":{"Name":"x"}}`, kind: ErrCaseMismatch, path: "serviceType.Name"},
		{name: "case differs in an array element", in: `{"list":[{"name":"a"},{"NAME":"b"}]}`, kind: ErrCaseMismatch, path: "list[1].NAME"},
		{name: "case differs in a map value", in: `{"byNumber":{"3":{"nAme":"b"}}}`, kind: ErrCaseMismatch, path: "byNumber.3.nAme"},
		{name: "case differs in an embedded member", in: `{"Kind":"x"}`, kind: ErrCaseMismatch, path: "Kind"},
		{name: "Kelvin sign for k", in: `{"\u212aind":"x"}`, kind: ErrCaseMismatch, path: "\u212aind"},
		{name: "case differs in strict mode", strict: true, in: `{"destinationid":"x"}`, kind: ErrCaseMismatch, path: "destinationid"},

		{name: "unknown member", strict: true, in: `{"destinationId":"a","extra":1}`, kind: ErrUnknownMember, path: "extra"},
		{name: "unknown nested member", strict: true, in: `{"serviceType":{"name":"a","description":"b"}}`, kind: ErrUnknownMember, path: "serviceType.description"},
		{name: "unknown member in an array element", strict: true, in: `{"list":[{"x":1}]}`, kind: ErrUnknownMember, path: "list[0].x"},
		{name: "ignored field is unknown", strict: true, in: `{"Ignored":"x"}`, kind: ErrUnknownMember, path: "Ignored"},
		{name: "unexported field is unknown", strict: true, in: `{"private":"x"}`, kind: ErrUnknownMember, path: "private"},

		{name: "number for a string", in: `{"destinationId":1}`, kind: ErrType, path: "destinationId"},
		{name: "string for a number", in: `{"list":[{"n":"1"}]}`, kind: ErrType, path: "list[0].n"},
		{name: "integer out of range", in: `{"list":[{"n":128}]}`, kind: ErrType, path: "list[0].n"},
		{name: "fraction for an integer", in: `{"count":1.5}`, kind: ErrType, path: "count"},
		{name: "negative for an unsigned", in: `{"count":-1}`, kind: ErrType, path: "count"},
		{name: "float out of range", in: `{"ratio":1e39}`, kind: ErrType, path: "ratio"},
		{name: "number out of float64 range", in: `{"any":{"x":[1e400]}}`, kind: ErrType, path: "any.x[0]"},
		{name: "object for an array", in: `{"announcedAttachments":{}}`, kind: ErrType, path: "announcedAttachments"},
		{name: "array for an object", in: `{"serviceType":[]}`, kind: ErrType, path: "serviceType"},
		{name: "string for a bool", in: `{"ok":"true"}`, kind: ErrType, path: "ok"},
		{name: "bool for a string", in: `{"destinationId":true}`, kind: ErrType, path: "destinationId"},
		{name: "bad integer key", in: `{"byNumber":{"x":{}}}`, kind: ErrType, path: "byNumber.x"},
		{name: "bad json.Number", in: `{"num":"12a"}`, kind: ErrType, path: "num"},
		{name: "bad time", in: `{"when":"yesterday"}`, kind: ErrType, path: "when"},
		{name: "bad base64", in: `{"bytes":"!!"}`, kind: ErrType, path: "bytes"},
		{name: "bad quoted integer", in: `{"quoted":"x"}`, kind: ErrType, path: "quoted"},
		{name: "array at the top", in: `[]`, kind: ErrType, path: ""},
		{name: "null at the top", in: `null`, kind: ErrType, path: ""},
		{name: "string at the top of a map", target: func() any { return new(map[string]any) }, in: `"x"`, kind: ErrType, path: ""},

		{name: "empty", in: ``, kind: ErrSyntax},
		{name: "white space only", in: " \n\t", kind: ErrSyntax},
		{name: "unterminated", in: `{"destinationId":"a"`, kind: ErrSyntax},
		{name: "missing value", in: `{"destinationId":}`, kind: ErrSyntax, path: "destinationId"},
		{name: "missing colon", in: `{"destinationId" "a"}`, kind: ErrSyntax, path: "destinationId"},
		{name: "trailing comma", in: `{"list":[{"n":1},]}`, kind: ErrSyntax, path: "list[1]"},
		{name: "leading zero", in: `{"count":01}`, kind: ErrSyntax, path: "count"},
		{name: "bad literal", in: `{"ok":tru}`, kind: ErrSyntax, path: "ok"},
		{name: "literal runs on", in: `{"ok":truex}`, kind: ErrSyntax, path: "ok"},
		{name: "control character", in: "{\"destinationId\":\"a\nb\"}", kind: ErrSyntax, path: "destinationId"},
		{name: "bad escape", in: `{"destinationId":"\q"}`, kind: ErrSyntax, path: "destinationId"},
		{name: "short unicode escape", in: `{"destinationId":"\u12"}`, kind: ErrSyntax, path: "destinationId"},
		{name: "single quotes", in: `{'a':1}`, kind: ErrSyntax},
		{name: "unquoted name", in: `{a:1}`, kind: ErrSyntax},

		{name: "second value", in: `{} {}`, kind: ErrTrailingData},
		{name: "garbage after", in: `{"destinationId":"a"}x`, kind: ErrTrailingData},

		{name: "deep arrays", target: func() any { return new(any) }, in: nested(100000), kind: ErrTooDeep, path: strings.Repeat("[0]", 64)},
		{name: "deep in a RawMessage", in: `{"raw":` + nested(64) + `}`, kind: ErrTooDeep, path: "raw" + strings.Repeat("[0]", 63)},
		{name: "deeper than asked", depth: 2, in: `{"any":{"a":[1]}}`, kind: ErrTooDeep, path: "any.a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := newBody
			if tt.target != nil {
				target = tt.target
			}
			err := Decode([]byte(tt.in), target(), Options{DisallowUnknown: tt.strict, MaxDepth: tt.depth})
			if !errors.Is(err, tt.kind) {
				t.Fatalf("Decode(%.60q) = %v; want %v", tt.in, err, tt.kind)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Decode(%.60q) = %T; want *Error", tt.in, err)
			}
			if e.Path != tt.path {
				t.Errorf("path = %q; want %q (%v)", e.Path, tt.path, err)
			}
			if e.Offset < 0 || e.Offset > int64(len(tt.in)) {
				t.Errorf("offset %d outside the input of %d bytes", e.Offset, len(tt.in))
			}
		})
	}
}

func TestDecodeAccepts(t *testing.T) {
	full := `{
		"kind": "k", "destinationId": "d-1", "announcedAttachments": ["a", "b"],
		"serviceType": {"name": "Bauantrag \u00fcber \ud83d\ude00", "identifier": "urn:x", "extra": [1, {"y": null}]},
		"list": [{"name": "x", "n": -128}, {"n": 127}],
		"pair": [1, 2, 3, 4],
		"labels": {"A": "1", "a": "2", "": "3", "\ufffd": "\ufffd"},
		"byNumber": {"-7": {"name": "neg"}, "+5": {}},
		"raw": {"any": ["thing", 1e300, {"z": true}]},
		"any": {"n": 1.5e3, "s": "\"\\\/\b\f\n\r\t", "l": [], "o": {}},
		"ratio": 3.4e38, "count": 65535, "quoted": "42", "num": "-0.5e-3",
		"bytes": "aGVsbG8=", "when": "2024-05-01T12:00:00Z", "ok": false,
		"unknown": {"deep": [[[{"DESTINATIONID": 1}]]]}
	}`
	tests := []struct {
		name   string
		target func() any
		in     string
	}{
		{"full body", newBody, full},
		{"nulls", newBody, `{"destinationId":null,"serviceType":null,"list":null,"labels":null,"raw":null,"any":null,"ok":null,"count":null,"when":null}`},
		{"empty object", newBody, ` {} `},
		{"number into json.Number", newBody, `{"num":12e-1}`},
		{"array for bytes", newBody, `{"bytes":[1,2,255]}`},
		{"map target", func() any { return new(map[string]int) }, `{"a":1,"A":2}`},
		{"interface target", func() any { return new(any) }, `[1,"x",{"a":{"A":null}},true]`},
		{"RawMessage target", func() any { return new(json.RawMessage) }, ` {"a":[1,2]} `},
		{"string target", func() any { return new(string) }, `"x"`},
		{"many members", func() any { return new(map[string]int) }, `{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"r":18}`},
		{"nested at the limit", func() any { return new(any) }, strings.Repeat("[", 64) + strings.Repeat("]", 64)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, want := tt.target(), tt.target()
			if err := json.Unmarshal([]byte(tt.in), want); err != nil {
				t.Fatalf("json.Unmarshal: %v", err)
			}
			for _, strict := range []bool{false, true} {
				if strict && strings.Contains(tt.in, "unknown") {
					continue
				}
				if err := Decode([]byte(tt.in), got, Options{DisallowUnknown: strict}); err != nil {
					t.Fatalf("Decode(strict=%v) = %v", strict, err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("Decode(strict=%v) = %+v; json.Unmarshal gives %+v", strict, got, want)
				}
			}
		})
	}
}

// TestDecodeEmbedded checks that members are found as encoding/json
// finds them through embedded structs, tags and name conflicts.
func TestDecodeEmbedded(t *testing.T) {
	type inner struct {
		X int `json:"x"`
		Y int
	}
	type other struct {
		X int `json:"x"`
		Z int `json:"z"`
	}
	type tagged struct {
		Y int `json:"Y"`
	}
	type outer struct {
		inner
		*other
		tagged
		Z int `json:"z"`
	}
	tests := []struct {
		name, in string
		kind     error // with DisallowUnknown
	}{
		// x is in inner and other at the same depth, both tagged: hidden.
		{"ambiguous member is unknown", `{"x":1}`, ErrUnknownMember},
		{"ambiguous member miscased is unknown", `{"X":1}`, ErrUnknownMember},
		// z of outer hides other's z.
		{"shallower member wins", `{"z":1}`, nil},
		// Y of tagged (tagged) beats inner's untagged Y at the same depth.
		{"tagged member wins", `{"Y":2}`, nil},
		{"miscased promoted member", `{"y":2}`, ErrCaseMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got, want outer
			err := Decode([]byte(tt.in), &got, Options{DisallowUnknown: true})
			if !errors.Is(err, tt.kind) || (err == nil) != (tt.kind == nil) {
				t.Fatalf("Decode(%s) = %v; want %v", tt.in, err, tt.kind)
			}
			if tt.kind == ErrUnknownMember {
				if err := Decode([]byte(tt.in), &got, Options{}); err != nil {
					t.Fatalf("Decode(%s) without DisallowUnknown = %v", tt.in, err)
				}
			}
			if tt.kind == nil || tt.kind == ErrUnknownMember {
				if err := json.Unmarshal([]byte(tt.in), &want); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("Decode(%s) = %+v; json.Unmarshal gives %+v", tt.in, got, want)
				}
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{`{"DESTINATIONID":"x"}`, "member DESTINATIONID: no such member; did you mean destinationId?"},
		{`{"serviceType":{"name":"a","name":"b"}}`, "member serviceType.name: duplicate; a member name may appear only once in an object"},
		{`{"announcedAttachments":["a","\ud800"]}`, `member announcedAttachments[1]: the string is not valid UTF-8: lone surrogate \ud800 at byte 30`},
		{`{"list":[{"n":300}]}`, "member list[0].n: must be an integer from -128 to 127, not the number 300"},
		{`[]`, "must be a JSON object, not an array"},
		{`{}]`, "unexpected data after the JSON value at byte 2"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			err := Decode([]byte(tt.in), new(body), Options{})
			if err == nil || err.Error() != tt.want {
				t.Errorf("Decode(%s) = %v; want %s", tt.in, err, tt.want)
			}
		})
	}
}

func TestDecodeInvalidTarget(t *testing.T) {
	for _, v := range []any{nil, body{}, (*body)(nil)} {
		var ie *json.InvalidUnmarshalError
		if err := Decode([]byte(`{}`), v, Options{}); !errors.As(err, &ie) {
			t.Errorf("Decode into %T = %v; want *json.InvalidUnmarshalError", v, err)
		}
	}
}

// TestDecodeRecursive checks a type that holds itself, built on first
// use by goroutines at once.
func TestDecodeRecursive(t *testing.T) {
	type node struct {
		Name     string  `json:"name"`
		Children []*node `json:"children"`
	}
	in := []byte(`{"name":"a","children":[{"name":"b","children":[{"name":"c","NAME":"d"}]}]}`)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = Decode(in, new(node), Options{}) })
	}
	wg.Wait()
	for _, err := range errs {
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, ErrCaseMismatch) || e.Path != "children[0].children[0].NAME" {
			t.Errorf("Decode = %v; want a case mismatch at children[0].children[0].NAME", err)
		}
	}
}

// TestPlain8 checks the eight-byte step against the byte table, with
// each byte value at each place among plain and among other bytes.
func TestPlain8(t *testing.T) {
	for _, fill := range []byte{'A', 0x20, 0x7f, '"', 0x00, 0xff} {
		for pos := range 8 {
			for c := range 256 {
				var w [8]byte
				for i := range w {
					w[i] = fill
				}
				w[pos] = byte(c)
				want := true
				for _, b := range w {
					want = want && plain[b]
				}
				if got := plain8(binary.LittleEndian.Uint64(w[:])); got != want {
					t.Fatalf("plain8(%q) = %v; want %v", w, got, want)
				}
			}
		}
	}
}

// within reports whether s's bytes lie inside data.
func within(s string, data []byte) bool {
	if s == "" {
		return false
	}
	p, lo := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(unsafe.SliceData(data)))
	return p >= lo && p+uintptr(len(s)) <= lo+uintptr(len(data))
}

func TestDecodeShareLong(t *testing.T) {
	long := strings.Repeat("x", ShareLongMin)
	short := strings.Repeat("y", ShareLongMin-1)
	doc := []byte(fmt.Sprintf(`{"encryptedMetadata":%q,"encryptedData":%q,"name":%q,"payload":{"encryptedMetadata":%q}}`, long, short, long, long))
	for _, share := range []bool{false, true} {
		var v flat
		if err := Decode(doc, &v, Options{ShareLong: share}); err != nil {
			t.Fatal(err)
		}
		if *v.Metadata != long || *v.Data != short || v.Name != long || v.Payload.Metadata != long {
			t.Fatalf("share %v: decoded %+v", share, v)
		}
		for name, s := range map[string]string{"encryptedMetadata": *v.Metadata, "name": v.Name, "payload.encryptedMetadata": v.Payload.Metadata} {
			if within(s, doc) != share {
				t.Errorf("share %v: %s in the document: %v", share, name, within(s, doc))
			}
		}
		if within(*v.Data, doc) {
			t.Errorf("share %v: a string shorter than ShareLongMin refers to the document", share)
		}
	}
	// An escape leaves the document to the JSON engine, which copies.
	var v flat
	if err := Decode([]byte(`{"name":"`+long+`\n"}`), &v, Options{ShareLong: true}); err != nil || v.Name != long+"\n" {
		t.Fatalf("escaped: %q, %v", v.Name, err)
	}
}
