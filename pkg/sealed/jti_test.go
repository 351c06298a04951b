package sealed

import (
	"regexp"
	"testing"

	"github.com/amtsbote/amtsbote/pkg/set"
)

func TestEventJTI(t *testing.T) {
	const other = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
	// The values stored events carry: a change of the derivation would
	// record events twice.
	tests := []struct {
		name, sid, uri, want string
	}{
		{"create", sid, set.CreateSubmission, "65605f96-6c4f-5875-ab9d-b3d284c0fc8d"},
		{"submit", sid, set.SubmitSubmission, "56a4c226-4ff2-5396-bf78-56d499d182bc"},
		{"reject", sid, set.RejectSubmission, "b3769653-0884-5761-a495-aeecc9941291"},
	}
	v5 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := EventJTI(tt.sid, tt.uri)
			if got != tt.want {
				t.Errorf("EventJTI(%q, %q) = %s, want %s", tt.sid, tt.uri, got, tt.want)
			}
			if !v5.MatchString(got) {
				t.Errorf("%s is not a version 5 UUID", got)
			}
			if again := EventJTI(tt.sid, tt.uri); again != got {
				t.Errorf("second derivation %s, first %s", again, got)
			}
			if o := EventJTI(other, tt.uri); o == got {
				t.Errorf("submission %s got the jti of %s", other, tt.sid)
			}
		})
	}
}
