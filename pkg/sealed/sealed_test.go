package sealed

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/pkg/set"
)

func TestApply(t *testing.T) {
	at := time.Date(2026, 5, 4, 3, 2, 1, 0, time.UTC)
	picked := at.Add(-time.Hour)
	tests := []struct {
		from    Progress
		event   string
		want    Status
		changed bool
		ok      bool
	}{
		{Progress{}, set.CreateSubmission, Incomplete, true, true},
		{Progress{Status: Incomplete}, set.CreateSubmission, Incomplete, false, true},
		{Progress{Status: Incomplete}, set.SubmitSubmission, Submitted, true, true},
		{Progress{Status: Submitted, SubmittedAt: &at}, set.SubmitSubmission, Submitted, false, true},
		{Progress{Status: Submitted}, set.NotifySubmission, Submitted, true, true},
		{Progress{Status: Submitted, PickedUpAt: &picked}, set.NotifySubmission, Submitted, false, true},
		{Progress{Status: Submitted}, set.ForwardSubmission, Forwarded, true, true},
		{Progress{Status: Forwarded}, set.AcceptSubmission, Accepted, true, true},
		{Progress{Status: Submitted}, set.AcceptSubmission, Accepted, true, true},
		{Progress{Status: Submitted}, set.RejectSubmission, Rejected, true, true},
		{Progress{Status: Rejected}, set.AcceptSubmission, Rejected, false, false},
		{Progress{Status: Accepted}, set.RejectSubmission, Accepted, false, false},
		{Progress{Status: Incomplete}, set.AcceptSubmission, Incomplete, false, false},
		{Progress{}, set.SubmitSubmission, "", false, false},
		{Progress{Status: Accepted}, set.DeleteSubmission, Deleted, true, true},
		{Progress{Status: Incomplete}, set.DeleteSubmission, Deleted, true, true},
		{Progress{Status: Deleted}, set.DeleteSubmission, Deleted, false, false},
		{Progress{Status: Submitted}, set.EventBase + "bogus", Submitted, false, false},
	}
	for _, tt := range tests {
		t.Run(string(tt.from.Status)+"/"+set.Name(tt.event), func(t *testing.T) {
			p := tt.from
			changed, err := p.Apply(tt.event, at)
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrTransition)) {
				t.Fatalf("Apply(%q) from %q: error = %v, want ok=%v", tt.event, tt.from.Status, err, tt.ok)
			}
			if p.Status != tt.want || changed != tt.changed {
				t.Fatalf("Apply(%q) from %q = %q, changed %v; want %q, changed %v", tt.event, tt.from.Status, p.Status, changed, tt.want, tt.changed)
			}
			if err != nil && p != tt.from {
				t.Fatalf("a refused event changed the progress: %+v", p)
			}
		})
	}
}

func TestApplyStamps(t *testing.T) {
	t1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t2 := t1.Add(time.Hour)
	var p Progress
	for _, e := range []struct {
		uri string
		at  time.Time
	}{
		{set.CreateSubmission, t1}, {set.SubmitSubmission, t1}, {set.SubmitSubmission, t2},
		{set.NotifySubmission, t1}, {set.NotifySubmission, t2}, {set.AcceptSubmission, t2}, {set.DeleteSubmission, t2},
	} {
		if _, err := p.Apply(e.uri, e.at); err != nil {
			t.Fatalf("Apply(%s): %v", set.Name(e.uri), err)
		}
	}
	if !p.SubmittedAt.Equal(t1) || !p.PickedUpAt.Equal(t1) || !p.DeletedAt.Equal(t2) || p.Status != Deleted {
		t.Fatalf("progress %+v: the first submit and notify stamp, delete stamps, status deleted", p)
	}
}

func TestDeliverable(t *testing.T) {
	now := time.Now()
	for _, tt := range []struct {
		p                    Progress
		routed               bool
		deliverable, fetched bool
	}{
		{Progress{Status: Submitted}, true, true, true},
		{Progress{Status: Forwarded}, true, false, true},
		{Progress{Status: Submitted}, false, false, false},
		{Progress{Status: Accepted}, true, false, false},
		{Progress{Status: Rejected}, true, false, false},
		{Progress{Status: Incomplete}, false, false, false},
		{Progress{Status: Submitted, DeletedAt: &now}, true, false, false},
		{Progress{Status: Forwarded, DeletedAt: &now}, true, false, false},
	} {
		if err := tt.p.Deliverable(tt.routed); (err == nil) != tt.deliverable {
			t.Errorf("%+v routed=%v: Deliverable = %v, want ok=%v", tt.p, tt.routed, err, tt.deliverable)
		}
		if err := tt.p.Fetchable(tt.routed); (err == nil) != tt.fetched {
			t.Errorf("%+v routed=%v: Fetchable = %v, want ok=%v", tt.p, tt.routed, err, tt.fetched)
		}
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

// FuzzDecode checks that what Decode accepts has a service and decodes as
// encoding/json decodes it.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"submissionId":"` + sid + `","caseId":"` + cid + `","destinationId":"` + did + `","service":"s","object":"o"}`))
	f.Add([]byte(`{}`))
	f.Add(message(Payload{EncryptedMetadata: "a.b.c.d.e", EncryptedData: "f.g.h.i.j"}, `["`+sid+`"]`, `{"metadata":"x"}`))
	f.Add([]byte(`{"submissionId":"` + sid + `","caseId":"` + cid + `","destinationId":"` + did + `","service":"s","attachments":null,"payload":{"encryptedMetadata":"a\u002eb"},"authenticationTags":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Decode(data)
		if err != nil {
			return
		}
		if s.Service == "" {
			t.Fatal("accepted a message without service")
		}
		var want Submission
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatalf("Decode accepted what encoding/json refuses: %v", err)
		}
		if !reflect.DeepEqual(s, want) {
			t.Fatalf("Decode = %+v; encoding/json gives %+v", s, want)
		}
	})
}

// message is an INGRESS body with payload p, and attachments and tags as
// JSON.
func message(p Payload, attachments, tags string) []byte {
	return []byte(`{"submissionId":"` + sid + `","caseId":"` + cid + `","destinationId":"` + did +
		`","service":"urn:de:fim:leika:leistung:99050012000000","ars":"083155003064","attachments":` + attachments +
		`,"payload":` + string(p.Encode()) + `,"authenticationTags":` + tags + `}`)
}

// TestDecodeAsEncodingJSON holds Decode to encoding/json on a message as
// the gateway writes it.
func TestDecodeAsEncodingJSON(t *testing.T) {
	in := message(Payload{EncryptedMetadata: "a.b.c.d.e", EncryptedData: strings.Repeat("QUJD-_.", 3000)}, `["`+sid+`", "`+cid+`"]`, `{ "metadata": "x" }`)
	got, err := Decode(in)
	if err != nil {
		t.Fatal(err)
	}
	var want Submission
	if err := json.Unmarshal(in, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Decode = %+v; encoding/json gives %+v", got, want)
	}
	if _, err := Decode(bytes.Replace(in, []byte(`"service"`), []byte(`"Service"`), 1)); !errors.Is(err, ErrInvalid) {
		t.Errorf("Decode of a miscased member = %v, want ErrInvalid", err)
	}
}

// BenchmarkDecode reads an INGRESS message with 16 KiB of data sealed
// inline, as the router does for every submission.
func BenchmarkDecode(b *testing.B) {
	data := message(Payload{EncryptedMetadata: strings.Repeat("eyJhbGciOiJSU0EtT0FFUC0yNTYifQ.", 100), EncryptedData: strings.Repeat("QUJD-_", 3700)}, `[]`, `{"metadata":"x","data":"y"}`)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}

// TestEncode checks that Encode and Payload.Encode say what encoding/json
// says, for compact JWEs and for strings that need escaping.
func TestEncode(t *testing.T) {
	payloads := []Payload{
		{EncryptedMetadata: "eyJhbGciOiJSU0EtT0FFUC0yNTYifQ.a-b_c.ZGF0YQ.x.y"},
		{EncryptedMetadata: "a.b.c.d.e", EncryptedData: strings.Repeat("QUJD-_.", 3000)},
		{EncryptedMetadata: `<script>"\` + "\u2028\x00\xff", EncryptedData: "a.b.c.d.e"},
		{EncryptedMetadata: "abcdefg.", EncryptedData: "abcdefgh&"},
	}
	for i, p := range payloads {
		want, _ := json.Marshal(p)
		if got := p.Encode(); !bytes.Equal(got, want) {
			t.Fatalf("payload %d: Encode = %q, encoding/json %q", i, got, want)
		}
		s := Submission{SubmissionID: sid, CaseID: cid, DestinationID: did, Service: "s", ARS: "083155003064",
			Attachments: []string{}, Payload: &p, AuthenticationTags: json.RawMessage(`{"metadata":"m"}`)}
		got, err := s.Encode()
		if err != nil {
			t.Fatal(err)
		}
		std, _ := json.Marshal(s)
		var a, b map[string]any
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatalf("payload %d: Encode gave invalid JSON %q: %v", i, got, err)
		}
		_ = json.Unmarshal(std, &b)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("payload %d: Encode = %s, encoding/json %s", i, got, std)
		}
	}
	s := Submission{SubmissionID: sid, CaseID: cid, DestinationID: did, Service: "s", Object: "o"}
	got, _ := s.Encode()
	if want, _ := json.Marshal(s); !bytes.Equal(got, want) {
		t.Fatalf("without payload: Encode = %s, encoding/json %s", got, want)
	}
}

func FuzzPayloadEncode(f *testing.F) {
	f.Add("a.b.c.d.e", "")
	f.Add("abcdefgh.ijk", "<>&\"\\\x7f\u2028")
	f.Fuzz(func(t *testing.T, meta, data string) {
		p := Payload{EncryptedMetadata: meta, EncryptedData: data}
		want, _ := json.Marshal(p)
		if got := p.Encode(); !bytes.Equal(got, want) {
			t.Fatalf("Encode = %q, encoding/json %q", got, want)
		}
	})
}
