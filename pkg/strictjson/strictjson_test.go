package strictjson

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestObject(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"object", `{"alg":"PS512","kid":"abc"}`, true},
		{"nested", `{"a":{"b":[1,{"c":null}]}}`, true},
		{"duplicate", `{"alg":"PS512","alg":"none"}`, false},
		{"nested duplicate", `{"a":{"b":1,"b":2}}`, false},
		{"array", `[1,2]`, false},
		{"trailing", `{"a":1} {}`, false},
		{"not json", `{"a":`, false},
		{"too deep", strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40), false},
		{"deep enough", strings.Repeat(`{"a":`, 32) + `1` + strings.Repeat(`}`, 32), true},
		{"null", `null`, false},
		{"invalid UTF-8", "{\"kid\":\"\xff\"}", false},
		{"lone surrogate", `{"kid":"\udc00"}`, false},
		{"duplicate by escape", `{"alg":"PS512","\u0061lg":"none"}`, false},
		{"duplicate deep in a value", `{"a":[{"b":1,"b":2}]}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Object([]byte(tt.in))
			if (err == nil) != tt.ok {
				t.Fatalf("Object(%s) = %v, %v; want ok=%v", tt.in, m, err, tt.ok)
			}
		})
	}
}

func TestObjectMembers(t *testing.T) {
	in := []byte(` { "\u0061" : [1, {"b": 2}] , "s":"x\"y", "o":{"a":1}}`)
	m, err := Object(in)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a": `[1, {"b": 2}]`, "s": `"x\"y"`, "o": `{"a":1}`}
	if len(m) != len(want) {
		t.Fatalf("members %v, want %v", m, want)
	}
	for name, v := range want {
		if string(m[name]) != v {
			t.Errorf("member %q = %s, want %s", name, m[name], v)
		}
	}
	// The members are the map's own: the caller may reuse its buffer.
	copy(in, bytes.Repeat([]byte{' '}, len(in)))
	if string(m["o"]) != `{"a":1}` {
		t.Errorf("member o changed with the input: %q", m["o"])
	}
}

func TestString(t *testing.T) {
	m, err := Object([]byte(`{"s":"x","n":1,"z":null,"e":"a\u0062\n","u":"äö€"}`))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"s": "x", "e": "ab\n", "u": "äö€"} {
		if s, ok, err := String(m, name); s != want || !ok || err != nil {
			t.Errorf("String(%q) = %q, %v, %v; want %q", name, s, ok, err, want)
		}
	}
	if _, ok, err := String(m, "missing"); ok || err != nil {
		t.Errorf(`String("missing") = %v, %v`, ok, err)
	}
	for _, name := range []string{"n", "z"} {
		if _, ok, err := String(m, name); !ok || err == nil {
			t.Errorf("String(%q) = %v, %v; want present and an error", name, ok, err)
		}
	}
}

func FuzzObject(f *testing.F) {
	for _, s := range []string{`{"alg":"PS512"}`, `{"a":{"a":1}}`, `{"a":1,"a":2}`, `[]`, `{`, `{ "\u0061" : "x\ty" , "b":[{}]}`, `{"k":"äö"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Object(data)
		if err != nil {
			return
		}
		if m == nil {
			t.Fatal("nil map without error")
		}
		// What Object takes, encoding/json reads alike, member by member.
		var want map[string]json.RawMessage
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatalf("Object took %q, encoding/json refuses: %v", data, err)
		}
		if len(m) != len(want) {
			t.Fatalf("%q: %d members, encoding/json %d", data, len(m), len(want))
		}
		for name, raw := range want {
			if !bytes.Equal(m[name], raw) {
				t.Fatalf("%q: member %q = %q, encoding/json %q", data, name, m[name], raw)
			}
			var ws string
			wantErr := bytes.Equal(raw, []byte("null")) || json.Unmarshal(raw, &ws) != nil
			s, _, err := String(m, name)
			if (err != nil) != wantErr || err == nil && s != ws {
				t.Fatalf("%q: String(%q) = %q, %v; encoding/json %q", data, name, s, err, ws)
			}
		}
	})
}
