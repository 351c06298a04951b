// Package bus is Amtsbote's adapter to NATS JetStream: the embedded server,
// the streams INGRESS, INBOX, EVENTS and DEAD with their subjects, CloudEvents
// in binary mode over NATS headers, the object store for sealed payloads and
// attachments, the key-value bucket for in-flight submission state, and
// consumers whose handler outcome decides Ack, Nak with backoff or Term with a
// dead letter.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"time"

	"github.com/amtsbote/amtsbote/pkg/tracing"
)

// Bucket names of the object store and the key-value bucket.
const (
	// BucketPayloads holds sealed payloads and attachments, chunked.
	BucketPayloads = "AB_PAYLOADS"
	// BucketState holds in-flight submission state.
	BucketState = "AB_STATE"
)

// Bus is a connection to JetStream. Its methods are safe for concurrent use.
type Bus struct {
	nc *nats.Conn
	js jetstream.JetStream

	mu      sync.Mutex
	objects jetstream.ObjectStore
	state   jetstream.KeyValue
	smu     sync.Mutex
	streams map[string]jetstream.Stream // guarded by smu
	direct  directGets

	tracer  trace.Tracer // set before use; see SetTracerProvider
	tracing bool         // tracer records: spans are worth building
}

// Connect dials url (one or more comma-separated server URLs), checks that
// JetStream answers, and returns a Bus. opts are passed to nats.Connect; by
// default the connection reconnects forever.
func Connect(ctx context.Context, url string, opts ...nats.Option) (*Bus, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("connect %s: %w", Redact(url), err)
	}
	if strings.TrimSpace(url) == "" {
		// nats.go would dial its default, 127.0.0.1:4222: whatever runs
		// there, another installation's or none.
		return nil, errors.New("connect: no NATS URL given")
	}
	// A server that hangs rather than closing the connection is noticed
	// within 30 to 45 s (nats.go's default takes 4 to 6 minutes).
	all := append([]nats.Option{nats.Name("amtsbote"), nats.MaxReconnects(-1),
		nats.PingInterval(15 * time.Second), nats.MaxPingsOutstanding(2)}, opts...)
	nc, err := nats.Connect(url, all...)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", Redact(url), err)
	}
	if v := nc.ConnectedServerVersion(); !atLeast(v, 2, 10) {
		nc.Close()
		return nil, fmt.Errorf("connect %s: nats-server %s: Amtsbote needs nats-server 2.10 or later "+
			"(durable consumers with several filter subjects)", Redact(url), v)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("connect %s: jetstream: %w", Redact(url), err)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("connect %s: jetstream: %w", Redact(url), err)
	}
	return &Bus{nc: nc, js: js, tracer: tracing.Tracer(nil)}, nil
}

// Answers reports whether the server answers a ping within timeout: a
// request that would leave state behind if a later publish timed out
// asks first.
func (b *Bus) Answers(timeout time.Duration) error {
	if !b.nc.IsConnected() {
		return nats.ErrConnectionClosed
	}
	return b.nc.FlushTimeout(timeout)
}

// Redact returns the NATS server URLs urls (comma-separated) with each
// password, or a token given as the user, replaced by "xxxxx", for
// messages and logs.
func Redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil || u.User == nil {
			continue
		}
		if _, has := u.User.Password(); has {
			parts[i] = u.Redacted()
		} else {
			u.User = url.User("xxxxx")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}

// LogErrors is a Connect option that logs the connection's asynchronous
// errors (a permission violation, a slow consumer) to log instead of
// nats.go's plain lines on stderr.
func LogErrors(log *slog.Logger) nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
		if sub != nil {
			log.Warn("nats: asynchronous error", "subject", sub.Subject, "err", err)
			return
		}
		log.Warn("nats: asynchronous error", "err", err)
	})
}

// Close drains the connection: subscriptions finish the messages they hold
// and pending publishes are flushed before it closes. Stop Consume calls
// before closing.
func (b *Bus) Close() error {
	closed := b.nc.StatusChanged(nats.CLOSED)
	if err := b.nc.Drain(); err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionReconnecting) {
			// Already closed, or closed by Drain because it could not drain.
			return nil
		}
		b.nc.Close()
		return fmt.Errorf("close: %w", err)
	}
	if !b.nc.IsClosed() {
		<-closed
	}
	return nil
}

// SetTracerProvider makes publishes and consumed messages spans of tp's
// traces (producer and consumer spans, linked through the traceparent).
// Call it before the bus is used; without it no spans are recorded.
func (b *Bus) SetTracerProvider(tp trace.TracerProvider) {
	b.tracer, b.tracing = tracing.Tracer(tp), tracing.Records(tp)
}

// Conn returns the underlying NATS connection, for plain subscriptions and
// request-reply.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// JetStream returns the underlying JetStream context, for what this package
// does not wrap (stream info, consumer management).
func (b *Bus) JetStream() jetstream.JetStream { return b.js }
