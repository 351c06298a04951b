package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/registry"
	"github.com/amtsbote/amtsbote/services/gateway"
)

// FuzzDecodeDestination feeds operator input to the destination decoder:
// it must never panic, and every refusal must be a problem naming a field.
func FuzzDecodeDestination(f *testing.F) {
	f.Add([]byte(`{"destinationId":"6c89c356-c354-4459-b2fd-8d1260ea835c","services":[{"identifier":"urn:a:b","regions":["DE08"],"submissionSchemas":[]}]}`))
	f.Add([]byte(`{"contactInformation":{"legalName":"x","address":"y","phone":"1","email":"a@b.de"},"services":[{"identifier":"urn:de:fim:leika:leistung:99108008000000","regions":["DE0831"],"submissionSchemas":[{"mimeType":"application/json","schemaUri":"https://s"}]}],"encryptionKid":"k","encryptionPublicKey":{},"signingPublicKey":{},"metadataVersions":["1.0.0"]}`))
	f.Add([]byte(`{"services":{"x":1},"Status":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, keys, err := registry.ParseDestination(data)
		if err != nil {
			p, ok := problem.As(err)
			if !ok {
				t.Fatalf("error %v is not a problem", err)
			}
			if p.Status != http.StatusBadRequest || p.Field == "" {
				t.Fatalf("problem %+v does not name a field with status 400", p)
			}
			return
		}
		if d.ID == "" || len(keys) != 2 {
			t.Fatalf("accepted %+v with %d keys", d, len(keys))
		}
	})
}

// FuzzBearerToken sends arbitrary bearer tokens: the answer is always a
// 401 problem, never a 500 and never access.
func FuzzBearerToken(f *testing.F) {
	f.Add("eyJhbGciOiJQUzUxMiIsImtpZCI6ImFtdHNib3RlLXNpZ25lci0xIiwidHlwIjoiYXQrand0In0.e30.c2ln")
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwOi8vMTI3LjAuMC4xIn0.")
	f.Add("a.b.c.d.e")
	gw, err := gateway.New(gateway.Config{Store: flowtest.OpenSQLite(f), Signer: keyPair(f, signerKey), PublicURL: "http://127.0.0.1"})
	if err != nil {
		f.Fatal(err)
	}
	h := gw.Handler()
	f.Fuzz(func(t *testing.T, token string) {
		req := httptest.NewRequest(http.MethodGet, "/v1/destinations/6c89c356-c354-4459-b2fd-8d1260ea835c", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("token %q: status %d: %s", token, rec.Code, rec.Body)
		}
		var p problem.Problem
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Type != problem.TypeUnauthorized {
			t.Fatalf("token %q: body %s", token, rec.Body)
		}
	})
}
