// Package gateway serves Amtsbote's HTTP APIs: FIT-Connect's Submission API
// (destinations, keys, info), the OAuth2 token endpoint and JWKS, and the
// operator API under /admin/v1/. Every error answer is
// application/problem+json; every registry change goes through the store,
// which writes the audit log.
//
// Handlers are methods of Gateway, grouped by area in files of their own;
// the routes are registered in routes.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/issuer"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/routesync"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// Defaults for the zero values of Config.
const (
	DefaultTokenTTL = 30 * time.Minute
	DefaultKeyGrace = 7 * 24 * time.Hour
	// DefaultMaxBody leaves room for a submission's JSON with a 10 MB data JWE.
	DefaultMaxBody int64 = 12 << 20
)

// Config is what a Gateway needs. Store, Signer and PublicURL are required.
type Config struct {
	// Store holds the registry and the audit log.
	Store store.Store
	// Signer is Amtsbote's own PS512 key: it signs access tokens and is
	// published at /.well-known/jwks.json.
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

	// Bus carries submissions and events. Without it the submission,
	// attachment and case event endpoints answer 503; the rest works.
	Bus *bus.Bus
	// Issuer issues Amtsbote's own events (required with a bus): the
	// notify-submission of a first fetch at once, create- and
	// submit-submission through the outbox, which the signer role empties.
	Issuer *issuer.Issuer
	// MaxAttachment bounds one encrypted attachment in bytes (default
	// DefaultMaxAttachment, 512 MiB).
	MaxAttachment int64

	// Routes is the routing registry the gateway resolves with and
	// announces destination changes to; nil makes one that follows the
	// store within this process only.
	Routes *routesync.Syncer
	// RateLimit is the sustained Routing API requests per second per
	// client address (default DefaultRateLimit); RateBurst how many may
	// come at once (default DefaultRateBurst).
	RateLimit float64
	RateBurst int
	// MaxImport bounds an imported reference data file in bytes (default
	// DefaultMaxImport).
	MaxImport int64
}

// Gateway is the HTTP front of Amtsbote. It is safe for concurrent use.
type Gateway struct {
	store     store.Store
	publicURL string
	tokenTTL  time.Duration
	keyGrace  time.Duration
	maxBody   int64
	log       *slog.Logger
	now       func() time.Time

	signer    gojose.Signer
	verifyKey gojose.JSONWebKey
	jwks      []byte
	// dummyHash makes a token request for an unknown client cost as much
	// as one for a known client.
	dummyHash []byte

	oidc    *oidcKeys
	flow    *flow // nil without a bus
	routing *routingAPI
	metrics *metrics
	mux     *routeMux
	handler http.Handler
}

// New checks cfg, fills in defaults and builds the routes.
func New(cfg Config) (*Gateway, error) {
	if cfg.Store == nil {
		return nil, errors.New("new gateway: no store")
	}
	if cfg.Signer.Private == nil {
		return nil, errors.New("new gateway: no signing key")
	}
	if cfg.Signer.Purpose != jose.Signing {
		return nil, fmt.Errorf("new gateway: signing key has purpose %q, want %q", cfg.Signer.Purpose, jose.Signing)
	}
	if cfg.Signer.Public.KeyID == "" {
		return nil, errors.New("new gateway: signing key has no kid")
	}
	pub := strings.TrimRight(cfg.PublicURL, "/")
	if u, err := url.Parse(pub); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("new gateway: public url %q must be an absolute http(s) URL", cfg.PublicURL)
	}
	g := &Gateway{
		store:     cfg.Store,
		publicURL: pub,
		tokenTTL:  orDefault(cfg.TokenTTL, DefaultTokenTTL),
		keyGrace:  orDefault(cfg.KeyGrace, DefaultKeyGrace),
		maxBody:   orDefault(cfg.MaxBody, DefaultMaxBody),
		log:       cfg.Logger,
		now:       cfg.Now,
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.now == nil {
		g.now = time.Now
	}

	signer, err := gojose.NewSigner(
		gojose.SigningKey{Algorithm: gojose.PS512, Key: gojose.JSONWebKey{Key: cfg.Signer.Private, KeyID: cfg.Signer.Public.KeyID}},
		(&gojose.SignerOptions{}).WithType("at+jwt"),
	)
	if err != nil {
		return nil, fmt.Errorf("new gateway: signer: %w", err)
	}
	g.signer = signer
	g.verifyKey = gojose.JSONWebKey{Key: &cfg.Signer.Private.PublicKey, KeyID: cfg.Signer.Public.KeyID, Algorithm: string(gojose.PS512)}
	pubJSON, err := cfg.Signer.PublicJSON()
	if err != nil {
		return nil, fmt.Errorf("new gateway: %w", err)
	}
	g.jwks = []byte(`{"keys":[` + string(pubJSON) + `]}`)
	if g.dummyHash, err = HashSecret(NewSecret()); err != nil {
		return nil, fmt.Errorf("new gateway: %w", err)
	}

	if cfg.OIDCIssuer != "" {
		client := cfg.HTTPClient
		if client == nil {
			client = &http.Client{Timeout: 10 * time.Second}
		}
		g.oidc = newOIDCKeys(strings.TrimRight(cfg.OIDCIssuer, "/"), client, g.now, g.log)
	}

	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if g.metrics, err = newMetrics(reg); err != nil {
		return nil, fmt.Errorf("new gateway: %w", err)
	}

	if err := g.initFlow(cfg); err != nil {
		return nil, err
	}
	if err := g.initRouting(cfg, reg); err != nil {
		return nil, err
	}
	g.mux = &routeMux{ServeMux: http.NewServeMux()}
	g.routes(reg)
	g.handler = g.observe(g.recoverPanic(g.mux))
	return g, nil
}

func orDefault[T comparable](v, d T) T {
	var zero T
	if v == zero {
		return d
	}
	return v
}

// Handler returns the gateway's HTTP handler.
func (g *Gateway) Handler() http.Handler { return g.handler }

// routeMux is the gateway's ServeMux. It keeps the patterns registered on
// it, so that the routes can be held against schemas/openapi.yaml.
type routeMux struct {
	*http.ServeMux
	patterns []string
}

// Handle registers h for pattern and records the pattern.
func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.ServeMux.Handle(pattern, h)
	m.patterns = append(m.patterns, pattern)
}

// HandleFunc registers h for pattern and records the pattern.
func (m *routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.ServeMux.HandleFunc(pattern, h)
	m.patterns = append(m.patterns, pattern)
}

// routes registers every endpoint. Later areas add their routes here.
func (g *Gateway) routes(reg *prometheus.Registry) {
	m := g.mux

	m.HandleFunc("POST /token", g.handleToken)
	m.HandleFunc("GET /.well-known/jwks.json", g.handleJWKS)
	m.HandleFunc("GET /v1/info", g.handleInfo)
	m.Handle("GET /metrics", metricsHandler(reg))
	m.HandleFunc("GET /healthz", g.handleHealth)
	g.submissionRoutes()
	g.routingRoutes()

	m.Handle("GET /v1/destinations/{destinationId}", g.authed(g.handleGetDestination))
	m.HandleFunc("GET /v1/destinations/{destinationId}/keys/{keyId}", g.handleGetKey)

	m.Handle("POST /admin/v1/destinations", g.admin(g.handleAdminCreateDestination))
	m.Handle("GET /admin/v1/destinations", g.admin(g.handleAdminListDestinations))
	m.Handle("GET /admin/v1/destinations/{destinationId}", g.admin(g.handleAdminGetDestination))
	m.Handle("PUT /admin/v1/destinations/{destinationId}", g.admin(g.handleAdminPutDestination))
	m.Handle("PATCH /admin/v1/destinations/{destinationId}", g.admin(g.handleAdminPatchDestination))
	m.Handle("POST /admin/v1/destinations/{destinationId}/activate", g.admin(g.handleAdminSetStatus(store.StatusActive)))
	m.Handle("POST /admin/v1/destinations/{destinationId}/deactivate", g.admin(g.handleAdminSetStatus(store.StatusInactive)))
	m.Handle("POST /admin/v1/destinations/{destinationId}/keys", g.admin(g.handleAdminAddKey))
	m.Handle("POST /admin/v1/clients", g.admin(g.handleAdminCreateClient))
	m.Handle("GET /admin/v1/clients", g.admin(g.handleAdminListClients))
	m.Handle("GET /admin/v1/clients/{clientId}", g.admin(g.handleAdminGetClient))
	m.Handle("GET /admin/v1/audit", g.admin(g.handleAdminAudit))
}

// handleHealth answers 200 while the store answers, 503 when it does not.
func (g *Gateway) handleHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, _, err := g.store.Destinations(ctx, store.Page{Limit: 1}); err != nil {
		g.log.WarnContext(ctx, "health check", "err", err)
		problem.Write(w, problem.Unavailable("the store does not answer"))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("ok\n"))
}

// HashSecret returns the bcrypt hash of a client secret, for storing in
// store.Client.SecretHash.
func HashSecret(secret string) ([]byte, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.DefaultCost)
	if err != nil {
		return nil, fmt.Errorf("hash secret: %w", err)
	}
	return h, nil
}
