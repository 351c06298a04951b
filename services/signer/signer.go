// Package signer is Amtsbote's signer role: it signs and publishes the
// events Amtsbote accepted on the request path without waiting for an
// RSA signature (create- and submit-submission), which wait in a durable
// outbox in the key-value bucket (bus.Enqueue).
//
// A signer watches the outbox, claims each entry for a lease (an
// optimistic write, so that of several signers one signs it), signs and
// publishes it through the issuer (once per jti) and deletes it. What a
// crashed signer held is taken over when its lease runs out. A
// submission's entries are published in the order they were queued, so
// that its case lists create- before submit-submission. While other
// work of its process waits for a CPU, one worker signs and the others
// give way (Config.Busy); with Config.MaxDefer that one waits too, until
// an event has waited that long.
package signer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	runtimemetrics "runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/issuer"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/pkg/tracing"
)

// Defaults of Config.
const (
	// DefaultLease is how long a claim on an entry holds; a signer that
	// did not finish within it is taken over.
	DefaultLease = 30 * time.Second
	// DefaultMaxDefer is how long a signer beside a gateway lets events
	// wait while requests keep its process busy (Config.MaxDefer).
	DefaultMaxDefer = time.Minute
	// DefaultQueue bounds the entries waiting in memory for a worker;
	// more stay in the outbox until there is room.
	DefaultQueue = 4096
)

// Config is what a Signer needs. Bus and Issuer are required.
type Config struct {
	Bus    *bus.Bus
	Issuer *issuer.Issuer
	// Workers sign at once (default runtime.NumCPU()).
	Workers int
	// Busy reports that other work of this process waits for a CPU: then
	// only the first worker signs, so that requests served beside the
	// signer are not kept waiting behind signatures; the others sign again
	// once nothing waits. Default: GoroutinesWaiting.
	Busy func() bool
	// MaxDefer, when set, lets the first worker give way too while Busy,
	// for as long as the event in its hands was issued less than MaxDefer
	// ago: a rush of submissions is taken at the rate of the requests
	// alone and its events are signed in the lulls, none later than about
	// MaxDefer unless the signing itself falls behind. Zero: the first
	// worker always signs.
	MaxDefer time.Duration
	// Queue bounds the entries held in memory for the workers (default
	// DefaultQueue).
	Queue int
	// Lease is how long a claim holds, and how often the outbox is swept
	// for entries whose lease ran out (default DefaultLease).
	Lease time.Duration
	// Logger (default: discard).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Registry receives the signing metrics (default: a private registry).
	Registry prometheus.Registerer
	// Tracer makes each signing a span (default: no spans).
	Tracer trace.TracerProvider
}

// Signer publishes the outbox's events.
type Signer struct {
	bus      *bus.Bus
	issuer   *issuer.Issuer
	workers  int
	busy     func() bool
	maxDefer time.Duration
	lease    time.Duration
	log      *slog.Logger
	now      func() time.Time
	id       string

	jobs chan bus.OutboxEntry
	mu   sync.Mutex
	// queued holds the jtis in jobs or in a worker's hands, each with its
	// submission.
	queued map[string]string
	// turns holds, per submission, the jtis of queued in the order they
	// were queued: a submission's events are published in that order,
	// which is the order they were accepted in (create- before
	// submit-submission), however the workers are scheduled.
	turns map[string][]string
	// turn is signalled when an entry is done.
	turn *sync.Cond
	// overflowed says that the watch offered entries jobs had no room
	// for; refill asks for a sweep of the outbox's head once it has.
	overflowed atomic.Bool
	refill     chan struct{}

	metrics *metrics
	tracer  trace.Tracer
}

// New checks cfg.
func New(cfg Config) (*Signer, error) {
	switch {
	case cfg.Bus == nil:
		return nil, errors.New("new signer: no bus")
	case cfg.Issuer == nil:
		return nil, errors.New("new signer: no issuer")
	case cfg.Workers < 0 || cfg.Lease < 0 || cfg.Queue < 0 || cfg.MaxDefer < 0:
		return nil, errors.New("new signer: negative workers, lease, queue or deferral")
	}
	s := &Signer{
		bus: cfg.Bus, issuer: cfg.Issuer, workers: cfg.Workers, busy: cfg.Busy, maxDefer: cfg.MaxDefer,
		lease: cfg.Lease, log: cfg.Logger, now: cfg.Now,
		id:     uuid.NewString(),
		queued: make(map[string]string),
		turns:  make(map[string][]string),
		refill: make(chan struct{}, 1),
	}
	s.turn = sync.NewCond(&s.mu)
	if cfg.Queue == 0 {
		cfg.Queue = DefaultQueue
	}
	s.jobs = make(chan bus.OutboxEntry, cfg.Queue)
	if s.workers == 0 {
		s.workers = runtime.NumCPU()
	}
	if s.busy == nil {
		s.busy = GoroutinesWaiting
	}
	if s.lease == 0 {
		s.lease = DefaultLease
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	var err error
	if s.metrics, err = newMetrics(reg, func() float64 { return float64(s.queuedCount()) }); err != nil {
		return nil, fmt.Errorf("new signer: %w", err)
	}
	s.tracer = tracing.Tracer(cfg.Tracer)
	return s, nil
}

// queuedCount is how many entries wait for a worker or are in its hands.
func (s *Signer) queuedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queued)
}

// Run signs and publishes until ctx is cancelled; then each worker
// finishes the entry in its hands and Run returns nil. It returns an error
// when the outbox cannot be watched.
func (s *Signer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for w := range s.workers {
		wg.Go(func() {
			for {
				if w > 0 && s.busy() {
					if !pause(ctx) {
						return
					}
					continue
				}
				select {
				case <-ctx.Done():
					return
				case e := <-s.jobs:
					if !s.awaitTurn(ctx, e) || !s.giveWay(ctx, e) {
						s.done(e.Claims.JTI)
						return
					}
					s.process(ctx, e)
					if len(s.jobs) <= cap(s.jobs)/2 && s.overflowed.Load() {
						select {
						case s.refill <- struct{}{}:
						default:
						}
					}
				}
			}
		})
	}
	watchErr := make(chan error, 1)
	wg.Go(func() { watchErr <- s.bus.WatchOutbox(ctx, func(e bus.OutboxEntry) { s.offer(e) }) })
	tick := time.NewTicker(s.lease)
	defer tick.Stop()
	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err = <-watchErr:
			break loop
		case <-tick.C:
			// Only as much of the outbox's head as could be queued: with
			// a backlog the whole outbox is large, and the rest waits for
			// the refills.
			if room := cap(s.jobs) - len(s.jobs); room > 0 {
				s.sweep(ctx, room+s.queuedCount())
			} else {
				s.overflowed.Store(true)
			}
		case <-s.refill:
			// What the watch dropped waits at the outbox's head, behind
			// the entries still queued.
			s.sweep(ctx, cap(s.jobs)+s.queuedCount())
		}
	}
	wg.Wait()
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("signer: %w", err)
	}
	return nil
}

// yieldPause is how long a worker other than the first waits before it
// asks again whether other work waits for a CPU.
const yieldPause = 5 * time.Millisecond

// pause waits yieldPause; it reports false when ctx ended first.
func pause(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(yieldPause):
		return true
	}
}

// giveWay holds a worker's entry while other work waits for a CPU and
// the entry is younger than MaxDefer. It reports false when ctx ended
// first.
func (s *Signer) giveWay(ctx context.Context, e bus.OutboxEntry) bool {
	for s.maxDefer > 0 && s.busy() && s.now().Sub(e.Claims.IssuedAt) < s.maxDefer {
		if !pause(ctx) {
			return false
		}
	}
	return true
}

// GoroutinesWaiting reports whether goroutines of this process are ready
// to run but wait for a CPU (an approximate count read from the
// scheduler).
func GoroutinesWaiting() bool {
	sample := []runtimemetrics.Sample{{Name: "/sched/goroutines/runnable:goroutines"}}
	runtimemetrics.Read(sample)
	return sample[0].Value.Kind() == runtimemetrics.KindUint64 && sample[0].Value.Uint64() > 0
}

// offer queues e for a worker unless it is queued or claimed, or the
// queue is full; then the next sweep finds it. It reports whether e was
// queued.
func (s *Signer) offer(e bus.OutboxEntry) bool {
	if e.ClaimedUntil.After(s.now()) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.queued[e.Claims.JTI]; ok {
		return false
	}
	select {
	case s.jobs <- e:
		sid, _ := e.Claims.SubmissionID()
		s.queued[e.Claims.JTI] = sid
		s.turns[sid] = append(s.turns[sid], e.Claims.JTI)
		return true
	default:
		s.overflowed.Store(true)
		return false
	}
}

func (s *Signer) done(jti string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sid, ok := s.queued[jti]
	if !ok {
		return
	}
	delete(s.queued, jti)
	turns := slices.DeleteFunc(s.turns[sid], func(j string) bool { return j == jti })
	if len(turns) == 0 {
		delete(s.turns, sid)
	} else {
		s.turns[sid] = turns
	}
	s.turn.Broadcast()
}

// awaitTurn waits until the entries of e's submission queued before it
// are done. It reports false when ctx ended first.
func (s *Signer) awaitTurn(ctx context.Context, e bus.OutboxEntry) bool {
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.turn.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for ctx.Err() == nil {
		if turns := s.turns[s.queued[e.Claims.JTI]]; len(turns) == 0 || turns[0] == e.Claims.JTI {
			return true
		}
		s.turn.Wait()
	}
	return false
}

// sweep offers the entries whose claim ran out, or that the watch could
// not queue: of the first n entries in the outbox, or all when n ≤ 0.
func (s *Signer) sweep(ctx context.Context, n int) {
	s.overflowed.Store(false)
	entries, err := s.bus.OutboxHead(ctx, n)
	if err != nil {
		if ctx.Err() == nil {
			s.log.WarnContext(ctx, "outbox sweep", "err", err)
		}
		return
	}
	queued := false
	for _, e := range entries {
		queued = s.offer(e) || queued
	}
	if n > 0 && len(entries) == n && queued {
		// More may wait behind the head although all of it fitted: the
		// next refill reads on, as the watch's overflow would make it. A
		// head held by others' claims is left to the periodic sweep rather
		// than read again after every signature.
		s.overflowed.Store(true)
	}
}

// process claims, signs, publishes and deletes one entry. A failure is
// logged and leaves the entry for the next sweep after the lease.
func (s *Signer) process(ctx context.Context, e bus.OutboxEntry) {
	defer s.done(e.Claims.JTI)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.lease)
	defer cancel()
	ctx = bus.ContextWithTraceparent(ctx, e.Traceparent)
	uri, _, _ := e.Claims.Event()
	sid, _ := e.Claims.SubmissionID()
	ctx, end := tracing.Start(ctx, s.tracer, "sign "+set.Name(uri), trace.SpanKindInternal,
		attribute.String("amtsbote.jti", e.Claims.JTI), attribute.String("amtsbote.submission_id", sid))
	start := s.now()
	e, err := s.bus.Claim(ctx, e, s.id, s.now().Add(s.lease))
	if errors.Is(err, bus.ErrRevisionMismatch) || errors.Is(err, bus.ErrNotFound) {
		end(nil)
		return // another signer has it, or it is done
	}
	if err == nil {
		_, err = s.issuer.Publish(ctx, e.Claims)
	}
	if err == nil {
		err = s.bus.DeleteState(ctx, e.Key())
	}
	end(err)
	s.metrics.signed(err, s.now().Sub(start), e.Claims.IssuedAt, s.now())
	if err != nil {
		s.log.WarnContext(ctx, "event left in the outbox for a retry", "jti", e.Claims.JTI, "submission_id", sid, "err", err)
	}
}
