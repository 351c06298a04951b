package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/amtsbote/amtsbote/internal/sharedtest"
)

// routingSpecCheck returns a check of answers from the Routing API at
// base ("http://host:port/v1") against FIT-Connect's Routing API spec.
func routingSpecCheck(t *testing.T, base string) func(path string, status int, header http.Header, body []byte) {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromFile(sharedtest.Path(t, "fit-connect", "routing-api.yaml"))
	if err != nil {
		t.Fatalf("load spec: %v", err)
	}
	// The published file declares the 200 of /areas as problem+json; the
	// README documents the slip, and we answer application/json.
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			if r := op.Responses.Status(http.StatusOK); r != nil && r.Value.Content.Get("application/json") == nil {
				r.Value.Content["application/json"] = r.Value.Content["application/problem+json"]
			}
		}
	}
	doc.Servers = openapi3.Servers{{URL: base}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatalf("spec router: %v", err)
	}
	return func(path string, status int, header http.Header, body []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Fatalf("GET %s is no operation of the Routing API: %v", path, err)
		}
		in := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
			Status:                 status, Header: header, Body: io.NopCloser(bytes.NewReader(body)),
			Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
		}
		if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
			t.Errorf("GET %s: answer does not match the Routing API: %v\nbody: %s", path, err, body)
		}
	}
}

// TestDevRoutingListen starts dev with --routing-listen: there /v1/info
// answers the Routing API's version and /v1/routes and /v1/areas are
// served, each answer as the Routing API specifies it; the shared
// listener keeps answering the Submission API's version at /v1/info.
func TestDevRoutingListen(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole system")
	}
	p := startDev(t, t.TempDir(), "--routing-listen", "127.0.0.1:0")
	m := regexp.MustCompile(`Routing API alone on (http://\S+)`).FindStringSubmatch(p.out.String())
	if m == nil {
		t.Fatalf("no routing address printed: %s", p.out.String())
	}
	routing := m[1]
	check := routingSpecCheck(t, routing+"/v1")
	type version struct {
		Version struct{ Major, Minor, Patch int } `json:"version"`
	}
	info := func(base string) version {
		t.Helper()
		code, body := get(t, base+"/v1/info", "")
		var v version
		if err := json.Unmarshal(body, &v); err != nil || code != http.StatusOK {
			t.Fatalf("GET %s/v1/info = %d %s", base, code, body)
		}
		return v
	}
	if v := info(routing); v.Version.Major != 2 || v.Version.Minor != 0 || v.Version.Patch != 0 {
		t.Errorf("routing listener /v1/info = %+v, want 2.0.0", v)
	}
	if v := info(p.demo.BaseURL); v.Version.Major != 1 || v.Version.Minor != 1 {
		t.Errorf("shared listener /v1/info = %+v, want the Submission API's 1.1.x", v)
	}

	for _, path := range []string{
		"/info",
		"/routes?leikaKey=99050012000000&ars=083155003064",
		"/routes?leikaKey=99050012000000&ags=08315000",
		"/areas?areaSearchexpression=Kirchzarten",
	} {
		resp, err := http.Get(routing + "/v1" + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /v1%s = %d %s", path, resp.StatusCode, body)
		}
		check(path, resp.StatusCode, resp.Header, body)
		if strings.HasPrefix(path, "/routes") && !strings.Contains(string(body), `"destinationSignature"`) {
			t.Errorf("GET /v1%s answered no route: %s", path, body)
		}
		if strings.HasPrefix(path, "/areas") && !strings.Contains(string(body), `"Kirchzarten"`) {
			t.Errorf("GET /v1%s found no Kirchzarten: %s", path, body)
		}
	}

	// Only the Routing API: the Submission API and the operator API are
	// not on this listener.
	if code, body := get(t, routing+"/v1/destinations/"+p.demo.Destinations[0].DestinationID, token(t, p.demo, "sender")); code != http.StatusNotFound {
		t.Errorf("GET /v1/destinations on the routing listener = %d %s, want 404", code, body)
	}
}

// TestDevDataDirTakesAnOlderDirectory starts dev once, which seeds its
// hand-typed demo areas of Gebietsstand 2025-11-30, then imports the
// official 2021 directory into its data dir: the demo areas do not block
// it, and dev starts again on the official data, routing as before.
func TestDevDataDirTakesAnOlderDirectory(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole system")
	}
	gv21 := sharedtest.Data(t, "GV100AD_31122021.txt")
	dir := t.TempDir()
	first := startDev(t, dir)
	eventually(t, time.Minute, func() error {
		resp, err := http.Get(first.demo.BaseURL + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("healthz %d", resp.StatusCode)
		}
		return nil
	})
	first.stop(t)

	out, err := runCLI(t, dir, "import", "gv100ad", gv21)
	if err != nil || !strings.Contains(out, "16048 areas, 16048 added") {
		t.Fatalf("import of the 2021 directory into a dev data dir: %v\n%s", err, out)
	}
	p := startDev(t, dir)
	code, body := get(t, p.demo.BaseURL+"/v2/routes?leikaKey=99050012000000&ars=083155003064", "")
	if code != http.StatusOK || !strings.Contains(string(body), p.demo.Destinations[0].DestinationID) {
		t.Errorf("route for Kirchzarten after the import = %d %s", code, body)
	}
	code, body = get(t, p.demo.BaseURL+"/v2/areas?areaSearchexpression=Freiburg*", "")
	if code != http.StatusOK || !strings.Contains(string(body), `"6083110000000"`) {
		t.Errorf("the official directory is not searched: %d %s", code, body)
	}
}
