package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/scope"
	"github.com/amtsbote/amtsbote/services/gateway"
)

// Amtsbote's own API is described in schemas/openapi.yaml: the operator
// API, the token endpoint, health, metrics and the extensions to
// FIT-Connect's operations. These tests hold the gateway to it: every route
// it serves is described there or is FIT-Connect's, and real answers match
// the description.

// loadOpenAPI loads schemas/openapi.yaml from the module root.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "..", "schemas", "openapi.yaml")
	doc, err := openapi3.NewLoader().LoadFromFile(path)
	if err != nil {
		t.Fatalf("load schemas/openapi.yaml: %v", err)
	}
	return doc
}

func TestOpenAPIDocument(t *testing.T) {
	doc := loadOpenAPI(t)
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi %q, want 3.0.3", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background(), openapi3.EnableExamplesValidation()); err != nil {
		t.Fatalf("schemas/openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	// The operator API is the admin scope's, every operation of it.
	for path, item := range doc.Paths.Map() {
		if !strings.HasPrefix(path, "/admin/") {
			continue
		}
		for method, op := range item.Operations() {
			if !needsAdmin(op) {
				t.Errorf("%s %s does not require the scope %s", method, path, scope.Admin)
			}
		}
	}
}

// needsAdmin reports whether op's only security requirement is the admin scope.
func needsAdmin(op *openapi3.Operation) bool {
	if op.Security == nil || len(*op.Security) != 1 {
		return false
	}
	scopes, ok := (*op.Security)[0]["oauth2"]
	return ok && len((*op.Security)[0]) == 1 && slices.Equal(scopes, []string{scope.Admin})
}

// fitConnectRoutes are the routes whose contract is FIT-Connect's, with
// the specification file and path that define each. Every other route
// the gateway serves is Amtsbote's own and must be described in
// schemas/openapi.yaml.
var fitConnectRoutes = map[string]struct{ spec, path string }{
	"GET /v1/destinations":                                          {"submission-api.yaml", "/v1/destinations"},
	"POST /v1/destinations":                                         {"submission-api.yaml", "/v1/destinations"},
	"GET /v1/destinations/{destinationId}":                          {"submission-api.yaml", "/v1/destinations/{destinationId}"},
	"PUT /v1/destinations/{destinationId}":                          {"submission-api.yaml", "/v1/destinations/{destinationId}"},
	"PATCH /v1/destinations/{destinationId}":                        {"submission-api.yaml", "/v1/destinations/{destinationId}"},
	"DELETE /v1/destinations/{destinationId}":                       {"submission-api.yaml", "/v1/destinations/{destinationId}"},
	"POST /v1/destinations/{destinationId}/keys":                    {"submission-api.yaml", "/v1/destinations/{destinationId}/keys"},
	"GET /v1/destinations/{destinationId}/keys/{keyId}":             {"submission-api.yaml", "/v1/destinations/{destinationId}/keys/{keyId}"},
	"POST /v1/submissions":                                          {"submission-api.yaml", "/v1/submissions"},
	"GET /v1/submissions":                                           {"submission-api.yaml", "/v1/submissions"},
	"GET /v1/submissions/{submissionId}":                            {"submission-api.yaml", "/v1/submissions/{submissionId}"},
	"PUT /v1/submissions/{submissionId}":                            {"submission-api.yaml", "/v1/submissions/{submissionId}"},
	"GET /v1/submissions/{submissionId}/attachments/{attachmentId}": {"submission-api.yaml", "/v1/submissions/{submissionId}/attachments/{attachmentId}"},
	"PUT /v1/submissions/{submissionId}/attachments/{attachmentId}": {"submission-api.yaml", "/v1/submissions/{submissionId}/attachments/{attachmentId}"},
	"GET /v1/cases/{caseId}/events":                                 {"submission-api.yaml", "/v1/cases/{caseId}/events"},
	"POST /v1/cases/{caseId}/events":                                {"submission-api.yaml", "/v1/cases/{caseId}/events"},
	"GET /v1/info":                                                  {"submission-api.yaml", "/v1/info"},
	"GET /.well-known/jwks.json":                                    {"submission-api.yaml", "/.well-known/jwks.json"},
	"GET /v1/routes":                                                {"routing-api.yaml", "/routes"},
	"GET /v2/routes":                                                {"routing-api.yaml", "/routes"},
	"GET /v1/areas":                                                 {"routing-api.yaml", "/areas"},
	"GET /v2/areas":                                                 {"routing-api.yaml", "/areas"},
	"GET /v2/info":                                                  {"routing-api.yaml", "/info"},
}

// TestOpenAPIRoutes holds the routes the gateway registers against the
// description: a route that is not FIT-Connect's must be described with
// its method, and a described operation must be served.
func TestOpenAPIRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	e := newEnv(t)
	patterns := gateway.RoutePatterns(e.gw)
	if len(patterns) == 0 {
		t.Fatal("the gateway recorded no routes")
	}
	served := map[string]bool{}
	for _, p := range patterns {
		method, path, ok := strings.Cut(p, " ")
		if !ok || method == "" || !strings.HasPrefix(path, "/") {
			t.Errorf("route %q: register every route with a method and a path, no host", p)
			continue
		}
		served[p] = true
		if _, ok := fitConnectRoutes[p]; ok {
			continue
		}
		item := doc.Paths.Value(path)
		if item == nil || item.GetOperation(method) == nil {
			t.Errorf("the gateway serves %s, which schemas/openapi.yaml does not describe", p)
		}
	}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if !served[method+" "+path] {
				t.Errorf("schemas/openapi.yaml describes %s %s, which the gateway does not serve", method, path)
			}
		}
	}
	for p := range fitConnectRoutes {
		if !served[p] {
			t.Errorf("%s is listed as FIT-Connect's, but the gateway does not serve it", p)
		}
	}

	// The list cannot hide a route of our own: each entry is an operation
	// of FIT-Connect's specifications.
	t.Run("FIT-Connect's routes are in its specifications", func(t *testing.T) {
		specs := map[string]*openapi3.T{}
		for _, name := range []string{"submission-api.yaml", "routing-api.yaml"} {
			path := fitConnectSpec(t, name)
			doc, err := openapi3.NewLoader().LoadFromFile(path)
			if err != nil {
				t.Fatalf("load %s: %v", name, err)
			}
			specs[name] = doc
		}
		for p, ref := range fitConnectRoutes {
			method, _, _ := strings.Cut(p, " ")
			item := specs[ref.spec].Paths.Value(ref.path)
			if item == nil || item.GetOperation(method) == nil {
				t.Errorf("%s: FIT-Connect's %s has no operation %s %s", p, ref.spec, method, ref.path)
			}
		}
	})
}

// fitConnectSpec returns the path of one of FIT-Connect's specifications,
// shared beside the repository; the test skips without them.
func fitConnectSpec(t *testing.T, name string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", "fit-connect", name)
	if _, err := os.Stat(path); err != nil {
		t.Skipf("FIT-Connect's %s not found at %s", name, path)
	}
	return path
}

// ownSpec validates exchanges with a gateway against schemas/openapi.yaml.
type ownSpec struct {
	e      *env
	router routers.Router
}

func newOwnSpec(t *testing.T, e *env) *ownSpec {
	t.Helper()
	doc := loadOpenAPI(t)
	doc.Servers = openapi3.Servers{{URL: e.srv.URL}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	return &ownSpec{e: e, router: router}
}

// call sends a request (header holds name, value pairs), checks the
// answer's status and returns its body. The answer must match the
// description, status included; a request meant to succeed (status below
// 400) must match it too.
func (s *ownSpec) call(t *testing.T, method, path, token, contentType string, body []byte, status int, header ...string) []byte {
	t.Helper()
	newReq := func() *http.Request {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequest(method, s.e.srv.URL+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		return req
	}
	resp, err := s.e.srv.Client().Do(newReq())
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: read answer: %v", method, path, err)
	}
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, status, got)
	}

	req := newReq()
	route, params, err := s.router.FindRoute(req)
	if err != nil {
		t.Fatalf("%s %s is no operation of schemas/openapi.yaml: %v", method, path, err)
	}
	in := &openapi3filter.RequestValidationInput{
		Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
	}
	if status < 400 {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			t.Errorf("%s %s: request does not match schemas/openapi.yaml: %v\nbody: %.2000s", method, path, err, body)
		}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(got)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s %s: %d answer does not match schemas/openapi.yaml: %v\nbody: %.2000s", method, path, status, err, got)
	}
	return got
}

func (s *ownSpec) callJSON(t *testing.T, method, path, token string, v any, status int, header ...string) []byte {
	t.Helper()
	body, ok := v.([]byte)
	if !ok {
		var err error
		if body, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	return s.call(t, method, path, token, "application/json", body, status, header...)
}

// wantType checks the problem type of an answer body.
func wantType(t *testing.T, body []byte, typ string) map[string]any {
	t.Helper()
	var p map[string]any
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("decode problem %s: %v", body, err)
	}
	if p["type"] != typ {
		t.Errorf("type %v, want %s (%s)", p["type"], typ, body)
	}
	return p
}

// TestOpenAPIOperatorSecurity sends every described operator operation
// without a token and with a token lacking the admin scope: the 401 and
// 403 answers are as described.
func TestOpenAPIOperatorSecurity(t *testing.T) {
	e := newEnv(t)
	s := newOwnSpec(t, e)
	sender := e.token("send:region:DE08")
	params := strings.NewReplacer("{destinationId}", "6c89c356-c354-4459-b2fd-8d1260ea835c", "{clientId}", "portal-1")
	doc := loadOpenAPI(t)
	n := 0
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if !needsAdmin(op) {
				continue
			}
			n++
			p := params.Replace(path)
			t.Run(method+" "+path, func(t *testing.T) {
				wantType(t, s.call(t, method, p, "", "", nil, http.StatusUnauthorized), problem.TypeUnauthorized)
				wantType(t, s.call(t, method, p, sender, "", nil, http.StatusForbidden), problem.TypeForbidden)
			})
		}
	}
	if n == 0 {
		t.Fatal("schemas/openapi.yaml describes no operator operation")
	}
}

// TestOpenAPIOperatorAnswers walks the operator API, the token endpoint,
// health and metrics through real requests, each request and answer
// validated against the description.
func TestOpenAPIOperatorAnswers(t *testing.T) {
	e := newEnv(t)
	s := newOwnSpec(t, e)
	admin := e.adminToken()
	const id = "3f2b7c1e-9a4d-4e8b-b6f1-2c5d8e7a9b10"
	dest := "/admin/v1/destinations/" + id

	t.Run("token endpoint", func(t *testing.T) {
		secret := e.client("portal-1", false, "send:region:DE08")
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"portal-1"}, "client_secret": {secret}}
		s.call(t, http.MethodPost, "/token", "", "application/x-www-form-urlencoded", []byte(form.Encode()), http.StatusOK)
		form.Set("grant_type", "password")
		p := wantType(t, s.call(t, http.MethodPost, "/token", "", "application/x-www-form-urlencoded", []byte(form.Encode()), http.StatusBadRequest), problem.TypeInvalidRequest)
		if p["error"] != "unsupported_grant_type" {
			t.Errorf("error %v, want unsupported_grant_type", p["error"])
		}
		form.Set("grant_type", "client_credentials")
		form.Set("client_secret", "wrong")
		s.call(t, http.MethodPost, "/token", "", "application/x-www-form-urlencoded", []byte(form.Encode()), http.StatusUnauthorized)
	})

	t.Run("health and metrics", func(t *testing.T) {
		s.call(t, http.MethodGet, "/healthz", "", "", nil, http.StatusOK)
		s.call(t, http.MethodGet, "/metrics", "", "", nil, http.StatusOK)
	})

	body := destinationBody(t, id, []string{"DE08311"}, "enc-3f2b7c1e", "sig-3f2b7c1e")
	body["status"] = "active"
	svc := body["services"].([]any)[0].(map[string]any)
	svc["validFrom"] = e.clock.Now().Add(-time.Hour).Format(time.RFC3339)

	t.Run("destinations", func(t *testing.T) {
		s.callJSON(t, http.MethodPost, "/admin/v1/destinations", admin, body, http.StatusCreated)
		wantType(t, s.callJSON(t, http.MethodPost, "/admin/v1/destinations", admin, body, http.StatusConflict), problem.TypeConflict)
		unknown := destinationBody(t, "", []string{"DE08311"}, "enc-unknown1", "sig-unknown1")
		unknown["region"] = "DE08311"
		wantType(t, s.callJSON(t, http.MethodPost, "/admin/v1/destinations", admin, unknown, http.StatusBadRequest), problem.TypeUnknownField)

		s.call(t, http.MethodGet, "/admin/v1/destinations", admin, "", nil, http.StatusOK)
		wantType(t, s.call(t, http.MethodGet, "/admin/v1/destinations?limit=0", admin, "", nil, http.StatusBadRequest), problem.TypeInvalidRequest)
		var got map[string]any
		must(t, json.Unmarshal(s.call(t, http.MethodGet, dest, admin, "", nil, http.StatusOK), &got))
		if got["homeRegion"] != "08311" || len(got["keys"].([]any)) != 2 {
			t.Errorf("admin view %v: want homeRegion 08311 and two keys", got)
		}
		wantType(t, s.call(t, http.MethodGet, "/admin/v1/destinations/not-a-uuid", admin, "", nil, http.StatusNotFound), problem.TypeDestinationNotFound)
		wantType(t, s.call(t, http.MethodGet, "/admin/v1/destinations/2f59b8c6-3206-4734-aa21-a7b2a4d92f7a", admin, "", nil, http.StatusNotFound), problem.TypeDestinationNotFound)

		s.callJSON(t, http.MethodPatch, dest, admin, map[string]any{"status": "inactive"}, http.StatusOK)
		wantType(t, s.callJSON(t, http.MethodPatch, dest, admin, map[string]any{"status": "created"}, http.StatusBadRequest), problem.TypeInvalidValue)
		put := map[string]any{"status": "active", "homeRegion": "08311"}
		for _, k := range []string{"contactInformation", "services", "callback", "encryptionKid", "metadataVersions"} {
			put[k] = body[k]
		}
		s.callJSON(t, http.MethodPut, dest, admin, put, http.StatusOK)
		s.call(t, http.MethodPost, dest+"/deactivate", admin, "", nil, http.StatusOK)
		s.call(t, http.MethodPost, dest+"/activate", admin, "", nil, http.StatusOK)

		key := publicJWK(t, keyPair(t, encKey1), "enc-3f2b7c1e-2")
		key["roll"] = true
		s.callJSON(t, http.MethodPost, dest+"/keys", admin, key, http.StatusCreated)
		wantType(t, s.callJSON(t, http.MethodPost, dest+"/keys", admin, key, http.StatusConflict), problem.TypeConflict)

		s.call(t, http.MethodGet, "/admin/v1/audit?object=destination:"+id, admin, "", nil, http.StatusOK)
	})

	t.Run("validity window on FIT-Connect's destination", func(t *testing.T) {
		var got struct {
			Services []map[string]any `json:"services"`
		}
		must(t, json.Unmarshal(s.call(t, http.MethodGet, "/v1/destinations/"+id, admin, "", nil, http.StatusOK), &got))
		if len(got.Services) != 1 || got.Services[0]["validFrom"] == nil {
			t.Errorf("services %v: want the validity window", got.Services)
		}
	})

	t.Run("clients", func(t *testing.T) {
		client := map[string]any{
			"clientId": "portal-bw", "name": "Portal Baden-Württemberg",
			"scopes": []string{"send:region:DE08311+send:service:" + serviceA, "subscribe:destination:" + id},
		}
		s.callJSON(t, http.MethodPost, "/admin/v1/clients", admin, client, http.StatusCreated)
		wantType(t, s.callJSON(t, http.MethodPost, "/admin/v1/clients", admin, client, http.StatusConflict), problem.TypeConflict)
		s.call(t, http.MethodGet, "/admin/v1/clients", admin, "", nil, http.StatusOK)
		s.call(t, http.MethodGet, "/admin/v1/clients/portal-bw", admin, "", nil, http.StatusOK)
		wantType(t, s.call(t, http.MethodGet, "/admin/v1/clients/nobody", admin, "", nil, http.StatusNotFound), problem.TypeNotFound)
		s.call(t, http.MethodGet, "/admin/v1/audit", admin, "", nil, http.StatusOK)
	})

	t.Run("reference data", func(t *testing.T) {
		wantType(t, s.call(t, http.MethodGet, "/admin/v1/coverage", admin, "", nil, http.StatusBadRequest), problem.TypeInvalidRequest)
		wantType(t, s.call(t, http.MethodGet, "/admin/v1/coverage?leikaKey="+leikaA, admin, "", nil, http.StatusConflict), problem.TypeConflict)
		s.call(t, http.MethodPost, "/admin/v1/import/leika", admin, "text/csv",
			[]byte("leika_key,name\n"+leikaA+",Gewerbeanzeige\n"), http.StatusOK)
		s.call(t, http.MethodPost, "/admin/v1/import/plz", admin, "text/csv",
			[]byte("plz,ags,ars,name\n79098,08311000,083110000000,Freiburg im Breisgau\n"), http.StatusOK)
		p := wantType(t, s.call(t, http.MethodPost, "/admin/v1/import/plz", admin, "text/csv",
			[]byte("plz,ags,ars,name\n7909,08311000,083110000000,Freiburg\n"), http.StatusBadRequest), problem.TypeInvalidValue)
		if p["line"] != float64(2) {
			t.Errorf("problem %v does not name line 2", p)
		}
	})

	t.Run("area directory and coverage", func(t *testing.T) {
		lines := gv100adLines(t, 20)
		s.call(t, http.MethodPost, "/admin/v1/import/gv100ad", admin, "text/plain", []byte(strings.Join(lines, "\n")+"\n"), http.StatusOK)
		s.call(t, http.MethodGet, "/admin/v1/coverage?leikaKey="+leikaA, admin, "", nil, http.StatusOK)
	})
}

// TestOpenAPISubmissionExtensions creates submissions with Amtsbote's
// additions to FIT-Connect's create-submission: region and
// Idempotency-Key.
func TestOpenAPISubmissionExtensions(t *testing.T) {
	f := newFlowEnv(t, flowtest.OpenSQLite(t))
	s := newOwnSpec(t, f.env)
	d := f.createDestination("6c89c356-c354-4459-b2fd-8d1260ea835c", "active", "DE08311")
	sender := f.token("send:region:DE08")

	body := createBody(d)
	body["region"] = "DE083110000000"
	first := s.callJSON(t, http.MethodPost, "/v1/submissions", sender, body, http.StatusCreated, "Idempotency-Key", "antrag-4711")
	again := s.callJSON(t, http.MethodPost, "/v1/submissions", sender, body, http.StatusCreated, "Idempotency-Key", "antrag-4711")
	if !bytes.Equal(first, again) {
		t.Errorf("retry answered %s, first answer %s", again, first)
	}
	other := createBody(d)
	wantType(t, s.callJSON(t, http.MethodPost, "/v1/submissions", sender, other, http.StatusUnprocessableEntity, "Idempotency-Key", "antrag-4711"),
		problem.TypeIdempotencyMismatch)

	body["region"] = "DE083150000000"
	wantType(t, s.callJSON(t, http.MethodPost, "/v1/submissions", sender, body, http.StatusUnprocessableEntity), problem.TypeRegionNotServed)
	body["region"] = "DE091620000000"
	wantType(t, s.callJSON(t, http.MethodPost, "/v1/submissions", sender, body, http.StatusForbidden), problem.TypeForbidden)
	wantType(t, s.callJSON(t, http.MethodPost, "/v1/submissions", sender, other, http.StatusBadRequest, "Idempotency-Key", "antrag 4711"),
		problem.TypeInvalidRequest)
}
