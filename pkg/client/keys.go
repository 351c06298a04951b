package client

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"

	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/problem"
)

// ErrKeyMismatch means a receiver's keys are not those the Submission API
// publishes for its destination.
var ErrKeyMismatch = errors.New("keys do not match the destination's")

// CheckKeys checks a receiver's keys for a destination against what the
// Submission API publishes, so that a wrong key file is found before a
// submission is picked up: keys must hold the private key of the
// destination's encryptionKid, and signer must be one of its signing
// keys, the same key. A mismatch wraps ErrKeyMismatch; an error of the
// API (credentials refused, destination unknown) is returned as it is.
func (r *Receiver) CheckKeys(ctx context.Context, destinationID string, keys KeyRing, signer jose.KeyPair) error {
	d, err := r.c.Sender().FetchDestination(ctx, destinationID)
	if err != nil {
		return err
	}
	if d.EncryptionKID == "" {
		return fmt.Errorf("destination %s: %w: it names no encryption key", destinationID, ErrKeyMismatch)
	}
	priv, ok := keys[d.EncryptionKID]
	if !ok {
		return fmt.Errorf("destination %s: %w: it encrypts to key %q, whose private key is not among the encryption keys given", destinationID, ErrKeyMismatch, d.EncryptionKID)
	}
	pub, err := r.c.Sender().FetchEncryptionKey(ctx, destinationID, d.EncryptionKID)
	if err != nil {
		return err
	}
	if !samePublic(pub.Key, &priv.PublicKey) {
		return fmt.Errorf("destination %s: %w: the private key given for %q is not the one published under it", destinationID, ErrKeyMismatch, d.EncryptionKID)
	}
	kid := signer.Public.KeyID
	if signer.Private == nil {
		return fmt.Errorf("destination %s: %w: no private signing key", destinationID, ErrKeyMismatch)
	}
	raw, err := r.c.fetchKey(ctx, destinationID, kid)
	if p, ok := problem.As(err); ok && p.Status == http.StatusNotFound {
		return fmt.Errorf("destination %s: %w: signing key %q is not one of its keys", destinationID, ErrKeyMismatch, kid)
	}
	if err != nil {
		return fmt.Errorf("fetch signing key %s of %s: %w", kid, destinationID, err)
	}
	jwk, err := jose.ValidatePublicKey(raw, jose.Signing)
	if err != nil {
		return fmt.Errorf("destination %s: %w: key %q: %w", destinationID, ErrKeyMismatch, kid, err)
	}
	if !samePublic(jwk.Key, &signer.Private.PublicKey) {
		return fmt.Errorf("destination %s: %w: the signing key given for %q is not the one published under it", destinationID, ErrKeyMismatch, kid)
	}
	return nil
}

// samePublic reports whether k is the RSA public key pub.
func samePublic(k any, pub *rsa.PublicKey) bool {
	rk, ok := k.(*rsa.PublicKey)
	return ok && rk.Equal(pub)
}
