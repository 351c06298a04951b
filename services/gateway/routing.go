package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/leika"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/routesync"
	"github.com/amtsbote/amtsbote/pkg/routing"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// FIT-Connect's Routing API 2.0 is served under /v1/ (its published
// servers) and /v2/ (where current clients look), with the same bodies.
// The two APIs share /v1/info: it keeps answering the Submission API's
// version, which both specifications' Info schema accept, and /v2/info
// answers the Routing API's. The routing endpoints need no token and are
// rate-limited per client address.

// RoutingAPIVersion is the version of FIT-Connect's Routing API the
// gateway implements, as GET /v2/info reports it.
var RoutingAPIVersion = Version{Major: 2, Minor: 0, Patch: 0}

// Defaults of the routing part of Config.
const (
	// DefaultRateLimit is the sustained rate of Routing API requests per
	// client address, per second.
	DefaultRateLimit = 20
	// DefaultRateBurst is how many requests a client may send at once.
	DefaultRateBurst = 100
	// DefaultMaxImport bounds a reference data file sent to the admin API;
	// the whole GV100AD is about 3.5 MB.
	DefaultMaxImport int64 = 64 << 20
	// sigCacheSize bounds the cached destination signatures.
	sigCacheSize = 1 << 16
)

// gebietPrefix precedes an ARS (prefix) in a route signature's gebietIDs.
const gebietPrefix = "urn:de:bund:destatis:bevoelkerungsstatistik:schluessel:rs:"

// routingAPI is the gateway's routing state: the registry a process
// follows, the reference store, the rate limiter and the route signer.
type routingAPI struct {
	sync    *routesync.Syncer // nil when the store keeps no reference data
	ref     store.Reference   // nil likewise
	limiter *rateLimiter
	signer  gojose.Signer
	host    string
	max     int64

	mu   sync.Mutex
	sigs map[sigKey]string

	// resolutions counts Routing API resolutions by the level matched.
	resolutions *prometheus.CounterVec
}

type sigKey struct {
	dest, service string
	updated       int64
}

// initRouting sets up the Routing API from cfg, with its metrics on reg.
// Without cfg.Routes the gateway follows the registry on its own, in this
// process only.
func (g *Gateway) initRouting(cfg Config, reg prometheus.Registerer) error {
	resolutions, err := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "amtsbote_route_resolutions_total",
		Help: "Routing API resolutions by the level of the route matched (gemeinde … bund), or none.",
	}, []string{"level"}))
	if err != nil {
		return fmt.Errorf("new gateway: %w", err)
	}
	ra := &routingAPI{
		resolutions: resolutions,
		sync:        cfg.Routes,
		max:         orDefault(cfg.MaxImport, DefaultMaxImport),
		limiter:     newRateLimiter(orDefault(cfg.RateLimit, DefaultRateLimit), orDefault(cfg.RateBurst, DefaultRateBurst)),
		sigs:        make(map[sigKey]string),
	}
	ra.ref, _ = cfg.Store.(store.Reference)
	if ra.sync == nil && ra.ref != nil {
		s, err := routesync.New(routesync.Config{Store: ra.ref, Logger: g.log})
		if err != nil {
			return fmt.Errorf("new gateway: %w", err)
		}
		ra.sync = s
	}
	signer, err := gojose.NewSigner(
		gojose.SigningKey{Algorithm: gojose.PS512, Key: gojose.JSONWebKey{Key: cfg.Signer.Private, KeyID: cfg.Signer.Public.KeyID}},
		(&gojose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return fmt.Errorf("new gateway: route signer: %w", err)
	}
	ra.signer = signer
	u, _ := url.Parse(g.publicURL)
	ra.host = u.Host
	g.routing = ra
	return nil
}

// routingRoutes registers the Routing API and the operator endpoints for
// reference data and coverage.
func (g *Gateway) routingRoutes() {
	for _, prefix := range []string{"/v1", "/v2"} {
		g.mux.Handle("GET "+prefix+"/routes", g.limited(g.handleRoutes))
		g.mux.Handle("GET "+prefix+"/areas", g.limited(g.handleAreas))
	}
	g.mux.HandleFunc("GET /v2/info", g.handleRoutingInfo)
	g.mux.Handle("POST /admin/v1/import/gv100ad", g.admin(g.handleImportGV100AD))
	g.mux.Handle("POST /admin/v1/import/leika", g.admin(g.handleImportLeika))
	g.mux.Handle("POST /admin/v1/import/plz", g.admin(g.handleImportPLZ))
	g.mux.Handle("GET /admin/v1/coverage", g.admin(g.handleCoverage))
}

// Routes returns the registry the gateway resolves with, for the roles
// that share its process; nil when the store keeps no reference data.
func (g *Gateway) Routes() *routesync.Syncer { return g.routing.sync }

// handleRoutingInfo answers GET /v2/info.
func (g *Gateway) handleRoutingInfo(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Version Version `json:"version"`
	}{RoutingAPIVersion})
}

// registry returns the loaded registry, or a 503 problem.
func (g *Gateway) registry(ctx context.Context) (*routesync.Syncer, error) {
	s := g.routing.sync
	if s == nil {
		return nil, problem.Unavailable("routing needs a store that keeps reference data")
	}
	if err := s.EnsureLoaded(ctx); err != nil {
		return nil, fmt.Errorf("load routing registry: %w", err)
	}
	return s, nil
}

// queryParam returns the one value of query parameter name, or "" when it
// is absent; a repeated parameter is a problem.
func queryParam(q url.Values, name string) (string, bool, error) {
	vs, ok := q[name]
	switch {
	case !ok:
		return "", false, nil
	case len(vs) > 1:
		return "", true, problem.InvalidRequest(name, fmt.Sprintf("%s is given %d times; give it once", name, len(vs)))
	}
	return vs[0], true, nil
}

// routeResult is the Routing API's route-result.
type routeResult struct {
	Count      int         `json:"count"`
	Offset     int         `json:"offset"`
	TotalCount int         `json:"totalCount"`
	Routes     []routeView `json:"routes"`
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
func (g *Gateway) handleRoutes(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	key, present, err := queryParam(q, "leikaKey")
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
		v, ok, err := queryParam(q, name)
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
	page, err := pageOf(r)
	if err != nil {
		return err
	}
	reg, err := g.registry(r.Context())
	if err != nil {
		return err
	}
	place, err := g.place(reg.Reference(), param, value)
	if err != nil {
		return err
	}
	ref := reg.Reference()
	if _, known := ref.Service(service); !known && ref.Services() > 0 && !reg.Table().Has(string(service)) {
		return problem.Unprocessable("leikaKey", fmt.Sprintf("leikaKey %s is neither in the service catalogue nor served by any destination", service))
	}
	routes := []routeView{}
	m, ok := reg.Resolve(string(service), place, g.now())
	level := "none"
	if ok {
		level = m.Level.String()
	}
	g.routing.resolutions.WithLabelValues(level).Inc()
	if ok && m.Destination.Status == store.StatusActive {
		v, err := g.routeView(m, service)
		if err != nil {
			return err
		}
		routes = append(routes, v)
	}
	total := len(routes)
	routes = routes[min(page.Offset, total):min(page.Offset+page.Limit, total)]
	w.Header().Set("Cache-Control", "no-cache")
	writeJSON(w, http.StatusOK, routeResult{Count: len(routes), Offset: page.Offset, TotalCount: total, Routes: routes})
	return nil
}

// place turns an area parameter into the key to resolve: the area's key at
// the level the directory knows it. Without an imported directory the key
// is taken as given. An area the directory lacks is a 422, naming the
// import that retired it when one did.
func (g *Gateway) place(ref *routesync.Reference, param, value string) (ars.ARS, error) {
	dir := ref.Directory()
	switch param {
	case "ars":
		a, err := ars.Parse(value)
		if err != nil {
			return ars.ARS{}, problem.Invalid("ars", err.Error())
		}
		if dir == nil {
			return a, nil
		}
		if area, ok := dir.Find(a); ok {
			return area.Key(), nil
		}
		if old, ok := ref.Retired(a); ok {
			return ars.ARS{}, retiredProblem("ars", value, old, dir)
		}
		return ars.ARS{}, notInDirectory("ars", fmt.Sprintf("ARS %s", value), dir)
	case "ags":
		k, err := ars.ParseAGS(value)
		if err != nil {
			return ars.ARS{}, problem.Invalid("ags", err.Error())
		}
		if dir == nil {
			if a, ok := k.ARS(); ok {
				return a, nil
			}
			return ars.ARS{}, problem.Unavailable("an 8-digit ags needs the area directory; none is imported")
		}
		if area, ok := dir.ByAGS(k); ok {
			return area.Key(), nil
		}
		if k.Level() == ars.Gemeinde {
			if old, ok := ref.RetiredAGS(k); ok {
				return ars.ARS{}, retiredProblem("ags", value, old, dir)
			}
		} else if a, ok := k.ARS(); ok {
			if old, ok := ref.RetiredArea(a.String(), a.Level()); ok {
				return ars.ARS{}, retiredProblem("ags", value, old, dir)
			}
		}
		return ars.ARS{}, notInDirectory("ags", fmt.Sprintf("AGS %s", value), dir)
	default:
		a, l, err := store.ParseAreaID(value)
		if err != nil {
			return ars.ARS{}, problem.Invalid("areaId", err.Error())
		}
		if dir == nil {
			return ars.ARS{}, problem.Unavailable("areaId needs the area directory; none is imported")
		}
		if area, ok := dir.Get(a, l); ok {
			return area.Key(), nil
		}
		if old, ok := ref.RetiredArea(a.String(), l); ok {
			return ars.ARS{}, retiredProblem("areaId", value, old, dir)
		}
		return ars.ARS{}, notInDirectory("areaId", fmt.Sprintf("area %s", value), dir)
	}
}

func notInDirectory(field, what string, dir *ars.Directory) error {
	return problem.Unprocessable(field, fmt.Sprintf("%s is not in the area directory (Gebietsstand %s)", what, dir.Date().Format(time.DateOnly)))
}

// retiredProblem tells that an area key is retired, when and by which
// directory, and, for a Gemeinde whose AGS lives on, its current ARS.
func retiredProblem(field, value string, old store.Area, dir *ars.Directory) error {
	detail := fmt.Sprintf("%s %s names %s (%s), which the import of %s retired: it is not in the area directory of Gebietsstand %s",
		field, value, old.Name, old.Level, old.Retired.UTC().Format(time.DateOnly), old.RetiredStand.Format(time.DateOnly))
	p := problem.Unprocessable(field, detail).
		With("retired", old.Retired.UTC().Format(time.DateOnly)).
		With("retiredStand", old.RetiredStand.Format(time.DateOnly))
	if old.Level == ars.Gemeinde {
		if k, err := ars.ParseAGS(old.AGS); err == nil {
			if now, ok := dir.ByAGS(k); ok && now.ARS != old.ARS {
				p.Detail += fmt.Sprintf("; the Gemeinde with AGS %s has ARS %s now", old.AGS, now.ARS)
				p = p.With("currentArs", now.ARS)
			}
		}
	}
	return p
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

// routeView renders a resolved route. Its signature covers the regions in
// which the destination offers the service; it is made once per
// destination state and service, as a registry signs an entry once, and
// kept until the destination changes.
func (g *Gateway) routeView(m routesync.Match, service leika.Key) (routeView, error) {
	e := m.Destination
	v := routeView{DestinationID: e.DestinationID, DestinationName: e.Name, DestinationShortName: e.ShortName}
	k := sigKey{dest: e.DestinationID, service: string(service), updated: e.UpdatedAt.UnixNano()}
	ra := g.routing
	ra.mu.Lock()
	sig, ok := ra.sigs[k]
	ra.mu.Unlock()
	if ok {
		v.DestinationSignature = sig
		return v, nil
	}
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
			if !containsString(gebiete, id) {
				gebiete = append(gebiete, id)
			}
		}
	}
	claims := destinationClaims{
		SubmissionHost: ra.host,
		Issuer:         g.publicURL,
		Services:       []signedService{{GebietIDs: gebiete, LeistungIDs: []string{service.URN()}}},
		DestinationID:  e.DestinationID,
		IssuedAt:       g.now().Unix(),
		JTI:            uuid.NewString(),
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return v, fmt.Errorf("sign route: %w", err)
	}
	jws, err := ra.signer.Sign(payload)
	if err != nil {
		return v, fmt.Errorf("sign route: %w", err)
	}
	if sig, err = jws.CompactSerialize(); err != nil {
		return v, fmt.Errorf("sign route: %w", err)
	}
	ra.mu.Lock()
	if len(ra.sigs) >= sigCacheSize {
		// Forget half, in map order: a random half, which keeps what is
		// asked for often likely to stay.
		n := 0
		for k := range ra.sigs {
			delete(ra.sigs, k)
			if n++; n >= sigCacheSize/2 {
				break
			}
		}
	}
	ra.sigs[k] = sig
	ra.mu.Unlock()
	v.DestinationSignature = sig
	return v, nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
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
func (g *Gateway) handleAreas(w http.ResponseWriter, r *http.Request) error {
	terms := r.URL.Query()["areaSearchexpression"]
	if len(terms) == 0 {
		return problem.InvalidRequest("areaSearchexpression", "areaSearchexpression is required: a name, a name with * wildcards or a postcode, repeated for up to 10 terms")
	}
	q := store.AreaQuery{Terms: terms}
	if err := q.Check(); err != nil {
		return problem.Invalid("areaSearchexpression", "areaSearchexpression: "+err.Error())
	}
	page, err := pageOf(r)
	if err != nil {
		return err
	}
	if g.routing.ref == nil {
		return problem.Unavailable("area search needs a store that keeps reference data")
	}
	list, total, err := g.routing.ref.SearchAreas(r.Context(), q, page)
	if err != nil {
		return fmt.Errorf("search areas: %w", err)
	}
	out := areaResult{Count: len(list), Offset: page.Offset, TotalCount: total, Areas: make([]areaView, 0, len(list))}
	for _, a := range list {
		out.Areas = append(out.Areas, areaView{ID: a.ID(), Name: a.Name, Type: areaType(a)})
	}
	w.Header().Set("Cache-Control", "no-cache")
	writeJSON(w, http.StatusOK, out)
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

// CheckResponsible checks, for a submission to destination d naming the
// applicant's region ("DE" + ARS), that d is the destination responsible
// for service there at time at. It returns nil when it is, or when the
// gateway keeps no routing registry; otherwise a 422 problem on field
// "region" that names the responsible destination (extension
// responsibleDestinationId), or says that none is. d is the destination as
// stored: a state the registry has not seen yet (written past the admin
// API) is announced first.
func (g *Gateway) CheckResponsible(ctx context.Context, service, region string, d store.Destination, at time.Time) error {
	if g.routing.sync == nil {
		return nil
	}
	reg, err := g.registry(ctx)
	if err != nil {
		return err
	}
	if e, ok := reg.Destination(d.ID); !ok || e.UpdatedAt.Before(d.UpdatedAt) {
		pctx, cancel := context.WithTimeout(ctx, publishWait)
		_, err := reg.PublishDestination(pctx, d)
		cancel()
		if err != nil {
			g.log.ErrorContext(ctx, "announce destination change", "destination_id", d.ID, "err", err)
		}
	}
	a, err := ars.ParseRegion(region)
	if err != nil {
		return problem.Invalid("region", err.Error())
	}
	if a.Level() != ars.Bund {
		if _, err := g.place(reg.Reference(), "ars", a.Code()); err != nil {
			if p, ok := problem.As(err); ok {
				return p.WithField("region")
			}
			return err
		}
	}
	m, ok := reg.Resolve(service, a, at)
	switch {
	case !ok:
		return problem.Unprocessable("region", fmt.Sprintf("no destination is responsible for %s in region %s", service, region))
	case m.Route.DestinationID != d.ID:
		return problem.Unprocessable("region", fmt.Sprintf("destination %s is responsible for %s in region %s (route for %s), not %s",
			m.Route.DestinationID, service, region, m.Route.Region, d.ID)).
			With("responsibleDestinationId", m.Route.DestinationID)
	}
	return nil
}
