package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"

	"github.com/amtsbote/amtsbote/internal/roles"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/registry"
	"github.com/amtsbote/amtsbote/pkg/tracing"
	"github.com/amtsbote/amtsbote/services/gateway"
)

// devConfig configures `amtsbote dev`.
type devConfig struct {
	DataDir string
	Listen  string
	// RoutingListen, when set, serves the Routing API alone there.
	RoutingListen string
	PublicURL     string
	NATSPort      int
	DatabaseURL   string
	LogLevel      string
	OTLP          string
	Overdue       []time.Duration
	Limits        gateway.Limits
	RoutesRate    float64
	RoutesBurst   int
}

func parseDevConfig(args []string, env envReader, stderr io.Writer) (devConfig, error) {
	var c devConfig
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.DataDir, "data-dir", env.str("AMTSBOTE_DATA_DIR", "./data"), "directory for JetStream, SQLite, keys and demo.json (AMTSBOTE_DATA_DIR)")
	fs.StringVar(&c.Listen, "listen", env.str("AMTSBOTE_LISTEN", ":8080"), "HTTP listen address (AMTSBOTE_LISTEN)")
	fs.StringVar(&c.RoutingListen, "routing-listen", env.str("AMTSBOTE_ROUTING_LISTEN", ""), "also serve the Routing API alone on this address, where /v1/info answers its version (AMTSBOTE_ROUTING_LISTEN)")
	fs.StringVar(&c.PublicURL, "public-url", env.str("AMTSBOTE_PUBLIC_URL", ""), "base URL clients use; default http://localhost:<port> (AMTSBOTE_PUBLIC_URL)")
	natsPort, err := strconv.Atoi(env.str("AMTSBOTE_NATS_PORT", "4223"))
	if err != nil {
		return c, fmt.Errorf("AMTSBOTE_NATS_PORT: %w", err)
	}
	fs.IntVar(&c.NATSPort, "nats-port", natsPort, "port of the embedded NATS on 127.0.0.1; -1 picks a free one (AMTSBOTE_NATS_PORT)")
	fs.StringVar(&c.DatabaseURL, "database-url", env.str("AMTSBOTE_DATABASE_URL", ""), "PostgreSQL URL; empty uses SQLite in the data dir (AMTSBOTE_DATABASE_URL)")
	fs.StringVar(&c.LogLevel, "log-level", env.str("AMTSBOTE_LOG_LEVEL", "info"), "debug, info, warn or error (AMTSBOTE_LOG_LEVEL)")
	otlpFlag(fs, &c.OTLP, env)
	// A load test, or a load balancer that does not pass the client's
	// address on, sends every request from one address.
	if err := routesFlags(fs, env, &c.RoutesRate, &c.RoutesBurst); err != nil {
		return c, err
	}
	applyLimits, err := limitFlags(fs, env, &c.Limits)
	if err != nil {
		return c, err
	}
	overdue := fs.String("overdue-after", env.str("AMTSBOTE_OVERDUE_AFTER", defaultOverdue), "ages after which a submission not picked up is listed as overdue, comma-separated (AMTSBOTE_OVERDUE_AFTER)")
	if err := fs.Parse(args); err != nil {
		return c, flagError(err)
	}
	if err := noArgs(fs); err != nil {
		return c, err
	}
	applyLimits()
	if c.Overdue, err = parseOverdue(*overdue); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dev takes no arguments, got %q\n", fs.Args())
		return c, ErrUsage
	}
	if c.NATSPort == 4222 {
		return c, fmt.Errorf("--nats-port 4222 is the standard NATS port a standalone server often holds; choose another")
	}
	return c, nil
}

func runDev(ctx context.Context, args []string, env envReader, stdout, stderr io.Writer) error {
	cfg, err := parseDevConfig(args, env, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, cfg.LogLevel)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	defer ln.Close()
	publicURL := cfg.PublicURL
	if publicURL == "" {
		publicURL = "http://localhost:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	}
	publicURL = strings.TrimRight(publicURL, "/")

	natsUsers, err := loadOrCreateNATSUsers(cfg.DataDir)
	if err != nil {
		return err
	}
	ns, err := bus.RunEmbedded(bus.EmbeddedConfig{
		Dir:   filepath.Join(cfg.DataDir, "jetstream"),
		Host:  "127.0.0.1",
		Port:  cfg.NATSPort,
		Users: natsUsers.users(),
	})
	if err != nil {
		return fmt.Errorf("start embedded nats: %w", err)
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	// Amtsbote's own connections, and demo.json's URL for scripts, carry
	// the full-access user.
	natsURL, err := withUser(ns.ClientURL(), "amtsbote", natsUsers.Amtsbote)
	if err != nil {
		return err
	}

	// The roles reach the server in this process through a pipe rather
	// than loopback TCP: no socket calls on either side.
	b, err := bus.Connect(ctx, natsURL, bus.InProcess(ns), bus.LogErrors(log))
	if err != nil {
		return err
	}
	defer b.Close()
	tp, stopTracing, err := setupTracing(ctx, cfg.OTLP, "dev", log)
	if err != nil {
		return err
	}
	defer stopTracing()
	b.SetTracerProvider(tp)
	if err := b.Ensure(ctx, bus.TopologyConfig{Replicas: 1}); err != nil {
		return fmt.Errorf("create streams: %w", err)
	}

	st, storeName, err := openStore(ctx, cfg.DatabaseURL, cfg.DataDir)
	if err != nil {
		return err
	}
	defer st.Close()

	signer, _, err := loadOrCreateKey(filepath.Join(cfg.DataDir, "keys", "amtsbote.signing.jwk.json"), jose.Signing, uuid.NewString(), "Amtsbote dev")
	if err != nil {
		return fmt.Errorf("amtsbote signing key: %w", err)
	}

	if err := seedDemoAreas(ctx, st); err != nil {
		return err
	}
	demo, err := loadDemo(ctx, st, cfg.DataDir)
	if err != nil {
		return err
	}
	if demo == nil {
		fmt.Fprintln(stdout, "First start: creating demo destinations and clients (generating RSA-4096 keys)…")
		reg, err := registry.New(registry.Config{Store: st, Reference: st, Logger: log})
		if err != nil {
			return err
		}
		if demo, err = createDemo(ctx, reg, cfg.DataDir, publicURL, natsURL); err != nil {
			return err
		}
	} else if demo.BaseURL != publicURL || demo.NATSURL != natsURL {
		demo.BaseURL, demo.TokenURL, demo.NATSURL = publicURL, publicURL+"/token", natsURL
		if err := writeDemo(cfg.DataDir, demo); err != nil {
			return err
		}
	}

	if err := ensureDemoConsumer(ctx, b, demo); err != nil {
		return fmt.Errorf("demo subscriber's consumer: %w", err)
	}
	if err := writeSubscriberConfig(cfg.DataDir, demo, natsURL, natsUsers); err != nil {
		return err
	}

	routingLn, closeRouting, err := listenIf(cfg.RoutingListen, "Routing API alone on http://%s\n", stdout)
	if err != nil {
		return err
	}
	defer closeRouting()
	printDemo(stdout, demo, storeName, cfg.DataDir)
	log.Info("amtsbote dev running", "http", ln.Addr().String(), "nats", withoutUser(natsURL), "store", storeName)
	sys := &roles.Roles{
		RoutingListener: routingLn,
		Bus:             b, Store: st, Key: signer, PublicURL: publicURL, Log: log,
		Gateway: true, Listener: ln, Signer: true, Router: true, Ledger: true, Delivery: true, Limits: cfg.Limits,
		RoutesRate: cfg.RoutesRate, RoutesBurst: cfg.RoutesBurst, Overdue: cfg.Overdue, Tracer: tp,
		// A back office beside dev, on this machine or its network.
		CallbackAllow: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")},
	}
	err = sys.Run(ctx)
	log.Info("amtsbote dev stopped")
	return err
}

func printDemo(w io.Writer, d *demoFile, storeName, dataDir string) {
	fmt.Fprintf(w, "\nAmtsbote dev is running.\n")
	fmt.Fprintf(w, "  API      %s\n  NATS     %s\n  Store    %s\n  Demo     %s\n  Subscriber config %s\n\n",
		d.BaseURL, withoutUser(d.NATSURL), storeName, filepath.Join(dataDir, "demo.json"), filepath.Join(dataDir, "subscriber.yaml"))
	for _, c := range d.Clients {
		fmt.Fprintf(w, "  %-8s client_id=%s\n           client_secret=%s\n           scopes=%s\n",
			c.Role, c.ClientID, c.ClientSecret, strings.Join(c.Scopes, " "))
	}
	fmt.Fprintln(w)
	for _, dest := range d.Destinations {
		fmt.Fprintf(w, "  destination %s  %s (%s, %s)\n", dest.DestinationID, dest.Name, dest.Level, dest.Region)
	}
	if len(d.Clients) > 0 && len(d.Destinations) > 0 {
		s, dest := d.Clients[0], d.Destinations[0]
		fmt.Fprintf(w, "\nTry:\n  TOKEN=$(curl -s -d grant_type=client_credentials -d client_id=%s -d client_secret=%s %s | jq -r .access_token)\n", s.ClientID, s.ClientSecret, d.TokenURL)
		fmt.Fprintf(w, "  curl -H \"Authorization: Bearer $TOKEN\" %s/v1/destinations/%s\n", d.BaseURL, dest.DestinationID)
		fmt.Fprintf(w, "  curl %s/v1/destinations/%s/keys/%s\n", d.BaseURL, dest.DestinationID, dest.EncryptionKID)
		fmt.Fprintf(w, "\nIn a second terminal, the authority side, decrypting into %s:\n  go run . subscriber --config %s\n\n",
			filepath.Join(dataDir, "sink"), filepath.Join(dataDir, "subscriber.yaml"))
	}
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return slog.New(tracing.LogHandler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l, ReplaceAttr: seconds}))), nil
}

// seconds writes durations as seconds, which log queries compare and
// people read, instead of slog's nanoseconds.
func seconds(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.Float64Value(a.Value.Duration().Seconds())
	}
	return a
}

// otlpFlag defines --otlp-endpoint, from AMTSBOTE_OTLP_ENDPOINT or else
// OpenTelemetry's own OTEL_EXPORTER_OTLP_ENDPOINT.
func otlpFlag(fs *flag.FlagSet, v *string, env envReader) {
	def := env.str("AMTSBOTE_OTLP_ENDPOINT", env.str("OTEL_EXPORTER_OTLP_ENDPOINT", ""))
	fs.StringVar(v, "otlp-endpoint", def, "OTLP/HTTP collector to send traces to, e.g. http://otel-collector:4318; empty: no traces (AMTSBOTE_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT)")
}

// setupTracing starts tracing to endpoint (none when empty) and returns
// the provider and a function flushing what is left at exit.
func setupTracing(ctx context.Context, endpoint, role string, log *slog.Logger) (trace.TracerProvider, func(), error) {
	tp, shutdown, err := tracing.Setup(ctx, tracing.Config{Endpoint: endpoint, Role: role})
	if err != nil {
		return nil, nil, fmt.Errorf("--otlp-endpoint: %w", err)
	}
	if endpoint != "" {
		log.Info("tracing", "otlp_endpoint", maskURL(endpoint))
	}
	return tp, func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			log.Warn("spans not all sent at exit", "err", err)
		}
	}, nil
}
