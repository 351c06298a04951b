// Package gateway is Amtsbote's HTTP front: it assembles the APIs, each a
// package of its own with its routes beside its handlers, on one mux with
// one access log, one set of HTTP metrics and one way of answering
// errors (application/problem+json):
//
//   - token: the OAuth2 token endpoint and the JWKS, and the verifier of
//     every bearer token;
//   - submission: FIT-Connect's submission flow (create, attachments,
//     submit, pickup, fetch, case events);
//   - destination: FIT-Connect's destination endpoints;
//   - routingapi: FIT-Connect's Routing API 2.0;
//   - admin: the operator API under /admin/v1/;
//   - console: the operators' web console at /ui/ and the operator
//     endpoints only it needs.
//
// Registry changes go through pkg/registry, the same operations the
// operator commands use.
package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/health"
	"github.com/amtsbote/amtsbote/pkg/issuer"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/registry"
	"github.com/amtsbote/amtsbote/pkg/routesync"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/gateway/admin"
	"github.com/amtsbote/amtsbote/services/gateway/destination"
	"github.com/amtsbote/amtsbote/services/gateway/httpapi"
	"github.com/amtsbote/amtsbote/services/gateway/routingapi"
	"github.com/amtsbote/amtsbote/services/gateway/submission"
	"github.com/amtsbote/amtsbote/services/gateway/token"
)

// Defaults for the zero values of Config.
const (
	// DefaultMaxBody leaves room for a submission's JSON with a 10 MB data JWE.
	DefaultMaxBody int64 = 12 << 20
)

// APIVersion is the version of FIT-Connect's Submission API that the
// gateway implements, as GET /v1/info reports it. It names the interface a
// client can rely on, not the build of Amtsbote: a client written for
// Submission API 1.1.3 compares against it like against FIT-Connect's own
// service. It changes when the implemented API version changes.
var APIVersion = httpapi.Version{Major: 1, Minor: 1, Patch: 3}

// Config is what a Gateway needs. Store, Signer and PublicURL are required.
type Config struct {
	// Store holds the registry, the submissions and the audit log; when it
	// also keeps reference data (store.Reference), the Routing API, imports
	// and coverage are served.
	Store store.Store
	// Signer is Amtsbote's own PS512 key: it signs access tokens and route
	// signatures and is published at /.well-known/jwks.json.
	Signer jose.KeyPair
	// PublicURL is the base URL clients reach the gateway at, without a
	// trailing slash; it is the issuer and the audience of access tokens.
	PublicURL string
	// TokenTTL is the lifetime of issued access tokens (default 30 minutes).
	TokenTTL time.Duration
	// KeyGrace is how long a rolled-over key stays valid (default 7 days),
	// so submissions encrypted to it before the roll still arrive.
	KeyGrace time.Duration
	// MaxBody bounds request bodies in bytes (default 12 MiB).
	MaxBody int64
	// OIDCIssuer, when set, is an external issuer whose access tokens are
	// accepted besides Amtsbote's own; its keys are discovered through
	// <issuer>/.well-known/openid-configuration.
	OIDCIssuer string
	// HTTPClient fetches the OIDC discovery document and keys (default: a
	// client with a 10-second timeout).
	HTTPClient *http.Client
	// Logger receives request logs and errors (default: discard).
	Logger *slog.Logger
	// Registry receives the HTTP metrics (default: a private registry).
	Registry *prometheus.Registry
	// Now is the clock (default time.Now); tests move it.
	Now func() time.Time
	// Health answers /healthz and /readyz (default: ready while the
	// store answers). The process adds its NATS and routing checks.
	Health *health.Health
	// Tracer makes every request a server span (default: no spans).
	Tracer trace.TracerProvider
	// MetricsElsewhere leaves /metrics off the gateway's routes: the
	// process serves it on a listener of its own, out of the public's reach.
	MetricsElsewhere bool

	// Bus carries submissions and events. Without it the submission,
	// attachment and case event endpoints answer 503; the rest works.
	Bus *bus.Bus
	// Issuer issues Amtsbote's own events (required with a bus).
	Issuer *issuer.Issuer
	// MaxAttachment bounds one encrypted attachment in bytes (default
	// submission.DefaultMaxAttachment, 2 GiB).
	MaxAttachment int64

	// Routes is the routing registry the gateway resolves with and
	// announces destination changes to; nil makes one that follows the
	// store within this process only.
	Routes *routesync.Syncer
	// RateLimit is the sustained Routing API requests per second per
	// client address (default routingapi.DefaultRateLimit); RateBurst how
	// many may come at once (default routingapi.DefaultRateBurst).
	RateLimit float64
	RateBurst int
	// Limits bound what one client can make the gateway spend, above all
	// one that needs no token; zero fields take the defaults.
	Limits Limits
	// MaxImport bounds an imported reference data file in bytes (default
	// admin.DefaultMaxImport).
	MaxImport int64
	// Overdue are the ages after which a submission not picked up is
	// listed as overdue (default admin.DefaultOverdue).
	Overdue []time.Duration
	// CallbackAllow are the networks besides the public internet that
	// callbacks may go to; a callback given to any other address is
	// refused (the delivery role would never post to it).
	CallbackAllow []netip.Prefix
}

// DefaultPublicRate is the default per-address limit of the routes that
// need no token besides the Routing API: the token endpoint, the JWKS,
// the destinations' public keys, info, health and metrics.
var DefaultPublicRate = httpapi.Rate{PerSecond: 100, Burst: 1000}

// Limits bound what one client can make the gateway spend.
type Limits struct {
	// Deadlines bound how long request bodies may take to arrive and
	// answers to be taken.
	Deadlines httpapi.Deadlines
	// Public is the per-address limit of the routes that need no token
	// (default DefaultPublicRate).
	Public httpapi.Rate
	// TokenBody bounds a token request (default token.DefaultMaxBody).
	TokenBody int64
	// ClientFailures and AddressFailures limit failed client
	// authentications at the token endpoint per client id and per address
	// (defaults token.DefaultClientFailures, token.DefaultAddressFailures).
	ClientFailures  httpapi.Rate
	AddressFailures httpapi.Rate
	// Hashes bounds concurrent secret comparisons (default GOMAXPROCS),
	// HashWait the wait for one (default token.DefaultHashWait).
	Hashes   int
	HashWait time.Duration
	// InFlight bounds the requests served at once (default
	// DefaultInFlight, negative: no bound); one more waits InFlightWait
	// (default one second) for a slot, then gets 503 with Retry-After.
	InFlight     int
	InFlightWait time.Duration
	// TrustedProxies are the load balancers whose X-Forwarded-For names
	// the client, so that the per-address limits count clients, not the
	// balancer (httpapi.TrustProxies); none by default.
	TrustedProxies []netip.Prefix
}

// DefaultInFlight is the default bound of requests served at once: with
// request bodies read whole bounded by MaxBody, it bounds their memory.
const DefaultInFlight = 256

// Gateway is the HTTP front of Amtsbote. It is safe for concurrent use.
type Gateway struct {
	store   store.Store
	log     *slog.Logger
	mux     *httpapi.Mux
	handler http.Handler
	// routing serves the Routing API alone; nil without reference data.
	routing http.Handler
	routes  *routesync.Syncer
}

// New checks cfg, fills in defaults and builds the routes.
func New(cfg Config) (*Gateway, error) {
	if cfg.Store == nil {
		return nil, errors.New("new gateway: no store")
	}
	pub := strings.TrimRight(cfg.PublicURL, "/")
	if u, err := url.Parse(pub); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("new gateway: public url %q must be an absolute http(s) URL", cfg.PublicURL)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	maxBody := cfg.MaxBody
	if maxBody == 0 {
		maxBody = DefaultMaxBody
	}
	lim := cfg.Limits
	api := &httpapi.API{Realm: pub, MaxBody: maxBody, Log: log, PublicLimit: cmp.Or(lim.Public, DefaultPublicRate).NewLimiter()}
	if t, ok := cfg.Store.(store.Transient); ok {
		api.Transient = t.Transient
	}
	tokens, err := token.New(token.Config{
		API: api, Clients: cfg.Store, Key: cfg.Signer, URL: pub, TTL: cfg.TokenTTL,
		OIDCIssuer: cfg.OIDCIssuer, HTTPClient: cfg.HTTPClient, Logger: log, Now: now,
		MaxBody: lim.TokenBody, ClientFailures: lim.ClientFailures, AddressFailures: lim.AddressFailures,
		Hashes: lim.Hashes, HashWait: lim.HashWait,
	})
	if err != nil {
		return nil, fmt.Errorf("new gateway: %w", err)
	}
	api.Verifier = tokens

	g := &Gateway{store: cfg.Store, log: log, routes: cfg.Routes}
	ref, _ := cfg.Store.(store.Reference)
	if g.routes == nil && ref != nil {
		if g.routes, err = routesync.New(routesync.Config{Store: ref, Logger: log, Registry: reg}); err != nil {
			return nil, fmt.Errorf("new gateway: %w", err)
		}
	}
	rcfg := registry.Config{Store: cfg.Store, KeyGrace: cfg.KeyGrace, Logger: log, Now: now, CallbackAllow: cfg.CallbackAllow}
	if ref != nil {
		rcfg.Reference = ref
	}
	if g.routes != nil {
		rcfg.Routes = g.routes
	}
	changes, err := registry.New(rcfg)
	if err != nil {
		return nil, fmt.Errorf("new gateway: %w", err)
	}

	scfg := submission.Config{
		API: api, Store: cfg.Store, URL: pub, Bus: cfg.Bus, Issuer: cfg.Issuer,
		MaxAttachment: cfg.MaxAttachment, Now: now, CallbackAllow: cfg.CallbackAllow,
	}
	if g.routes != nil {
		scfg.Responsible = g.routes
	}
	submissions, err := submission.New(scfg)
	if err != nil {
		return nil, fmt.Errorf("new gateway: %w", err)
	}
	acfg := admin.Config{API: api, Store: cfg.Store, Registry: changes, Routes: g.routes, MaxImport: cfg.MaxImport, Overdue: cfg.Overdue, Now: now}
	if cfg.Bus != nil {
		acfg.Dead = cfg.Bus
	}
	operator, err := admin.New(acfg)
	if err != nil {
		return nil, fmt.Errorf("new gateway: %w", err)
	}

	if g.mux, err = httpapi.NewMux(reg, log); err != nil {
		return nil, fmt.Errorf("new gateway: %w", err)
	}
	m := g.mux
	m.SetTracerProvider(cfg.Tracer)
	m.SetDeadlines(lim.Deadlines)
	if n := cmp.Or(lim.InFlight, DefaultInFlight); n > 0 {
		m.SetInFlight(n, cmp.Or(lim.InFlightWait, time.Second))
	}
	tokens.Routes(m)
	m.Handle("GET /v1/info", api.Unauthenticated(http.HandlerFunc(handleInfo)))
	if !cfg.MetricsElsewhere {
		m.Handle("GET /metrics", api.Unauthenticated(httpapi.MetricsHandler(reg)))
	}
	hl := cfg.Health
	if hl == nil {
		hl = health.New(log, health.Check{Name: "store", Func: StoreCheck(cfg.Store)})
	}
	m.Handle("GET /healthz", api.Unauthenticated(http.HandlerFunc(hl.Live)))
	m.Handle("GET /readyz", api.Unauthenticated(http.HandlerFunc(hl.Ready)))
	submissions.Routes(m)
	if g.routes != nil {
		var areas routingapi.Areas
		if ref != nil {
			areas = ref
		}
		routes, err := routingapi.New(routingapi.Config{
			API: api, Routes: g.routes, Areas: areas, Signer: cfg.Signer, URL: pub,
			RateLimit: cfg.RateLimit, RateBurst: cfg.RateBurst, Now: now,
		})
		if err != nil {
			return nil, fmt.Errorf("new gateway: %w", err)
		}
		routes.Routes(m)
		rm, err := httpapi.NewMux(reg, log)
		if err != nil {
			return nil, fmt.Errorf("new gateway: %w", err)
		}
		rm.SetTracerProvider(cfg.Tracer)
		rm.SetDeadlines(lim.Deadlines)
		if n := cmp.Or(lim.InFlight, DefaultInFlight); n > 0 {
			rm.SetInFlight(n, cmp.Or(lim.InFlightWait, time.Second))
		}
		routes.RoutesAlone(rm)
		rm.Handle("GET /healthz", api.Unauthenticated(http.HandlerFunc(hl.Live)))
		rm.Handle("GET /readyz", api.Unauthenticated(http.HandlerFunc(hl.Ready)))
		g.routing = rm.Handler()
		if len(lim.TrustedProxies) > 0 {
			g.routing = httpapi.TrustProxies(lim.TrustedProxies, g.routing)
		}
	}
	destination.New(api, cfg.Store, changes, now).Routes(m)
	operator.Routes(m)
	if err := g.mountConsole(m, api, cfg, pub, reg, now); err != nil {
		return nil, fmt.Errorf("new gateway: %w", err)
	}
	g.handler = m.Handler()
	if len(lim.TrustedProxies) > 0 {
		g.handler = httpapi.TrustProxies(lim.TrustedProxies, g.handler)
	}
	return g, nil
}

// Handler returns the gateway's HTTP handler.
func (g *Gateway) Handler() http.Handler { return g.handler }

// RoutingHandler returns a handler that serves FIT-Connect's Routing API
// alone, for a listener or host name of its own: /v1/ and /v2/ routes and
// areas, /v1/info and /v2/info with the Routing API's version, /healthz
// and /readyz. It is nil when the store keeps no reference data.
func (g *Gateway) RoutingHandler() http.Handler { return g.routing }

// handleInfo answers GET /v1/info.
func handleInfo(w http.ResponseWriter, _ *http.Request) {
	httpapi.WriteJSON(w, http.StatusOK, struct {
		Version httpapi.Version `json:"version"`
	}{APIVersion})
}

// StoreCheck is the readiness check of a store: it answers a query.
func StoreCheck(st store.Store) func(context.Context) error {
	return func(ctx context.Context) error {
		if _, _, err := st.Destinations(ctx, store.Page{Limit: 1}); err != nil {
			return fmt.Errorf("store: %w", err)
		}
		return nil
	}
}
