package sealed

import (
	"errors"
	"testing"
)

func TestNext(t *testing.T) {
	tests := []struct {
		from  Status
		event string
		want  Status
		ok    bool
	}{
		{"", EventCreate, Incomplete, true},
		{Incomplete, EventSubmit, Submitted, true},
		{Submitted, EventSubmit, Submitted, true},
		{Submitted, EventNotify, Submitted, true},
		{Submitted, EventForward, Forwarded, true},
		{Forwarded, EventAccept, Accepted, true},
		{Submitted, EventAccept, Accepted, true},
		{Submitted, EventReject, Rejected, true},
		{Rejected, EventAccept, Rejected, false},
		{Accepted, EventReject, Accepted, false},
		{Incomplete, EventAccept, Incomplete, false},
		{Accepted, EventDelete, Deleted, true},
		{Deleted, EventDelete, Deleted, false},
		{Submitted, "bogus", Submitted, false},
	}
	for _, tt := range tests {
		t.Run(string(tt.from)+"/"+tt.event, func(t *testing.T) {
			got, err := Next(tt.from, tt.event)
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrTransition)) {
				t.Fatalf("Next(%q, %q) error = %v, want ok=%v", tt.from, tt.event, err, tt.ok)
			}
			if got != tt.want {
				t.Fatalf("Next(%q, %q) = %q, want %q", tt.from, tt.event, got, tt.want)
			}
		})
	}
}

const (
	sid = "6c89c356-c354-4459-b2fd-8d1260ea835c"
	cid = "9e978e6e-782a-4d11-9c27-edec08e71832"
	did = "961bde9c-98e6-4845-9a94-f0927627be69"
)

func TestDecode(t *testing.T) {
	ok := `{"submissionId":"` + sid + `","caseId":"` + cid + `","destinationId":"` + did + `","service":"urn:de:fim:leika:leistung:99050012000000","ars":"083155003064","attachments":[],"payload":{"encryptedMetadata":"a.b.c.d.e"}}`
	if _, err := Decode([]byte(ok)); err != nil {
		t.Fatalf("Decode(valid) = %v", err)
	}
	bad := map[string]string{
		"not json":      `{`,
		"bad uuid":      `{"submissionId":"x","caseId":"` + cid + `","destinationId":"` + did + `","service":"s","payload":{"encryptedMetadata":"m"}}`,
		"no service":    `{"submissionId":"` + sid + `","caseId":"` + cid + `","destinationId":"` + did + `","payload":{"encryptedMetadata":"m"}}`,
		"both payloads": `{"submissionId":"` + sid + `","caseId":"` + cid + `","destinationId":"` + did + `","service":"s","object":"o","payload":{"encryptedMetadata":"m"}}`,
		"no payload":    `{"submissionId":"` + sid + `","caseId":"` + cid + `","destinationId":"` + did + `","service":"s"}`,
		"bad attach":    `{"submissionId":"` + sid + `","caseId":"` + cid + `","destinationId":"` + did + `","service":"s","attachments":["z"],"object":"o"}`,
	}
	for name, in := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := Decode([]byte(in)); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Decode = %v, want ErrInvalid", err)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"submissionId":"` + sid + `","caseId":"` + cid + `","destinationId":"` + did + `","service":"s","object":"o"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Decode(data)
		if err == nil && s.Service == "" {
			t.Fatal("accepted a message without service")
		}
	})
}
