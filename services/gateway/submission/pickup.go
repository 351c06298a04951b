package submission

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/scope"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/pkg/strictjson"
	"github.com/amtsbote/amtsbote/services/gateway/httpapi"
)

// submissionForPickup is FIT-Connect's SubmissionForPickup.
type submissionForPickup struct {
	DestinationID string `json:"destinationId"`
	SubmissionID  string `json:"submissionId"`
	CaseID        string `json:"caseId"`
}

// submissionsForPickup is FIT-Connect's SubmissionsForPickup.
type submissionsForPickup struct {
	Count       int                   `json:"count"`
	Offset      int                   `json:"offset"`
	TotalCount  int                   `json:"totalCount"`
	Submissions []submissionForPickup `json:"submissions"`
}

// handlePickupList answers GET /v1/submissions: the submissions ready for
// pickup (routed, status submitted), of destinationId or, without it, of
// every destination the token subscribes to; oldest first, paged with
// limit and offset. A fetched submission stays listed until it is
// answered or deleted, so a receiver whose fetch failed fetches it again.
func (a *API) handlePickupList(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	page, err := httpapi.PageOf(r)
	if err != nil {
		return err
	}
	q, err := httpapi.Query(r)
	if err != nil {
		return err
	}
	raw, _, err := httpapi.QueryParam(q, "destinationId")
	if err != nil {
		return err
	}
	var ids []string
	if raw != "" {
		id, ok := httpapi.CanonicalUUID(raw)
		if !ok {
			return problem.InvalidRequest("destinationId", fmt.Sprintf("destinationId %q is not a UUID", raw))
		}
		if !p.Scopes.CanSubscribe(id) {
			return httpapi.Forbidden(scope.Subscribe+id, fmt.Sprintf("listing destination %s's submissions requires scope %s%s", id, scope.Subscribe, id))
		}
		ids = []string{id}
	} else if ids = p.Scopes.Subscribed(); len(ids) == 0 {
		return httpapi.Forbidden(scope.Subscribe+"<destinationId>", "listing submissions requires a subscribe:destination:<destinationId> scope")
	}
	list, total, err := a.store.PickupList(r.Context(), ids, page)
	if err != nil {
		return fmt.Errorf("pickup list: %w", err)
	}
	out := submissionsForPickup{Count: len(list), Offset: page.Offset, TotalCount: total, Submissions: make([]submissionForPickup, 0, len(list))}
	for _, s := range list {
		out.Submissions = append(out.Submissions, submissionForPickup{DestinationID: s.DestinationID, SubmissionID: s.ID, CaseID: s.CaseID})
	}
	w.Header().Set("Cache-Control", "no-store")
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// submissionView is FIT-Connect's Submission: the reduced view with the
// sealed metadata and data.
type submissionView struct {
	submissionReduced
	EncryptedMetadata string `json:"encryptedMetadata"`
	EncryptedData     string `json:"encryptedData,omitempty"`
}

// handleGetSubmission answers GET /v1/submissions/{submissionId}: a
// receiver of the destination fetches the sealed submission. The first
// fetch publishes the notify-submission event, from which the retention
// deadlines count; the submission stays on the pickup list. A HEAD
// request answers the same headers and publishes nothing.
func (a *API) handleGetSubmission(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	if err := asReceiver(p, "picking up submissions"); err != nil {
		return err
	}
	sid, err := httpapi.PathUUID(r, "submissionId")
	if err != nil {
		return err
	}
	ctx := r.Context()
	sub, err := a.loadSubmission(ctx, sid)
	if err != nil {
		return err
	}
	if err := receiverOf(p, sub); err != nil {
		return err
	}
	if err := fetchable(sub); err != nil {
		return err
	}
	// Small payloads are kept under their key, larger ones (and those
	// submitted before payloads were kept so) as objects.
	name := sealed.PayloadKey(sid)
	raw, err := a.bus.GetCheckedState(ctx, name)
	if errors.Is(err, bus.ErrNotFound) {
		name = sealed.PayloadObject(sid)
		raw, err = a.bus.ReadObject(ctx, name)
	}
	if err != nil {
		return a.objectProblem(w, r, name, "read payload", err, fmt.Errorf("fetch %s: payload missing: %w", sid, err))
	}
	var payload sealed.Payload
	// Its two JWEs are read by the checking scan alone (a flat struct)
	// and refer to raw, which is the payload's alone.
	if err := strictjson.Decode(raw, &payload, strictjson.Options{ShareLong: true}); err != nil {
		return fmt.Errorf("fetch %s: payload: %w", sid, err)
	}

	// HEAD is safe (RFC 9110 §9.2.1): it answers as GET without picking up.
	if sub.PickedUpAt == nil && r.Method != http.MethodHead {
		// Published before the answer, so that the pickup stands in the
		// case before a receiver can answer; the issuer publishes it once.
		if _, err := a.issuer.Issue(ctx, set.NotifySubmission, sid, sub.CaseID, nil); err != nil {
			return a.api.Unavailable(r, "publish notify-submission", err)
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	httpapi.WriteJSON(w, http.StatusOK, submissionView{
		submissionReduced: reducedView(sub),
		EncryptedMetadata: payload.EncryptedMetadata,
		EncryptedData:     payload.EncryptedData,
	})
	return nil
}
