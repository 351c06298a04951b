package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/amtsbote/amtsbote/pkg/bus"
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
// recorded and its event applied to the submission's status. The gateway
// verified the token before publishing it; here it is only parsed, and
// garbage is dead-lettered.
func (l *Ledger) handleEvent(ctx context.Context, m *bus.Message) error {
	c, token, err := readEvent(m)
	if err != nil {
		l.metrics.event("unknown", outcomeInvalid)
		return bus.PermanentReason(ReasonInvalid, err)
	}
	uri, _, _ := c.Event()
	name := strings.TrimPrefix(uri, set.EventBase)
	outcome, err := l.apply(ctx, c, token)
	if errors.Is(err, errWrongCase) {
		l.metrics.event(name, outcomeInvalid)
		return bus.PermanentReason(ReasonInvalid, err)
	}
	if err != nil {
		l.metrics.event(name, outcomeRetry)
		return err
	}
	l.metrics.event(name, outcome)
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

// apply applies a valid SET to the store: the submission's status moves
// along sealed.Next (an event the status does not allow, such as a repeat,
// changes nothing), then the event is recorded unless its jti is. Both
// steps are idempotent, so a redelivery after a failure in between
// completes the work. An event of a submission the store does not know is
// recorded all the same.
func (l *Ledger) apply(ctx context.Context, c set.Claims, token string) (string, error) {
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
	name := strings.TrimPrefix(uri, set.EventBase)
	outcome := outcomeApplied
	_, err = l.store.UpdateSubmission(ctx, sid, func(s *store.Submission) error {
		if !strings.EqualFold(s.CaseID, caseID) {
			return fmt.Errorf("event %s: submission %s is of case %s, the event of case %s: %w", c.JTI, sid, s.CaseID, caseID, errWrongCase)
		}
		if !project(s, name, c.IssuedAt) {
			return errUnchanged
		}
		return nil
	})
	switch {
	case errors.Is(err, errUnchanged):
		outcome = outcomeUnchanged
	case errors.Is(err, store.ErrNotFound):
		outcome = outcomeUnknown
		l.log.Warn("ledger: event of an unknown submission recorded", "submission_id", sid, "case_id", caseID, "jti", c.JTI)
	case err != nil:
		return "", fmt.Errorf("project event %s: %w", c.JTI, err)
	}
	if err := l.store.AppendEvent(ctx, store.Event{
		JTI: c.JTI, CaseID: caseID, SubmissionID: sid, Type: uri,
		Issuer: c.Issuer, IssuedAt: c.IssuedAt, Token: token,
	}); err != nil {
		return "", fmt.Errorf("project event %s: %w", c.JTI, err)
	}
	return outcome, nil
}

// project applies event name, issued at, to s and reports whether s
// changed. Times already set stay.
func project(s *store.Submission, name string, at time.Time) bool {
	next, err := sealed.Next(sealed.Status(s.Status), name)
	if err != nil {
		return false
	}
	changed := false
	if st := store.SubmissionStatus(next); st != s.Status {
		s.Status, changed = st, true
	}
	stamp := func(p **time.Time) {
		if *p == nil {
			t := at
			*p, changed = &t, true
		}
	}
	switch name {
	case sealed.EventSubmit:
		stamp(&s.SubmittedAt)
	case sealed.EventNotify:
		stamp(&s.PickedUpAt)
	case sealed.EventDelete:
		stamp(&s.DeletedAt)
	}
	return changed
}

// handleRouted marks the submission an INBOX message carries as routed at
// the time INBOX stored it.
func (l *Ledger) handleRouted(ctx context.Context, m *bus.Message) error {
	if m.Event.Type() != sealed.TypeRouted {
		l.metrics.routed(outcomeInvalid)
		return bus.PermanentReason(ReasonInvalid, fmt.Errorf("cloudevent type %q, want %s", m.Event.Type(), sealed.TypeRouted))
	}
	sub, err := sealed.Decode(m.Data)
	if err != nil {
		l.metrics.routed(outcomeInvalid)
		return bus.PermanentReason(ReasonInvalid, err)
	}
	at := m.Published
	if at.IsZero() {
		at = l.now()
	}
	_, err = l.store.UpdateSubmission(ctx, sub.SubmissionID, func(s *store.Submission) error {
		if s.RoutedAt != nil {
			return errUnchanged
		}
		s.RoutedAt = &at
		return nil
	})
	switch {
	case err == nil:
		l.metrics.routed(outcomeApplied)
	case errors.Is(err, errUnchanged):
		l.metrics.routed(outcomeUnchanged)
	case errors.Is(err, store.ErrNotFound):
		// Nothing to list; the receiver's own consumers still see the message.
		l.metrics.routed(outcomeUnknown)
		l.log.Warn("ledger: routed submission unknown to the store", "submission_id", sub.SubmissionID, "case_id", sub.CaseID)
	default:
		l.metrics.routed(outcomeRetry)
		return fmt.Errorf("mark %s routed: %w", sub.SubmissionID, err)
	}
	return nil
}
