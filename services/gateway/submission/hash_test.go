package submission

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"strings"
	"testing"
)

// TestSubmitHashStable pins the hash of a submit's content: the permanent
// records of earlier submits hold it, so a retry must hash the same.
func TestSubmitHashStable(t *testing.T) {
	meta, data := "a.b.c.d.e", strings.Repeat("QUJD.", 2000)
	want := func(parts ...string) []byte {
		var b []byte
		for _, p := range parts {
			b = binary.BigEndian.AppendUint64(b, uint64(len(p)))
			b = append(b, p...)
		}
		sum := sha256.Sum256(b)
		return sum[:]
	}
	if got := (submitInput{EncryptedMetadata: &meta, EncryptedData: &data}).hash(); !bytes.Equal(got, want(meta, data)) {
		t.Fatalf("hash with data = %x, want %x", got, want(meta, data))
	}
	if got := (submitInput{EncryptedMetadata: &meta}).hash(); !bytes.Equal(got, want(meta, "")) {
		t.Fatalf("hash without data = %x, want %x", got, want(meta, ""))
	}
}
