package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	gojose "github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/set"
)

// Sender is the sending side of the Submission API: an online service that
// hands in submissions and follows their cases.
type Sender struct{ c *Client }

// Errors of a Sender's checks before anything is sent.
var (
	// ErrDestination means the destination cannot take the submission: it
	// is not active, or does not offer the service or the data's schema.
	ErrDestination = errors.New("destination cannot take the submission")
	// ErrInvalidSubmission means the Submission itself is incomplete or wrong.
	ErrInvalidSubmission = errors.New("invalid submission")
	// ErrAlreadySubmitted means a Submit with an IdempotencyKey found its
	// submission submitted by an earlier call; the Receipt it returns
	// with this error is that submission's.
	ErrAlreadySubmitted = errors.New("submitted before")
)

// regionRE is FIT-Connect's ServiceRegion pattern: "DE" and an ARS prefix.
var regionRE = regexp.MustCompile(`^DE[0-9]{0,12}$`)

// Destination is FIT-Connect's public view of a destination.
type Destination struct {
	ID               string               `json:"destinationId"`
	Status           string               `json:"status"`
	Services         []DestinationService `json:"services"`
	EncryptionKID    string               `json:"encryptionKid"`
	MetadataVersions []string             `json:"metadataVersions"`
	ReplyChannels    json.RawMessage      `json:"replyChannels,omitempty"`
}

// DestinationService is a service a destination offers, the regions it
// offers it in ("DE" + ARS prefix) and the data schemas it accepts.
type DestinationService struct {
	Identifier        string             `json:"identifier"`
	Regions           []string           `json:"regions"`
	SubmissionSchemas []SubmissionSchema `json:"submissionSchemas"`
}

// Service returns the offer of service identifier, if any.
func (d Destination) Service(identifier string) (DestinationService, bool) {
	for _, s := range d.Services {
		if s.Identifier == identifier {
			return s, true
		}
	}
	return DestinationService{}, false
}

// FetchDestination reads GET /v1/destinations/{id}.
func (s *Sender) FetchDestination(ctx context.Context, id string) (Destination, error) {
	var d Destination
	if err := s.c.getJSON(ctx, "/v1/destinations/"+url.PathEscape(id), false, &d); err != nil {
		return Destination{}, fmt.Errorf("fetch destination %s: %w", id, err)
	}
	if d.ID != "" && !strings.EqualFold(d.ID, id) {
		return Destination{}, fmt.Errorf("fetch destination %s: answer describes destination %s", id, d.ID)
	}
	return d, nil
}

// FetchEncryptionKey reads the destination's public key kid and checks it
// with jose.ValidatePublicKey as an encryption key: RSA of at least 4096
// bits, e = AQAB, key_ops ["wrapKey"], alg RSA-OAEP-256, x5c present. A
// key that breaks a rule yields an error wrapping jose.ErrKeyRule.
func (s *Sender) FetchEncryptionKey(ctx context.Context, destinationID, kid string) (*gojose.JSONWebKey, error) {
	raw, err := s.c.fetchKey(ctx, destinationID, kid)
	if err != nil {
		return nil, fmt.Errorf("fetch encryption key %s of %s: %w", kid, destinationID, err)
	}
	key, err := jose.ValidatePublicKey(raw, jose.Encryption)
	if err != nil {
		return nil, fmt.Errorf("fetch encryption key %s of %s: %w", kid, destinationID, err)
	}
	if key.KeyID != kid {
		return nil, fmt.Errorf("fetch encryption key %s of %s: answer is key %s", kid, destinationID, key.KeyID)
	}
	return key, nil
}

// fetchKey reads GET /v1/destinations/{id}/keys/{kid}.
func (c *Client) fetchKey(ctx context.Context, destinationID, kid string) ([]byte, error) {
	resp, err := c.do(ctx, request{
		method: http.MethodGet,
		path:   "/v1/destinations/" + url.PathEscape(destinationID) + "/keys/" + url.PathEscape(kid),
		want:   []int{http.StatusOK}, idempotent: true,
	})
	if err != nil {
		return nil, err
	}
	defer drain(resp)
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	return raw, nil
}

// Submission is what a Sender hands in.
type Submission struct {
	DestinationID string
	// ServiceType names the service; Identifier and Name are required.
	ServiceType ServiceType
	// Region is Amtsbote's optional extension: the applicant's place as
	// "DE" + ARS. FIT-Connect ignores it.
	Region string
	// Data is the specialist data; it may be empty when everything
	// travels in attachments.
	Data []byte
	// DataMimeType is "application/json" (the default) or "application/xml".
	DataMimeType string
	// DataSchemaURI names the data's schema; by default the first schema
	// of DataMimeType the destination lists for the service.
	DataSchemaURI string
	Attachments   []Attachment
	// CaseID, when set, adds the submission to an existing case (a reply).
	CaseID string
	// ExtraMetadata are further top-level members of the metadata, such as
	// "replyChannel" or "additionalReferenceInfo"; the Sender writes
	// "$schema", "contentStructure" and "publicServiceType" itself.
	ExtraMetadata map[string]any
	// Callback asks for new-events callbacks to an https URL.
	Callback *Callback
	// IdempotencyKey is sent with the create request. Repeating Submit
	// with the same key (and the same attachment IDs, so set them) after a
	// crash finds the same submission again; it fails with a conflict if
	// that one was already submitted, or, when the case's event log shows
	// it submitted, returns its Receipt with ErrAlreadySubmitted. Empty
	// means a fresh key per call, which still makes the client's own
	// retries safe.
	IdempotencyKey string
}

// Attachment is one document of a Submission. Exactly one of Content and
// Bytes holds it.
type Attachment struct {
	// ID is a UUID; empty means the Sender generates one.
	ID          string
	Filename    string
	Description string
	MimeType    string
	// Purpose defaults to PurposeAttachment.
	Purpose Purpose
	// Content is read to its end once. The Sender holds the plaintext and
	// its encryption in memory while it uploads the attachment.
	Content io.Reader
	Bytes   []byte
}

// Callback is a new-events callback: an https URL and a secret of 32 to
// 512 characters for its HMAC.
type Callback struct {
	URL    string `json:"url"`
	Secret string `json:"secret"`
}

// Receipt is what a Sender knows after a successful Submit.
type Receipt struct {
	DestinationID string
	SubmissionID  string
	CaseID        string
	// AttachmentIDs in the order of Submission.Attachments.
	AttachmentIDs []string
	// AuthenticationTags of the JWEs sent; accept-submission must echo them.
	AuthenticationTags set.AuthenticationTags
}

type createBody struct {
	DestinationID        string      `json:"destinationId"`
	AnnouncedAttachments []string    `json:"announcedAttachments"`
	ServiceType          ServiceType `json:"serviceType"`
	CaseID               string      `json:"caseId,omitempty"`
	Region               string      `json:"region,omitempty"`
	Callback             *Callback   `json:"callback,omitempty"`
}

type created struct {
	DestinationID string `json:"destinationId"`
	SubmissionID  string `json:"submissionId"`
	CaseID        string `json:"caseId"`
}

type submitBody struct {
	EncryptedMetadata string `json:"encryptedMetadata"`
	EncryptedData     string `json:"encryptedData,omitempty"`
}

// Submit hands sub in: it fetches the destination and its encryption key
// and checks both, announces the submission (POST /v1/submissions),
// encrypts and uploads each attachment (PUT …/attachments/{id}), builds
// the metadata with the SHA-512 hashes of data and attachments, encrypts
// metadata and data, and submits (PUT /v1/submissions/{id}).
func (s *Sender) Submit(ctx context.Context, sub Submission) (Receipt, error) {
	r, err := s.submit(ctx, sub)
	if err != nil {
		if !errors.Is(err, ErrAlreadySubmitted) {
			r = Receipt{}
		}
		return r, fmt.Errorf("submit to %s: %w", sub.DestinationID, err)
	}
	return r, nil
}

func (s *Sender) submit(ctx context.Context, sub Submission) (Receipt, error) {
	ids, err := sub.check()
	if err != nil {
		return Receipt{}, err
	}
	mimeType := sub.DataMimeType
	if mimeType == "" {
		mimeType = "application/json"
	}
	dest, err := s.FetchDestination(ctx, sub.DestinationID)
	if err != nil {
		return Receipt{}, err
	}
	if dest.Status != "" && dest.Status != "active" {
		return Receipt{}, fmt.Errorf("%w: destination is %s, not active", ErrDestination, dest.Status)
	}
	offer, ok := dest.Service(sub.ServiceType.Identifier)
	if !ok {
		return Receipt{}, fmt.Errorf("%w: service %s is not offered", ErrDestination, sub.ServiceType.Identifier)
	}
	schemaURI := sub.DataSchemaURI
	if schemaURI == "" && len(sub.Data) > 0 {
		for _, sc := range offer.SubmissionSchemas {
			if sc.MimeType == mimeType {
				schemaURI = sc.SchemaURI
				break
			}
		}
		if schemaURI == "" {
			return Receipt{}, fmt.Errorf("%w: service %s lists no %s schema; set DataSchemaURI", ErrDestination, offer.Identifier, mimeType)
		}
	}
	key, err := s.FetchEncryptionKey(ctx, dest.ID, dest.EncryptionKID)
	if err != nil {
		return Receipt{}, err
	}

	// The metadata must pass its checks before anything is announced.
	var data *DataInfo
	if len(sub.Data) > 0 {
		data = &DataInfo{Hash: SHA512(sub.Data), SubmissionSchema: SubmissionSchema{SchemaURI: schemaURI, MimeType: mimeType}}
	}
	infos := make([]AttachmentInfo, len(sub.Attachments))
	for i, a := range sub.Attachments {
		infos[i] = AttachmentInfo{
			Hash: Hash{Type: HashSHA512, Content: strings.Repeat("0", 128)}, Purpose: a.purpose(),
			Filename: a.Filename, Description: a.Description, MimeType: a.MimeType, ID: ids[i],
		}
	}
	if _, err := s.checkedMetadata(sub, data, infos); err != nil {
		return Receipt{}, err
	}

	c, err := s.announce(ctx, sub, ids)
	if err != nil {
		return Receipt{}, err
	}
	r, err := s.send(ctx, sub, c, ids, key, data, infos, mimeType)
	if p, ok := problem.As(err); ok && p.Type == problem.TypeMissingAttachments {
		// An attachment lost since its upload, or uploaded twice at once
		// by a retry of this Submit: its upload again mends it.
		r, err = s.send(ctx, sub, c, ids, key, data, infos, mimeType)
	}
	if err != nil && sub.IdempotencyKey != "" {
		// Uploads and the submit of a submission submitted before are
		// refused as being in the wrong state or differing from the first.
		if p, ok := problem.As(err); ok && (p.Status == http.StatusConflict ||
			p.Type == problem.TypeSubmissionState || p.Type == problem.TypeIdempotencyMismatch) {
			if before, ok := s.submittedBefore(ctx, c, ids); ok {
				return before, fmt.Errorf("submission %s: %w", c.SubmissionID, ErrAlreadySubmitted)
			}
		}
	}
	return r, err
}

// submittedBefore returns the Receipt of the announced submission c when
// its case's event log shows it submitted.
func (s *Sender) submittedBefore(ctx context.Context, c created, ids []string) (Receipt, bool) {
	r := Receipt{DestinationID: c.DestinationID, SubmissionID: c.SubmissionID, CaseID: c.CaseID, AttachmentIDs: ids}
	events, err := s.c.eventLog(ctx, c.CaseID)
	if err != nil {
		return Receipt{}, false
	}
	st, err := deriveStatus(events, c.SubmissionID, c.DestinationID)
	if err != nil || st.AuthenticationTags == nil {
		return Receipt{}, false
	}
	r.AuthenticationTags = *st.AuthenticationTags
	return r, true
}

// send uploads the attachments of the announced submission c, then
// encrypts and submits metadata and data.
func (s *Sender) send(ctx context.Context, sub Submission, c created, ids []string, key *gojose.JSONWebKey, data *DataInfo, infos []AttachmentInfo, mimeType string) (Receipt, error) {
	tags := set.AuthenticationTags{}
	if len(ids) > 0 {
		tags.Attachments = make(map[string]string, len(ids))
	}
	for i, a := range sub.Attachments {
		h, tag, err := s.upload(ctx, c.SubmissionID, ids[i], a, key)
		if err != nil {
			return Receipt{}, err
		}
		infos[i].Hash = h
		tags.Attachments[ids[i]] = tag
	}
	meta, err := s.checkedMetadata(sub, data, infos)
	if err != nil {
		return Receipt{}, err
	}
	body := submitBody{}
	if body.EncryptedMetadata, tags.Metadata, err = encrypt(meta, key, "application/json"); err != nil {
		return Receipt{}, fmt.Errorf("encrypt metadata: %w", err)
	}
	if data != nil {
		if body.EncryptedData, tags.Data, err = encrypt(sub.Data, key, mimeType); err != nil {
			return Receipt{}, fmt.Errorf("encrypt data: %w", err)
		}
	}
	jb, err := jsonBody(body)
	if err != nil {
		return Receipt{}, err
	}
	resp, err := s.c.do(ctx, request{
		method: http.MethodPut, path: "/v1/submissions/" + url.PathEscape(c.SubmissionID),
		body: jb, ctype: "application/json", want: []int{http.StatusAccepted, http.StatusOK}, idempotent: true,
	})
	if err != nil {
		return Receipt{}, fmt.Errorf("submit submission %s: %w", c.SubmissionID, err)
	}
	drain(resp)
	return Receipt{
		DestinationID: c.DestinationID, SubmissionID: c.SubmissionID, CaseID: c.CaseID,
		AttachmentIDs: ids, AuthenticationTags: tags,
	}, nil
}

// check validates sub and returns the attachment ids, generating missing ones.
func (sub Submission) check() ([]string, error) {
	bad := func(format string, args ...any) ([]string, error) {
		return nil, fmt.Errorf("%w: %s", ErrInvalidSubmission, fmt.Sprintf(format, args...))
	}
	if err := uuid.Validate(sub.DestinationID); err != nil {
		return bad("destination id %q is not a UUID", sub.DestinationID)
	}
	if sub.CaseID != "" && uuid.Validate(sub.CaseID) != nil {
		return bad("case id %q is not a UUID", sub.CaseID)
	}
	st := sub.ServiceType
	if n := len(st.Identifier); n < 7 || n > 255 || !serviceRE.MatchString(st.Identifier) {
		return bad("service identifier %q is not a service URN", st.Identifier)
	}
	if st.Name == "" {
		return bad("service name is required")
	}
	if sub.DataMimeType != "" && sub.DataMimeType != "application/json" && sub.DataMimeType != "application/xml" {
		return bad("data mime type %q: want application/json or application/xml", sub.DataMimeType)
	}
	if len(sub.Data) == 0 && (sub.DataMimeType != "" || sub.DataSchemaURI != "") {
		return bad("data mime type or schema given without data")
	}
	if sub.Region != "" && !regionRE.MatchString(sub.Region) {
		return bad("region %q is not \"DE\" and an ARS prefix", sub.Region)
	}
	if cb := sub.Callback; cb != nil {
		if u, err := url.Parse(cb.URL); err != nil || u.Scheme != "https" || u.Host == "" {
			return bad("callback url %q is not an https URL", cb.URL)
		}
		if n := len(cb.Secret); n < 32 || n > 512 {
			return bad("callback secret has %d characters, want 32 to 512", n)
		}
	}
	ids := make([]string, len(sub.Attachments))
	seen := make(map[string]bool, len(ids))
	for i, a := range sub.Attachments {
		id := strings.ToLower(a.ID)
		if id == "" {
			id = uuid.NewString()
		} else if err := uuid.Validate(id); err != nil || len(id) != 36 {
			return bad("attachment %d: id %q is not a UUID", i, a.ID)
		}
		if seen[id] {
			return bad("attachment %d: id %s is used twice", i, id)
		}
		seen[id] = true
		ids[i] = id
		if (a.Content == nil) == (a.Bytes == nil) {
			return bad("attachment %s: exactly one of Content and Bytes is required", id)
		}
		if a.Purpose == "data" {
			return bad("attachment %s: purpose \"data\" is not part of metadata schema 1.0.0", id)
		}
		if a.Purpose != "" && !a.Purpose.valid() {
			return bad("attachment %s: purpose %q: want form, attachment or report", id, a.Purpose)
		}
		if !mimeTypeRE.MatchString(a.MimeType) {
			return bad("attachment %s: mime type %q is not a media type", id, a.MimeType)
		}
	}
	return ids, nil
}

func (a Attachment) purpose() Purpose {
	if a.Purpose == "" {
		return PurposeAttachment
	}
	return a.Purpose
}

// checkedMetadata builds the metadata and checks it as a receiver will.
func (s *Sender) checkedMetadata(sub Submission, data *DataInfo, infos []AttachmentInfo) ([]byte, error) {
	meta, err := buildMetadata(sub.ExtraMetadata, sub.ServiceType, data, infos)
	if err != nil {
		return nil, err
	}
	if _, err := parseMetadata(meta, s.c.schema); err != nil {
		return nil, err
	}
	return meta, nil
}

// announce creates the submission with its announced attachments.
func (s *Sender) announce(ctx context.Context, sub Submission, ids []string) (created, error) {
	key := sub.IdempotencyKey
	if key == "" {
		key = uuid.NewString()
	}
	body, err := jsonBody(createBody{
		DestinationID: sub.DestinationID, AnnouncedAttachments: ids,
		ServiceType: ServiceType{Identifier: sub.ServiceType.Identifier, Name: sub.ServiceType.Name, Description: sub.ServiceType.Description},
		CaseID:      sub.CaseID, Region: sub.Region, Callback: sub.Callback,
	})
	if err != nil {
		return created{}, err
	}
	resp, err := s.c.do(ctx, request{
		method: http.MethodPost, path: "/v1/submissions", body: body, ctype: "application/json",
		header: http.Header{"Idempotency-Key": {key}}, want: []int{http.StatusCreated}, idempotent: true,
	})
	if err != nil {
		return created{}, fmt.Errorf("create submission: %w", err)
	}
	defer drain(resp)
	var c created
	if err := decodeJSON(resp.Body, &c); err != nil {
		return created{}, fmt.Errorf("create submission: %w", err)
	}
	if uuid.Validate(c.SubmissionID) != nil || uuid.Validate(c.CaseID) != nil {
		return created{}, fmt.Errorf("create submission: answer lacks submissionId or caseId")
	}
	if !strings.EqualFold(c.DestinationID, sub.DestinationID) {
		return created{}, fmt.Errorf("create submission: answer names destination %s", c.DestinationID)
	}
	if sub.CaseID != "" && !strings.EqualFold(c.CaseID, sub.CaseID) {
		return created{}, fmt.Errorf("create submission: answer names case %s, not %s", c.CaseID, sub.CaseID)
	}
	return c, nil
}

// upload encrypts one attachment and streams the JWE to the server. It
// returns the plaintext's hash and the JWE's authentication tag.
func (s *Sender) upload(ctx context.Context, submissionID, id string, a Attachment, key *gojose.JSONWebKey) (Hash, string, error) {
	plain := a.Bytes
	if a.Content != nil {
		var buf bytes.Buffer
		if _, err := io.Copy(&buf, a.Content); err != nil {
			return Hash{}, "", fmt.Errorf("read attachment %s: %w", id, err)
		}
		plain = buf.Bytes()
	}
	h := SHA512(plain)
	compact, tag, err := encrypt(plain, key, a.MimeType)
	if err != nil {
		return Hash{}, "", fmt.Errorf("encrypt attachment %s: %w", id, err)
	}
	resp, err := s.c.do(ctx, request{
		method: http.MethodPut,
		path:   "/v1/submissions/" + url.PathEscape(submissionID) + "/attachments/" + url.PathEscape(id),
		body:   stringBody(compact),
		ctype:  "application/jose", want: []int{http.StatusNoContent, http.StatusOK}, idempotent: true,
	})
	if err != nil {
		return Hash{}, "", fmt.Errorf("upload attachment %s: %w", id, err)
	}
	drain(resp)
	return h, tag, nil
}

// encrypt seals plaintext with jose.Encrypt and returns the JWE and its tag.
func encrypt(plaintext []byte, key *gojose.JSONWebKey, cty string) (compact, tag string, err error) {
	if compact, err = jose.Encrypt(plaintext, key, cty); err != nil {
		return "", "", err
	}
	jwe, err := jose.ParseJWE(compact)
	if err != nil {
		return "", "", err
	}
	return compact, jwe.AuthTag, nil
}
