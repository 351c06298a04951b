// Package submission serves the submission flow of FIT-Connect's
// Submission API: a sender creates a submission, uploads its attachments
// and submits it; a receiver lists, fetches and answers it with a security
// event token; both read the case's event log. Bodies of these endpoints
// are decoded leniently as to unknown members, as FIT-Connect's schemas
// allow members they do not name.
//
// These endpoints need the message bus (Config.Bus): without one they
// answer 503, while the registry endpoints keep working.
//
// Consistency: every step that leaves the gateway (store, object store,
// INGRESS, EVENTS) is idempotent under the submission id or the event's
// jti, and each request writes its permanent record before it publishes,
// so a retried request repeats the missing steps and never duplicates a
// done one. The gateway writes the submission, its uploaded attachments
// and the submit's record; its status and event log are the ledger's,
// projected from EVENTS.
package submission

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/issuer"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/registry"
	"github.com/amtsbote/amtsbote/pkg/routing"
	"github.com/amtsbote/amtsbote/pkg/scope"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/gateway/destination"
	"github.com/amtsbote/amtsbote/services/gateway/httpapi"
)

// DefaultMaxAttachment bounds one encrypted attachment: 2 GiB of compact
// JWE carry a file of 1.5 GiB.
const DefaultMaxAttachment int64 = 2 << 30

// maxAttachments bounds the attachments one submission announces.
const maxAttachments = 1000

// Store is what the submission flow reads and writes.
type Store interface {
	destination.Reader
	Key(ctx context.Context, destinationID, kid string) (store.Key, error)
	Keys(ctx context.Context, destinationID string) ([]store.Key, error)
	CreateSubmission(ctx context.Context, s store.Submission) error
	Submission(ctx context.Context, id string) (store.Submission, error)
	UpdateSubmission(ctx context.Context, id string, update func(*store.Submission) error) (store.Submission, error)
	SubmissionsByCase(ctx context.Context, caseID string) ([]store.Submission, error)
	PickupList(ctx context.Context, destinationIDs []string, p store.Page) ([]store.Submission, int, error)
	Events(ctx context.Context, caseID string, p store.Page) ([]store.Event, int, error)
	PutIdempotency(ctx context.Context, r store.IdempotencyRecord) (store.IdempotencyRecord, bool, error)
	Idempotency(ctx context.Context, key string) (store.IdempotencyRecord, error)
}

// Responsible checks that a destination is the one responsible for a
// service in the applicant's region (routesync.Syncer.CheckResponsible).
type Responsible interface {
	CheckResponsible(ctx context.Context, service, region string, d store.Destination, at time.Time) error
}

// Config is what an API needs. API, Store and URL are required; without
// Bus the endpoints answer 503, with it Issuer is required too.
type Config struct {
	API   *httpapi.API
	Store Store
	// URL is Amtsbote's public URL, the source of its messages.
	URL string
	// Bus carries submissions and events.
	Bus *bus.Bus
	// Issuer issues Amtsbote's own events: the notify-submission of a
	// first fetch at once, create- and submit-submission through the
	// outbox, which the signer role empties.
	Issuer *issuer.Issuer
	// Responsible, when set, checks a create naming the applicant's
	// region.
	Responsible Responsible
	// MaxAttachment bounds one encrypted attachment in bytes (default
	// DefaultMaxAttachment).
	MaxAttachment int64
	Now           func() time.Time
	// CallbackAllow are the networks besides the public internet that a
	// sender's callback may go to (store.CheckNewCallback).
	CallbackAllow []netip.Prefix
}

// API serves the submission flow. It is safe for concurrent use.
type API struct {
	api           *httpapi.API
	store         Store
	url           string
	bus           *bus.Bus
	issuer        *issuer.Issuer
	responsible   Responsible
	maxAttachment int64
	now           func() time.Time
	allow         []netip.Prefix
}

// New checks cfg.
func New(cfg Config) (*API, error) {
	switch {
	case cfg.API == nil || cfg.Store == nil || cfg.URL == "":
		return nil, errors.New("new submission api: no API, store or url")
	case cfg.MaxAttachment < 0:
		return nil, errors.New("new submission api: negative attachment limit")
	case cfg.Bus != nil && cfg.Issuer == nil:
		return nil, errors.New("new submission api: a bus needs an issuer of Amtsbote's events")
	}
	a := &API{
		api: cfg.API, store: cfg.Store, url: cfg.URL, bus: cfg.Bus, issuer: cfg.Issuer,
		responsible: cfg.Responsible, maxAttachment: cfg.MaxAttachment, now: cfg.Now, allow: cfg.CallbackAllow,
	}
	if a.maxAttachment == 0 {
		a.maxAttachment = DefaultMaxAttachment
	}
	if a.now == nil {
		a.now = time.Now
	}
	return a, nil
}

// Routes registers the submission flow's endpoints.
func (a *API) Routes(m *httpapi.Mux) {
	m.Handle("POST /v1/submissions", a.flowed(a.handleCreateSubmission))
	m.Handle("GET /v1/submissions", a.listed(a.handlePickupList))
	m.Handle("GET /v1/submissions/{submissionId}", a.flowed(a.handleGetSubmission))
	m.Handle("PUT /v1/submissions/{submissionId}", a.flowed(a.handleSubmit))
	m.HandleStream("PUT /v1/submissions/{submissionId}/attachments/{attachmentId}", a.flowed(a.handlePutAttachment))
	m.Handle("GET /v1/submissions/{submissionId}/attachments/{attachmentId}", a.flowed(a.handleGetAttachment))
	m.Handle("GET /v1/cases/{caseId}/events", a.flowed(a.handleGetEvents))
	m.Handle("POST /v1/cases/{caseId}/events", a.flowed(a.handlePostEvent))
}

// flowed is Authed plus the bus the submission flow needs: a request is
// refused at once while the bus is known unreachable, before anything is
// written, rather than after a publish's timeout has left a record behind.
func (a *API) flowed(h httpapi.Handler) http.Handler { return a.withBus(h, true) }

// listed is flowed for a route that reads the store alone.
func (a *API) listed(h httpapi.Handler) http.Handler { return a.withBus(h, false) }

func (a *API) withBus(h httpapi.Handler, connected bool) http.Handler {
	return a.api.Authed(func(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
		if a.bus == nil {
			return problem.Unavailable("this gateway runs without a message bus and takes no submissions")
		}
		if connected && !a.bus.Conn().IsConnected() {
			return problem.Unavailable("the message bus is unreachable; retry the request")
		}
		return h(w, r, p)
	})
}

// loadSubmission reads a submission, turning absence into a 404 problem.
func (a *API) loadSubmission(ctx context.Context, id string) (store.Submission, error) {
	s, err := a.store.Submission(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Submission{}, problem.SubmissionNotFound(id)
	}
	if err != nil {
		return store.Submission{}, fmt.Errorf("read submission %s: %w", id, err)
	}
	return s, nil
}

// reaches reports whether a send scope of p reaches a region of a service
// d offers at now.
func reaches(p httpapi.Principal, d store.Destination, now time.Time) bool {
	return slices.ContainsFunc(d.Services, func(s store.Service) bool {
		return s.ValidAt(now) && p.Scopes.CanLookUp(s.Regions, s.Identifier)
	})
}

// firstRegion is the region a scope would need to reach d, for the
// problem's scope field.
func firstRegion(d store.Destination) string {
	for _, s := range d.Services {
		if len(s.Regions) > 0 {
			return s.Regions[0]
		}
	}
	return ""
}

// asSender refuses a token without any send scope before a submission is
// looked up, so that its answer does not depend on whether it exists.
func asSender(p httpapi.Principal) error {
	if !p.Scopes.Sends() {
		return httpapi.Forbidden(scope.SendRegion+"<ars>", "sending requires a send:region scope")
	}
	return nil
}

// ownSubmission checks that p created s. Another sender's submission is
// answered as one that does not exist.
func ownSubmission(p httpapi.Principal, s store.Submission) error {
	if s.SenderClientID != p.Subject {
		return problem.SubmissionNotFound(s.ID)
	}
	return nil
}

// covers reports whether p's send scopes reach s as its create checked
// them: a token asked for less than its client was granted (one service,
// a smaller region; RFC 6749 3.3) reaches only the submissions it could
// have created.
func (a *API) covers(ctx context.Context, p httpapi.Principal, s store.Submission) (bool, error) {
	if s.Region != "" {
		return p.Scopes.CanSend([]string{s.Region}, s.ServiceIdentifier), nil
	}
	if p.Scopes.CanSend([]string{"DE"}, "") {
		// All of Germany, every service: nothing to look up.
		return true, nil
	}
	d, err := a.store.Destination(ctx, s.DestinationID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read destination %s: %w", s.DestinationID, err)
	}
	var regions []string
	for _, svc := range d.Services {
		if svc.Identifier == s.ServiceIdentifier {
			regions = append(regions, svc.Regions...)
		}
	}
	return p.Scopes.CanLookUp(regions, s.ServiceIdentifier), nil
}

// ownCovered checks that p created s and that p's token still covers it
// (covers): 403 naming the service otherwise.
func (a *API) ownCovered(ctx context.Context, p httpapi.Principal, s store.Submission) error {
	if err := ownSubmission(p, s); err != nil {
		return err
	}
	ok, err := a.covers(ctx, p, s)
	if err != nil {
		return err
	}
	if !ok {
		return notCovered(s)
	}
	return nil
}

// notCovered is the 403 for a submission of p's client that p's token
// does not reach, naming the scope that would.
func notCovered(s store.Submission) error {
	need := s.Region
	if need == "" {
		need = "DE"
	}
	return httpapi.Forbidden(scope.SendRegion+need+"+"+scope.SendService+s.ServiceIdentifier,
		fmt.Sprintf("the token's send scopes do not reach submission %s of service %s", s.ID, s.ServiceIdentifier))
}

// serviceTypeInput is FIT-Connect's ServiceType of CreateSubmission.
type serviceTypeInput struct {
	Name        *string `json:"name"`
	Description string  `json:"description"`
	Identifier  string  `json:"identifier"`
}

// createSubmissionInput is FIT-Connect's CreateSubmission plus Amtsbote's
// optional region ("DE" + ARS), the applicant's place.
type createSubmissionInput struct {
	DestinationID        string                  `json:"destinationId"`
	AnnouncedAttachments *[]string               `json:"announcedAttachments"`
	CaseID               string                  `json:"caseId"`
	ServiceType          *serviceTypeInput       `json:"serviceType"`
	Callback             *registry.CallbackInput `json:"callback"`
	Region               string                  `json:"region"`
}

// validate checks the fields on their own and returns them in canonical
// form.
func (in *createSubmissionInput) validate() error {
	if in.DestinationID == "" {
		return problem.Invalid("destinationId", "destinationId is required")
	}
	id, ok := httpapi.CanonicalUUID(in.DestinationID)
	if !ok {
		return problem.Invalid("destinationId", fmt.Sprintf("destinationId %q is not a UUID", in.DestinationID))
	}
	in.DestinationID = id
	if in.AnnouncedAttachments == nil {
		return problem.Invalid("announcedAttachments", "announcedAttachments is required; send [] for none")
	}
	list := *in.AnnouncedAttachments
	if len(list) > maxAttachments {
		return problem.Invalid("announcedAttachments", fmt.Sprintf("announcedAttachments lists %d attachments, at most %d are allowed", len(list), maxAttachments))
	}
	for i, a := range list {
		f := fmt.Sprintf("announcedAttachments[%d]", i)
		aid, ok := httpapi.CanonicalUUID(a)
		if !ok {
			return problem.Invalid(f, fmt.Sprintf("%q is not a UUID", a))
		}
		if slices.Contains(list[:i], aid) {
			return problem.Invalid(f, fmt.Sprintf("attachment %s is announced twice", aid))
		}
		list[i] = aid
	}
	if in.CaseID != "" {
		if in.CaseID, ok = httpapi.CanonicalUUID(in.CaseID); !ok {
			return problem.Invalid("caseId", "caseId is not a UUID")
		}
	}
	if in.ServiceType == nil {
		return problem.Invalid("serviceType", "serviceType is required")
	}
	// The spec requires the member, not a non-empty name: FIT-Connect's
	// own SDKs send "".
	if in.ServiceType.Name == nil {
		return problem.Invalid("serviceType.name", "serviceType.name is required; it may be empty")
	}
	if in.ServiceType.Identifier == "" {
		return problem.Invalid("serviceType.identifier", "serviceType.identifier is required")
	}
	if err := routing.CheckServiceURN(in.ServiceType.Identifier); err != nil {
		return problem.Invalid("serviceType.identifier", err.Error())
	}
	if in.Region != "" {
		if _, err := ars.ParseRegion(in.Region); err != nil {
			return problem.Invalid("region", err.Error())
		}
	}
	if in.Callback != nil {
		if err := store.ValidateCallback(in.Callback.URL, in.Callback.Secret); err != nil {
			return err
		}
	}
	return nil
}

// submissionCreated is FIT-Connect's SubmissionCreated.
type submissionCreated struct {
	DestinationID string `json:"destinationId"`
	SubmissionID  string `json:"submissionId"`
	CaseID        string `json:"caseId"`
}

// handleCreateSubmission answers POST /v1/submissions: the destination
// must be active and offer the service now; the sender's region scope
// must reach one of the destination's regions for it, or, when the sender
// names the applicant's region, cover that region, which one of the
// destination's regions must cover too. A retry carrying the same
// Idempotency-Key and body gets the first answer.
func (a *API) handleCreateSubmission(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	if err := asSender(p); err != nil {
		return err
	}
	key, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	if err := httpapi.RequireContentType(r, "application/json"); err != nil {
		return err
	}
	raw, err := a.api.ReadBody(w, r)
	if err != nil {
		return err
	}
	var in createSubmissionInput
	if err := problem.DecodeJSON(raw, &in, false); err != nil {
		return err
	}
	if err := in.validate(); err != nil {
		return err
	}
	if in.Callback != nil {
		if err := store.CheckNewCallback(in.Callback.URL, a.allow); err != nil {
			return err
		}
	}
	ctx := r.Context()
	now := a.now()
	d, err := destination.Load(r.Context(), a.store, in.DestinationID)
	if err != nil {
		return err
	}
	// Permission first: what the destination offers and whether it is
	// active is none of a sender's business whose scopes reach none of it.
	service := in.ServiceType.Identifier
	if in.Region != "" && !p.Scopes.CanSend([]string{in.Region}, service) {
		return httpapi.Forbidden(scope.SendRegion+in.Region,
			fmt.Sprintf("no send scope covers region %s for service %s", in.Region, service))
	}
	if !reaches(p, d, now) {
		return httpapi.Forbidden(scope.SendRegion+firstRegion(d),
			fmt.Sprintf("no send scope reaches destination %s", d.ID))
	}
	if d.Status != store.StatusActive {
		return problem.DestinationInactive(d.ID, string(d.Status))
	}
	offer, ok := d.Offers(service, "", now)
	if !ok {
		return problem.ServiceNotOffered("serviceType.identifier", d.ID, service)
	}
	if in.Region != "" {
		if !slices.ContainsFunc(offer.Regions, func(reg string) bool { return strings.HasPrefix(in.Region, reg) }) {
			return problem.RegionNotServed("region", fmt.Sprintf("destination %s serves %s in %s, not in %s",
				d.ID, service, strings.Join(offer.Regions, ", "), in.Region))
		}
		if a.responsible != nil {
			if err := a.responsible.CheckResponsible(ctx, service, in.Region, d, now); err != nil {
				return err
			}
		}
	} else if !p.Scopes.CanLookUp(offer.Regions, service) {
		return httpapi.Forbidden(scope.SendRegion+offer.Regions[0],
			fmt.Sprintf("no send scope reaches destination %s's regions %s for service %s", d.ID, strings.Join(offer.Regions, ", "), service))
	}
	if in.CaseID != "" {
		if err := a.checkCaseOwner(ctx, p, in.CaseID); err != nil {
			return err
		}
	}

	out := submissionCreated{DestinationID: d.ID, SubmissionID: uuid.NewString(), CaseID: in.CaseID}
	if out.CaseID == "" {
		out.CaseID = uuid.NewString()
	}
	body, _ := json.Marshal(out) // strings always marshal
	// A server that hangs is not known to be gone yet: a create whose
	// outbox write then timed out would leave a submission and, once the
	// server resumed, its create-submission behind, with ids the sender
	// never got. Asked first, it writes nothing.
	if err := a.bus.Answers(time.Second); err != nil {
		return problem.Unavailable("the message bus does not answer; retry the request")
	}
	if key != "" {
		// The request as read, not its bytes: a client that encodes its
		// retry anew (members in another order, other spacing, an id in
		// capitals) sends the same request. Records of releases that
		// hashed the bytes are still matched by them.
		canonical, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("create submission: %w", err)
		}
		hash, rawHash := sha256.Sum256(canonical), sha256.Sum256(raw)
		rec, created, err := a.store.PutIdempotency(ctx, store.IdempotencyRecord{
			Key: "create:" + p.Subject + ":" + key, RequestHash: hash[:], Status: http.StatusCreated, Body: body,
		})
		if err != nil {
			return fmt.Errorf("create submission: %w", err)
		}
		if !created {
			if !bytes.Equal(rec.RequestHash, hash[:]) && !bytes.Equal(rec.RequestHash, rawHash[:]) {
				return problem.IdempotencyMismatch("Idempotency-Key",
					fmt.Sprintf("Idempotency-Key %q was used for a request with another body", key))
			}
			if err := json.Unmarshal(rec.Body, &out); err != nil {
				return fmt.Errorf("create submission: stored answer: %w", err)
			}
			body = rec.Body
		}
	}

	sub := store.Submission{
		ID: out.SubmissionID, CaseID: out.CaseID, DestinationID: d.ID, SenderClientID: p.Subject,
		ServiceIdentifier: service, ServiceName: *in.ServiceType.Name, Region: in.Region,
		Progress:             sealed.Progress{Status: sealed.Incomplete},
		AnnouncedAttachments: *in.AnnouncedAttachments, UploadedAttachments: []string{},
		CreatedAt: now, UpdatedAt: now,
	}
	if in.Callback != nil {
		sub.CallbackURL, sub.CallbackSecret = in.Callback.URL, in.Callback.Secret
	}
	// A replay finds the submission made by the first request, unless that
	// one stopped before writing it; the first may find it made by a
	// replay sent at once. The record's fresh id is theirs alone.
	if err := a.store.CreateSubmission(ctx, sub); err != nil && !(key != "" && errors.Is(err, store.ErrConflict)) {
		return fmt.Errorf("create submission: %w", err)
	}
	if err := a.issuer.Enqueue(ctx, set.CreateSubmission, sub.ID, sub.CaseID, nil); err != nil {
		return a.api.Unavailable(r, "create submission", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(body)
	return nil
}

// idempotencyKey reads the optional Idempotency-Key header: 1 to 255
// visible ASCII characters, optionally as a quoted structured-field string.
func idempotencyKey(r *http.Request) (string, error) {
	vals := r.Header.Values("Idempotency-Key")
	switch len(vals) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", problem.InvalidRequest("Idempotency-Key", "Idempotency-Key must appear once")
	}
	k := strings.TrimSpace(vals[0])
	if len(k) >= 2 && k[0] == '"' && k[len(k)-1] == '"' {
		k = k[1 : len(k)-1]
	}
	if k == "" || len(k) > 255 {
		return "", problem.InvalidRequest("Idempotency-Key", "Idempotency-Key must have 1 to 255 characters")
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e || k[i] == '"' || k[i] == '\\' {
			return "", problem.InvalidRequest("Idempotency-Key", fmt.Sprintf("Idempotency-Key has a character other than visible ASCII at byte %d", i+1))
		}
	}
	return k, nil
}

// serviceTypeView is FIT-Connect's ServiceType in answers.
type serviceTypeView struct {
	Name       string `json:"name,omitempty"`
	Identifier string `json:"identifier"`
}

// submissionReduced is FIT-Connect's SubmissionReduced.
type submissionReduced struct {
	DestinationID string          `json:"destinationId"`
	SubmissionID  string          `json:"submissionId"`
	CaseID        string          `json:"caseId"`
	Attachments   []string        `json:"attachments"`
	ServiceType   serviceTypeView `json:"serviceType"`
}

func reducedView(s store.Submission) submissionReduced {
	// In announced order; only uploaded ones, which after submit are all.
	att := make([]string, 0, len(s.AnnouncedAttachments))
	for _, a := range s.AnnouncedAttachments {
		if slices.Contains(s.UploadedAttachments, a) {
			att = append(att, a)
		}
	}
	return submissionReduced{
		DestinationID: s.DestinationID, SubmissionID: s.ID, CaseID: s.CaseID, Attachments: att,
		ServiceType: serviceTypeView{Name: s.ServiceName, Identifier: s.ServiceIdentifier},
	}
}

// submitInput is FIT-Connect's SubmitSubmission.
type submitInput struct {
	EncryptedMetadata *string `json:"encryptedMetadata"`
	EncryptedData     *string `json:"encryptedData"`
}

// hash identifies the submitted content whatever the JSON around it.
func (in submitInput) hash() []byte {
	h := sha256.New()
	// Copied through a small buffer: the JWEs are most of the body.
	buf := make([]byte, 4096)
	for _, s := range []*string{in.EncryptedMetadata, in.EncryptedData} {
		var v string
		if s != nil {
			v = *s
		}
		h.Write(binary.BigEndian.AppendUint64(buf[:0], uint64(len(v))))
		for len(v) > 0 {
			n := copy(buf, v)
			h.Write(buf[:n])
			v = v[n:]
		}
	}
	return h.Sum(nil)
}

// parseSealedJWE checks one JWE of a submit body.
func parseSealedJWE(field, compact string) (jose.JWE, error) {
	j, err := jose.ParseJWE(compact)
	if err != nil {
		return jose.JWE{}, jweProblem(field, err)
	}
	return j, nil
}

// jweProblem turns a JWE rule violation into a problem naming the part.
func jweProblem(field string, err error) error {
	var re *jose.RuleError
	if errors.As(err, &re) {
		return problem.InvalidJWE(problem.JoinField(field, re.Field), re.Reason)
	}
	return err
}

// checkEncryptionKey checks that the JWE j (of the part named by field)
// is encrypted to an encryption key of the destination that is valid now,
// named by its kid or by its RFC 7638 thumbprint (which FIT-Connect's
// Python SDK writes as the kid), and that its encrypted key is as long as
// RSA-OAEP with that key makes it, so that no receiver is handed a JWE
// that cannot be decrypted.
func (a *API) checkEncryptionKey(ctx context.Context, destinationID string, j jose.JWE, field string) error {
	kid := j.KID
	k, err := a.checkEncryptionKID(ctx, destinationID, kid, problem.JoinField(field, "header.kid"))
	if err != nil {
		return err
	}
	var jwk gojose.JSONWebKey
	if err := jwk.UnmarshalJSON(k.JWK); err != nil {
		return fmt.Errorf("read key %s of %s: %w", kid, destinationID, err)
	}
	if pub, ok := jwk.Key.(*rsa.PublicKey); ok && pub.Size() != j.EncryptedKeyLen {
		return problem.InvalidJWE(problem.JoinField(field, "segment 1"), fmt.Sprintf(
			"the encrypted key has %d bytes; RSA-OAEP with key %q (%d bits) makes %d", j.EncryptedKeyLen, kid, pub.N.BitLen(), pub.Size()))
	}
	return nil
}

// checkEncryptionKID returns the encryption key of the destination named
// by kid, or by its thumbprint, if it is valid now.
func (a *API) checkEncryptionKID(ctx context.Context, destinationID, kid, field string) (store.Key, error) {
	k, err := a.store.Key(ctx, destinationID, kid)
	if errors.Is(err, store.ErrNotFound) {
		if byPrint, ok, perr := a.keyByThumbprint(ctx, destinationID, kid); perr != nil {
			return store.Key{}, perr
		} else if ok {
			k, err = byPrint, nil
		}
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return k, problem.UnknownEncryptionKey(field, fmt.Sprintf("kid %q is not a key of destination %s", kid, destinationID))
	case err != nil:
		return k, fmt.Errorf("read key %s of %s: %w", kid, destinationID, err)
	case k.Use != store.UseEncryption:
		return k, problem.UnknownEncryptionKey(field, fmt.Sprintf("kid %q is destination %s's %s key, not an encryption key", kid, destinationID, k.Use))
	case !k.ValidAt(a.now()):
		return k, problem.UnknownEncryptionKey(field, fmt.Sprintf("kid %q of destination %s was retired at %s", kid, destinationID, k.ValidUntil.UTC().Format(time.RFC3339)))
	}
	return k, nil
}

// keyByThumbprint finds the destination's encryption key whose SHA-256
// JWK thumbprint (base64url, RFC 7638) is print.
func (a *API) keyByThumbprint(ctx context.Context, destinationID, print string) (store.Key, bool, error) {
	if len(print) != 43 {
		return store.Key{}, false, nil
	}
	keys, err := a.store.Keys(ctx, destinationID)
	if err != nil {
		return store.Key{}, false, fmt.Errorf("list keys of %s: %w", destinationID, err)
	}
	for _, k := range keys {
		if k.Use != store.UseEncryption {
			continue
		}
		var jwk gojose.JSONWebKey
		if err := jwk.UnmarshalJSON(k.JWK); err != nil {
			continue
		}
		tp, err := jwk.Thumbprint(crypto.SHA256)
		if err == nil && base64.RawURLEncoding.EncodeToString(tp) == print {
			return k, true, nil
		}
	}
	return store.Key{}, false, nil
}

// handleSubmit answers PUT /v1/submissions/{submissionId}: the creator
// hands in the sealed metadata and data once every announced attachment is
// uploaded. The gateway checks the JWEs' structure and keys, stores the
// payload, publishes the submission to INGRESS once, queues the
// submit-submission event and answers 202. The same submit again gets the
// same answer; another content after a submit is refused.
func (a *API) handleSubmit(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	if err := asSender(p); err != nil {
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
	if err := a.ownCovered(ctx, p, sub); err != nil {
		return err
	}
	if sub.Status == sealed.Deleted || sub.DeletedAt != nil {
		return problem.SubmissionNotFound(sid)
	}
	var in submitInput
	if err := a.api.DecodeRequest(w, r, &in, false); err != nil {
		return err
	}
	if in.EncryptedMetadata == nil {
		return problem.Invalid("encryptedMetadata", "encryptedMetadata is required")
	}
	meta, err := parseSealedJWE("encryptedMetadata", *in.EncryptedMetadata)
	if err != nil {
		return err
	}
	var data jose.JWE
	if in.EncryptedData != nil {
		if data, err = parseSealedJWE("encryptedData", *in.EncryptedData); err != nil {
			return err
		}
	}

	var (
		d    store.Destination
		tags set.AuthenticationTags
		// release ends the submit entry, kept once the record is written.
		release  func(keep bool)
		recorded bool
	)
	defer func() {
		if release != nil {
			release(recorded)
		}
	}()
	if sub.Status == sealed.Incomplete {
		if d, err = destination.Load(r.Context(), a.store, sub.DestinationID); err != nil {
			return err
		}
		if d.Status != store.StatusActive {
			return problem.DestinationInactive(d.ID, string(d.Status))
		}
		if err := a.checkEncryptionKey(ctx, d.ID, meta, "encryptedMetadata"); err != nil {
			return err
		}
		if in.EncryptedData != nil {
			if err := a.checkEncryptionKey(ctx, d.ID, data, "encryptedData"); err != nil {
				return err
			}
		}
		if len(sub.AnnouncedAttachments) > 0 {
			if release, err = a.lockSubmit(ctx, sub); err != nil {
				return retryLater(w, a.api.Unavailable(r, "order the submit after uploads", err))
			}
		}
		if tags, err = a.submitTags(r, sub, meta, data); err != nil {
			return retryLater(w, err)
		}
	}

	hash := in.hash()
	answer, _ := json.Marshal(reducedView(sub)) // strings always marshal
	rec, created, err := a.store.PutIdempotency(ctx, store.IdempotencyRecord{
		Key: submitKey(sid), RequestHash: hash, Status: http.StatusAccepted, Body: answer,
	})
	if err != nil {
		return fmt.Errorf("submit %s: %w", sid, err)
	}
	// Submitted now: the entry stays, and uploads find the record.
	recorded = true
	if !created && !bytes.Equal(rec.RequestHash, hash) {
		return problem.IdempotencyMismatch("encryptedMetadata",
			fmt.Sprintf("submission %s was submitted with other encryptedMetadata or encryptedData", sid))
	}
	if sub.Status != sealed.Incomplete {
		if created {
			return problem.SubmissionState("submissionId", fmt.Sprintf("submission %s is %s and cannot be submitted", sid, sub.Status))
		}
		// The same submit again: it is done, answer as the first time.
		return writeRecord(w, rec)
	}
	// First submit, or a retry of one that stopped on the way: every step
	// below is idempotent. The status changes when the ledger projects the
	// submit-submission event; until then the record says it is submitted.
	if err := a.publishSubmission(r, sub, d, in, tags); err != nil {
		return retryLater(w, err)
	}
	return writeRecord(w, rec)
}

// submitKey is the key of a submit's permanent record.
func submitKey(submissionID string) string { return "submit:" + submissionID }

// writeRecord answers with a stored JSON answer.
func writeRecord(w http.ResponseWriter, rec store.IdempotencyRecord) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rec.Status)
	_, _ = w.Write(rec.Body)
	return nil
}

// submitTags collects the authentication tags of a submit: those of the
// two JWEs and of every announced attachment, which must all be uploaded.
func (a *API) submitTags(r *http.Request, sub store.Submission, meta, data jose.JWE) (set.AuthenticationTags, error) {
	tags := set.AuthenticationTags{Metadata: meta.AuthTag, Data: data.AuthTag}
	var missing []string
	for _, aid := range sub.AnnouncedAttachments {
		if !slices.Contains(sub.UploadedAttachments, aid) {
			missing = append(missing, aid)
		}
	}
	if len(missing) > 0 {
		return tags, problem.MissingAttachments(sub.ID, missing)
	}
	if len(sub.AnnouncedAttachments) > 0 {
		tags.Attachments = make(map[string]string, len(sub.AnnouncedAttachments))
	}
	digests := make(map[string]string, len(sub.AnnouncedAttachments))
	for _, aid := range sub.AnnouncedAttachments {
		tag, digest, err := a.attachmentTag(r.Context(), sub.ID, aid)
		if errors.Is(err, bus.ErrNotFound) {
			// Recorded as uploaded, but its tag is gone: upload it again.
			missing = append(missing, aid)
			continue
		}
		if err != nil {
			return tags, a.api.Unavailable(r, "read attachment tags", err)
		}
		tags.Attachments[aid] = tag
		digests[aid] = digest
	}
	if len(missing) > 0 {
		return tags, problem.MissingAttachments(sub.ID, missing)
	}
	// An upload answered 204 was stored whole; this catches an object lost
	// since, or one that lost or repeated chunks, before the submission is
	// handed on, without reading it: a receiver's download checks its
	// digest.
	var damaged, mixed []string
	for _, aid := range sub.AnnouncedAttachments {
		info, err := a.bus.CheckObject(r.Context(), sealed.AttachmentObject(sub.ID, aid))
		switch {
		case errors.Is(err, bus.ErrNotFound), errors.Is(err, bus.ErrCorrupt):
			damaged = append(damaged, aid)
		case err != nil:
			return tags, a.api.Unavailable(r, "check attachments", err)
		case digests[aid] != "" && digests[aid] != info.Digest:
			mixed = append(mixed, aid)
		}
	}
	if len(mixed) > 0 {
		// Two uploads at once, each of which stored one half.
		p := problem.MissingAttachments(sub.ID, mixed)
		p.Detail = fmt.Sprintf("attachments: attachments %s of submission %s were uploaded twice at once and the stored content is not the one whose tag was kept; upload them again",
			strings.Join(mixed, ", "), sub.ID)
		return tags, p
	}
	if len(damaged) > 0 {
		p := problem.MissingAttachments(sub.ID, damaged)
		p.Detail = fmt.Sprintf("attachments: the stored content of attachments %s of submission %s is missing or damaged; upload them again",
			strings.Join(damaged, ", "), sub.ID)
		return tags, p
	}
	return tags, nil
}

// attachmentTag reads the tag of an uploaded attachment with the digest
// of the object it was read from; digest is "" for an upload to a gateway
// of an earlier release, which kept the tag alone.
func (a *API) attachmentTag(ctx context.Context, sid, aid string) (tag, digest string, err error) {
	e, err := a.bus.GetState(ctx, sealed.AttachmentUploadKey(sid, aid))
	if err == nil {
		tag, digest = sealed.ParseAttachmentUpload(e.Value)
		return tag, digest, nil
	}
	if !errors.Is(err, bus.ErrNotFound) {
		return "", "", err
	}
	if e, err = a.bus.GetState(ctx, sealed.AttachmentTagKey(sid, aid)); err != nil {
		return "", "", err
	}
	return string(e.Value), "", nil
}

// busStep is a write of the submit that failed, and which one.
type busStep struct {
	op  string
	err error
}

func (e *busStep) Error() string { return e.op + ": " + e.err.Error() }

// publishSubmission stores the sealed payload and the tags, publishes the
// submission to INGRESS (Nats-Msg-Id = submission id) and queues the
// submit-submission event.
func (a *API) publishSubmission(r *http.Request, sub store.Submission, d store.Destination, in submitInput, tags set.AuthenticationTags) error {
	ctx := r.Context()
	payload := sealed.Payload{EncryptedMetadata: *in.EncryptedMetadata}
	if in.EncryptedData != nil {
		payload.EncryptedData = *in.EncryptedData
	}
	// Encoded behind room for the digest line of its state entry.
	entry := payload.AppendEncode(bus.CheckedBuffer(payload.EncodedLen()))
	payloadJSON := entry[bus.CheckedHeaderLen:]
	// A payload small enough to travel inline is kept in one entry; a
	// larger one in the object store, which the messages then name.
	inline := len(payloadJSON) <= sealed.InlineLimit
	tagsJSON, err := json.Marshal(tags)
	if err != nil {
		return fmt.Errorf("submit %s: %w", sub.ID, err)
	}
	ars := d.HomeRegion
	if sub.Region != "" {
		ars = strings.TrimPrefix(sub.Region, "DE")
	}
	msg := sealed.Submission{
		SubmissionID: sub.ID, CaseID: sub.CaseID, DestinationID: sub.DestinationID,
		Service: sub.ServiceIdentifier, Region: sub.Region, ARS: bus.PadARS(ars),
		Attachments: sub.AnnouncedAttachments, AuthenticationTags: tagsJSON, SenderClientID: sub.SenderClientID,
	}
	if inline {
		msg.Payload = &payload
	} else {
		msg.Object = sealed.PayloadObject(sub.ID)
	}
	// The payload, its tags and the INGRESS message do not depend on one
	// another: they are written together, and the submit waits for the
	// slowest instead of for each in turn. The submit-submission event
	// follows all three, so that no receiver is offered the submission
	// before its payload and tags are stored. Each write is idempotent; a
	// retried submit writes them again. The first write to fail is the
	// one answered and logged; the others stop with it.
	g, gctx := errgroup.WithContext(ctx)
	write := func(op string, f func() error) {
		g.Go(func() error {
			if err := f(); err != nil {
				return &busStep{op: op, err: err}
			}
			return nil
		})
	}
	write("store payload", func() error {
		if inline {
			_, err := a.bus.PutChecked(gctx, sealed.PayloadKey(sub.ID), entry)
			return err
		}
		_, err := a.bus.PutObject(gctx, sealed.PayloadObject(sub.ID), bytes.NewReader(payloadJSON))
		return err
	})
	write("store tags", func() error {
		_, err := a.bus.PutState(gctx, sealed.TagsKey(sub.ID), tagsJSON)
		return err
	})
	write("publish submission", func() error { return a.bus.PublishSubmission(gctx, a.url, msg, a.now()) })
	if err := g.Wait(); err != nil {
		step := err.(*busStep)
		if errors.Is(step.err, bus.ErrInvalidToken) {
			return fmt.Errorf("submit %s: %w", sub.ID, step.err)
		}
		return a.api.Unavailable(r, step.op, step.err)
	}
	if err := a.issuer.Enqueue(ctx, set.SubmitSubmission, sub.ID, sub.CaseID, set.SubmitPayload{AuthenticationTags: tags}); err != nil {
		return a.api.Unavailable(r, "queue submit-submission", err)
	}
	return nil
}
