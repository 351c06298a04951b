package gateway_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/gateway"
)

// submissionView is FIT-Connect's Submission as the tests read it.
type submissionView struct {
	DestinationID     string   `json:"destinationId"`
	SubmissionID      string   `json:"submissionId"`
	CaseID            string   `json:"caseId"`
	Attachments       []string `json:"attachments"`
	ServiceType       struct{ Name, Identifier string }
	EncryptedMetadata string `json:"encryptedMetadata"`
	EncryptedData     string `json:"encryptedData"`
}

// TestSubmissionLifecycle runs one submission through HTTP: create with a
// region, upload two attachments, submit; the INGRESS message and the
// object store hold what was sent; after routing the receiver lists,
// fetches, downloads, decrypts and accepts; the event log holds
// Amtsbote's create-, submit- and notify-submission, verifiable with the
// JWKS key, and the receiver's accept-submission.
func TestSubmissionLifecycle(t *testing.T) {
	for _, b := range flowtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f := newFlowEnv(t, b.Open(t))
			ctx := context.Background()
			d := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
			sender := f.token("send:region:DE08")
			receiver := f.token("subscribe:destination:" + d.ID)
			const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

			s := sealedSubmission{dest: d, attachments: map[string]string{}}
			s.order = []string{newUUID(t), newUUID(t)}
			s.attachments[s.order[0]] = seal(t, []byte("Grundriss.pdf"), d.EncryptionKID)
			s.attachments[s.order[1]] = seal(t, bytes.Repeat([]byte("Lageplan "), 40000), d.EncryptionKID)
			body := createBody(d, s.order...)
			body["region"] = "DE083110000000"
			s.created = f.create(t, sender, body, "traceparent", traceparent)
			if s.DestinationID != d.ID || s.SubmissionID == "" || s.CaseID == "" {
				t.Fatalf("created %+v", s.created)
			}
			for _, aid := range s.order {
				f.upload(t, sender, s.SubmissionID, aid, s.attachments[aid]).want(t, http.StatusNoContent)
			}
			metadata := []byte(`{"contentStructure":{"attachments":[]}}`)
			data := []byte(`{"antragsteller":"Erika Mustermann"}`)
			s.metadata = seal(t, metadata, d.EncryptionKID)
			s.data = seal(t, data, d.EncryptionKID)
			r := f.callJSON(t, http.MethodPut, "/v1/submissions/"+s.SubmissionID, sender, s.submitBody(), "traceparent", traceparent)
			accepted := decodeReply[submissionView](t, r, http.StatusAccepted)
			if accepted.SubmissionID != s.SubmissionID || !slices.Equal(accepted.Attachments, s.order) || accepted.ServiceType.Identifier != serviceA {
				t.Errorf("submit answered %s", r.body)
			}

			// One INGRESS message, filed under the applicant's place and the LeiKa key.
			msgs := flowtest.Messages(t, f.bus, bus.StreamIngress, "")
			if len(msgs) != 1 {
				t.Fatalf("INGRESS holds %d messages, want 1", len(msgs))
			}
			m := msgs[0]
			wantSubject, _ := bus.IngressSubject("083110000000", "99108008000000")
			if m.Subject != wantSubject || m.Header.Get("Nats-Msg-Id") != s.SubmissionID {
				t.Errorf("INGRESS message on %s with Nats-Msg-Id %q", m.Subject, m.Header.Get("Nats-Msg-Id"))
			}
			ev, err := bus.EventFromHeaders(m.Header, m.Data)
			must(t, err)
			if ev.Type() != sealed.TypeSubmitted || ev.ID() != s.SubmissionID || ev.Extensions()[bus.ExtensionTraceparent] != traceparent {
				t.Errorf("INGRESS cloudevent %s", ev)
			}
			msg, err := sealed.Decode(m.Data)
			must(t, err)
			if msg.Payload == nil || msg.Payload.EncryptedMetadata != s.metadata || msg.Payload.EncryptedData != s.data || msg.Object != "" {
				t.Errorf("INGRESS payload %+v object %q, want the JWEs inline", msg.Payload, msg.Object)
			}
			if msg.DestinationID != d.ID || msg.CaseID != s.CaseID || msg.ARS != "083110000000" || msg.Region != "DE083110000000" ||
				!slices.Equal(msg.Attachments, s.order) || msg.Service != serviceA {
				t.Errorf("INGRESS message %+v", msg)
			}
			var msgTags set.AuthenticationTags
			must(t, json.Unmarshal(msg.AuthenticationTags, &msgTags))
			if !msgTags.Equal(s.tags()) {
				t.Errorf("INGRESS tags %+v, want %+v", msgTags, s.tags())
			}
			for _, aid := range s.order {
				if got := f.object(t, sealed.AttachmentObject(s.SubmissionID, aid)); got != s.attachments[aid] {
					t.Errorf("object store holds %d bytes for %s, want the %d uploaded", len(got), aid, len(s.attachments[aid]))
				}
			}
			var stored sealed.Payload
			raw, err := f.bus.GetCheckedState(context.Background(), sealed.PayloadKey(s.SubmissionID))
			must(t, err)
			must(t, json.Unmarshal(raw, &stored))
			if stored.EncryptedMetadata != s.metadata || stored.EncryptedData != s.data {
				t.Error("the stored payload differs from the submit")
			}

			// Not routed yet: nothing to pick up.
			list := decodeReply[pickupList](t, f.call(t, http.MethodGet, "/v1/submissions?destinationId="+d.ID, receiver, "", nil), http.StatusOK)
			if list.TotalCount != 0 {
				t.Errorf("pickup list before routing: %+v", list)
			}
			f.route(t, s.SubmissionID)
			list = decodeReply[pickupList](t, f.call(t, http.MethodGet, "/v1/submissions?destinationId="+d.ID+"&limit=10", receiver, "", nil), http.StatusOK)
			if list.TotalCount != 1 || list.Count != 1 || list.Submissions[0].SubmissionID != s.SubmissionID || list.Submissions[0].CaseID != s.CaseID {
				t.Errorf("pickup list after routing: %+v", list)
			}

			got := decodeReply[submissionView](t, f.call(t, http.MethodGet, "/v1/submissions/"+s.SubmissionID, receiver, "", nil), http.StatusOK)
			if got.EncryptedMetadata != s.metadata || got.EncryptedData != s.data || !slices.Equal(got.Attachments, s.order) {
				t.Fatalf("fetched %+v", got)
			}
			if !bytes.Equal(unseal(t, got.EncryptedMetadata), metadata) || !bytes.Equal(unseal(t, got.EncryptedData), data) {
				t.Error("fetched JWEs do not decrypt to what was sealed")
			}
			for _, aid := range got.Attachments {
				r := f.call(t, http.MethodGet, "/v1/submissions/"+s.SubmissionID+"/attachments/"+aid, receiver, "", nil)
				r.want(t, http.StatusOK)
				if ct := r.header.Get("Content-Type"); ct != "application/jose" || string(r.body) != s.attachments[aid] {
					t.Errorf("attachment %s: %s, %d bytes", aid, ct, len(r.body))
				}
				unseal(t, string(r.body))
			}
			// Fetched, it stays listed until it is answered: a receiver
			// whose fetch failed on its side fetches it again.
			list = decodeReply[pickupList](t, f.call(t, http.MethodGet, "/v1/submissions", receiver, "", nil), http.StatusOK)
			if list.TotalCount != 1 || list.Count != 1 || list.Submissions[0].SubmissionID != s.SubmissionID {
				t.Errorf("pickup list after the fetch: %+v", list)
			}
			refetched := decodeReply[submissionView](t, f.call(t, http.MethodGet, "/v1/submissions/"+s.SubmissionID, receiver, "", nil), http.StatusOK)
			if refetched.EncryptedMetadata != s.metadata || refetched.EncryptedData != s.data {
				t.Errorf("second fetch %+v", refetched)
			}

			accept := f.receiverSET(t, set.AcceptSubmission, s, set.AcceptPayload{AuthenticationTags: s.tags()}, nil)
			f.postEvent(t, receiver, s.CaseID, accept).want(t, http.StatusNoContent)
			// The ledger projects the accept: then it leaves the list.
			f.waitStatus(t, s.SubmissionID, sealed.Accepted)
			list = decodeReply[pickupList](t, f.call(t, http.MethodGet, "/v1/submissions", receiver, "", nil), http.StatusOK)
			if list.TotalCount != 0 || list.Count != 0 {
				t.Errorf("pickup list after the accept: %+v", list)
			}
			log := f.waitEvents(t, sender, s.CaseID, "create-submission", "submit-submission", "notify-submission", "accept-submission")
			f.verifyLog(t, log.EventLog, s)
			if r := decodeReply[eventLogBody](t, f.call(t, http.MethodGet, "/v1/cases/"+s.CaseID+"/events?limit=2&offset=1", receiver, "", nil), http.StatusOK); r.Count != 2 || r.TotalCount != 4 || r.Offset != 1 {
				t.Errorf("paged event log %+v", r)
			}
			sub, err := f.st.Submission(ctx, s.SubmissionID)
			must(t, err)
			if sub.Status != sealed.Accepted || sub.PickedUpAt == nil || sub.SubmittedAt == nil {
				t.Errorf("stored submission %+v", sub)
			}

			// Every event went to EVENTS once, under its jti.
			var ids []string
			for _, m := range flowtest.Messages(t, f.bus, bus.StreamEvents, "") {
				_, c, err := set.Parse(string(m.Data))
				must(t, err)
				if m.Header.Get("Nats-Msg-Id") != c.JTI || m.Subject != "ab.events."+s.CaseID {
					t.Errorf("EVENTS message %s with Nats-Msg-Id %q for jti %s", m.Subject, m.Header.Get("Nats-Msg-Id"), c.JTI)
				}
				// Amtsbote's own events carry the derived jti.
				if uri, _, _ := c.Event(); uri != set.AcceptSubmission && c.JTI != f.jti(s.SubmissionID, uri) {
					t.Errorf("%s has jti %s, want %s", uri, c.JTI, f.jti(s.SubmissionID, uri))
				}
				ids = append(ids, c.JTI)
			}
			if len(ids) != 4 {
				t.Errorf("EVENTS holds %d messages, want 4", len(ids))
			}

			// Retries: the same submit and the same accept change nothing.
			again := f.submit(t, sender, s)
			again.want(t, http.StatusAccepted)
			if !bytes.Equal(again.body, r.body) {
				t.Errorf("repeated submit answered %s, first %s", again.body, r.body)
			}
			f.postEvent(t, receiver, s.CaseID, accept).want(t, http.StatusNoContent)
			if n := len(flowtest.Messages(t, f.bus, bus.StreamIngress, "")); n != 1 {
				t.Errorf("INGRESS holds %d messages after the retry, want 1", n)
			}
			f.waitEvents(t, sender, s.CaseID, "create-submission", "submit-submission", "notify-submission", "accept-submission")
			other := s
			other.data = seal(t, []byte(`{"antragsteller":"Max Mustermann"}`), d.EncryptionKID)
			f.submit(t, sender, other).problem(t, http.StatusUnprocessableEntity, problem.TypeIdempotencyMismatch, "encryptedMetadata")
		})
	}
}

type pickupList struct {
	Count       int `json:"count"`
	Offset      int `json:"offset"`
	TotalCount  int `json:"totalCount"`
	Submissions []struct {
		DestinationID string `json:"destinationId"`
		SubmissionID  string `json:"submissionId"`
		CaseID        string `json:"caseId"`
	} `json:"submissions"`
}

// object reads an object whole.
func (f *flowEnv) object(t *testing.T, name string) string {
	t.Helper()
	rc, err := f.bus.GetObject(context.Background(), name)
	if err != nil {
		t.Fatalf("get object %s: %v", name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read object %s: %v", name, err)
	}
	return string(b)
}

// jwksKey reads Amtsbote's signing key from the JWKS endpoint.
func (f *flowEnv) jwksKey(t *testing.T) *rsa.PublicKey {
	t.Helper()
	var jwks gojose.JSONWebKeySet
	must(t, json.Unmarshal(f.call(t, http.MethodGet, "/.well-known/jwks.json", "", "", nil).body, &jwks))
	if len(jwks.Keys) != 1 {
		t.Fatalf("JWKS holds %d keys", len(jwks.Keys))
	}
	pub, ok := jwks.Keys[0].Key.(*rsa.PublicKey)
	if !ok {
		t.Fatalf("JWKS key is a %T", jwks.Keys[0].Key)
	}
	return pub
}

// verifyLog verifies every SET of the log: Amtsbote's with the JWKS key,
// the destination's with its signing key; submit-submission carries the
// submission's tags.
func (f *flowEnv) verifyLog(t *testing.T, log []string, s sealedSubmission) {
	t.Helper()
	amtsbote := f.jwksKey(t)
	destination := &keyPair(t, sigKey1).Private.PublicKey
	for _, tok := range log {
		h, c, err := set.Parse(tok)
		must(t, err)
		key := destination
		if c.Issuer == f.srv.URL {
			key = amtsbote
			if h.KID != f.signer.Public.KeyID {
				t.Errorf("Amtsbote's SET has kid %q, want %q", h.KID, f.signer.Public.KeyID)
			}
		} else if c.Issuer != s.dest.ID {
			t.Errorf("SET issued by %q", c.Issuer)
		}
		v, err := set.Verify(tok, key)
		if err != nil {
			t.Errorf("SET of %s does not verify: %v", c.Issuer, err)
			continue
		}
		if sid, _ := v.SubmissionID(); sid != s.SubmissionID {
			t.Errorf("SET about %s", sid)
		}
		if uri, _, _ := v.Event(); uri == set.SubmitSubmission {
			tags, err := v.Tags()
			must(t, err)
			if !tags.Equal(s.tags()) {
				t.Errorf("submit-submission tags %+v, want %+v", tags, s.tags())
			}
		}
	}
}

// TestCreateSubmissionBadInput proves each refusal of create: the right
// status, a problem naming the field, and nothing stored or published.
func TestCreateSubmissionBadInput(t *testing.T) {
	for _, b := range flowtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f := newFlowEnv(t, b.Open(t), func(c *gateway.Config) { c.MaxBody = 64 << 10 })
			d := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
			inactive := f.createDestination(newUUID(t), store.StatusInactive, "DE08311")
			sender := f.token("send:region:DE08")
			bund := f.token("send:region:DE")
			bavaria := f.token("send:region:DE09")
			otherService := f.token("send:region:DE08+send:service:" + serviceB)
			receiver := f.token("subscribe:destination:" + d.ID)
			// A case of another sender, and a keyed create to retry.
			foreign := f.prepare(t, f.token("send:region:DE08"), d, 0)
			f.create(t, sender, createBody(d), "Idempotency-Key", "order-4711")
			before := f.snapshot(t, foreign)

			with := func(edit func(map[string]any)) map[string]any {
				body := createBody(d, newUUID(t))
				edit(body)
				return body
			}
			tests := []struct {
				name        string
				token       string
				contentType string
				body        any
				header      []string
				status      int
				typ, field  string
			}{
				{"no token", "", "", createBody(d), nil, 401, problem.TypeUnauthorized, "Authorization"},
				{"unknown destination", sender, "", with(func(b map[string]any) { b["destinationId"] = newUUID(t) }), nil, 404, problem.TypeDestinationNotFound, "destinationId"},
				{"inactive destination", sender, "", with(func(b map[string]any) { b["destinationId"] = inactive.ID }), nil, 422, problem.TypeDestinationInactive, "destinationId"},
				{"service not offered", sender, "", with(func(b map[string]any) {
					b["serviceType"] = map[string]any{"name": "Hundesteuer", "identifier": serviceB}
				}), nil, 422, problem.TypeServiceNotOffered, "serviceType.identifier"},
				{"sender scope elsewhere", bavaria, "", createBody(d), nil, 403, problem.TypeForbidden, "scope"},
				{"sender elsewhere naming its own region", bavaria, "", with(func(b map[string]any) { b["region"] = "DE091620000000" }), nil, 403, problem.TypeForbidden, "scope"},
				{"sender elsewhere, inactive destination", bavaria, "", with(func(b map[string]any) { b["destinationId"] = inactive.ID }), nil, 403, problem.TypeForbidden, "scope"},
				{"sender elsewhere, service not offered", bavaria, "", with(func(b map[string]any) {
					b["serviceType"] = map[string]any{"name": "Hundesteuer", "identifier": serviceB}
				}), nil, 403, problem.TypeForbidden, "scope"},
				{"sender scope for another service", otherService, "", createBody(d), nil, 403, problem.TypeForbidden, "scope"},
				{"region outside the sender's scope", sender, "", with(func(b map[string]any) { b["region"] = "DE091620000000" }), nil, 403, problem.TypeForbidden, "scope"},
				{"region the destination does not serve", bund, "", with(func(b map[string]any) { b["region"] = "DE091620000000" }), nil, 422, problem.TypeRegionNotServed, "region"},
				{"region not an ARS", sender, "", with(func(b map[string]any) { b["region"] = "DE0831" }), nil, 400, problem.TypeInvalidValue, "region"},
				{"receiver token", receiver, "", createBody(d), nil, 403, problem.TypeForbidden, "scope"},
				{"destinationId not a UUID", sender, "", with(func(b map[string]any) { b["destinationId"] = "stadt-freiburg" }), nil, 400, problem.TypeInvalidValue, "destinationId"},
				{"announcedAttachments missing", sender, "", with(func(b map[string]any) { delete(b, "announcedAttachments") }), nil, 400, problem.TypeInvalidValue, "announcedAttachments"},
				{"attachment announced twice", sender, "", with(func(b map[string]any) {
					id := newUUID(t)
					b["announcedAttachments"] = []string{id, id}
				}), nil, 400, problem.TypeInvalidValue, "announcedAttachments[1]"},
				{"attachment id not a UUID", sender, "", with(func(b map[string]any) { b["announcedAttachments"] = []string{"anlage-1"} }), nil, 400, problem.TypeInvalidValue, "announcedAttachments[0]"},
				{"serviceType missing", sender, "", with(func(b map[string]any) { delete(b, "serviceType") }), nil, 400, problem.TypeInvalidValue, "serviceType"},
				{"service not a URN", sender, "", with(func(b map[string]any) {
					b["serviceType"] = map[string]any{"name": "x", "identifier": "99108008000000"}
				}), nil, 400, problem.TypeInvalidValue, "serviceType.identifier"},
				{"callback not https", sender, "", with(func(b map[string]any) {
					b["callback"] = map[string]any{"url": "http://portal.example/cb", "secret": strings.Repeat("s", 32)}
				}), nil, 400, problem.TypeInvalidValue, "callback.url"},
				{"callback to loopback", sender, "", with(func(b map[string]any) {
					b["callback"] = map[string]any{"url": "https://127.0.0.1:8081/v1/info", "secret": strings.Repeat("s", 32)}
				}), nil, 400, problem.TypeInvalidValue, "callback.url"},
				{"callback to the metadata service", sender, "", with(func(b map[string]any) {
					b["callback"] = map[string]any{"url": "https://169.254.169.254/latest", "secret": strings.Repeat("s", 32)}
				}), nil, 400, problem.TypeInvalidValue, "callback.url"},
				{"callback to localhost", sender, "", with(func(b map[string]any) {
					b["callback"] = map[string]any{"url": "https://localhost/cb", "secret": strings.Repeat("s", 32)}
				}), nil, 400, problem.TypeInvalidValue, "callback.url"},
				{"callback without a host name", sender, "", with(func(b map[string]any) {
					b["callback"] = map[string]any{"url": "https://:443/cb", "secret": strings.Repeat("s", 32)}
				}), nil, 400, problem.TypeInvalidValue, "callback.url"},
				{"callback to full-width localhost", sender, "", with(func(b map[string]any) {
					b["callback"] = map[string]any{"url": "https://ｌｏｃａｌｈｏｓｔ/cb", "secret": strings.Repeat("s", 32)}
				}), nil, 400, problem.TypeInvalidValue, "callback.url"},
				{"callback to a number", sender, "", with(func(b map[string]any) {
					b["callback"] = map[string]any{"url": "https://2130706433/cb", "secret": strings.Repeat("s", 32)}
				}), nil, 400, problem.TypeInvalidValue, "callback.url"},
				{"callback scheme in upper case", sender, "", with(func(b map[string]any) {
					b["callback"] = map[string]any{"url": "HTTPS://portal.example/cb", "secret": strings.Repeat("s", 32)}
				}), nil, 400, problem.TypeInvalidValue, "callback.url"},
				{"callback port out of range", sender, "", with(func(b map[string]any) {
					b["callback"] = map[string]any{"url": "https://portal.example:99999/cb", "secret": strings.Repeat("s", 32)}
				}), nil, 400, problem.TypeInvalidValue, "callback.url"},
				{"callback port 0", sender, "", with(func(b map[string]any) {
					b["callback"] = map[string]any{"url": "https://portal.example:0/cb", "secret": strings.Repeat("s", 32)}
				}), nil, 400, problem.TypeInvalidValue, "callback.url"},
				{"callback url too long", sender, "", with(func(b map[string]any) {
					b["callback"] = map[string]any{"url": "https://portal.example/" + strings.Repeat("a", 2048), "secret": strings.Repeat("s", 32)}
				}), nil, 400, problem.TypeInvalidValue, "callback.url"},
				{"caseId of another sender", sender, "", with(func(b map[string]any) { b["caseId"] = foreign.CaseID }), nil, 404, problem.TypeCaseNotFound, "caseId"},
				{"unknown caseId", sender, "", with(func(b map[string]any) { b["caseId"] = newUUID(t) }), nil, 404, problem.TypeCaseNotFound, "caseId"},
				{"malformed JSON", sender, "", []byte(`{"destinationId":`), nil, 400, problem.TypeMalformedJSON, "body"},
				{"wrong content type", sender, "text/plain", createBody(d), nil, 415, problem.TypeUnsupportedMediaType, "Content-Type"},
				{"body too large", sender, "", with(func(b map[string]any) {
					b["serviceType"] = map[string]any{"name": strings.Repeat("Gewerbe", 20000), "identifier": serviceA}
				}), nil, 413, problem.TypeBodyTooLarge, ""},
				{"Idempotency-Key reused for another body", sender, "", createBody(d, newUUID(t)), []string{"Idempotency-Key", "order-4711"}, 422, problem.TypeIdempotencyMismatch, "Idempotency-Key"},
				{"Idempotency-Key too long", sender, "", createBody(d), []string{"Idempotency-Key", strings.Repeat("k", 256)}, 400, problem.TypeInvalidRequest, "Idempotency-Key"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					body, ok := tt.body.([]byte)
					if !ok {
						body, _ = json.Marshal(tt.body)
					}
					ct := tt.contentType
					if ct == "" {
						ct = "application/json"
					}
					f.call(t, http.MethodPost, "/v1/submissions", tt.token, ct, bytes.NewReader(body), tt.header...).
						problem(t, tt.status, tt.typ, tt.field)
					f.wantUnchangedFlow(t, before, foreign)
				})
			}
		})
	}
}

// TestCreateIdempotencyKey proves that a retried create with the same key
// and body gets the first answer and makes one submission.
func TestCreateIdempotencyKey(t *testing.T) {
	f := newFlowEnv(t, flowtest.OpenSQLite(t))
	d := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
	sender := f.token("send:region:DE08")
	body := createBody(d, newUUID(t))
	first := f.create(t, sender, body, "Idempotency-Key", `"4c1b6a7e"`)
	again := f.create(t, sender, body, "Idempotency-Key", "4c1b6a7e")
	if again != first {
		t.Errorf("retry created %+v, first %+v", again, first)
	}
	// Encoded anew: indented, members in another order, the ids in capitals.
	raw, err := json.MarshalIndent(body, "", "\t")
	must(t, err)
	var reordered map[string]json.RawMessage
	must(t, json.Unmarshal(raw, &reordered))
	upper := `{"serviceType":` + string(reordered["serviceType"]) + `,"announcedAttachments":` + strings.ToUpper(string(reordered["announcedAttachments"])) +
		`,  "destinationId":` + strings.ToUpper(string(reordered["destinationId"])) + "}"
	for _, retry := range []string{string(raw), upper} {
		r := f.call(t, http.MethodPost, "/v1/submissions", sender, "application/json", strings.NewReader(retry), "Idempotency-Key", "4c1b6a7e")
		if got := decodeReply[created](t, r, http.StatusCreated); got != first {
			t.Errorf("retry encoded anew %s created %+v, first %+v", retry, got, first)
		}
	}
	// Another sender's key of the same name is another key.
	other := f.create(t, f.token("send:region:DE08"), body, "Idempotency-Key", "4c1b6a7e")
	unkeyed := f.create(t, sender, body)
	if other.SubmissionID == first.SubmissionID || unkeyed.SubmissionID == first.SubmissionID {
		t.Error("different requests share a submission")
	}
	f.settle(t)
	incomplete, err := f.st.DueSubmissions(context.Background(), store.DeadlineIncomplete, time.Now().Add(time.Hour), 0)
	must(t, err)
	if len(incomplete) != 3 {
		t.Errorf("%d submissions stored, want 3", len(incomplete))
	}
	log := f.waitEvents(t, sender, first.CaseID, "create-submission")
	if log.TotalCount != 1 {
		t.Errorf("%d events for the created case", log.TotalCount)
	}
}

// TestSubmitBadInput proves each refusal of submit, and that none of them
// spoils the correct submit that follows.
func TestSubmitBadInput(t *testing.T) {
	for _, b := range flowtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f := newFlowEnv(t, b.Open(t), func(c *gateway.Config) { c.MaxBody = 64 << 10 })
			ctx := context.Background()
			d := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
			sender := f.token("send:region:DE08")
			s := f.prepare(t, sender, d, 2)

			// One of two announced attachments uploaded.
			partial := sealedSubmission{dest: d, attachments: map[string]string{}}
			partial.order = []string{newUUID(t), newUUID(t)}
			partial.created = f.create(t, sender, createBody(d, partial.order...))
			f.upload(t, sender, partial.SubmissionID, partial.order[0], seal(t, []byte("a"), d.EncryptionKID)).want(t, http.StatusNoContent)
			partial.metadata, partial.data = s.metadata, s.data

			// A destination whose first encryption key is retired.
			rolled := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
			newKID := "enc2-" + rolled.ID[:8]
			jwk, _ := json.Marshal(publicJWK(t, keyPair(t, encKey2), newKID))
			_, err := f.st.RollKey(ctx, "test", store.Key{DestinationID: rolled.ID, KID: newKID, Use: store.UseEncryption, JWK: jwk}, f.clock.Now().Add(-time.Hour))
			must(t, err)
			stale := f.prepare(t, sender, rolled, 0)
			before := f.snapshot(t, s, partial, stale)

			good := s.metadata
			parts := strings.Split(good, ".")
			dataParts := strings.Split(s.data, ".")
			dataParts[3] = "!" + dataParts[3][1:]
			header := func(h map[string]any) string { return withHeader(good, h) }
			tests := []struct {
				name       string
				sub        sealedSubmission
				token      string
				body       any
				ct         string
				status     int
				typ, field string
			}{
				{"announced attachment missing", partial, sender, partial.submitBody(), "", 422, problem.TypeMissingAttachments, "attachments"},
				{"metadata missing", s, sender, map[string]any{"encryptedData": s.data}, "", 400, problem.TypeInvalidValue, "encryptedMetadata"},
				{"metadata not compact", s, sender, map[string]any{"encryptedMetadata": strings.Join(parts[:3], ".")}, "", 400, problem.TypeInvalidJWE, "encryptedMetadata.segments"},
				{"metadata as JSON serialization", s, sender, map[string]any{"encryptedMetadata": `{"protected":"` + parts[0] + `"}`}, "", 400, problem.TypeInvalidJWE, "encryptedMetadata.segment 0"},
				{"data not base64url", s, sender, map[string]any{"encryptedMetadata": good, "encryptedData": strings.Join(dataParts, ".")}, "", 400, problem.TypeInvalidJWE, "encryptedData.segment 3"},
				{"metadata alg", s, sender, map[string]any{"encryptedMetadata": header(map[string]any{"alg": "RSA-OAEP", "enc": "A256GCM", "kid": d.EncryptionKID})}, "", 400, problem.TypeInvalidJWE, "encryptedMetadata.header.alg"},
				{"data enc", s, sender, map[string]any{"encryptedMetadata": good, "encryptedData": withHeader(s.data, map[string]any{"alg": "RSA-OAEP-256", "enc": "A128CBC-HS256", "kid": d.EncryptionKID})}, "", 400, problem.TypeInvalidJWE, "encryptedData.header.enc"},
				{"metadata unknown kid", s, sender, map[string]any{"encryptedMetadata": header(map[string]any{"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": "unknown-kid-1"})}, "", 422, problem.TypeUnknownEncryptionKey, "encryptedMetadata.header.kid"},
				{"data under the signing kid", s, sender, map[string]any{"encryptedMetadata": good, "encryptedData": withHeader(s.data, map[string]any{"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": d.SigningKID})}, "", 422, problem.TypeUnknownEncryptionKey, "encryptedData.header.kid"},
				{"retired kid", stale, sender, map[string]any{"encryptedMetadata": seal(t, []byte("{}"), rolled.EncryptionKID)}, "", 422, problem.TypeUnknownEncryptionKey, "encryptedMetadata.header.kid"},
				{"another sender", s, f.token("send:region:DE08"), s.submitBody(), "", 404, problem.TypeSubmissionNotFound, "submissionId"},
				{"wrong content type", s, sender, s.submitBody(), "application/jose", 415, problem.TypeUnsupportedMediaType, "Content-Type"},
				{"body too large", s, sender, map[string]any{"encryptedMetadata": good, "encryptedData": good + strings.Repeat("A", 70<<10)}, "", 413, problem.TypeBodyTooLarge, ""},
				{"malformed JSON", s, sender, []byte(`{"encryptedMetadata":`), "", 400, problem.TypeMalformedJSON, "body"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					body, ok := tt.body.([]byte)
					if !ok {
						body, _ = json.Marshal(tt.body)
					}
					ct := tt.ct
					if ct == "" {
						ct = "application/json"
					}
					f.call(t, http.MethodPut, "/v1/submissions/"+tt.sub.SubmissionID, tt.token, ct, bytes.NewReader(body)).
						problem(t, tt.status, tt.typ, tt.field)
					f.wantUnchangedFlow(t, before, s, partial, stale)
				})
			}
			t.Run("unknown submission", func(t *testing.T) {
				f.callJSON(t, http.MethodPut, "/v1/submissions/"+newUUID(t), sender, s.submitBody()).
					problem(t, 404, problem.TypeSubmissionNotFound, "submissionId")
			})
			t.Run("submission id not a UUID", func(t *testing.T) {
				f.callJSON(t, http.MethodPut, "/v1/submissions/12345", sender, s.submitBody()).
					problem(t, 400, problem.TypeInvalidRequest, "submissionId")
			})

			// None of the refusals left a record behind: the right submit passes.
			f.submit(t, sender, s).want(t, http.StatusAccepted)
			after := f.snapshot(t, s)
			other := s
			other.metadata = seal(t, []byte(`{"other":true}`), d.EncryptionKID)
			f.submit(t, sender, other).problem(t, http.StatusUnprocessableEntity, problem.TypeIdempotencyMismatch, "encryptedMetadata")
			f.wantUnchangedFlow(t, after, s)
			// Attachments cannot change after submit.
			f.upload(t, sender, s.SubmissionID, s.order[0], s.attachments[s.order[1]]).
				problem(t, http.StatusUnprocessableEntity, problem.TypeSubmissionState, "submissionId")
			f.wantUnchangedFlow(t, after, s)
		})
	}
}

// TestLargePayloadByReference proves that a payload above the inline bound
// travels as an object reference and is still fetched whole.
func TestLargePayloadByReference(t *testing.T) {
	f, d, sender, receiver := oneDestinationFlow(t)
	s := f.prepare(t, sender, d, 0)
	data := bytes.Repeat([]byte(`{"zeile":"Bauantrag mit vielen Angaben"},`), 3000)
	s.data = seal(t, data, d.EncryptionKID)
	f.submit(t, sender, s).want(t, http.StatusAccepted)
	msgs := flowtest.Messages(t, f.bus, bus.StreamIngress, "")
	if len(msgs) != 1 {
		t.Fatalf("%d INGRESS messages", len(msgs))
	}
	msg, err := sealed.Decode(msgs[0].Data)
	must(t, err)
	if msg.Payload != nil || msg.Object != sealed.PayloadObject(s.SubmissionID) {
		t.Errorf("large payload inline %v, object %q", msg.Payload != nil, msg.Object)
	}
	if len(msgs[0].Data) > sealed.InlineLimit {
		t.Errorf("INGRESS message of %d bytes", len(msgs[0].Data))
	}
	f.route(t, s.SubmissionID)
	got := decodeReply[submissionView](t, f.call(t, http.MethodGet, "/v1/submissions/"+s.SubmissionID, receiver, "", nil), http.StatusOK)
	if !bytes.Equal(unseal(t, got.EncryptedData), data) {
		t.Error("fetched data differs")
	}
}

// TestNoBus proves that a gateway without a bus serves the registry and
// answers the submission flow with 503.
func TestNoBus(t *testing.T) {
	e := newEnv(t)
	d := e.createDestination(newUUID(t), store.StatusActive, "DE08311")
	sender := e.token("send:region:DE08")
	for _, path := range []string{"/v1/submissions", "/v1/submissions/" + newUUID(t), "/v1/cases/" + newUUID(t) + "/events"} {
		wantProblem(t, e.do(http.MethodGet, path, sender, "", nil), http.StatusServiceUnavailable, problem.TypeUnavailable, "")
	}
	body, _ := json.Marshal(createBody(d))
	wantProblem(t, e.do(http.MethodPost, "/v1/submissions", sender, "application/json", body), http.StatusServiceUnavailable, problem.TypeUnavailable, "")
	wantProblem(t, e.do(http.MethodPost, "/v1/submissions", "", "application/json", body), http.StatusUnauthorized, problem.TypeUnauthorized, "")
	decode[map[string]any](t, e.do(http.MethodGet, "/v1/destinations/"+d.ID, sender, "", nil), http.StatusOK)
}

// TestUUIDsWithoutHyphens: FIT-Connect's ids may come as 32 hex digits
// (minLength 32); they name the same resources, answered in the canonical
// form.
func TestUUIDsWithoutHyphens(t *testing.T) {
	f, d, sender, receiver := oneDestinationFlow(t)
	bare := func(id string) string { return strings.ToUpper(strings.ReplaceAll(id, "-", "")) }

	first := f.create(t, sender, createBody(d))
	aid := newUUID(t)
	body := createBody(d, bare(aid))
	body["destinationId"], body["caseId"] = bare(d.ID), bare(first.CaseID)
	c := f.create(t, sender, body)
	if c.DestinationID != d.ID || c.CaseID != first.CaseID {
		t.Fatalf("created %+v, want destination %s, case %s", c, d.ID, first.CaseID)
	}
	s := sealedSubmission{created: c, dest: d, attachments: map[string]string{aid: seal(t, []byte("Anlage"), d.EncryptionKID)}, order: []string{aid}}
	s.metadata = seal(t, []byte(`{}`), d.EncryptionKID)
	s.data = seal(t, []byte(`{"name":"Erika Mustermann"}`), d.EncryptionKID)
	f.upload(t, sender, bare(s.SubmissionID), bare(aid), s.attachments[aid]).want(t, http.StatusNoContent)
	f.callJSON(t, http.MethodPut, "/v1/submissions/"+bare(s.SubmissionID), sender, s.submitBody()).want(t, http.StatusAccepted)
	f.route(t, s.SubmissionID)

	list := decodeReply[pickupList](t, f.call(t, http.MethodGet, "/v1/submissions?destinationId="+bare(d.ID), receiver, "", nil), http.StatusOK)
	if list.TotalCount != 1 || list.Submissions[0].SubmissionID != s.SubmissionID {
		t.Fatalf("pickup list %+v", list)
	}
	got := decodeReply[submissionView](t, f.call(t, http.MethodGet, "/v1/submissions/"+bare(s.SubmissionID), receiver, "", nil), http.StatusOK)
	if got.SubmissionID != s.SubmissionID || got.EncryptedData != s.data || !slices.Equal(got.Attachments, []string{aid}) {
		t.Fatalf("fetched %+v", got)
	}
	r := f.call(t, http.MethodGet, "/v1/submissions/"+bare(s.SubmissionID)+"/attachments/"+bare(aid), receiver, "", nil)
	r.want(t, http.StatusOK)
	if string(r.body) != s.attachments[aid] {
		t.Errorf("attachment of %d bytes", len(r.body))
	}
	f.waitEvents(t, receiver, bare(c.CaseID), "create-submission", "create-submission", "submit-submission", "notify-submission")
}

// TestSubmitStopsBeforeItsEvent: the payload, the tags and the INGRESS
// message are written together; when one fails the submit answers 503 and
// queues no submit-submission, so no receiver is offered the submission.
// The retried submit completes it, with one INGRESS message.
func TestSubmitStopsBeforeItsEvent(t *testing.T) {
	f, d, sender, receiver := oneDestinationFlow(t)
	s := f.prepare(t, sender, d, 0)
	ctx := context.Background()
	must(t, f.bus.JetStream().DeleteStream(ctx, bus.StreamIngress))

	f.submit(t, sender, s).problem(t, http.StatusServiceUnavailable, problem.TypeUnavailable, "")
	f.settle(t)
	f.waitEvents(t, sender, s.CaseID, "create-submission")
	if sub, err := f.st.Submission(ctx, s.SubmissionID); err != nil || sub.Status != sealed.Incomplete {
		t.Fatalf("after the failed submit: %+v, %v", sub, err)
	}
	f.call(t, http.MethodGet, "/v1/submissions/"+s.SubmissionID, receiver, "", nil).
		problem(t, http.StatusNotFound, problem.TypeSubmissionNotFound, "submissionId")

	must(t, f.bus.Ensure(ctx, bus.TopologyConfig{}))
	f.submit(t, sender, s).want(t, http.StatusAccepted)
	f.waitEvents(t, sender, s.CaseID, "create-submission", "submit-submission")
	if msgs := flowtest.Messages(t, f.bus, bus.StreamIngress, ""); len(msgs) != 1 {
		t.Errorf("%d INGRESS messages after the retry, want 1", len(msgs))
	}
}

// oneDestinationFlow is a flow environment on SQLite with one active
// destination for Freiburg (DE08311), a sender's token for Baden-Württemberg
// and its receiver's token.
func oneDestinationFlow(t *testing.T) (f *flowEnv, d store.Destination, sender, receiver string) {
	t.Helper()
	f = newFlowEnv(t, flowtest.OpenSQLite(t))
	d = f.createDestination(newUUID(t), store.StatusActive, "DE08311")
	return f, d, f.token("send:region:DE08"), f.token("subscribe:destination:" + d.ID)
}

// TestBusUnreachable checks that while the gateway knows NATS to be
// unreachable the submission API answers 503 at once and writes nothing,
// and takes submissions again once it is back.
func TestBusUnreachable(t *testing.T) {
	st := flowtest.OpenSQLite(t)
	f := newFlowEnv(t, st)
	d := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
	sender := f.token("send:region:DE08")
	f.create(t, sender, createBody(d))
	backlog := func() int {
		list, err := st.DueSubmissions(context.Background(), store.DeadlineIncomplete, time.Now().AddDate(1, 0, 0), 100)
		must(t, err)
		return len(list)
	}
	before := backlog()

	// Nothing in flight: a request the server takes down with it waits its
	// timeout, and holds the signer's stop.
	f.settle(t)
	f.node.Shutdown()
	flowtest.Eventually(t, 10*time.Second, func() error {
		if f.bus.Conn().IsConnected() {
			return errors.New("still connected")
		}
		return nil
	})
	p := f.callJSON(t, http.MethodPost, "/v1/submissions", sender, createBody(d)).problem(t, 503, problem.TypeUnavailable, "")
	if !strings.Contains(p.Detail, "unreachable") {
		t.Errorf("detail %q", p.Detail)
	}
	if n := backlog(); n != before {
		t.Errorf("%d incomplete submissions after the refused create, want %d", n, before)
	}
	// The pickup list reads the store alone and is still served.
	receiver := f.token("subscribe:destination:" + d.ID)
	decodeReply[map[string]any](t, f.call(t, http.MethodGet, "/v1/submissions?destinationId="+d.ID, receiver, "", nil), http.StatusOK)

	f.node.Start(t)
	flowtest.Eventually(t, 20*time.Second, func() error {
		if !f.bus.Conn().IsConnected() {
			return errors.New("not reconnected")
		}
		return nil
	})
	f.create(t, sender, createBody(d))
}

// stallingProxy forwards TCP both ways until stalled: then it holds what
// arrives, as a server that hangs without closing its connections.
type stallingProxy struct {
	ln      net.Listener
	mu      sync.Mutex
	stalled bool
	resumed chan struct{}
}

func newStallingProxy(t *testing.T, upstream string) *stallingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallingProxy{ln: ln, resumed: make(chan struct{})}
	close(p.resumed)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			go p.pipe(c, u)
			go p.pipe(u, c)
		}
	}()
	return p
}

func (p *stallingProxy) pipe(from, to net.Conn) {
	defer from.Close()
	defer to.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		resumed := p.resumed
		p.mu.Unlock()
		<-resumed
		if _, err := to.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (p *stallingProxy) stall(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on && !p.stalled {
		p.resumed = make(chan struct{})
	} else if !on && p.stalled {
		close(p.resumed)
	}
	p.stalled = on
}

// TestBusHangs checks that a create while NATS hangs (connected, but not
// answering) is refused before anything is written, so that nothing turns
// up once the server resumes.
func TestBusHangs(t *testing.T) {
	node := bustest.Server(t)
	proxy := newStallingProxy(t, strings.TrimPrefix(node.URL, "nats://"))
	b := bustest.Connect(t, "nats://"+proxy.ln.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	must(t, b.Ensure(ctx, bus.TopologyConfig{}))
	st := flowtest.OpenSQLite(t)
	f := newFlowEnvOn(t, st, b)
	d := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
	sender := f.token("send:region:DE08")
	f.create(t, sender, createBody(d))
	incomplete := func() int {
		list, err := st.DueSubmissions(context.Background(), store.DeadlineIncomplete, time.Now().AddDate(1, 0, 0), 100)
		must(t, err)
		return len(list)
	}
	before := incomplete()

	f.settle(t)
	proxy.stall(true)
	p := f.callJSON(t, http.MethodPost, "/v1/submissions", sender, createBody(d)).problem(t, 503, problem.TypeUnavailable, "")
	if !strings.Contains(p.Detail, "does not answer") {
		t.Errorf("detail %q", p.Detail)
	}
	proxy.stall(false)
	time.Sleep(time.Second)
	if n := incomplete(); n != before {
		t.Errorf("%d incomplete submissions after the refused create, want %d", n, before)
	}
	f.create(t, sender, createBody(d))
}

// TestContentCodingRefused sends bodies with a content coding, as a client
// with request compression turned on does: none is supported, so each is
// a 415 naming Content-Encoding (RFC 9110 15.5.16) instead of a body read
// as what it is not, and nothing changes. "identity" is no coding.
func TestContentCodingRefused(t *testing.T) {
	f := newFlowEnv(t, flowtest.OpenSQLite(t))
	d := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
	sender := f.token("send:region:DE08")
	s := f.prepare(t, sender, d, 1)
	before := f.snapshot(t, s)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	create, err := json.Marshal(createBody(d))
	must(t, err)
	_, err = zw.Write(create)
	must(t, err)
	must(t, zw.Close())
	submit, err := json.Marshal(s.submitBody())
	must(t, err)
	att := s.order[0]
	for _, tc := range []struct {
		name, method, path, token, contentType, coding string
		body                                           []byte
	}{
		{"create, gzip", http.MethodPost, "/v1/submissions", sender, "application/json", "gzip", gz.Bytes()},
		{"create, declared but not applied", http.MethodPost, "/v1/submissions", sender, "application/json", "br", create},
		{"create, two codings", http.MethodPost, "/v1/submissions", sender, "application/json", "identity, gzip", gz.Bytes()},
		{"upload", http.MethodPut, "/v1/submissions/" + s.SubmissionID + "/attachments/" + att, sender, "application/jose", "gzip", []byte(s.attachments[att])},
		{"submit", http.MethodPut, "/v1/submissions/" + s.SubmissionID, sender, "application/json", "deflate", submit},
		{"import", http.MethodPost, "/admin/v1/import/leika", f.adminToken(), "text/csv", "gzip", []byte("leika_key,name\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, f.srv.URL+tc.path, bytes.NewReader(tc.body))
			must(t, err)
			req.Header.Set("Authorization", "Bearer "+tc.token)
			req.Header.Set("Content-Type", tc.contentType)
			req.Header.Set("Content-Encoding", tc.coding)
			resp, err := f.srv.Client().Do(req)
			must(t, err)
			defer resp.Body.Close()
			wantProblem(t, resp, http.StatusUnsupportedMediaType, problem.TypeUnsupportedMediaType, "Content-Encoding")
			f.wantUnchangedFlow(t, before, s)
		})
	}
	f.call(t, http.MethodPost, "/v1/submissions", sender, "application/json", bytes.NewReader(create), "Content-Encoding", "identity").
		want(t, http.StatusCreated)

	// The token endpoint answers as OAuth has it (RFC 6749 5.2).
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+"/token", strings.NewReader("grant_type=client_credentials&client_id=portal&client_secret=x"))
	must(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := f.srv.Client().Do(req)
	must(t, err)
	var oauth struct{ Error, Field string }
	must(t, json.Unmarshal(readAll(t, resp), &oauth))
	if resp.StatusCode != http.StatusUnsupportedMediaType || oauth.Error != "invalid_request" || oauth.Field != "Content-Encoding" {
		t.Errorf("token: %d %+v, want 415 invalid_request naming Content-Encoding", resp.StatusCode, oauth)
	}
}
