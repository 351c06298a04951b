package bus

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"testing"
)

// FuzzCheckedValue: a stored entry either reads as the value its digest
// line names, or is ErrCorrupt; nothing else, and no panic.
func FuzzCheckedValue(f *testing.F) {
	sum := sha256.Sum256([]byte("{}"))
	f.Add([]byte("SHA-256=" + base64.URLEncoding.EncodeToString(sum[:]) + "\n{}"))
	f.Add([]byte("SHA-256=\n"))
	f.Add([]byte("{}"))
	f.Add([]byte("SHA-256=AAAA\n{}"))
	f.Fuzz(func(t *testing.T, entry []byte) {
		value, err := checkedValue(entry)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		sum := sha256.Sum256(value)
		want := "SHA-256=" + base64.URLEncoding.EncodeToString(sum[:]) + "\n"
		if !bytes.Equal(entry, append([]byte(want), value...)) {
			t.Fatalf("%q accepted, but is not its value %q behind its digest", entry, value)
		}
	})
}
