package console

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/gateway/httpapi"
)

// verifiedEvents answers GET /admin/v1/cases/{caseId}/events/verified.
type verifiedEvents struct {
	CaseID     string          `json:"caseId"`
	Count      int             `json:"count"`
	Offset     int             `json:"offset"`
	TotalCount int             `json:"totalCount"`
	Events     []verifiedEvent `json:"events"`
}

// verifiedEvent is one SET of a case and what its signature says. Its
// claims are the signed ones only where Verified is true.
type verifiedEvent struct {
	StreamSeq    uint64    `json:"streamSeq,omitempty"`
	Event        string    `json:"event"`
	Type         string    `json:"type"`
	JTI          string    `json:"jti"`
	Issuer       string    `json:"iss"`
	IssuedAt     time.Time `json:"iat"`
	SubmissionID string    `json:"submissionId"`
	KID          string    `json:"kid"`
	// Signer is "amtsbote" for Amtsbote's own events, "destination" for a
	// receiver's, "unknown" when the issuer is neither.
	Signer   string `json:"signer"`
	Verified bool   `json:"verified"`
	// Reason says why the signature does not verify; empty when it does.
	Reason string `json:"reason,omitempty"`
}

// handleVerifiedEvents lists a case's events, each with its signature
// checked against the key its issuer signs with: Amtsbote's own (the
// JWKS) or the destination's signing key named by kid.
func (c *Console) handleVerifiedEvents(w http.ResponseWriter, r *http.Request, _ httpapi.Principal) error {
	caseID, err := httpapi.PathUUID(r, "caseId")
	if err != nil {
		return err
	}
	page, err := httpapi.PageOf(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	evs, total, err := c.cfg.Store.Events(ctx, caseID, page)
	if err != nil {
		return fmt.Errorf("events of case %s: %w", caseID, err)
	}
	if total == 0 {
		subs, err := c.cfg.Store.SubmissionsByCase(ctx, caseID)
		if err != nil {
			return fmt.Errorf("case %s: %w", caseID, err)
		}
		if len(subs) == 0 {
			return problem.CaseNotFound(caseID).WithField("caseId")
		}
	}
	out := verifiedEvents{CaseID: caseID, Count: len(evs), Offset: page.Offset, TotalCount: total, Events: make([]verifiedEvent, 0, len(evs))}
	for _, e := range evs {
		v, err := c.verify(ctx, e)
		if err != nil {
			return err
		}
		out.Events = append(out.Events, v)
	}
	w.Header().Set("Cache-Control", "no-store")
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// verify checks one recorded event. Only a failure to read a key is an
// error; a signature that does not verify is the answer.
func (c *Console) verify(ctx context.Context, e store.Event) (verifiedEvent, error) {
	v := verifiedEvent{StreamSeq: e.StreamSeq, Event: e.Type, Type: set.Name(e.Type), JTI: e.JTI, Issuer: e.Issuer,
		IssuedAt: e.IssuedAt.UTC(), SubmissionID: e.SubmissionID, Signer: "unknown"}
	hdr, _, err := set.Parse(e.Token)
	if err != nil {
		v.Reason = err.Error()
		return v, nil
	}
	v.KID = hdr.KID
	var pub *rsa.PublicKey
	switch {
	case e.Issuer == c.cfg.Issuer:
		v.Signer = "amtsbote"
		if hdr.KID != c.cfg.KeyID {
			v.Reason = fmt.Sprintf("kid %q is not Amtsbote's signing key %q", hdr.KID, c.cfg.KeyID)
			return v, nil
		}
		pub = c.cfg.Key
	default:
		// A receiver may write its destination id in upper case.
		k, err := c.cfg.Store.Key(ctx, strings.ToLower(e.Issuer), hdr.KID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			v.Reason = fmt.Sprintf("kid %q is not a key of %q", hdr.KID, e.Issuer)
			return v, nil
		case err != nil:
			return v, fmt.Errorf("read key %s of %s: %w", hdr.KID, e.Issuer, err)
		}
		v.Signer = "destination"
		if k.Use != store.UseSigning {
			v.Reason = fmt.Sprintf("kid %q is the destination's %s key, not its signing key", hdr.KID, k.Use)
			return v, nil
		}
		if !k.ValidAt(e.IssuedAt) {
			v.Reason = fmt.Sprintf("signing key %q was retired before the event was issued", hdr.KID)
			return v, nil
		}
		jwk, err := jose.ValidatePublicKey(k.JWK, jose.Signing)
		if err != nil {
			v.Reason = fmt.Sprintf("stored signing key %q: %v", hdr.KID, err)
			return v, nil
		}
		var ok bool
		if pub, ok = jwk.Key.(*rsa.PublicKey); !ok {
			v.Reason = fmt.Sprintf("stored signing key %q is not an RSA key", hdr.KID)
			return v, nil
		}
	}
	// The event was accepted when it was issued; only its signature and
	// claims are judged now, not its age.
	if _, err := (set.Verifier{Now: func() time.Time { return e.IssuedAt }}).Verify(e.Token, pub); err != nil {
		v.Reason = err.Error()
		return v, nil
	}
	v.Verified = true
	return v, nil
}
