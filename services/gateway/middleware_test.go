package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// panickyStore is a real store whose Destination method panics, to prove
// the gateway survives a handler bug.
type panickyStore struct{ store.Store }

func (panickyStore) Destination(context.Context, string) (store.Destination, error) {
	panic("store exploded")
}

func TestPanicBecomesProblem(t *testing.T) {
	e := newEnvOn(t, panickyStore{flowtest.OpenSQLite(t)})
	tok := e.token("send:region:DE08")
	resp := e.do(http.MethodGet, "/v1/destinations/6c89c356-c354-4459-b2fd-8d1260ea835c", tok, "", nil)
	p := wantProblem(t, resp, http.StatusInternalServerError, problem.TypeInternal, "")
	if strings.Contains(p.Detail, "exploded") {
		t.Errorf("the panic value reaches the client: %q", p.Detail)
	}
	if n := strings.Count(e.logs.String(), "handler panicked"); n != 1 {
		t.Errorf("panic logged %d times, want once:\n%s", n, e.logs)
	}
	// The server still answers.
	decode[map[string]any](t, e.do(http.MethodGet, "/v1/info", "", "", nil), http.StatusOK)
}

func TestMetricsAndLogs(t *testing.T) {
	e := newEnv(t)
	d := e.createDestination("6c89c356-c354-4459-b2fd-8d1260ea835c", "active", "DE08311")
	tok := e.issuedToken("send:region:DE08")
	decode[map[string]any](t, e.do(http.MethodGet, "/v1/destinations/"+d.ID, tok, "", nil), http.StatusOK)
	readAll(t, e.do(http.MethodGet, "/v1/destinations/2f59b8c6-3206-4734-aa21-a7b2a4d92f7a", tok, "", nil))
	readAll(t, e.do(http.MethodGet, "/v1/no/such/path/"+d.ID, "", "", nil))
	decode[map[string]any](t, e.do(http.MethodGet, "/v1/info", "", "", nil), http.StatusOK)
	// A method of the client's own making is no label value of its own.
	for _, m := range []string{"X1234", "ZZTOP5678"} {
		readAll(t, e.do(m, "/", "", "", nil))
		readAll(t, e.do(m, "/v1/info", "", "", nil))
	}

	resp := e.do(http.MethodGet, "/metrics", "", "", nil)
	body := string(readAll(t, resp))
	for _, want := range []string{
		`amtsbote_http_requests_total{code="2xx",method="GET",route="/v1/destinations/{destinationId}"} 1`,
		`amtsbote_http_requests_total{code="4xx",method="GET",route="/v1/destinations/{destinationId}"} 1`,
		`amtsbote_http_requests_total{code="4xx",method="GET",route="unmatched"} 1`,
		`amtsbote_http_requests_total{code="2xx",method="POST",route="/token"} 1`,
		`amtsbote_http_request_duration_seconds_count{method="GET",route="/v1/info"} 1`,
		`amtsbote_http_request_duration_seconds_count{method="other",route="unmatched"} 4`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(body, "X1234") || strings.Contains(body, "ZZTOP") {
		t.Error("a client's method reached a metric label")
	}
	if regexp.MustCompile(`route="[^"]*[0-9a-f]{8}-[0-9a-f]{4}`).MatchString(body) {
		t.Error("a raw path with an id reached a metric label")
	}

	logs := e.logs.String()
	for _, want := range []string{`"msg":"http request"`, `"route":"/v1/destinations/{destinationId}"`, `"status":404`, `"client_id":"client-`} {
		if !strings.Contains(logs, want) {
			t.Errorf("request log lacks %s", want)
		}
	}
	if strings.Contains(logs, tok) {
		t.Error("a token was logged")
	}
}

// TestRequestID shows that every answer names its request by the trace id
// that its access log line, and every line it causes, carries: the
// caller's when it sent a traceparent, a new one otherwise.
func TestRequestID(t *testing.T) {
	e := newEnv(t)
	const caller = "0af7651916cd43dd8448eb211c80319c"
	req, err := http.NewRequest(http.MethodGet, e.srv.URL+"/v1/info", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Traceparent", "00-"+caller+"-b7ad6b7169203331-01")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	ids := []string{resp.Header.Get("X-Request-Id")}
	if ids[0] != caller {
		t.Errorf("X-Request-Id %q, want the caller's trace id %s", ids[0], caller)
	}
	for range 2 {
		resp := e.do(http.MethodGet, "/v1/destinations/2f59b8c6-3206-4734-aa21-a7b2a4d92f7a", "", "", nil)
		readAll(t, resp)
		id := resp.Header.Get("X-Request-Id")
		if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) || slices.Contains(ids, id) {
			t.Fatalf("X-Request-Id %q: want a new trace id of 32 hex digits", id)
		}
		ids = append(ids, id)
	}

	logged := map[string]string{} // trace id → path of its access log line
	for line := range strings.Lines(e.logs.String()) {
		var l struct {
			Msg, Path string
			TraceID   string `json:"trace_id"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "http request" {
			logged[l.TraceID] = l.Path
		}
	}
	for _, id := range ids {
		if logged[id] == "" {
			t.Errorf("no access log line has trace_id %s:\n%s", id, e.logs)
		}
	}
}

func TestHealth(t *testing.T) {
	st := flowtest.OpenSQLite(t)
	e := newEnvOn(t, st)
	for _, path := range []string{"/healthz", "/readyz"} {
		if resp := e.do(http.MethodGet, path, "", "", nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s with a healthy store: %d", path, resp.StatusCode)
		}
	}
	must(t, st.Close())
	// Alive, but not ready without its store.
	if resp := e.do(http.MethodGet, "/healthz", "", "", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz without a store: %d, want 200", resp.StatusCode)
	}
	wantProblem(t, e.do(http.MethodGet, "/readyz", "", "", nil), http.StatusServiceUnavailable, problem.TypeUnavailable, "")
}

// TestRedirectToCanonicalPath checks that a path the mux cleans (a base
// URL with a trailing slash makes "//v1/…") is redirected with its
// location alone, not the mux's HTML page.
func TestRedirectToCanonicalPath(t *testing.T) {
	e := newEnv(t)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(e.srv.URL + "//v1/info")
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode < 300 || resp.StatusCode > 399 || resp.Header.Get("Location") != "/v1/info" {
		t.Fatalf("status %d, location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if len(body) != 0 || resp.Header.Get("Content-Type") != "" {
		t.Errorf("body %q of type %q, want none", body, resp.Header.Get("Content-Type"))
	}
	// Followed, it answers.
	decode[map[string]any](t, e.do(http.MethodGet, "//v1/info", "", "", nil), http.StatusOK)
}
