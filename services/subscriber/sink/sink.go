// Package sink delivers decrypted, validated submissions into an
// authority's specialist procedure (Fachverfahren). It is where the
// subscriber's "exactly once" is counted: every Sink is idempotent by
// submission id, so a redelivery after a crash, or two subscribers
// delivering the same submission at once, leave exactly one copy.
//
// Three sinks exist:
//   - Directory drops one folder per submission, written into a temporary
//     folder and renamed into place.
//   - HTTP posts one JSON document per submission to the Fachverfahren with
//     an Idempotency-Key header, retrying what may succeed later.
//   - Postgres inserts one row per submission, and one per attachment,
//     in one transaction that does nothing when the submission is there.
//
// Attachments are streamed from Attachment.Open to the sink's backend and
// never held whole in memory. Every sink stores attachments under the name
// Filenames derives from the sender's filename (the sender's own name stays
// in the metadata).
//
// Every error of Deliver wraps ErrPermanent or ErrTransient: permanent
// errors (an invalid delivery, a refusal of its content by the
// Fachverfahren or its database) repeat on every attempt, transient ones
// (a server error, a timeout, a refused connection, a folder, table or
// credential an operator has to mend) may pass.
package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Media types of a submission's data.
const (
	MimeJSON = "application/json"
	MimeXML  = "application/xml"
)

// maxText bounds identifiers, service identifiers and media types.
const maxText = 255

// Sentinel errors. Every error Deliver returns wraps exactly one of
// ErrPermanent and ErrTransient.
var (
	// ErrPermanent means the delivery cannot succeed as it is: retrying
	// it repeats the failure.
	ErrPermanent = errors.New("permanent delivery failure")
	// ErrTransient means the delivery failed for a reason that may pass:
	// retry it later.
	ErrTransient = errors.New("transient delivery failure")
	// ErrInvalid means the Delivery itself breaks a rule (an id that is no
	// UUID, an unknown data media type, a duplicate attachment id). It
	// comes with ErrPermanent.
	ErrInvalid = errors.New("invalid delivery")
	// ErrTooLarge means an attachment exceeds what the sink can store. It
	// comes with ErrPermanent.
	ErrTooLarge = errors.New("attachment too large for the sink")
)

// Sink stores deliveries in a Fachverfahren's intake.
//
// Deliver stores d, or does nothing when a delivery with d's submission id
// is stored already, and returns nil once the copy is complete and
// durable. A Deliver that fails or is cancelled half-way leaves nothing a
// later Deliver of the same submission would count as delivered, so a
// retry completes or redoes it. Its errors wrap ErrPermanent or
// ErrTransient; an error of an attachment's source (Open or Read) is
// wrapped as well and counts as transient unless it wraps ErrPermanent.
//
// Deliver is safe for concurrent use, also with the same submission id and
// by several processes on one backend. Close releases the sink's
// resources; Deliver must not be called after it.
type Sink interface {
	Deliver(ctx context.Context, d Delivery) error
	// Kind names the sink: "directory", "http" or "postgres".
	Kind() string
	Close() error
}

// Checker is a Sink that can tell, without delivering, whether it takes
// deliveries now: the subscriber's readiness asks it.
type Checker interface {
	Check(ctx context.Context) error
}

// Bounded is a Sink that says how long one Deliver may take at most,
// where that is longer than a delivery usually takes (an HTTP sink
// retrying a Fachverfahren that answers slowly).
type Bounded interface {
	Longest() time.Duration
}

// Delivery is one decrypted and validated submission.
type Delivery struct {
	// SubmissionID, CaseID and DestinationID are UUIDs; upper-case
	// letters are accepted and stored in lower case.
	SubmissionID  string
	CaseID        string
	DestinationID string
	// ServiceIdentifier is the service's URN, e.g.
	// urn:de:fim:leika:leistung:99010003001006.
	ServiceIdentifier string
	// Metadata is the decrypted metadata: one JSON object.
	Metadata []byte
	// Data is the decrypted specialist data, nil when there is none.
	Data []byte
	// DataMimeType is MimeJSON or MimeXML, "" when there is no data.
	DataMimeType string
	Attachments  []Attachment
}

// Attachment is one decrypted attachment, read through Open.
type Attachment struct {
	// ID is the attachment's UUID.
	ID string
	// Filename is the sender's filename: untrusted, see Filenames.
	Filename string
	MimeType string
	// Size of the content in bytes, -1 when unknown. A sink may rely on
	// a known size: content of another length fails the delivery with
	// ErrInvalid.
	Size int64
	// Open returns the content from its first byte. A sink calls it once
	// per attempt (an HTTP sink that retries within one Deliver calls it
	// again) and closes what it returns.
	Open func() (io.ReadCloser, error)
}

// normalize checks d and returns it with its ids in lower case.
func normalize(d Delivery) (Delivery, error) {
	var err error
	if d.SubmissionID, err = canonicalUUID("submission id", d.SubmissionID); err != nil {
		return d, err
	}
	if d.CaseID, err = canonicalUUID("case id", d.CaseID); err != nil {
		return d, err
	}
	if d.DestinationID, err = canonicalUUID("destination id", d.DestinationID); err != nil {
		return d, err
	}
	if err := checkText("service identifier", d.ServiceIdentifier); err != nil {
		return d, err
	}
	if !json.Valid(d.Metadata) || !utf8.Valid(d.Metadata) || !strings.HasPrefix(strings.TrimLeft(string(d.Metadata), " \t\r\n"), "{") {
		return d, invalid("metadata is not a JSON object")
	}
	switch {
	case d.Data == nil && d.DataMimeType != "":
		return d, invalid("data media type %q without data", d.DataMimeType)
	case d.Data != nil && d.DataMimeType != MimeJSON && d.DataMimeType != MimeXML:
		return d, invalid("data media type %q is neither %s nor %s", d.DataMimeType, MimeJSON, MimeXML)
	}
	atts := make([]Attachment, len(d.Attachments))
	seen := make(map[string]bool, len(d.Attachments))
	for i, a := range d.Attachments {
		if a.ID, err = canonicalUUID(fmt.Sprintf("attachments[%d].id", i), a.ID); err != nil {
			return d, err
		}
		if seen[a.ID] {
			return d, invalid("attachments[%d].id: %s appears twice", i, a.ID)
		}
		seen[a.ID] = true
		if err := checkText(fmt.Sprintf("attachments[%d].mimeType", i), a.MimeType); err != nil {
			return d, err
		}
		if a.Open == nil {
			return d, invalid("attachments[%d]: no content", i)
		}
		atts[i] = a
	}
	d.Attachments = atts
	return d, nil
}

func canonicalUUID(field, s string) (string, error) {
	if len(s) != 36 {
		return "", invalid("%s %q is not a UUID", field, s)
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return "", invalid("%s %q is not a UUID", field, s)
	}
	return u.String(), nil
}

// checkText accepts 1 to maxText bytes of UTF-8 without control characters.
func checkText(field, s string) error {
	if s == "" || len(s) > maxText {
		return invalid("%s must have 1 to %d bytes, has %d", field, maxText, len(s))
	}
	if !utf8.ValidString(s) {
		return invalid("%s is not UTF-8", field)
	}
	if i := strings.IndexFunc(s, unicode.IsControl); i >= 0 {
		return invalid("%s has a control character at byte %d", field, i)
	}
	return nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %w: %s", ErrPermanent, ErrInvalid, fmt.Sprintf(format, args...))
}

// permanent and transient mark err, unless it is marked already.
func permanent(err error) error {
	if errors.Is(err, ErrPermanent) || errors.Is(err, ErrTransient) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrPermanent, err)
}

func transient(err error) error {
	if errors.Is(err, ErrPermanent) || errors.Is(err, ErrTransient) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrTransient, err)
}

// IsSource reports whether err is the failure of an attachment's source,
// not of the sink.
func IsSource(err error) bool {
	var e *sourceError
	return errors.As(err, &e)
}

// sourceError is an attachment source's failure, kept apart from the
// backend's so that it is neither retried nor blamed on the backend.
type sourceError struct {
	id  string
	err error
}

func (e *sourceError) Error() string { return "read attachment " + e.id + ": " + e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

// source reads an attachment, counting its bytes and keeping its first
// failure, classified.
type source struct {
	ctx context.Context
	id  string
	rc  io.ReadCloser
	max int64 // 0: unbounded
	n   int64
	err error
}

// openSource opens a's content; max > 0 bounds it.
func openSource(ctx context.Context, a Attachment, max int64) (*source, error) {
	if err := ctx.Err(); err != nil {
		return nil, transient(err)
	}
	rc, err := a.Open()
	if err == nil && rc == nil {
		err = errors.New("no reader")
	}
	if err != nil {
		return nil, classifySource(&sourceError{id: a.ID, err: err})
	}
	return &source{ctx: ctx, id: a.ID, rc: rc, max: max}, nil
}

func (s *source) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if err := s.ctx.Err(); err != nil {
		s.err = transient(err)
		return 0, s.err
	}
	n, err := s.rc.Read(p)
	s.n += int64(n)
	switch {
	case s.max > 0 && s.n > s.max:
		s.err = fmt.Errorf("%w: %w: attachment %s exceeds %d bytes", ErrPermanent, ErrTooLarge, s.id, s.max)
	case err == nil || err == io.EOF:
		return n, err
	default:
		s.err = classifySource(&sourceError{id: s.id, err: err})
	}
	return n, s.err
}

func (s *source) Close() error { return s.rc.Close() }

// failure returns the source's failure, nil when it did not fail.
func (s *source) failure() error { return s.err }

func classifySource(err error) error {
	if errors.Is(err, ErrPermanent) {
		return err
	}
	return transient(err)
}

// keyLock serializes work on the same key within one process; work on
// different keys runs in parallel.
type keyLock struct {
	mu sync.Mutex
	m  map[string]*keyEntry
}

type keyEntry struct {
	ch   chan struct{} // holds one token while the key is locked
	refs int
}

// lock waits for key, or for ctx, and returns the unlock function.
func (l *keyLock) lock(ctx context.Context, key string) (func(), error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[string]*keyEntry)
	}
	e := l.m[key]
	if e == nil {
		e = &keyEntry{ch: make(chan struct{}, 1)}
		l.m[key] = e
	}
	e.refs++
	l.mu.Unlock()
	release := func() {
		l.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(l.m, key)
		}
		l.mu.Unlock()
	}
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, transient(ctx.Err())
	}
}
