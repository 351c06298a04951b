package client

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/set"
)

// Event log limits.
const (
	eventPage = 500    // the API's largest page
	maxEvents = 100000 // a case with more events is not credible
)

// Errors of event log verification. Signature and claim failures wrap the
// set package's sentinels (set.ErrSignature, set.ErrClaims, set.ErrMalformed).
var (
	// ErrUntrustedEvent means an event token comes from a party that may
	// not issue it: a destination issuing a backbone's event or the other
	// way round, a destination other than the submission's, a key the
	// issuer does not publish, or an event of another case.
	ErrUntrustedEvent = errors.New("untrusted event")
	// ErrTagMismatch means authenticationTags differ where they must be equal.
	ErrTagMismatch = errors.New("authentication tags do not match")
	// ErrNoEvents means the event log holds no event of the submission.
	ErrNoEvents = errors.New("no events for the submission")
)

// Event is one verified security event token of a case.
type Event struct {
	// Type is the event URI, one of set's event constants.
	Type         string
	SubmissionID string
	CaseID       string
	// Issuer is the backbone's URL, or the id of the destination that
	// issued the event.
	Issuer string
	// ByDestination reports that a destination issued the event.
	ByDestination bool
	IssuedAt      time.Time
	Claims        set.Claims
	// Token is the SET as the log holds it.
	Token string
}

// eventLogPage is FIT-Connect's EventLog answer.
type eventLogPage struct {
	Count      int      `json:"count"`
	Offset     int      `json:"offset"`
	TotalCount int      `json:"totalCount"`
	EventLog   []string `json:"eventLog"`
}

// EventLog reads the case's whole event log (GET /v1/cases/{caseId}/events)
// and verifies every token: the backbone's with its keys from
// /.well-known/jwks.json, a destination's with its signing key from
// /v1/destinations/{id}/keys/{kid}, each key checked with
// jose.ValidatePublicKey. One token that fails makes the whole call fail.
func (s *Sender) EventLog(ctx context.Context, caseID string) ([]Event, error) {
	return s.c.eventLog(ctx, caseID)
}

func (c *Client) eventLog(ctx context.Context, caseID string) ([]Event, error) {
	tokens, err := c.readEventLog(ctx, caseID)
	if err != nil {
		return nil, fmt.Errorf("read event log of case %s: %w", caseID, err)
	}
	v := verifier{c: c}
	events := make([]Event, 0, len(tokens))
	for i, tok := range tokens {
		ev, err := v.verify(ctx, tok, caseID)
		if err != nil {
			return nil, fmt.Errorf("event log of case %s: event %d: %w", caseID, i, err)
		}
		events = append(events, ev)
	}
	return events, nil
}

func (c *Client) readEventLog(ctx context.Context, caseID string) ([]string, error) {
	var tokens []string
	for {
		var page eventLogPage
		path := fmt.Sprintf("/v1/cases/%s/events?limit=%d&offset=%d", url.PathEscape(caseID), eventPage, len(tokens))
		if err := c.getJSON(ctx, path, false, &page); err != nil {
			return nil, err
		}
		tokens = append(tokens, page.EventLog...)
		switch {
		case len(tokens) > maxEvents:
			return nil, fmt.Errorf("more than %d events", maxEvents)
		case len(page.EventLog) == 0,
			page.TotalCount > 0 && len(tokens) >= page.TotalCount,
			page.TotalCount == 0 && len(page.EventLog) < eventPage:
			return tokens, nil
		}
	}
}

// verifier checks the tokens of one event log, fetching each key once.
type verifier struct {
	c             *Client
	jwksRefreshed bool
}

func isUUID(s string) bool { return len(s) == 36 && uuid.Validate(s) == nil }

func (v *verifier) verify(ctx context.Context, token, caseID string) (Event, error) {
	h, unverified, err := set.Parse(token)
	if err != nil {
		return Event{}, err
	}
	byDestination := isUUID(unverified.Issuer)
	var pub *rsa.PublicKey
	if byDestination {
		pub, err = v.c.destinationKey(ctx, unverified.Issuer, h.KID)
	} else {
		pub, err = v.backboneKey(ctx, h.KID)
	}
	if err != nil {
		return Event{}, err
	}
	claims, err := set.Verifier{Now: v.c.now}.Verify(token, pub)
	if err != nil {
		return Event{}, err
	}
	sid, _ := claims.SubmissionID()
	cid, _ := claims.CaseID()
	uri, _, _ := claims.Event()
	if !strings.EqualFold(cid, caseID) {
		return Event{}, fmt.Errorf("%w: token belongs to case %s", ErrUntrustedEvent, cid)
	}
	switch uri {
	case set.AcceptSubmission, set.ForwardSubmission:
		if !byDestination {
			return Event{}, fmt.Errorf("%w: %s issued by %q, not by a destination", ErrUntrustedEvent, uri, claims.Issuer)
		}
	case set.CreateSubmission, set.SubmitSubmission, set.NotifySubmission, set.DeleteSubmission:
		if byDestination {
			return Event{}, fmt.Errorf("%w: %s issued by destination %s, not by the backbone", ErrUntrustedEvent, uri, claims.Issuer)
		}
	}
	return Event{
		Type: uri, SubmissionID: strings.ToLower(sid), CaseID: strings.ToLower(cid),
		Issuer: claims.Issuer, ByDestination: byDestination, IssuedAt: claims.IssuedAt,
		Claims: claims, Token: token,
	}, nil
}

// backboneKey returns the backbone's signing key kid, reading the JWKS
// again once per event log when the cached one lacks it (key rotation).
func (v *verifier) backboneKey(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	v.c.mu.Lock()
	k, ok := v.c.jwks[kid]
	v.c.mu.Unlock()
	if ok {
		return k, nil
	}
	if v.jwksRefreshed {
		return nil, fmt.Errorf("%w: the backbone publishes no signing key %q", ErrUntrustedEvent, kid)
	}
	v.jwksRefreshed = true
	keys, err := v.c.fetchJWKS(ctx)
	if err != nil {
		return nil, err
	}
	v.c.mu.Lock()
	v.c.jwks = keys
	v.c.mu.Unlock()
	if k, ok := keys[kid]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("%w: the backbone publishes no signing key %q", ErrUntrustedEvent, kid)
}

// fetchJWKS reads /.well-known/jwks.json and keeps the keys that pass
// FIT-Connect's rules for signing keys.
func (c *Client) fetchJWKS(ctx context.Context) (map[string]*rsa.PublicKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := c.getJSON(ctx, "/.well-known/jwks.json", true, &doc); err != nil {
		return nil, fmt.Errorf("read jwks: %w", err)
	}
	keys := make(map[string]*rsa.PublicKey, len(doc.Keys))
	for _, raw := range doc.Keys {
		jwk, err := jose.ValidatePublicKey(raw, jose.Signing)
		if err != nil {
			// Other keys (other purposes, other rules) may share the set.
			c.log.DebugContext(ctx, "jwks key skipped", "err", err)
			continue
		}
		if pub, ok := jwk.Key.(*rsa.PublicKey); ok {
			keys[jwk.KeyID] = pub
		}
	}
	return keys, nil
}

// destinationKey returns a destination's signing key kid, checked with
// jose.ValidatePublicKey. Keys never change under their kid, so they are
// cached for the client's lifetime.
func (c *Client) destinationKey(ctx context.Context, destinationID, kid string) (*rsa.PublicKey, error) {
	id := strings.ToLower(destinationID) + "/" + kid
	c.mu.Lock()
	k, ok := c.destKeys[id]
	c.mu.Unlock()
	if ok {
		return k, nil
	}
	raw, err := c.fetchKey(ctx, destinationID, kid)
	if err != nil {
		return nil, fmt.Errorf("fetch signing key %s of %s: %w", kid, destinationID, err)
	}
	jwk, err := jose.ValidatePublicKey(raw, jose.Signing)
	if err != nil {
		return nil, fmt.Errorf("signing key %s of %s: %w", kid, destinationID, err)
	}
	if jwk.KeyID != kid {
		return nil, fmt.Errorf("%w: asked for key %s of %s, got %s", ErrUntrustedEvent, kid, destinationID, jwk.KeyID)
	}
	pub := jwk.Key.(*rsa.PublicKey) // ValidatePublicKey returns RSA keys only
	c.mu.Lock()
	c.destKeys[id] = pub
	c.mu.Unlock()
	return pub, nil
}

// State is a submission's place in FIT-Connect's status model.
type State string

// FIT-Connect's submission states.
const (
	StateIncomplete State = "incomplete"
	StateSubmitted  State = "submitted"
	StateForwarded  State = "forwarded"
	StateAccepted   State = "accepted"
	StateRejected   State = "rejected"
	StateDeleted    State = "deleted"
)

// Status is a submission's state as its verified events tell it.
type Status struct {
	State State
	// Decision is StateAccepted or StateRejected once the destination (or
	// the backbone, rejecting) decided, else empty. It survives deletion.
	Decision State
	// Problems are the reasons of a rejection.
	Problems []set.Problem
	// AuthenticationTags are those of the submit-submission event.
	AuthenticationTags *set.AuthenticationTags
	// Events are the submission's events, oldest first.
	Events []Event
}

// Status reads and verifies the case's event log and derives the state of
// one submission. An accept-submission whose authenticationTags differ
// from the submit-submission's yields an error wrapping ErrTagMismatch.
// Status relies on the backbone to have checked that a destination's
// events come from the submission's destination; StatusOf checks it too.
func (s *Sender) Status(ctx context.Context, caseID, submissionID string) (Status, error) {
	events, err := s.c.eventLog(ctx, caseID)
	if err != nil {
		return Status{}, fmt.Errorf("status of %s: %w", submissionID, err)
	}
	st, err := deriveStatus(events, submissionID, "")
	if err != nil {
		return Status{}, fmt.Errorf("status of %s: %w", submissionID, err)
	}
	return st, nil
}

// StatusOf is Status for a submission this sender made: in addition, the
// destination's events must come from the receipt's destination, and the
// submit-submission's authenticationTags must equal those the sender sent.
func (s *Sender) StatusOf(ctx context.Context, r Receipt) (Status, error) {
	events, err := s.c.eventLog(ctx, r.CaseID)
	if err != nil {
		return Status{}, fmt.Errorf("status of %s: %w", r.SubmissionID, err)
	}
	st, err := deriveStatus(events, r.SubmissionID, r.DestinationID)
	if err != nil {
		return Status{}, fmt.Errorf("status of %s: %w", r.SubmissionID, err)
	}
	if st.AuthenticationTags != nil && !st.AuthenticationTags.Equal(r.AuthenticationTags) {
		return Status{}, fmt.Errorf("status of %s: %w: the backbone recorded tags other than those sent", r.SubmissionID, ErrTagMismatch)
	}
	return st, nil
}

// deriveStatus folds a submission's events into its status. With a
// destinationID, a destination's events must come from that destination.
func deriveStatus(events []Event, submissionID, destinationID string) (Status, error) {
	var st Status
	submissionID = strings.ToLower(submissionID)
	for _, ev := range events {
		if ev.SubmissionID != submissionID {
			continue
		}
		if destinationID != "" && ev.ByDestination && !strings.EqualFold(ev.Issuer, destinationID) {
			return Status{}, fmt.Errorf("%w: %s issued by destination %s, not %s", ErrUntrustedEvent, ev.Type, ev.Issuer, destinationID)
		}
		st.Events = append(st.Events, ev)
		switch ev.Type {
		case set.CreateSubmission:
			if st.State == "" {
				st.State = StateIncomplete
			}
		case set.SubmitSubmission:
			tags, err := ev.Claims.Tags()
			if err != nil {
				return Status{}, err
			}
			st.AuthenticationTags = &tags
			if st.Decision == "" {
				st.State = StateSubmitted
			}
		case set.NotifySubmission:
			if st.State == "" || st.State == StateIncomplete {
				st.State = StateSubmitted
			}
		case set.ForwardSubmission:
			if st.Decision == "" {
				st.State = StateForwarded
			}
		case set.AcceptSubmission:
			tags, err := ev.Claims.Tags()
			if err != nil {
				return Status{}, err
			}
			if st.AuthenticationTags == nil {
				return Status{}, fmt.Errorf("%w: accept-submission without a submit-submission before it", ErrTagMismatch)
			}
			if !tags.Equal(*st.AuthenticationTags) {
				return Status{}, fmt.Errorf("%w: accept-submission echoes tags other than submit-submission's", ErrTagMismatch)
			}
			if st.Decision == "" {
				st.Decision, st.State = StateAccepted, StateAccepted
			}
		case set.RejectSubmission:
			problems, err := ev.Claims.Problems()
			if err != nil {
				return Status{}, err
			}
			if st.Decision == "" {
				st.Decision, st.State, st.Problems = StateRejected, StateRejected, problems
			}
		case set.DeleteSubmission:
			st.State = StateDeleted
		}
	}
	if len(st.Events) == 0 {
		return Status{}, fmt.Errorf("%w: %s", ErrNoEvents, submissionID)
	}
	return st, nil
}

// postEvent sends a signed SET to the case's event log. The backbone
// records a token once however often it is posted, so it is retried.
func (c *Client) postEvent(ctx context.Context, caseID, token string) error {
	resp, err := c.do(ctx, request{
		method: http.MethodPost, path: "/v1/cases/" + url.PathEscape(caseID) + "/events",
		body: stringBody(token), ctype: "application/jose",
		want:       []int{http.StatusNoContent, http.StatusOK, http.StatusCreated, http.StatusAccepted},
		idempotent: true,
	})
	if err != nil {
		return err
	}
	drain(resp)
	return nil
}
