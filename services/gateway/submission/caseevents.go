package submission

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/amtsbote/amtsbote/internal/failpoint"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/scope"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/gateway/httpapi"
)

// eventLog is FIT-Connect's EventLog.
type eventLog struct {
	Count      int      `json:"count"`
	Offset     int      `json:"offset"`
	TotalCount int      `json:"totalCount"`
	EventLog   []string `json:"eventLog"`
}

// caseSubmissions returns the submissions of a case, oldest first. A
// case exists from its first submission's creation on, before the event
// log records anything; one known only by events (their submissions are
// unknown to the store) has none. CaseNotFound when it has neither.
func (a *API) caseSubmissions(ctx context.Context, caseID string) ([]store.Submission, error) {
	subs, err := a.store.SubmissionsByCase(ctx, caseID)
	if err != nil {
		return nil, fmt.Errorf("case %s: %w", caseID, err)
	}
	if len(subs) > 0 {
		return subs, nil
	}
	_, total, err := a.store.Events(ctx, caseID, store.Page{Limit: 1})
	if err != nil {
		return nil, fmt.Errorf("events of case %s: %w", caseID, err)
	}
	if total == 0 {
		return nil, problem.CaseNotFound(caseID)
	}
	return nil, nil
}

// checkCaseOwner checks that the sender p created the case: a reply is
// created within one of the sender's own cases only.
func (a *API) checkCaseOwner(ctx context.Context, p httpapi.Principal, caseID string) error {
	subs, err := a.caseSubmissions(ctx, caseID)
	if pr, ok := problem.As(err); ok && pr.Type == problem.TypeCaseNotFound {
		return problem.CaseNotFound(caseID).WithField("caseId")
	}
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(subs, func(s store.Submission) bool { return s.SenderClientID == p.Subject }) {
		return problem.CaseNotFound(caseID).WithField("caseId")
	}
	return nil
}

// handleGetEvents answers GET /v1/cases/{caseId}/events: the case's SETs
// in the order they were recorded, for the sender who created the case,
// the destination's receivers and managers, and operators. A new case
// answers with the events recorded so far, none before the first one is
// signed; only an unknown case is 404.
func (a *API) handleGetEvents(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	if !p.Scopes.OfParty() {
		return httpapi.Forbidden(scope.SendRegion+"<ars>",
			"reading a case's events requires a send:region, subscribe:destination or manage:destination scope")
	}
	caseID, ok := httpapi.CanonicalUUID(r.PathValue("caseId"))
	if !ok {
		// No case has it: 404, which the operation declares, not 400.
		np := problem.CaseNotFound(r.PathValue("caseId"))
		np.Detail = fmt.Sprintf("caseId %q is not a UUID: no case has it", r.PathValue("caseId"))
		return np
	}
	page, err := httpapi.PageOf(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	subs, err := a.caseSubmissions(ctx, caseID)
	if err != nil {
		return err
	}
	// A case may hold submissions to several destinations: a receiver
	// sees the events of those sent to its own, a sender those its
	// token's send scopes reach.
	visible := make(map[string]bool, len(subs))
	var uncovered *store.Submission
	for i, s := range subs {
		sees := p.Scopes.IsAdmin() || p.Scopes.CanSubscribe(s.DestinationID) || p.Scopes.CanManage(s.DestinationID)
		if !sees && s.SenderClientID == p.Subject {
			if sees, err = a.covers(ctx, p, s); err != nil {
				return err
			}
			if !sees {
				uncovered = &subs[i]
			}
		}
		if sees {
			visible[strings.ToLower(s.ID)] = true
		}
	}
	if len(visible) == 0 && uncovered != nil {
		return notCovered(*uncovered)
	}
	if len(visible) == 0 {
		// As if it did not exist: its id tells an outsider nothing.
		return problem.CaseNotFound(caseID)
	}
	if len(visible) == len(subs) {
		visible = nil
	}
	// From EVENTS, the source of truth: an event published a moment ago
	// (by this request, or a receiver's answer) is there before the
	// projection has it.
	out, err := a.eventsOf(ctx, caseID, subs, visible, page)
	if err != nil {
		return a.api.Unavailable(r, "read the case's events", err)
	}
	w.Header().Set("Cache-Control", "no-store")
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// eventsOf reads one page of a case's event log from EVENTS. The create-
// and submit-submission of subs that are not there yet may still wait in
// the outbox for a signer (under a signing backlog, for minutes); they are
// published first, once and in order, as the signer would: a client reads
// a submission's status from the event log, and one that asks right after
// its submit must find it there.
//
// visible, unless nil, names the submissions whose events are listed.
func (a *API) eventsOf(ctx context.Context, caseID string, subs []store.Submission, visible map[string]bool, page store.Page) (eventLog, error) {
	evs, err := a.bus.CaseEvents(ctx, caseID)
	if err != nil {
		return eventLog{}, fmt.Errorf("events of case %s: %w", caseID, err)
	}
	published, err := a.publishPending(ctx, subs, evs)
	if err != nil {
		return eventLog{}, fmt.Errorf("publish the pending events of case %s: %w", caseID, err)
	}
	if published {
		if evs, err = a.bus.CaseEvents(ctx, caseID); err != nil {
			return eventLog{}, fmt.Errorf("events of case %s: %w", caseID, err)
		}
	}
	if visible != nil {
		evs = slices.DeleteFunc(evs, func(e bus.CaseEvent) bool {
			_, sid, _, ok := e.Read()
			return !ok || !visible[strings.ToLower(sid)]
		})
	}
	limit := page.Limit
	if limit == 0 {
		limit = 100
	}
	from := min(page.Offset, len(evs))
	to := min(from+limit, len(evs))
	out := eventLog{Count: to - from, Offset: page.Offset, TotalCount: len(evs), EventLog: make([]string, 0, to-from)}
	for _, e := range evs[from:to] {
		out.EventLog = append(out.EventLog, e.Token)
	}
	return out, nil
}

// publishPending publishes the create- and submit-submission of subs that
// evs lacks and the outbox holds, and reports whether it published any.
func (a *API) publishPending(ctx context.Context, subs []store.Submission, evs []bus.CaseEvent) (bool, error) {
	if a.issuer == nil {
		return false, nil
	}
	have := make(map[string]bool, len(evs))
	for _, e := range evs {
		if _, sid, uri, ok := e.Read(); ok {
			have[sid+" "+uri] = true
		}
	}
	published := false
	for _, s := range subs {
		for _, uri := range []string{set.CreateSubmission, set.SubmitSubmission} {
			if have[s.ID+" "+uri] {
				continue
			}
			e, err := a.bus.OutboxEntryOf(ctx, a.issuer.JTI(s.ID, uri))
			if errors.Is(err, bus.ErrNotFound) {
				continue
			}
			if err != nil {
				return false, err
			}
			if _, err := a.issuer.Publish(ctx, e.Claims); err != nil {
				return false, err
			}
			// A signer that has it too finds it published (the issuer
			// publishes once) or gone.
			if err := a.bus.DeleteState(ctx, e.Key()); err != nil {
				return false, err
			}
			published = true
		}
	}
	return published, nil
}

// receiverEvents are the events a destination may post.
var receiverEvents = []string{set.AcceptSubmission, set.RejectSubmission, set.ForwardSubmission}

// handlePostEvent answers POST /v1/cases/{caseId}/events: a receiver of
// the destination answers a submission with a SET signed by the
// destination's signing key. The gateway verifies the signature, issuer,
// subject, case and payload (accept-submission must echo the
// submit-submission's authentication tags) and publishes it to EVENTS if
// the submission's status allows it (409 otherwise). Posting the same
// token again answers 204 and changes nothing.
func (a *API) handlePostEvent(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	if err := asReceiver(p, "posting a receiver's event"); err != nil {
		return err
	}
	caseID, err := httpapi.PathUUID(r, "caseId")
	if err != nil {
		return err
	}
	// Permission before the body: a token that answers for none of the
	// case's destinations learns nothing of the case or of its SET.
	subs, err := a.caseSubmissions(r.Context(), caseID)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(subs, func(s store.Submission) bool { return p.Scopes.CanSubscribe(s.DestinationID) }) {
		return problem.CaseNotFound(caseID)
	}
	if err := httpapi.RequireContentType(r, joseContentType); err != nil {
		return err
	}
	raw, err := httpapi.ReadLimited(w, r, set.MaxTokenLen)
	if err != nil {
		return err
	}
	token := strings.TrimSpace(string(raw))
	ctx := r.Context()

	hdr, unverified, err := set.Parse(token)
	if err != nil {
		return eventProblem(err)
	}
	sid, err := unverified.SubmissionID()
	if err != nil {
		return eventProblem(err)
	}
	sub, err := a.store.Submission(ctx, sid)
	if errors.Is(err, store.ErrNotFound) {
		// As one of another destination is answered (receiverOf): the
		// answer must not tell which submission ids exist.
		return problem.SubmissionNotFound(sid)
	}
	if err != nil {
		return fmt.Errorf("read submission %s: %w", sid, err)
	}
	if err := receiverOf(p, sub); err != nil {
		return err
	}
	if txn, err := unverified.CaseID(); err != nil {
		return eventProblem(err)
	} else if txn != caseID {
		return problem.InvalidEvent("txn", fmt.Sprintf("txn names case %s, but the event is posted to case %s", txn, caseID))
	}
	if sub.CaseID != caseID {
		return problem.InvalidEvent("sub", fmt.Sprintf("submission %s belongs to case %s, not to case %s", sid, sub.CaseID, caseID))
	}
	if !strings.EqualFold(unverified.Issuer, sub.DestinationID) {
		return problem.InvalidEvent("iss", fmt.Sprintf("iss must be the destination id %s, got %q", sub.DestinationID, unverified.Issuer))
	}
	pub, err := a.signingKey(ctx, sub.DestinationID, hdr.KID)
	if err != nil {
		return err
	}
	claims, err := set.Verifier{Now: a.now}.Verify(token, pub)
	if err == nil {
		err = claims.CheckNew()
	}
	if err != nil {
		return eventProblem(err)
	}
	// A decision cannot predate what it decides on; set.DefaultSkew
	// allows for the receiver's clock as it does for iat in the future.
	if earliest := sub.CreatedAt.Add(-set.DefaultSkew); claims.IssuedAt.Before(earliest) {
		return problem.InvalidEvent("iat", fmt.Sprintf("iat %s is before submission %s was created at %s",
			claims.IssuedAt.UTC().Format(time.RFC3339), sid, sub.CreatedAt.UTC().Format(time.RFC3339)))
	}
	uri, payload, err := claims.Event()
	if err != nil {
		return eventProblem(err)
	}
	if !slices.Contains(receiverEvents, uri) {
		return problem.InvalidEvent("events", fmt.Sprintf("a destination posts accept-, reject- or forward-submission, not %s", set.Name(uri)))
	}
	switch uri {
	case set.AcceptSubmission:
		if err := a.checkAcceptTags(r, sid, claims); err != nil {
			return err
		}
	case set.ForwardSubmission:
		if err := a.checkForwardTarget(ctx, sid, payload); err != nil {
			return err
		}
	}

	return a.publishDecision(w, r, sid, caseID, uri, claims, token)
}

// checkForwardTarget checks a forward-submission's forwardedTo, when it
// names one: another submission of this installation, submitted, of the
// destination and case it names, so that the case shows where the content
// went.
func (a *API) checkForwardTarget(ctx context.Context, sid string, payload json.RawMessage) error {
	var p set.ForwardPayload
	if err := json.Unmarshal(payload, &p); err != nil || p.ForwardedTo == nil {
		// Checked by set.Claims.Validate; absent, it names nothing.
		return nil
	}
	to := p.ForwardedTo
	target, err := a.store.Submission(ctx, strings.ToLower(to.SubmissionID))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("read submission %s: %w", to.SubmissionID, err)
	}
	// One answer for every mismatch: which part differs would tell the
	// destination, case or status of another client's submission.
	refused := problem.InvalidEvent("forwardedTo", fmt.Sprintf("forwardedTo names no other submitted submission %s to destination %s in case %s",
		to.SubmissionID, to.DestinationID, to.CaseID))
	if err != nil || strings.EqualFold(target.ID, sid) ||
		!strings.EqualFold(target.DestinationID, to.DestinationID) || !strings.EqualFold(target.CaseID, to.CaseID) {
		return refused
	}
	status, err := a.statusOf(ctx, target)
	if err != nil {
		return err
	}
	if status == sealed.Incomplete {
		return refused
	}
	return nil
}

// maxDecisionTries bounds how often a receiver's event is decided again
// after the case changed between reading it and publishing.
const maxDecisionTries = 5

// publishDecision publishes a receiver's verified event to EVENTS after
// deciding it against the case as EVENTS holds it: the same token again
// is done (204), its jti on another event of the case is a 409, and the
// status its submission's events lead to must allow it (409 otherwise).
// The publish expects the case's last event to be the one read, so two
// decisions about one submission cannot both pass; the ledger then
// projects it into the store.
func (a *API) publishDecision(w http.ResponseWriter, r *http.Request, sid, caseID, uri string, claims set.Claims, token string) error {
	ctx := r.Context()
	failpoint.KillFor("decision.before-read", set.Name(uri))
	for try := 1; ; try++ {
		evs, err := a.bus.CaseEvents(ctx, caseID)
		if err != nil {
			return a.api.Unavailable(r, "read the case's events", err)
		}
		progress := sealed.Progress{Status: sealed.Incomplete}
		var last uint64
		for _, e := range evs {
			last = e.Seq
			c, esid, euri, ok := e.Read()
			if !ok {
				continue
			}
			// A UUID names one event whatever the case of its letters.
			if strings.EqualFold(c.JTI, claims.JTI) {
				if e.Token == token {
					w.WriteHeader(http.StatusNoContent)
					return nil
				}
				return problem.Conflict("jti", fmt.Sprintf("jti %s was used by another event of case %s", claims.JTI, caseID))
			}
			if esid == sid {
				_, _ = progress.Apply(euri, c.IssuedAt)
			}
		}
		if progress.PickedUpAt == nil && (progress.Status == sealed.Submitted || progress.Status == sealed.Forwarded) {
			return problem.InvalidTransition(fmt.Sprintf("submission %s was never fetched by a receiver; %s decides on what was fetched", sid, set.Name(uri)))
		}
		if _, err := progress.Apply(uri, claims.IssuedAt); err != nil {
			return problem.InvalidTransition(fmt.Sprintf("submission %s is %s; %s is not allowed", sid, progress.Status, set.Name(uri)))
		}
		if err := a.claimJTI(r, claims.JTI, caseID); err != nil {
			return err
		}
		failpoint.KillFor("decision.before-publish", set.Name(uri))
		ack, err := a.bus.PublishEvent(ctx, a.url, claims, token, bus.ExpectLast(last))
		switch {
		case errors.Is(err, bus.ErrStale) && try < maxDecisionTries:
			continue
		case err != nil:
			return a.api.Unavailable(r, "publish event", err)
		case ack.Duplicate:
			// EVENTS holds another message under this jti: this one was
			// not stored.
			e, err := a.bus.EventAt(ctx, ack.Sequence)
			if err != nil {
				return a.api.Unavailable(r, "read the event stored under the jti", err)
			}
			if e.Token != token {
				return problem.Conflict("jti", fmt.Sprintf("jti %s is used by another event", claims.JTI))
			}
		}
		failpoint.KillFor("decision.before-answer", set.Name(uri))
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

// claimJTI claims a receiver's jti for caseID: a jti names one event in
// all of Amtsbote, and one used in another case would make the store and
// EVENTS' duplicate window drop this event as a repeat of that one. A
// claim of the same case stands from an earlier try that did not publish.
func (a *API) claimJTI(r *http.Request, jti, caseID string) error {
	ctx := r.Context()
	key := sealed.JTIClaimKey(jti)
	_, err := a.bus.CreateState(ctx, key, []byte(caseID))
	if err == nil {
		return nil
	}
	if !errors.Is(err, bus.ErrRevisionMismatch) {
		return a.api.Unavailable(r, "claim the event's jti", err)
	}
	e, err := a.bus.GetState(ctx, key)
	if err != nil {
		return a.api.Unavailable(r, "read the claim of the event's jti", err)
	}
	if string(e.Value) != caseID {
		return problem.Conflict("jti", fmt.Sprintf("jti %s is used by an event of another case", jti))
	}
	return nil
}

// signingKey returns the destination's signing key kid, valid now.
func (a *API) signingKey(ctx context.Context, destinationID, kid string) (*rsa.PublicKey, error) {
	k, err := a.store.Key(ctx, destinationID, kid)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, problem.InvalidEvent("header.kid", fmt.Sprintf("kid %q is not a key of destination %s", kid, destinationID))
	case err != nil:
		return nil, fmt.Errorf("read key %s of %s: %w", kid, destinationID, err)
	case k.Use != store.UseSigning:
		return nil, problem.InvalidEvent("header.kid", fmt.Sprintf("kid %q is destination %s's %s key, not its signing key", kid, destinationID, k.Use))
	case !k.ValidAt(a.now()):
		return nil, problem.InvalidEvent("header.kid", fmt.Sprintf("signing key %q of destination %s is retired", kid, destinationID))
	}
	jwk, err := jose.ValidatePublicKey(k.JWK, jose.Signing)
	if err != nil {
		return nil, fmt.Errorf("stored signing key %s of %s: %w", kid, destinationID, err)
	}
	pub, ok := jwk.Key.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("stored signing key %s of %s is a %T", kid, destinationID, jwk.Key)
	}
	return pub, nil
}

// checkAcceptTags compares an accept-submission's authentication tags
// with those of the submission's submit, naming the first that differs.
func (a *API) checkAcceptTags(r *http.Request, sid string, c set.Claims) error {
	got, err := c.Tags()
	if err != nil {
		return eventProblem(err)
	}
	e, err := a.bus.GetState(r.Context(), sealed.TagsKey(sid))
	if errors.Is(err, bus.ErrNotFound) {
		return problem.InvalidEvent("authenticationTags", fmt.Sprintf("submission %s has no authentication tags to accept: it was not submitted", sid))
	}
	if err != nil {
		return a.api.Unavailable(r, "read authentication tags", err)
	}
	var want set.AuthenticationTags
	if err := json.Unmarshal(e.Value, &want); err != nil {
		return fmt.Errorf("authentication tags of %s: %w", sid, err)
	}
	if got.Equal(want) {
		return nil
	}
	field := "authenticationTags"
	switch {
	case got.Metadata != want.Metadata:
		field += ".metadata"
	case got.Data != want.Data:
		field += ".data"
	default:
		field += ".attachments"
		for aid, tag := range want.Attachments {
			if got.Attachments[aid] != tag {
				field += "." + aid
				break
			}
		}
	}
	return problem.InvalidEvent(field, fmt.Sprintf("%s does not match the submit-submission event of submission %s", field, sid))
}

// eventProblem maps a SET rule violation to its answer: 400 for a token
// that is not a SET, 422 for one that breaks a rule of signature or claims.
func eventProblem(err error) error {
	var re *set.RuleError
	if !errors.As(err, &re) {
		return err
	}
	if errors.Is(err, set.ErrMalformed) {
		return problem.MalformedEvent(re.Field, re.Reason)
	}
	return problem.InvalidEvent(re.Field, re.Reason)
}
