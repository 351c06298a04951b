package submission

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/scope"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/gateway/httpapi"
)

// joseContentType is the media type of a compact JWE.
const joseContentType = "application/jose"

// errUploadRefused stops an object upload whose content broke a rule.
var errUploadRefused = errors.New("upload refused")

// handlePutAttachment answers PUT
// /v1/submissions/{submissionId}/attachments/{attachmentId}: the creator
// uploads an announced attachment, a compact JWE to one of the
// destination's encryption keys, before submit. The body streams through
// the JWE checks into the object store and is never held whole; an
// attachment that breaks a rule or the size limit is not stored. Uploading
// again replaces it.
func (a *API) handlePutAttachment(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	if err := asSender(p); err != nil {
		return err
	}
	sid, err := httpapi.PathUUID(r, "submissionId")
	if err != nil {
		return err
	}
	aid, err := httpapi.PathUUID(r, "attachmentId")
	if err != nil {
		return err
	}
	if err := httpapi.RequireContentType(r, joseContentType); err != nil {
		return err
	}
	limit := a.maxAttachment
	if r.ContentLength > limit {
		return problem.BodyTooLarge(limit)
	}
	ctx := r.Context()
	sub, err := a.loadSubmission(ctx, sid)
	if err != nil {
		return err
	}
	if err := a.ownCovered(ctx, p, sub); err != nil {
		return err
	}
	if err := a.beforeSubmit(ctx, sub); err != nil {
		return err
	}
	if !slices.Contains(sub.AnnouncedAttachments, aid) {
		return problem.AttachmentNotAnnounced(sid, aid)
	}

	body := http.MaxBytesReader(w, r.Body, limit+1)
	// The object goes on being written once the upload holds its commit
	// entry for at most commitFor, and not once the entry is lost: a
	// submit waits for it no longer.
	putCtx, cancelPut := context.WithCancel(ctx)
	defer cancelPut()
	unlock := func() {}
	defer func() { unlock() }()
	jwe, info, err := a.streamAttachment(putCtx, body, sealed.AttachmentObject(sid, aid), limit, func(j jose.JWE) error {
		if err := a.checkEncryptionKey(ctx, sub.DestinationID, j, ""); err != nil {
			return err
		}
		u, err := a.commitUpload(ctx, sub, aid, cancelPut)
		if err != nil {
			return err
		}
		bound := time.AfterFunc(commitFor, cancelPut)
		unlock = func() { bound.Stop(); u() }
		return nil
	})
	if err != nil {
		return retryLater(w, a.uploadProblem(r, err, limit))
	}
	// The tag alone as well, for a gateway of an earlier release that
	// takes the submit during a rolling upgrade.
	for key, value := range map[string][]byte{
		sealed.AttachmentUploadKey(sid, aid): sealed.AttachmentUpload(jwe.AuthTag, info.Digest),
		sealed.AttachmentTagKey(sid, aid):    []byte(jwe.AuthTag),
	} {
		if _, err := a.bus.PutState(ctx, key, value); err != nil {
			return retryLater(w, a.api.Unavailable(r, "store attachment tag", err))
		}
	}
	_, err = a.store.UpdateSubmission(ctx, sid, func(s *store.Submission) error {
		if !slices.Contains(s.UploadedAttachments, aid) {
			s.UploadedAttachments = append(s.UploadedAttachments, aid)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record attachment %s of %s: %w", aid, sid, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// beforeSubmit refuses a change of sub's content once it is submitted:
// its status says so, or, before the ledger projected the submit, the
// submit's permanent record does.
func (a *API) beforeSubmit(ctx context.Context, sub store.Submission) error {
	status, err := a.statusOf(ctx, sub)
	if err != nil || status == sealed.Incomplete {
		return err
	}
	return problem.SubmissionState("submissionId",
		fmt.Sprintf("submission %s is %s; attachments are uploaded before submit", sub.ID, status))
}

// statusOf is sub's status, submitted already when the submit's permanent
// record says so before the ledger projected it.
func (a *API) statusOf(ctx context.Context, sub store.Submission) (sealed.Status, error) {
	if sub.Status != sealed.Incomplete {
		return sub.Status, nil
	}
	_, err := a.store.Idempotency(ctx, submitKey(sub.ID))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return sealed.Incomplete, nil
	case err != nil:
		return "", fmt.Errorf("read submit record of %s: %w", sub.ID, err)
	}
	return sealed.Submitted, nil
}

// uploadError carries a failure of the object store, as opposed to one of
// the upload's content or of reading the request.
type uploadError struct{ err error }

func (e *uploadError) Error() string { return e.err.Error() }
func (e *uploadError) Unwrap() error { return e.err }

// streamAttachment copies a compact JWE from body into the object store
// under name while jose.ScanJWE checks it, through a pipe, so memory use
// does not grow with the attachment. check sees the JWE's header once the
// whole JWE passed; if the scan or check fails, the object store is told
// to drop the partial upload and any earlier object of that name stays.
func (a *API) streamAttachment(ctx context.Context, body io.Reader, name string, limit int64, check func(jose.JWE) error) (jose.JWE, bus.ObjectInfo, error) {
	pr, pw := io.Pipe()
	type result struct {
		info bus.ObjectInfo
		err  error
	}
	stored := make(chan result, 1)
	go func() {
		info, err := a.bus.PutObject(ctx, name, pr)
		// Unblocks the scan's writes if the store gave up first.
		pr.CloseWithError(&uploadError{err: err})
		stored <- result{info, err}
	}()
	jwe, _, err := jose.ScanJWE(body, pw, limit)
	if err == nil {
		err = check(jwe)
	}
	if err != nil {
		pw.CloseWithError(errUploadRefused)
		if put := <-stored; put.err != nil && !errors.Is(put.err, errUploadRefused) && !isContentError(err) {
			return jose.JWE{}, bus.ObjectInfo{}, &uploadError{err: put.err}
		}
		return jose.JWE{}, bus.ObjectInfo{}, err
	}
	pw.Close()
	put := <-stored
	if put.err != nil {
		return jose.JWE{}, bus.ObjectInfo{}, &uploadError{err: put.err}
	}
	return jwe, put.info, nil
}

// isContentError reports whether err is about the uploaded content itself.
func isContentError(err error) bool {
	_, isProblem := problem.As(err)
	var mbe *http.MaxBytesError
	return isProblem || errors.Is(err, jose.ErrJWE) || errors.Is(err, jose.ErrTooLarge) || errors.As(err, &mbe)
}

// uploadProblem maps a failed upload to its answer.
func (a *API) uploadProblem(r *http.Request, err error, limit int64) error {
	var (
		ue  *uploadError
		mbe *http.MaxBytesError
	)
	switch {
	case errors.Is(err, jose.ErrTooLarge), errors.As(err, &mbe):
		return problem.BodyTooLarge(limit)
	case errors.Is(err, jose.ErrJWE):
		return jweProblem("", err)
	case errors.As(err, &ue):
		if r.Context().Err() != nil {
			return problem.InvalidRequest("body", "the upload was cut off")
		}
		return a.api.Unavailable(r, "store attachment", ue.err)
	}
	if _, ok := problem.As(err); ok {
		return err
	}
	return problem.InvalidRequest("body", fmt.Sprintf("reading the attachment: %v", err))
}

// fetchable reports whether a receiver may fetch s (sealed.Progress.Fetchable).
func fetchable(s store.Submission) error {
	if err := s.Fetchable(s.RoutedAt != nil); err != nil {
		p := problem.SubmissionNotFound(s.ID)
		p.Detail = fmt.Sprintf("submissionId: submission %s cannot be fetched: %v; only routed submissions in status submitted or forwarded can be fetched", s.ID, err)
		return p
	}
	return nil
}

// asReceiver refuses a token without any subscribe scope before a
// submission is looked up, so that its answer does not depend on whether
// the submission exists; what names the request refused ("picking up
// submissions").
func asReceiver(p httpapi.Principal, what string) error {
	if len(p.Scopes.Subscribed()) == 0 {
		return httpapi.Forbidden(scope.Subscribe+"<destinationId>", what+" requires a subscribe:destination scope")
	}
	return nil
}

// receiverOf checks that p may pick up s. A submission of a destination
// p does not subscribe to is answered as one that does not exist.
func receiverOf(p httpapi.Principal, s store.Submission) error {
	if !p.Scopes.CanSubscribe(s.DestinationID) {
		return problem.SubmissionNotFound(s.ID)
	}
	return nil
}

// handleGetAttachment answers GET
// /v1/submissions/{submissionId}/attachments/{attachmentId}: the JWE as
// uploaded, streamed from the object store.
func (a *API) handleGetAttachment(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	if err := asReceiver(p, "picking up submissions"); err != nil {
		return err
	}
	sid, err := httpapi.PathUUID(r, "submissionId")
	if err != nil {
		return err
	}
	aid, err := httpapi.PathUUID(r, "attachmentId")
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
	if !slices.Contains(sub.UploadedAttachments, aid) {
		return problem.AttachmentNotFound(sid, aid)
	}
	name := sealed.AttachmentObject(sid, aid)
	info, err := a.bus.StatObject(ctx, name)
	if errors.Is(err, bus.ErrNotFound) {
		return problem.AttachmentNotFound(sid, aid)
	}
	if err != nil {
		return retryLater(w, a.api.Unavailable(r, "read attachment", err))
	}
	// Small attachments are read whole and checked before the status goes
	// out, so a corrupt one is a 500. Larger ones are streamed once, read
	// as the client reads, so memory does not grow with them; their digest
	// is checked at the end, and a corrupt one cuts the answer short of its
	// Content-Length, which every HTTP client reports as an error.
	if info.Size <= verifyInMemory {
		small, err := a.bus.ReadObject(ctx, name)
		if err != nil {
			return a.objectProblem(w, r, name, "read attachment", err, problem.AttachmentNotFound(sid, aid))
		}
		setAttachmentHeaders(w, info.Size)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(small)
		return nil
	}
	rc, err := a.bus.GetObject(ctx, name)
	if err != nil {
		return a.objectProblem(w, r, name, "read attachment", err, problem.AttachmentNotFound(sid, aid))
	}
	defer rc.Close()
	setAttachmentHeaders(w, info.Size)
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, rc); err != nil {
		if errors.Is(err, bus.ErrCorrupt) {
			if derr := a.bus.DeadLetterObject(ctx, name, err); derr != nil {
				a.api.Log.ErrorContext(ctx, "corrupt object not dead-lettered", "object", name, "err", derr)
			}
		}
		// The status is sent; cutting the connection is the only way left
		// to tell the client the attachment is incomplete.
		a.api.Log.WarnContext(ctx, "attachment cut off", "submission_id", sid, "attachment_id", aid, "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

// setAttachmentHeaders sets the headers of an attachment's answer.
func setAttachmentHeaders(w http.ResponseWriter, size uint64) {
	w.Header().Set("Content-Type", joseContentType)
	w.Header().Set("Content-Length", strconv.FormatUint(size, 10))
	w.Header().Set("Cache-Control", "no-store")
}

// verifyInMemory is the largest attachment read into memory, and checked,
// before it is answered.
const verifyInMemory = 1 << 20

// objectProblem answers a failed read of the object name: notFound if it is
// gone; for a corrupt one, a dead letter naming it and the reason and a 500,
// since the sender's upload cannot be recovered from here; 503 with
// Retry-After otherwise.
func (a *API) objectProblem(w http.ResponseWriter, r *http.Request, name, op string, err error, notFound error) error {
	switch {
	case errors.Is(err, bus.ErrNotFound):
		return notFound
	case errors.Is(err, bus.ErrCorrupt):
		if derr := a.bus.DeadLetterObject(r.Context(), name, err); derr != nil {
			a.api.Log.ErrorContext(r.Context(), "corrupt object not dead-lettered", "object", name, "err", derr)
		}
		return fmt.Errorf("%s %s: %w", op, name, err)
	}
	return retryLater(w, a.api.Unavailable(r, op, err))
}

// retryAfter is what a 503 asks the client to wait, in seconds.
const retryAfter = "5"

// retryLater adds Retry-After to a 503 answer and returns err unchanged.
func retryLater(w http.ResponseWriter, err error) error {
	if p, ok := problem.As(err); ok && p.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfter)
	}
	return err
}
