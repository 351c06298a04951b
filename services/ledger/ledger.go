// Package ledger is Amtsbote's ledger role: it projects the EVENTS stream
// (every security event token of every case, the source of truth for a
// submission's status) into the store's event log and submission status,
// marks submissions routed when they reach INBOX, and keeps FIT-Connect's
// retention deadlines.
//
// Everything it does is idempotent, so several ledgers, in one process or
// many, share the work: the consumers "ledger" (EVENTS) and "ledger-inbox"
// (INBOX) are shared durables, events are recorded once per jti, a status
// changes only along sealed.Next, and the events Amtsbote writes on a
// deadline get a jti derived from the submission and the event, so two
// ledgers meeting the same deadline write the same event.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/issuer"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// Durable names of the consumers every ledger shares.
const (
	DurableEvents = "ledger"
	DurableInbox  = "ledger-inbox"
)

// ReasonInvalid is the dead-letter reason of a message the ledger cannot
// read: not the CloudEvent type it expects, not a security event token, or
// a token that does not belong to the case its subject names.
const ReasonInvalid = "invalid"

// Retention holds FIT-Connect's deadlines. Zero values take the defaults.
type Retention struct {
	// Incomplete: an incomplete submission is deleted this long after its
	// creation (default 24h).
	Incomplete time.Duration
	// AfterPickup: a picked-up submission's content is deleted this long
	// after its pickup (default 7 days).
	AfterPickup time.Duration
	// RejectUnpicked: Amtsbote rejects a submission not picked up this long
	// after its submit (default 14 days).
	RejectUnpicked time.Duration
	// DeleteUnpicked: a submission not picked up is deleted this long after
	// its submit (default 21 days); at least RejectUnpicked.
	DeleteUnpicked time.Duration
	// Interval is how often the deadlines are checked (default 1 minute).
	Interval time.Duration
}

// Default deadlines, FIT-Connect's.
const (
	DefaultIncomplete     = 24 * time.Hour
	DefaultAfterPickup    = 7 * 24 * time.Hour
	DefaultRejectUnpicked = 14 * 24 * time.Hour
	DefaultDeleteUnpicked = 21 * 24 * time.Hour
	DefaultInterval       = time.Minute
)

// withDefaults fills zero values and checks the rest.
func (r Retention) withDefaults() (Retention, error) {
	for _, f := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&r.Incomplete, DefaultIncomplete},
		{&r.AfterPickup, DefaultAfterPickup},
		{&r.RejectUnpicked, DefaultRejectUnpicked},
		{&r.DeleteUnpicked, DefaultDeleteUnpicked},
		{&r.Interval, DefaultInterval},
	} {
		if *f.v == 0 {
			*f.v = f.def
		}
		if *f.v < 0 {
			return r, fmt.Errorf("retention: negative duration %s", *f.v)
		}
	}
	if r.DeleteUnpicked < r.RejectUnpicked {
		return r, fmt.Errorf("retention: deletion of unpicked submissions after %s comes before their rejection after %s",
			r.DeleteUnpicked, r.RejectUnpicked)
	}
	return r, nil
}

// Config is what a Ledger needs. Bus, Store and Issuer are required.
type Config struct {
	// Bus connects to JetStream; the topology must exist.
	Bus *bus.Bus
	// Store receives the projection.
	Store store.Store
	// Issuer issues the reject-submission and delete-submission events of
	// the deadlines.
	Issuer *issuer.Issuer
	// Retention sets the deadlines.
	Retention Retention
	// Logger receives failures (default: discard).
	Logger *slog.Logger
	// Registry receives the metrics (default: a private registry).
	Registry *prometheus.Registry
	// Concurrency is how many messages each consumer handles at once
	// (default 4).
	Concurrency int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// BacklogInterval is how often the backlog figures are read from the
	// store, when it reports them (store.Backlogs); default 30s.
	BacklogInterval time.Duration
}

// Ledger projects EVENTS and INBOX into the store and keeps the deadlines.
type Ledger struct {
	bus         *bus.Bus
	store       store.Store
	issuer      *issuer.Issuer
	retention   Retention
	log         *slog.Logger
	concurrency int
	now         func() time.Time
	metrics     *metrics
	backlogTick time.Duration
	// lands caches each destination's Land for the metrics' labels.
	lands sync.Map // destination id → cachedLand
}

// New checks cfg and registers the metrics.
func New(cfg Config) (*Ledger, error) {
	switch {
	case cfg.Bus == nil:
		return nil, errors.New("new ledger: no bus")
	case cfg.Store == nil:
		return nil, errors.New("new ledger: no store")
	case cfg.Issuer == nil:
		return nil, errors.New("new ledger: no issuer")
	case cfg.Concurrency < 0:
		return nil, fmt.Errorf("new ledger: concurrency %d: negative", cfg.Concurrency)
	}
	ret, err := cfg.Retention.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("new ledger: %w", err)
	}
	l := &Ledger{
		bus:         cfg.Bus,
		store:       cfg.Store,
		issuer:      cfg.Issuer,
		retention:   ret,
		log:         cfg.Logger,
		concurrency: cfg.Concurrency,
		now:         cfg.Now,
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.concurrency == 0 {
		l.concurrency = 4
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.backlogTick = cfg.BacklogInterval; l.backlogTick <= 0 {
		l.backlogTick = 30 * time.Second
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if l.metrics, err = newMetrics(reg); err != nil {
		return nil, fmt.Errorf("new ledger: %w", err)
	}
	return l, nil
}

// The ledger's consumers fail for now only when the store does (what
// cannot be projected is dead-lettered at once): they ask again however
// long it is down, since an event dead-lettered after the last delivery
// would be missing from the store for good (EVENTS is not re-driven, as a
// second copy would be a second piece of evidence), and at least every
// retryAtMost, so the store catches up soon after it answers again.
const (
	neverGiveUp = -1
	retryAtMost = time.Minute
)

// Run consumes EVENTS and INBOX and checks the deadlines every
// Retention.Interval until ctx is cancelled; then it lets running work
// finish and returns nil. If one of the three ends with an error, Run
// stops the others and returns it.
func (l *Ledger) Run(parent context.Context) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	fail := func(err error) {
		// Cancelled while setting up is a stop, not a failure.
		if err != nil && parent.Err() == nil {
			once.Do(func() { first = err })
			cancel()
		}
	}
	wg.Go(func() {
		fail(l.bus.Consume(ctx, bus.ConsumerConfig{
			Stream:         bus.StreamEvents,
			Durable:        DurableEvents,
			FilterSubjects: []string{bus.PrefixEvents + ".>"},
			Concurrency:    l.concurrency,
			MaxDeliver:     neverGiveUp,
			BackoffMax:     retryAtMost,
			Logger:         l.log,
		}, l.handleEvent))
	})
	wg.Go(func() {
		fail(l.bus.Consume(ctx, bus.ConsumerConfig{
			Stream:         bus.StreamInbox,
			Durable:        DurableInbox,
			FilterSubjects: []string{bus.PrefixInbox + ".>"},
			Concurrency:    l.concurrency,
			MaxDeliver:     neverGiveUp,
			BackoffMax:     retryAtMost,
			Logger:         l.log,
		}, l.handleRouted))
	})
	wg.Go(func() { l.keepDeadlines(ctx) })
	if bs, ok := l.store.(store.Backlogs); ok {
		wg.Go(func() { l.watchBacklog(ctx, bs) })
	}
	wg.Wait()
	if first != nil {
		return fmt.Errorf("ledger: %w", first)
	}
	return nil
}

// keepDeadlines runs Sweep every interval until ctx is cancelled.
func (l *Ledger) keepDeadlines(ctx context.Context) {
	tick := time.NewTicker(l.retention.Interval)
	defer tick.Stop()
	for {
		if err := l.Sweep(ctx); err != nil && ctx.Err() == nil {
			l.log.Warn("ledger: deadlines not all kept; next round retries", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// watchBacklog reads the backlog figures every backlogTick until ctx is
// cancelled. A failed read keeps the previous figures; their timestamp
// tells how old they are.
func (l *Ledger) watchBacklog(ctx context.Context, bs store.Backlogs) {
	tick := time.NewTicker(l.backlogTick)
	defer tick.Stop()
	failing := false
	for {
		if err := l.RefreshBacklog(ctx, bs); err != nil && ctx.Err() == nil && !failing {
			l.log.Warn("ledger: backlog figures not read; keeping the last ones", "err", err)
			failing = true
		} else if err == nil {
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// RefreshBacklog reads the backlog figures from bs now.
func (l *Ledger) RefreshBacklog(ctx context.Context, bs store.Backlogs) error {
	now := l.now()
	cutoffs := make([]time.Time, len(OverdueDays))
	for i, d := range OverdueDays {
		cutoffs[i] = now.AddDate(0, 0, -d)
	}
	backlogs, err := bs.Backlogs(ctx, cutoffs...)
	if err != nil {
		return err
	}
	l.metrics.setBacklog(backlogs, now)
	return nil
}
