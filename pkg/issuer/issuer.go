// Package issuer issues Amtsbote's own security event tokens: it builds an
// event's claims with the jti derived from the submission and the event
// under a key only Amtsbote holds (sealed.JTIKey), signs them with Amtsbote's PS512 key and publishes
// them to the case's EVENTS subject, once. Every role that writes an event
// of its own uses it: the gateway (notify-submission, and create- and
// submit-submission through the outbox), the signer (the outbox), the
// router (reject-submission of what cannot be routed) and the ledger (the
// deadlines' reject- and delete-submission).
//
// Once: before signing, the case's events are read from EVENTS; an event
// with the jti there is not published again. Two issuers racing within
// the stream's duplicates window publish one (Nats-Msg-Id = jti).
package issuer

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/set"
)

// Issuer issues Amtsbote's events. It is safe for concurrent use.
type Issuer struct {
	bus *bus.Bus
	key *rsa.PrivateKey
	kid string
	jti sealed.JTIKey
	url string
	now func() time.Time
}

// New returns an Issuer signing with key as Amtsbote at url (the iss of
// its events). now is the clock (nil: time.Now).
func New(b *bus.Bus, key jose.KeyPair, url string, now func() time.Time) (*Issuer, error) {
	switch {
	case b == nil:
		return nil, errors.New("new issuer: no bus")
	case key.Private == nil || key.Public.KeyID == "":
		return nil, errors.New("new issuer: no signing key with a kid")
	case key.Purpose != jose.Signing:
		return nil, fmt.Errorf("new issuer: key has purpose %q, want %q", key.Purpose, jose.Signing)
	case url == "":
		return nil, errors.New("new issuer: no url")
	}
	if now == nil {
		now = time.Now
	}
	// A key read from a file lacks the CRT values that make signing
	// several times faster.
	key.Private.Precompute()
	return &Issuer{
		bus: b, key: key.Private, kid: key.Public.KeyID,
		jti: sealed.NewJTIKey(key.Private.D.Bytes()),
		url: strings.TrimRight(url, "/"), now: now,
	}, nil
}

// URL returns Amtsbote's URL, the iss of its events.
func (i *Issuer) URL() string { return i.url }

// Claims returns the claims of Amtsbote's event uri about a submission,
// issued now, with the derived jti.
func (i *Issuer) Claims(uri, submissionID, caseID string, payload any) (set.Claims, error) {
	c, err := set.New(uri, i.url, submissionID, caseID, payload, i.now())
	if err != nil {
		return set.Claims{}, err
	}
	c.JTI = i.JTI(submissionID, uri)
	return c, nil
}

// JTI returns the jti of Amtsbote's event uri about a submission.
func (i *Issuer) JTI(submissionID, uri string) string {
	return i.jti.EventJTI(submissionID, uri)
}

// after names the event of a submission that must stand in its case
// before another of Amtsbote's events about it: FIT-Connect's event log
// lists a case's events in the order they happened, and a client reads a
// submission's status from its last event. The router rejects what it
// cannot route as soon as it reads it, while the submit may still wait
// for a signer.
var after = map[string]string{
	set.SubmitSubmission: set.CreateSubmission,
	set.RejectSubmission: set.SubmitSubmission,
}

// ErrEarlierPending is returned by Publish for an event whose predecessor
// (after) waits in the outbox; it is published once that one is.
var ErrEarlierPending = errors.New("an earlier event of the submission waits in the outbox")

// Published is an event as it stands in EVENTS.
type Published struct {
	Claims set.Claims
	Token  string
	// Seq is its stream sequence.
	Seq uint64
}

// Publish signs c and publishes it to its case's EVENTS subject, unless
// the case has an event with c's jti: then that one is returned.
func (i *Issuer) Publish(ctx context.Context, c set.Claims) (Published, error) {
	caseID, err := c.CaseID()
	if err != nil {
		return Published{}, fmt.Errorf("issue %s: %w", c.JTI, err)
	}
	evs, err := i.bus.CaseEvents(ctx, caseID)
	if err != nil {
		return Published{}, fmt.Errorf("issue %s: %w", c.JTI, err)
	}
	sid, _ := c.SubmissionID()
	uri, _, _ := c.Event()
	prev, ordered := after[uri]
	for _, e := range evs {
		pc, psid, puri, ok := e.Read()
		if !ok {
			continue
		}
		// The same event of Amtsbote's under another jti: one issued
		// before the signing key, and so the jti key, was rolled.
		if pc.JTI == c.JTI || pc.Issuer == i.url && psid == sid && puri == uri {
			return Published{Claims: pc, Token: e.Token, Seq: e.Seq}, nil
		}
		if psid == sid && puri == prev {
			ordered = false
		}
	}
	if ordered {
		// The event it follows is not in the case yet: while it waits in
		// the outbox, this one waits too.
		_, err := i.bus.GetState(ctx, sealed.OutboxKey(i.JTI(sid, prev)))
		if err == nil {
			return Published{}, fmt.Errorf("issue %s: %w: %s of %s waits in the outbox", c.JTI, ErrEarlierPending, set.Name(prev), sid)
		}
		if !errors.Is(err, bus.ErrNotFound) {
			return Published{}, fmt.Errorf("issue %s: %w", c.JTI, err)
		}
	}
	if err := i.claim(ctx, c.JTI, caseID); err != nil {
		return Published{}, fmt.Errorf("issue %s: %w", c.JTI, err)
	}
	token, err := set.Sign(c, i.key, i.kid)
	if err != nil {
		return Published{}, fmt.Errorf("issue %s: %w", c.JTI, err)
	}
	ack, err := i.bus.PublishEvent(ctx, i.url, c, token)
	if err != nil {
		return Published{}, fmt.Errorf("issue %s: %w", c.JTI, err)
	}
	if ack.Duplicate {
		// Another issuer was quicker; what stands is its token.
		e, err := i.bus.EventAt(ctx, ack.Sequence)
		if err != nil {
			return Published{}, fmt.Errorf("issue %s: %w", c.JTI, err)
		}
		if _, pc, err := set.Parse(e.Token); err == nil {
			return Published{Claims: pc, Token: e.Token, Seq: e.Seq}, nil
		}
	}
	return Published{Claims: c, Token: token, Seq: ack.Sequence}, nil
}

// claim claims jti for caseID as receivers' events claim theirs, so that
// a receiver who learns the jti from the event log cannot use it again.
func (i *Issuer) claim(ctx context.Context, jti, caseID string) error {
	key := sealed.JTIClaimKey(jti)
	_, err := i.bus.CreateState(ctx, key, []byte(caseID))
	if err == nil || !errors.Is(err, bus.ErrRevisionMismatch) {
		return err
	}
	e, err := i.bus.GetState(ctx, key)
	if err != nil {
		return err
	}
	if string(e.Value) != caseID {
		return fmt.Errorf("jti is claimed by case %s", e.Value)
	}
	return nil
}

// Issue builds, signs and publishes Amtsbote's event uri about a
// submission (Claims, then Publish).
func (i *Issuer) Issue(ctx context.Context, uri, submissionID, caseID string, payload any) (Published, error) {
	c, err := i.Claims(uri, submissionID, caseID, payload)
	if err != nil {
		return Published{}, fmt.Errorf("issue %s of %s: %w", set.Name(uri), submissionID, err)
	}
	return i.Publish(ctx, c)
}

// Enqueue puts Amtsbote's event uri about a submission in the outbox, for
// a signer to publish off the request path.
func (i *Issuer) Enqueue(ctx context.Context, uri, submissionID, caseID string, payload any) error {
	c, err := i.Claims(uri, submissionID, caseID, payload)
	if err != nil {
		return fmt.Errorf("queue %s of %s: %w", set.Name(uri), submissionID, err)
	}
	return i.bus.Enqueue(ctx, c)
}
