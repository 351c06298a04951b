package sealed

import (
	"regexp"
	"testing"

	"github.com/amtsbote/amtsbote/pkg/set"
)

func TestEventJTI(t *testing.T) {
	const other = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
	key := NewJTIKey([]byte("a signing key's private part"))
	// The values stored events carry under this key: a change of the
	// derivation would record events twice.
	tests := []struct {
		name, sid, uri, want string
	}{
		{"create", sid, set.CreateSubmission, "e4b9306c-c7a4-52bc-88f3-5d2174114300"},
		{"submit", sid, set.SubmitSubmission, "67c86686-740b-5d9a-a98f-d005cc6ad4bd"},
		{"reject", sid, set.RejectSubmission, "5dde0d06-bcd3-5b9e-939e-7851db97f995"},
	}
	v5 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := key.EventJTI(tt.sid, tt.uri)
			if got != tt.want {
				t.Errorf("EventJTI(%q, %q) = %s, want %s", tt.sid, tt.uri, got, tt.want)
			}
			if !v5.MatchString(got) {
				t.Errorf("%s is not a version 5 UUID", got)
			}
			if again := key.EventJTI(tt.sid, tt.uri); again != got {
				t.Errorf("second derivation %s, first %s", again, got)
			}
			if o := key.EventJTI(other, tt.uri); o == got {
				t.Errorf("submission %s got the jti of %s", other, tt.sid)
			}
			if o := NewJTIKey([]byte("another key")).EventJTI(tt.sid, tt.uri); o == got {
				t.Errorf("another key derived the same jti %s", got)
			}
		})
	}
}

func TestJTIClaimKey(t *testing.T) {
	k := JTIClaimKey("anything a receiver sends, even ../* or spaces")
	if !regexp.MustCompile(`^jti\.[0-9a-f]{64}$`).MatchString(k) {
		t.Errorf("claim key %q is not a valid state key", k)
	}
	if JTIClaimKey("a") == JTIClaimKey("b") {
		t.Error("two jtis share a claim key")
	}
}
