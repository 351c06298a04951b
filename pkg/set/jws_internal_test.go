package set

import (
	"encoding/base64"
	"regexp"
	"testing"
)

// TestWordStart checks the first byte wordStart draws the line at
// against base64url: the signatures it lets pass begin with a word
// character, those it sends back with '-' or '_'.
func TestWordStart(t *testing.T) {
	word := regexp.MustCompile(`^\w`)
	for b := range 256 {
		enc := base64.RawURLEncoding.EncodeToString([]byte{byte(b), 0, 0})
		if got, want := wordStart([]byte{byte(b), 0, 0}), word.MatchString(enc); got != want {
			t.Errorf("first byte %#x (%q): wordStart %v, want %v", b, enc[:1], got, want)
		}
	}
	if wordStart(nil) {
		t.Error("an empty signature begins with a word character")
	}
}
