// Package tracing sets up OpenTelemetry tracing for an Amtsbote process:
// spans exported over OTLP/HTTP when an endpoint is configured, none
// otherwise. Traces cross processes in the CloudEvents traceparent that
// pkg/bus carries on every message, so the HTTP request that accepted a
// submission, the router that routed it and the ledger that recorded it
// share one trace.
//
// Components take a trace.TracerProvider (nil means off) and start their
// spans with Start, which names the instrumentation scope alike everywhere.
package tracing

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Scope is the instrumentation scope of Amtsbote's spans.
const Scope = "github.com/amtsbote/amtsbote"

// Config configures Setup.
type Config struct {
	// Endpoint is the OTLP/HTTP base URL of a collector
	// ("http://otel-collector:4318"); spans go to <Endpoint>/v1/traces.
	// Empty turns tracing off.
	Endpoint string
	// Service is the service.name of the spans ("amtsbote").
	Service string
	// Role tells the processes of one deployment apart
	// (service.instance.id-like, e.g. "gateway,router").
	Role string
	// BatchTimeout is how long spans wait to be sent (default 5s).
	BatchTimeout time.Duration
}

// Setup returns the process's tracer provider and a function that flushes
// and stops it. Without an endpoint the provider records nothing.
func Setup(ctx context.Context, cfg Config) (trace.TracerProvider, func(context.Context) error, error) {
	if cfg.Endpoint == "" {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, nil, fmt.Errorf("otlp endpoint %q: want an http(s) URL", cfg.Endpoint)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(u.String()))
	if err != nil {
		return nil, nil, fmt.Errorf("otlp exporter: %w", err)
	}
	service := cfg.Service
	if service == "" {
		service = "amtsbote"
	}
	attrs := []attribute.KeyValue{semconv.ServiceName(service)}
	if cfg.Role != "" {
		attrs = append(attrs, attribute.String("amtsbote.role", cfg.Role))
	}
	res := resource.NewWithAttributes(semconv.SchemaURL, attrs...)
	batch := []sdktrace.BatchSpanProcessorOption{}
	if cfg.BatchTimeout > 0 {
		batch = append(batch, sdktrace.WithBatchTimeout(cfg.BatchTimeout))
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, batch...),
		sdktrace.WithResource(res),
		// A trace's sampling is decided where it begins; every process
		// follows the decision the traceparent carries.
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
	)
	return tp, tp.Shutdown, nil
}

// Tracer returns tp's tracer of Amtsbote's scope; a nil tp gives one that
// records nothing.
func Tracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return tp.Tracer(Scope)
}

// Records reports whether tp records spans at all: false for nil and for
// the no-op provider Setup returns without an endpoint, so that callers
// can skip building span names and attributes nobody reads.
func Records(tp trace.TracerProvider) bool {
	if tp == nil {
		return false
	}
	_, off := tp.(noop.TracerProvider)
	return !off
}

// Start starts a span named name of kind under ctx's span (or remote
// span context) and returns the context carrying it and a function ending
// it with err's status. The name must be of bounded cardinality (a route
// pattern, a stream, an event name); ids go into attributes.
func Start(ctx context.Context, t trace.Tracer, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, func(err error)) {
	ctx, span := t.Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, errorText(err))
		}
		span.End()
	}
}

// errorText is the status description of err: its message cut short.
func errorText(err error) string {
	s := err.Error()
	if len(s) > 256 {
		s = s[:256]
	}
	return s
}
