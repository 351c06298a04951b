// Package delivery is Amtsbote's delivery role: it tells receivers and
// senders that something happened, with FIT-Connect's callbacks.
//
// A submission arriving in a destination's inbox owes the destination's
// callback URL a new-submissions callback; an event of a case that the
// sender did not cause itself owes the submission's callback URL (given
// at create) a new-events callback. Two durable consumers turn INBOX and
// EVENTS messages into callback messages on CALLBACKS, one per
// submission or event (Nats-Msg-Id), carrying ids only. A third durable
// consumer posts them, signed with the callback's secret (hex
// HMAC-SHA512 over timestamp + "." + body), reading URL and secret from
// the store when it posts: secrets never travel on the bus, appear in a
// dead letter or a log. A post that times out, is redirected or is not
// answered 2xx is retried with exponential backoff and jitter up to
// MaxAttempts, then dead-lettered (reason callback-failed) with its
// attempt history, from where an operator re-drives it. Callbacks go to
// public addresses and Config.Allow only.
//
// Every process running the role shares the three consumers.
package delivery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/client"
	"github.com/amtsbote/amtsbote/pkg/netguard"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// Durable names of the consumers every delivery role shares.
const (
	DurableSubmissions = "delivery-submissions"
	DurableEvents      = "delivery-events"
	DurableCallbacks   = "delivery-callbacks"
)

// Callback kinds: the CALLBACKS subject token and the last segment of
// FIT-Connect's callback type.
const (
	KindNewSubmissions = "new-submissions"
	KindNewEvents      = "new-events"
)

// FIT-Connect's callback types.
const (
	TypeNewSubmissions = "https://schema.fitko.de/fit-connect/submission-api/callbacks/new-submissions"
	TypeNewEvents      = "https://schema.fitko.de/fit-connect/submission-api/callbacks/new-events"
)

// TypeCallback is the CloudEvents type of a CALLBACKS message.
const TypeCallback = "de.amtsbote.callback"

// Dead-letter reasons.
const (
	// ReasonCallbackFailed: every allowed attempt to post the callback failed.
	ReasonCallbackFailed = "callback-failed"
	// ReasonInvalid: a message the role cannot read.
	ReasonInvalid = "invalid-callback"
	// ReasonNotPublic: the callback URL names an address that is not on
	// the public internet nor in Config.Allow.
	ReasonNotPublic = "callback-not-public"
)

// Defaults of Config.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultMaxAttempts = 10
	DefaultBackoffBase = 5 * time.Second
	DefaultBackoffMax  = 10 * time.Minute
	// DefaultConcurrency is high because posts wait on receivers, not on
	// the CPU: one that never answers holds a slot for Timeout, and a few
	// such must not delay every other receiver's callbacks.
	DefaultConcurrency = 64
)

// userAgent names Amtsbote in its callbacks, for receivers and their
// firewalls.
const userAgent = "Amtsbote"

// maxResponse bounds what is read of a receiver's answer, to reuse the
// connection without letting a receiver stream forever.
const maxResponse = 64 << 10

// Store is what the role reads: where callbacks go and their secrets.
type Store interface {
	Destination(ctx context.Context, id string) (store.Destination, error)
	Submission(ctx context.Context, id string) (store.Submission, error)
}

// Config is what a Delivery needs. Bus and Store are required.
type Config struct {
	Bus   *bus.Bus
	Store Store
	// Source names Amtsbote in the CloudEvents it publishes (its public URL).
	Source string
	// Transport carries the posts (default: http.DefaultTransport's
	// settings, connecting to public addresses and Allow only). No
	// redirect is followed whatever it is.
	Transport http.RoundTripper
	// Allow are the networks besides the public internet that the default
	// transport posts to: the back offices' own, where they are internal
	// (loopback, private, link-local and other addresses are refused
	// otherwise).
	Allow []netip.Prefix
	// Timeout bounds one post, from dial to the end of the answer
	// (default DefaultTimeout).
	Timeout time.Duration
	// MaxAttempts is how often a callback is posted before it is
	// dead-lettered (default DefaultMaxAttempts).
	MaxAttempts int
	// BackoffBase and BackoffMax bound the wait between attempts: it
	// starts at the base and doubles up to the max, each drawn at random
	// from its upper half (defaults DefaultBackoffBase, DefaultBackoffMax).
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// Concurrency is how many callbacks one process posts at once
	// (default DefaultConcurrency).
	Concurrency int
	// Logger receives failures (default: discard). It never sees a secret.
	Logger *slog.Logger
	// Registry receives the metrics (default: a private registry).
	Registry *prometheus.Registry
	// Now is the clock callbacks are signed with (default time.Now).
	Now func() time.Time
}

// Delivery posts FIT-Connect callbacks.
type Delivery struct {
	bus         *bus.Bus
	store       Store
	source      string
	http        *http.Client
	via         func(context.Context, *url.URL) context.Context // marks a post's context for its transport
	timeout     time.Duration
	maxAttempts int
	base, max   time.Duration
	concurrency int
	log         *slog.Logger
	now         func() time.Time
	metrics     *metrics
}

// New checks cfg and registers the metrics.
func New(cfg Config) (*Delivery, error) {
	switch {
	case cfg.Bus == nil:
		return nil, errors.New("new delivery: no bus")
	case cfg.Store == nil:
		return nil, errors.New("new delivery: no store")
	case cfg.Timeout < 0 || cfg.MaxAttempts < 0 || cfg.Concurrency < 0:
		return nil, fmt.Errorf("new delivery: timeout %s, max attempts %d, concurrency %d: negative", cfg.Timeout, cfg.MaxAttempts, cfg.Concurrency)
	}
	d := &Delivery{
		bus: cfg.Bus, store: cfg.Store, source: cfg.Source, timeout: cfg.Timeout,
		maxAttempts: cfg.MaxAttempts, base: cfg.BackoffBase, max: cfg.BackoffMax,
		concurrency: cfg.Concurrency, log: cfg.Logger, now: cfg.Now,
	}
	if d.source == "" {
		d.source = "amtsbote"
	}
	if d.timeout == 0 {
		d.timeout = DefaultTimeout
	}
	if d.maxAttempts == 0 {
		d.maxAttempts = DefaultMaxAttempts
	}
	if d.base == 0 {
		d.base = DefaultBackoffBase
	}
	if d.max == 0 {
		d.max = DefaultBackoffMax
	}
	if d.base < 0 || d.max < d.base {
		return nil, fmt.Errorf("new delivery: backoff %s to %s: want 0 <= base <= max", d.base, d.max)
	}
	if d.concurrency == 0 {
		d.concurrency = DefaultConcurrency
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.now == nil {
		d.now = time.Now
	}
	transport := cfg.Transport
	d.via = func(ctx context.Context, _ *url.URL) context.Context { return ctx }
	if transport == nil {
		transport, d.via = guardedTransport(cfg.Allow)
	}
	d.http = &http.Client{
		Transport: transport,
		Timeout:   d.timeout,
		// A redirect is an answer, and not a 2xx one: following it would
		// send the signed body somewhere the receiver never registered.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("new delivery: %w", err)
	}
	d.metrics = m
	return d, nil
}

// Run consumes INBOX, EVENTS and CALLBACKS until ctx is cancelled, then
// lets running handlers finish and returns nil. It returns an error if a
// consumer cannot start or stops for another reason; the others are
// stopped then.
func (d *Delivery) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	consumers := []struct {
		cfg bus.ConsumerConfig
		h   bus.Handler
	}{
		// These two wait for the ledger and the store, however long it
		// takes: nothing is dead-lettered for it (EVENTS could not be
		// re-driven, and what cannot be handled is at once).
		{bus.ConsumerConfig{
			Stream: bus.StreamInbox, Durable: DurableSubmissions, Concurrency: 4,
			MaxDeliver: -1, BackoffBase: 250 * time.Millisecond, BackoffMax: time.Minute, Logger: d.log,
		}, d.handleInbox},
		{bus.ConsumerConfig{
			Stream: bus.StreamEvents, Durable: DurableEvents, Concurrency: 4,
			MaxDeliver: -1, BackoffMax: time.Minute, Logger: d.log,
		}, d.handleEvent},
		{bus.ConsumerConfig{
			Stream: bus.StreamCallbacks, Durable: DurableCallbacks, Concurrency: d.concurrency,
			MaxDeliver: d.maxAttempts, BackoffBase: d.base, BackoffMax: d.max, Jitter: true,
			ExhaustedReason: ReasonCallbackFailed,
			// Outlasts a post, so a slow receiver is not asked twice at once.
			AckWait: d.timeout + 30*time.Second,
			Logger:  d.log,
		}, d.handleCallback},
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, c := range consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := d.bus.Consume(ctx, c.cfg, c.h)
			if err != nil && ctx.Err() == nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			cancel()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delivery: %w", err)
	}
	return nil
}

// job is the body of a CALLBACKS message: which callback is owed, by ids.
type job struct {
	Kind          string `json:"kind"`
	DestinationID string `json:"destinationId"`
	SubmissionID  string `json:"submissionId"`
	CaseID        string `json:"caseId"`
}

// handleInbox owes a destination with a callback URL a new-submissions
// callback for the routed submission. The destination is read from the
// INBOX subject; the body is decoded only when a callback is owed.
func (d *Delivery) handleInbox(ctx context.Context, m *bus.Message) error {
	if m.Event.Type() != sealed.TypeRouted {
		return nil
	}
	addr, err := bus.ParseInboxSubject(m.Subject)
	if err != nil {
		return bus.PermanentReason(ReasonInvalid, err)
	}
	dest, err := d.store.Destination(ctx, addr.DestinationID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("new-submissions callback for %s: %w", m.Event.Subject(), err)
	}
	if dest.CallbackURL == "" {
		return nil
	}
	sub, err := sealed.Decode(m.Data)
	if err != nil {
		return bus.PermanentReason(ReasonInvalid, err)
	}
	if !strings.EqualFold(sub.DestinationID, addr.DestinationID) {
		return bus.PermanentReason(ReasonInvalid, fmt.Errorf("submission %s for destination %s on the inbox subject of %s", sub.SubmissionID, sub.DestinationID, addr.DestinationID))
	}
	// A receiver answers the callback with a fetch, which must find the
	// submission: the INBOX message can come before the API hands it out
	// (a signing backlog, a ledger down). The wait is no failure of the
	// receiver's and uses none of its attempts.
	switch err := d.pickable(ctx, sub.SubmissionID); {
	case errors.Is(err, errGone):
		return nil
	case errors.Is(err, errNotYet):
		return bus.Later(fmt.Errorf("new-submissions callback waits: %w", err))
	case err != nil:
		return fmt.Errorf("new-submissions callback for %s: %w", sub.SubmissionID, err)
	}
	return d.owe(ctx, job{KindNewSubmissions, strings.ToLower(dest.ID), sub.SubmissionID, sub.CaseID}, sub.DestinationID, sub.SubmissionID)
}

// handleEvent owes a sender with a callback URL a new-events callback for
// an event it did not cause itself.
func (d *Delivery) handleEvent(ctx context.Context, m *bus.Message) error {
	_, c, err := set.Parse(strings.TrimSpace(string(m.Data)))
	if err != nil {
		return bus.PermanentReason(ReasonInvalid, err)
	}
	uri, _, err := c.Event()
	if err != nil {
		return bus.PermanentReason(ReasonInvalid, err)
	}
	switch uri {
	case set.CreateSubmission, set.SubmitSubmission:
		// The answers to the sender's own requests.
		return nil
	}
	sid, err := c.SubmissionID()
	if err != nil {
		return bus.PermanentReason(ReasonInvalid, err)
	}
	caseID, err := c.CaseID()
	if err != nil {
		return bus.PermanentReason(ReasonInvalid, err)
	}
	sub, err := d.store.Submission(ctx, sid)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("new-events callback for %s: %w", sid, err)
	}
	if sub.CallbackURL == "" {
		return nil
	}
	return d.owe(ctx, job{KindNewEvents, strings.ToLower(sub.DestinationID), sid, caseID}, sid, c.JTI)
}

// owe publishes j to CALLBACKS under subject id, once per cause.
func (d *Delivery) owe(ctx context.Context, j job, id, cause string) error {
	subject, err := bus.CallbackSubject(j.Kind, id)
	if err != nil {
		return bus.PermanentReason(ReasonInvalid, err)
	}
	body, err := json.Marshal(j)
	if err != nil {
		return bus.PermanentReason(ReasonInvalid, err)
	}
	ev := event.New()
	ev.SetID(j.Kind + "." + cause)
	ev.SetSource(d.source)
	ev.SetType(TypeCallback)
	ev.SetSubject(j.SubmissionID)
	ev.SetTime(d.now())
	ev.SetExtension(bus.ExtensionDestinationID, j.DestinationID)
	if err := ev.SetData("application/json", body); err != nil {
		return bus.PermanentReason(ReasonInvalid, err)
	}
	if _, err := d.bus.Publish(ctx, subject, ev, ev.ID()); err != nil {
		return fmt.Errorf("owe %s callback for %s: %w", j.Kind, j.SubmissionID, err)
	}
	return nil
}

// submissionRef is FIT-Connect's SubmissionForPickup and
// SubmissionForNewEvents.
type submissionRef struct {
	DestinationID string `json:"destinationId"`
	SubmissionID  string `json:"submissionId"`
	CaseID        string `json:"caseId"`
}

// Body is a callback's body as FIT-Connect defines it: CallbackNewSubmissions
// and CallbackNewEvents, with the deprecated submissionIds older
// receivers still read.
type Body struct {
	Type          string          `json:"type"`
	SubmissionIDs []string        `json:"submissionIds"`
	Submissions   []submissionRef `json:"submissions"`
}

// handleCallback posts one owed callback. Its result decides the
// message's fate: nil when answered 2xx or owed to no one any more, an
// error to try again, and after the last attempt a dead letter.
func (d *Delivery) handleCallback(ctx context.Context, m *bus.Message) error {
	var j job
	if err := json.Unmarshal(m.Data, &j); err != nil {
		return bus.PermanentReason(ReasonInvalid, fmt.Errorf("callback message: %w", err))
	}
	if err := d.recordedJob(ctx, j); err != nil {
		return err
	}
	target, secret, err := d.target(ctx, j)
	if err != nil {
		return err
	}
	log := d.log.With("submission_id", j.SubmissionID, "destination_id", j.DestinationID, "attempt", m.Attempt)
	if target == "" {
		d.metrics.outcome(j.Kind, outcomeDropped)
		if m.Attempt > 1 {
			log.InfoContext(ctx, "delivery: callback dropped after failed attempts: no callback is configured any more", "kind", j.Kind)
		}
		return nil
	}
	if j.Kind == KindNewSubmissions {
		// Owed once the API handed it out; decided or deleted since, it
		// is no news.
		switch err := d.pickable(ctx, j.SubmissionID); {
		case errors.Is(err, errGone):
			d.metrics.outcome(j.Kind, outcomeDropped)
			if m.Attempt > 1 {
				log.InfoContext(ctx, "delivery: callback dropped after failed attempts: the submission is no longer to be picked up", "kind", j.Kind)
			}
			return nil
		case err != nil && !errors.Is(err, errNotYet):
			return err
		}
	}
	typ := TypeNewSubmissions
	if j.Kind == KindNewEvents {
		typ = TypeNewEvents
	}
	body, err := json.Marshal(Body{
		Type:          typ,
		SubmissionIDs: []string{j.SubmissionID},
		Submissions:   []submissionRef{{j.DestinationID, j.SubmissionID, j.CaseID}},
	})
	if err != nil {
		return bus.PermanentReason(ReasonInvalid, err)
	}
	if err := d.post(ctx, target, secret, body); err != nil {
		d.metrics.outcome(j.Kind, outcomeFailed)
		log.WarnContext(ctx, "delivery: callback failed", "kind", j.Kind, "err", err)
		// Warned of here; the retry is logged at debug level.
		return bus.Quiet(err)
	}
	d.metrics.outcome(j.Kind, outcomeDelivered)
	if m.Attempt > 1 {
		// The receiver is back: its failures were warned of.
		log.InfoContext(ctx, "delivery: callback delivered after failed attempts", "kind", j.Kind)
	} else {
		log.DebugContext(ctx, "delivery: callback delivered", "kind", j.Kind)
	}
	return nil
}

var (
	// errGone is a submission no receiver will pick up: deleted, decided
	// or forwarded.
	errGone = errors.New("no longer to be picked up")
	// errNotYet is a submission the API does not hand out yet.
	errNotYet = errors.New("not handed out yet")
)

// pickable reports whether the API hands submission id out (nil), will
// (errNotYet: the ledger has not yet recorded its submit-submission or its
// routing) or never will again (errGone); another error is the store's.
func (d *Delivery) pickable(ctx context.Context, id string) error {
	sub, err := d.store.Submission(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errGone
	case err != nil:
		return fmt.Errorf("read submission %s: %w", id, err)
	}
	if err := sub.Deliverable(sub.RoutedAt != nil); err != nil {
		if sub.DeletedAt == nil && (sub.Status == sealed.Incomplete || sub.Status == sealed.Submitted) {
			return fmt.Errorf("submission %s: %w: %w", id, errNotYet, err)
		}
		return errGone
	}
	return nil
}

// recordedJob refuses a job whose destination or case is not its
// submission's: a re-driven dead letter is written by whoever may write
// to DEAD, and its callback would go out signed with Amtsbote's secret. A
// submission without a record is left to target and pickable, for which
// it is owed to no one.
func (d *Delivery) recordedJob(ctx context.Context, j job) error {
	sub, err := d.store.Submission(ctx, j.SubmissionID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("callback for %s: %w", j.SubmissionID, err)
	}
	if !strings.EqualFold(sub.DestinationID, j.DestinationID) || !strings.EqualFold(sub.CaseID, j.CaseID) {
		return bus.PermanentReason(ReasonInvalid, fmt.Errorf("callback for submission %s names destination %s and case %s, not its own",
			j.SubmissionID, j.DestinationID, j.CaseID))
	}
	return nil
}

// target reads where j goes and its secret; "" when j is owed to no one
// any more (the callback was removed, the record is gone).
func (d *Delivery) target(ctx context.Context, j job) (string, string, error) {
	switch j.Kind {
	case KindNewSubmissions:
		dest, err := d.store.Destination(ctx, j.DestinationID)
		if errors.Is(err, store.ErrNotFound) {
			return "", "", nil
		}
		if err != nil {
			return "", "", fmt.Errorf("callback for %s: %w", j.SubmissionID, err)
		}
		return dest.CallbackURL, dest.CallbackSecret, nil
	case KindNewEvents:
		sub, err := d.store.Submission(ctx, j.SubmissionID)
		if errors.Is(err, store.ErrNotFound) {
			return "", "", nil
		}
		if err != nil {
			return "", "", fmt.Errorf("callback for %s: %w", j.SubmissionID, err)
		}
		return sub.CallbackURL, sub.CallbackSecret, nil
	default:
		return "", "", bus.PermanentReason(ReasonInvalid, fmt.Errorf("callback kind %q", j.Kind))
	}
}

// post sends body to target signed with secret and wants a 2xx answer.
// Its errors name the host and the answer, never the URL's path or query
// nor the secret.
func (d *Delivery) post(ctx context.Context, target, secret string, body []byte) error {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return bus.PermanentReason(ReasonInvalid, errors.New("callback url unreadable"))
	}
	ctx, cancel := context.WithTimeout(d.via(ctx, u), d.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return bus.PermanentReason(ReasonInvalid, fmt.Errorf("callback to %s: %w", u.Host, redact(err, target)))
	}
	ts, sig := client.SignCallback(secret, body, d.now())
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set(client.CallbackTimestampHeader, ts)
	req.Header.Set(client.CallbackAuthenticationHeader, sig)
	resp, err := d.http.Do(req)
	if err != nil {
		if errors.Is(err, netguard.ErrNotPublic) {
			// Asking again changes nothing until the URL does; an
			// operator re-drives the dead letter then.
			return bus.PermanentReason(ReasonNotPublic, fmt.Errorf("callback to %s: %w", u.Host, redact(err, target)))
		}
		if errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err) {
			return fmt.Errorf("callback to %s: no answer within %s", u.Host, d.timeout)
		}
		return fmt.Errorf("callback to %s: %w", u.Host, redact(err, target))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			return fmt.Errorf("callback to %s: answered %s, a redirect, which is not followed", u.Host, resp.Status)
		}
		return fmt.Errorf("callback to %s: answered %s", u.Host, resp.Status)
	}
	return nil
}

// redact keeps an error from naming the whole callback URL, whose path or
// query may carry a receiver's token.
func redact(err error, target string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return errors.New(strings.ReplaceAll(ue.Err.Error(), target, "<callback url>"))
	}
	return errors.New(strings.ReplaceAll(err.Error(), target, "<callback url>"))
}
