package bus_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
)

// A consumed message's trace reaches what its handler publishes, whether
// spans are recorded or not; with a recording tracer both ends are spans
// of that trace.
func TestConsumeCarriesTraceOn(t *testing.T) {
	traceID := strings.Split(traceparent, "-")[1]
	for _, recording := range []bool{false, true} {
		t.Run(map[bool]string{false: "untraced", true: "traced"}[recording], func(t *testing.T) {
			b, _ := bustest.Bus(t)
			spans := tracetest.NewSpanRecorder()
			if recording {
				b.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
			}
			publish(t, b, ingressSubject(t), "e1")
			forwarded := make(chan string, 1)
			startConsume(t, b, bus.ConsumerConfig{Stream: bus.StreamIngress, Durable: "router"},
				func(ctx context.Context, m *bus.Message) error {
					ev := newEvent(t, "e2")
					delete(ev.Extensions(), bus.ExtensionTraceparent)
					if _, err := b.Publish(ctx, inboxSubject(t), ev, "e2"); err != nil {
						return err
					}
					forwarded <- bus.Traceparent(ctx)
					return nil
				})
			if tp := receive(t, forwarded); !strings.Contains(tp, traceID) {
				t.Errorf("handler's traceparent %q, want trace %s", tp, traceID)
			}
			got := make(chan string, 1)
			startConsume(t, b, bus.ConsumerConfig{Stream: bus.StreamInbox, Durable: "inbox"},
				func(ctx context.Context, m *bus.Message) error {
					tp, _ := m.Event.Extensions()[bus.ExtensionTraceparent].(string)
					got <- tp
					return nil
				})
			if tp := receive(t, got); !strings.Contains(tp, traceID) {
				t.Errorf("forwarded event's traceparent %q, want trace %s", tp, traceID)
			}
			eventually(t, 5*time.Second, func() error {
				var names []string
				for _, s := range spans.Ended() {
					if s.SpanContext().TraceID().String() == traceID {
						names = append(names, s.Name())
					}
				}
				want := 0
				if recording {
					// The first publish carries the trace in the event, not in ctx.
					want = 3 // consume, publish, consume
				}
				if len(names) != want {
					return fmt.Errorf("spans of the trace %v, want %d", names, want)
				}
				return nil
			})
		})
	}
}

// receive waits for the traceparent a handler reports.
func receive(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case tp := <-ch:
		return tp
	case <-time.After(10 * time.Second):
		t.Fatal("no message")
		return ""
	}
}
