package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/client"
	"github.com/amtsbote/amtsbote/pkg/health"
	"github.com/amtsbote/amtsbote/pkg/metrics"
	"github.com/amtsbote/amtsbote/services/subscriber"
	"github.com/amtsbote/amtsbote/services/subscriber/config"
	"github.com/amtsbote/amtsbote/services/subscriber/sink"
)

// runSubscriber runs `amtsbote subscriber --config FILE`: the authority
// side, until ctx ends (SIGINT, SIGTERM).
func runSubscriber(ctx context.Context, args []string, env envReader, stdout, stderr io.Writer) error {
	fs := newFlagSet("subscriber", stderr)
	file := fs.String("config", env.str("AMTSBOTE_SUBSCRIBER_CONFIG", ""), "the subscriber's YAML configuration (AMTSBOTE_SUBSCRIBER_CONFIG, required); every key is documented in services/subscriber/config (package doc)")
	listen := fs.String("listen", env.str("AMTSBOTE_SUBSCRIBER_LISTEN", ""), "host:port to serve /metrics, /healthz and /readyz on; empty for none (AMTSBOTE_SUBSCRIBER_LISTEN)")
	level := fs.String("log-level", env.str("AMTSBOTE_LOG_LEVEL", "info"), "debug, info, warn or error (AMTSBOTE_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if fs.NArg() > 0 || *file == "" {
		fmt.Fprintln(stderr, "usage: amtsbote subscriber --config FILE")
		return ErrUsage
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		return err
	}
	conf, err := config.Load(*file)
	if err != nil {
		// Every problem on a line of its own, each naming file, line and field.
		var errs config.Errors
		if errors.As(err, &errs) {
			fmt.Fprintln(stderr, err)
			return fmt.Errorf("configuration %s: %d problem(s)", *file, len(errs))
		}
		return err
	}
	fmt.Fprint(stdout, conf)
	for _, u := range inClear(conf) {
		log.Warn("subscriber: credentials travel unencrypted to a host other than this one; use TLS", "url", u)
	}

	opts := []client.Option{
		client.Credentials(conf.HTTP.ClientID, conf.HTTP.ClientSecret.Reveal()),
		client.TokenURL(conf.HTTP.TokenURL),
		client.Logger(log),
	}
	if conf.MetadataSchema != "" {
		opts = append(opts, client.MetadataSchema(conf.MetadataSchema))
	}
	api, err := client.New(conf.HTTP.BaseURL, opts...)
	if err != nil {
		return fmt.Errorf("submission api: %w", err)
	}
	var forwarder *client.Client
	if f := conf.Forward; f != nil {
		forwarder, err = client.New(conf.HTTP.BaseURL,
			client.Credentials(f.ClientID, f.ClientSecret.Reveal()),
			client.TokenURL(conf.HTTP.TokenURL),
			client.Logger(log))
		if err != nil {
			return fmt.Errorf("submission api for forwarding: %w", err)
		}
	}
	sk, err := conf.Sink.Open(ctx)
	if err != nil {
		return fmt.Errorf("%s: open sink: %w", *file, err)
	}
	defer sk.Close()

	var b *bus.Bus
	if conf.Mode == config.ModeNATS {
		opts := []nats.Option{
			nats.Name("amtsbote-subscriber " + conf.NATS.Durable),
			// Answers to this subscriber only: its user may subscribe to nothing else.
			nats.CustomInboxPrefix(bus.SubscriberInboxPrefix(conf.NATS.Durable)),
			bus.LogErrors(log),
		}
		switch n := conf.NATS; {
		case n.Credentials != "":
			opts = append(opts, nats.UserCredentials(n.Credentials))
		case n.User != "":
			opts = append(opts, nats.UserInfo(n.User, n.Password.Reveal()))
		case n.Token != "":
			opts = append(opts, nats.Token(n.Token.Reveal()))
		}
		if b, err = connectWaiting(ctx, log, conf.NATS.URL, opts...); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				// Answers come to the durable's inbox only, which a user
				// permitted for another durable never receives.
				return fmt.Errorf("%s: %w: no answer from JetStream; may this NATS user consume the durable %q (nats.durable)?", *file, err, conf.NATS.Durable)
			}
			return err
		}
		defer b.Close()
	}
	reg := metrics.NewRegistry()
	sinks, err := metrics.NewSinks(reg, sk.Kind())
	if err != nil {
		return err
	}
	handled, err := metrics.NewHandled(reg, subscriber.Outcomes...)
	if err != nil {
		return err
	}
	sub, err := subscriber.New(subscriber.Config{
		Conf: conf, Sink: sk, API: api, Forwarder: forwarder, Bus: b, Sinks: sinks, Handled: handled, Logger: log,
	})
	if err != nil {
		return err
	}
	h := health.New(log)
	if b != nil {
		h.Add(health.Check{Name: "nats", Func: b.Ready})
	}
	h.Add(health.Check{Name: "api", Func: sub.Ready})
	if c, ok := sk.(sink.Checker); ok {
		h.Add(health.Check{Name: "sink", Func: c.Check})
	} else {
		// Without a check of its own, the sink is failing while the
		// deliveries say so.
		h.Add(health.Check{Name: "sink", Func: sub.SinkReady})
	}
	watching, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	go h.Watch(watching, health.WatchInterval)
	if *listen != "" {
		reg.MustRegister(h.Collector())
		srv, err := serveObservability(ctx, *listen, h.Handler(metrics.Handler(reg)), log)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "metrics and health on http://%s\n", srv)
	}
	if err := sub.Check(ctx); err != nil {
		return fmt.Errorf("%s: %w", *file, err)
	}
	log.Info("subscriber running", "mode", conf.Mode, "destinations", len(conf.Destinations), "sink", sk.Kind(), "concurrency", conf.Concurrency)
	announced := make(chan struct{})
	stopping := context.AfterFunc(ctx, func() {
		log.Info("subscriber stopping: deliveries under way may take up to " + bus.ShutdownGrace.String() + " to finish")
		close(announced)
	})
	err = sub.Run(ctx)
	if !stopping() {
		// Told to stop: that line comes first.
		<-announced
	}
	log.Info("subscriber stopped")
	return err
}

// inClear lists the configuration's URLs that carry the client secret and
// tokens over plain http to another host. (A NATS server may require TLS
// of a nats:// URL, so those are not judged here.)
func inClear(conf *config.Config) []string {
	var out []string
	check := func(raw string) {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "http" {
			return
		}
		host := u.Hostname()
		if host == "localhost" {
			return
		}
		if a, err := netip.ParseAddr(host); err == nil && a.IsLoopback() {
			return
		}
		out = append(out, raw)
	}
	check(conf.HTTP.BaseURL)
	check(conf.HTTP.TokenURL)
	return out
}

// serveObservability serves h on listen until ctx ends and returns the
// address it listens on.
func serveObservability(ctx context.Context, listen string, h http.Handler, log *slog.Logger) (string, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return "", fmt.Errorf("listen %s: %w", listen, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	return ln.Addr().String(), nil
}

// natsWaitFor is how long the subscriber asks again for a NATS that does
// not answer at start, as it asks again for the Submission API.
const natsWaitFor = time.Minute

// connectWaiting connects to url, asking again while no server answers,
// for up to natsWaitFor.
func connectWaiting(ctx context.Context, log *slog.Logger, url string, opts ...nats.Option) (*bus.Bus, error) {
	deadline := time.Now().Add(natsWaitFor)
	wait := time.Second
	for {
		b, err := bus.Connect(ctx, url, opts...)
		if err == nil || !errors.Is(err, nats.ErrNoServers) || time.Now().Add(wait).After(deadline) {
			return b, err
		}
		log.Warn("subscriber: NATS does not answer yet; asking again", "url", bus.Redact(url), "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}
