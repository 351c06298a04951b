package tracing_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/amtsbote/amtsbote/pkg/tracing"
)

func TestOffRecordsNothing(t *testing.T) {
	tp, shutdown, err := tracing.Setup(context.Background(), tracing.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(context.Background())
	_, end := tracing.Start(context.Background(), tracing.Tracer(tp), "x", trace.SpanKindInternal)
	end(nil)
	ctx, span := tracing.Tracer(tp).Start(context.Background(), "y")
	if span.IsRecording() || trace.SpanContextFromContext(ctx).IsValid() {
		t.Error("a span recorded without an endpoint")
	}
	if tracing.Records(tp) || tracing.Records(nil) {
		t.Error("Records is true without an endpoint")
	}
}

func TestBadEndpoint(t *testing.T) {
	for _, e := range []string{"collector:4318", "ftp://collector", "http://"} {
		if _, _, err := tracing.Setup(context.Background(), tracing.Config{Endpoint: e}); err == nil {
			t.Errorf("endpoint %q accepted", e)
		}
	}
}

// TestExports sends a span to an OTLP/HTTP receiver at /v1/traces,
// with the error status of a failed operation.
func TestExports(t *testing.T) {
	var posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/traces" && r.Method == http.MethodPost {
			_, _ = io.Copy(io.Discard, r.Body)
			posts.Add(1)
		}
	}))
	defer srv.Close()
	tp, shutdown, err := tracing.Setup(context.Background(), tracing.Config{Endpoint: srv.URL, Role: "test", BatchTimeout: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !tracing.Records(tp) {
		t.Error("Records is false with an endpoint")
	}
	ctx, end := tracing.Start(context.Background(), tracing.Tracer(tp), "sign accept-submission", trace.SpanKindInternal)
	if !trace.SpanContextFromContext(ctx).IsValid() {
		t.Fatal("no span in the context")
	}
	end(errors.New("publish: timeout"))
	if err := shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if posts.Load() == 0 {
		t.Error("nothing exported")
	}
}
