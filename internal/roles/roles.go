// Package roles wires the roles one amtsbote process runs (gateway,
// signer, router, ledger, delivery) to one bus and one store, and runs them until
// the context ends or one fails. The dev and serve commands use it.
package roles

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/health"
	"github.com/amtsbote/amtsbote/pkg/issuer"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/metrics"
	"github.com/amtsbote/amtsbote/pkg/routesync"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/delivery"
	"github.com/amtsbote/amtsbote/services/gateway"
	"github.com/amtsbote/amtsbote/services/ledger"
	"github.com/amtsbote/amtsbote/services/router"
	"github.com/amtsbote/amtsbote/services/signer"
)

// Store is what both store implementations provide.
type Store interface {
	store.Store
	store.Reference
	store.Backlogs
	store.Transient
}

// Roles is the set of roles one process runs, wired to one bus and store.
type Roles struct {
	Bus       *bus.Bus
	Store     Store
	Key       jose.KeyPair // Amtsbote's signing key
	PublicURL string
	Log       *slog.Logger

	Gateway  bool
	Listener net.Listener // the gateway's, or the metrics' without one
	// RoutingListener, when set, serves FIT-Connect's Routing API alone
	// (gateway.RoutingHandler) beside the gateway's listener.
	RoutingListener net.Listener
	// MetricsListener, when set beside the gateway, serves /metrics,
	// /healthz and /readyz, and the gateway's listener no /metrics.
	MetricsListener net.Listener
	Signer          bool
	Router          bool
	Ledger          bool
	Delivery        bool

	// Tracer records the spans of every role (nil: none). The bus's
	// spans are set on the bus itself (bus.Bus.SetTracerProvider).
	Tracer trace.TracerProvider

	// Gateway options.
	OIDCIssuer string
	KeyGrace   time.Duration // 0 for the default
	Retention  ledger.Retention
	Limits     gateway.Limits // zero fields for the defaults
	// RoutesRate and RoutesBurst are the Routing API's per-address limit;
	// zero for the defaults.
	RoutesRate  float64
	RoutesBurst int
	// Overdue are the ages after which a submission not picked up is
	// listed as overdue (nil for the default, 3 and 9 days).
	Overdue []time.Duration

	// CallbackAllow are the networks besides the public internet that
	// callbacks may go to: the gateway accepts callbacks there, the
	// delivery role posts to them (delivery.Config.Allow).
	CallbackAllow []netip.Prefix
}

// runner is a component that blocks until its context is cancelled.
type runner struct {
	name string
	run  func(context.Context) error
}

// Run builds the roles and runs them until ctx is cancelled or one fails;
// then it stops the others and waits for them.
func (s *Roles) Run(ctx context.Context) error {
	if err := checkInstallation(ctx, s.Bus, s.Store, s.Log); err != nil {
		return err
	}
	reg := metrics.NewRegistry()

	// The periodic resync is a backstop for a registry write whose
	// announcement was lost between the store and JetStream.
	routes, err := routesync.New(routesync.Config{Store: s.Store, Bus: s.Bus, Resync: 5 * time.Minute, Logger: s.Log, Registry: reg})
	if err != nil {
		return err
	}
	ready := health.New(s.Log,
		health.Check{Name: "nats", Func: s.Bus.Ready},
		health.Check{Name: "store", Func: gateway.StoreCheck(s.Store)},
		health.Check{Name: "routes", Func: routes.Current},
	)
	if err := reg.Register(ready.Collector()); err != nil {
		return fmt.Errorf("register readiness metrics: %w", err)
	}
	if err := routes.Load(ctx); err != nil {
		return fmt.Errorf("load routing table: %w", err)
	}
	st := newCachedStore(s.Store, routes)
	runners := []runner{{"routes", routes.Run}, {"health", func(ctx context.Context) error {
		ready.Watch(ctx, health.WatchInterval)
		return nil
	}}}
	events, err := issuer.New(s.Bus, s.Key, s.PublicURL, nil)
	if err != nil {
		return err
	}

	// The signer gives way to the requests this process serves, for up
	// to a minute per event; with none under way it signs on every core,
	// as it does where no gateway runs beside it.
	var serving atomic.Int64
	busy := func() bool { return false }
	var maxDefer time.Duration
	if s.Gateway {
		maxDefer = signer.DefaultMaxDefer
		busy = func() bool { return serving.Load() > 0 && signer.GoroutinesWaiting() }
		gw, err := gateway.New(gateway.Config{
			Store:      st,
			Signer:     s.Key,
			PublicURL:  s.PublicURL,
			KeyGrace:   s.KeyGrace,
			OIDCIssuer: s.OIDCIssuer,
			Logger:     s.Log,
			Registry:   reg,
			Bus:        s.Bus,
			Issuer:     events,
			Routes:     routes,
			Health:     ready,
			Tracer:     s.Tracer,
			Limits:     s.Limits,
			RateLimit:  s.RoutesRate,
			RateBurst:  s.RoutesBurst,
			Overdue:    s.Overdue,

			CallbackAllow:    s.CallbackAllow,
			MetricsElsewhere: s.MetricsListener != nil,
		})
		if err != nil {
			return err
		}
		runners = append(runners, runner{"gateway", func(ctx context.Context) error {
			// The gateway sets read and write deadlines per request itself.
			return serveHTTP(ctx, s.Listener, counted(&serving, gw.Handler()), 0, s.Log)
		}})
		if s.RoutingListener != nil {
			h := gw.RoutingHandler()
			if h == nil {
				return errors.New("routing listener: the store keeps no reference data")
			}
			runners = append(runners, runner{"routing", func(ctx context.Context) error {
				return serveHTTP(ctx, s.RoutingListener, counted(&serving, h), 0, s.Log)
			}})
		}
		if s.MetricsListener != nil {
			h := ready.Handler(metrics.Handler(reg))
			runners = append(runners, runner{"metrics", func(ctx context.Context) error {
				return serveHTTP(ctx, s.MetricsListener, h, 30*time.Second, s.Log)
			}})
		}
	} else if s.MetricsListener != nil {
		return errors.New("metrics listener: roles without the gateway serve metrics on their listener")
	} else if s.RoutingListener != nil {
		return errors.New("routing listener: the Routing API is served by the gateway role")
	} else if s.Listener != nil {
		// Roles without the gateway still expose metrics and health.
		h := ready.Handler(metrics.Handler(reg))
		runners = append(runners, runner{"metrics", func(ctx context.Context) error {
			return serveHTTP(ctx, s.Listener, h, 30*time.Second, s.Log)
		}})
	}
	if s.Signer {
		sg, err := signer.New(signer.Config{Bus: s.Bus, Issuer: events, Busy: busy, MaxDefer: maxDefer, Logger: s.Log, Registry: reg, Tracer: s.Tracer})
		if err != nil {
			return err
		}
		runners = append(runners, runner{"signer", sg.Run})
	}
	if s.Router {
		rt, err := router.New(router.Config{
			Bus: s.Bus, Store: st, Issuer: events,
			Resolver: routes.Resolver(), Logger: s.Log, Registry: reg,
		})
		if err != nil {
			return err
		}
		runners = append(runners, runner{"router", rt.Run})
	}
	if s.Ledger {
		lg, err := ledger.New(ledger.Config{
			Bus: s.Bus, Store: st, Issuer: events,
			Retention: s.Retention, Logger: s.Log, Registry: reg,
		})
		if err != nil {
			return err
		}
		runners = append(runners, runner{"ledger", lg.Run})
		// The streams' figures are the same from every process; the
		// ledger's scrape target reports them.
		if err := reg.Register(bus.NewCollector(s.Bus)); err != nil {
			return fmt.Errorf("register jetstream metrics: %w", err)
		}
	}
	if s.Delivery {
		dl, err := delivery.New(delivery.Config{
			Bus: s.Bus, Store: st, Source: s.PublicURL, Logger: s.Log, Registry: reg, Allow: s.CallbackAllow,
		})
		if err != nil {
			return err
		}
		runners = append(runners, runner{"delivery", dl.Run})
	}
	return runAll(ctx, s.Log, runners)
}

// counted keeps n at the number of requests h is serving.
func counted(n *atomic.Int64, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		defer n.Add(-1)
		h.ServeHTTP(w, r)
	})
}

// runAll runs every runner; the first to fail cancels the others.
func runAll(ctx context.Context, log *slog.Logger, runners []runner) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := r.run(ctx)
			if err != nil && !errors.Is(err, context.Canceled) {
				log.Error("component stopped", "component", r.name, "err", err)
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", r.name, err))
				mu.Unlock()
			}
			cancel()
		}()
	}
	stopping := context.AfterFunc(ctx, func() { log.Info("stopping: letting work under way finish") })
	defer stopping()
	wg.Wait()
	log.Info("stopped", "components", len(runners))
	return errors.Join(errs...)
}

// serveHTTP serves h on ln until ctx is cancelled, then shuts down
// gracefully. timeout bounds reading and answering a whole request; 0
// leaves that to h, which must then set deadlines of its own: a server-wide
// one would cut long downloads and uploads.
// httpDrain is how long requests under way may take to finish once the
// process is told to stop; the rest are cut. It fits well within the
// Deployments' 60 s terminationGracePeriodSeconds.
const httpDrain = 15 * time.Second

func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, timeout time.Duration, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       timeout,
		WriteTimeout:      timeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(headerProblems{ln}) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), httpDrain)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shut down http: %w", err)
	}
	return nil
}
