// Package jose applies FIT-Connect's JOSE rules on top of go-jose: it checks
// public JWKs of destinations (RSA ≥ 4096 bit, e = AQAB, key_ops, alg, kid,
// x5c), checks compact JWEs structurally without decrypting them (in memory
// with ParseJWE, streaming with ScanJWE), and encrypts and decrypts with the
// only algorithms FIT-Connect allows: RSA-OAEP-256 key wrapping and A256GCM
// content encryption.
//
// Every rule violation is a *RuleError naming the field that broke the
// rule, so the HTTP layer can answer with a precise problem.
package jose

import (
	"errors"
	"fmt"
)

// Purpose says what a destination key is for. The values equal those of
// store.KeyUse.
type Purpose string

// Key purposes as FIT-Connect defines them.
const (
	// Encryption keys wrap content keys: key_ops ["wrapKey"], alg RSA-OAEP-256.
	Encryption Purpose = "encryption"
	// Signing keys verify signatures: key_ops ["verify"], alg PS512.
	Signing Purpose = "signing"
)

// Algorithm names FIT-Connect allows.
const (
	AlgRSAOAEP256 = "RSA-OAEP-256" // JWE key management and encryption key alg
	EncA256GCM    = "A256GCM"      // JWE content encryption
	AlgPS512      = "PS512"        // signatures and signing key alg
	MinRSABits    = 4096           // smallest RSA modulus FIT-Connect accepts
	// MaxRSABits bounds the modulus so that a hostile key cannot make every
	// operation on it arbitrarily expensive.
	MaxRSABits = 16384
)

// Sentinel errors, wrapped by every error of this package that they describe.
var (
	// ErrKeyRule means a JWK breaks one of FIT-Connect's key rules.
	ErrKeyRule = errors.New("key rule violated")
	// ErrJWE means a compact JWE breaks one of FIT-Connect's structural rules.
	ErrJWE = errors.New("invalid jwe")
	// ErrTooLarge means a streamed JWE exceeds the caller's size limit.
	ErrTooLarge = errors.New("jwe too large")
	// ErrDecrypt means a JWE could not be decrypted with the given key.
	ErrDecrypt = errors.New("decryption failed")
)

// RuleError names the field that broke a rule and why. Err is ErrKeyRule or
// ErrJWE.
type RuleError struct {
	// Field is the offending JWK member ("kty", "key_ops", "x5c", …), JWE
	// header member ("header.alg", …) or JWE part ("segment 2", "segments").
	Field string
	// Reason says what the rule demands, in words fit for a problem detail.
	Reason string
	Err    error
}

// Error implements error.
func (e *RuleError) Error() string {
	return fmt.Sprintf("%v: %s: %s", e.Err, e.Field, e.Reason)
}

// Unwrap returns ErrKeyRule or ErrJWE.
func (e *RuleError) Unwrap() error { return e.Err }

func keyRule(field, format string, args ...any) *RuleError {
	return &RuleError{Field: field, Reason: fmt.Sprintf(format, args...), Err: ErrKeyRule}
}

func jweRule(field, format string, args ...any) *RuleError {
	return &RuleError{Field: field, Reason: fmt.Sprintf(format, args...), Err: ErrJWE}
}

// rules returns the key_ops value and alg a public key of purpose p must
// carry, and the key_ops value its private counterpart carries.
func (p Purpose) rules() (op, alg, privateOp, use string, ok bool) {
	switch p {
	case Encryption:
		return "wrapKey", AlgRSAOAEP256, "unwrapKey", "enc", true
	case Signing:
		return "verify", AlgPS512, "sign", "sig", true
	}
	return "", "", "", "", false
}

// noun names the purpose with its article, for error reasons.
func (p Purpose) noun() string {
	if p == Encryption {
		return "an encryption key"
	}
	return "a " + string(p) + " key"
}
