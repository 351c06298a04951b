// Package console serves the operators' web console at /ui/ and the
// operator endpoints only it needs: an overview of the process's figures,
// a case's events with their signatures verified, the explanation of a
// route resolution and coverage per Kreis. The console's pages are static
// files embedded in the binary; they log in with an admin client's
// credentials at /token and call the operator API with the bearer token,
// so every figure the console shows is one the API answers an operator.
// Amtsbote holds no plaintext, and nothing here reads any: events are
// signed claims, dead letters are routing envelopes.
package console

import (
	"context"
	"crypto/rsa"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/routesync"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/gateway/httpapi"
)

// Prefix is where the console's pages live.
const Prefix = "/ui/"

// adminPrefix is where the console's operator endpoints live.
const adminPrefix = "/admin/v1"

//go:embed ui
var assets embed.FS

// Store is what the console reads.
type Store interface {
	SubmissionsByCase(ctx context.Context, caseID string) ([]store.Submission, error)
	Events(ctx context.Context, caseID string, p store.Page) ([]store.Event, int, error)
	Key(ctx context.Context, destinationID, kid string) (store.Key, error)
	Overdue(ctx context.Context, cutoffs []time.Time) ([]store.OverdueDestination, error)
}

// DeadLetters counts DEAD's dead letters; *bus.Bus has it.
type DeadLetters interface {
	DeadLetters(ctx context.Context, f bus.DeadFilter, offset, limit int) ([]bus.DeadLetter, int, error)
}

// Config is what a Console needs. API, Store and Key are required.
type Config struct {
	API   *httpapi.API
	Store Store
	// Key verifies Amtsbote's own events: the public half of the key the
	// issuer signs with, published in the JWKS.
	Key *rsa.PublicKey
	// KeyID is Key's kid.
	KeyID string
	// Issuer is Amtsbote's URL, the iss of its own events.
	Issuer string
	// Routes resolves; nil answers the routing explorer and coverage with 503.
	Routes *routesync.Syncer
	// Dead counts dead letters for the overview; nil leaves them out.
	Dead DeadLetters
	// Gatherer is the process's metrics registry the overview reads.
	Gatherer prometheus.Gatherer
	// Overdue are the ages after which a waiting submission is overdue.
	Overdue []time.Duration
	Now     func() time.Time
}

// Console serves the web console. It is safe for concurrent use.
type Console struct {
	cfg Config
	ui  fs.FS
}

// New checks cfg.
func New(cfg Config) (*Console, error) {
	if cfg.API == nil || cfg.Store == nil || cfg.Key == nil {
		return nil, errors.New("new console: no API, store or key")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Gatherer == nil {
		cfg.Gatherer = prometheus.NewRegistry()
	}
	ui, err := fs.Sub(assets, "ui")
	if err != nil {
		return nil, err
	}
	return &Console{cfg: cfg, ui: ui}, nil
}

// Routes registers the console's pages and its operator endpoints.
func (c *Console) Routes(m *httpapi.Mux) {
	admin := c.cfg.API.Admin
	m.Handle("GET "+Prefix, c.cfg.API.Unauthenticated(http.HandlerFunc(c.handleFiles)))
	m.Handle("GET "+adminPrefix+"/overview", admin(c.handleOverview))
	m.Handle("GET "+adminPrefix+"/cases/{caseId}/events/verified", admin(c.handleVerifiedEvents))
	m.Handle("GET "+adminPrefix+"/routing/explain", admin(c.handleExplain))
	m.Handle("GET "+adminPrefix+"/coverage/kreise", admin(c.handleKreisCoverage))
}

// csp keeps the console to its own files: no inline script or style, no
// other origin, not framed.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// handleFiles serves the embedded pages. They hold no data, so anyone may
// load them; the data behind them needs an admin token.
func (c *Console) handleFiles(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, Prefix)
	if name == "" {
		name = "index.html"
	}
	if st, err := fs.Stat(c.ui, name); err != nil || st.IsDir() || strings.Contains(name, "..") {
		problem.Write(w, problem.NotFound("path", fmt.Sprintf("no resource at %s", r.URL.Path)))
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	http.ServeFileFS(w, r, c.ui, name)
}
