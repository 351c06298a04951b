// Package sealed defines the messages that carry a sealed submission through
// JetStream (INGRESS, then INBOX) and the rules of its status model. Amtsbote
// never opens the JWEs it carries; it only checks their structure.
package sealed

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	jsonv1 "github.com/go-json-experiment/json/v1"
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

// Encode returns s as a message body.
func (s Submission) Encode() ([]byte, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode submission %s: %w", s.SubmissionID, err)
	}
	return b, nil
}

// Decode parses and checks a message body from NATS (untrusted input).
func Decode(data []byte) (Submission, error) {
	var s Submission
	// encoding/json's semantics on the v2 engine, which reads the inline
	// JWEs several times faster than encoding/json.
	if err := jsonv1.Unmarshal(data, &s); err != nil {
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
