package gateway_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// submissionAPISpec is FIT-Connect's Submission API, shared beside the repository.
func submissionAPISpec(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", "fit-connect", "submission-api.yaml")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("FIT-Connect Submission API spec not found at %s; skipping the contract test", path)
	}
	return path
}

// TestContract validates the gateway's answers against FIT-Connect's
// Submission API 1.1.3: the destination, key and info endpoints, the JWKS,
// and the problems they answer with.
func TestContract(t *testing.T) {
	specPath := submissionAPISpec(t)
	doc, err := openapi3.NewLoader().LoadFromFile(specPath)
	if err != nil {
		t.Fatalf("load spec: %v", err)
	}

	e := newEnv(t)
	// The spec's server is FIT-Connect's test instance; ours answers the same paths.
	doc.Servers = openapi3.Servers{{URL: e.srv.URL}}
	// The spec's own examples break its schemas (an unresolved $ref, "..."
	// for x5c); the schemas are what a response must meet.
	router, err := legacy.NewRouter(doc, openapi3.DisableExamplesValidation())
	if err != nil {
		t.Fatalf("router: %v", err)
	}

	d := e.createDestination("6c89c356-c354-4459-b2fd-8d1260ea835c", "active", "DE08311", "DE083110000001")
	sender := e.token("send:region:DE08")
	receiver := e.token("subscribe:destination:" + d.ID)
	stranger := e.token("send:region:DE09")

	tests := []struct {
		name   string
		path   string
		token  string
		status int
	}{
		{"public destination", "/v1/destinations/" + d.ID, sender, 200},
		{"private destination", "/v1/destinations/" + d.ID, receiver, 200},
		{"destination without token", "/v1/destinations/" + d.ID, "", 401},
		{"destination outside the scope", "/v1/destinations/" + d.ID, stranger, 403},
		{"unknown destination", "/v1/destinations/2f59b8c6-3206-4734-aa21-a7b2a4d92f7a", sender, 404},
		{"encryption key", "/v1/destinations/" + d.ID + "/keys/" + d.EncryptionKID, "", 200},
		{"signing key", "/v1/destinations/" + d.ID + "/keys/" + d.SigningKID, "", 200},
		{"unknown key", "/v1/destinations/" + d.ID + "/keys/unknown-kid-1", "", 404},
		{"info", "/v1/info", "", 200},
		{"jwks", "/.well-known/jwks.json", "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.do(http.MethodGet, tt.path, tt.token, "", nil)
			body := readAll(t, resp)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			req, _ := http.NewRequest(http.MethodGet, e.srv.URL+tt.path, nil)
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			route, params, err := router.FindRoute(req)
			if err != nil {
				t.Fatalf("find route: %v", err)
			}
			in := &openapi3filter.ResponseValidationInput{
				RequestValidationInput: &openapi3filter.RequestValidationInput{
					Request: req, PathParams: params, Route: route,
					Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
				},
				Status: resp.StatusCode,
				Header: resp.Header,
				Body:   io.NopCloser(bytes.NewReader(body)),
				Options: &openapi3filter.Options{
					IncludeResponseStatus: true,
					MultiError:            true,
				},
			}
			if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
				t.Errorf("response does not match the spec: %v\nbody: %s", err, body)
			}
		})
	}
}
