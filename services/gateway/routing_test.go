package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	gojose "github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/routesync"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/pkg/store/storetest"
	"github.com/amtsbote/amtsbote/services/gateway"
	adminapi "github.com/amtsbote/amtsbote/services/gateway/admin"
)

const leikaA = "99108008000000" // serviceA's key

// routingSpec loads FIT-Connect's Routing API and returns routers for its
// two prefixes on the env's server.
//
// One slip of the published file is mended, as documented in the README:
// /areas declares its 200 answer as application/problem+json (we answer
// application/json, the same schema).
func routingSpec(t *testing.T, e *env) map[string]routers.Router {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", "fit-connect", "routing-api.yaml")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("FIT-Connect Routing API spec not found at %s", path)
	}
	out := map[string]routers.Router{}
	for _, prefix := range []string{"/v1", "/v2"} {
		doc, err := openapi3.NewLoader().LoadFromFile(path)
		if err != nil {
			t.Fatalf("load spec: %v", err)
		}
		for _, item := range doc.Paths.Map() {
			for _, op := range item.Operations() {
				for code, resp := range op.Responses.Map() {
					c := resp.Value.Content
					if code == "200" && c.Get("application/problem+json") != nil && c.Get("application/json") == nil {
						c["application/json"] = c["application/problem+json"]
					}
				}
			}
		}
		doc.Servers = openapi3.Servers{{URL: e.srv.URL + prefix}}
		r, err := legacy.NewRouter(doc)
		if err != nil {
			t.Fatalf("router: %v", err)
		}
		out[prefix] = r
	}
	return out
}

// validate checks an answer to GET path against the spec.
func validate(t *testing.T, specs map[string]routers.Router, e *env, path string, resp *http.Response, body []byte) {
	t.Helper()
	router := specs[path[:3]]
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
	route, params, err := router.FindRoute(req)
	if err != nil {
		t.Fatalf("find route %s: %v", path, err)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: resp.StatusCode != 422, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("GET %s: answer does not match the Routing API: %v\nbody: %s", path, err, body)
	}
}

type routeAnswer struct {
	Count      int `json:"count"`
	Offset     int `json:"offset"`
	TotalCount int `json:"totalCount"`
	Routes     []struct {
		DestinationID        string `json:"destinationId"`
		DestinationSignature string `json:"destinationSignature"`
		DestinationName      string `json:"destinationName"`
		DestinationShortName string `json:"destinationShortName"`
	} `json:"routes"`
}

// route asks for the route of leikaKey at the area query q, checks the
// answer against the spec and the signature against the JWKS, and returns
// the destination id ("" for none).
func (e *env) route(specs map[string]routers.Router, prefix, q string) string {
	e.t.Helper()
	path := prefix + "/routes?leikaKey=" + leikaA + "&" + q
	resp := e.do(http.MethodGet, path, "", "", nil)
	body := readAll(e.t, resp)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	validate(e.t, specs, e, path, resp, body)
	var a routeAnswer
	must(e.t, json.Unmarshal(body, &a))
	if a.TotalCount != len(a.Routes) || a.Count != len(a.Routes) || len(a.Routes) > 1 {
		e.t.Fatalf("GET %s: %s", path, body)
	}
	if len(a.Routes) == 0 {
		return ""
	}
	r := a.Routes[0]
	claims := e.verifyRoute(r.DestinationSignature)
	if claims.DestinationID != r.DestinationID || claims.Issuer != e.srv.URL || claims.SubmissionHost != strings.TrimPrefix(e.srv.URL, "http://") ||
		len(claims.Services) != 1 || len(claims.Services[0].LeistungIDs) != 1 || claims.Services[0].LeistungIDs[0] != "urn:de:fim:leika:leistung:"+leikaA ||
		len(claims.Services[0].GebietIDs) == 0 || claims.JTI == "" || claims.IssuedAt == 0 {
		e.t.Errorf("signature claims %+v for route %+v", claims, r)
	}
	for _, g := range claims.Services[0].GebietIDs {
		if !strings.HasPrefix(g, "urn:de:bund:destatis:bevoelkerungsstatistik:schluessel:rs:") {
			e.t.Errorf("gebietID %q", g)
		}
	}
	if r.DestinationName == "" {
		e.t.Errorf("route without a name: %s", body)
	}
	return r.DestinationID
}

type routeClaims struct {
	SubmissionHost string `json:"submissionHost"`
	Issuer         string `json:"iss"`
	Services       []struct {
		GebietIDs   []string `json:"gebietIDs"`
		LeistungIDs []string `json:"leistungIDs"`
	} `json:"services"`
	DestinationID string `json:"destinationId"`
	IssuedAt      int64  `json:"iat"`
	JTI           string `json:"jti"`
}

// verifyRoute verifies a destinationSignature with the gateway's published
// JWKS and returns its claims.
func (e *env) verifyRoute(sig string) routeClaims {
	e.t.Helper()
	resp := e.do(http.MethodGet, "/.well-known/jwks.json", "", "", nil)
	var set gojose.JSONWebKeySet
	must(e.t, json.Unmarshal(readAll(e.t, resp), &set))
	jws, err := gojose.ParseSigned(sig, []gojose.SignatureAlgorithm{gojose.PS512})
	if err != nil {
		e.t.Fatalf("parse signature: %v", err)
	}
	h := jws.Signatures[0].Header
	keys := set.Key(h.KeyID)
	if len(keys) != 1 || h.ExtraHeaders["typ"] != "JWT" {
		e.t.Fatalf("signature header %+v: kid not in the JWKS or typ not JWT", h)
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		e.t.Fatalf("verify signature: %v", err)
	}
	var c routeClaims
	must(e.t, json.Unmarshal(payload, &c))
	return c
}

// importFile posts a reference file to an admin import endpoint.
func (e *env) importFile(admin, kind, name string) map[string]any {
	e.t.Helper()
	raw, err := os.ReadFile(storetest.DataFile(e.t, name))
	must(e.t, err)
	resp := e.do(http.MethodPost, "/admin/v1/import/"+kind, admin, "text/plain", raw)
	return decode[map[string]any](e.t, resp, http.StatusOK)
}

// activeDestination creates an active destination for serviceA through the
// admin API; validFrom may be zero.
func (e *env) activeDestination(admin, id string, validFrom time.Time, regions ...string) {
	e.t.Helper()
	body := destinationBody(e.t, id, regions, "enc-"+id[:8], "sig-"+id[:8])
	body["status"] = "active"
	body["contactInformation"].(map[string]any)["legalName"] = "Behörde " + id[:8]
	if !validFrom.IsZero() {
		body["services"].([]any)[0].(map[string]any)["validFrom"] = validFrom.Format(time.RFC3339)
	}
	resp := e.doJSON(http.MethodPost, "/admin/v1/destinations", admin, body)
	if resp.StatusCode != http.StatusCreated {
		e.t.Fatalf("create %s: %d %s", id, resp.StatusCode, readAll(e.t, resp))
	}
	if resp.Header.Get(adminapi.RevisionHeader) == "" {
		e.t.Errorf("create %s: no %s header", id, adminapi.RevisionHeader)
	}
}

// Destinations of the real-data test, by what they serve.
const (
	destLandBW    = "10000000-0000-4000-8000-000000000008"
	destKreisBH   = "20000000-0000-4000-8000-000000008315"
	destMuellheim = "30000000-0000-4000-8000-083155012074"
	destAuggen    = "40000000-0000-4000-8000-083155012004"
	destFreiburg  = "50000000-0000-4000-8000-000000008311"
	destBerlin    = "60000000-0000-4000-8000-000000000011"
	destHamburg   = "70000000-0000-4000-8000-000000002000"
)

func TestRoutingOverTheRealDirectory(t *testing.T) {
	storetest.DataFile(t, "GV100AD_30112025.txt")
	for _, b := range flowtest.Backends() {
		t.Run(b.Name, func(t *testing.T) { testRoutingOverTheRealDirectory(t, b) })
	}
}

func testRoutingOverTheRealDirectory(t *testing.T, b flowtest.Backend) {
	e := newEnvOn(t, b.Open(t))
	specs := routingSpec(t, e)
	admin := e.adminToken()

	// The 2021 directory, then the 2025 one: names updated, keys added,
	// vanished keys retired.
	first := e.importFile(admin, "gv100ad", "GV100AD_31122021.txt")
	second := e.importFile(admin, "gv100ad", "GV100AD_30112025.txt")
	if first["added"].(float64) != 16048 || second["retired"].(float64) != 92 || second["added"].(float64) != 32 {
		t.Fatalf("imports: %v then %v", first, second)
	}
	e.importFile(admin, "leika", "leika.csv")
	e.importFile(admin, "plz", "plz.csv")

	takeover := e.clock.Now().Add(time.Hour)
	e.activeDestination(admin, destLandBW, time.Time{}, "DE08")
	e.activeDestination(admin, destKreisBH, time.Time{}, "DE08315")
	e.activeDestination(admin, destMuellheim, time.Time{}, "DE083155012074")
	e.activeDestination(admin, destAuggen, takeover, "DE083155012004")
	e.activeDestination(admin, destFreiburg, time.Time{}, "DE08311")
	e.activeDestination(admin, destBerlin, time.Time{}, "DE11")
	e.activeDestination(admin, destHamburg, time.Time{}, "DE02000")

	tests := []struct {
		name, query, want string
	}{
		{"a Gemeinde route wins over its Kreis route", "ars=083155012074", destMuellheim},
		{"a Gemeinde without a route falls back to its Kreis", "ars=083155012004", destKreisBH},
		{"a Gemeinde without Kreis route falls back to its Land", "ars=081110000000", destLandBW},
		{"kreisfreie Stadt by 12-digit ARS", "ars=083110000000", destFreiburg},
		{"kreisfreie Stadt as Kreis", "ars=08311", destFreiburg},
		{"kreisfreie Stadt by AGS", "ags=08311000", destFreiburg},
		{"Berlin", "ars=110000000000", destBerlin},
		{"Berlin by AGS", "ags=11000000", destBerlin},
		{"Hamburg", "ars=020000000000", destHamburg},
		{"Hamburg as Land has no Land route", "ars=02", ""},
		{"Land", "ars=08", destLandBW},
		{"Regierungsbezirk", "ars=083", destLandBW},
		{"Gemeindeverband", "ars=083155012", destKreisBH},
		{"a Land without routes", "ars=091620000000", ""},
		{"Gemeinde by areaId", "areaId=6083155012074", destMuellheim},
		{"Kreis by areaId", "areaId=4083110000000", destFreiburg},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, prefix := range []string{"/v1", "/v2"} {
				if got := e.route(specs, prefix, tt.query); got != tt.want {
					t.Errorf("%s/routes?%s = %q, want %q", prefix, tt.query, got, tt.want)
				}
			}
		})
	}

	t.Run("a route with a future validity takes over exactly at its start", func(t *testing.T) {
		delta := takeover.Sub(e.clock.Now())
		e.clock.Advance(delta - time.Second)
		if got := e.route(specs, "/v1", "ars=083155012004"); got != destKreisBH {
			t.Errorf("a second before: %s", got)
		}
		e.clock.Advance(time.Second)
		if got := e.route(specs, "/v1", "ars=083155012004"); got != destAuggen {
			t.Errorf("at the start: %s", got)
		}
	})

	t.Run("area search leads to a route", func(t *testing.T) {
		path := "/v2/areas?areaSearchexpression=M%C3%BCllheim&areaSearchexpression=79379"
		resp := e.do(http.MethodGet, path, "", "", nil)
		body := readAll(t, resp)
		validate(t, specs, e, path, resp, body)
		var res struct {
			TotalCount int `json:"totalCount"`
			Areas      []struct{ ID, Name, Type string }
		}
		must(t, json.Unmarshal(body, &res))
		if res.TotalCount != 1 || res.Areas[0].ID != "6083155012074" || res.Areas[0].Type != "Stadt" {
			t.Fatalf("areas: %s", body)
		}
		if got := e.route(specs, "/v2", "areaId="+res.Areas[0].ID); got != destMuellheim {
			t.Errorf("route of the area found: %s", got)
		}
	})

	t.Run("a retired ARS names its import date", func(t *testing.T) {
		d21 := readDir(t, "GV100AD_31122021.txt")
		d25 := readDir(t, "GV100AD_30112025.txt")
		_, removed := ars.Diff(d21, d25)
		var gone ars.Area
		for _, a := range removed {
			if a.Level == ars.Gemeinde {
				gone = a
				break
			}
		}
		path := "/v1/routes?leikaKey=" + leikaA + "&ars=" + gone.ARS
		resp := e.do(http.MethodGet, path, "", "", nil)
		p := noRouteReason(t, resp, "ars")
		today := time.Now().UTC().Format(time.DateOnly)
		if !strings.Contains(p.Detail, today) || !strings.Contains(p.Detail, "2025-11-30") || p.Extra["retired"] != today {
			t.Errorf("retired ARS %s: %+v", gone.ARS, p)
		}
	})

	t.Run("resolutions are counted by level", func(t *testing.T) {
		body := string(readAll(t, e.do(http.MethodGet, "/metrics", "", "", nil)))
		// The lookups above matched at each of these levels at least once.
		for _, level := range []string{"gemeinde", "kreis", "land", "none"} {
			series := `amtsbote_route_resolutions_total{level="` + level + `"} `
			i := strings.Index(body, series)
			if i < 0 {
				t.Errorf("no resolutions at level %s in /metrics", level)
				continue
			}
			value, _, _ := strings.Cut(body[i+len(series):], "\n")
			if n, err := strconv.ParseFloat(value, 64); err != nil || n < 1 {
				t.Errorf("resolutions at level %s: %q, want at least 1", level, value)
			}
		}
	})

	t.Run("a LeiKa key neither catalogued nor routed", func(t *testing.T) {
		resp := e.do(http.MethodGet, "/v2/routes?leikaKey=99999999999999&ars=08311", "", "", nil)
		noRouteReason(t, resp, "leikaKey")
	})

	t.Run("coverage matches an independent count", func(t *testing.T) {
		// The clock moved past the first token's lifetime.
		resp := e.do(http.MethodGet, "/admin/v1/coverage?leikaKey="+leikaA, e.adminToken(), "", nil)
		c := decode[coverageAnswer](t, resp, http.StatusOK)
		d := readDir(t, "GV100AD_30112025.txt")
		want := map[string][4]int{}
		for _, g := range d.Areas(ars.Gemeinde) {
			w := want[g.ARS[:2]]
			w[0]++
			w[2] += g.Population
			// Every Gemeinde of BW, Berlin and Hamburg has a route.
			if g.ARS[:2] == "08" || g.ARS[:2] == "11" || g.ARS[:5] == "02000" {
				w[1]++
				w[3] += g.Population
			}
			want[g.ARS[:2]] = w
		}
		if len(c.Lands) != 16 || c.Population != 83577140 {
			t.Fatalf("coverage: %d Länder, %d people", len(c.Lands), c.Population)
		}
		for _, l := range c.Lands {
			w := want[l.Land]
			if l.Gemeinden != w[0] || l.Covered != w[1] || l.Population != w[2] || l.CoveredPopulation != w[3] || len(l.Uncovered) != w[0]-w[1] {
				t.Errorf("Land %s: %d/%d Gemeinden, %d/%d people; want %v", l.Land, l.Covered, l.Gemeinden, l.CoveredPopulation, l.Population, w)
			}
		}
	})
}

type coverageAnswer struct {
	Gemeinden, Covered, Population, CoveredPopulation int
	Lands                                             []struct {
		Land                                              string
		Gemeinden, Covered, Population, CoveredPopulation int
		Uncovered                                         []struct{ ARS string }
	}
}

func readDir(t *testing.T, name string) *ars.Directory {
	t.Helper()
	f, err := os.Open(storetest.DataFile(t, name))
	must(t, err)
	defer f.Close()
	d, err := ars.ParseGV100AD(f)
	must(t, err)
	return d
}

// smallDirectory imports a few real areas straight into the store: a Land,
// a kreisfreie Stadt, a Landkreis with a Gemeinde, and a Gemeinde retired
// by a later directory.
func (e *env) smallDirectory() {
	e.t.Helper()
	ref := e.st.(store.Reference)
	ctx := context.Background()
	area := func(a string, l ars.Level, kind ars.Kind, name string, pop int) ars.Area {
		x := ars.Area{ARS: a, Level: l, Kind: kind, Name: name, Population: pop}
		switch l {
		case ars.Gemeinde:
			x.AGS = a[:5] + a[9:]
		case ars.Land, ars.Kreis:
			x.AGS = a[:8]
		}
		return x
	}
	areas := []ars.Area{
		area("080000000000", ars.Land, 0, "Baden-Württemberg", 0),
		area("083110000000", ars.Kreis, ars.KreisfreieStadt, "Freiburg im Breisgau, Stadt", 0),
		area("083110000000", ars.Gemeinde, ars.KreisfreieStadtGemeinde, "Freiburg im Breisgau, Stadt", 237460),
		area("083150000000", ars.Kreis, ars.Landkreis, "Breisgau-Hochschwarzwald", 0),
		area("083155012004", ars.Gemeinde, ars.KreisangehoerigeGemeinde, "Auggen", 2750),
		area("083155012074", ars.Gemeinde, ars.Stadt, "Müllheim, Stadt", 19650),
	}
	d1, err := ars.NewDirectory(time.Date(2024, 12, 31, 0, 0, 0, 0, time.UTC), areas)
	must(e.t, err)
	d2, err := ars.NewDirectory(time.Date(2025, 11, 30, 0, 0, 0, 0, time.UTC), areas[:5])
	must(e.t, err)
	for _, d := range []*ars.Directory{d1, d2} {
		if _, err := ref.ImportAreas(ctx, "test", d); err != nil {
			e.t.Fatal(err)
		}
	}
	_, err = ref.ImportCatalogue(ctx, "test", nil)
	must(e.t, err)
}

func TestRoutingBadInput(t *testing.T) {
	for _, b := range flowtest.Backends() {
		t.Run(b.Name, func(t *testing.T) { testRoutingBadInput(t, b) })
	}
}

func testRoutingBadInput(t *testing.T, b flowtest.Backend) {
	e := newEnvOn(t, b.Open(t))
	specs := routingSpec(t, e)
	e.smallDirectory()
	e.activeDestination(e.adminToken(), destFreiburg, time.Time{}, "DE08311")
	before := e.state()
	q := "/v1/routes?leikaKey=" + leikaA + "&"
	tests := []struct {
		name, path string
		status     int
		typ, field string
	}{
		{"no leikaKey", "/v1/routes?ars=083110000000", 400, problem.TypeInvalidRequest, "leikaKey"},
		{"short leikaKey", "/v1/routes?leikaKey=9910800800&ars=08311", 400, problem.TypeInvalidValue, "leikaKey"},
		{"non-numeric leikaKey", "/v1/routes?leikaKey=99108008x00000&ars=08311", 400, problem.TypeInvalidValue, "leikaKey"},
		{"leikaKey not starting with 99", "/v1/routes?leikaKey=10108008000000&ars=08311", 400, problem.TypeInvalidValue, "leikaKey"},
		{"leikaKey twice", q + "leikaKey=" + leikaA + "&ars=08311", 400, problem.TypeInvalidRequest, "leikaKey"},
		{"no area", q[:len(q)-1], 400, problem.TypeInvalidRequest, "ars"},
		{"two areas", q + "ars=08311&ags=08311000", 400, problem.TypeInvalidRequest, "ags"},
		{"three areas", q + "ars=08311&ags=08311000&areaId=4083110000000", 400, problem.TypeInvalidRequest, "ags"},
		{"ars twice", q + "ars=08311&ars=08315", 400, problem.TypeInvalidRequest, "ars"},
		{"short ars", q + "ars=0831", 400, problem.TypeInvalidValue, "ars"},
		{"non-numeric ars", q + "ars=08a11", 400, problem.TypeInvalidValue, "ars"},
		{"ars of no Land", q + "ars=17", 200, problem.TypeUnprocessable, "ars"},
		{"ars of letters", q + "ars=ab", 400, problem.TypeInvalidValue, "ars"},
		{"empty ars", q + "ars=", 400, problem.TypeInvalidValue, "ars"},
		{"short ags", q + "ags=0831100", 400, problem.TypeInvalidValue, "ags"},
		{"non-numeric ags", q + "ags=0831100x", 400, problem.TypeInvalidValue, "ags"},
		{"malformed areaId", q + "areaId=4083a", 400, problem.TypeInvalidValue, "areaId"},
		{"areaId of another form", q + "areaId=1024", 200, problem.TypeUnprocessable, "areaId"},
		{"areaId of no level", q + "areaId=9083110000000", 200, problem.TypeUnprocessable, "areaId"},
		{"ags of no Land", q + "ags=99311000", 200, problem.TypeUnprocessable, "ags"},
		{"bad limit", q + "ars=08311&limit=0", 400, problem.TypeInvalidRequest, "limit"},
		{"ars not in the directory", q + "ars=083110000001", 200, problem.TypeUnprocessable, "ars"},
		{"Kreis not in the directory", q + "ars=08999", 200, problem.TypeUnprocessable, "ars"},
		{"retired ars", q + "ars=083155012074", 200, problem.TypeUnprocessable, "ars"},
		{"retired ags", q + "ags=08315074", 200, problem.TypeUnprocessable, "ags"},
		{"retired areaId", q + "areaId=6083155012074", 200, problem.TypeUnprocessable, "areaId"},
		{"ags not in the directory", q + "ags=08311001", 200, problem.TypeUnprocessable, "ags"},
		{"unknown service", "/v1/routes?leikaKey=99999999999999&ars=08311", 200, "", ""},
		{"no search expression", "/v1/areas", 400, problem.TypeInvalidRequest, "areaSearchexpression"},
		{"search term too short", "/v1/areas?areaSearchexpression=a", 400, problem.TypeInvalidValue, "areaSearchexpression"},
		{"search term of wildcards", "/v1/areas?areaSearchexpression=**", 400, problem.TypeInvalidValue, "areaSearchexpression"},
		{"eleven search terms", "/v1/areas?" + strings.Repeat("areaSearchexpression=ab&", 10) + "areaSearchexpression=ab", 400, problem.TypeInvalidValue, "areaSearchexpression"},
		{"bad offset", "/v2/areas?areaSearchexpression=Auggen&offset=-1", 400, problem.TypeInvalidRequest, "offset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.do(http.MethodGet, tt.path, "", "", nil)
			if tt.status == 200 {
				body := readAll(t, resp)
				resp.Body = io.NopCloser(bytes.NewReader(body))
				validate(t, specs, e, tt.path, resp, body)
				resp.Body = io.NopCloser(bytes.NewReader(body))
				if tt.field == "" {
					if resp.StatusCode != 200 || !strings.Contains(string(body), `"totalCount":0`) {
						t.Fatalf("%d %s", resp.StatusCode, body)
					}
					return
				}
				p := noRouteReason(t, resp, tt.field)
				if tt.name == "retired ars" && (p.Extra["retiredStand"] != "2025-11-30" || !strings.Contains(p.Detail, "retired")) {
					t.Errorf("retired reason %+v", p)
				}
				return
			}
			body := readAll(t, resp)
			resp.Body = io.NopCloser(bytes.NewReader(body))
			p := wantProblem(t, resp, tt.status, tt.typ, tt.field)
			validate(t, specs, e, tt.path, resp, body)
			if tt.name == "retired ars" && (p.Extra["retiredStand"] != "2025-11-30" || !strings.Contains(p.Detail, "retired")) {
				t.Errorf("retired problem %+v", p)
			}
		})
	}
	e.wantUnchanged(before)
}

// noRouteReason checks a 200 with no routes and returns its reason
// extension, which names field.
func noRouteReason(t *testing.T, resp *http.Response, field string) problem.Problem {
	t.Helper()
	r := decode[struct {
		TotalCount int             `json:"totalCount"`
		Routes     []any           `json:"routes"`
		Reason     json.RawMessage `json:"reason"`
	}](t, resp, http.StatusOK)
	if r.TotalCount != 0 || len(r.Routes) != 0 || r.Routes == nil {
		t.Fatalf("routes %+v, want none", r)
	}
	var p problem.Problem
	if err := json.Unmarshal(r.Reason, &p); err != nil || p.Field != field || p.Detail == "" || p.Type != problem.TypeUnprocessable {
		t.Fatalf("reason %s: want one naming %s (%v)", r.Reason, field, err)
	}
	return p
}

// gv100adLines returns the first n lines of the real 2025 directory.
func gv100adLines(t *testing.T, n int) []string {
	t.Helper()
	raw, err := os.ReadFile(storetest.DataFile(t, "GV100AD_30112025.txt"))
	must(t, err)
	return strings.SplitN(string(raw), "\n", n+1)[:n]
}

// TestImportLaterStandLackingLand: a directory of a later Gebietsstand
// may retire areas, but not a Land: one that lacks a Land is a file cut
// short and changes nothing.
func TestImportLaterStandLackingLand(t *testing.T) {
	for _, b := range flowtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			lines := gv100adLines(t, 20)
			raw, err := os.ReadFile(storetest.DataFile(t, "GV100AD_30112025.txt"))
			must(t, err)
			for l := range strings.Lines(string(raw)) {
				if len(l) > 12 && l[10:12] == "02" { // Hamburg
					lines = append(lines, strings.TrimRight(l, "\r\n"))
				}
			}
			later := func(lines []string) []byte {
				out := make([]string, len(lines))
				for i, l := range lines {
					out[i] = l[:2] + "20261231" + l[10:]
				}
				return []byte(strings.Join(out, "\n") + "\n")
			}
			e := newEnvOn(t, b.Open(t))
			admin := e.adminToken()
			resp := e.do(http.MethodPost, "/admin/v1/import/gv100ad", admin, "text/plain", []byte(strings.Join(lines, "\n")+"\n"))
			decode[map[string]any](t, resp, http.StatusOK)
			before := e.state()

			resp = e.do(http.MethodPost, "/admin/v1/import/gv100ad", admin, "text/plain", later(lines[:20]))
			p := wantProblem(t, resp, http.StatusUnprocessableEntity, problem.TypeUnprocessable, "body")
			if !strings.Contains(p.Detail, "02 Hamburg") || !strings.Contains(p.Detail, "cut short") {
				t.Errorf("detail %q, want Hamburg named and the file as cut short", p.Detail)
			}
			e.wantUnchanged(before)
			if a, err := e.st.(store.Reference).Area(context.Background(), "020000000000", ars.Gemeinde); err != nil || a.Retired != nil {
				t.Errorf("Hamburg after the refused import: %+v, %v", a, err)
			}

			// Another area may leave with a later Gebietsstand.
			resp = e.do(http.MethodPost, "/admin/v1/import/gv100ad", admin, "text/plain", later(append(lines[:19:19], lines[20:]...)))
			if res := decode[map[string]any](t, resp, http.StatusOK); res["retired"] != 1.0 {
				t.Errorf("later Gebietsstand without one area: %v, want 1 retired", res)
			}
		})
	}
}

func TestImportBadInput(t *testing.T) {
	for _, b := range flowtest.Backends() {
		t.Run(b.Name, func(t *testing.T) { testImportBadInput(t, b) })
	}
}

func testImportBadInput(t *testing.T, b flowtest.Backend) {
	lines := gv100adLines(t, 40)
	e := newEnvOn(t, b.Open(t), func(c *gateway.Config) { c.MaxImport = 8 << 10 })
	admin := e.adminToken()
	ok := strings.Join(lines[:20], "\n") + "\n"
	resp := e.do(http.MethodPost, "/admin/v1/import/gv100ad", admin, "text/plain", []byte(ok))
	decode[map[string]any](t, resp, http.StatusOK)
	countAreas := func() int {
		n := 0
		must(t, e.st.(store.Reference).Areas(context.Background(), func(store.Area) error { n++; return nil }))
		return n
	}
	areas := countAreas()
	before := e.state()

	truncated := append([]string{}, lines[:30]...)
	truncated[24] = truncated[24][:100]
	garbled := append([]string{}, lines[:30]...)
	garbled[9] = "6X" + garbled[9][2:]
	tests := []struct {
		name, kind string
		body       string
		status     int
		line       float64
	}{
		{"truncated GV100AD line", "gv100ad", strings.Join(truncated, "\n"), 400, 25},
		{"garbled GV100AD line", "gv100ad", strings.Join(garbled, "\n"), 400, 10},
		{"empty GV100AD", "gv100ad", "", 400, 0},
		{"GV100AD over the limit", "gv100ad", strings.Join(lines, "\n"), 413, 0},
		{"LeiKa CSV missing the name column", "leika", "leika_key,level\n99001001000000,kommune\n", 400, 1},
		{"LeiKa CSV with a bad key", "leika", "leika_key,name\n99001001000000,Abfall\n9900100100000,Abfall\n", 400, 3},
		{"postcode CSV missing columns", "plz", "plz,ags\n79098,08311000\n", 400, 1},
		{"postcode CSV with a short postcode", "plz", "plz,ags,ars,name\n7909,08311000,083110000000,Freiburg\n", 400, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.do(http.MethodPost, "/admin/v1/import/"+tt.kind, admin, "text/plain", []byte(tt.body))
			field := "body"
			if tt.status == 413 {
				field = ""
			}
			p := wantProblem(t, resp, tt.status, "", field)
			if tt.line > 0 && (p.Extra["line"] != tt.line || !strings.Contains(p.Detail, "line "+strconv.Itoa(int(tt.line)))) {
				t.Errorf("problem %+v does not name line %v", p, tt.line)
			}
		})
	}
	if n := countAreas(); n != areas {
		t.Errorf("%d areas after bad imports, want %d", n, areas)
	}
	e.wantUnchanged(before)

	// The same directory cut short at a line's end: every line parses,
	// but a Gebietsstand kept does not lose areas.
	short := strings.Join(lines[:12], "\n") + "\n"
	resp = e.do(http.MethodPost, "/admin/v1/import/gv100ad", admin, "text/plain", []byte(short))
	if p := wantProblem(t, resp, http.StatusUnprocessableEntity, problem.TypeUnprocessable, "body"); !strings.Contains(p.Detail, "cut short") {
		t.Errorf("detail %q, want the file named as cut short", p.Detail)
	}
	if n := countAreas(); n != areas {
		t.Errorf("%d areas after a cut-short import, want %d", n, areas)
	}
	e.wantUnchanged(before)

	// Without the operator scope, nothing is imported.
	resp = e.do(http.MethodPost, "/admin/v1/import/gv100ad", e.token("send:region:DE"), "text/plain", []byte(ok))
	wantProblem(t, resp, http.StatusForbidden, problem.TypeForbidden, "")
}

// TestConcurrentCreatesConflict: of two destinations created at once for
// the same service and region, one is refused, however close together.
func TestConcurrentCreatesConflict(t *testing.T) {
	e := newEnv(t)
	admin := e.adminToken()
	for round := range 8 {
		ids := []string{uuid.NewString(), uuid.NewString()}
		codes := make([]int, len(ids))
		var wg sync.WaitGroup
		for i, id := range ids {
			body := destinationBody(t, id, []string{"DE08315"}, "enc-"+id[:8], "sig-"+id[:8])
			body["status"] = "active"
			body["services"].([]any)[0].(map[string]any)["identifier"] = fmt.Sprintf("urn:de:fim:leika:leistung:990500120000%02d", round)
			wg.Go(func() { codes[i] = e.doJSON(http.MethodPost, "/admin/v1/destinations", admin, body).StatusCode })
		}
		wg.Wait()
		slices.Sort(codes)
		if !slices.Equal(codes, []int{http.StatusCreated, http.StatusConflict}) {
			t.Fatalf("round %d: two creates of one service and region at once answered %v, want one 201 and one 409", round, codes)
		}
	}
}

func TestRouteConflictsRefused(t *testing.T) {
	e := newEnv(t)
	admin := e.adminToken()
	e.activeDestination(admin, destKreisBH, time.Time{}, "DE08315")
	before := e.state()

	body := destinationBody(t, destMuellheim, []string{"DE083155012074", "DE08315"}, "enc-conflict", "sig-conflict")
	resp := e.doJSON(http.MethodPost, "/admin/v1/destinations", admin, body)
	p := wantProblem(t, resp, http.StatusConflict, problem.TypeConflict, "services[0].regions[1]")
	if p.Extra["conflictingDestinationId"] != destKreisBH || !strings.Contains(p.Detail, destKreisBH) {
		t.Errorf("conflict %+v does not name %s", p, destKreisBH)
	}
	e.wantUnchanged(before)

	// An update that would conflict is refused too, and changes nothing.
	e.activeDestination(admin, destMuellheim, time.Time{}, "DE083155012074")
	before = e.state()
	patch := map[string]any{"services": []any{map[string]any{
		"identifier": serviceA, "regions": []string{"DE08315"},
		"submissionSchemas": []any{map[string]any{"mimeType": "application/json", "schemaUri": "https://schema.fitko.de/fim/s00000096_1.0.schema.json"}},
	}}}
	resp = e.doJSON(http.MethodPatch, "/admin/v1/destinations/"+destMuellheim, admin, patch)
	p = wantProblem(t, resp, http.StatusConflict, problem.TypeConflict, "services[0].regions[0]")
	if p.Extra["conflictingDestinationId"] != destKreisBH {
		t.Errorf("conflict %+v", p)
	}
	e.wantUnchanged(before)

	// A handover is no conflict: the Kreis ends where the other begins.
	handover := e.clock.Now().Add(48 * time.Hour).Format(time.RFC3339)
	service := func(regions []string, from, until string) map[string]any {
		s := map[string]any{
			"identifier": serviceA, "regions": regions,
			"submissionSchemas": []any{map[string]any{"mimeType": "application/json", "schemaUri": "https://schema.fitko.de/fim/s00000096_1.0.schema.json"}},
		}
		if from != "" {
			s["validFrom"] = from
		}
		if until != "" {
			s["validUntil"] = until
		}
		return s
	}
	resp = e.doJSON(http.MethodPatch, "/admin/v1/destinations/"+destKreisBH, admin, map[string]any{"services": []any{service([]string{"DE08315"}, "", handover)}})
	decode[map[string]any](t, resp, http.StatusOK)
	resp = e.doJSON(http.MethodPatch, "/admin/v1/destinations/"+destMuellheim, admin, map[string]any{"services": []any{service([]string{"DE08315"}, handover, "")}})
	decode[map[string]any](t, resp, http.StatusOK)

	// Decommissioning releases the regions.
	resp = e.doJSON(http.MethodPatch, "/admin/v1/destinations/"+destMuellheim, admin, map[string]any{"status": "decommissioned"})
	decode[map[string]any](t, resp, http.StatusOK)
	resp = e.doJSON(http.MethodPatch, "/admin/v1/destinations/"+destKreisBH, admin, map[string]any{"status": "decommissioned"})
	decode[map[string]any](t, resp, http.StatusOK)
	e.activeDestination(admin, destAuggen, time.Time{}, "DE08315")
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config) { c.RateBurst = 3; c.RateLimit = 0.01 })
	specs := routingSpec(t, e)
	path := "/v2/routes?leikaKey=" + leikaA + "&ars=08311"
	// 0.01 per second is a quota of 1 in a window of 100 s; the burst of 3
	// is named in the policy, not in the quota.
	for i, want := range []struct{ remaining, reset string }{{"1", "0"}, {"1", "0"}, {"0", "100"}} {
		resp := e.do(http.MethodGet, path, "", "", nil)
		body := readAll(t, resp)
		h := resp.Header
		if resp.StatusCode != 200 || h.Get("RateLimit-Limit") != "1" || h.Get("RateLimit-Remaining") != want.remaining ||
			h.Get("RateLimit-Reset") != want.reset || h.Get("RateLimit-Policy") != "1;w=100;burst=3" {
			t.Fatalf("request %d: %d %v %s", i+1, resp.StatusCode, h, body)
		}
		validate(t, specs, e, path, resp, body)
	}
	resp := e.do(http.MethodGet, path, "", "", nil)
	body := readAll(t, resp)
	// application/json, as routing-api.yaml declares the 429; the body is
	// the problem.
	var p problem.Problem
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Content-Type") != "application/json" ||
		json.Unmarshal(body, &p) != nil || p.Type != problem.TypeTooManyRequests || p.Status != http.StatusTooManyRequests {
		t.Errorf("429: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if resp.Header.Get("RateLimit-Remaining") != "0" || resp.Header.Get("Retry-After") == "" {
		t.Errorf("429 headers %v", resp.Header)
	}
	validate(t, specs, e, path, resp, body)
	// The areas endpoint shares the bucket; info and other APIs do not.
	if resp := e.do(http.MethodGet, "/v1/areas?areaSearchexpression=Auggen", "", "", nil); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("areas: %d", resp.StatusCode)
	}
	if resp := e.do(http.MethodGet, "/v2/info", "", "", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("info: %d", resp.StatusCode)
	}
}

// TestRateLimitDefaults checks the headers of the default limit: 20 per
// second sustained is a quota of 20 per 1-second window, not the burst.
func TestRateLimitDefaults(t *testing.T) {
	e := newEnv(t)
	resp := e.do(http.MethodGet, "/v2/routes?leikaKey="+leikaA+"&ars=08311", "", "", nil)
	readAll(t, resp)
	h := resp.Header
	if h.Get("RateLimit-Limit") != "20" || h.Get("RateLimit-Remaining") != "20" || h.Get("RateLimit-Reset") != "0" ||
		h.Get("RateLimit-Policy") != "20;w=1;burst=100" {
		t.Errorf("headers %v", h)
	}
}

func TestRoutingInfo(t *testing.T) {
	e := newEnv(t)
	specs := routingSpec(t, e)
	resp := e.do(http.MethodGet, "/v2/info", "", "", nil)
	body := readAll(t, resp)
	validate(t, specs, e, "/v2/info", resp, body)
	if string(body) != `{"version":{"major":2,"minor":0,"patch":0}}` {
		t.Errorf("/v2/info: %s", body)
	}
	// /v1/info stays the Submission API's, valid against both specs.
	resp = e.do(http.MethodGet, "/v1/info", "", "", nil)
	body = readAll(t, resp)
	validate(t, specs, e, "/v1/info", resp, body)
	if !strings.Contains(string(body), `"major":1`) {
		t.Errorf("/v1/info: %s", body)
	}
}

// TestRoutesFollowAcrossGateways: two gateway processes on one store and
// one JetStream; a destination created through one routes at the other
// once that one reaches the revision the write answered with.
func TestRoutesFollowAcrossGateways(t *testing.T) {
	st := flowtest.OpenSQLite(t)
	b1, node := bustest.Bus(t)
	b2 := bustest.Connect(t, node.URL)
	syncer := func(b *bus.Bus) *routesync.Syncer {
		s, err := routesync.New(routesync.Config{Store: st, Bus: b})
		must(t, err)
		flowtest.Start(t, s)
		return s
	}
	s1, s2 := syncer(b1), syncer(b2)
	gw1 := newEnvOn(t, st, func(c *gateway.Config) { c.Routes = s1 })
	gw2 := newEnvOn(t, st, func(c *gateway.Config) { c.Routes = s2 })

	body := destinationBody(t, destFreiburg, []string{"DE08311"}, "enc-follow1", "sig-follow1")
	body["status"] = "active"
	resp := gw1.doJSON(http.MethodPost, "/admin/v1/destinations", gw1.adminToken(), body)
	decode[map[string]any](t, resp, http.StatusCreated)
	rev, err := strconv.ParseUint(resp.Header.Get(adminapi.RevisionHeader), 10, 64)
	if err != nil || rev == 0 {
		t.Fatalf("revision header %q", resp.Header.Get(adminapi.RevisionHeader))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s2.WaitFor(ctx, rev); err != nil {
		t.Fatal(err)
	}
	resp = gw2.do(http.MethodGet, "/v2/routes?leikaKey="+leikaA+"&ars=08311", "", "", nil)
	a := decode[routeAnswer](t, resp, http.StatusOK)
	if len(a.Routes) != 1 || a.Routes[0].DestinationID != destFreiburg {
		t.Fatalf("the other gateway answers %+v", a)
	}

	// A conflicting destination created through the other gateway is
	// refused there.
	body = destinationBody(t, destKreisBH, []string{"DE08311"}, "enc-follow2", "sig-follow2")
	resp = gw2.doJSON(http.MethodPost, "/admin/v1/destinations", gw2.adminToken(), body)
	p := wantProblem(t, resp, http.StatusConflict, problem.TypeConflict, "services[0].regions[0]")
	if p.Extra["conflictingDestinationId"] != destFreiburg {
		t.Errorf("conflict %+v", p)
	}
}

// TestConcurrentCreatesConflictAcrossGateways: of two destinations for
// the same service and region created at once through two gateway
// processes, one is refused.
func TestConcurrentCreatesConflictAcrossGateways(t *testing.T) {
	st := flowtest.OpenSQLite(t)
	b1, node := bustest.Bus(t)
	b2 := bustest.Connect(t, node.URL)
	var gws []*env
	for _, b := range []*bus.Bus{b1, b2} {
		s, err := routesync.New(routesync.Config{Store: st, Bus: b})
		must(t, err)
		flowtest.Start(t, s)
		gws = append(gws, newEnvOn(t, st, func(c *gateway.Config) { c.Routes = s }))
	}
	for round := range 8 {
		codes := make([]int, len(gws))
		var wg sync.WaitGroup
		for i, gw := range gws {
			id := uuid.NewString()
			body := destinationBody(t, id, []string{"DE08315"}, "enc-"+id[:8], "sig-"+id[:8])
			body["status"] = "active"
			body["services"].([]any)[0].(map[string]any)["identifier"] = fmt.Sprintf("urn:de:fim:leika:leistung:990500120000%02d", round)
			token := gw.adminToken()
			wg.Go(func() { codes[i] = gw.doJSON(http.MethodPost, "/admin/v1/destinations", token, body).StatusCode })
		}
		wg.Wait()
		slices.Sort(codes)
		if !slices.Equal(codes, []int{http.StatusCreated, http.StatusConflict}) {
			t.Fatalf("round %d: creates of one service and region at once through two gateways answered %v, want one 201 and one 409", round, codes)
		}
	}

	// Without the bus the writes cannot be ordered: none is stored.
	token := gws[0].adminToken()
	before := gws[0].state()
	node.Shutdown()
	id := uuid.NewString()
	body := destinationBody(t, id, []string{"DE08315"}, "enc-"+id[:8], "sig-"+id[:8])
	body["services"].([]any)[0].(map[string]any)["identifier"] = "urn:de:fim:leika:leistung:99050012000099"
	resp := gws[0].doJSON(http.MethodPost, "/admin/v1/destinations", token, body)
	wantProblem(t, resp, http.StatusServiceUnavailable, problem.TypeUnavailable, "")
	if resp.Header.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After: %v", resp.Header)
	}
	gws[0].wantUnchanged(before)
}

// TestNoRouteForAnUnservedKey: without a service catalogue, a LeiKa key
// no destination serves still answers why there is no route.
func TestNoRouteForAnUnservedKey(t *testing.T) {
	e := newEnv(t)
	e.createDestination("6c89c356-c354-4459-b2fd-8d1260ea835c", store.StatusActive, "DE08311")
	p := noRouteReason(t, e.do(http.MethodGet, "/v2/routes?leikaKey=99999999999999&ars=08311", "", "", nil), "leikaKey")
	if !strings.Contains(p.Detail, "served by no destination") {
		t.Errorf("reason %+v", p)
	}
}

// TestRoutingAPIFromAPage: a portal's page may read the public Routing
// API's answers, 429 included, from any origin.
func TestRoutingAPIFromAPage(t *testing.T) {
	e := newEnv(t)
	e.createDestination("6c89c356-c354-4459-b2fd-8d1260ea835c", store.StatusActive, "DE08311")
	for _, path := range []string{"/v2/routes?leikaKey=99999999999999&ars=08311", "/v1/areas?areaSearchexpression=Kirch*", "/v2/info"} {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
		req.Header.Set("Origin", "https://portal.example")
		resp, err := e.srv.Client().Do(req)
		must(t, err)
		resp.Body.Close()
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "*" {
			t.Errorf("%s: Access-Control-Allow-Origin %q, want *", path, got)
		}
		if !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "RateLimit-Remaining") {
			t.Errorf("%s: Access-Control-Expose-Headers %q", path, resp.Header.Get("Access-Control-Expose-Headers"))
		}
	}
	// The Submission API is not opened to pages.
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/v1/info", nil)
	req.Header.Set("Origin", "https://portal.example")
	resp, err := e.srv.Client().Do(req)
	must(t, err)
	resp.Body.Close()
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("/v1/info: Access-Control-Allow-Origin %q", got)
	}
}
