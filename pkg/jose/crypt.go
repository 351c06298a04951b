package jose

import (
	"crypto/rsa"
	"errors"
	"fmt"

	gojose "github.com/go-jose/go-jose/v4"
)

// Encrypt seals plaintext for key as a compact JWE with RSA-OAEP-256 and
// A256GCM. The protected header carries the key's kid, and cty when cty is
// not empty. The key must be an RSA public key with a kid; plaintext may
// be empty (an empty file).
func Encrypt(plaintext []byte, key *gojose.JSONWebKey, cty string) (string, error) {
	if key == nil {
		return "", errors.New("encrypt: no key")
	}
	var pub *rsa.PublicKey
	switch k := key.Key.(type) {
	case *rsa.PublicKey:
		pub = k
	case *rsa.PrivateKey:
		pub = &k.PublicKey
	default:
		return "", fmt.Errorf("encrypt: %w", keyRule("kty", "must be an RSA key, got %T", key.Key))
	}
	if key.KeyID == "" {
		return "", fmt.Errorf("encrypt: %w", keyRule("kid", "is missing"))
	}
	opts := &gojose.EncrypterOptions{}
	if cty != "" {
		if err := checkCty(cty); err != nil {
			return "", fmt.Errorf("encrypt: %w", err)
		}
		opts = opts.WithContentType(gojose.ContentType(cty))
	}
	enc, err := gojose.NewEncrypter(gojose.A256GCM,
		gojose.Recipient{Algorithm: gojose.RSA_OAEP_256, Key: pub, KeyID: key.KeyID}, opts)
	if err != nil {
		return "", fmt.Errorf("encrypt: %w", err)
	}
	obj, err := enc.Encrypt(plaintext)
	if err != nil {
		return "", fmt.Errorf("encrypt: %w", err)
	}
	compact, err := obj.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("encrypt: %w", err)
	}
	return compact, nil
}

// Decrypt opens a compact JWE with priv. It first applies ParseJWE's rules,
// so only RSA-OAEP-256 with A256GCM is ever decrypted. A JWE that breaks a
// rule yields a *RuleError wrapping ErrJWE; a wrong key or tampered content
// an error wrapping ErrDecrypt.
func Decrypt(compact string, priv *rsa.PrivateKey) ([]byte, error) {
	if priv == nil {
		return nil, errors.New("decrypt: no key")
	}
	if _, err := ParseJWE(compact); err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	obj, err := gojose.ParseEncryptedCompact(compact,
		[]gojose.KeyAlgorithm{gojose.RSA_OAEP_256}, []gojose.ContentEncryption{gojose.A256GCM})
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w: %v", ErrJWE, err)
	}
	plaintext, err := obj.Decrypt(priv)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w: %v", ErrDecrypt, err)
	}
	return plaintext, nil
}
