package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/tracing"
)

// Dead-letter reasons this package uses itself.
const (
	// ReasonPermanent is the reason of a Permanent error.
	ReasonPermanent = "permanent"
	// ReasonMalformedEvent: the message carried no valid CloudEvent; the
	// handler never saw it.
	ReasonMalformedEvent = "malformed-event"
	// ReasonMaxDeliver: the last allowed delivery failed too.
	ReasonMaxDeliver = "max-deliver"
)

// Headers a dead letter carries besides the original's headers.
const (
	HeaderDeadReason       = "Amtsbote-Dead-Reason"
	HeaderDeadError        = "Amtsbote-Dead-Error"
	HeaderDeadAttempts     = "Amtsbote-Dead-Attempts"
	HeaderDeadConsumer     = "Amtsbote-Dead-Consumer"
	HeaderOriginalSubject  = "Amtsbote-Original-Subject"
	HeaderOriginalStream   = "Amtsbote-Original-Stream"
	HeaderOriginalSequence = "Amtsbote-Original-Sequence"
	HeaderOriginalMsgID    = "Amtsbote-Original-Msg-Id"
	// HeaderDeadHistory holds the failed attempts as a JSON array of
	// Attempt, the latest last, at most maxHistory of them.
	HeaderDeadHistory = "Amtsbote-Dead-History"
	// HeaderDestination names the destination a dead letter concerns,
	// whenever it can be told: from the original's ExtensionDestinationID,
	// its INBOX subject or its sealed submission.
	HeaderDestination = "Amtsbote-Destination-Id"
)

// ExtensionDestinationID is the CloudEvents extension naming the
// destination a message concerns when neither its subject nor its body
// says it.
const ExtensionDestinationID = "destinationid"

// Attempt is one failed delivery of a message, as a dead letter's history
// records it.
type Attempt struct {
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	Error   string    `json:"error"`
}

// History limits: the latest attempts a dead letter keeps, and the error
// text of each.
const (
	maxHistory      = 20
	maxHistoryError = 256
)

// maxDeadError bounds the error text a dead letter carries.
const maxDeadError = 1024

// settleTimeout bounds an ack, nak or dead-letter publish.
var settleTimeout = 10 * time.Second

// PermanentError marks a handler error that retrying cannot fix. Consume
// writes the message to ab.dead.<Reason> and terms it.
type PermanentError struct {
	// Reason becomes the last token of the dead-letter subject.
	Reason string
	// Err is what went wrong.
	Err error
}

// Error returns the reason and the wrapped error.
func (e *PermanentError) Error() string {
	return "permanent (" + e.Reason + "): " + e.Err.Error()
}

// Unwrap returns the wrapped error.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as permanent with ReasonPermanent. It returns nil for
// a nil err. Detect it with errors.As and *PermanentError.
func Permanent(err error) error {
	return PermanentReason(ReasonPermanent, err)
}

// PermanentReason marks err as permanent with reason, a DeadSubject token
// such as "unroutable". An invalid reason is replaced by ReasonPermanent
// when the dead letter is written. It returns nil for a nil err.
func PermanentReason(reason string, err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Reason: reason, Err: err}
}

// laterError marks a handler error that is no failure: what the message
// needs is not there yet (Later).
type laterError struct{ err error }

func (e *laterError) Error() string { return e.err.Error() }
func (e *laterError) Unwrap() error { return e.err }

// Later marks err as a wait rather than a failure: the message is given
// back with the consumer's backoff like after a failure, and counts
// towards MaxDeliver, but is logged at debug level and left out of its
// attempt history. It returns nil for a nil err.
func Later(err error) error {
	if err == nil {
		return nil
	}
	return &laterError{err}
}

// quietError marks a failure the handler reports itself (Quiet).
type quietError struct{ err error }

func (e *quietError) Error() string { return e.err.Error() }
func (e *quietError) Unwrap() error { return e.err }

// Quiet marks err as a failure whose cause the handler reports itself,
// once for all the messages it holds up (a sink outage): the message is
// retried and its attempt recorded as after any failure, but the retry is
// logged at debug level. It returns nil for a nil err.
func Quiet(err error) error {
	if err == nil {
		return nil
	}
	return &quietError{err}
}

// IsQuiet reports whether err was marked by Quiet.
func IsQuiet(err error) bool {
	var q *quietError
	return errors.As(err, &q)
}

// Message is one delivery to a Handler.
type Message struct {
	// Subject the message was published to.
	Subject string
	// Header as published, including the ce- headers.
	Header nats.Header
	// Data is the message body, the CloudEvent's data.
	Data []byte
	// Event is the decoded CloudEvent.
	Event event.Event
	// Attempt counts deliveries, starting at 1.
	Attempt int
	// Last says this is the last delivery MaxDeliver allows: a failure
	// now is dead-lettered.
	Last bool
	// Stream and Sequence locate the message in its stream.
	Stream   string
	Sequence uint64
	// Published is when the stream stored the message.
	Published time.Time
}

// Handler processes one message. The result decides its fate: nil acks it;
// an error wrapped by Permanent writes a dead letter and terms it; any other
// error naks it with a delay that doubles with each attempt; a panic is
// recovered and treated like a transient error. ctx carries the values of
// Consume's context but is not cancelled when Consume stops: it ends after
// AckWait, when the server hands the message to someone else anyway.
// Handlers run concurrently and must be idempotent: delivery is at least once.
type Handler func(ctx context.Context, m *Message) error

// Middleware wraps a Handler to do something around every message
// (measure, log, trace), as watermill composes handler middleware. It
// sees the handler's result before Consume turns it into the message's
// fate.
type Middleware func(Handler) Handler

// ConsumerConfig configures Consume. Zero values take the defaults.
type ConsumerConfig struct {
	// Stream to consume; required.
	Stream string
	// Durable names the consumer; required. Consume calls with the same
	// Durable, in one process or several, share the messages.
	Durable string
	// FilterSubjects narrow the stream; empty means all of it.
	FilterSubjects []string
	// Bind consumes the durable as it exists, neither creating nor
	// updating it, so that a user permitted only to consume it can: an
	// operator created it with its filter subjects, which FilterSubjects
	// must then equal (or be empty).
	Bind bool
	// MaxAckPending bounds unacknowledged messages over all sharers;
	// default 1000.
	MaxAckPending int
	// AckWait is how long a delivery may stay unacknowledged before the
	// server redelivers it; default 30s. It also bounds a handler's context.
	AckWait time.Duration
	// HandleTimeout, when longer than AckWait, bounds a handler's context
	// instead; meanwhile the delivery is reported in progress every half
	// AckWait, so that the server does not hand it to another consumer.
	HandleTimeout time.Duration
	// MaxDeliver bounds deliveries; the last failing one is dead-lettered
	// with ReasonMaxDeliver. Default 10; -1 means unbounded.
	MaxDeliver int
	// Concurrency is the number of handlers running at once; default 1.
	Concurrency int
	// BackoffBase is the nak delay after the first attempt; it doubles with
	// each further attempt up to BackoffMax. Defaults 1s and 5m.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// Jitter draws each nak delay at random from its upper half, so that
	// messages that failed together are not retried together.
	Jitter bool
	// ExhaustedReason is the dead-letter reason of a message whose last
	// allowed delivery failed; default ReasonMaxDeliver.
	ExhaustedReason string
	// PullExpiry is how long one pull request waits at the server; default
	// 10s. Heartbeats come at half of it, so a lost server or consumer
	// leader is noticed within PullExpiry and the pull is reissued.
	PullExpiry time.Duration
	// LocalHistory keeps the failed attempts of the messages in this
	// process's memory instead of BucketState, for a user who may not
	// write there (a subscriber's): a dead letter then carries the
	// attempts this process saw since it started.
	LocalHistory bool
	// Logger receives handler failures and dead letters; nil discards.
	Logger *slog.Logger
	// Middleware wraps the handler, the first outermost. Inside them all,
	// a panic becomes an error and the handler's context carries the
	// message's trace.
	Middleware []Middleware

	local *localHistory // set by Consume when LocalHistory
}

// withDefaults fills zero values and checks the rest.
func (c ConsumerConfig) withDefaults() (ConsumerConfig, error) {
	if c.Stream == "" {
		return c, errors.New("stream is required")
	}
	if c.Durable == "" {
		return c, errors.New("durable is required")
	}
	if strings.ContainsAny(c.Durable, ".*> \t\r\n/\\") {
		return c, fmt.Errorf("durable %q: contains '.', '*', '>', a slash or whitespace", c.Durable)
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = 1000
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 10
	}
	if c.Concurrency == 0 {
		c.Concurrency = 1
	}
	if c.BackoffBase == 0 {
		c.BackoffBase = time.Second
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = 5 * time.Minute
	}
	if c.PullExpiry == 0 {
		c.PullExpiry = 10 * time.Second
	}
	if c.ExhaustedReason == "" {
		c.ExhaustedReason = ReasonMaxDeliver
	}
	if _, err := reasonToken(c.ExhaustedReason); err != nil {
		return c, fmt.Errorf("exhausted reason: %w", err)
	}
	switch {
	case c.MaxAckPending < -1:
		return c, fmt.Errorf("max ack pending %d: want -1 or more", c.MaxAckPending)
	case c.AckWait < 0:
		return c, fmt.Errorf("ack wait %s: negative", c.AckWait)
	case c.MaxDeliver < -1:
		return c, fmt.Errorf("max deliver %d: want -1 or more", c.MaxDeliver)
	case c.Concurrency < 0:
		return c, fmt.Errorf("concurrency %d: negative", c.Concurrency)
	case c.BackoffBase < 0 || c.BackoffMax < c.BackoffBase:
		return c, fmt.Errorf("backoff %s to %s: want 0 <= base <= max", c.BackoffBase, c.BackoffMax)
	case c.PullExpiry < time.Second:
		return c, fmt.Errorf("pull expiry %s: want at least 1s", c.PullExpiry)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Consume creates or updates the durable pull consumer cfg describes and
// runs h on its messages, cfg.Concurrency at a time, until ctx is
// cancelled. Then it stops fetching, hands back fetched messages it has not
// started, waits for running handlers and returns nil. It returns an error
// if the consumer cannot be set up or consuming ends for another reason
// (the consumer was deleted, the connection closed).
func (b *Bus) Consume(ctx context.Context, cfg ConsumerConfig, h Handler) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	h = b.chain(h, cfg)
	if cfg.LocalHistory {
		cfg.local = &localHistory{attempts: make(map[string][]Attempt)}
	}
	var cons jetstream.Consumer
	if cfg.Bind {
		cons, cfg, err = b.bind(ctx, cfg)
	} else {
		cons, err = b.js.CreateOrUpdateConsumer(ctx, cfg.Stream, consumerConfig(cfg))
	}
	if err != nil {
		return fmt.Errorf("consume %s/%s: %w", cfg.Stream, cfg.Durable, err)
	}
	var (
		wg     sync.WaitGroup
		runErr error
		slots  = make(chan struct{}, cfg.Concurrency)
	)
	// Each pull asks for as many messages as handlers are free, so that
	// idle sharers get the rest. A fetch, unlike the Messages iterator,
	// buffers beyond its batch: the iterator's buffer holds exactly its
	// batch, and a heartbeat or status arriving beside a full batch drops
	// a message until its AckWait.
	var pulls pullStreak
fetch:
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			break fetch
		}
		n := 1
	more:
		for n < cfg.Concurrency {
			select {
			case slots <- struct{}{}:
				n++
			default:
				break more
			}
		}
		got, err := b.fetch(ctx, cons, cfg, n, func(msg jetstream.Msg) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				b.process(ctx, cfg, h, msg)
			}()
		})
		for range n - got {
			<-slots
		}
		switch {
		case ctx.Err() != nil:
			break fetch
		case errors.Is(err, jetstream.ErrNoHeartbeat):
			// The pull went unanswered (a partition, a consumer leader
			// lost without notice); the next one pulls again.
			pulls.failed(cfg, "consume: heartbeats missed; pulling again", err)
		case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrConsumerNotFound),
			errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, jetstream.ErrMsgIteratorClosed):
			runErr = fmt.Errorf("consume %s/%s: %w", cfg.Stream, cfg.Durable, err)
			break fetch
		case err != nil:
			pulls.failed(cfg, "consume: pull failed; pulling again", err)
			select {
			case <-time.After(pullRetry):
			case <-ctx.Done():
				break fetch
			}
		default:
			pulls.answered(cfg)
		}
	}
	wg.Wait()
	return runErr
}

// pullStreak logs failed pulls once per streak (an outage of the server
// pulls fail against every few seconds), the rest at debug level, and the
// first pull answered after them.
type pullStreak struct {
	since  time.Time
	missed int
}

func (p *pullStreak) failed(cfg ConsumerConfig, msg string, err error) {
	p.missed++
	if p.missed > 1 {
		cfg.Logger.Debug(msg, "stream", cfg.Stream, "consumer", cfg.Durable, "err", err, "failed_pulls", p.missed)
		return
	}
	p.since = time.Now()
	cfg.Logger.Warn(msg, "stream", cfg.Stream, "consumer", cfg.Durable, "err", err)
}

func (p *pullStreak) answered(cfg ConsumerConfig) {
	if p.missed == 0 {
		return
	}
	cfg.Logger.Info("consume: pulls answered again", "stream", cfg.Stream, "consumer", cfg.Durable,
		"failed_pulls", p.missed, "after", time.Since(p.since).Round(time.Second).String())
	p.missed = 0
}

// pullRetry is the pause after a pull that failed for another reason than
// a missed heartbeat.
const pullRetry = 250 * time.Millisecond

// A pull cut when its consumer stops drops, inside the client, what the
// server had just sent it, unacknowledged: those messages would come again
// only after AckWait, and a restarted process would wait that long. So the
// pull outlives the stop by stopGrace, and what arrives in it is handed
// back to be delivered again after handBackWait, past the grace, so that
// it does not come straight back into this pull. Only what the server
// sends in the grace's last instant can still wait for AckWait.
const (
	stopGrace    = 250 * time.Millisecond
	handBackWait = time.Second
)

// fetch pulls up to n messages, waiting at most cfg.PullExpiry, and hands
// each to start as it arrives. It returns how many it started. Messages
// that arrive after ctx ended are handed back.
func (b *Bus) fetch(ctx context.Context, cons jetstream.Consumer, cfg ConsumerConfig, n int, start func(jetstream.Msg)) (int, error) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.PullExpiry)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(stopGrace, cancel) })
	defer stop()
	batch, err := cons.Fetch(n, jetstream.FetchContext(fctx), jetstream.FetchHeartbeat(cfg.PullExpiry/4))
	if err != nil {
		return 0, err
	}
	got := 0
	for msg := range batch.Messages() {
		if ctx.Err() != nil {
			_ = msg.NakWithDelay(handBackWait)
			continue
		}
		got++
		start(msg)
	}
	err = batch.Error()
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		// The pull expired without the server's word; that is its end.
		err = nil
	}
	return got, err
}

// EnsureConsumer creates the durable pull consumer cfg describes, or
// updates it to cfg, without consuming: an operator's step before a
// consumer that may only bind to it (ConsumerConfig.Bind) starts.
func (b *Bus) EnsureConsumer(ctx context.Context, cfg ConsumerConfig) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return fmt.Errorf("ensure consumer: %w", err)
	}
	if _, err := b.js.CreateOrUpdateConsumer(ctx, cfg.Stream, consumerConfig(cfg)); err != nil {
		return fmt.Errorf("ensure consumer %s/%s: %w", cfg.Stream, cfg.Durable, err)
	}
	return nil
}

func consumerConfig(cfg ConsumerConfig) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        cfg.Durable,
		FilterSubjects: cfg.FilterSubjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckWait:        cfg.AckWait,
		MaxDeliver:     cfg.MaxDeliver,
		MaxAckPending:  cfg.MaxAckPending,
	}
}

// bind looks up the existing durable and checks that it consumes what cfg
// expects. Its AckWait and MaxDeliver, not cfg's, then govern redelivery
// and the dead letter after the last delivery.
func (b *Bus) bind(ctx context.Context, cfg ConsumerConfig) (jetstream.Consumer, ConsumerConfig, error) {
	cons, err := b.js.Consumer(ctx, cfg.Stream, cfg.Durable)
	if err != nil {
		return nil, cfg, err
	}
	got := cons.CachedInfo().Config
	filters := got.FilterSubjects
	if got.FilterSubject != "" {
		filters = []string{got.FilterSubject}
	}
	if len(cfg.FilterSubjects) > 0 && !sameSet(filters, cfg.FilterSubjects) {
		return nil, cfg, fmt.Errorf("consumer filters %q, want %q", filters, cfg.FilterSubjects)
	}
	if got.AckPolicy != jetstream.AckExplicitPolicy {
		return nil, cfg, fmt.Errorf("consumer ack policy %s, want explicit", got.AckPolicy)
	}
	if got.AckWait > 0 {
		cfg.AckWait = got.AckWait
	}
	cfg.MaxDeliver = got.MaxDeliver
	return cons, cfg, nil
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	in := make(map[string]bool, len(a))
	for _, s := range a {
		in[s] = true
	}
	for _, s := range b {
		if !in[s] {
			return false
		}
	}
	return true
}

// chain wraps h in mw, the message's trace inside them, and the
// recovery of a panic around all.
func (b *Bus) chain(h Handler, cfg ConsumerConfig) Handler {
	inner := h
	h = func(ctx context.Context, m *Message) error {
		tp, _ := m.Event.Extensions()[ExtensionTraceparent].(string)
		ctx = ContextWithTraceparent(ctx, tp)
		if !b.tracing {
			// The trace still travels on through ctx to what the handler publishes.
			return inner(ctx, m)
		}
		ctx, end := tracing.Start(ctx, b.tracer, "consume "+m.Stream, trace.SpanKindConsumer,
			attribute.String("messaging.system", "nats"), attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", m.Subject), attribute.String("messaging.consumer.group.name", cfg.Durable),
			attribute.Int("messaging.nats.delivery_attempt", m.Attempt), attribute.Int64("messaging.nats.stream_sequence", int64(m.Sequence)))
		err := inner(ctx, m)
		end(err)
		return err
	}
	mw := cfg.Middleware
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return func(ctx context.Context, m *Message) error { return call(ctx, h, m) }
}

// process runs the handler on one message and settles it.
func (b *Bus) process(ctx context.Context, cfg ConsumerConfig, h Handler, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		// Not a JetStream delivery; nothing to settle against.
		cfg.Logger.Error("consume: message without metadata", "subject", msg.Subject(), "err", err)
		return
	}
	if to := msg.Headers().Get(HeaderRedrivenFor); to != "" && to != meta.Consumer {
		settle, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
		defer cancel()
		if err := msg.DoubleAck(settle); err != nil {
			cfg.Logger.Warn("consume: ack of a re-drive for another consumer lost; it will be redelivered",
				"subject", msg.Subject(), "stream", meta.Stream, "stream_seq", meta.Sequence.Stream, "err", err)
		}
		return
	}
	attempt := int(meta.NumDelivered)
	ev, err := EventFromMsg(msg)
	// Built only when something is logged: most messages log nothing.
	log := func() *slog.Logger {
		l := cfg.Logger.With("subject", msg.Subject(), "stream", meta.Stream, "stream_seq", meta.Sequence.Stream, "attempt", attempt)
		if id := traceID(ev); id != "" {
			l = l.With(tracing.TraceIDKey, id)
		}
		return l
	}
	if err != nil {
		settle, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
		defer cancel()
		b.deadLetter(settle, cfg, msg, meta, ReasonMalformedEvent, err, log())
		return
	}
	m := &Message{
		Last:      cfg.MaxDeliver > 0 && attempt >= cfg.MaxDeliver,
		Subject:   msg.Subject(),
		Header:    msg.Headers(),
		Data:      msg.Data(),
		Event:     ev,
		Attempt:   attempt,
		Stream:    meta.Stream,
		Sequence:  meta.Sequence.Stream,
		Published: meta.Timestamp,
	}
	limit := cfg.AckWait
	var inProgress func()
	if cfg.HandleTimeout > cfg.AckWait {
		limit = cfg.HandleTimeout
		inProgress = reportProgress(msg, cfg.AckWait/2)
	}
	hctx, hcancel := withShutdownGrace(ctx, limit)
	err = h(hctx, m)
	hcancel()
	if inProgress != nil {
		inProgress()
	}
	// Settling has its own time, counted from here: a handler may take
	// longer than that.
	settle, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()

	var perm *PermanentError
	switch {
	case err == nil:
		if err := msg.DoubleAck(settle); err != nil {
			log().Warn("consume: ack lost; the message will be redelivered", "err", err)
		}
		if attempt > 1 {
			b.forgetAttempts(settle, cfg, meta, log())
		}
	case errors.As(err, &perm):
		b.deadLetter(settle, cfg, msg, meta, perm.Reason, perm.Err, log())
	case cfg.MaxDeliver > 0 && attempt >= cfg.MaxDeliver:
		b.deadLetter(settle, cfg, msg, meta, cfg.ExhaustedReason, err, log())
	default:
		var later *laterError
		wait := errors.As(err, &later)
		if !wait {
			b.recordAttempt(settle, cfg, meta, err, log())
		}
		delay := backoff(attempt, cfg.BackoffBase, cfg.BackoffMax)
		if cfg.Jitter {
			delay = jitter(delay)
		}
		var p *panicError
		if wait {
			log().Debug("consume: not yet; asking again", "err", err, "retry_in", delay)
		} else if IsQuiet(err) {
			log().Debug("consume: handler failed; retrying", "err", err, "retry_in", delay)
		} else if errors.As(err, &p) {
			log().Error("consume: handler panicked; retrying", "err", err, "stack", string(p.stack), "retry_in", delay)
		} else {
			log().Warn("consume: handler failed; retrying", "err", err, "retry_in", delay)
		}
		if err := msg.NakWithDelay(delay); err != nil {
			log().Warn("consume: nak lost; the message will be redelivered after ack wait", "err", err)
		}
	}
}

// ShutdownGrace is how long a handler may go on once its consumer stops:
// then its context ends, as a crash would end it, and the message is
// redelivered.
const ShutdownGrace = 30 * time.Second

// stoppingKey carries the consumer's own Done channel in a handler's
// context (Stopping).
type stoppingKey struct{}

// Stopping returns a channel closed when the consumer that handed ctx's
// message to its handler stops: the handler's context goes on for
// ShutdownGrace, so that work under way can finish, but a handler waiting
// for something that is not there yet should give the message back then.
// It is nil (never closed) for a context of no consumer.
func Stopping(ctx context.Context) <-chan struct{} {
	c, _ := ctx.Value(stoppingKey{}).(<-chan struct{})
	return c
}

// withShutdownGrace returns a context that ends after limit, or
// ShutdownGrace after ctx ends, whichever is first.
func withShutdownGrace(ctx context.Context, limit time.Duration) (context.Context, context.CancelFunc) {
	hctx, cancel := context.WithTimeout(context.WithValue(context.WithoutCancel(ctx), stoppingKey{}, ctx.Done()), limit)
	var grace atomic.Pointer[time.Timer]
	stop := context.AfterFunc(ctx, func() { grace.Store(time.AfterFunc(ShutdownGrace, cancel)) })
	return hctx, func() {
		stop()
		if t := grace.Load(); t != nil {
			t.Stop()
		}
		cancel()
	}
}

// reportProgress tells the server every interval that msg is in hand
// until the returned stop is called.
func reportProgress(msg jetstream.Msg, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// panicError is a recovered handler panic.
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("handler panic: %v", p.value) }

// call runs h and turns a panic into a *panicError.
func call(ctx context.Context, h Handler, m *Message) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v, stack: debug.Stack()}
		}
	}()
	return h(ctx, m)
}

// backoff is base doubled for each attempt after the first, capped at max.
func backoff(attempt int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max || d <= 0 {
		return max
	}
	return d
}

// jitter draws a delay from the upper half of d.
func jitter(d time.Duration) time.Duration {
	if d < 2 {
		return d
	}
	return d - rand.N(d/2)
}

// attemptsKey names the state entry holding the failed attempts of the
// message at seq of stream.
func attemptsKey(stream string, seq uint64) string {
	return "attempts." + stream + "." + strconv.FormatUint(seq, 10)
}

// recordAttempt appends a failed attempt to the message's history. The
// history is a diagnosis, not a duty: a failure to keep it is logged and
// the message is retried all the same.
func (b *Bus) recordAttempt(ctx context.Context, cfg ConsumerConfig, meta *jetstream.MsgMetadata, cause error, log *slog.Logger) {
	key := attemptsKey(meta.Stream, meta.Sequence.Stream)
	hist := appendAttempt(b.attempts(ctx, cfg, key), meta, cause)
	if cfg.local != nil {
		cfg.local.put(key, hist)
		return
	}
	raw, _ := json.Marshal(hist) // strings, ints and times always marshal
	if _, err := b.PutState(ctx, key, raw); err != nil {
		log.Warn("consume: attempt history not kept", "err", err)
	}
}

// appendAttempt adds the failed delivery meta to hist, keeping the latest
// maxHistory.
func appendAttempt(hist []Attempt, meta *jetstream.MsgMetadata, cause error) []Attempt {
	hist = append(hist, Attempt{Attempt: int(meta.NumDelivered), At: time.Now().UTC(), Error: headerText(cause.Error(), maxHistoryError)})
	if len(hist) > maxHistory {
		hist = hist[len(hist)-maxHistory:]
	}
	return hist
}

// historyTimeout bounds reading a message's history, so that settling it
// keeps the rest of settleTimeout.
const historyTimeout = 2 * time.Second

// attempts reads the recorded failed attempts under key; none when there
// are none or they cannot be read.
func (b *Bus) attempts(ctx context.Context, cfg ConsumerConfig, key string) []Attempt {
	if cfg.local != nil {
		return cfg.local.get(key)
	}
	ctx, cancel := context.WithTimeout(ctx, historyTimeout)
	defer cancel()
	e, err := b.GetState(ctx, key)
	if err != nil {
		return nil
	}
	var hist []Attempt
	if err := json.Unmarshal(e.Value, &hist); err != nil {
		return nil
	}
	return hist
}

// forgetAttempts drops the history of a message that is settled.
func (b *Bus) forgetAttempts(ctx context.Context, cfg ConsumerConfig, meta *jetstream.MsgMetadata, log *slog.Logger) {
	key := attemptsKey(meta.Stream, meta.Sequence.Stream)
	if cfg.local != nil {
		cfg.local.put(key, nil)
		return
	}
	if err := b.DeleteState(ctx, key); err != nil {
		log.Debug("consume: attempt history not deleted; it expires", "err", err)
	}
}

// localHistory is ConsumerConfig.LocalHistory's store.
type localHistory struct {
	mu       sync.Mutex
	attempts map[string][]Attempt
}

// maxLocalHistories bounds the messages a localHistory remembers; beyond
// it the history of an arbitrary one is dropped.
const maxLocalHistories = 10_000

func (l *localHistory) get(key string) []Attempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.attempts[key])
}

func (l *localHistory) put(key string, hist []Attempt) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(hist) == 0 {
		delete(l.attempts, key)
		return
	}
	if _, ok := l.attempts[key]; !ok && len(l.attempts) >= maxLocalHistories {
		for k := range l.attempts {
			delete(l.attempts, k)
			break
		}
	}
	l.attempts[key] = hist
}

// destinationOf names the destination a message concerns: its
// ExtensionDestinationID, its INBOX subject, or its sealed submission body.
func destinationOf(subject string, h nats.Header, data []byte) string {
	if id, err := uuidToken("destination id", h.Get(HeaderPrefix+ExtensionDestinationID)); err == nil {
		return id
	}
	if a, err := ParseInboxSubject(subject); err == nil {
		return a.DestinationID
	}
	if strings.HasPrefix(subject, PrefixIngress+".") {
		if s, err := sealed.Decode(data); err == nil {
			if id, err := uuidToken("destination id", s.DestinationID); err == nil {
				return id
			}
		}
	}
	return ""
}

// deadLetter publishes the message to ab.dead.<reason> with the reason
// headers, then terms it. If the publish fails the message is nakked, so
// that it is neither lost nor stuck.
func (b *Bus) deadLetter(ctx context.Context, cfg ConsumerConfig, msg jetstream.Msg, meta *jetstream.MsgMetadata, reason string, cause error, log *slog.Logger) {
	if _, err := reasonToken(reason); err != nil {
		log.Warn("consume: invalid dead-letter reason replaced", "reason", reason, "err", err)
		reason = ReasonPermanent
	}
	dm := nats.NewMsg(PrefixDead + "." + reason)
	for k, v := range msg.Headers() {
		// Nats-* headers steer the original publish; they must not steer this one.
		if strings.HasPrefix(strings.ToLower(k), "nats-") {
			continue
		}
		dm.Header[k] = v
	}
	dm.Header.Set(HeaderDeadReason, reason)
	dm.Header.Set(HeaderDeadError, headerText(cause.Error(), maxDeadError))
	dm.Header.Set(HeaderDeadAttempts, strconv.FormatUint(meta.NumDelivered, 10))
	dm.Header.Set(HeaderDeadConsumer, meta.Consumer)
	dm.Header.Set(HeaderOriginalSubject, msg.Subject())
	dm.Header.Set(HeaderOriginalStream, meta.Stream)
	dm.Header.Set(HeaderOriginalSequence, strconv.FormatUint(meta.Sequence.Stream, 10))
	if id := msg.Headers().Get(jetstream.MsgIDHeader); id != "" {
		dm.Header.Set(HeaderOriginalMsgID, id)
	}
	if dest := destinationOf(msg.Subject(), msg.Headers(), msg.Data()); dest != "" {
		dm.Header.Set(HeaderDestination, dest)
	}
	hist := appendAttempt(b.attempts(ctx, cfg, attemptsKey(meta.Stream, meta.Sequence.Stream)), meta, cause)
	raw, _ := json.Marshal(hist)
	dm.Header.Set(HeaderDeadHistory, string(raw))
	dm.Data = msg.Data()
	// One dead letter per stored message when a term is lost and the
	// handler fails again within the duplicates window.
	id := "dead." + meta.Stream + "." + strconv.FormatUint(meta.Sequence.Stream, 10)
	if _, err := b.js.PublishMsg(ctx, dm, jetstream.WithMsgID(id)); err != nil {
		delay := backoff(int(meta.NumDelivered), cfg.BackoffBase, cfg.BackoffMax)
		log.Error("consume: dead letter not written; retrying", "reason", reason, "err", err, "retry_in", delay)
		if err := msg.NakWithDelay(delay); err != nil {
			log.Warn("consume: nak lost; the message will be redelivered after ack wait", "err", err)
		}
		return
	}
	log.Error("consume: dead-lettered", "reason", reason, "err", cause)
	if err := msg.TermWithReason(reason); err != nil {
		// The server redelivers; the dead letter is deduplicated by id.
		log.Warn("consume: term lost; the message will be redelivered", "err", err)
		return
	}
	b.forgetAttempts(ctx, cfg, meta, log)
}

// headerText makes s safe for a header value: control characters become
// spaces and it is cut to at most n bytes on a rune boundary.
func headerText(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
