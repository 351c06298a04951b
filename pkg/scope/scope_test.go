package scope_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/amtsbote/amtsbote/pkg/scope"
)

const destID = "6c89c356-c354-4459-b2fd-8d1260ea835c"

func TestValidateScope(t *testing.T) {
	tests := []struct {
		scope string
		ok    bool
	}{
		{"send:region:DE", true},
		{"send:region:DE08", true},
		{"send:region:DE083", true},
		{"send:region:DE08311", true},
		{"send:region:DE083110000", true},
		{"send:region:DE083110000001", true},
		{"send:region:DE08+send:service:urn:de:fim:leika:leistung:99108008000000", true},
		{"subscribe:destination:" + destID, true},
		{"manage:destination:" + destID, true},
		{"create:destination", true},
		{"amtsbote:admin", true},
		{"send:region:DE0", false},
		{"send:region:DE0831", false},
		{"send:region:08", false},
		{"send:region:DEXX", false},
		{"send:region:DE08+send:service:not-a-urn", false},
		{"send:region:DE08+subscribe:destination:" + destID, false},
		{"subscribe:destination:freiburg", false},
		{"manage:destination:{" + destID + "}", false},
		{"openid", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.scope, func(t *testing.T) {
			err := scope.Validate(tt.scope)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidateScope(%q) = %v, want ok=%v", tt.scope, err, tt.ok)
			}
			if err != nil && !errors.Is(err, scope.ErrInvalid) {
				t.Errorf("error %v does not wrap ErrScope", err)
			}
		})
	}
}

func TestScopes(t *testing.T) {
	s := scope.Parse([]string{
		"openid", // another system's scope, ignored
		"send:region:DE08311",
		"send:region:DE09+send:service:urn:de:fim:leika:leistung:99108008000000",
		"subscribe:destination:" + destID,
		"manage:destination:2F59B8C6-3206-4734-AA21-A7B2A4D92F7A",
	})
	tests := []struct {
		name string
		got  bool
		want bool
	}{
		{"sends in its own kreis", s.CanSend([]string{"DE08311"}, "urn:x:y"), true},
		{"sends to a gemeinde in its kreis", s.CanSend([]string{"DE083110000001"}, "urn:x:y"), true},
		{"does not send to the land", s.CanSend([]string{"DE08"}, "urn:x:y"), false},
		{"looks up the land", s.CanLookUp([]string{"DE08"}, "urn:x:y"), true},
		{"looks up the bund", s.CanLookUp([]string{"DE"}, "urn:x:y"), true},
		{"does not look up a sibling kreis", s.CanLookUp([]string{"DE08312"}, "urn:x:y"), false},
		{"one region of several suffices", s.CanSend([]string{"DE07", "DE08311"}, "urn:x:y"), true},
		{"narrowed grant, its service", s.CanSend([]string{"DE09162"}, "urn:de:fim:leika:leistung:99108008000000"), true},
		{"narrowed grant, another service", s.CanSend([]string{"DE09162"}, "urn:de:fim:leika:leistung:99050012104000"), false},
		{"narrowed grant, no service named", s.CanSend([]string{"DE09162"}, ""), false},
		{"no regions", s.CanSend(nil, "urn:x:y"), false},
		{"subscribes its destination", s.CanSubscribe(destID), true},
		{"subscribe is not manage", s.CanManage(destID), false},
		{"manage matches case-insensitively", s.CanManage("2f59b8c6-3206-4734-aa21-a7b2a4d92f7a"), true},
		{"not admin", s.IsAdmin(), false},
		{"has the literal scope", s.Has("send:region:DE08311"), true},
		{"ignored scope is absent", s.Has("openid"), false},
		{"admin", scope.Parse([]string{"amtsbote:admin"}).IsAdmin(), true},
		{"zero value allows nothing", scope.Set{}.CanLookUp([]string{"DE"}, ""), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
	if l := s.List(); len(l) != 4 {
		t.Errorf("List() = %v", l)
	}
}

func FuzzValidateScope(f *testing.F) {
	f.Add("send:region:DE08+send:service:urn:de:fim:leika:leistung:99108008000000")
	f.Add("subscribe:destination:" + destID)
	f.Add("amtsbote:admin")
	f.Fuzz(func(t *testing.T, s string) {
		err := scope.Validate(s)
		sc := scope.Parse([]string{s})
		if (err == nil) != sc.Has(s) {
			t.Fatalf("ValidateScope(%q) = %v but ParseScopes keeps it: %v", s, err, sc.Has(s))
		}
	})
}

func TestCovers(t *testing.T) {
	const urn = "urn:de:fim:leika:leistung:99108008000000"
	granted := []string{"send:region:DE08", "send:region:DE09+send:service:" + urn, "subscribe:destination:" + destID}
	for _, tt := range []struct {
		scope string
		want  bool
	}{
		{"send:region:DE08", true},
		{"send:region:DE08311", true},
		{"send:region:DE08311+send:service:" + urn, true},
		{"send:region:DE", false},
		{"send:region:DE07", false},
		{"send:region:DE09", false},
		{"send:region:DE09162+send:service:" + urn, true},
		{"send:region:DE09162+send:service:urn:de:fim:leika:leistung:99050012000000", false},
		{"subscribe:destination:" + destID, true},
		{"manage:destination:" + destID, false},
		{"send:region:DE08x", false},
	} {
		if got := scope.Covers(granted, tt.scope); got != tt.want {
			t.Errorf("Covers(%q) = %t, want %t", tt.scope, got, tt.want)
		}
	}
}

func TestDestinationOf(t *testing.T) {
	const id = destID
	for _, tt := range []struct {
		scope string
		want  string
		ok    bool
	}{
		{"subscribe:destination:" + id, id, true},
		{"manage:destination:" + strings.ToUpper(id), id, true},
		{"subscribe:destination:not-a-uuid", "", false},
		{"send:region:DE08", "", false},
		{"create:destination", "", false},
		{"amtsbote:admin", "", false},
	} {
		if got, ok := scope.DestinationOf(tt.scope); got != tt.want || ok != tt.ok {
			t.Errorf("DestinationOf(%q) = %q, %v; want %q, %v", tt.scope, got, ok, tt.want, tt.ok)
		}
	}
}
