package tracing

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// TraceIDKey is the attribute under which LogHandler records a trace id.
const TraceIDKey = "trace_id"

// LogHandler returns h adding to each record logged with a context that
// carries a trace its trace id as TraceIDKey, so that the lines one
// request causes in every process can be found together: the gateway's
// access log, the router's, the ledger's, the signer's, delivery's and a
// NATS-mode subscriber's.
func LogHandler(h slog.Handler) slog.Handler {
	return logHandler{h}
}

type logHandler struct{ slog.Handler }

func (l logHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		r.AddAttrs(slog.String(TraceIDKey, sc.TraceID().String()))
	}
	return l.Handler.Handle(ctx, r)
}

func (l logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return logHandler{l.Handler.WithAttrs(attrs)}
}

func (l logHandler) WithGroup(name string) slog.Handler {
	return logHandler{l.Handler.WithGroup(name)}
}
