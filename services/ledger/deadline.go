package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// ProblemNotPickedUp is the problem type of Amtsbote's reject-submission
// event for a submission its destination did not pick up in time.
const ProblemNotPickedUp = problem.Base + "not-picked-up"

// batch is how many due submissions one query fetches.
const batch = 100

// Sweep keeps every deadline that has passed: incomplete submissions and
// the content of picked-up ones are deleted, submissions not picked up are
// rejected and later deleted, each with Amtsbote's event. Run calls it
// every Retention.Interval; it is safe to call from several ledgers at
// once. It returns the errors of the submissions it could not finish;
// the next sweep tries them again.
func (l *Ledger) Sweep(ctx context.Context) error {
	now := l.now()
	r := l.retention
	var errs []error
	for _, job := range []struct {
		deadline store.Deadline
		age      time.Duration
		content  bool   // delete payload and attachments first
		event    string // the event Amtsbote writes
	}{
		{store.DeadlineIncomplete, r.Incomplete, true, set.DeleteSubmission},
		{store.DeadlinePickedUp, r.AfterPickup, true, set.DeleteSubmission},
		{store.DeadlineUnpickedReject, r.RejectUnpicked, false, set.RejectSubmission},
		{store.DeadlineUnpickedDelete, r.DeleteUnpicked, true, set.DeleteSubmission},
	} {
		cutoff := now.Add(-job.age)
		// A submission that stays due after its turn failed; it waits for
		// the next sweep rather than being tried again in this one.
		tried := make(map[string]bool)
		for ctx.Err() == nil {
			due, err := l.store.DueSubmissions(ctx, job.deadline, cutoff, batch)
			if err != nil {
				errs = append(errs, err)
				break
			}
			fresh := 0
			for _, s := range due {
				if tried[s.ID] {
					continue
				}
				tried[s.ID], fresh = true, fresh+1
				if err := l.keep(ctx, s, job.deadline, job.age, job.content, job.event); err != nil {
					l.metrics.deadline(job.deadline, outcomeRetry)
					errs = append(errs, err)
					continue
				}
				l.metrics.deadline(job.deadline, outcomeApplied)
			}
			if len(due) < batch || fresh == 0 {
				break
			}
		}
	}
	return errors.Join(errs...)
}

// keep keeps deadline d for submission s, due for age: it deletes the
// content if asked and writes Amtsbote's event. Content goes first: if
// the event fails, the submission stays due and the next sweep finishes,
// finding its objects gone.
func (l *Ledger) keep(ctx context.Context, s store.Submission, d store.Deadline, age time.Duration, content bool, uri string) error {
	if content {
		if err := l.deleteContent(ctx, s); err != nil {
			return err
		}
	}
	var payload any
	if uri == set.RejectSubmission {
		payload = set.RejectPayload{Problems: []set.Problem{{
			Type:     ProblemNotPickedUp,
			Title:    "Not picked up",
			Detail:   fmt.Sprintf("destination %s did not pick up the submission within %s", s.DestinationID, age),
			Instance: "submission",
		}}}
	}
	if err := l.emit(ctx, s, uri, payload); err != nil {
		return err
	}
	l.log.Info("ledger: deadline kept", "deadline", string(d), "submission_id", s.ID, "case_id", s.CaseID,
		"destination_id", s.DestinationID)
	return nil
}

// outboxEvents are Amtsbote's events the gateway queues in the outbox
// (sealed.OutboxKey) for the signer to publish.
var outboxEvents = []string{set.CreateSubmission, set.SubmitSubmission}

// deleteContent removes a submission's payload and attachments from the
// object store, and its entries from the state bucket: the authentication
// tags of the submit and of each attachment, and the outbox entries of
// Amtsbote's events that are recorded. An unrecorded event's entry stays
// for the gateway's sweep to publish. What is already gone is no error.
func (l *Ledger) deleteContent(ctx context.Context, s store.Submission) error {
	names := []string{sealed.PayloadObject(s.ID)}
	keys := []string{sealed.TagsKey(s.ID), sealed.PayloadKey(s.ID), sealed.SubmitLockKey(s.ID)}
	seen := make(map[string]bool)
	for _, ids := range [][]string{s.AnnouncedAttachments, s.UploadedAttachments} {
		for _, id := range ids {
			if !seen[id] {
				seen[id] = true
				names = append(names, sealed.AttachmentObject(s.ID, id))
				keys = append(keys, sealed.AttachmentTagKey(s.ID, id), sealed.AttachmentUploadKey(s.ID, id), sealed.AttachmentCommitKey(s.ID, id))
			}
		}
	}
	for _, name := range names {
		err := l.bus.DeleteObject(ctx, name)
		switch {
		case err == nil:
			l.metrics.objectsDeleted.Inc()
		case errors.Is(err, bus.ErrNotFound):
		default:
			return fmt.Errorf("delete content of %s: %w", s.ID, err)
		}
	}
	recorded, err := l.recordedJTIs(ctx, s.CaseID)
	if err != nil {
		return fmt.Errorf("delete content of %s: %w", s.ID, err)
	}
	for _, uri := range outboxEvents {
		if jti := l.issuer.JTI(s.ID, uri); recorded[jti] {
			keys = append(keys, sealed.OutboxKey(jti))
		}
	}
	for _, key := range keys {
		if err := l.deleteState(ctx, key); err != nil {
			return fmt.Errorf("delete content of %s: %w", s.ID, err)
		}
	}
	return nil
}

// deleteState deletes key from the state bucket if it holds a value. A
// deletion writes a marker, so a key that was never written, or is
// deleted already, is left alone.
func (l *Ledger) deleteState(ctx context.Context, key string) error {
	_, err := l.bus.GetState(ctx, key)
	if errors.Is(err, bus.ErrNotFound) {
		return nil
	}
	if err == nil {
		err = l.bus.DeleteState(ctx, key)
	}
	if err != nil {
		return err
	}
	l.metrics.stateDeleted.Inc()
	return nil
}

// recordedJTIs returns the jtis of the events recorded for a case.
func (l *Ledger) recordedJTIs(ctx context.Context, caseID string) (map[string]bool, error) {
	jtis := make(map[string]bool)
	for page := (store.Page{Limit: store.MaxPageLimit}); ; page.Offset += page.Limit {
		evs, total, err := l.store.Events(ctx, caseID, page)
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			jtis[e.JTI] = true
		}
		if len(evs) == 0 || page.Offset+len(evs) >= total {
			return jtis, nil
		}
	}
}

// emit issues Amtsbote's event uri about s and projects it at once, so
// the next query of the deadline no longer finds s. The jti is derived: two
// ledgers keeping the same deadline, or one retrying it, write the same
// event once.
func (l *Ledger) emit(ctx context.Context, s store.Submission, uri string, payload any) error {
	p, err := l.issuer.Issue(ctx, uri, s.ID, s.CaseID, payload)
	if err != nil {
		return fmt.Errorf("event %s of %s: %w", uri, s.ID, err)
	}
	if _, err := l.project(ctx, p.Claims, p.Token, p.Seq); err != nil {
		return fmt.Errorf("event %s of %s: %w", uri, s.ID, err)
	}
	return nil
}
