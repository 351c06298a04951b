// Package set implements Security Event Tokens (RFC 8417) as FIT-Connect
// uses them: JWS compact tokens signed with PS512 (RSASSA-PSS, SHA-512,
// 64-byte salt), header typ "secevent+jwt", whose claims name a submission
// (sub "submission:<uuid>"), its case (txn "case:<uuid>") and exactly one
// event under https://schema.fitko.de/fit-connect/events/ with the payload
// FIT-Connect's set-payload schema prescribes for it.
//
// The package holds the rules only; it uses the standard library and does
// no I/O. Which key may sign which event (the backbone's own key, a
// destination's signing key) is for the caller to decide from Parse's
// header and issuer before calling Verify.
package set

import (
	"errors"
	"fmt"
	"strings"
)

// EventBase is the common prefix of FIT-Connect's event URIs.
const EventBase = "https://schema.fitko.de/fit-connect/events/"

// FIT-Connect's submission events.
const (
	// CreateSubmission: the backbone created a submission (sender announced it).
	CreateSubmission = EventBase + "create-submission"
	// SubmitSubmission: the backbone accepted the sender's submit; payload authenticationTags.
	SubmitSubmission = EventBase + "submit-submission"
	// NotifySubmission: the backbone told the receiver about the submission.
	NotifySubmission = EventBase + "notify-submission"
	// ForwardSubmission: the receiver handed the submission on to another system.
	ForwardSubmission = EventBase + "forward-submission"
	// AcceptSubmission: the receiver accepted; payload echoes authenticationTags.
	AcceptSubmission = EventBase + "accept-submission"
	// RejectSubmission: the receiver (or the backbone) rejected; payload problems.
	RejectSubmission = EventBase + "reject-submission"
	// DeleteSubmission: the backbone deleted the submission's content.
	DeleteSubmission = EventBase + "delete-submission"
)

// SchemaURI is the set-payload schema version New writes into $schema. It
// is the version FIT-Connect's documentation and every SDK know; Verify
// accepts any 1.x.y version.
const SchemaURI = "https://schema.fitko.de/fit-connect/set-payload/1.0.0/set-payload.schema.json"

// Header values of a FIT-Connect SET.
const (
	Alg = "PS512"
	Typ = "secevent+jwt"
)

// Known reports whether uri is one of FIT-Connect's submission events.
func Known(uri string) bool {
	switch uri {
	case CreateSubmission, SubmitSubmission, NotifySubmission, ForwardSubmission,
		AcceptSubmission, RejectSubmission, DeleteSubmission:
		return true
	}
	return false
}

// Name returns the short name of an event URI, the last segment of
// FIT-Connect's (accept-submission), for messages and metric labels; any
// other URI is returned as it is.
func Name(uri string) string {
	if name, ok := strings.CutPrefix(uri, EventBase); ok && name != "" {
		return name
	}
	return uri
}

// Sentinel errors; every error of Parse, Verify, Sign and New wraps one.
var (
	// ErrMalformed means the token is not a well-formed FIT-Connect SET:
	// segments, base64url, JSON, member types or header values.
	ErrMalformed = errors.New("malformed security event token")
	// ErrSignature means the PS512 signature does not verify with the key.
	ErrSignature = errors.New("invalid security event token signature")
	// ErrClaims means a claim or the event payload breaks a FIT-Connect rule.
	ErrClaims = errors.New("invalid security event token claims")
)

// RuleError names the header member, claim or payload member that broke a
// rule. Err is ErrMalformed, ErrSignature or ErrClaims.
type RuleError struct {
	// Field is e.g. "header.alg", "signature", "jti", "iat", "events",
	// "authenticationTags.metadata" or "problems[0].type".
	Field  string
	Reason string
	Err    error
}

// Error implements error.
func (e *RuleError) Error() string {
	return fmt.Sprintf("%v: %s: %s", e.Err, e.Field, e.Reason)
}

// Unwrap returns the sentinel.
func (e *RuleError) Unwrap() error { return e.Err }

func malformed(field, format string, args ...any) *RuleError {
	return &RuleError{Field: field, Reason: fmt.Sprintf(format, args...), Err: ErrMalformed}
}

func claimRule(field, format string, args ...any) *RuleError {
	return &RuleError{Field: field, Reason: fmt.Sprintf(format, args...), Err: ErrClaims}
}
