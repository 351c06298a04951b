package bus_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/amtsbote/amtsbote/pkg/bus"
)

const (
	destID  = "9f0c4e2a-5b1d-4c3e-8f7a-2d6b1e0c9a44"
	caseID  = "1b3d5f7a-9c2e-4a6b-8d0f-1e3c5a7b9d2f"
	leika   = "99001001000000"
	freiARS = "083110000000" // Freiburg im Breisgau
)

func TestIngressSubject(t *testing.T) {
	tests := []struct {
		name, ars, leika, want string
		wantErr                string
	}{
		{name: "gemeinde", ars: freiARS, leika: leika, want: "ab.ingress.08.08311.083110000000.99001001000000"},
		{name: "kreis padded", ars: "08311", leika: leika, want: "ab.ingress.08.08311.083110000000.99001001000000"},
		{name: "land padded", ars: "08", leika: leika, want: "ab.ingress.08.08000.080000000000.99001001000000"},
		{name: "bund", ars: "", leika: leika, want: "ab.ingress.00.00000.000000000000.99001001000000"},
		{name: "ars letter", ars: "08311000000a", leika: leika, wantErr: `ARS "08311000000a": byte 12 is 'a', want a digit`},
		{name: "ars dot", ars: "08.11", leika: leika, wantErr: `byte 3 is '.', want a digit`},
		{name: "ars wildcard", ars: "08>", leika: leika, wantErr: `byte 3 is '>', want a digit`},
		{name: "ars space", ars: "08 ", leika: leika, wantErr: `byte 3 is ' ', want a digit`},
		{name: "ars length", ars: "0831100", leika: leika, wantErr: "7 digits, want 0, 2, 3, 5, 9 or 12"},
		{name: "ars land 17", ars: "170000000000", leika: leika, wantErr: "Land 17 does not exist"},
		{name: "ars land 00", ars: "00", leika: leika, wantErr: "Land 00 does not exist"},
		{name: "leika short", ars: freiARS, leika: "9900100100000", wantErr: `LeiKa key "9900100100000": 13 characters, want 14 digits`},
		{name: "leika urn", ars: freiARS, leika: "urn:de:fim:leika:leistung:99001001000000", wantErr: "a URN, want the 14-digit key alone"},
		{name: "leika star", ars: freiARS, leika: "9900100100000*", wantErr: `byte 14 is '*', want a digit`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := bus.IngressSubject(tt.ars, tt.leika)
			checkSubject(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func TestInboxSubject(t *testing.T) {
	tests := []struct {
		name, ars, id, want string
		wantErr             string
	}{
		{name: "gemeinde", ars: freiARS, id: destID, want: "ab.inbox.08.08311.083110000000." + destID},
		{name: "upper-case id", ars: freiARS, id: strings.ToUpper(destID), want: "ab.inbox.08.08311.083110000000." + destID},
		{name: "land", ars: "08", id: destID, want: "ab.inbox.08.08000.080000000000." + destID},
		{name: "regierungsbezirk", ars: "083", id: destID, want: "ab.inbox.08.08300.083000000000." + destID},
		{name: "kreis", ars: "08311", id: destID, want: "ab.inbox.08.08311.083110000000." + destID},
		{name: "gemeindeverband", ars: "083155001", id: destID, want: "ab.inbox.08.08315.083155001000." + destID},
		{name: "berlin", ars: "11", id: destID, want: "ab.inbox.11.11000.110000000000." + destID},
		{name: "bund", ars: "", id: destID, want: "ab.inbox.00.00000.000000000000." + destID},
		{name: "DE prefix", ars: "DE08", id: destID, wantErr: `home ARS "DE08": byte 1 is 'D', want a digit`},
		{name: "id not uuid", ars: freiARS, id: "not-a-uuid-not-a-uuid-not-a-uuid-xxx", wantErr: `destination id "not-a-uuid-not-a-uuid-not-a-uuid-xxx": not a UUID`},
		{name: "id with dot", ars: freiARS, id: "9f0c4e2a.5b1d-4c3e-8f7a-2d6b1e0c9a44", wantErr: "not a UUID"},
		{name: "id without hyphens", ars: freiARS, id: strings.ReplaceAll(destID, "-", ""), wantErr: "32 characters, want a 36-character UUID"},
		{name: "id wildcard", ars: freiARS, id: ">", wantErr: "1 characters, want a 36-character UUID"},
		{name: "id urn", ars: freiARS, id: "urn:uuid:" + destID, wantErr: "45 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := bus.InboxSubject(tt.ars, tt.id)
			checkSubject(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func TestInboxFilter(t *testing.T) {
	tests := []struct {
		name, prefix, want, wantErr string
	}{
		{name: "all", prefix: "", want: "ab.inbox.>"},
		{name: "land", prefix: "08", want: "ab.inbox.08.>"},
		{name: "kreis", prefix: "08311", want: "ab.inbox.08.08311.>"},
		{name: "gemeinde", prefix: freiARS, want: "ab.inbox.08.08311.083110000000.*"},
		{name: "regierungsbezirk", prefix: "083", wantErr: "3 digits is no subject token boundary"},
		{name: "gemeindeverband", prefix: "083155001", wantErr: "9 digits is no subject token boundary"},
		{name: "wildcard", prefix: "0*", wantErr: `byte 2 is '*', want a digit`},
		{name: "bad land", prefix: "99", wantErr: "Land 99 does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := bus.InboxFilter(tt.prefix)
			checkSubject(t, got, err, tt.want, tt.wantErr)
		})
	}
}

// TestInboxFilterMatches checks which destinations a filter reaches,
// including the padded subjects of higher-level destinations.
func TestInboxFilterMatches(t *testing.T) {
	subject := func(ars string) string {
		s, err := bus.InboxSubject(ars, destID)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	filter := func(prefix string) string {
		f, err := bus.InboxFilter(prefix)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	destFilter, err := bus.InboxDestinationFilter(destID)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, filter, subject string
		want                  bool
	}{
		{"land filter, gemeinde", filter("08"), subject(freiARS), true},
		{"land filter, land destination", filter("08"), subject("08"), true},
		{"land filter, other land", filter("09"), subject(freiARS), false},
		{"kreis filter, gemeinde", filter("08311"), subject(freiARS), true},
		{"kreis filter, kreis destination", filter("08311"), subject("08311"), true},
		{"kreis filter, land destination", filter("08311"), subject("08"), false},
		{"kreis filter, other kreis", filter("08315"), subject(freiARS), false},
		{"gemeinde filter", filter(freiARS), subject(freiARS), true},
		{"destination filter", destFilter, subject("08"), true},
		{"all", filter(""), subject(""), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := subjectMatches(tt.filter, tt.subject); got != tt.want {
				t.Errorf("%s matches %s = %v, want %v", tt.filter, tt.subject, got, tt.want)
			}
		})
	}
}

// subjectMatches applies NATS wildcard rules.
func subjectMatches(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || tok != "*" && tok != s[i] {
			return false
		}
	}
	return len(f) == len(s)
}

func TestEventsAndDeadSubject(t *testing.T) {
	tests := []struct {
		name    string
		f       func(string) (string, error)
		in      string
		want    string
		wantErr string
	}{
		{"events", bus.EventsSubject, caseID, "ab.events." + caseID, ""},
		{"events bad id", bus.EventsSubject, "case-1", "", `case id "case-1": 6 characters`},
		{"events wildcard", bus.EventsSubject, "*", "", "want a 36-character UUID"},
		{"dead", bus.DeadSubject, "unroutable", "ab.dead.unroutable", ""},
		{"dead underscore", bus.DeadSubject, "max_deliver-2", "ab.dead.max_deliver-2", ""},
		{"dead empty", bus.DeadSubject, "", "", `reason "": empty`},
		{"dead dot", bus.DeadSubject, "a.b", "", `byte 2 is '.'`},
		{"dead space", bus.DeadSubject, "a b", "", `byte 2 is ' '`},
		{"dead gt", bus.DeadSubject, ">", "", `byte 1 is '>'`},
		{"dead long", bus.DeadSubject, strings.Repeat("x", 65), "", "65 characters, want at most 64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.f(tt.in)
			checkSubject(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func TestParseSubjects(t *testing.T) {
	in, _ := bus.IngressSubject("08311", leika)
	ia, err := bus.ParseIngressSubject(in)
	if err != nil || ia.ARS != freiARS || ia.LeikaKey != leika {
		t.Fatalf("ParseIngressSubject(%s) = %+v, %v", in, ia, err)
	}
	inbox, _ := bus.InboxSubject("", destID)
	ba, err := bus.ParseInboxSubject(inbox)
	if err != nil || ba.HomeARS != "000000000000" || ba.DestinationID != destID {
		t.Fatalf("ParseInboxSubject(%s) = %+v, %v", inbox, ba, err)
	}

	bad := []struct {
		name, subject, wantErr string
	}{
		{"other stream", "ab.events." + caseID, "does not start with ab.inbox."},
		{"too few tokens", "ab.inbox.08.08311." + destID, "has 3 tokens after ab.inbox, want 4"},
		{"kreis disagrees", "ab.inbox.08.08315.083110000000." + destID, `Kreis "08315" do not match ARS 083110000000`},
		{"land disagrees", "ab.inbox.09.08311.083110000000." + destID, `Land "09"`},
		{"upper-case id", "ab.inbox.08.08311.083110000000." + strings.ToUpper(destID), "not lower case"},
		{"short ars", "ab.inbox.08.08311.0831100." + destID, "7 characters, want 12 digits"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := bus.ParseInboxSubject(tt.subject)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseInboxSubject(%s) error = %v, want it to contain %q", tt.subject, err, tt.wantErr)
			}
			if !errors.Is(err, bus.ErrInvalidSubject) && !errors.Is(err, bus.ErrInvalidToken) {
				t.Errorf("error %v is neither ErrInvalidSubject nor ErrInvalidToken", err)
			}
		})
	}
	if _, err := bus.ParseIngressSubject("ab.ingress.08.08311.083110000000.123"); !errors.Is(err, bus.ErrInvalidToken) {
		t.Errorf("short LeiKa key: error %v, want ErrInvalidToken", err)
	}
}

func checkSubject(t *testing.T, got string, err error, want, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil {
			t.Fatalf("got %q, want error containing %q", got, wantErr)
		}
		if !errors.Is(err, bus.ErrInvalidToken) {
			t.Errorf("error %v does not wrap ErrInvalidToken", err)
		}
		if !strings.Contains(err.Error(), wantErr) {
			t.Errorf("error %q does not contain %q", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
