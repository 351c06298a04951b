package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/gateway/httpapi"
)

// DeadLetters is what the operator API does with DEAD; *bus.Bus has it.
type DeadLetters interface {
	DeadLetters(ctx context.Context, f bus.DeadFilter, offset, limit int) ([]bus.DeadLetter, int, error)
	DeadLetter(ctx context.Context, seq uint64) (bus.DeadLetter, error)
	Redrive(ctx context.Context, seq uint64, checks ...bus.RedriveCheck) (bus.DeadLetter, error)
	PurgeDead(ctx context.Context, seq uint64) (bus.DeadLetter, error)
}

// Audit actions of dead letters.
const (
	ActionDeadRedrive = bus.AuditDeadRedrive
	ActionDeadPurge   = bus.AuditDeadPurge
)

// DefaultOverdue are the ages after which a submission not picked up is
// overdue: FIT-Connect's reminders on day 3 and day 9.
var DefaultOverdue = []time.Duration{3 * 24 * time.Hour, 9 * 24 * time.Hour}

// TypeRedriveTooSoon is the problem type of a re-drive refused because
// the stream would still drop it as the original.
const TypeRedriveTooSoon = problem.Base + "redrive-too-soon"

// maxRedriveAll bounds the dead letters one re-drive of a filter moves.
const maxRedriveAll = 10000

// deadLetterList is a page of dead letters.
type deadLetterList struct {
	Count       int              `json:"count"`
	Offset      int              `json:"offset"`
	TotalCount  int              `json:"totalCount"`
	DeadLetters []bus.DeadLetter `json:"deadLetters"`
}

// deadLetterView is one dead letter with its original message.
type deadLetterView struct {
	bus.DeadLetter
	Header map[string][]string `json:"header"`
	// Data is the original body, base64.
	Data []byte `json:"data"`
}

// redriveResult answers a re-drive of all dead letters a filter selects.
type redriveResult struct {
	Redriven []uint64        `json:"redriven"`
	Failed   []redriveFailed `json:"failed"`
}

type redriveFailed struct {
	Seq    uint64 `json:"seq"`
	Detail string `json:"detail"`
}

// deadFilter reads reason and destinationId from the query.
func deadFilter(r *http.Request) (bus.DeadFilter, error) {
	var f bus.DeadFilter
	q := r.URL.Query()
	reason, ok, err := httpapi.QueryParam(q, "reason")
	if err != nil {
		return f, err
	}
	if ok {
		if _, err := bus.DeadSubject(reason); err != nil {
			return f, problem.InvalidRequest("reason", fmt.Sprintf("reason %q must be 1 to 64 letters, digits, '-' or '_'", reason))
		}
		f.Reason = reason
	}
	dest, ok, err := httpapi.QueryParam(q, "destinationId")
	if err != nil {
		return f, err
	}
	if ok {
		id, valid := httpapi.CanonicalUUID(dest)
		if !valid {
			return f, problem.InvalidRequest("destinationId", fmt.Sprintf("destinationId %q is not a UUID", dest))
		}
		f.DestinationID = id
	}
	return f, nil
}

// deadSeq reads the dead letter's sequence from the path.
func deadSeq(r *http.Request) (uint64, error) {
	raw := r.PathValue("seq")
	seq, err := strconv.ParseUint(raw, 10, 64)
	if err != nil || seq == 0 || raw[0] == '0' {
		return 0, problem.InvalidRequest("seq", fmt.Sprintf("seq %q must be a positive integer", raw))
	}
	return seq, nil
}

// deadError turns a failure of DEAD into the answer.
func (a *API) deadError(r *http.Request, op string, seq uint64, err error) error {
	switch {
	case errors.Is(err, bus.ErrNotFound):
		return problem.NotFound("seq", fmt.Sprintf("dead letter %d does not exist", seq))
	case errors.Is(err, bus.ErrRedriveTooSoon):
		return problem.New(TypeRedriveTooSoon, "Re-drive too soon", http.StatusConflict, "seq", err.Error())
	case errors.Is(err, bus.ErrInvalidSubject), errors.Is(err, bus.ErrForged), errors.Is(err, store.ErrNotRecorded):
		return problem.Unprocessable("seq", err.Error())
	}
	return a.api.Unavailable(r, op, err)
}

// deadLetters answers 503 when the gateway runs without a bus.
func (a *API) deadLetters() (DeadLetters, error) {
	if a.dead == nil {
		return nil, problem.Unavailable("dead letters live in JetStream, which this gateway is not connected to")
	}
	return a.dead, nil
}

func (a *API) handleListDeadLetters(w http.ResponseWriter, r *http.Request, _ httpapi.Principal) error {
	dead, err := a.deadLetters()
	if err != nil {
		return err
	}
	f, err := deadFilter(r)
	if err != nil {
		return err
	}
	page, err := httpapi.PageOf(r)
	if err != nil {
		return err
	}
	list, total, err := dead.DeadLetters(r.Context(), f, page.Offset, page.Limit)
	if err != nil {
		return a.api.Unavailable(r, "list dead letters", err)
	}
	if list == nil {
		list = []bus.DeadLetter{}
	}
	w.Header().Set("Cache-Control", "no-cache")
	httpapi.WriteJSON(w, http.StatusOK, deadLetterList{Count: len(list), Offset: page.Offset, TotalCount: total, DeadLetters: list})
	return nil
}

func (a *API) handleGetDeadLetter(w http.ResponseWriter, r *http.Request, _ httpapi.Principal) error {
	dead, err := a.deadLetters()
	if err != nil {
		return err
	}
	seq, err := deadSeq(r)
	if err != nil {
		return err
	}
	d, err := dead.DeadLetter(r.Context(), seq)
	if err != nil {
		return a.deadError(r, "show dead letter", seq, err)
	}
	w.Header().Set("Cache-Control", "no-cache")
	httpapi.WriteJSON(w, http.StatusOK, deadLetterView{DeadLetter: d, Header: d.Header, Data: d.Data})
	return nil
}

func (a *API) handleRedriveDeadLetter(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	dead, err := a.deadLetters()
	if err != nil {
		return err
	}
	seq, err := deadSeq(r)
	if err != nil {
		return err
	}
	ctx, cancel := bus.DeadActContext(r.Context())
	defer cancel()
	d, err := dead.Redrive(ctx, seq, bus.InboxRecorded(store.Recorded(a.store)))
	if err != nil {
		return a.deadError(r, "re-drive dead letter", seq, err)
	}
	a.auditDead(ctx, p, ActionDeadRedrive, d)
	httpapi.WriteJSON(w, http.StatusOK, d)
	return nil
}

// handleRedriveDeadLetters re-drives every dead letter the query's filter
// selects, oldest first, and names the ones that failed.
func (a *API) handleRedriveDeadLetters(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	dead, err := a.deadLetters()
	if err != nil {
		return err
	}
	f, err := deadFilter(r)
	if err != nil {
		return err
	}
	list, _, err := dead.DeadLetters(r.Context(), f, 0, maxRedriveAll)
	if err != nil {
		return a.api.Unavailable(r, "list dead letters", err)
	}
	out := redriveResult{Redriven: []uint64{}, Failed: []redriveFailed{}}
	for _, d := range list {
		ctx, cancel := bus.DeadActContext(r.Context())
		done, err := dead.Redrive(ctx, d.Seq, bus.InboxRecorded(store.Recorded(a.store)))
		if err != nil {
			cancel()
			out.Failed = append(out.Failed, redriveFailed{Seq: d.Seq, Detail: err.Error()})
			continue
		}
		a.auditDead(ctx, p, ActionDeadRedrive, done)
		cancel()
		out.Redriven = append(out.Redriven, d.Seq)
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// handlePurgeDeadLetter deletes a dead letter for good and records who did
// and what it was in the audit log.
func (a *API) handlePurgeDeadLetter(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	dead, err := a.deadLetters()
	if err != nil {
		return err
	}
	seq, err := deadSeq(r)
	if err != nil {
		return err
	}
	ctx, cancel := bus.DeadActContext(r.Context())
	defer cancel()
	d, err := dead.PurgeDead(ctx, seq)
	if err != nil {
		return a.deadError(r, "purge dead letter", seq, err)
	}
	if err := a.store.Audit(ctx, DeadAudit(p.Subject, ActionDeadPurge, d)); err != nil {
		return fmt.Errorf("audit purge of dead letter %d: %w", seq, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// auditDead records a re-drive; the message went where it failed, so a
// lost audit entry is logged rather than answered as a failure.
func (a *API) auditDead(ctx context.Context, p httpapi.Principal, action string, d bus.DeadLetter) {
	if err := a.store.Audit(ctx, DeadAudit(p.Subject, action, d)); err != nil {
		a.api.Log.WarnContext(ctx, "audit entry lost", "action", action, "seq", d.Seq, "err", err)
	}
}

// DeadAudit is the audit entry of an act on dead letter d: the dead letter
// without its body as it was before.
func DeadAudit(actor, action string, d bus.DeadLetter) store.AuditEntry {
	return store.AuditEntry{Actor: actor, Action: action, Object: d.AuditObject(), Before: d.AuditRecord()}
}

// overdueList answers GET /admin/v1/overdue.
type overdueList struct {
	// After lists the ages, as Go durations, the counts refer to.
	After        []string             `json:"after"`
	Destinations []overdueDestination `json:"destinations"`
}

type overdueDestination struct {
	DestinationID string `json:"destinationId"`
	// Overdue holds, per age of After, how many are waiting longer.
	Overdue           []int     `json:"overdue"`
	OldestSubmittedAt time.Time `json:"oldestSubmittedAt"`
}

// handleOverdue lists, per destination, the submissions not picked up
// after each configured age.
func (a *API) handleOverdue(w http.ResponseWriter, r *http.Request, _ httpapi.Principal) error {
	now := a.now()
	cutoffs := make([]time.Time, len(a.overdue))
	out := overdueList{After: make([]string, len(a.overdue)), Destinations: []overdueDestination{}}
	for i, age := range a.overdue {
		cutoffs[i] = now.Add(-age)
		out.After[i] = age.String()
	}
	list, err := a.store.Overdue(r.Context(), cutoffs)
	if err != nil {
		return fmt.Errorf("list overdue: %w", err)
	}
	for _, o := range list {
		out.Destinations = append(out.Destinations, overdueDestination{o.DestinationID, o.Counts, o.Oldest})
	}
	w.Header().Set("Cache-Control", "no-cache")
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}
