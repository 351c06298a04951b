package sealed

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/amtsbote/amtsbote/pkg/set"
)

// Status is FIT-Connect's status of a submission.
type Status string

// Statuses of the FIT-Connect status model.
const (
	Incomplete Status = "incomplete"
	Submitted  Status = "submitted"
	Forwarded  Status = "forwarded"
	Accepted   Status = "accepted"
	Rejected   Status = "rejected"
	Deleted    Status = "deleted"
)

// Valid reports whether s is one of the six statuses.
func (s Status) Valid() bool {
	switch s {
	case Incomplete, Submitted, Forwarded, Accepted, Rejected, Deleted:
		return true
	}
	return false
}

// ErrTransition marks an event the current status does not allow.
var ErrTransition = errors.New("invalid status transition")

// Progress is what the events of a submission decide: its status and
// when it was submitted, first picked up and had its content deleted. The
// ledger folds a case's events into it; nothing else writes it.
type Progress struct {
	Status      Status
	SubmittedAt *time.Time
	// PickedUpAt is when a receiver first fetched the submission
	// (notify-submission); the retention deadlines count from it.
	PickedUpAt *time.Time
	// DeletedAt is when its content (payload and attachments) was
	// deleted (delete-submission); the record and its events stay.
	DeletedAt *time.Time
}

// Apply applies the event uri (a set.*Submission URI), issued at at, to p
// and reports whether p changed. It is FIT-Connect's status model:
// incomplete → submitted → (forwarded) → accepted | rejected, then
// deleted; an incomplete submission may be deleted, and Amtsbote may
// reject one that was never picked up. A repeat of an event that changes
// nothing (a second submit or notify) is allowed and changes nothing. An
// event the status does not allow returns an error wrapping ErrTransition
// and leaves p as it was. Times already set stay.
func (p *Progress) Apply(uri string, at time.Time) (bool, error) {
	from := p.Status
	next, ok := from, false
	switch uri {
	case set.CreateSubmission:
		next, ok = Incomplete, from == "" || from == Incomplete
	case set.SubmitSubmission:
		next, ok = Submitted, from == Incomplete || from == Submitted
	case set.NotifySubmission:
		ok = from == Submitted || from == Forwarded
	case set.ForwardSubmission:
		next, ok = Forwarded, from == Submitted || from == Forwarded
	case set.AcceptSubmission:
		next, ok = Accepted, from == Submitted || from == Forwarded
	case set.RejectSubmission:
		next, ok = Rejected, from == Submitted || from == Forwarded
	case set.DeleteSubmission:
		next, ok = Deleted, from != Deleted
	default:
		return false, fmt.Errorf("%w: unknown event %q", ErrTransition, uri)
	}
	if !ok {
		if from == "" {
			from = "unknown"
		}
		return false, fmt.Errorf("%w: %s not allowed in status %s", ErrTransition, set.Name(uri), from)
	}
	changed := next != p.Status
	p.Status = next
	stamp := func(t **time.Time) {
		if *t == nil {
			v := at
			*t, changed = &v, true
		}
	}
	switch uri {
	case set.SubmitSubmission:
		stamp(&p.SubmittedAt)
	case set.NotifySubmission:
		stamp(&p.PickedUpAt)
	case set.DeleteSubmission:
		stamp(&p.DeletedAt)
	}
	return changed, nil
}

// Deliverable reports whether a submission with this progress that was
// routed (or not) is to be picked up: submitted, routed to its inbox and
// its content not deleted. One its destination forwarded is not, as one it
// decided on: a redelivery must not reach a Fachverfahren what went
// elsewhere. The error says why not.
func (p Progress) Deliverable(routed bool) error {
	return p.fetchable(routed, Submitted)
}

// Fetchable reports whether a receiver may fetch a submission with this
// progress: as Deliverable, or forwarded, whose content FIT-Connect still
// hands out. The error says why not.
func (p Progress) Fetchable(routed bool) error {
	return p.fetchable(routed, Submitted, Forwarded)
}

func (p Progress) fetchable(routed bool, statuses ...Status) error {
	switch {
	case p.DeletedAt != nil:
		return errors.New("its content is deleted")
	case !slices.Contains(statuses, p.Status):
		return fmt.Errorf("it is %s", p.Status)
	case !routed:
		return errors.New("it is not routed yet")
	}
	return nil
}

// Equal reports whether p and q hold the same status and times.
func (p Progress) Equal(q Progress) bool {
	same := func(a, b *time.Time) bool { return a == nil && b == nil || a != nil && b != nil && a.Equal(*b) }
	return p.Status == q.Status && same(p.SubmittedAt, q.SubmittedAt) && same(p.PickedUpAt, q.PickedUpAt) && same(p.DeletedAt, q.DeletedAt)
}
