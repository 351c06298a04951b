package client

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha512"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/set"
)

// Receiver is the receiving side of the Submission API: an authority's
// back office that picks up its destinations' submissions.
type Receiver struct{ c *Client }

// Errors of a Receiver's checks. A *CheckError wraps them.
var (
	// ErrHashMismatch means decrypted content differs from its hash in the metadata.
	ErrHashMismatch = errors.New("hash mismatch")
	// ErrUnknownKey means no key of the ring has the JWE's kid.
	ErrUnknownKey = errors.New("no private key for the kid")
	// ErrSyntax means the data is not of the media type its schema names:
	// not JSON for application/json, not well-formed XML for
	// application/xml.
	ErrSyntax = errors.New("data does not parse as its media type")
	// ErrContentMismatch means the parts of a submission do not fit
	// together: attachments or data the metadata does not list, or listed
	// ones that are missing.
	ErrContentMismatch = errors.New("content does not match the metadata")
	// ErrNotVerified means Accept was asked for a submission that has not
	// passed every check of Fetch.
	ErrNotVerified = errors.New("submission not verified")
)

// KeyRing holds a destination's private encryption keys by kid: the
// current one and, after a key roll, the previous ones that submissions
// in flight were encrypted to.
type KeyRing map[string]*rsa.PrivateKey

// NewKeyRing returns a ring of encryption key pairs.
func NewKeyRing(pairs ...jose.KeyPair) (KeyRing, error) {
	ring := make(KeyRing, len(pairs))
	for _, kp := range pairs {
		if kp.Purpose != jose.Encryption || kp.Private == nil || kp.Public.KeyID == "" {
			return nil, fmt.Errorf("new key ring: key %q is not a private encryption key with a kid", kp.Public.KeyID)
		}
		ring[kp.Public.KeyID] = kp.Private
	}
	return ring, nil
}

func (k KeyRing) key(kid string) (*rsa.PrivateKey, error) {
	if priv, ok := k[kid]; ok && priv != nil {
		return priv, nil
	}
	return nil, &UnknownKeyError{KID: kid}
}

// UnknownKeyError is ErrUnknownKey naming the JWE's kid.
type UnknownKeyError struct{ KID string }

// Error implements error.
func (e *UnknownKeyError) Error() string { return fmt.Sprintf("%v %q", ErrUnknownKey, e.KID) }

// Is makes it ErrUnknownKey.
func (e *UnknownKeyError) Is(target error) bool { return target == ErrUnknownKey }

// Pickup names a submission ready for pickup.
type Pickup struct {
	DestinationID string `json:"destinationId"`
	SubmissionID  string `json:"submissionId"`
	CaseID        string `json:"caseId"`
}

// PickupList is one page of submissions ready for pickup.
type PickupList struct {
	Count       int      `json:"count"`
	Offset      int      `json:"offset"`
	TotalCount  int      `json:"totalCount"`
	Submissions []Pickup `json:"submissions"`
}

// ListSubmissions reads one page of the destination's submissions ready
// for pickup (GET /v1/submissions?destinationId=…). A limit of 0 leaves
// the server's default (100); the most is 500.
func (r *Receiver) ListSubmissions(ctx context.Context, destinationID string, limit, offset int) (PickupList, error) {
	if limit < 0 || limit > eventPage || offset < 0 {
		return PickupList{}, fmt.Errorf("list submissions of %s: limit must be 0 to %d and offset not negative", destinationID, eventPage)
	}
	q := url.Values{"destinationId": {destinationID}}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	if offset > 0 {
		q.Set("offset", fmt.Sprint(offset))
	}
	var l PickupList
	if err := r.c.getJSON(ctx, "/v1/submissions?"+q.Encode(), false, &l); err != nil {
		return PickupList{}, fmt.Errorf("list submissions of %s: %w", destinationID, err)
	}
	return l, nil
}

// EventLog reads and verifies the case's event log, as Sender.EventLog does.
func (r *Receiver) EventLog(ctx context.Context, caseID string) ([]Event, error) {
	return r.c.eventLog(ctx, caseID)
}

// Received is a fetched submission.
type Received struct {
	DestinationID string
	SubmissionID  string
	CaseID        string
	// ServiceType as the sender announced it to the backbone.
	ServiceType ServiceType
	Metadata    Metadata
	// Data is the decrypted specialist data, nil when there is none.
	Data []byte
	// DataMimeType is the data schema's media type, from the metadata.
	DataMimeType string
	Attachments  []ReceivedAttachment
	// AuthenticationTags of the JWEs as received; Accept echoes them.
	AuthenticationTags set.AuthenticationTags

	verified bool
	// decision is the decision last signed for the submission, kept until
	// it is refused so that Accept or Reject after a lost answer or a
	// crashed server posts the same token again.
	decision decision
	// decidedBefore: the last decision found the same one recorded.
	decidedBefore bool
	// forwarded: the event log Fetch read holds a forward-submission.
	forwarded bool
}

// decision is a signed accept- or reject-submission.
type decision struct {
	event    string
	problems []set.Problem
	token    string
}

// Verified reports whether the submission passed every check of Fetch.
func (r *Received) Verified() bool { return r.verified }

// Forwarded reports whether the case's event log, as Fetch read it, holds
// a forward-submission of the submission: FIT-Connect still hands a
// forwarded submission out, and its content went elsewhere.
func (r *Received) Forwarded() bool { return r.forwarded }

// DecidedBefore reports whether the last Accept, Reject or Forward, which
// succeeded, found the destination's same decision recorded already (by
// another receiver of the destination) rather than recording it.
func (r *Received) DecidedBefore() bool { return r.decidedBefore }

// Close removes the attachment files.
func (r *Received) Close() error {
	var errs []error
	for i := range r.Attachments {
		if p := r.Attachments[i].Path; p != "" {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			r.Attachments[i].Path = ""
		}
	}
	return errors.Join(errs...)
}

// ReceivedAttachment is a decrypted attachment, stored in a file.
type ReceivedAttachment struct {
	AttachmentInfo
	// Size of the plaintext in bytes.
	Size int64
	// Path of the file holding the plaintext, until Received.Close.
	Path string
}

// Open opens the attachment's plaintext.
func (a ReceivedAttachment) Open() (*os.File, error) {
	if a.Path == "" {
		return nil, fmt.Errorf("open attachment %s: not stored", a.ID)
	}
	return os.Open(a.Path)
}

// Bytes reads the whole attachment into memory.
func (a ReceivedAttachment) Bytes() ([]byte, error) {
	if a.Path == "" {
		return nil, fmt.Errorf("read attachment %s: not stored", a.ID)
	}
	return os.ReadFile(a.Path)
}

// CheckError says which part of a received submission failed which check.
// It means the submission itself is broken: reject it with Problem.
type CheckError struct {
	// Part is "submission", "metadata", "data" or "attachment:<id>".
	Part string
	// Err wraps ErrHashMismatch, ErrTagMismatch, ErrInvalidMetadata,
	// ErrContentMismatch, ErrUnknownKey, jose.ErrJWE or jose.ErrDecrypt.
	Err error
}

// Error implements error.
func (e *CheckError) Error() string { return e.Part + ": " + e.Err.Error() }

// Unwrap returns Err.
func (e *CheckError) Unwrap() error { return e.Err }

// Problem returns a reject-submission problem describing the failure, with
// the part as its instance.
func (e *CheckError) Problem() set.Problem {
	typ, title := "invalid-submission", "Invalid submission"
	switch {
	case errors.Is(e.Err, ErrHashMismatch):
		typ, title = "hash-mismatch", "Hash mismatch"
	case errors.Is(e.Err, ErrTagMismatch):
		typ, title = "authentication-tag-mismatch", "Authentication tag mismatch"
	case errors.Is(e.Err, ErrInvalidMetadata):
		typ, title = "invalid-metadata", "Invalid metadata"
	case errors.Is(e.Err, ErrSyntax):
		typ, title = "syntax-violation", "Data does not parse as its media type"
	case errors.Is(e.Err, ErrContentMismatch):
		typ, title = "content-mismatch", "Content does not match the metadata"
	case errors.Is(e.Err, ErrUnknownKey):
		typ, title = "unknown-key", "Encrypted to an unknown key"
	case errors.Is(e.Err, jose.ErrDecrypt):
		typ, title = "decryption-failed", "Decryption failed"
	case errors.Is(e.Err, jose.ErrJWE):
		typ, title = "invalid-jwe", "Invalid JWE"
	}
	return set.Problem{Type: problem.Base + typ, Title: title, Detail: e.Err.Error(), Instance: e.Part}
}

func checkErr(part string, err error) error { return &CheckError{Part: part, Err: err} }

// wireSubmission is FIT-Connect's Submission as GET /v1/submissions/{id} answers.
type wireSubmission struct {
	DestinationID     string      `json:"destinationId"`
	SubmissionID      string      `json:"submissionId"`
	CaseID            string      `json:"caseId"`
	Attachments       []string    `json:"attachments"`
	ServiceType       ServiceType `json:"serviceType"`
	EncryptedMetadata string      `json:"encryptedMetadata"`
	EncryptedData     string      `json:"encryptedData"`
}

// Fetch picks up a submission and checks it completely: it reads the
// submission and the case's event log, checks the JWEs' authentication
// tags against the backbone's submit-submission event, decrypts the
// metadata with keys (by the JWE's kid) and checks it against the metadata
// schema's rules (or the schema given with MetadataSchema), decrypts the
// data and checks its SHA-512 hash, then downloads each attachment,
// decrypting and hashing it while it streams into a file.
//
// When a check fails Fetch returns the submission so far with a
// *CheckError, whose Problem serves Reject. Other errors (network, server,
// an event log that fails verification, local files, and an
// *UnknownKeyError for a key the destination publishes but keys lack)
// leave the submission as it is; fetch it again later. A submission already accepted
// or rejected is no longer fetched (404); a forwarded one still is, as
// FIT-Connect has it. Decided tells the decision.
// Close the Received when done with its attachments.
func (r *Receiver) Fetch(ctx context.Context, submissionID string, keys KeyRing) (*Received, error) {
	rec, err := r.fetch(ctx, submissionID, keys)
	if err != nil {
		if rec != nil {
			_ = rec.Close()
		}
		return rec, fmt.Errorf("fetch submission %s: %w", submissionID, err)
	}
	return rec, nil
}

func (r *Receiver) fetch(ctx context.Context, submissionID string, keys KeyRing) (*Received, error) {
	var ws wireSubmission
	if err := r.c.getJSON(ctx, "/v1/submissions/"+url.PathEscape(submissionID), false, &ws); err != nil {
		return nil, err
	}
	if !strings.EqualFold(ws.SubmissionID, submissionID) || !isUUID(ws.CaseID) || !isUUID(ws.DestinationID) {
		return nil, fmt.Errorf("answer names submission %q, case %q, destination %q", ws.SubmissionID, ws.CaseID, ws.DestinationID)
	}
	rec := &Received{
		DestinationID: strings.ToLower(ws.DestinationID), SubmissionID: strings.ToLower(ws.SubmissionID),
		CaseID: strings.ToLower(ws.CaseID), ServiceType: ws.ServiceType,
	}

	// Structure and tags first: they need no key and no download.
	metaJWE, err := jose.ParseJWE(ws.EncryptedMetadata)
	if err != nil {
		return rec, checkErr("metadata", err)
	}
	rec.AuthenticationTags.Metadata = metaJWE.AuthTag
	var dataJWE jose.JWE
	if ws.EncryptedData != "" {
		if dataJWE, err = jose.ParseJWE(ws.EncryptedData); err != nil {
			return rec, checkErr("data", err)
		}
		rec.AuthenticationTags.Data = dataJWE.AuthTag
	}
	announced := make([]string, len(ws.Attachments))
	for i, id := range ws.Attachments {
		announced[i] = strings.ToLower(id)
	}
	submitted, forwarded, err := r.submitTags(ctx, rec.CaseID, rec.SubmissionID)
	if err != nil {
		return rec, err
	}
	rec.forwarded = forwarded
	if submitted.Metadata != rec.AuthenticationTags.Metadata {
		return rec, checkErr("metadata", fmt.Errorf("%w: the JWE's tag differs from submit-submission's", ErrTagMismatch))
	}
	if submitted.Data != rec.AuthenticationTags.Data {
		return rec, checkErr("data", fmt.Errorf("%w: the JWE's tag differs from submit-submission's", ErrTagMismatch))
	}
	if !sameIDs(announced, mapKeys(submitted.Attachments)) {
		return rec, checkErr("submission", fmt.Errorf("%w: submit-submission lists other attachments than the submission", ErrTagMismatch))
	}

	plainMeta, err := decryptWith(keys, ws.EncryptedMetadata, metaJWE.KID)
	if err != nil {
		return rec, r.keyCheck(ctx, rec.DestinationID, "metadata", err)
	}
	if rec.Metadata, err = parseMetadata(plainMeta, r.c.schema); err != nil {
		return rec, checkErr("metadata", err)
	}
	cs := rec.Metadata.ContentStructure
	if pst := rec.Metadata.PublicServiceType; pst != nil && pst.Identifier != ws.ServiceType.Identifier {
		return rec, checkErr("metadata", fmt.Errorf("%w: publicServiceType %s differs from the announced service %s",
			ErrInvalidMetadata, pst.Identifier, ws.ServiceType.Identifier))
	}
	listed := make([]string, len(cs.Attachments))
	for i, a := range cs.Attachments {
		listed[i] = strings.ToLower(a.ID)
	}
	if !sameIDs(announced, listed) {
		return rec, checkErr("submission", fmt.Errorf("%w: the metadata lists attachments %v, the submission has %v", ErrContentMismatch, listed, announced))
	}
	switch {
	case cs.Data == nil && ws.EncryptedData != "":
		return rec, checkErr("data", fmt.Errorf("%w: data is present but the metadata describes none", ErrContentMismatch))
	case cs.Data != nil && ws.EncryptedData == "":
		return rec, checkErr("data", fmt.Errorf("%w: the metadata describes data but there is none", ErrContentMismatch))
	case cs.Data != nil:
		if rec.Data, err = decryptWith(keys, ws.EncryptedData, dataJWE.KID); err != nil {
			return rec, r.keyCheck(ctx, rec.DestinationID, "data", err)
		}
		if SHA512(rec.Data) != cs.Data.Hash {
			return rec, checkErr("data", fmt.Errorf("%w: SHA-512 of the data differs from the metadata's", ErrHashMismatch))
		}
		rec.DataMimeType = cs.Data.SubmissionSchema.MimeType
		if err := wellFormed(rec.Data, rec.DataMimeType); err != nil {
			return rec, checkErr("data", err)
		}
	}

	rec.AuthenticationTags.Attachments = submitted.Attachments
	for _, info := range cs.Attachments {
		a, err := r.download(ctx, rec.SubmissionID, info, keys, submitted.Attachments[strings.ToLower(info.ID)])
		if a.Path != "" {
			rec.Attachments = append(rec.Attachments, a)
		}
		var check *CheckError
		if errors.As(err, &check) && errors.Is(err, ErrUnknownKey) {
			err = r.keyCheck(ctx, rec.DestinationID, check.Part, check.Err)
		}
		if err != nil {
			return rec, err
		}
	}
	rec.verified = true
	return rec, nil
}

// submitTags finds the backbone's submit-submission event of the
// submission, and whether the log holds its forward-submission. The
// backbone signs and records it asynchronously, so a missing event is
// looked for again a few times before giving up. Amtsbote answers a new
// case's log with the events so far; a backbone that answers 404 until the
// first one counts as an empty log.
func (r *Receiver) submitTags(ctx context.Context, caseID, submissionID string) (set.AuthenticationTags, bool, error) {
	for attempt := 0; ; attempt++ {
		// A log that fails verification is the backbone's fault, not the
		// sender's: it is no reason to reject, but no basis to accept.
		events, err := r.c.eventLog(ctx, caseID)
		if p, ok := problem.As(err); ok && p.Status == http.StatusNotFound {
			// The case exists: its submission was just read.
			events, err = nil, nil
		}
		if err != nil {
			return set.AuthenticationTags{}, false, err
		}
		var (
			submit    *Event
			forwarded bool
		)
		for i, ev := range events {
			if ev.SubmissionID != submissionID {
				continue
			}
			switch ev.Type {
			case set.SubmitSubmission:
				submit = &events[i]
			case set.ForwardSubmission:
				forwarded = true
			}
		}
		if submit != nil {
			tags, err := submit.Claims.Tags()
			return tags, forwarded, err
		}
		if attempt >= r.c.retries {
			return set.AuthenticationTags{}, false, fmt.Errorf("%w: no submit-submission event yet", ErrNoEvents)
		}
		t := time.NewTimer(r.c.backoff << attempt)
		select {
		case <-ctx.Done():
			t.Stop()
			return set.AuthenticationTags{}, false, ctx.Err()
		case <-t.C:
		}
	}
}

// download streams one attachment into a file while decrypting and hashing it.
func (r *Receiver) download(ctx context.Context, submissionID string, info AttachmentInfo, keys KeyRing, wantTag string) (ReceivedAttachment, error) {
	part := "attachment:" + info.ID
	resp, err := r.c.do(ctx, request{
		method: http.MethodGet,
		path:   "/v1/submissions/" + url.PathEscape(submissionID) + "/attachments/" + url.PathEscape(info.ID),
		header: http.Header{"Accept": {"application/jose, application/problem+json"}},
		want:   []int{http.StatusOK}, idempotent: true,
	})
	if err != nil {
		return ReceivedAttachment{}, fmt.Errorf("download attachment %s: %w", info.ID, err)
	}
	defer drain(resp)
	f, err := os.CreateTemp(r.c.attachmentDir, "attachment-*")
	if err != nil {
		return ReceivedAttachment{}, fmt.Errorf("store attachment %s: %w", info.ID, err)
	}
	a := ReceivedAttachment{AttachmentInfo: info, Path: f.Name()}
	h := sha512.New()
	got, err := decryptStream(resp.Body, keys, r.c.maxAttachment, r.c.maxAttachment, io.MultiWriter(f, h))
	if cerr := f.Close(); err == nil && cerr != nil {
		return a, fmt.Errorf("store attachment %s: %w", info.ID, cerr)
	}
	switch {
	case errors.Is(err, jose.ErrJWE), errors.Is(err, jose.ErrDecrypt), errors.Is(err, ErrUnknownKey),
		errors.Is(err, jose.ErrTooLarge), errors.Is(err, errPlainTooLarge):
		return a, checkErr(part, err)
	case err != nil:
		return a, fmt.Errorf("download attachment %s: %w", info.ID, err)
	}
	a.Size = got.Size
	if got.AuthTag != wantTag {
		return a, checkErr(part, fmt.Errorf("%w: the JWE's tag differs from submit-submission's", ErrTagMismatch))
	}
	if hashOf(h) != info.Hash {
		return a, checkErr(part, fmt.Errorf("%w: SHA-512 of the attachment differs from the metadata's", ErrHashMismatch))
	}
	return a, nil
}

// keyCheck turns a failed decryption of part into a *CheckError, the
// sender's fault, unless it names a key the destination publishes that
// keys lack: that is the receiver's (a key rolled without its private key
// given), so it is returned as the *UnknownKeyError it is, to be fetched
// again once the key is given. When the API cannot tell whether the key is
// published, its error is returned: no reason to reject.
func (r *Receiver) keyCheck(ctx context.Context, destinationID, part string, err error) error {
	var unknown *UnknownKeyError
	if !errors.As(err, &unknown) {
		return checkErr(part, err)
	}
	_, kerr := r.c.Sender().FetchEncryptionKey(ctx, destinationID, unknown.KID)
	if p, ok := problem.As(kerr); (ok && p.Status == http.StatusNotFound) || errors.Is(kerr, jose.ErrKeyRule) {
		return checkErr(part, err)
	}
	if kerr != nil {
		return fmt.Errorf("%s: encrypted to key %q; whether destination %s publishes it is not known: %w", part, unknown.KID, destinationID, kerr)
	}
	return fmt.Errorf("%s: encrypted to key %q, which destination %s publishes but the key ring lacks: %w", part, unknown.KID, destinationID, err)
}

func decryptWith(keys KeyRing, compact, kid string) ([]byte, error) {
	priv, err := keys.key(kid)
	if err != nil {
		return nil, err
	}
	return jose.Decrypt(compact, priv)
}

func mapKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, strings.ToLower(k))
	}
	return ks
}

// sameIDs reports whether a and b hold the same ids, each once.
func sameIDs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b) && len(slices.Compact(a)) == len(b)
}

// Accept posts an accept-submission event for a verified submission,
// signed with the destination's signing key, echoing its authenticationTags.
//
// An Accept whose answer was lost (a network error, the server crashed or
// answered 5xx) may be repeated with the same Received: it posts the same
// token again, which the backbone records once. Accept also succeeds when
// the backbone refuses it because the destination's accept of the
// submission is recorded already. A receiver that lost its Received finds
// the decision with Decided.
func (r *Receiver) Accept(ctx context.Context, rec *Received, signer jose.KeyPair) error {
	if rec == nil || !rec.verified {
		return fmt.Errorf("accept: %w", ErrNotVerified)
	}
	if err := r.decide(ctx, rec, signer, set.AcceptSubmission, set.AcceptPayload{AuthenticationTags: rec.AuthenticationTags}, nil); err != nil {
		return fmt.Errorf("accept %s: %w", rec.SubmissionID, err)
	}
	return nil
}

// Reject posts a reject-submission event with at least one problem,
// signed with the destination's signing key. A *CheckError's Problem
// describes a failed check. It may be repeated as Accept may: with the
// same problems it posts the same token again, and it succeeds when the
// destination's reject of the submission is recorded already.
func (r *Receiver) Reject(ctx context.Context, rec *Received, signer jose.KeyPair, problems ...set.Problem) error {
	if rec == nil {
		return errors.New("reject: no submission")
	}
	if len(problems) == 0 {
		return fmt.Errorf("reject %s: at least one problem is required", rec.SubmissionID)
	}
	if err := r.decide(ctx, rec, signer, set.RejectSubmission, set.RejectPayload{Problems: problems}, problems); err != nil {
		return fmt.Errorf("reject %s: %w", rec.SubmissionID, err)
	}
	return nil
}

// Forward posts a forward-submission event, signed with the destination's
// signing key: the destination handed the verified submission on, here
// as the submission to, which the event names. It may be repeated as
// Accept may. The submission leaves the pickup list; its sender sees it
// forwarded.
func (r *Receiver) Forward(ctx context.Context, rec *Received, signer jose.KeyPair, to Receipt) error {
	if rec == nil || !rec.verified {
		return fmt.Errorf("forward: %w", ErrNotVerified)
	}
	if !isUUID(to.DestinationID) || !isUUID(to.SubmissionID) || !isUUID(to.CaseID) {
		return fmt.Errorf("forward %s: the target's destination, submission and case ids are required", rec.SubmissionID)
	}
	payload := set.ForwardPayload{ForwardedTo: &set.ForwardTarget{
		DestinationID: strings.ToLower(to.DestinationID), SubmissionID: strings.ToLower(to.SubmissionID), CaseID: strings.ToLower(to.CaseID),
	}}
	if err := r.decide(ctx, rec, signer, set.ForwardSubmission, payload, nil); err != nil {
		return fmt.Errorf("forward %s: %w", rec.SubmissionID, err)
	}
	return nil
}

func (r *Receiver) decide(ctx context.Context, rec *Received, signer jose.KeyPair, event string, payload any, problems []set.Problem) error {
	if signer.Purpose != jose.Signing || signer.Private == nil || signer.Public.KeyID == "" {
		return errors.New("signer is not a private signing key with a kid")
	}
	d := rec.decision
	if d.token == "" || d.event != event || !slices.Equal(d.problems, problems) {
		claims, err := set.New(event, rec.DestinationID, rec.SubmissionID, rec.CaseID, payload, r.c.now())
		if err != nil {
			return err
		}
		token, err := set.Sign(claims, signer.Private, signer.Public.KeyID)
		if err != nil {
			return err
		}
		d = decision{event: event, problems: slices.Clone(problems), token: token}
		rec.decision = d
	}
	rec.decidedBefore = false
	err := r.c.postEvent(ctx, rec.CaseID, d.token)
	p, refused := problem.As(err)
	if !refused || p.Status >= 500 || p.Status == http.StatusRequestTimeout || p.Status == http.StatusTooManyRequests {
		// Done, or the outcome is unknown: the token may be recorded.
		return err
	}
	rec.decision = decision{}
	if p.Status == http.StatusConflict {
		if ev, derr := r.recorded(ctx, Pickup{DestinationID: rec.DestinationID, SubmissionID: rec.SubmissionID, CaseID: rec.CaseID}, event); derr == nil && ev != nil {
			rec.decidedBefore = true
			return nil
		}
	}
	return err
}

// recorded returns the destination's first event of type event about
// the submission p names, nil when there is none.
func (r *Receiver) recorded(ctx context.Context, p Pickup, event string) (*Event, error) {
	events, err := r.c.eventLog(ctx, p.CaseID)
	if err != nil {
		return nil, err
	}
	st, err := deriveStatus(events, p.SubmissionID, p.DestinationID)
	if err != nil {
		return nil, err
	}
	for _, ev := range st.Events {
		if ev.ByDestination && ev.Type == event {
			return &ev, nil
		}
	}
	return nil, nil
}

// Decided reads the case's verified event log and returns the
// destination's decision about the submission p names: its accept-,
// reject- or forward-submission event, the first if there are several, or
// nil when none is recorded. A receiver that restarted after posting a decision,
// and whose Fetch of the submission now answers 404 because it is no
// longer deliverable, learns here whether the decision was recorded.
func (r *Receiver) Decided(ctx context.Context, p Pickup) (*Event, error) {
	events, err := r.c.eventLog(ctx, p.CaseID)
	if err != nil {
		return nil, fmt.Errorf("decision on %s: %w", p.SubmissionID, err)
	}
	st, err := deriveStatus(events, p.SubmissionID, p.DestinationID)
	if errors.Is(err, ErrNoEvents) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("decision on %s: %w", p.SubmissionID, err)
	}
	for _, ev := range st.Events {
		if ev.ByDestination && (ev.Type == set.AcceptSubmission || ev.Type == set.RejectSubmission || ev.Type == set.ForwardSubmission) {
			return &ev, nil
		}
	}
	return nil, nil
}

// wellFormed checks that data parses as mimeType says: one JSON value, or
// one well-formed XML document. A Fachverfahren is never handed what it
// cannot read.
func wellFormed(data []byte, mimeType string) error {
	switch mimeType {
	case "application/json":
		if !json.Valid(data) {
			return fmt.Errorf("%w: the data is not JSON", ErrSyntax)
		}
	case "application/xml":
		d := xml.NewDecoder(bytes.NewReader(data))
		roots, depth := 0, 0
		for {
			tok, err := d.Token()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("%w: the data is not well-formed XML: %v", ErrSyntax, err)
			}
			switch t := tok.(type) {
			case xml.StartElement:
				if depth == 0 {
					roots++
				}
				depth++
			case xml.EndElement:
				depth--
			case xml.CharData:
				if depth == 0 && len(bytes.TrimSpace(t)) > 0 {
					roots = 2 // text beside the root element
				}
			}
		}
		if roots != 1 || depth != 0 {
			return fmt.Errorf("%w: the data is not one XML document", ErrSyntax)
		}
	}
	return nil
}
