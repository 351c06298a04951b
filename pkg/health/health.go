// Package health answers the two questions an orchestrator asks of every
// Amtsbote process: is it alive (/healthz: the process serves HTTP) and
// is it ready for work (/readyz: each of its dependencies answers, e.g.
// NATS connected, the store reachable, the routing table current).
//
// A process builds one Health with its checks and mounts it on its HTTP
// mux (Routes), or serves it with its metrics on a listener of their own
// (Handler):
//
//	h := health.New(log, health.Check{Name: "nats", Func: b.Ready})
//	reg.MustRegister(h.Collector()) // amtsbote_ready{check}, for alerts
//	srv := &http.Server{Handler: h.Handler(metrics.Handler(reg))}
package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/amtsbote/amtsbote/pkg/problem"
)

// DefaultTimeout bounds all checks of one readiness request.
const DefaultTimeout = 2 * time.Second

// Check is one dependency of readiness. Func returns nil when the
// dependency is usable; it must return when ctx ends.
type Check struct {
	Name string
	Func func(ctx context.Context) error
}

// Health answers /healthz and /readyz. It is safe for concurrent use;
// checks are added before it serves.
type Health struct {
	log     *slog.Logger
	timeout time.Duration
	checks  []Check
	// failing remembers which checks failed last, so a failure is logged
	// when it begins and not on every probe.
	mu      sync.Mutex
	failing map[string]bool
}

// New returns a Health running checks; log (nil discards) receives a
// check's failure once when it begins and its recovery.
func New(log *slog.Logger, checks ...Check) *Health {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Health{log: log, timeout: DefaultTimeout, checks: checks, failing: map[string]bool{}}
}

// Add adds checks.
func (h *Health) Add(checks ...Check) { h.checks = append(h.checks, checks...) }

// Names returns the names of the checks, in order.
func (h *Health) Names() []string {
	names := make([]string, len(h.checks))
	for i, c := range h.checks {
		names[i] = c.Name
	}
	return names
}

// Check runs every check at once within the timeout and returns each
// one's error (nil when it passed), by name.
func (h *Health) Check(ctx context.Context) map[string]error {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	res := make(map[string]error, len(h.checks))
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, c := range h.checks {
		wg.Go(func() {
			err := c.Func(ctx)
			if err == nil && ctx.Err() != nil {
				err = ctx.Err()
			}
			mu.Lock()
			res[c.Name] = err
			mu.Unlock()
		})
	}
	wg.Wait()
	if !errors.Is(ctx.Err(), context.Canceled) {
		// Not when the caller went away: a check cut short by that says
		// nothing of the dependency.
		h.note(ctx, res)
	}
	return res
}

// WatchInterval is how often a process checks its readiness on its own.
const WatchInterval = 15 * time.Second

// Watch runs the checks every interval until ctx ends, so that a failure
// and a recovery are logged when they happen, not only when /readyz or
// /metrics is asked.
func (h *Health) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.Check(ctx)
		}
	}
}

// note logs each check that began or stopped failing.
func (h *Health) note(ctx context.Context, res map[string]error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name, err := range res {
		switch {
		case err != nil && !h.failing[name]:
			h.failing[name] = true
			h.log.WarnContext(ctx, "not ready", "check", name, "err", err)
		case err == nil && h.failing[name]:
			delete(h.failing, name)
			h.log.InfoContext(ctx, "ready again", "check", name)
		}
	}
}

// Live answers 200 "ok": the process runs and serves HTTP.
func (h *Health) Live(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("ok\n"))
}

// Ready answers 200 with each check's state when every check passes, or
// 503 application/problem+json naming the failing checks (in the detail
// and as the member "checks"). Errors are not shown: they may name
// internal addresses; the log has them.
func (h *Health) Ready(w http.ResponseWriter, r *http.Request) {
	res := h.Check(r.Context())
	states := make(map[string]string, len(res))
	var failed []string
	for name, err := range res {
		states[name] = "ok"
		if err != nil {
			states[name] = "failing"
			failed = append(failed, name)
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	if len(failed) > 0 {
		slices.Sort(failed)
		problem.Write(w, problem.Unavailable(fmt.Sprintf("not ready: %s failing", strings.Join(failed, ", "))).With("checks", states))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}{"ready", states})
}

// Mux is what Routes registers on: http.ServeMux, or the gateway's mux.
type Mux interface {
	HandleFunc(pattern string, handler func(http.ResponseWriter, *http.Request))
}

// Routes registers GET /healthz and GET /readyz on m.
func (h *Health) Routes(m Mux) {
	m.HandleFunc("GET /healthz", h.Live)
	m.HandleFunc("GET /readyz", h.Ready)
}

// Handler serves /healthz, /readyz and, when metrics is not nil,
// GET /metrics: the whole HTTP surface of a process without the gateway
// (router, ledger, delivery, subscriber).
func (h *Health) Handler(metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	h.Routes(mux)
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	return mux
}

var descReady = prometheus.NewDesc("amtsbote_ready",
	"1 when the readiness check passed at this scrape, else 0, by check (nats, store, routes, …).", []string{"check"}, nil)

// Collector returns a collector that runs the checks at every scrape
// and reports amtsbote_ready{check}, so that an alert sees a process
// that is up but not ready.
func (h *Health) Collector() prometheus.Collector { return collector{h} }

type collector struct{ h *Health }

func (c collector) Describe(ch chan<- *prometheus.Desc) { ch <- descReady }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for name, err := range c.h.Check(context.Background()) {
		v := 1.0
		if err != nil {
			v = 0
		}
		ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, v, name)
	}
}
