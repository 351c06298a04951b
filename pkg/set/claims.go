package set

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/amtsbote/amtsbote/pkg/strictjson"
)

// minIssuedAt is the earliest iat FIT-Connect's set-payload schema allows
// (2020-01-01T00:00:00+01:00).
var minIssuedAt = time.Unix(1577833200, 0).UTC()

const (
	maxIssuerLen = 2048
	// maxUnixSeconds is 9999-12-31T23:59:59Z; later iat values are nonsense.
	maxUnixSeconds = 253402300799
)

var schemaPattern = regexp.MustCompile(`^https://schema\.fitko\.de/fit-connect/set-payload/1\.\d+\.\d+/set-payload\.schema\.json$`)

// Claims are the claims of a FIT-Connect SET.
type Claims struct {
	// Schema is the set-payload schema URI ("$schema"); optional on input.
	Schema string
	// JTI is the token's UUID, also the deduplication key of the event.
	JTI string
	// Issuer is the backbone's URL for its own events, the destination id
	// for a receiver's.
	Issuer   string
	IssuedAt time.Time
	// Subject is "submission:<uuid>".
	Subject string
	// Txn is "case:<uuid>".
	Txn string
	// Events maps the one event URI to its payload object.
	Events map[string]json.RawMessage
}

// AuthenticationTags are the last segments (GCM tags) of a submission's
// metadata, data and attachment JWEs. The receiver compares them with the
// JWEs it got, and echoes them in accept-submission.
type AuthenticationTags struct {
	Metadata    string            `json:"metadata"`
	Data        string            `json:"data,omitempty"`
	Attachments map[string]string `json:"attachments,omitempty"`
}

// Equal reports whether t and o name the same tags; a nil and an empty
// attachment map are equal.
func (t AuthenticationTags) Equal(o AuthenticationTags) bool {
	return t.Metadata == o.Metadata && t.Data == o.Data && maps.Equal(t.Attachments, o.Attachments)
}

// Problem is one reason of a reject-submission event, after RFC 7807.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title,omitempty"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance"`
}

// SubmitPayload is the payload of submit-submission.
type SubmitPayload struct {
	AuthenticationTags AuthenticationTags `json:"authenticationTags"`
}

// AcceptPayload is the payload of accept-submission.
type AcceptPayload struct {
	AuthenticationTags AuthenticationTags `json:"authenticationTags"`
}

// RejectPayload is the payload of reject-submission.
type RejectPayload struct {
	Problems []Problem `json:"problems"`
}

// ForwardPayload is the payload of forward-submission. FIT-Connect
// prescribes none; Amtsbote's receivers name the submission the content
// was handed on as, so that the case shows where it went.
type ForwardPayload struct {
	ForwardedTo *ForwardTarget `json:"forwardedTo,omitempty"`
}

// ForwardTarget is the submission a forwarded one became.
type ForwardTarget struct {
	DestinationID string `json:"destinationId"`
	SubmissionID  string `json:"submissionId"`
	CaseID        string `json:"caseId"`
}

// New builds the claims of one event about a submission, with a random
// jti, $schema SchemaURI and iat now (to the second). A nil payload is the
// empty object. The claims must pass Validate.
func New(event, issuer, submissionID, caseID string, payload any, now time.Time) (Claims, error) {
	raw := json.RawMessage("{}")
	if payload != nil {
		b, err := json.Marshal(payload)
		if err != nil {
			return Claims{}, fmt.Errorf("new %s event: %w", eventName(event), err)
		}
		raw = b
	}
	jti, err := newUUID()
	if err != nil {
		return Claims{}, fmt.Errorf("new %s event: %w", eventName(event), err)
	}
	c := Claims{
		Schema:   SchemaURI,
		JTI:      jti,
		Issuer:   issuer,
		IssuedAt: now.UTC().Truncate(time.Second),
		Subject:  "submission:" + submissionID,
		Txn:      "case:" + caseID,
		Events:   map[string]json.RawMessage{event: raw},
	}
	if err := c.Validate(); err != nil {
		return Claims{}, fmt.Errorf("new %s event: %w", eventName(event), err)
	}
	return c, nil
}

// eventName is Name for error messages: a foreign URI is quoted.
func eventName(uri string) string {
	if name := Name(uri); name != uri {
		return name
	}
	return fmt.Sprintf("%q", uri)
}

// newUUID returns a random (version 4) UUID.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

// isUUID reports whether s is a UUID in 8-4-4-4-12 hex form.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// SubmissionID returns the UUID in sub ("submission:<uuid>") in lower
// case, the form ids are kept in: FIT-Connect's own examples write them
// in upper case.
func (c Claims) SubmissionID() (string, error) {
	id, ok := strings.CutPrefix(c.Subject, "submission:")
	if !ok || !isUUID(id) {
		return "", claimRule("sub", "must be \"submission:\" and a UUID, got %q", c.Subject)
	}
	return strings.ToLower(id), nil
}

// CaseID returns the UUID in txn ("case:<uuid>") in lower case.
func (c Claims) CaseID() (string, error) {
	id, ok := strings.CutPrefix(c.Txn, "case:")
	if !ok || !isUUID(id) {
		return "", claimRule("txn", "must be \"case:\" and a UUID, got %q", c.Txn)
	}
	return strings.ToLower(id), nil
}

// Event returns the one event URI and its payload; more or fewer events
// than one is an error wrapping ErrClaims.
func (c Claims) Event() (uri string, payload json.RawMessage, err error) {
	if len(c.Events) != 1 {
		return "", nil, claimRule("events", "must hold exactly one event, holds %d", len(c.Events))
	}
	for uri, payload = range c.Events {
	}
	return uri, payload, nil
}

// Tags returns the authenticationTags of a submit- or accept-submission
// event, attachment ids in lower case: a receiver may key them by the ids
// as the sender's metadata wrote them. An id listed twice that way is a
// rule violation.
func (c Claims) Tags() (AuthenticationTags, error) {
	uri, payload, err := c.Event()
	if err != nil {
		return AuthenticationTags{}, err
	}
	if uri != SubmitSubmission && uri != AcceptSubmission {
		return AuthenticationTags{}, claimRule("events", "%s carries no authenticationTags", eventName(uri))
	}
	var p SubmitPayload
	if err := json.Unmarshal(payload, &p); err != nil {
		return AuthenticationTags{}, claimRule("authenticationTags", "%v", err)
	}
	t := p.AuthenticationTags
	if len(t.Attachments) > 0 {
		lower := make(map[string]string, len(t.Attachments))
		for id, tag := range t.Attachments {
			id = strings.ToLower(id)
			if _, twice := lower[id]; twice {
				return AuthenticationTags{}, claimRule("authenticationTags.attachments."+id, "attachment %s is listed twice", id)
			}
			lower[id] = tag
		}
		t.Attachments = lower
	}
	return t, nil
}

// Problems returns the problems of a reject-submission event.
func (c Claims) Problems() ([]Problem, error) {
	uri, payload, err := c.Event()
	if err != nil {
		return nil, err
	}
	if uri != RejectSubmission {
		return nil, claimRule("events", "%s carries no problems", eventName(uri))
	}
	var p RejectPayload
	if err := json.Unmarshal(payload, &p); err != nil {
		return nil, claimRule("problems", "%v", err)
	}
	return p.Problems, nil
}

// Validate checks every claim rule that does not depend on the clock:
// $schema (if present) a set-payload 1.x.y URI, jti a UUID, iss present,
// iat present and not before 2020-01-01 (the schema minimum), sub "submission:<uuid>", txn
// "case:<uuid>", exactly one known event, and its payload: an object;
// submit- and accept-submission with authenticationTags (metadata
// required, every tag 16 bytes of unpadded base64url, attachment ids
// UUIDs); reject-submission with at least one problem having type and
// instance. Errors are *RuleError values wrapping ErrClaims.
func (c Claims) Validate() error {
	if c.Schema != "" && !schemaPattern.MatchString(c.Schema) {
		return claimRule("$schema", "must be a FIT-Connect set-payload 1.x.y schema URI, got %q", c.Schema)
	}
	if !isUUID(c.JTI) {
		return claimRule("jti", "must be a UUID, got %q", c.JTI)
	}
	if c.Issuer == "" || len(c.Issuer) > maxIssuerLen {
		return claimRule("iss", "must be 1 to %d characters", maxIssuerLen)
	}
	if c.IssuedAt.IsZero() {
		return claimRule("iat", "is missing")
	}
	if c.IssuedAt.Before(minIssuedAt) {
		return claimRule("iat", "%s is before %s", c.IssuedAt.Format(time.RFC3339), minIssuedAt.Format(time.RFC3339))
	}
	if _, err := c.SubmissionID(); err != nil {
		return err
	}
	if _, err := c.CaseID(); err != nil {
		return err
	}
	uri, payload, err := c.Event()
	if err != nil {
		return err
	}
	if !Known(uri) {
		return claimRule("events", "unknown event %q", uri)
	}
	return checkPayload(uri, payload)
}

// checkPayload checks an event payload against its event's shape.
func checkPayload(uri string, payload json.RawMessage) error {
	m, err := strictjson.Object(payload)
	if err != nil {
		return claimRule("events", "payload of %s: %v", eventName(uri), err)
	}
	switch uri {
	case SubmitSubmission, AcceptSubmission:
		raw, ok := m["authenticationTags"]
		if !ok {
			return claimRule("authenticationTags", "%s needs authenticationTags", eventName(uri))
		}
		return checkTags(raw)
	case RejectSubmission:
		raw, ok := m["problems"]
		if !ok {
			return claimRule("problems", "reject-submission needs at least one problem")
		}
		return checkProblems(raw)
	case ForwardSubmission:
		if raw, ok := m["forwardedTo"]; ok {
			return checkForwardTarget(raw)
		}
	}
	return nil
}

// checkForwardTarget checks Amtsbote's forwardedTo member: three UUIDs.
func checkForwardTarget(raw json.RawMessage) error {
	m, err := strictjson.Object(raw)
	if err != nil {
		return claimRule("forwardedTo", "%v", err)
	}
	for _, k := range []string{"destinationId", "submissionId", "caseId"} {
		var id string
		if v, ok := m[k]; !ok || json.Unmarshal(v, &id) != nil || !isUUID(id) {
			return claimRule("forwardedTo."+k, "must be a UUID")
		}
	}
	for k := range m {
		if k != "destinationId" && k != "submissionId" && k != "caseId" {
			return claimRule("forwardedTo."+k, "unknown member")
		}
	}
	return nil
}

func checkTags(raw json.RawMessage) error {
	m, err := strictjson.Object(raw)
	if err != nil {
		return claimRule("authenticationTags", "%v", err)
	}
	metadata, ok := m["metadata"]
	if !ok {
		return claimRule("authenticationTags.metadata", "is missing")
	}
	if err := checkTag("authenticationTags.metadata", metadata); err != nil {
		return err
	}
	if data, ok := m["data"]; ok {
		if err := checkTag("authenticationTags.data", data); err != nil {
			return err
		}
	}
	if rawAtt, ok := m["attachments"]; ok {
		att, err := strictjson.Object(rawAtt)
		if err != nil {
			return claimRule("authenticationTags.attachments", "%v", err)
		}
		ids := make([]string, 0, len(att))
		for id := range att {
			ids = append(ids, id)
		}
		sort.Strings(ids) // report the same first offender every time
		for _, id := range ids {
			if !isUUID(id) {
				return claimRule("authenticationTags.attachments", "attachment id %q is not a UUID", id)
			}
			if err := checkTag("authenticationTags.attachments."+id, att[id]); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkTag demands an AES-GCM tag: 16 bytes as 22 characters of canonical unpadded base64url.
func checkTag(field string, raw json.RawMessage) error {
	var s string
	if bytes.Equal(raw, []byte("null")) || json.Unmarshal(raw, &s) != nil {
		return claimRule(field, "must be a string")
	}
	if b, err := base64.RawURLEncoding.Strict().DecodeString(s); err != nil || len(b) != 16 {
		return claimRule(field, "must be a 16-byte authentication tag in unpadded base64url, got %q", s)
	}
	return nil
}

// ProblemTypes is where FIT-Connect's problem types of a reject lie.
const ProblemTypes = "https://schema.fitko.de/fit-connect/events/problems/"

// CheckNew checks what a receiver's new event must hold beyond Validate:
// a reject's problem types are absolute URIs. Events recorded before the
// rule are read without it, so that a case's log stays readable.
func (c Claims) CheckNew() error {
	uri, _, err := c.Event()
	if err != nil || uri != RejectSubmission {
		return err
	}
	problems, err := c.Problems()
	if err != nil {
		return err
	}
	for i, pr := range problems {
		if u, err := url.Parse(pr.Type); err != nil || !u.IsAbs() {
			return claimRule(fmt.Sprintf("problems[%d].type", i), "must be an absolute URI such as %s…, got %q", ProblemTypes, pr.Type)
		}
	}
	return nil
}

func checkProblems(raw json.RawMessage) error {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return claimRule("problems", "must be an array")
	}
	if len(items) == 0 {
		return claimRule("problems", "reject-submission needs at least one problem")
	}
	for i, item := range items {
		m, err := strictjson.Object(item)
		if err != nil {
			return claimRule(fmt.Sprintf("problems[%d]", i), "%v", err)
		}
		for _, name := range []string{"type", "title", "detail", "instance"} {
			field := fmt.Sprintf("problems[%d].%s", i, name)
			v, present := m[name]
			required := name == "type" || name == "instance"
			if !present {
				if required {
					return claimRule(field, "is missing")
				}
				continue
			}
			var s string
			if bytes.Equal(v, []byte("null")) || json.Unmarshal(v, &s) != nil {
				return claimRule(field, "must be a string")
			}
			if required && s == "" {
				return claimRule(field, "must not be empty")
			}
		}
	}
	return nil
}

// claimsJSON is the wire form of Claims; absent claims stay absent.
type claimsJSON struct {
	Schema   string                      `json:"$schema,omitempty"`
	JTI      string                      `json:"jti"`
	Issuer   string                      `json:"iss"`
	IssuedAt *int64                      `json:"iat,omitempty"`
	Subject  string                      `json:"sub"`
	Txn      string                      `json:"txn"`
	Events   *map[string]json.RawMessage `json:"events,omitempty"`
}

// MarshalJSON writes the claims as a SET payload, iat in Unix seconds.
func (c Claims) MarshalJSON() ([]byte, error) {
	w := claimsJSON{Schema: c.Schema, JTI: c.JTI, Issuer: c.Issuer, Subject: c.Subject, Txn: c.Txn}
	if !c.IssuedAt.IsZero() {
		iat := c.IssuedAt.Unix()
		w.IssuedAt = &iat
	}
	if c.Events != nil {
		w.Events = &c.Events
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads a SET payload. It checks JSON types and refuses
// duplicate members; the claim rules are Validate's. Errors are *RuleError
// values wrapping ErrMalformed.
func (c *Claims) UnmarshalJSON(data []byte) error {
	m, err := strictjson.Object(data)
	if err != nil {
		return malformed("claims", "%v", err)
	}
	var out Claims
	for _, f := range []struct {
		name string
		dst  *string
	}{{"$schema", &out.Schema}, {"jti", &out.JTI}, {"iss", &out.Issuer}, {"sub", &out.Subject}, {"txn", &out.Txn}} {
		v, _, err := strictjson.String(m, f.name)
		if err != nil {
			return malformed(f.name, "must be a string")
		}
		*f.dst = v
	}
	if raw, ok := m["iat"]; ok {
		// Object checked raw as JSON: what starts like a number is one.
		if len(raw) == 0 || raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
			return malformed("iat", "must be a number")
		}
		n := json.Number(raw)
		secs, err := n.Int64()
		if err != nil {
			// Not 1767225600.0 either: the event reaches senders and
			// earlier releases as written, and they may read integers only.
			return malformed("iat", "must be an integer number of seconds, got %s", n)
		}
		if secs < 0 || secs > maxUnixSeconds {
			return malformed("iat", "%d is out of range", secs)
		}
		out.IssuedAt = time.Unix(secs, 0).UTC()
	}
	if raw, ok := m["events"]; ok {
		if out.Events, err = strictjson.Object(raw); err != nil {
			return malformed("events", "must be an object")
		}
	}
	*c = out
	return nil
}
