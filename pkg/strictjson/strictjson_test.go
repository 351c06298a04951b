package strictjson

import (
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

func TestString(t *testing.T) {
	m, err := Object([]byte(`{"s":"x","n":1,"z":null}`))
	if err != nil {
		t.Fatal(err)
	}
	if s, ok, err := String(m, "s"); s != "x" || !ok || err != nil {
		t.Errorf(`String("s") = %q, %v, %v`, s, ok, err)
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
	for _, s := range []string{`{"alg":"PS512"}`, `{"a":{"a":1}}`, `{"a":1,"a":2}`, `[]`, `{`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Object(data)
		if err == nil && m == nil {
			t.Fatal("nil map without error")
		}
	})
}
