package bus

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net/http"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// The trace context travels in context.Context as OpenTelemetry's span
// context, so that a tracer, when one is configured, continues it: HTTP
// requests and consumed messages bring it in (ContextFromHeader,
// ContextWithTraceparent), publishes carry it on as the CloudEvents
// traceparent extension (Traceparent).

var traceContext = propagation.TraceContext{}

// ContextWithTraceparent returns ctx carrying the trace of a W3C
// traceparent value; an empty or invalid value leaves ctx as it is.
func ContextWithTraceparent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return traceContext.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}

// ContextFromHeader returns ctx carrying the trace of an HTTP request's
// traceparent header, or a new trace when it brings none (or an invalid
// one), so that everything a request causes shares one trace id.
func ContextFromHeader(ctx context.Context, h http.Header) context.Context {
	ctx = traceContext.Extract(ctx, propagation.HeaderCarrier(h))
	if trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	return ContextWithNewTrace(ctx)
}

// ContextWithNewTrace returns ctx carrying a new, sampled trace.
func ContextWithNewTrace(ctx context.Context) context.Context {
	// Trace ids need to be unpredictable enough not to collide, not
	// secret: the runtime's per-thread ChaCha8 spares a getrandom call.
	var tid trace.TraceID
	var sid trace.SpanID
	binary.LittleEndian.PutUint64(tid[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(tid[8:], rand.Uint64()|1)
	binary.LittleEndian.PutUint64(sid[:], rand.Uint64()|1)
	return trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true,
	}))
}

// Traceparent returns the W3C traceparent of ctx's trace, or "".
func Traceparent(ctx context.Context) string {
	c := propagation.MapCarrier{}
	traceContext.Inject(ctx, c)
	return c["traceparent"]
}

// traceID returns the trace id of ev's traceparent, or "".
func traceID(ev event.Event) string {
	tp, _ := ev.Extensions()[ExtensionTraceparent].(string)
	if sc := trace.SpanContextFromContext(ContextWithTraceparent(context.Background(), tp)); sc.HasTraceID() {
		return sc.TraceID().String()
	}
	return ""
}
