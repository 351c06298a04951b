// Package subscriber is the authority side of Amtsbote: it picks up the
// submissions of the destinations it serves, decrypts and checks them with
// pkg/client, delivers them into a sink (the Fachverfahren's intake) and
// only then accepts them with a SET signed by the destination's key. A
// submission that fails a check is rejected with the matching FIT-Connect
// problem and never reaches the sink.
//
// Two ways in, chosen by the configuration:
//   - NATS: one durable consumer on INBOX whose filter subjects cover the
//     destinations, a Kreis or a Land. The INBOX message only names the
//     submission; its content is fetched through the Submission API, so the
//     subscriber's NATS user needs no access to the object store or any
//     other stream. A message is acked once the submission is accepted or
//     rejected, nakked with backoff when the sink fails for now, and after
//     the consumer's last delivery written to the dead letters.
//   - HTTP: the pickup list of every destination, polled at an interval
//     and, when configured, at once on a new-submissions callback.
//
// A submission of a service that, by the configuration's forward rules,
// another destination is responsible for is not delivered: it is
// re-encrypted to that destination's key and submitted there by a sending
// client, and the original gets forward-submission naming the new one.
//
// Delivery is at least once; the sink's idempotency by submission id makes
// its effect exactly once, and a submission already decided counts as done.
package subscriber

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/client"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/metrics"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/services/subscriber/config"
	"github.com/amtsbote/amtsbote/services/subscriber/sink"
)

// Dead-letter reasons of the subscriber.
const (
	// ReasonSinkRefused: the sink refused the submission for good.
	ReasonSinkRefused = "sink-refused"
	// ReasonMalformed: the INBOX message names no submission.
	ReasonMalformed = "subscriber-malformed"
	// ReasonForwardRefused: the destination a submission is forwarded to
	// cannot take it (inactive, the service not offered, refused).
	ReasonForwardRefused = "forward-refused"
)

// Defaults of the NATS consumer the subscriber creates when it may. A
// handling longer than the ack wait is reported in progress every half of
// it, so the ack wait only bounds how long a delivery whose ack or nak
// was lost (a leader failing over) waits before it comes again.
const (
	DefaultMaxDeliver = 10
	DefaultAckWait    = 30 * time.Second
)

// DefaultHandleTimeout bounds the handling of one submission (fetch,
// checks, delivery, decision) unless the sink may take longer; a slow
// Fachverfahren behind an HTTP sink gets its Longest and fetchFor and a
// minute.
const DefaultHandleTimeout = 5 * time.Minute

// fetchFor bounds the fetch of one submission with its attachments.
const fetchFor = 2 * time.Minute

// listFor bounds one page of a pickup list, so that an API that hangs is
// logged and asked again at the next poll.
var listFor = 30 * time.Second

// Outcomes are the outcomes Handle returns, for NewHandled.
var Outcomes = []string{string(Accepted), string(Rejected), string(Forwarded), string(Decided), string(Skipped)}

// Outcome is what became of one submission.
type Outcome string

// Outcomes of Handle.
const (
	Accepted Outcome = "accepted"
	Rejected Outcome = "rejected"
	// Forwarded: handed on to the responsible destination.
	Forwarded Outcome = "forwarded"
	// Decided: someone decided the submission before; nothing was done.
	Decided Outcome = "decided"
	// Skipped: the submission belongs to a destination not served here.
	Skipped Outcome = "skipped"
)

// Config wires a Subscriber.
type Config struct {
	// Conf is the checked configuration.
	Conf *config.Config
	// Sink receives the submissions.
	Sink sink.Sink
	// API is the Submission API client of a subscribe:destination client.
	API *client.Client
	// Forwarder is the Submission API client of the sending client that
	// forwards; required when the configuration has forward rules.
	Forwarder *client.Client
	// Bus is the NATS connection; required in mode nats.
	Bus *bus.Bus
	// BackoffBase is the first wait after a transient failure (the nak
	// delay in mode nats); it doubles with each further failure, up to 5
	// minutes. Default 1s.
	BackoffBase time.Duration
	// Sinks counts deliveries into the sink; nil counts nothing.
	Sinks *metrics.Sinks
	// Handled counts the submissions handled by outcome (NewHandled);
	// nil counts nothing.
	Handled *metrics.Handled
	// Logger; nil discards.
	Logger *slog.Logger
}

// destination is a served destination's keys.
type destination struct {
	keys   client.KeyRing
	signer jose.KeyPair
}

// Subscriber delivers submissions. Create it with New, run it with Run.
type Subscriber struct {
	cfg   Config
	conf  *config.Config
	recv  *client.Receiver
	dests map[string]destination
	log   *slog.Logger

	// handleFor bounds the handling of one submission.
	handleFor time.Duration

	outage outage
	// listing is the pickup lists failing, mode http.
	listing listing
	// wake asks for a poll at once, mode http.
	wake chan struct{}

	mu       sync.Mutex
	inFlight map[string]bool      // submission ids being handled, mode http
	done     map[string]time.Time // decided here lately, or refused by the sink, mode http
	retry    map[string]retry     // failed for now, mode http
}

// listing is the pickup lists failing to answer (the Submission API down,
// a destination's scope taken away): reported when it begins, every
// outageReport while it lasts and when every list answers again, rather
// than in a line per destination and poll.
type listing struct {
	mu       sync.Mutex
	since    time.Time // zero while every list answers
	told     time.Time
	failures int
}

// listFailed notes destination destID's pickup list failing with err.
func (s *Subscriber) listFailed(destID string, err error) {
	l := &s.listing
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.failures++
	switch {
	case l.since.IsZero():
		l.since, l.told = now, now
		s.log.Warn("subscriber: a pickup list fails; it is asked again at the next poll", "destination_id", destID, "err", err)
	case now.Sub(l.told) >= outageReport:
		l.told = now
		s.log.Warn("subscriber: pickup lists still fail", "destination_id", destID, "duration", now.Sub(l.since),
			"failures", l.failures, "err", err)
	}
}

// listsWork ends a failure of the pickup lists, if there was one: every
// list answered in a poll.
func (s *Subscriber) listsWork() {
	l := &s.listing
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.since.IsZero() {
		return
	}
	s.log.Info("subscriber: the pickup lists answer again", "duration", time.Since(l.since), "failures", l.failures)
	l.since, l.failures = time.Time{}, 0
}

// retry is when a submission that failed for now is handled again.
type retry struct {
	failures int
	at       time.Time
	// sink says the sink failed it: it is handed in again as soon as the
	// sink takes another submission, once (released), so that one that
	// fails for a reason of its own keeps its backoff.
	sink, released bool
}

// outage is a sink failing for now (outageAfter submissions in a row),
// reported once when it begins, every outageReport while it lasts and when
// it ends, rather than in a line per submission and attempt; the
// deliveries it meets wait for it (waitSink in mode nats, mayTrySink in
// mode http).
type outage struct {
	mu       sync.Mutex
	since    time.Time // zero while the sink delivers
	told     time.Time
	failures int // since the sink last took a delivery
	// failing are the submissions it failed since, until an outage begins.
	failing map[string]bool
	// hold is closed when the deliveries held for the sink may try it
	// again; nil when none are held. probe lets one of them try a sink
	// without a readiness check.
	hold  chan struct{}
	probe chan struct{}
	// probing is when the last probe was let go; zero once it failed.
	probing time.Time
	// last is the sink's last failure.
	last error
}

// outageReport is how often a lasting sink outage is reported again.
const outageReport = time.Minute

// In mode nats a message that finds the sink failing waits in hand,
// reported in progress, for up to sinkHoldFor, instead of going back at
// once with the consumer's backoff: each of its deliveries then lasts that
// long, so that its ten wait out hours of outage rather than minutes, and
// nothing is fetched and decrypted for a sink that cannot take it. Every
// probeEvery a probe lets them go: the sink's readiness check passing
// (directory, PostgreSQL), or for a sink without one a single delivery.
// In mode http the submissions wait on the pickup list instead (see
// mayTrySink).
const (
	sinkHoldFor = 25 * time.Minute
	probeEvery  = 5 * time.Second
)

// errHeld ends a hold that lasted sinkHoldFor.
var errHeld = errors.New("held for " + sinkHoldFor.String())

// held returns the channels a delivery waits on while the sink fails, or
// nil when it need not wait.
func (o *outage) held() (hold, probe chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hold, o.probe
}

// unproven reports an outage that no delivery failed: its sink's check
// alone began it.
func (o *outage) unproven() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return !o.since.IsZero() && o.failures == 0
}

// release lets every held delivery try the sink again.
func (o *outage) release() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.probing = time.Time{}
	if o.hold != nil {
		close(o.hold)
		o.hold = nil
	}
}

// offer lets one held delivery try the sink, unless the one let go before
// is still trying it and began less than stale ago: a sink that retries
// within a delivery takes a while to fail it.
func (o *outage) offer(stale time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.hold == nil || !o.probing.IsZero() && time.Since(o.probing) < stale {
		return
	}
	select {
	case o.probe <- struct{}{}:
		o.probing = time.Now()
	default:
	}
}

// doneFor is how long a submission decided here is not picked up again
// while the pickup list may still show it.
const doneFor = 10 * time.Minute

// New checks cfg and returns a Subscriber.
func New(cfg Config) (*Subscriber, error) {
	switch {
	case cfg.Conf == nil:
		return nil, errors.New("new subscriber: no configuration")
	case cfg.Sink == nil:
		return nil, errors.New("new subscriber: no sink")
	case cfg.API == nil:
		return nil, errors.New("new subscriber: no API client")
	case cfg.Conf.Mode == config.ModeNATS && cfg.Bus == nil:
		return nil, errors.New("new subscriber: mode nats without a NATS connection")
	case cfg.Conf.Forward != nil && cfg.Forwarder == nil:
		return nil, errors.New("new subscriber: forward rules without a forwarding client")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = time.Second
	}
	s := &Subscriber{
		cfg: cfg, conf: cfg.Conf, recv: cfg.API.Receiver(), log: cfg.Logger, handleFor: DefaultHandleTimeout,
		dests: make(map[string]destination), inFlight: make(map[string]bool), done: make(map[string]time.Time),
		retry: make(map[string]retry), outage: outage{probe: make(chan struct{}, 1)}, wake: make(chan struct{}, 1),
	}
	if b, ok := cfg.Sink.(sink.Bounded); ok {
		s.handleFor = max(s.handleFor, fetchFor+b.Longest()+time.Minute)
	}
	for _, d := range cfg.Conf.Destinations {
		ring, err := client.NewKeyRing(d.EncryptionKeys...)
		if err != nil {
			return nil, fmt.Errorf("new subscriber: destination %s: %w", d.ID, err)
		}
		s.dests[strings.ToLower(d.ID)] = destination{keys: ring, signer: d.SigningKey}
	}
	return s, nil
}

// published reports whether destination id publishes the encryption key
// kid; when the API cannot tell, it reports false.
func (s *Subscriber) published(ctx context.Context, id, kid string) bool {
	_, err := s.cfg.API.Sender().FetchEncryptionKey(ctx, id, kid)
	return err == nil
}

// startCheckFor is how long Check asks again an API that does not answer.
const startCheckFor = time.Minute

// Check compares the configuration with what the Submission API
// publishes, before anything is picked up: the client's credentials and,
// for each destination, its encryption key (encryptionKid) and signing
// key. A wrong key would reject valid submissions or fail every accept
// after the delivery. An API that does not answer, or answers 429 or 5xx,
// is asked again for up to startCheckFor; a refusal or a mismatch is
// returned at once.
func (s *Subscriber) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startCheckFor)
	defer cancel()
	for _, dc := range s.conf.Destinations {
		id := strings.ToLower(dc.ID)
		d := s.dests[id]
		for wait := time.Second; ; wait = min(2*wait, 10*time.Second) {
			err := s.recv.CheckKeys(ctx, id, d.keys, d.signer)
			if err == nil {
				break
			}
			if !retryable(err) || ctx.Err() != nil {
				return fmt.Errorf("check destination %s: %w", id, err)
			}
			s.log.Warn("subscriber: Submission API not ready; asking again", "destination_id", id, "err", err, "retry_in", wait)
			select {
			case <-ctx.Done():
				return fmt.Errorf("check destination %s: %w", id, err)
			case <-time.After(wait):
			}
		}
	}
	return nil
}

// Ready reports whether the Submission API serves this subscriber: its
// client gets a token and may list the first destination's pickup list.
// It is the subscriber's readiness beside NATS, so that an API that is
// down or a client disabled or given a new secret shows in /readyz.
func (s *Subscriber) Ready(ctx context.Context) error {
	if _, err := s.recv.ListSubmissions(ctx, strings.ToLower(s.conf.Destinations[0].ID), 1, 0); err != nil {
		return fmt.Errorf("Submission API: %w", err)
	}
	return nil
}

// retryable reports whether err may pass: not a refusal of the client,
// a key mismatch or another 4xx answer but 408 and 429.
func retryable(err error) bool {
	passing := func(status int) bool {
		return status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout
	}
	if errors.Is(err, client.ErrKeyMismatch) {
		return false
	}
	if errors.Is(err, client.ErrToken) {
		status, ok := client.TokenStatus(err)
		return ok && passing(status)
	}
	if p, ok := problem.As(err); ok {
		return passing(p.Status)
	}
	return true
}

// Run picks up submissions until ctx is cancelled, then lets the ones in
// hand finish and returns nil. It returns an error when pickup cannot
// start or ends for another reason.
func (s *Subscriber) Run(ctx context.Context) error {
	// A sink that fails its check at start holds the deliveries from the
	// first, as it would once running.
	if checker, ok := s.cfg.Sink.(sink.Checker); ok {
		s.checkSink(ctx, checker)
	}
	switch s.conf.Mode {
	case config.ModeNATS:
		return s.runNATS(ctx)
	case config.ModeHTTP:
		return s.runHTTP(ctx)
	}
	return fmt.Errorf("subscriber: unknown mode %q", s.conf.Mode)
}

// Handle picks up one submission of the pickup list or the inbox: fetch,
// check, deliver, accept; or reject when a check fails. It returns the
// outcome, or an error: a *bus.PermanentError when retrying cannot help
// (the sink refuses the submission), any other error when it may.
func (s *Subscriber) Handle(ctx context.Context, p client.Pickup) (outcome Outcome, err error) {
	return s.handle(ctx, p, false)
}

// handle is Handle; last says a failure is not retried (the message's
// last delivery), which counts it as failed for good.
func (s *Subscriber) handle(ctx context.Context, p client.Pickup, last bool) (outcome Outcome, err error) {
	if s.cfg.Handled != nil {
		defer func() {
			var perm *bus.PermanentError
			switch {
			case errors.As(err, &perm), err != nil && last:
				s.cfg.Handled.Count(metrics.HandledFailed)
			case err != nil:
				s.cfg.Handled.Count(metrics.HandledRetry)
			case outcome != "":
				s.cfg.Handled.Count(string(outcome))
			}
		}()
	}
	destID := strings.ToLower(p.DestinationID)
	d, ok := s.dests[destID]
	if !ok {
		return Skipped, nil
	}
	log := s.log.With("submission_id", p.SubmissionID, "case_id", p.CaseID, "destination_id", destID)

	// The fetch has its own, shorter bound: one that hangs on an API
	// under a failover is better cut and tried again than waited for
	// through the time a slow sink is given.
	fctx, cancel := context.WithTimeout(ctx, fetchFor)
	rec, err := s.fetch(fctx, p, d.keys)
	cancel()
	var (
		check   *client.CheckError
		unknown *client.UnknownKeyError
	)
	switch {
	case errors.As(err, &unknown) && s.published(ctx, destID, unknown.KID):
		// Encrypted to a key the destination publishes: the configuration
		// lacks its private key, which is this side's fault, not the
		// sender's.
		log.ErrorContext(ctx, "subscriber: the destination's key is not configured", "kid", unknown.KID)
		return "", fmt.Errorf("fetch: encrypted to key %q of destination %s, whose private key is not configured: %w", unknown.KID, destID, err)
	case errors.As(err, &check):
		prob := check.Problem()
		if err := s.recv.Reject(ctx, rec, d.signer, prob); err != nil {
			if decided, derr := s.decided(ctx, p, set.RejectSubmission); derr == nil && decided != "" {
				return Decided, nil
			}
			return "", fmt.Errorf("reject: %w", err)
		}
		log.InfoContext(ctx, "subscriber: rejected", "problem", prob.Type, "instance", prob.Instance, "err", check)
		return Rejected, nil
	case isNotFound(err):
		// Answered already (the API no longer hands it out), or still not
		// listed after notYetFor: the case's events say which.
		decided, derr := s.decided(ctx, p, "")
		if derr != nil {
			return "", fmt.Errorf("fetch: %w; event log: %w", err, derr)
		}
		if decided != "" {
			log.DebugContext(ctx, "subscriber: decided before", "event", decided)
			return Decided, nil
		}
		return "", fmt.Errorf("fetch: %w", err)
	case err != nil:
		return "", fmt.Errorf("fetch: %w", err)
	}
	defer rec.Close()

	if to, ok := s.conf.Forward.Target(destID, rec.ServiceType.Identifier); ok {
		return s.forward(ctx, log, p, rec, d, to)
	}
	// A forwarded submission is still handed out: one forwarded before
	// (by this subscriber, whose ack was lost, or another) goes into no
	// sink here.
	if rec.Forwarded() {
		log.DebugContext(ctx, "subscriber: forwarded before")
		return Decided, nil
	}

	began := time.Now()
	err = s.cfg.Sink.Deliver(ctx, delivery(rec))
	s.observe(err, time.Since(began))
	if err != nil {
		if errors.Is(err, sink.ErrPermanent) {
			// The sink answered: it works, and refuses this one.
			s.sinkWorks(ctx)
			return "", bus.PermanentReason(ReasonSinkRefused, fmt.Errorf("deliver into %s sink: %w", s.cfg.Sink.Kind(), err))
		}
		err = fmt.Errorf("deliver into %s sink: %w", s.cfg.Sink.Kind(), err)
		if sink.IsSource(err) || ctx.Err() != nil {
			// The API's download failed, or the subscriber stops: the
			// sink is not at fault.
			return "", err
		}
		s.sinkFailed(ctx, log, p.SubmissionID, err)
		return "", bus.Quiet(err)
	}
	s.sinkWorks(ctx)
	if err := s.recv.Accept(ctx, rec, d.signer); err != nil {
		// A crash between the accept and its ack leaves a redelivery
		// whose accept the API refuses: the first one stands.
		if decided, derr := s.decided(ctx, p, set.AcceptSubmission); derr == nil && decided != "" {
			return Decided, nil
		}
		return "", fmt.Errorf("delivered, not accepted: %w", err)
	}
	if rec.DecidedBefore() {
		// Another subscriber of the destination accepted it first.
		log.InfoContext(ctx, "subscriber: accepted before", "sink", s.cfg.Sink.Kind())
		return Decided, nil
	}
	log.InfoContext(ctx, "subscriber: accepted", "sink", s.cfg.Sink.Kind())
	return Accepted, nil
}

// forward submits the verified submission rec anew to the destination to,
// re-encrypted to its key by the Sender, and posts forward-submission on
// the original. The new submission's Idempotency-Key and attachment ids
// derive from the original's, so that a repeat after a crash finds it
// again rather than making a second one.
func (s *Subscriber) forward(ctx context.Context, log *slog.Logger, p client.Pickup, rec *client.Received, d destination, to string) (Outcome, error) {
	if decided, err := s.decided(ctx, p, ""); err != nil {
		return "", fmt.Errorf("forward: event log: %w", err)
	} else if decided != "" {
		return Decided, nil
	}
	sub, files, err := forwarded(rec, to)
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if err != nil {
		return "", err
	}
	receipt, err := s.cfg.Forwarder.Sender().Submit(ctx, sub)
	switch {
	case errors.Is(err, client.ErrAlreadySubmitted):
		log.InfoContext(ctx, "subscriber: forwarded before", "to_submission_id", receipt.SubmissionID)
	case errors.Is(err, client.ErrDestination), errors.Is(err, client.ErrInvalidSubmission), refused(err):
		return "", bus.PermanentReason(ReasonForwardRefused, fmt.Errorf("forward to %s: %w", to, err))
	case err != nil:
		return "", fmt.Errorf("forward to %s: %w", to, err)
	}
	if err := s.recv.Forward(ctx, rec, d.signer, receipt); err != nil {
		if decided, derr := s.decided(ctx, p, set.ForwardSubmission); derr == nil && decided != "" {
			return Decided, nil
		}
		return "", fmt.Errorf("submitted to %s as %s, not marked forwarded: %w", to, receipt.SubmissionID, err)
	}
	log.InfoContext(ctx, "subscriber: forwarded", "to_destination_id", to, "to_submission_id", receipt.SubmissionID)
	return Forwarded, nil
}

// forwardNamespace derives the forwarded submission's attachment ids.
var forwardNamespace = uuid.MustParse("3c5e3f0a-6d0b-4a57-9a0e-2a7c1d9b8e41")

// forwarded is the submission rec becomes at destination to: the same
// service, data, attachments and further metadata members. The caller
// closes the attachment files it returns.
func forwarded(rec *client.Received, to string) (client.Submission, []*os.File, error) {
	sub := client.Submission{
		DestinationID:  to,
		ServiceType:    rec.ServiceType,
		Data:           rec.Data,
		IdempotencyKey: "forward-" + rec.SubmissionID,
	}
	if rec.Data != nil {
		sub.DataMimeType = rec.DataMimeType
		if ds := rec.Metadata.ContentStructure.Data; ds != nil {
			sub.DataSchemaURI = ds.SubmissionSchema.SchemaURI
		}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(rec.Metadata.Raw, &top); err != nil {
		return sub, nil, bus.PermanentReason(ReasonForwardRefused, fmt.Errorf("forward: metadata: %w", err))
	}
	for k, v := range top {
		if k == "$schema" || k == "contentStructure" || k == "publicServiceType" {
			continue
		}
		if sub.ExtraMetadata == nil {
			sub.ExtraMetadata = map[string]any{}
		}
		sub.ExtraMetadata[k] = v
	}
	var files []*os.File
	for _, a := range rec.Attachments {
		f, err := a.Open()
		if err != nil {
			return sub, files, fmt.Errorf("forward: %w", err)
		}
		files = append(files, f)
		sub.Attachments = append(sub.Attachments, client.Attachment{
			ID:       uuid.NewSHA1(forwardNamespace, []byte(rec.SubmissionID+"/"+a.ID)).String(),
			Filename: a.Filename, Description: a.Description, MimeType: a.MimeType, Purpose: a.Purpose,
			Content: f,
		})
	}
	return sub, files, nil
}

// refused reports a 4xx answer that repeating cannot change: not a
// conflict or a wrong state (the state may move on), a timeout or a rate
// limit.
func refused(err error) bool {
	p, ok := problem.As(err)
	if !ok || p.Type == problem.TypeSubmissionState {
		return false
	}
	switch p.Status {
	case http.StatusConflict, http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusUnauthorized:
		return false
	}
	return p.Status >= 400 && p.Status < 500
}

// While the API does not list a submission yet, its fetch is asked again
// after waits doubling from notYetFirst up to notYetMax, notYetFor in all
// (within fetchFor): a ledger behind or down for a while makes every
// routed submission wait, and each delivery given back for it brings
// the consumer's last one, and the dead letter, closer.
const (
	notYetFirst = 20 * time.Millisecond
	notYetMax   = 5 * time.Second
	notYetFor   = 90 * time.Second
)

// fetch fetches p's submission. Its INBOX message may arrive before the
// API lists it: the submit-submission event is signed off the submit's
// path and projected from EVENTS, as is the routing, usually within
// milliseconds. A 404 of a submission not decided yet is therefore asked
// again after short waits before the consumer's backoff (a second at
// least) takes over.
func (s *Subscriber) fetch(ctx context.Context, p client.Pickup, keys client.KeyRing) (*client.Received, error) {
	rec, err := s.recv.Fetch(ctx, p.SubmissionID, keys)
	if !isNotFound(err) {
		return rec, err
	}
	// A case whose events are not recorded yet has no event log (404).
	if decided, _ := s.decided(ctx, p, ""); decided != "" {
		return rec, err
	}
	wait, waited := notYetFirst, time.Duration(0)
	for isNotFound(err) && waited < notYetFor {
		select {
		case <-ctx.Done():
			return rec, err
		case <-bus.Stopping(ctx):
			// Given back, the message goes to a subscriber that runs on.
			return rec, err
		case <-time.After(wait):
		}
		waited += wait
		wait = min(2*wait, notYetMax)
		rec, err = s.recv.Fetch(ctx, p.SubmissionID, keys)
	}
	return rec, err
}

// decided returns the type of the receiver's decision on the submission in
// its case's event log, "" when there is none yet. With want set it counts
// only that decision.
func (s *Subscriber) decided(ctx context.Context, p client.Pickup, want string) (string, error) {
	events, err := s.recv.EventLog(ctx, p.CaseID)
	if err != nil {
		return "", err
	}
	for _, ev := range events {
		if !strings.EqualFold(ev.SubmissionID, p.SubmissionID) {
			continue
		}
		switch ev.Type {
		case set.AcceptSubmission, set.RejectSubmission, set.ForwardSubmission:
			if want == "" || ev.Type == want {
				return ev.Type, nil
			}
		}
	}
	return "", nil
}

func isNotFound(err error) bool {
	p, ok := problem.As(err)
	return ok && p.Status == http.StatusNotFound
}

// delivery turns a verified submission into what the sink stores.
func delivery(rec *client.Received) sink.Delivery {
	d := sink.Delivery{
		SubmissionID:      rec.SubmissionID,
		CaseID:            rec.CaseID,
		DestinationID:     rec.DestinationID,
		ServiceIdentifier: rec.ServiceType.Identifier,
		Metadata:          rec.Metadata.Raw,
		Data:              rec.Data,
	}
	if rec.Data != nil {
		d.DataMimeType = rec.DataMimeType
	}
	for _, a := range rec.Attachments {
		d.Attachments = append(d.Attachments, sink.Attachment{
			ID: a.ID, Filename: a.Filename, MimeType: a.MimeType, Size: a.Size,
			Open: func() (io.ReadCloser, error) { return a.Open() },
		})
	}
	return d
}

// runNATS consumes the INBOX durable until ctx ends.
func (s *Subscriber) runNATS(ctx context.Context) error {
	n := s.conf.NATS
	cc := bus.ConsumerConfig{
		Stream:         bus.StreamInbox,
		Durable:        n.Durable,
		FilterSubjects: n.Filters,
		// An operator's durable is used as it is: a subscriber's NATS
		// user may consume it but neither create nor change one.
		Bind: true,
		// Nor may it write the state bucket, where other consumers keep
		// their attempts.
		LocalHistory:  true,
		AckWait:       DefaultAckWait,
		HandleTimeout: sinkHoldFor + s.handleFor,
		MaxDeliver:    DefaultMaxDeliver,
		MaxAckPending: 4 * s.conf.Concurrency,
		Concurrency:   s.conf.Concurrency,
		BackoffBase:   s.cfg.BackoffBase,
		BackoffMax:    maxRetryWait,
		Logger:        s.log,
	}
	pctx, stopProbe := context.WithCancel(ctx)
	defer stopProbe()
	go s.probeSink(pctx, nil)
	err := s.cfg.Bus.Consume(ctx, cc, s.handleMessage)
	if errors.Is(err, jetstream.ErrConsumerNotFound) && ctx.Err() == nil {
		s.log.Info("subscriber: creating the durable consumer", "consumer", n.Durable, "filters", n.Filters)
		cc.Bind = false
		err = s.cfg.Bus.Consume(ctx, cc, s.handleMessage)
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			// A user who may only consume its durable gets no answer to a
			// create.
			err = fmt.Errorf("the durable %q does not exist on INBOX, and this NATS user may not create it: "+
				"the operator creates it with its filters (deploy/nats/accounts.conf shows how): %w", n.Durable, err)
		}
	}
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("subscriber: %w", err)
	}
	return nil
}

// handleMessage handles one INBOX message; its result decides the
// message's fate (see bus.Handler).
func (s *Subscriber) handleMessage(ctx context.Context, m *bus.Message) error {
	addr, err := bus.ParseInboxSubject(m.Subject)
	if err != nil {
		return bus.PermanentReason(ReasonMalformed, err)
	}
	if m.Event.Type() != sealed.TypeRouted {
		return bus.PermanentReason(ReasonMalformed, fmt.Errorf("cloudevent type %q, want %s", m.Event.Type(), sealed.TypeRouted))
	}
	sub, err := sealed.Decode(m.Data)
	if err != nil {
		return bus.PermanentReason(ReasonMalformed, err)
	}
	if !strings.EqualFold(sub.DestinationID, addr.DestinationID) {
		return bus.PermanentReason(ReasonMalformed, fmt.Errorf("subject names destination %s, the message %s", addr.DestinationID, sub.DestinationID))
	}
	if err := s.waitSink(ctx); err != nil {
		if m.Last && s.cfg.Handled != nil {
			s.cfg.Handled.Count(metrics.HandledFailed)
		}
		return bus.Quiet(fmt.Errorf("the %s sink still fails: %w", s.cfg.Sink.Kind(), err))
	}
	hctx, cancel := context.WithTimeout(ctx, s.handleFor)
	defer cancel()
	hctx = withAttempt(hctx, attempt{n: m.Attempt, retryIn: s.retryWait(m.Attempt), last: m.Last})
	_, err = s.handle(hctx, client.Pickup{DestinationID: addr.DestinationID, SubmissionID: sub.SubmissionID, CaseID: sub.CaseID}, m.Last)
	return err
}

// runHTTP polls the pickup lists until ctx ends; a wake-up (a callback,
// the sink back) polls at once.
func (s *Subscriber) runHTTP(ctx context.Context) error {
	var srv *http.Server
	if h := s.conf.HTTP; h.CallbackListen != "" {
		var err error
		if srv, err = s.callbackServer(h); err != nil {
			return err
		}
		defer func() {
			shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(shut)
		}()
	}
	// Submissions in hand go on when pickup stops, for a while: one cut
	// short is not decided and waits on the pickup list. (Deferred before
	// wg.Wait, so that they end after it.)
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()
	stopGrace := context.AfterFunc(ctx, func() { time.AfterFunc(bus.ShutdownGrace, hcancel) })
	defer stopGrace()
	slots := make(chan struct{}, s.conf.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	// The sink's readiness passing lets the submissions waiting for it be
	// polled at once.
	pctx, stopProbe := context.WithCancel(ctx)
	defer stopProbe()
	go s.probeSink(pctx, s.poke)
	t := time.NewTicker(s.conf.HTTP.PollInterval)
	defer t.Stop()
	for {
		s.poll(ctx, hctx, slots, &wg)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.wake:
		}
	}
}

// pollPage is the page size of the pickup list.
const pollPage = 100

// poll lists every destination's pickup list and starts a handler for
// each submission not in hand, at most Concurrency at a time, with
// handling's context hctx.
func (s *Subscriber) poll(ctx, hctx context.Context, slots chan struct{}, wg *sync.WaitGroup) {
	s.mu.Lock()
	for id, at := range s.done {
		if time.Since(at) >= doneFor {
			delete(s.done, id)
		}
	}
	for id, r := range s.retry {
		// Decided elsewhere meanwhile, or gone from the list.
		if time.Since(r.at) >= doneFor {
			delete(s.retry, id)
		}
	}
	s.mu.Unlock()
	listed := true
	for _, d := range s.conf.Destinations {
		for offset := 0; ctx.Err() == nil; {
			lctx, cancel := context.WithTimeout(ctx, listFor)
			page, err := s.recv.ListSubmissions(lctx, d.ID, pollPage, offset)
			cancel()
			if s.cfg.Handled != nil && ctx.Err() == nil {
				s.cfg.Handled.Listed(err == nil)
			}
			if err != nil {
				if ctx.Err() == nil {
					s.listFailed(d.ID, err)
				}
				listed = false
				break
			}
			for _, p := range page.Submissions {
				if !s.claim(p.SubmissionID) {
					continue
				}
				if !s.mayTrySink() {
					s.release(p.SubmissionID)
					continue
				}
				select {
				case slots <- struct{}{}:
				case <-ctx.Done():
					s.release(p.SubmissionID)
					return
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-slots; s.release(p.SubmissionID) }()
					s.handleLogged(hctx, p)
				}()
			}
			offset += len(page.Submissions)
			if len(page.Submissions) == 0 || offset >= page.TotalCount {
				break
			}
		}
	}
	if listed && ctx.Err() == nil {
		s.listsWork()
	}
}

// handleLogged handles p in mode http, where a failure is tried again at
// the next poll: the submission stays on the pickup list until decided.
func (s *Subscriber) handleLogged(ctx context.Context, p client.Pickup) {
	ctx, cancel := context.WithTimeout(ctx, s.handleFor)
	defer cancel()
	s.mu.Lock()
	n := s.retry[p.SubmissionID].failures + 1
	s.mu.Unlock()
	ctx = withAttempt(ctx, attempt{n: n, retryIn: s.retryWait(n)})
	outcome, err := s.Handle(ctx, p)
	if err != nil {
		var perm *bus.PermanentError
		if errors.As(err, &perm) {
			// Refused for good: asked again after doneFor, not at every
			// poll; meanwhile it waits on the pickup list for an operator.
			s.log.Error("subscriber: refused; trying again in "+doneFor.String(), "submission_id", p.SubmissionID,
				"destination_id", p.DestinationID, "reason", perm.Reason, "err", err)
			s.mu.Lock()
			s.done[p.SubmissionID] = time.Now()
			delete(s.retry, p.SubmissionID)
			s.mu.Unlock()
			return
		}
		// Not at every poll: a Fachverfahren that fails for now is given
		// time, as mode nats gives it with its backoff.
		s.mu.Lock()
		r := s.retry[p.SubmissionID]
		r.failures++
		wait := s.retryWait(r.failures)
		r.at = time.Now().Add(wait)
		r.sink = bus.IsQuiet(err)
		s.retry[p.SubmissionID] = r
		s.mu.Unlock()
		level := slog.LevelWarn
		if bus.IsQuiet(err) {
			level = slog.LevelDebug // the sink's outage is reported once for all
		}
		s.log.Log(ctx, level, "subscriber: not done; trying again", "submission_id", p.SubmissionID,
			"destination_id", p.DestinationID, "err", err, "retry_in", wait, "failures", r.failures)
		return
	}
	s.mu.Lock()
	s.done[p.SubmissionID] = time.Now()
	delete(s.retry, p.SubmissionID)
	released := false
	if outcome == Accepted {
		// The sink is back: what it failed waits no longer.
		for id, r := range s.retry {
			if r.sink && !r.released {
				r.at, r.released = time.Now(), true
				s.retry[id] = r
				released = true
			}
		}
	}
	s.mu.Unlock()
	if released {
		s.poke()
	}
}

// poke asks runHTTP for a poll at once.
func (s *Subscriber) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// maxRetryWait bounds the wait before a submission that failed for now is
// handled again.
const maxRetryWait = 5 * time.Minute

// retryWait is the wait after a submission's nth failed attempt, as the
// INBOX consumer's backoff waits in mode nats.
func (s *Subscriber) retryWait(n int) time.Duration {
	return min(s.cfg.BackoffBase<<min(max(n, 1)-1, 20), maxRetryWait)
}

// attempt is the attempt at a submission under way, for its log lines.
type attempt struct {
	n       int
	retryIn time.Duration // the wait should it fail
	last    bool          // no other follows (mode nats)
}

type attemptKey struct{}

func withAttempt(ctx context.Context, a attempt) context.Context {
	return context.WithValue(ctx, attemptKey{}, a)
}

func (s *Subscriber) claim(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if at, ok := s.done[id]; ok {
		if time.Since(at) < doneFor {
			return false
		}
		delete(s.done, id)
	}
	if r, ok := s.retry[id]; ok && time.Now().Before(r.at) {
		return false
	}
	if s.inFlight[id] {
		return false
	}
	s.inFlight[id] = true
	return true
}

func (s *Subscriber) release(id string) {
	s.mu.Lock()
	delete(s.inFlight, id)
	s.mu.Unlock()
}

// callbackServer listens for new-submissions callbacks and wakes the poll
// on each verified one; the poll reads what arrived from the pickup lists,
// so the callback's body needs no trust beyond its signature.
func (s *Subscriber) callbackServer(h config.HTTP) (*http.Server, error) {
	handler, err := client.CallbackHandler(h.CallbackSecret.Reveal(), func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		s.poke()
		w.WriteHeader(http.StatusOK)
	})
	if err != nil {
		return nil, fmt.Errorf("subscriber: %w", err)
	}
	ln, err := net.Listen("tcp", h.CallbackListen)
	if err != nil {
		return nil, fmt.Errorf("subscriber: listen for callbacks: %w", err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("subscriber: callback listener stopped", "err", err)
		}
	}()
	s.log.Info("subscriber: listening for callbacks", "addr", ln.Addr().String())
	return srv, nil
}

// outageAfter is how many different submissions the sink must fail in a
// row for an outage: one it keeps failing, alone or among others it
// takes, holds no one back.
const outageAfter = 3

// sinkFailed notes a delivery of submission id the sink failed for now: a
// failure short of an outage is logged with its submission, the beginning
// of an outage too, then one summary a minute.
func (s *Subscriber) sinkFailed(ctx context.Context, log *slog.Logger, id string, err error) {
	o := &s.outage
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	o.failures++
	o.last, o.probing = err, time.Time{}
	if o.since.IsZero() {
		if o.failing == nil {
			o.failing = make(map[string]bool)
		}
		o.failing[id] = true
		if len(o.failing) < outageAfter {
			msg, args := "subscriber: the sink failed a submission; it is tried again", []any{"sink", s.cfg.Sink.Kind()}
			if a, ok := ctx.Value(attemptKey{}).(attempt); ok {
				args = append(args, "attempt", a.n)
				if a.last {
					msg = "subscriber: the sink failed a submission's last delivery"
				} else {
					args = append(args, "retry_in", a.retryIn)
				}
			}
			log.WarnContext(ctx, msg, append(args, "failures_in_a_row", o.failures, "err", err)...)
			return
		}
		o.since, o.told, o.failing = now, now, nil
		o.hold = make(chan struct{})
		log.WarnContext(ctx, "subscriber: the sink fails; submissions wait for it", "sink", s.cfg.Sink.Kind(),
			"failures_in_a_row", o.failures, "err", err)
		return
	}
	if o.hold == nil {
		// A probe let them go, and the sink failed again.
		o.hold = make(chan struct{})
	}
	s.remindLocked(ctx, now, err)
}

// checkSink runs the sink's readiness check: a sink that fails it fails
// deliveries too, so they wait from now, not from the third it fails.
func (s *Subscriber) checkSink(ctx context.Context, checker sink.Checker) {
	cctx, cancel := context.WithTimeout(ctx, probeEvery)
	defer cancel()
	if err := checker.Check(cctx); err != nil && ctx.Err() == nil {
		s.checkFailed(ctx, err)
	}
}

// checkFailed holds the deliveries for a sink that failed its readiness
// check with err: an outage begins, if none has.
func (s *Subscriber) checkFailed(ctx context.Context, err error) {
	o := &s.outage
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.hold != nil {
		return
	}
	o.hold, o.last = make(chan struct{}), err
	now := time.Now()
	if o.since.IsZero() {
		o.since, o.told, o.failing = now, now, nil
		s.log.WarnContext(ctx, "subscriber: the sink fails; submissions wait for it", "sink", s.cfg.Sink.Kind(),
			"failures_in_a_row", o.failures, "err", err)
		return
	}
	s.remindLocked(ctx, now, err)
}

// remind reports a lasting outage again, at most once per outageReport.
func (s *Subscriber) remind(ctx context.Context, err error) {
	s.outage.mu.Lock()
	defer s.outage.mu.Unlock()
	if !s.outage.since.IsZero() {
		s.remindLocked(ctx, time.Now(), err)
	}
}

func (s *Subscriber) remindLocked(ctx context.Context, now time.Time, err error) {
	o := &s.outage
	if now.Sub(o.told) < outageReport {
		return
	}
	o.told = now
	s.log.WarnContext(ctx, "subscriber: the sink still fails", "sink", s.cfg.Sink.Kind(),
		"duration", now.Sub(o.since), "failures", o.failures, "err", err)
}

// sinkWorks ends an outage of the sink, if there was one.
func (s *Subscriber) sinkWorks(ctx context.Context) {
	o := &s.outage
	o.mu.Lock()
	defer o.mu.Unlock()
	o.probing = time.Time{}
	if o.since.IsZero() {
		o.failures, o.failing = 0, nil
		return
	}
	s.log.InfoContext(ctx, "subscriber: the sink works again", "sink", s.cfg.Sink.Kind(),
		"duration", time.Since(o.since), "failures", o.failures)
	o.since, o.failures = time.Time{}, 0
	if o.hold != nil {
		close(o.hold)
		o.hold = nil
	}
}

// SinkReady reports the sink failing while its outage lasts: the
// readiness of a sink without a check of its own (an HTTP Fachverfahren).
func (s *Subscriber) SinkReady(context.Context) error {
	o := &s.outage
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.since.IsZero() {
		return nil
	}
	return fmt.Errorf("failing for %s, %d deliveries in a row: %w", time.Since(o.since).Round(time.Second), o.failures, o.last)
}

// mayTrySink reports whether a submission of the pickup list may be
// handled now: while the sink fails, they wait on the list, unfetched,
// except one a probe lets try a sink without a readiness check.
func (s *Subscriber) mayTrySink() bool {
	hold, probe := s.outage.held()
	if hold == nil {
		return true
	}
	select {
	case <-probe:
		return true
	default:
		return false
	}
}

// probeSink lets the deliveries held for a failing sink go once its
// readiness check passes, then calls released unless nil, or lets them go
// one at a time where the sink has no check, until ctx ends.
func (s *Subscriber) probeSink(ctx context.Context, released func()) {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	checker, _ := s.cfg.Sink.(sink.Checker)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if hold, _ := s.outage.held(); hold == nil {
			if checker != nil {
				s.checkSink(ctx, checker)
			}
			continue
		}
		if checker == nil {
			s.outage.offer(s.handleFor)
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, probeEvery)
		err := checker.Check(cctx)
		cancel()
		if err == nil && s.outage.unproven() {
			// Only its check failed: it passing again ends the outage.
			s.sinkWorks(ctx)
			if released != nil {
				released()
			}
			continue
		}
		if err == nil {
			s.outage.release()
			if released != nil {
				released()
			}
			continue
		}
		s.remind(ctx, err)
	}
}

// waitSink holds a delivery while the sink fails, until a probe lets it
// go, sinkHoldFor passes, ctx ends or its consumer stops.
func (s *Subscriber) waitSink(ctx context.Context) error {
	limit := time.NewTimer(sinkHoldFor)
	defer limit.Stop()
	for {
		hold, probe := s.outage.held()
		if hold == nil {
			return nil
		}
		select {
		case <-hold:
		case <-probe:
			return nil
		case <-limit.C:
			return errHeld
		case <-ctx.Done():
			return ctx.Err()
		case <-bus.Stopping(ctx):
			return errors.New("stopping")
		}
	}
}

// observe counts one delivery into the sink by its outcome.
func (s *Subscriber) observe(err error, d time.Duration) {
	if s.cfg.Sinks == nil {
		return
	}
	outcome := metrics.SinkDelivered
	switch {
	case errors.Is(err, sink.ErrPermanent):
		outcome = metrics.SinkFailed
	case err != nil:
		outcome = metrics.SinkRetry
	}
	s.cfg.Sinks.Observe(s.cfg.Sink.Kind(), outcome, d)
}
