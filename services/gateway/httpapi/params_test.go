package httpapi

import "testing"

func TestCanonicalUUID(t *testing.T) {
	const want = "2f0b0e1c-8a7e-4d4e-9b1a-6c5d4e3f2a10"
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"2f0b0e1c-8a7e-4d4e-9b1a-6c5d4e3f2a10", true},
		{"2F0B0E1C-8A7E-4D4E-9B1A-6C5D4E3F2A10", true},
		{"2f0b0e1c8a7e4d4e9b1a6c5d4e3f2a10", true}, // minLength 32 in the specs
		{"2F0B0E1C8A7E4D4E9B1A6C5D4E3F2A10", true},
		{"urn:uuid:2f0b0e1c-8a7e-4d4e-9b1a-6c5d4e3f2a10", false},
		{"{2f0b0e1c-8a7e-4d4e-9b1a-6c5d4e3f2a10}", false},
		{"2f0b0e1c8a7e4d4e9b1a6c5d4e3f2a1", false},
		{"2f0b0e1c8a7e4d4e9b1a6c5d4e3f2a1x", false},
		{"2f0b0e1c-8a7e-4d4e-9b1a-6c5d4e3f2a1x", false},
		{"", false},
	} {
		got, ok := CanonicalUUID(tc.in)
		if ok != tc.ok || ok && got != want {
			t.Errorf("CanonicalUUID(%q) = %q, %v; want ok %v", tc.in, got, ok, tc.ok)
		}
	}
}
