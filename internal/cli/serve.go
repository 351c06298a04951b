package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/amtsbote/amtsbote/internal/roles"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/services/gateway"
	"github.com/amtsbote/amtsbote/services/gateway/httpapi"
	"github.com/amtsbote/amtsbote/services/gateway/routingapi"
)

// limitFlags defines the flags of the gateway's limits on fs, defaulting
// from AMTSBOTE_* variables; apply fills l once fs is parsed.
func limitFlags(fs *flag.FlagSet, env envReader, l *gateway.Limits) (apply func(), err error) {
	dur := func(p *time.Duration, name, variable string, def time.Duration, usage string) error {
		d, err := time.ParseDuration(env.str(variable, def.String()))
		if err != nil {
			return fmt.Errorf("%s: %w", variable, err)
		}
		fs.DurationVar(p, name, d, usage+" ("+variable+")")
		return nil
	}
	num := func(name, variable string, def float64, usage string) (*float64, error) {
		v, err := strconv.ParseFloat(env.str(variable, strconv.FormatFloat(def, 'g', -1, 64)), 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", variable, err)
		}
		return fs.Float64(name, v, usage+" ("+variable+")"), nil
	}
	d := &l.Deadlines
	if err := dur(&d.Body, "body-timeout", "AMTSBOTE_BODY_TIMEOUT", httpapi.DefaultBodyTimeout, "time a request body read whole has to arrive; 408 after it"); err != nil {
		return nil, err
	}
	if err := dur(&d.Write, "write-timeout", "AMTSBOTE_WRITE_TIMEOUT", httpapi.DefaultWriteTimeout, "longest one write of an answer may make no progress"); err != nil {
		return nil, err
	}
	rate, err := num("upload-min-rate", "AMTSBOTE_UPLOAD_MIN_RATE", httpapi.DefaultUploadRate, "least bytes per second of a streamed upload after a 30 s grace; 408 below it")
	if err != nil {
		return nil, err
	}
	pub, err := num("public-rate", "AMTSBOTE_PUBLIC_RATE", gateway.DefaultPublicRate.PerSecond, "requests per second per address to routes without a token (token, JWKS, keys, info, health, metrics); 429 beyond it")
	if err != nil {
		return nil, err
	}
	burst, err := num("public-burst", "AMTSBOTE_PUBLIC_BURST", float64(gateway.DefaultPublicRate.Burst), "requests at once per address to routes without a token")
	if err != nil {
		return nil, err
	}
	if err := dur(&l.InFlightWait, "in-flight-wait", "AMTSBOTE_IN_FLIGHT_WAIT", time.Second, "how long a request over --max-in-flight waits for a slot before 503"); err != nil {
		return nil, err
	}
	proxies := func(v string) error {
		list, err := parsePrefixes(v, true)
		if err != nil {
			return err
		}
		l.TrustedProxies = list
		return nil
	}
	if err := proxies(env.str("AMTSBOTE_TRUSTED_PROXIES", "")); err != nil {
		return nil, fmt.Errorf("AMTSBOTE_TRUSTED_PROXIES: %w", err)
	}
	fs.Func("trusted-proxies", "load balancers (addresses or CIDR prefixes, comma-separated) whose X-Forwarded-For names the client for the per-address limits (AMTSBOTE_TRUSTED_PROXIES)", proxies)
	inflight, err := num("max-in-flight", "AMTSBOTE_MAX_IN_FLIGHT", gateway.DefaultInFlight, "requests the gateway serves at once; one more waits a second for a slot, then 503 with Retry-After (negative: no bound)")
	if err != nil {
		return nil, err
	}
	return func() {
		l.InFlight = int(*inflight)
		d.UploadRate = int64(*rate)
		l.Public = httpapi.Rate{PerSecond: *pub, Burst: int(*burst)}
	}, nil
}

// parsePrefixes reads comma-separated CIDR prefixes and, with addresses,
// single addresses, each standing for itself alone.
func parsePrefixes(v string, addresses bool) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil || !addresses {
			return nil, fmt.Errorf("%q is no CIDR prefix", f)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// routesFlags defines the Routing API's per-address limit flags on fs,
// defaulting from AMTSBOTE_ROUTES_RATE and AMTSBOTE_ROUTES_BURST.
func routesFlags(fs *flag.FlagSet, env envReader, rate *float64, burst *int) error {
	r, err := strconv.ParseFloat(env.str("AMTSBOTE_ROUTES_RATE", strconv.Itoa(routingapi.DefaultRateLimit)), 64)
	if err != nil {
		return fmt.Errorf("AMTSBOTE_ROUTES_RATE: %w", err)
	}
	b, err := strconv.Atoi(env.str("AMTSBOTE_ROUTES_BURST", strconv.Itoa(routingapi.DefaultRateBurst)))
	if err != nil {
		return fmt.Errorf("AMTSBOTE_ROUTES_BURST: %w", err)
	}
	fs.Float64Var(rate, "routes-rate", r, "Routing API requests per second per address; 429 beyond it (AMTSBOTE_ROUTES_RATE)")
	fs.IntVar(burst, "routes-burst", b, "Routing API requests at once per address (AMTSBOTE_ROUTES_BURST)")
	return nil
}

// serveConfig configures `amtsbote serve`.
type serveConfig struct {
	Targets []string
	Listen  string
	// RoutingListen, when set, serves the Routing API alone there.
	RoutingListen string
	// MetricsListen, when set, serves the gateway's /metrics (and health)
	// there instead of beside its APIs.
	MetricsListen string
	PublicURL     string
	NATSURL       string
	DatabaseURL   string
	SigningKey    string
	OIDCIssuer    string
	KeyGrace      time.Duration
	Replicas      int
	LogLevel      string
	OTLP          string
	Overdue       []time.Duration
	CallbackAllow []netip.Prefix
	Limits        gateway.Limits
	RoutesRate    float64
	RoutesBurst   int
}

var knownTargets = []string{"gateway", "signer", "router", "ledger", "delivery"}

func parseServeConfig(args []string, env envReader, stderr io.Writer) (serveConfig, error) {
	var c serveConfig
	fs := newFlagSet("serve", stderr)
	targets := fs.String("target", env.str("AMTSBOTE_TARGET", "gateway"), "comma-separated roles to run: "+strings.Join(knownTargets, ", ")+" (AMTSBOTE_TARGET)")
	fs.StringVar(&c.Listen, "listen", env.str("AMTSBOTE_LISTEN", ":8080"), "HTTP listen address: the gateway's APIs, or /metrics, /healthz and /readyz of the other roles (AMTSBOTE_LISTEN)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", env.str("AMTSBOTE_METRICS_LISTEN", ""), "serve the gateway's /metrics, /healthz and /readyz on this address (for Prometheus and probes) and no /metrics on --listen, which faces the public; needs the gateway role (AMTSBOTE_METRICS_LISTEN)")
	fs.StringVar(&c.RoutingListen, "routing-listen", env.str("AMTSBOTE_ROUTING_LISTEN", ""), "also serve the Routing API alone on this address, where /v1/info answers its version; needs the gateway role (AMTSBOTE_ROUTING_LISTEN)")
	fs.StringVar(&c.PublicURL, "public-url", env.str("AMTSBOTE_PUBLIC_URL", ""), "base URL clients use; token issuer and audience (AMTSBOTE_PUBLIC_URL, required)")
	fs.StringVar(&c.NATSURL, "nats-url", env.str("AMTSBOTE_NATS_URL", "nats://127.0.0.1:4222"), "NATS server URLs, comma-separated (AMTSBOTE_NATS_URL)")
	fs.StringVar(&c.DatabaseURL, "database-url", env.str("AMTSBOTE_DATABASE_URL", ""), "PostgreSQL URL (AMTSBOTE_DATABASE_URL, required)")
	fs.StringVar(&c.SigningKey, "signing-key", env.str("AMTSBOTE_SIGNING_KEY", ""), "file with Amtsbote's private PS512 JWK (AMTSBOTE_SIGNING_KEY, required)")
	fs.StringVar(&c.OIDCIssuer, "oidc-issuer", env.str("AMTSBOTE_OIDC_ISSUER", ""), "also accept access tokens of this OIDC issuer (AMTSBOTE_OIDC_ISSUER)")
	grace, err := time.ParseDuration(env.str("AMTSBOTE_KEY_GRACE", "168h"))
	if err != nil {
		return c, fmt.Errorf("AMTSBOTE_KEY_GRACE: %w", err)
	}
	fs.DurationVar(&c.KeyGrace, "key-grace", grace, "how long a rolled-over encryption key stays valid (AMTSBOTE_KEY_GRACE)")
	replicas, err := strconv.Atoi(env.str("AMTSBOTE_REPLICAS", "1"))
	if err != nil {
		return c, fmt.Errorf("AMTSBOTE_REPLICAS: %w", err)
	}
	fs.IntVar(&c.Replicas, "replicas", replicas, "JetStream replicas of the streams this process creates: 1, or 3 in a cluster (AMTSBOTE_REPLICAS)")
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
	allow := callbackAllowFlag(fs, env)
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
	if c.CallbackAllow, err = parseNetworks(*allow); err != nil {
		return c, err
	}
	for _, t := range strings.Split(*targets, ",") {
		t = strings.TrimSpace(t)
		if !slices.Contains(knownTargets, t) {
			return c, fmt.Errorf("--target: unknown role %q; known: %s", t, strings.Join(knownTargets, ", "))
		}
		c.Targets = append(c.Targets, t)
	}
	if c.RoutingListen != "" && !slices.Contains(c.Targets, "gateway") {
		return c, errors.New("--routing-listen needs the gateway role in --target")
	}
	if c.MetricsListen != "" && !slices.Contains(c.Targets, "gateway") {
		return c, errors.New("--metrics-listen needs the gateway role in --target; the other roles serve /metrics on --listen")
	}
	var missing []string
	for name, v := range map[string]string{"--public-url": c.PublicURL, "--database-url": c.DatabaseURL, "--signing-key": c.SigningKey} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return c, fmt.Errorf("serve needs %s", strings.Join(missing, ", "))
	}
	return c, nil
}

func runServe(ctx context.Context, args []string, env envReader, stdout, stderr io.Writer) error {
	cfg, err := parseServeConfig(args, env, stderr)
	if err != nil {
		return badUsage(err)
	}
	log, err := newLogger(stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	log.Info("amtsbote serve", "targets", strings.Join(cfg.Targets, ","), "listen", cfg.Listen, "routing_listen", cfg.RoutingListen, "metrics_listen", cfg.MetricsListen,
		"public_url", cfg.PublicURL, "nats", bus.Redact(cfg.NATSURL), "database", maskURL(cfg.DatabaseURL), "signing_key", cfg.SigningKey)

	raw, err := os.ReadFile(cfg.SigningKey)
	if err != nil {
		return fmt.Errorf("signing key: %w", err)
	}
	signer, err := jose.ParsePrivate(raw)
	if err != nil {
		return fmt.Errorf("signing key %s: %w", cfg.SigningKey, err)
	}
	if signer.Purpose != jose.Signing {
		return fmt.Errorf("--signing-key %s: a key for %q, want a signing key (amtsbote keys generate --purpose signing)", cfg.SigningKey, signer.Purpose)
	}
	st, _, err := openStore(ctx, cfg.DatabaseURL, "")
	if err != nil {
		return err
	}
	defer st.Close()
	b, err := bus.Connect(ctx, cfg.NATSURL, bus.LogErrors(log))
	if err != nil {
		return err
	}
	defer b.Close()
	tp, stopTracing, err := setupTracing(ctx, cfg.OTLP, strings.Join(cfg.Targets, ","), log)
	if err != nil {
		return err
	}
	defer stopTracing()
	b.SetTracerProvider(tp)
	if err := b.Ensure(ctx, bus.TopologyConfig{Replicas: cfg.Replicas}); err != nil {
		return fmt.Errorf("create streams: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	defer ln.Close()
	routingLn, closeRouting, err := listenIf(cfg.RoutingListen, "amtsbote serving the Routing API alone on %s\n", stdout)
	if err != nil {
		return err
	}
	defer closeRouting()
	metricsLn, closeMetrics, err := listenIf(cfg.MetricsListen, "amtsbote serving /metrics, /healthz and /readyz on %s\n", stdout)
	if err != nil {
		return err
	}
	defer closeMetrics()
	sys := &roles.Roles{
		RoutingListener: routingLn, MetricsListener: metricsLn,
		Bus: b, Store: st, Key: signer, PublicURL: strings.TrimRight(cfg.PublicURL, "/"), Log: log,
		Listener: ln, OIDCIssuer: cfg.OIDCIssuer, KeyGrace: cfg.KeyGrace, Limits: cfg.Limits, Tracer: tp,
		Gateway:  slices.Contains(cfg.Targets, "gateway"),
		Signer:   slices.Contains(cfg.Targets, "signer"),
		Router:   slices.Contains(cfg.Targets, "router"),
		Ledger:   slices.Contains(cfg.Targets, "ledger"),
		Delivery: slices.Contains(cfg.Targets, "delivery"),
		Overdue:  cfg.Overdue,

		CallbackAllow: cfg.CallbackAllow,

		RoutesRate: cfg.RoutesRate, RoutesBurst: cfg.RoutesBurst,
	}
	fmt.Fprintf(stdout, "amtsbote serving %s on %s\n", strings.Join(cfg.Targets, ","), ln.Addr())
	return sys.Run(ctx)
}

// listenIf listens on addr and prints announce with the address; for an
// empty addr it returns no listener. closeLn closes what it opened.
func listenIf(addr, announce string, stdout io.Writer) (ln net.Listener, closeLn func(), err error) {
	if addr == "" {
		return nil, func() {}, nil
	}
	if ln, err = net.Listen("tcp", addr); err != nil {
		return nil, nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	fmt.Fprintf(stdout, announce, ln.Addr())
	return ln, func() { ln.Close() }, nil
}

// callbackAllowFlag registers --callback-allow, to be read with
// parseNetworks.
func callbackAllowFlag(fs *flag.FlagSet, env envReader) *string {
	return fs.String("callback-allow", env.str("AMTSBOTE_CALLBACK_ALLOW", ""), "networks besides the public internet that callbacks may go to, as CIDRs, comma-separated, e.g. the back offices' 10.20.0.0/16: the gateway accepts callbacks there, the delivery role posts to them (AMTSBOTE_CALLBACK_ALLOW)")
}

// parseNetworks reads --callback-allow: CIDRs, comma-separated, or none.
// A bare address is refused: meant as its network, it would allow one host.
func parseNetworks(s string) ([]netip.Prefix, error) {
	out, err := parsePrefixes(s, false)
	if err != nil {
		return nil, fmt.Errorf("--callback-allow %q: %w; want networks such as 10.20.0.0/16", s, err)
	}
	return out, nil
}

// defaultOverdue is FIT-Connect's reminders: day 3 and day 9.
const defaultOverdue = "72h,216h"

// parseOverdue reads --overdue-after: one or more increasing positive
// durations, comma-separated.
func parseOverdue(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, f := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("--overdue-after %q: %q is no positive duration such as 72h", s, f)
		}
		if len(out) > 0 && d <= out[len(out)-1] {
			return nil, fmt.Errorf("--overdue-after %q: want increasing durations", s)
		}
		out = append(out, d)
	}
	return out, nil
}
