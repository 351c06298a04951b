// Package router is Amtsbote's router role: it consumes accepted
// submissions from INGRESS, checks once more that their destination can
// take them, and publishes them to the destination's INBOX subject.
//
// A submission that cannot be routed any more (its destination is gone,
// inactive or decommissioned, no longer offers the service, or is no longer
// the one responsible for the applicant's region) is rejected: Amtsbote
// signs a reject-submission event naming the reason, publishes it to
// EVENTS, and the message goes to DEAD with the reason in its headers.
//
// Several routers, in one process or many, share the durable consumer
// "router"; every publish carries a Nats-Msg-Id (the submission id, or the
// event's jti), so a redelivery never duplicates a routed submission or a
// rejection.
package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/issuer"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// Durable is the name of the consumer every router shares.
const Durable = "router"

// Dead-letter reasons, also the reason label of the metrics.
const (
	// ReasonInvalid: the message is not a sealed submission.
	ReasonInvalid = "invalid"
	// ReasonDestinationGone: the destination does not exist.
	ReasonDestinationGone = "destination-gone"
	// ReasonDestinationInactive: the destination is not active.
	ReasonDestinationInactive = "destination-inactive"
	// ReasonServiceNotOffered: the destination does not offer the service
	// (for the submission's region) at the time of routing.
	ReasonServiceNotOffered = "service-not-offered"
	// ReasonNotResponsible: the routing table names another destination
	// for the service and region, or none.
	ReasonNotResponsible = "not-responsible"
	// ReasonBadHomeRegion: the destination's home region makes no inbox
	// subject. The registry needs fixing; the message can be re-driven, so
	// the submission is not rejected.
	ReasonBadHomeRegion = "bad-home-region"
	// ReasonDecided: a re-driven or redelivered submission whose case
	// already holds its reject- or delete-submission. It is not routed:
	// the sender was told, and submits anew if it still wants to.
	ReasonDecided = "already-decided"
)

// Problem types of the reject-submission events the router writes.
const (
	ProblemDestinationUnavailable = problem.Base + "destination-unavailable"
	ProblemServiceNotOffered      = problem.Base + "service-not-offered"
	ProblemNotResponsible         = problem.Base + "destination-not-responsible"
)

// Resolver names the destination responsible for service (a service URN)
// in the region ars (an ARS prefix of 0 to 12 digits, without "DE") at time
// at, as the routing table says. ok is false when no destination is.
type Resolver func(service, ars string, at time.Time) (destinationID string, ok bool)

// Config is what a Router needs. Bus, Store and Issuer are required.
type Config struct {
	// Bus connects to JetStream; the topology must exist.
	Bus *bus.Bus
	// Store holds the registry the router checks destinations against,
	// and the submissions a re-driven message must match.
	Store Store
	// Issuer issues reject-submission events.
	Issuer *issuer.Issuer
	// Resolver, when set, is asked for the destination responsible for a
	// submission that names a region; it must still be the submission's.
	Resolver Resolver
	// Logger receives dead letters and failures (default: discard).
	Logger *slog.Logger
	// Registry receives the metrics (default: a private registry).
	Registry *prometheus.Registry
	// Concurrency is how many messages one router handles at once
	// (default DefaultConcurrency).
	Concurrency int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Store is what the router reads of the store.
type Store interface {
	Destination(ctx context.Context, id string) (store.Destination, error)
	Submission(ctx context.Context, id string) (store.Submission, error)
}

// Router routes sealed submissions from INGRESS to INBOX.
type Router struct {
	bus         *bus.Bus
	store       Store
	issuer      *issuer.Issuer
	resolve     Resolver
	log         *slog.Logger
	concurrency int
	now         func() time.Time
	metrics     *metrics
}

// DefaultConcurrency is the router's default of messages under way: each
// waits for two round trips (the inbox publish, the acknowledgement), so
// throughput needs many at once rather than CPU.
const DefaultConcurrency = 32

// New checks cfg and registers the metrics.
func New(cfg Config) (*Router, error) {
	switch {
	case cfg.Bus == nil:
		return nil, errors.New("new router: no bus")
	case cfg.Store == nil:
		return nil, errors.New("new router: no store")
	case cfg.Issuer == nil:
		return nil, errors.New("new router: no issuer")
	case cfg.Concurrency < 0:
		return nil, fmt.Errorf("new router: concurrency %d: negative", cfg.Concurrency)
	}
	r := &Router{
		bus:         cfg.Bus,
		store:       cfg.Store,
		issuer:      cfg.Issuer,
		resolve:     cfg.Resolver,
		log:         cfg.Logger,
		concurrency: cfg.Concurrency,
		now:         cfg.Now,
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.concurrency == 0 {
		r.concurrency = DefaultConcurrency
	}
	if r.now == nil {
		r.now = time.Now
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("new router: %w", err)
	}
	r.metrics = m
	return r, nil
}

// Run consumes INGRESS until ctx is cancelled, then lets running handlers
// finish and returns nil. It returns an error if consuming cannot start or
// ends for another reason.
func (r *Router) Run(ctx context.Context) error {
	err := r.bus.Consume(ctx, bus.ConsumerConfig{
		Stream:      bus.StreamIngress,
		Durable:     Durable,
		Concurrency: r.concurrency,
		Logger:      r.log,
	}, r.handle)
	// Cancelled while setting up is a stop, not a failure.
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("router: %w", err)
	}
	return nil
}

// unroutable says why a submission cannot be routed and what to tell the sender.
type unroutable struct {
	reason      string
	problemType string
	title       string
	detail      string
}

// handle routes one message. Its result decides the message's fate (see
// bus.Handler).
func (r *Router) handle(ctx context.Context, m *bus.Message) error {
	land := "unknown"
	if addr, err := bus.ParseIngressSubject(m.Subject); err == nil {
		land = addr.ARS[:2]
	}
	sub, err := decode(m)
	if err != nil {
		r.metrics.outcome(outcomeInvalid, land)
		return bus.PermanentReason(ReasonInvalid, err)
	}
	log := r.log.With("submission_id", sub.SubmissionID, "case_id", sub.CaseID, "destination_id", sub.DestinationID)
	if m.Header.Get(bus.HeaderRedrivenFrom) != "" {
		if err := r.recorded(ctx, sub); err != nil {
			return r.failed(err, land)
		}
	}

	dest, why, err := r.check(ctx, sub)
	if err != nil {
		r.metrics.outcome(outcomeRetry, land)
		return err
	}
	if why == nil && (m.Attempt > 1 || m.Header.Get(bus.HeaderRedrivenFrom) != "") {
		// Rejected when it was first read, say, and re-driven since the
		// route was mended: the first message of a submission has no
		// decision yet, a later one may.
		decided, err := r.decided(ctx, sub)
		if err != nil {
			r.metrics.outcome(outcomeRetry, land)
			return err
		}
		if decided != "" {
			r.metrics.outcome(outcomeInvalid, land)
			return bus.PermanentReason(ReasonDecided, fmt.Errorf("submission %s is decided by its %s; the sender submits anew", sub.SubmissionID, decided))
		}
	}
	if why != nil {
		if err := r.reject(ctx, sub, *why); err != nil {
			return r.failed(err, land)
		}
		r.metrics.outcome(outcomeUnroutable, land)
		r.metrics.unroutable.WithLabelValues(why.reason, land).Inc()
		log.InfoContext(ctx, "router: submission rejected", "reason", why.reason)
		return bus.PermanentReason(why.reason, errors.New(why.detail))
	}

	if _, err := bus.InboxSubject(dest.HomeRegion, dest.ID); err != nil {
		r.metrics.outcome(outcomeUnroutable, land)
		r.metrics.unroutable.WithLabelValues(ReasonBadHomeRegion, land).Inc()
		return bus.PermanentReason(ReasonBadHomeRegion, err)
	}
	ack, err := r.bus.PublishRouted(ctx, r.issuer.URL(), dest.HomeRegion, sub, m.Data, m.Published, r.now())
	if err != nil {
		r.metrics.outcome(outcomeRetry, land)
		return fmt.Errorf("route %s: %w", sub.SubmissionID, err)
	}
	if ack.Duplicate {
		r.metrics.outcome(outcomeDuplicate, land)
		return nil
	}
	r.metrics.outcome(outcomeRouted, land)
	if !m.Published.IsZero() {
		r.metrics.latency.Observe(r.now().Sub(m.Published).Seconds())
	}
	log.DebugContext(ctx, "router: routed", "destination_id", dest.ID)
	return nil
}

// failed counts err as the message's outcome, invalid when it is
// permanent, else a retry, and returns it.
func (r *Router) failed(err error, land string) error {
	var perm *bus.PermanentError
	if errors.As(err, &perm) {
		r.metrics.outcome(outcomeInvalid, land)
	} else {
		r.metrics.outcome(outcomeRetry, land)
	}
	return err
}

// decode checks the message's subject and type and decodes its body.
func decode(m *bus.Message) (sealed.Submission, error) {
	if _, err := bus.ParseIngressSubject(m.Subject); err != nil {
		return sealed.Submission{}, err
	}
	if m.Event.Type() != sealed.TypeSubmitted {
		return sealed.Submission{}, fmt.Errorf("cloudevent type %q, want %s", m.Event.Type(), sealed.TypeSubmitted)
	}
	return sealed.Decode(m.Data)
}

// check decides whether sub can still go to its destination. It returns
// the destination, or why not; an error only when the store failed, which
// a retry may fix.
func (r *Router) check(ctx context.Context, sub sealed.Submission) (store.Destination, *unroutable, error) {
	dest, err := r.store.Destination(ctx, sub.DestinationID)
	if errors.Is(err, store.ErrNotFound) {
		return dest, &unroutable{ReasonDestinationGone, ProblemDestinationUnavailable, "Destination unavailable",
			fmt.Sprintf("destination %s does not exist", sub.DestinationID)}, nil
	}
	if err != nil {
		return dest, nil, fmt.Errorf("route %s: %w", sub.SubmissionID, err)
	}
	if dest.Status != store.StatusActive {
		return dest, &unroutable{ReasonDestinationInactive, ProblemDestinationUnavailable, "Destination unavailable",
			fmt.Sprintf("destination %s is %s", dest.ID, dest.Status)}, nil
	}
	now := r.now()
	if _, ok := dest.Offers(sub.Service, sub.Region, now); !ok {
		detail := fmt.Sprintf("destination %s does not offer service %s", dest.ID, sub.Service)
		if sub.Region != "" {
			detail += " in region " + sub.Region
		}
		return dest, &unroutable{ReasonServiceNotOffered, ProblemServiceNotOffered, "Service not offered", detail}, nil
	}
	if r.resolve != nil && sub.Region != "" {
		id, ok := r.resolve(sub.Service, strings.TrimPrefix(sub.Region, "DE"), now)
		if !ok {
			return dest, &unroutable{ReasonNotResponsible, ProblemNotResponsible, "Destination not responsible",
				fmt.Sprintf("no destination is responsible for service %s in region %s", sub.Service, sub.Region)}, nil
		}
		if !strings.EqualFold(id, dest.ID) {
			return dest, &unroutable{ReasonNotResponsible, ProblemNotResponsible, "Destination not responsible",
				fmt.Sprintf("destination %s is responsible for service %s in region %s, not %s", id, sub.Service, sub.Region, dest.ID)}, nil
		}
	}
	return dest, nil, nil
}

// recorded checks a re-driven message against the submission the gateway
// recorded. A dead letter is written by whoever may publish to DEAD, a
// subscriber's user among them, and its re-drive publishes it with
// Amtsbote's rights: only what the sender submitted may be routed, or
// rejected in its name.
func (r *Router) recorded(ctx context.Context, sub sealed.Submission) error {
	err := store.CheckRecorded(ctx, r.store, sub)
	if errors.Is(err, store.ErrNotRecorded) {
		return bus.PermanentReason(ReasonInvalid, fmt.Errorf("re-driven message %w", err))
	}
	if err != nil {
		return fmt.Errorf("route %s: %w", sub.SubmissionID, err)
	}
	return nil
}

// decided names the reject- or delete-submission of sub in its case, or
// "" when there is none. EVENTS is read, not the store's projection, which
// may lag behind it.
func (r *Router) decided(ctx context.Context, sub sealed.Submission) (string, error) {
	evs, err := r.bus.CaseEvents(ctx, sub.CaseID)
	if err != nil {
		return "", fmt.Errorf("route %s: %w", sub.SubmissionID, err)
	}
	for _, e := range evs {
		_, sid, uri, ok := e.Read()
		if ok && sid == sub.SubmissionID && (uri == set.RejectSubmission || uri == set.DeleteSubmission) {
			return set.Name(uri), nil
		}
	}
	return "", nil
}

// reject issues Amtsbote's reject-submission event for sub. Its jti is
// derived: a redelivery issues the same event, once.
func (r *Router) reject(ctx context.Context, sub sealed.Submission, why unroutable) error {
	payload := set.RejectPayload{Problems: []set.Problem{{
		Type:     why.problemType,
		Title:    why.title,
		Detail:   why.detail,
		Instance: "submission",
	}}}
	if _, err := r.issuer.Issue(ctx, set.RejectSubmission, sub.SubmissionID, sub.CaseID, payload); err != nil {
		if errors.Is(err, set.ErrClaims) || errors.Is(err, bus.ErrInvalidToken) {
			return bus.PermanentReason(ReasonInvalid, fmt.Errorf("reject %s: %w", sub.SubmissionID, err))
		}
		return fmt.Errorf("reject %s: %w", sub.SubmissionID, err)
	}
	return nil
}
