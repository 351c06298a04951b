// Package routingapi serves FIT-Connect's Routing API 2.0: which
// destination is responsible for a service (LeiKa key) in an area (ARS,
// AGS or area id), with a PS512 destinationSignature, and the area search.
// It answers from the routing table the process follows (routesync) and
// needs no token; requests are rate-limited per client address.
package routingapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
	"golang.org/x/sync/singleflight"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/leika"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/routesync"
	"github.com/amtsbote/amtsbote/pkg/routing"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/gateway/httpapi"
)

// FIT-Connect's Routing API 2.0 is served under /v1/ (its published
// servers) and /v2/ (where current clients look), with the same bodies.
// The two APIs share /v1/info on the gateway's listener: it keeps
// answering the Submission API's version, which both specifications' Info
// schema accept, and /v2/info answers the Routing API's. Served on a
// listener of its own (RoutesAlone), /v1/info answers the Routing API's
// version too. The routing endpoints need no token and are rate-limited
// per client address.

// Version is the version of FIT-Connect's Routing API served, as GET
// /v2/info reports it.
var Version = httpapi.Version{Major: 2, Minor: 0, Patch: 0}

// Defaults of Config.
const (
	// DefaultRateLimit is the sustained rate of Routing API requests per
	// client address, per second.
	DefaultRateLimit = 20
	// DefaultRateBurst is how many requests a client may send at once.
	DefaultRateBurst = 100
	// routeCacheSize bounds the cached routes with their signatures.
	routeCacheSize = 1 << 16
)

// gebietPrefix precedes an ARS (prefix) in a route signature's gebietIDs.
const gebietPrefix = "urn:de:bund:destatis:bevoelkerungsstatistik:schluessel:rs:"

// Config is what an API needs. API, Routes, Signer and URL are required.
type Config struct {
	API *httpapi.API
	// Routes is the routing registry the process follows.
	Routes *routesync.Syncer
	// Areas searches the area directory; nil answers /areas with 503.
	Areas Areas
	// Signer is Amtsbote's PS512 key; it signs destinationSignatures.
	Signer jose.KeyPair
	// URL is Amtsbote's public URL: the iss of signatures, and its host
	// their submissionHost.
	URL string
	// RateLimit is the sustained requests per second per client address
	// (default DefaultRateLimit); RateBurst how many may come at once
	// (default DefaultRateBurst).
	RateLimit float64
	RateBurst int
	Now       func() time.Time
}

// Areas searches the area directory.
type Areas interface {
	SearchAreas(ctx context.Context, q store.AreaQuery, p store.Page) ([]store.Area, int, error)
}

// API serves the Routing API. It is safe for concurrent use.
type API struct {
	api     *httpapi.API
	sync    *routesync.Syncer
	areas   Areas
	limiter *httpapi.Limiter
	signer  gojose.Signer
	url     string
	host    string
	now     func() time.Time

	mu sync.Mutex
	// routes holds each route's JSON, signature included.
	routes map[routeKey][]byte
	// signing makes one signature per key however many ask at once.
	signing singleflight.Group
}

type routeKey struct {
	dest, service string
	updated       int64
}

// New checks cfg. Resolutions are counted by the routing syncer
// (routesync.Syncer.Route).
func New(cfg Config) (*API, error) {
	if cfg.API == nil || cfg.Routes == nil {
		return nil, errors.New("new routing api: no API or routes")
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = DefaultRateLimit
	}
	if cfg.RateBurst == 0 {
		cfg.RateBurst = DefaultRateBurst
	}
	a := &API{
		api: cfg.API, sync: cfg.Routes, areas: cfg.Areas, url: cfg.URL, now: cfg.Now,
		limiter: httpapi.NewLimiter(cfg.RateLimit, cfg.RateBurst).AnswerJSON(),
		routes:  make(map[routeKey][]byte),
	}
	if a.now == nil {
		a.now = time.Now
	}
	signer, err := gojose.NewSigner(
		gojose.SigningKey{Algorithm: gojose.PS512, Key: gojose.JSONWebKey{Key: cfg.Signer.Private, KeyID: cfg.Signer.Public.KeyID}},
		(&gojose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return nil, fmt.Errorf("new routing api: route signer: %w", err)
	}
	a.signer = signer
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("new routing api: url: %w", err)
	}
	a.host = u.Host
	return a, nil
}

// Routes registers the Routing API under /v1/ and /v2/ and GET /v2/info.
func (a *API) Routes(m *httpapi.Mux) {
	for _, prefix := range []string{"/v1", "/v2"} {
		m.Handle("GET "+prefix+"/routes", public(a.api.Limited(a.limiter, a.handleRoutes)))
		m.Handle("GET "+prefix+"/areas", public(a.api.Limited(a.limiter, a.handleAreas)))
	}
	m.Handle("GET /v2/info", public(a.api.Unauthenticated(http.HandlerFunc(a.handleInfo))))
}

// RoutesAlone registers the Routing API as Routes does, for a listener
// or host name that serves nothing else: there GET /v1/info answers the
// Routing API's version, as clients using /v1/ as its base expect.
func (a *API) RoutesAlone(m *httpapi.Mux) {
	a.Routes(m)
	m.Handle("GET /v1/info", public(a.api.Unauthenticated(http.HandlerFunc(a.handleInfo))))
}

// public lets a portal's page read the answers of h, which needs no
// credentials, from any origin (CORS): a GET without custom headers needs
// no preflight. The rate limit's headers are exposed with it.
func public(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Origin") != "" {
			w.Header().Set("Access-Control-Allow-Origin", "*")
			w.Header().Set("Access-Control-Expose-Headers", "RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, RateLimit-Policy, Retry-After")
		}
		h.ServeHTTP(w, r)
	})
}

// handleInfo answers GET /v2/info, and GET /v1/info on a listener of the
// Routing API's own.
func (a *API) handleInfo(w http.ResponseWriter, _ *http.Request) {
	httpapi.WriteJSON(w, http.StatusOK, struct {
		Version httpapi.Version `json:"version"`
	}{Version})
}

// registry returns the loaded registry.
func (a *API) registry(ctx context.Context) (*routesync.Syncer, error) {
	s := a.sync
	if err := s.EnsureLoaded(ctx); err != nil {
		return nil, fmt.Errorf("load routing registry: %w", err)
	}
	return s, nil
}

// routeResult is the Routing API's route-result.
type routeResult struct {
	Count      int         `json:"count"`
	Offset     int         `json:"offset"`
	TotalCount int         `json:"totalCount"`
	Routes     []routeView `json:"routes"`
	// Reason is Amtsbote's extension: why there is no route, where the
	// spec answers an empty result (an area the directory lacks or has
	// retired, with its successor; a service no one knows), as a problem
	// object without its status.
	Reason map[string]any `json:"reason,omitempty"`
}

// noRoute answers 200 with no routes and why, as the Routing API answers
// a well-formed request that matches nothing.
func noRoute(w http.ResponseWriter, page store.Page, why *problem.Problem) {
	raw, _ := json.Marshal(why)
	var reason map[string]any
	_ = json.Unmarshal(raw, &reason)
	delete(reason, "status")
	w.Header().Set("Cache-Control", "no-cache")
	httpapi.WriteJSON(w, http.StatusOK, routeResult{Offset: page.Offset, Routes: []routeView{}, Reason: reason})
}

// routeView is the Routing API's route.
type routeView struct {
	DestinationID        string `json:"destinationId"`
	DestinationSignature string `json:"destinationSignature"`
	DestinationName      string `json:"destinationName,omitempty"`
	DestinationShortName string `json:"destinationShortName,omitempty"`
}

// areaParams are the Routing API's mutually exclusive area parameters.
var areaParams = []string{"ars", "ags", "areaId"}

// handleRoutes answers GET /v1/routes and /v2/routes: the active
// destination responsible for leikaKey in the area given by exactly one of
// ars, ags and areaId, now.
func (a *API) handleRoutes(w http.ResponseWriter, r *http.Request) error {
	q, err := httpapi.Query(r)
	if err != nil {
		return err
	}
	key, present, err := httpapi.QueryParam(q, "leikaKey")
	if err != nil {
		return err
	}
	if !present || key == "" {
		return problem.InvalidRequest("leikaKey", "leikaKey is required: a LeiKa key of 14 digits starting with 99")
	}
	service, err := leika.ParseKey(key)
	if err != nil {
		return problem.Invalid("leikaKey", err.Error())
	}
	var param, value string
	for _, name := range areaParams {
		v, ok, err := httpapi.QueryParam(q, name)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if param != "" {
			return problem.InvalidRequest(name, fmt.Sprintf("%s and %s are both given; give exactly one of ars, ags and areaId", param, name))
		}
		param, value = name, v
	}
	if param == "" {
		return problem.InvalidRequest("ars", "an area is required: give exactly one of ars, ags and areaId")
	}
	page, err := httpapi.PageFrom(q)
	if err != nil {
		return err
	}
	reg, err := a.registry(r.Context())
	if err != nil {
		return err
	}
	place, err := reg.Reference().Place(param, value)
	if p, ok := problem.As(err); ok && p.Status == http.StatusUnprocessableEntity {
		reg.NoRoute()
		noRoute(w, page, p)
		return nil
	}
	if err != nil {
		return err
	}
	ref := reg.Reference()
	if !reg.Table().Has(string(service)) {
		why := fmt.Sprintf("leikaKey %s is served by no destination", service)
		if _, known := ref.Service(service); !known && ref.Services() > 0 {
			why = fmt.Sprintf("leikaKey %s is neither in the service catalogue nor served by any destination", service)
		}
		reg.NoRoute()
		noRoute(w, page, problem.Unprocessable("leikaKey", why))
		return nil
	}
	var routes [][]byte
	m, ok := reg.Route(string(service), place, a.now())
	if ok && m.Destination.Status == store.StatusActive {
		v, err := a.routeJSON(m, service)
		if err != nil {
			return err
		}
		routes = append(routes, v)
	}
	total := len(routes)
	routes = routes[min(page.Offset, total):min(page.Offset+page.Limit, total)]
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(routeResultJSON(page.Offset, total, routes))
	return nil
}

// routeResultJSON is the route-result of routes, each the JSON of a
// routeView: written out rather than marshalled, as the routes are kept
// marshalled.
func routeResultJSON(offset, total int, routes [][]byte) []byte {
	n := 64
	for _, r := range routes {
		n += len(r) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, `{"count":`...)
	b = strconv.AppendInt(b, int64(len(routes)), 10)
	b = append(b, `,"offset":`...)
	b = strconv.AppendInt(b, int64(offset), 10)
	b = append(b, `,"totalCount":`...)
	b = strconv.AppendInt(b, int64(total), 10)
	b = append(b, `,"routes":[`...)
	for i, r := range routes {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, r...)
	}
	return append(b, "]}"...)
}

// destinationClaims is the payload of a route's destinationSignature.
type destinationClaims struct {
	SubmissionHost string          `json:"submissionHost"`
	Issuer         string          `json:"iss"`
	Services       []signedService `json:"services"`
	DestinationID  string          `json:"destinationId"`
	IssuedAt       int64           `json:"iat"`
	JTI            string          `json:"jti"`
}

type signedService struct {
	GebietIDs   []string `json:"gebietIDs"`
	LeistungIDs []string `json:"leistungIDs"`
}

// routeJSON renders a resolved route as the JSON of a routeView. Its
// signature covers the regions in which the destination offers the
// service; it is made once per destination state and service, as a
// registry signs an entry once, and kept with the rest of the route until
// the destination changes.
func (a *API) routeJSON(m routesync.Match, service leika.Key) ([]byte, error) {
	e := m.Destination
	k := routeKey{dest: e.DestinationID, service: string(service), updated: e.UpdatedAt.UnixNano()}
	a.mu.Lock()
	v, ok := a.routes[k]
	a.mu.Unlock()
	if ok {
		return v, nil
	}
	res, err, _ := a.signing.Do(fmt.Sprintf("%s\x00%s\x00%d", k.dest, k.service, k.updated), func() (any, error) {
		a.mu.Lock()
		v, ok := a.routes[k]
		a.mu.Unlock()
		if ok {
			return v, nil
		}
		return a.sign(k, e, service)
	})
	if err != nil {
		return nil, err
	}
	return res.([]byte), nil
}

// sign makes destination e's route for service with its signature and
// keeps its JSON under k.
func (a *API) sign(k routeKey, e routesync.Entry, service leika.Key) ([]byte, error) {
	var gebiete []string
	for _, s := range e.Services {
		if id, err := routing.ServiceID(s.Identifier); err != nil || id != string(service) {
			continue
		}
		for _, region := range s.Regions {
			id := gebietPrefix + strings.TrimPrefix(region, "DE")
			if region == "DE" {
				id = gebietPrefix + "000000000000"
			}
			if !slices.Contains(gebiete, id) {
				gebiete = append(gebiete, id)
			}
		}
	}
	claims := destinationClaims{
		SubmissionHost: a.host,
		Issuer:         a.url,
		Services:       []signedService{{GebietIDs: gebiete, LeistungIDs: []string{service.URN()}}},
		DestinationID:  e.DestinationID,
		IssuedAt:       a.now().Unix(),
		JTI:            uuid.NewString(),
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return nil, fmt.Errorf("sign route: %w", err)
	}
	jws, err := a.signer.Sign(payload)
	if err != nil {
		return nil, fmt.Errorf("sign route: %w", err)
	}
	sig, err := jws.CompactSerialize()
	if err != nil {
		return nil, fmt.Errorf("sign route: %w", err)
	}
	v, err := json.Marshal(routeView{DestinationID: e.DestinationID, DestinationSignature: sig, DestinationName: e.Name, DestinationShortName: e.ShortName})
	if err != nil {
		return nil, fmt.Errorf("sign route: %w", err)
	}
	a.mu.Lock()
	if len(a.routes) >= routeCacheSize {
		// Forget half, in map order: a random half, which keeps what is
		// asked for often likely to stay.
		n := 0
		for k := range a.routes {
			delete(a.routes, k)
			if n++; n >= routeCacheSize/2 {
				break
			}
		}
	}
	a.routes[k] = v
	a.mu.Unlock()
	return v, nil
}

// areaResult is the Routing API's area-result.
type areaResult struct {
	Count      int        `json:"count"`
	Offset     int        `json:"offset"`
	TotalCount int        `json:"totalCount"`
	Areas      []areaView `json:"areas"`
}

// areaView is the Routing API's area.
type areaView struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Type string `json:"type"`
}

// handleAreas answers GET /v1/areas and /v2/areas: the current areas whose
// name or postcodes match every areaSearchexpression.
func (a *API) handleAreas(w http.ResponseWriter, r *http.Request) error {
	params, err := httpapi.Query(r)
	if err != nil {
		return err
	}
	terms := params["areaSearchexpression"]
	if len(terms) == 0 {
		return problem.InvalidRequest("areaSearchexpression", "areaSearchexpression is required: a name, a name with * wildcards or a postcode, repeated for up to 10 terms")
	}
	q := store.AreaQuery{Terms: terms}
	if err := q.Check(); err != nil {
		return problem.Invalid("areaSearchexpression", "areaSearchexpression: "+err.Error())
	}
	page, err := httpapi.PageFrom(params)
	if err != nil {
		return err
	}
	if a.areas == nil {
		return problem.Unavailable("area search needs a store that keeps reference data")
	}
	list, total, err := a.areas.SearchAreas(r.Context(), q, page)
	if err != nil {
		return fmt.Errorf("search areas: %w", err)
	}
	out := areaResult{Count: len(list), Offset: page.Offset, TotalCount: total, Areas: make([]areaView, 0, len(list))}
	for _, a := range list {
		out.Areas = append(out.Areas, areaView{ID: a.ID(), Name: a.Name, Type: areaType(a)})
	}
	w.Header().Set("Cache-Control", "no-cache")
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// areaType names the kind of an area as the Routing API shows it:
// "Land", "Regierungsbezirk", or the GV100AD Textkennzeichen ("Landkreis",
// "Kreisfreie Stadt", "Verbandsgemeinde", "Stadt" …).
func areaType(a store.Area) string {
	switch {
	case a.Level == ars.Land:
		return "Land"
	case a.Level == ars.Regierungsbezirk:
		return "Regierungsbezirk"
	case a.Kind != 0:
		return a.Kind.String()
	}
	l := a.Level.String()
	return strings.ToUpper(l[:1]) + l[1:]
}
