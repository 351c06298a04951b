package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/internal/failpoint"
	"github.com/amtsbote/amtsbote/pkg/bus"
	pkgmetrics "github.com/amtsbote/amtsbote/pkg/metrics"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// Outcomes of projecting one message, the outcome label of the metrics.
const (
	outcomeApplied   = "applied"   // the store changed
	outcomeUnchanged = "unchanged" // seen before, or a transition the status does not allow
	outcomeUnknown   = "unknown-submission"
	outcomeInvalid   = "invalid"
	outcomeRetry     = "retry"
)

// errUnchanged aborts an update that would write nothing.
var errUnchanged = errors.New("unchanged")

// errWrongCase means a token names a submission of another case.
var errWrongCase = errors.New("submission belongs to another case")

// handleEvent projects one EVENTS message: the compact SET it carries is
// recorded and the submission's progress refolded. The gateway verified
// the token before publishing it; here it is only parsed, and garbage is
// dead-lettered.
func (l *Ledger) handleEvent(ctx context.Context, m *bus.Message) error {
	c, token, err := readEvent(m)
	if err != nil {
		l.metrics.event("unknown", outcomeInvalid)
		return bus.PermanentReason(ReasonInvalid, err)
	}
	uri, _, _ := c.Event()
	failpoint.KillFor("ledger.before-project", set.Name(uri))
	outcome, err := l.project(ctx, c, token, m.Sequence)
	if errors.Is(err, errWrongCase) {
		l.metrics.event(set.Name(uri), outcomeInvalid)
		return bus.PermanentReason(ReasonInvalid, err)
	}
	if err != nil {
		l.metrics.event(set.Name(uri), outcomeRetry)
		return err
	}
	l.metrics.event(set.Name(uri), outcome)
	failpoint.KillFor("ledger.before-ack", set.Name(uri))
	return nil
}

// readEvent checks an EVENTS message and parses the token in its data:
// type sealed.TypeEvent, a well-formed SET whose claims pass the
// clock-free rules, and whose case is the one of the message's subject.
func readEvent(m *bus.Message) (set.Claims, string, error) {
	if m.Event.Type() != sealed.TypeEvent {
		return set.Claims{}, "", fmt.Errorf("cloudevent type %q, want %s", m.Event.Type(), sealed.TypeEvent)
	}
	token := strings.TrimSpace(string(m.Data))
	_, c, err := set.Parse(token)
	if err != nil {
		return set.Claims{}, "", err
	}
	if err := c.Validate(); err != nil {
		return set.Claims{}, "", fmt.Errorf("event %s: %w", c.JTI, err)
	}
	caseID, _ := c.CaseID()
	if want, err := bus.EventsSubject(caseID); err != nil || want != m.Subject {
		return set.Claims{}, "", fmt.Errorf("event %s of case %s published to %s", c.JTI, caseID, m.Subject)
	}
	return c, token, nil
}

// project records a valid SET, at stream sequence seq, in the store's
// event log and refolds its submission's progress from all of the
// submission's events in stream order (fold), in one transaction: the
// ledger is the only writer of both. Replaying an event changes nothing.
// An event of a submission the store does not know is recorded all the
// same.
func (l *Ledger) project(ctx context.Context, c set.Claims, token string, seq uint64) (string, error) {
	uri, _, err := c.Event()
	if err != nil {
		return "", err
	}
	sid, err := c.SubmissionID()
	if err != nil {
		return "", err
	}
	caseID, err := c.CaseID()
	if err != nil {
		return "", err
	}
	var before sealed.Progress
	p, err := l.store.ProjectEvent(ctx, store.Event{
		JTI: c.JTI, CaseID: caseID, SubmissionID: sid, Type: uri,
		Issuer: c.Issuer, IssuedAt: c.IssuedAt, Token: token, StreamSeq: seq,
	}, func(s *store.Submission, evs []store.Event) {
		before = s.Progress
		l.fold(ctx, s, evs, seq)
	})
	if err == nil {
		l.countStages(ctx, c, uri, p, before)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		l.log.WarnContext(ctx, "ledger: event of an unknown submission recorded", "submission_id", sid, "case_id", caseID, "jti", c.JTI)
		return outcomeUnknown, nil
	case errors.Is(err, store.ErrConflict):
		return "", fmt.Errorf("event %s: %w: %w", c.JTI, errWrongCase, err)
	case err != nil:
		return "", fmt.Errorf("project event %s: %w", c.JTI, err)
	case p.Changed:
		return outcomeApplied, nil
	}
	return outcomeUnchanged, nil
}

// fold brings s's progress up to date with the event at stream sequence
// seq among all of its events evs (in stream order). The newest event of
// the submission applies to the progress as it is; one that arrives
// after a later one (consumers run concurrently) refolds every event in
// stream order from the state the gateway creates a submission in. An
// event the status does not allow changes nothing.
func (l *Ledger) fold(ctx context.Context, s *store.Submission, evs []store.Event, seq uint64) {
	apply := func(e store.Event) {
		if _, err := s.Progress.Apply(e.Type, e.IssuedAt); err != nil && e.Type != set.CreateSubmission {
			l.log.DebugContext(ctx, "ledger: event changes nothing", "submission_id", s.ID, "jti", e.JTI, "err", err)
		}
	}
	if n := len(evs); n > 0 && evs[n-1].StreamSeq == seq {
		apply(evs[n-1])
		return
	}
	s.Progress = sealed.Progress{Status: sealed.Incomplete}
	for _, e := range evs {
		apply(e)
	}
}

// handleRouted marks the submission an INBOX message carries as routed at
// the time INBOX stored it. The router names the submission in the event's
// subject; the body, the whole sealed submission, is not read.
func (l *Ledger) handleRouted(ctx context.Context, m *bus.Message) error {
	if m.Event.Type() != sealed.TypeRouted {
		l.metrics.routed(outcomeInvalid)
		return bus.PermanentReason(ReasonInvalid, fmt.Errorf("cloudevent type %q, want %s", m.Event.Type(), sealed.TypeRouted))
	}
	sid := m.Event.Subject()
	if id, err := uuid.Parse(sid); err != nil || id.String() != sid {
		l.metrics.routed(outcomeInvalid)
		return bus.PermanentReason(ReasonInvalid, fmt.Errorf("routed event's subject %q: not a submission id in lower case", sid))
	}
	at := m.Published
	if at.IsZero() {
		at = l.now()
	}
	s, err := l.store.UpdateSubmission(ctx, sid, func(s *store.Submission) error {
		if s.RoutedAt != nil {
			return errUnchanged
		}
		s.RoutedAt = &at
		return nil
	})
	switch {
	case err == nil:
		l.metrics.routed(outcomeApplied)
		l.metrics.stage(StageRouted, l.landOf(ctx, s.DestinationID))
		if submitted, ok := submittedTime(m); ok {
			l.metrics.latency(SubmitToRouted, submitted, at)
		} else if s.SubmittedAt != nil {
			// A router of an earlier release names no submitted time.
			l.metrics.latency(SubmitToRouted, *s.SubmittedAt, at)
		}
	case errors.Is(err, errUnchanged):
		l.metrics.routed(outcomeUnchanged)
	case errors.Is(err, store.ErrNotFound):
		// Nothing to list; the receiver's own consumers still see the message.
		l.metrics.routed(outcomeUnknown)
		l.log.WarnContext(ctx, "ledger: routed submission unknown to the store", "submission_id", sid)
	default:
		l.metrics.routed(outcomeRetry)
		return fmt.Errorf("mark %s routed: %w", sid, err)
	}
	return nil
}

// submittedTime reads when INGRESS stored the submission from a routed
// event, to the millisecond the submit SET's iat lacks.
func submittedTime(m *bus.Message) (time.Time, bool) {
	v, ok := m.Event.Extensions()[bus.ExtensionSubmittedTime].(string)
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	return t, err == nil
}

// countStages counts the stages a projection moved the submission to,
// once: the ledger is the only writer of progress and a replayed event
// changes nothing. A refold (an event arriving after a later one) counts
// what the refold newly decided. Latencies are observed when both of
// their times are known, whichever came second; submit_to_routed is the
// routed event's own (handleRouted).
func (l *Ledger) countStages(ctx context.Context, c set.Claims, uri string, p store.Projection, before sealed.Progress) {
	if !p.Recorded || (!p.Changed && uri != set.CreateSubmission) {
		return
	}
	s := p.Submission
	if s.ID == "" {
		return
	}
	land := l.landOf(ctx, s.DestinationID)
	if uri == set.CreateSubmission {
		l.metrics.stage(StageCreated, land)
	}
	if !p.Changed {
		return
	}
	after := s.Progress
	if before.SubmittedAt == nil && after.SubmittedAt != nil {
		l.metrics.stage(StageSubmitted, land)
	}
	if before.PickedUpAt == nil && after.PickedUpAt != nil {
		l.metrics.stage(StagePickedUp, land)
		if s.RoutedAt != nil {
			l.metrics.latency(RoutedToPickedUp, *s.RoutedAt, *after.PickedUpAt)
		}
	}
	if before.Status == after.Status {
		return
	}
	switch after.Status {
	case sealed.Accepted:
		l.metrics.stage(StageAccepted, land)
		if after.SubmittedAt != nil {
			l.metrics.latency(SubmitToAccepted, *after.SubmittedAt, c.IssuedAt)
		}
	case sealed.Rejected:
		if expired(c) {
			l.metrics.stage(StageExpired, land)
		} else {
			l.metrics.stage(StageRejected, land)
		}
	case sealed.Forwarded:
		l.metrics.stage(StageForwarded, land)
	case sealed.Deleted:
		l.metrics.stage(StageDeleted, land)
	}
}

// expired reports whether c is Amtsbote's reject of a submission not
// picked up in time.
func expired(c set.Claims) bool {
	problems, err := c.Problems()
	if err != nil {
		return false
	}
	for _, p := range problems {
		if p.Type == ProblemNotPickedUp {
			return true
		}
	}
	return false
}

// landOf is the land label of a destination: the Land of its home region,
// or "unknown" when the store cannot say.
func (l *Ledger) landOf(ctx context.Context, destinationID string) string {
	now := l.now()
	if v, ok := l.lands.Load(destinationID); ok {
		if c := v.(cachedLand); now.Sub(c.at) < landTTL {
			return c.land
		}
	}
	d, err := l.store.Destination(ctx, destinationID)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			l.log.DebugContext(ctx, "ledger: land of destination unknown", "destination_id", destinationID, "err", err)
		}
		return pkgmetrics.Unknown
	}
	land := pkgmetrics.Land(d.HomeRegion)
	l.lands.Store(destinationID, cachedLand{land, now})
	return land
}

// landTTL is how long the ledger labels a destination's stages with the
// Land it read: every event is counted by Land, and a destination moves
// to another Land rarely if ever.
const landTTL = time.Minute

type cachedLand struct {
	land string
	at   time.Time
}
