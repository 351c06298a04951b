// Package sealed defines the messages that carry a sealed submission through
// JetStream (INGRESS, then INBOX) and the rules of its status model. Amtsbote
// never opens the JWEs it carries; it only checks their structure.
package sealed

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/amtsbote/amtsbote/pkg/strictjson"
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
	p := s.Payload
	s.Payload = nil
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode submission %s: %w", s.SubmissionID, err)
	}
	if p == nil {
		return b, nil
	}
	// The payload, nearly all of the message, is appended last without
	// encoding/json's character-by-character escaping.
	out := make([]byte, 0, len(b)+p.EncodedLen()+len(`,"payload":`))
	out = append(out, b[:len(b)-1]...)
	out = append(out, `,"payload":`...)
	out = p.AppendEncode(out)
	return append(out, '}'), nil
}

// Encode returns p as JSON, as the payload's own entry stores it.
func (p Payload) Encode() []byte {
	return p.AppendEncode(make([]byte, 0, p.EncodedLen()))
}

// EncodedLen is the length of p's JSON when its JWEs need no escaping,
// as compact JWEs do.
func (p Payload) EncodedLen() int {
	return len(`{"encryptedMetadata":"","encryptedData":""}`) + len(p.EncryptedMetadata) + len(p.EncryptedData)
}

// AppendEncode appends p's Encode to b: p as encoding/json would marshal
// it.
func (p Payload) AppendEncode(b []byte) []byte {
	b = append(b, `{"encryptedMetadata":`...)
	b = appendString(b, p.EncryptedMetadata)
	if p.EncryptedData != "" {
		b = append(b, `,"encryptedData":`...)
		b = appendString(b, p.EncryptedData)
	}
	return append(b, '}')
}

// appendString appends s as a JSON string: a compact JWE (base64url and
// dots) as it is, anything else through encoding/json.
func appendString(b []byte, s string) []byte {
	if plain(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	q, _ := json.Marshal(s) // strings always marshal
	return append(b, q...)
}

// plainByte is 0xff for the characters of base64url and the dot, zero for
// every other byte.
var plainByte = func() (t [256]byte) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") {
		t[c] = 0xff
	}
	return t
}()

// plain reports whether s consists of base64url characters and dots only,
// which JSON carries unescaped; eight lookups ANDed take one branch.
func plain(s string) bool {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		q := s[i : i+8]
		if plainByte[q[0]]&plainByte[q[1]]&plainByte[q[2]]&plainByte[q[3]]&
			plainByte[q[4]]&plainByte[q[5]]&plainByte[q[6]]&plainByte[q[7]] == 0 {
			return false
		}
	}
	for ; i < len(s); i++ {
		if plainByte[s[i]] == 0 {
			return false
		}
	}
	return true
}

// Decode parses and checks a message body from NATS (untrusted input).
// The inline JWEs refer to data, which must not change afterwards.
func Decode(data []byte) (Submission, error) {
	var s Submission
	// A flat struct: strictjson's checking scan reads the inline JWEs
	// once and fills s, refusing duplicate or miscased members.
	if err := strictjson.Decode(data, &s, strictjson.Options{ShareLong: true}); err != nil {
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
