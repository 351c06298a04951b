package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
	"github.com/amtsbote/amtsbote/pkg/issuer"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/registry"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/gateway"
)

// fuzzFlow is a gateway with a bus for fuzz targets, with a sender and a
// receiver token and one active destination.
type fuzzFlow struct {
	h                http.Handler
	sender, receiver string
	dest             store.Destination
}

func newFuzzFlow(f *testing.F) fuzzFlow {
	f.Helper()
	db := flowtest.OpenSQLite(f)
	b, _ := bustest.Bus(f)
	events, err := issuer.New(b, keyPair(f, signerKey), "http://127.0.0.1", nil)
	if err != nil {
		f.Fatal(err)
	}
	gw, err := gateway.New(gateway.Config{Store: db, Signer: keyPair(f, signerKey), PublicURL: "http://127.0.0.1", Bus: b, Issuer: events})
	if err != nil {
		f.Fatal(err)
	}

	raw, _ := json.Marshal(map[string]any{
		"destinationId": "6c89c356-c354-4459-b2fd-8d1260ea835c",
		"status":        "active",
		"contactInformation": map[string]any{
			"legalName": "Stadt Freiburg im Breisgau", "address": "Rathausplatz 2-4, 79098 Freiburg im Breisgau",
			"phone": "+49 761 2010", "email": "poststelle@stadt.freiburg.de",
		},
		"services": []any{map[string]any{
			"identifier": serviceA, "regions": []string{"DE08311"},
			"submissionSchemas": []any{map[string]any{"mimeType": "application/json", "schemaUri": "https://schema.fitko.de/fim/s00000096_1.0.schema.json"}},
		}},
		"encryptionKid":       "enc-6c89c356",
		"encryptionPublicKey": publicJWK(f, keyPair(f, encKey1), "enc-6c89c356"),
		"signingPublicKey":    publicJWK(f, keyPair(f, sigKey1), "sig-6c89c356"),
		"metadataVersions":    []string{"1.0.0"},
	})
	dest, keys, err := registry.ParseDestination(raw)
	if err != nil {
		f.Fatal(err)
	}
	if err := db.CreateDestination(context.Background(), "test", dest, keys); err != nil {
		f.Fatal(err)
	}
	ff := fuzzFlow{h: gw.Handler(), dest: dest}
	token := func(id, scope string) string {
		secret := registry.NewSecret()
		hash, _ := testHash(secret)
		if err := db.CreateClient(context.Background(), "test", store.Client{ID: id, Name: id, SecretHash: hash, Scopes: []string{scope}}); err != nil {
			f.Fatal(err)
		}
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}
		req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		ff.h.ServeHTTP(rec, req)
		var tr struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &tr); err != nil || tr.AccessToken == "" {
			f.Fatalf("token: %s", rec.Body)
		}
		return tr.AccessToken
	}
	ff.sender = token("fuzz-sender", "send:region:DE08")
	ff.receiver = token("fuzz-receiver", "subscribe:destination:"+dest.ID)
	return ff
}

// serve answers one request and checks that a refusal is a problem with
// one of want's statuses, never a 5xx.
func (ff fuzzFlow) serve(t *testing.T, req *http.Request, ok int, want ...int) {
	t.Helper()
	rec := httptest.NewRecorder()
	ff.h.ServeHTTP(rec, req)
	if rec.Code == ok {
		return
	}
	if !slices.Contains(want, rec.Code) {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var p problem.Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Status != rec.Code || p.Detail == "" {
		t.Fatalf("status %d with body %s", rec.Code, rec.Body)
	}
}

// FuzzCreateSubmission posts arbitrary bodies and Idempotency-Keys to
// create: the answer is a 201 or a precise problem, never a server error.
func FuzzCreateSubmission(f *testing.F) {
	ff := newFuzzFlow(f)
	f.Add([]byte(`{"destinationId":"6c89c356-c354-4459-b2fd-8d1260ea835c","announcedAttachments":[],"serviceType":{"name":"x","identifier":"urn:de:fim:leika:leistung:99108008000000"}}`), "k1")
	f.Add([]byte(`{"destinationId":"6C89C356-C354-4459-B2FD-8D1260EA835C","announcedAttachments":["6c89c356-c354-4459-b2fd-8d1260ea835c"],"serviceType":{"name":"x","identifier":"urn:de:fim:leika:leistung:99108008000000"},"region":"DE083110000000","caseId":"2f59b8c6-3206-4734-aa21-a7b2a4d92f7a"}`), "")
	f.Add([]byte(`{"destinationId":null,"announcedAttachments":{},"serviceType":[]}`), `"quoted"`)
	f.Fuzz(func(t *testing.T, body []byte, key string) {
		req := httptest.NewRequest(http.MethodPost, "/v1/submissions", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+ff.sender)
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header["Idempotency-Key"] = []string{key}
		}
		ff.serve(t, req, http.StatusCreated, 400, 403, 404, 413, 422)
	})
}

// FuzzCaseEvent posts arbitrary bodies as a receiver's event: none is
// accepted (none carries the destination's signature), and the answer is
// a precise problem, never a server error.
func FuzzCaseEvent(f *testing.F) {
	ff := newFuzzFlow(f)
	f.Add("eyJhbGciOiJQUzUxMiIsInR5cCI6InNlY2V2ZW50K2p3dCIsImtpZCI6InNpZy02Yzg5YzM1NiJ9.eyJqdGkiOiIyZjU5YjhjNi0zMjA2LTQ3MzQtYWEyMS1hN2IyYTRkOTJmN2EiLCJpc3MiOiI2Yzg5YzM1Ni1jMzU0LTQ0NTktYjJmZC04ZDEyNjBlYTgzNWMiLCJpYXQiOjE3MDAwMDAwMDAsInN1YiI6InN1Ym1pc3Npb246MmY1OWI4YzYtMzIwNi00NzM0LWFhMjEtYTdiMmE0ZDkyZjdhIiwidHhuIjoiY2FzZToyZjU5YjhjNi0zMjA2LTQ3MzQtYWEyMS1hN2IyYTRkOTJmN2EiLCJldmVudHMiOnsiaHR0cHM6Ly9zY2hlbWEuZml0a28uZGUvZml0LWNvbm5lY3QvZXZlbnRzL2FjY2VwdC1zdWJtaXNzaW9uIjp7fX19.c2ln")
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, token string) {
		req := httptest.NewRequest(http.MethodPost, "/v1/cases/2f59b8c6-3206-4734-aa21-a7b2a4d92f7a/events", strings.NewReader(token))
		req.Header.Set("Authorization", "Bearer "+ff.receiver)
		req.Header.Set("Content-Type", "application/jose")
		ff.serve(t, req, -1, 400, 403, 404, 409, 413, 422)
	})
}
