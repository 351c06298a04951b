package routing

import (
	"testing"

	"github.com/amtsbote/amtsbote/pkg/leika"
)

func FuzzServiceID(f *testing.F) {
	for _, s := range []string{svcA, leika.URNPrefix + svcA, "URN:DE:FIM:LEIKA:LEISTUNG:" + svcA, "urn:de:example:service:1",
		"urn:x:", "9900100100000", "Abfallgebühr", leika.URNPrefix} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ServiceID(s)
		if err != nil {
			return
		}
		again, err := ServiceID(id)
		if err != nil || again != id {
			t.Fatalf("ServiceID(%q) = %q, but ServiceID(%q) = %q, %v", s, id, id, again, err)
		}
		if _, err := leika.ParseKey(id); err != nil && !urnPattern.MatchString(id) {
			t.Fatalf("ServiceID(%q) = %q, neither key nor URN", s, id)
		}
	})
}
