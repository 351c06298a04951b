// Package store defines Amtsbote's persistent state: the registry of
// destinations, keys and OAuth clients, the audit log of registry changes,
// and the projection of the submission flow (submissions, events,
// idempotency records). Implementations live in sub-packages (postgres,
// sqlite) and pass the conformance suite in storetest.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/amtsbote/amtsbote/pkg/sealed"
)

// Sentinel errors every implementation returns (wrapped) so callers can use errors.Is.
var (
	// ErrNotFound means the requested record does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a record with the same identity already exists.
	ErrConflict = errors.New("conflict")
)

// DestinationStatus is FIT-Connect's lifecycle of a destination.
type DestinationStatus string

// Destination statuses as FIT-Connect defines them.
const (
	StatusCreated        DestinationStatus = "created"
	StatusActive         DestinationStatus = "active"
	StatusInactive       DestinationStatus = "inactive"
	StatusDecommissioned DestinationStatus = "decommissioned"
)

// Valid reports whether s is one of the four statuses.
func (s DestinationStatus) Valid() bool {
	switch s {
	case StatusCreated, StatusActive, StatusInactive, StatusDecommissioned:
		return true
	}
	return false
}

// ContactInformation names the organisation behind a destination.
type ContactInformation struct {
	LegalName string `json:"legalName"`
	Address   string `json:"address"`
	Phone     string `json:"phone"`
	Email     string `json:"email"`
	Unit      string `json:"unit,omitempty"`
}

// SubmissionSchema references a schema of the specialist data a destination accepts.
type SubmissionSchema struct {
	MimeType  string `json:"mimeType"`
	SchemaURI string `json:"schemaUri"`
}

// Service is one administrative service a destination offers, with the
// regions ("DE" + ARS prefix) it serves them in. ValidFrom and ValidUntil are
// an Amtsbote extension for announced handovers; zero means unbounded.
type Service struct {
	Identifier        string             `json:"identifier"`
	Regions           []string           `json:"regions"`
	SubmissionSchemas []SubmissionSchema `json:"submissionSchemas"`
	ValidFrom         *time.Time         `json:"validFrom,omitempty"`
	ValidUntil        *time.Time         `json:"validUntil,omitempty"`
}

// Destination is a receiving endpoint of an authority.
type Destination struct {
	ID               string             `json:"destinationId"`
	Status           DestinationStatus  `json:"status"`
	Contact          ContactInformation `json:"contactInformation"`
	Services         []Service          `json:"services"`
	EncryptionKID    string             `json:"encryptionKid"`
	SigningKID       string             `json:"signingKid,omitempty"`
	MetadataVersions []string           `json:"metadataVersions"`
	ReplyChannels    json.RawMessage    `json:"replyChannels,omitempty"`
	// HomeRegion is the ARS (without "DE") the destination's inbox subject is filed under.
	HomeRegion  string `json:"homeRegion,omitempty"`
	CallbackURL string `json:"-"`
	// CallbackSecret is write-only through the API; it is kept because HMACs need it.
	CallbackSecret string    `json:"-"`
	CreatedAt      time.Time `json:"-"`
	UpdatedAt      time.Time `json:"-"`
}

// KeyUse says what a destination key is for.
type KeyUse string

// Key uses, after FIT-Connect's key_ops.
const (
	UseEncryption KeyUse = "encryption" // key_ops wrapKey, alg RSA-OAEP-256
	UseSigning    KeyUse = "signing"    // key_ops verify, alg PS512
)

// Key is a public JWK of a destination.
type Key struct {
	DestinationID string          `json:"-"`
	KID           string          `json:"kid"`
	Use           KeyUse          `json:"use"`
	JWK           json.RawMessage `json:"jwk"`
	CreatedAt     time.Time       `json:"createdAt"`
	// ValidUntil is set when the key was rolled over; nil means valid.
	ValidUntil *time.Time `json:"validUntil,omitempty"`
}

// ValidAt reports whether the key may still be used at t.
func (k Key) ValidAt(t time.Time) bool { return k.ValidUntil == nil || t.Before(*k.ValidUntil) }

// Client is an OAuth2 client (client credentials grant).
type Client struct {
	ID         string    `json:"clientId"`
	Name       string    `json:"name"`
	SecretHash []byte    `json:"-"`
	Scopes     []string  `json:"scopes"`
	Disabled   bool      `json:"disabled"`
	CreatedAt  time.Time `json:"createdAt"`
}

// AuditEntry records one registry change.
type AuditEntry struct {
	ID     int64           `json:"id"`
	At     time.Time       `json:"at"`
	Actor  string          `json:"actor"`  // client id, or "cli" / "dev" for local operators
	Action string          `json:"action"` // e.g. "destination.create", "key.roll", "client.create"
	Object string          `json:"object"` // e.g. "destination:<id>", "client:<id>"
	Before json.RawMessage `json:"before,omitempty"`
	After  json.RawMessage `json:"after,omitempty"`
}

// Submission is the projection of one submission's state.
type Submission struct {
	ID                   string
	CaseID               string
	DestinationID        string
	SenderClientID       string
	ServiceIdentifier    string
	ServiceName          string
	Region               string // "DE"+ARS when the sender named one
	AnnouncedAttachments []string
	UploadedAttachments  []string
	CallbackURL          string
	CallbackSecret       string
	CreatedAt            time.Time
	// RoutedAt is when the submission reached its destination's inbox;
	// only routed submissions are listed for pickup.
	RoutedAt *time.Time
	// Progress is what the case's events decided: status, submit, pickup
	// and deletion times. Picking up does not take the submission off the
	// pickup list.
	sealed.Progress
	UpdatedAt time.Time
}

// Deadline names a FIT-Connect retention deadline: which submissions are
// due once their clock passes a cut-off.
type Deadline string

// The retention deadlines. Each selects the submissions it still applies
// to, so that work done (a status changed) takes a submission off its list.
const (
	// DeadlineIncomplete: status incomplete, created before the cut-off;
	// they are deleted (1 day).
	DeadlineIncomplete Deadline = "incomplete"
	// DeadlinePickedUp: picked up before the cut-off and not deleted; their
	// content is deleted (7 days after pickup).
	DeadlinePickedUp Deadline = "picked-up"
	// DeadlineUnpickedReject: status submitted, never picked up, submitted
	// before the cut-off; Amtsbote rejects them (day 14).
	DeadlineUnpickedReject Deadline = "unpicked-reject"
	// DeadlineUnpickedDelete: submitted before the cut-off, never picked
	// up, not deleted, whatever their status; they are deleted (day 21).
	DeadlineUnpickedDelete Deadline = "unpicked-delete"
)

// Valid reports whether d is one of the four deadlines.
func (d Deadline) Valid() bool {
	switch d {
	case DeadlineIncomplete, DeadlinePickedUp, DeadlineUnpickedReject, DeadlineUnpickedDelete:
		return true
	}
	return false
}

// OverdueDestination is one destination's submissions waiting too long
// for pickup; see Store.Overdue.
type OverdueDestination struct {
	DestinationID string
	// Counts holds, per cut-off, the submissions submitted before it.
	Counts []int
	// Oldest is when the longest-waiting one was submitted.
	Oldest time.Time
}

// CheckCutoffs returns an error unless cutoffs is non-empty and
// descending, as Overdue wants them.
func CheckCutoffs(cutoffs []time.Time) error {
	if len(cutoffs) == 0 {
		return errors.New("overdue: no cut-off")
	}
	for i := 1; i < len(cutoffs); i++ {
		if !cutoffs[i].Before(cutoffs[i-1]) {
			return fmt.Errorf("overdue: cut-off %d (%s) is not before cut-off %d (%s)", i+1, cutoffs[i], i, cutoffs[i-1])
		}
	}
	return nil
}

// Event is one security event token of a case, as recorded.
type Event struct {
	JTI          string
	CaseID       string
	SubmissionID string
	Type         string // full event URI
	Issuer       string
	IssuedAt     time.Time
	Token        string // the compact SET
	// StreamSeq is the event's sequence number in the EVENTS stream, the
	// order in which a case's events are folded and listed; 0 for events
	// recorded before it was kept.
	StreamSeq uint64
}

// Fold recomputes a submission's Progress from all of its recorded
// events, in stream order. It must not call the store.
type Fold func(s *Submission, events []Event)

// Projection is the outcome of ProjectEvent.
type Projection struct {
	// Submission as written (zero when the store does not know it).
	Submission Submission
	// Recorded is true when the event was new to the event log.
	Recorded bool
	// Changed is true when the submission's progress changed.
	Changed bool
}

// IdempotencyRecord is the stored answer to a request that may be retried.
type IdempotencyRecord struct {
	Key         string // scope-qualified request key, e.g. "submit:<submissionId>"
	RequestHash []byte // hash of the request body, to tell a retry from a different request
	Status      int
	Body        []byte
	CreatedAt   time.Time
}

// Page selects a slice of a list.
type Page struct {
	Limit  int // 1..500; 0 means 100
	Offset int
}

// Store is the persistent state of Amtsbote. All methods are safe for
// concurrent use. Registry changes (destinations, keys, clients) write their
// audit entry in the same transaction, so either both happen or neither.
// Errors wrap ErrNotFound or ErrConflict where those apply.
type Store interface {
	// CreateDestination inserts d with its keys. ErrConflict if the id or a kid exists.
	CreateDestination(ctx context.Context, actor string, d Destination, keys []Key) error
	// UpdateDestination reads d, applies update and writes it back atomically.
	// An error from update aborts the change and is returned as is.
	UpdateDestination(ctx context.Context, actor string, id string, update func(*Destination) error) (Destination, error)
	// Destination returns one destination. ErrNotFound if absent.
	Destination(ctx context.Context, id string) (Destination, error)
	// Destinations lists destinations ordered by id, and the total count.
	Destinations(ctx context.Context, p Page) ([]Destination, int, error)

	// AddKey adds a key to a destination without changing which key is current.
	// ErrNotFound for an unknown destination, ErrConflict for an existing kid.
	AddKey(ctx context.Context, actor string, k Key) error
	// RollKey adds k, makes it the destination's current key of its use and
	// limits the previous current key of that use to previousValidUntil.
	RollKey(ctx context.Context, actor string, k Key, previousValidUntil time.Time) (Destination, error)
	// Key returns one key of a destination. ErrNotFound if absent.
	Key(ctx context.Context, destinationID, kid string) (Key, error)
	// Keys lists a destination's keys, oldest first.
	Keys(ctx context.Context, destinationID string) ([]Key, error)

	// CreateClient inserts an OAuth client. ErrConflict if the id exists.
	CreateClient(ctx context.Context, actor string, c Client) error
	// Client returns one client. ErrNotFound if absent.
	Client(ctx context.Context, id string) (Client, error)
	// Clients lists clients ordered by id.
	Clients(ctx context.Context) ([]Client, error)
	// UpdateClient reads client id, applies update and writes it back
	// atomically, with an audit entry of action. An error from update
	// aborts the change and is returned as is; ErrNotFound if absent.
	UpdateClient(ctx context.Context, actor, id, action string, update func(*Client) error) (Client, error)

	// AuditLog lists audit entries for an object ("" for all), newest first.
	AuditLog(ctx context.Context, object string, p Page) ([]AuditEntry, error)
	// AuditCount counts the audit entries for an object ("" for all).
	AuditCount(ctx context.Context, object string) (int, error)
	// Audit appends an entry for an operator's act outside the registry
	// (a dead letter purged): e's Actor, Action, Object, Before and
	// After; the store sets its ID and time.
	Audit(ctx context.Context, e AuditEntry) error

	// CreateSubmission inserts a new submission. ErrConflict if the id exists.
	CreateSubmission(ctx context.Context, s Submission) error
	// Submission returns one submission. ErrNotFound if absent.
	Submission(ctx context.Context, id string) (Submission, error)
	// UpdateSubmission reads, applies update and writes back atomically.
	UpdateSubmission(ctx context.Context, id string, update func(*Submission) error) (Submission, error)
	// SubmissionsByCase lists the submissions of a case, oldest first
	// (creation time, then id); none, and no error, for an unknown case.
	// A case exists from its first submission's creation on, before any
	// of its events is recorded.
	SubmissionsByCase(ctx context.Context, caseID string) ([]Submission, error)
	// PickupList lists the submissions ready for pickup at the given
	// destinations, oldest first, and the total count: status submitted
	// and routed (RoutedAt set), as FIT-Connect's pickup list. A fetch
	// (PickedUpAt set) keeps a submission on the list, so a receiver whose
	// fetch failed fetches it again; accept, reject or forward (a status
	// change) or deletion takes it off.
	PickupList(ctx context.Context, destinationIDs []string, p Page) ([]Submission, int, error)
	// DueSubmissions lists up to limit (1..MaxPageLimit; 0 means
	// DefaultPageLimit) submissions that deadline d applies to at the
	// cut-off before, the longest overdue first. An invalid d is an error.
	DueSubmissions(ctx context.Context, d Deadline, before time.Time, limit int) ([]Submission, error)

	// Overdue counts, per destination, the submissions waiting for their
	// first pickup (status submitted, never fetched) that were submitted
	// before each of the cut-offs, latest cut-off first: Counts[i] counts
	// those before cutoffs[i]. Only destinations with one before
	// cutoffs[0] are listed, ordered by their oldest such submission.
	// cutoffs must be non-empty and descending.
	Overdue(ctx context.Context, cutoffs []time.Time) ([]OverdueDestination, error)

	// ProjectEvent records e in the event log unless its JTI is recorded
	// (the projection is replayed at least once), and in the same
	// transaction refolds the progress of e's submission from all of the
	// submission's recorded events with fold, writing it when it changed.
	// Projections of one submission are serialized. ErrNotFound when the
	// store does not know the submission; e is recorded all the same.
	// ErrConflict, recording nothing, when the submission is of another
	// case than e.
	ProjectEvent(ctx context.Context, e Event, fold Fold) (Projection, error)
	// Events lists a case's events in stream order, and the total.
	Events(ctx context.Context, caseID string, p Page) ([]Event, int, error)

	// PutIdempotency stores r unless a record with r.Key exists; it returns
	// the stored record and whether it was newly created.
	PutIdempotency(ctx context.Context, r IdempotencyRecord) (IdempotencyRecord, bool, error)
	// Idempotency returns the record stored under key. ErrNotFound if absent.
	Idempotency(ctx context.Context, key string) (IdempotencyRecord, error)

	// Installation returns the id of the installation the store belongs
	// to ("" while none is recorded) and whether it holds any submission
	// or event.
	Installation(ctx context.Context) (id string, used bool, err error)
	// RecordInstallation records id as the store's installation unless
	// one is recorded, and returns the one recorded.
	RecordInstallation(ctx context.Context, id string) (string, error)

	// Close releases the store's resources.
	Close() error
}

// Transient is implemented by a store that can tell its being unreachable
// (a lost connection, a database refusing connections) from other
// failures: Transient(err) reports whether the same request may succeed
// when retried.
type Transient interface {
	Transient(err error) bool
}

// Page limits.
const (
	DefaultPageLimit = 100
	MaxPageLimit     = 500
)

// Normalize returns p with a limit in 1..MaxPageLimit (0 or less becomes
// DefaultPageLimit, more than MaxPageLimit becomes MaxPageLimit) and an
// offset of at least zero. Implementations page with the normalised value.
func (p Page) Normalize() Page {
	switch {
	case p.Limit <= 0:
		p.Limit = DefaultPageLimit
	case p.Limit > MaxPageLimit:
		p.Limit = MaxPageLimit
	}
	if p.Offset < 0 {
		p.Offset = 0
	}
	return p
}

// auditKey is a key as the audit log records it: identity and validity,
// without key material (keys are immutable, the kid names the JWK).
type auditKey struct {
	KID        string     `json:"kid"`
	Use        KeyUse     `json:"use"`
	CreatedAt  time.Time  `json:"createdAt"`
	ValidUntil *time.Time `json:"validUntil,omitempty"`
}

// AuditJSON returns what the audit log records of d and its keys: every
// registry field including the callback URL, never the callback secret, and
// each key by kid, use and validity. Every implementation writes this as the
// before and after of destination and key changes, so the log reads the same
// whichever store keeps it. It fails only when d.ReplyChannels is not JSON.
func (d Destination) AuditJSON(keys []Key) (json.RawMessage, error) {
	return d.AuditUpdateJSON(keys, false)
}

// AuditUpdateJSON is AuditJSON of d as an update left it; secretChanged
// records that the update gave the callback a new secret, the only trace
// of a secret the log keeps.
func (d Destination) AuditUpdateJSON(keys []Key, secretChanged bool) (json.RawMessage, error) {
	v := struct {
		Destination
		CallbackURL           string     `json:"callbackUrl,omitempty"`
		CallbackSecretChanged bool       `json:"callbackSecretChanged,omitempty"`
		Keys                  []auditKey `json:"keys"`
	}{Destination: d, CallbackURL: d.CallbackURL, CallbackSecretChanged: secretChanged, Keys: make([]auditKey, 0, len(keys))}
	for _, k := range keys {
		v.Keys = append(v.Keys, auditKey{KID: k.KID, Use: k.Use, CreatedAt: k.CreatedAt, ValidUntil: k.ValidUntil})
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("audit record of destination %s: %w", d.ID, err)
	}
	return b, nil
}

// AuditJSON returns what the audit log records of c: every field but the
// secret hash.
func (c Client) AuditJSON() json.RawMessage {
	b, _ := json.Marshal(c) // SecretHash is tagged "-"; strings, bools and times always marshal
	return b
}

// Both stores keep times in UTC to the microsecond, PostgreSQL's precision;
// these helpers bring a time to that form (truncating, where PostgreSQL
// would round) so what is written reads back equal.

// Truncate returns t as the stores keep it.
func Truncate(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// TruncatePtr is Truncate for optional times.
func TruncatePtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	n := Truncate(*t)
	return &n
}

// Now is the current time as the stores keep it.
func Now() time.Time { return Truncate(time.Now()) }

// OrNow returns Truncate(t), or Now when t is zero.
func OrNow(t time.Time) time.Time {
	if t.IsZero() {
		return Now()
	}
	return Truncate(t)
}
