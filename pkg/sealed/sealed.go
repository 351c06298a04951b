// Package sealed defines the messages that carry a sealed submission through
// JetStream (INGRESS, then INBOX) and the rules of its status model. Amtsbote
// never opens the JWEs it carries; it only checks their structure.
package sealed

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
)

// CloudEvents types of the messages Amtsbote publishes.
const (
	// TypeSubmitted is a submission accepted by the gateway, on INGRESS.
	TypeSubmitted = "de.amtsbote.submission.submitted"
	// TypeRouted is a submission routed to its destination, on INBOX.
	TypeRouted = "de.amtsbote.submission.routed"
	// TypeEvent is a security event token of a case, on EVENTS.
	TypeEvent = "de.amtsbote.case.event"
)

// InlineLimit is the size above which the sealed payload travels in the
// object store and only its reference in the message.
const InlineLimit = 64 << 10

// Submission is the body of INGRESS and INBOX messages.
type Submission struct {
	SubmissionID  string   `json:"submissionId"`
	CaseID        string   `json:"caseId"`
	DestinationID string   `json:"destinationId"`
	Service       string   `json:"service"`          // service URN
	Region        string   `json:"region,omitempty"` // "DE"+ARS named by the sender
	ARS           string   `json:"ars"`              // 12-digit ARS the ingress subject is filed under
	Attachments   []string `json:"attachments"`
	// Payload is inline when small; else Object names it in the object store.
	Payload *Payload `json:"payload,omitempty"`
	Object  string   `json:"object,omitempty"`
	// AuthenticationTags as in the submit-submission event, for the receiver to compare.
	AuthenticationTags json.RawMessage `json:"authenticationTags,omitempty"`
	SenderClientID     string          `json:"senderClientId,omitempty"`
}

// Payload is the sealed content of a submission: two compact JWEs.
type Payload struct {
	EncryptedMetadata string `json:"encryptedMetadata"`
	EncryptedData     string `json:"encryptedData,omitempty"`
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// ErrInvalid marks a message that breaks the schema; it is never retried.
var ErrInvalid = errors.New("invalid sealed submission")

// Decode parses and checks a message body from NATS (untrusted input).
func Decode(data []byte) (Submission, error) {
	var s Submission
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	for field, v := range map[string]string{"submissionId": s.SubmissionID, "caseId": s.CaseID, "destinationId": s.DestinationID} {
		if !uuidRE.MatchString(v) {
			return s, fmt.Errorf("%w: %s %q is not a UUID", ErrInvalid, field, v)
		}
	}
	for _, a := range s.Attachments {
		if !uuidRE.MatchString(a) {
			return s, fmt.Errorf("%w: attachment id %q is not a UUID", ErrInvalid, a)
		}
	}
	if s.Service == "" {
		return s, fmt.Errorf("%w: service missing", ErrInvalid)
	}
	if (s.Payload == nil) == (s.Object == "") {
		return s, fmt.Errorf("%w: exactly one of payload and object is required", ErrInvalid)
	}
	if s.Payload != nil && s.Payload.EncryptedMetadata == "" {
		return s, fmt.Errorf("%w: payload.encryptedMetadata missing", ErrInvalid)
	}
	return s, nil
}

// Status is FIT-Connect's status of a submission (same values as store.SubmissionStatus).
type Status string

// Statuses of the FIT-Connect status model.
const (
	Incomplete Status = "incomplete"
	Submitted  Status = "submitted"
	Forwarded  Status = "forwarded"
	Accepted   Status = "accepted"
	Rejected   Status = "rejected"
	Deleted    Status = "deleted"
)

// Event short names as the FIT-Connect event URIs end.
const (
	EventCreate  = "create-submission"
	EventSubmit  = "submit-submission"
	EventNotify  = "notify-submission"
	EventForward = "forward-submission"
	EventAccept  = "accept-submission"
	EventReject  = "reject-submission"
	EventDelete  = "delete-submission"
)

// ErrTransition marks an event the current status does not allow.
var ErrTransition = errors.New("invalid status transition")

// Next returns the status after event in status from, or ErrTransition.
// incomplete → submitted → (forwarded) → accepted | rejected, then deleted;
// an incomplete submission may be deleted, and Amtsbote may reject one that
// was never picked up.
func Next(from Status, event string) (Status, error) {
	switch event {
	case EventCreate:
		if from == "" || from == Incomplete {
			return Incomplete, nil
		}
	case EventSubmit:
		if from == Incomplete || from == Submitted {
			return Submitted, nil
		}
	case EventNotify:
		if from == Submitted || from == Forwarded {
			return from, nil
		}
	case EventForward:
		if from == Submitted || from == Forwarded {
			return Forwarded, nil
		}
	case EventAccept:
		if from == Submitted || from == Forwarded {
			return Accepted, nil
		}
	case EventReject:
		if from == Submitted || from == Forwarded {
			return Rejected, nil
		}
	case EventDelete:
		if from != Deleted {
			return Deleted, nil
		}
	default:
		return from, fmt.Errorf("%w: unknown event %q", ErrTransition, event)
	}
	return from, fmt.Errorf("%w: %s not allowed in status %s", ErrTransition, event, from)
}
