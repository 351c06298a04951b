package jose

import (
	"github.com/amtsbote/amtsbote/pkg/strictjson"

	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"
	"unicode/utf8"

	gojose "github.com/go-jose/go-jose/v4"
)

// certValidity is how long a generated self-signed certificate is valid.
const certValidity = 2 * 365 * 24 * time.Hour

// KeyPair is an RSA key with the public JWK FIT-Connect publishes for it.
type KeyPair struct {
	// Purpose decides key_ops, which go-jose's JSONWebKey cannot carry.
	Purpose Purpose
	Private *rsa.PrivateKey
	// Public holds the public key, kid, alg and the x5c chain.
	Public gojose.JSONWebKey
}

// GenerateKeyPair creates an RSA-4096 key for purpose p with a self-signed
// X.509 certificate for commonName in x5c. Self-signed certificates suit
// test environments; production keys carry a chain from an authority's PKI.
// The public key passes ValidatePublicKey.
func GenerateKeyPair(p Purpose, kid, commonName string) (KeyPair, error) {
	_, alg, _, _, ok := p.rules()
	if !ok {
		return KeyPair{}, fmt.Errorf("generate key pair: %w", keyRule("purpose", "unknown key purpose %q", p))
	}
	if n := utf8.RuneCountInString(kid); n < MinKIDLen || n > MaxKIDLen {
		return KeyPair{}, fmt.Errorf("generate key pair: %w", keyRule("kid", "must have %d to %d characters, has %d", MinKIDLen, MaxKIDLen, n))
	}
	priv, err := rsa.GenerateKey(rand.Reader, MinRSABits)
	if err != nil {
		return KeyPair{}, fmt.Errorf("generate key pair: %w", err)
	}
	cert, err := selfSigned(priv, p, commonName, time.Now())
	if err != nil {
		return KeyPair{}, fmt.Errorf("generate key pair: %w", err)
	}
	kp := KeyPair{
		Purpose: p,
		Private: priv,
		Public: gojose.JSONWebKey{
			Key:          &priv.PublicKey,
			KeyID:        kid,
			Algorithm:    alg,
			Certificates: []*x509.Certificate{cert},
		},
	}
	raw, err := kp.PublicJSON()
	if err != nil {
		return KeyPair{}, fmt.Errorf("generate key pair: %w", err)
	}
	if _, err := ValidatePublicKey(raw, p); err != nil {
		return KeyPair{}, fmt.Errorf("generate key pair: %w", err)
	}
	return kp, nil
}

func selfSigned(priv *rsa.PrivateKey, p Purpose, commonName string, now time.Time) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	usage := x509.KeyUsageKeyEncipherment
	if p == Signing {
		usage = x509.KeyUsageDigitalSignature
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              usage,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return nil, fmt.Errorf("self-sign certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// PublicJSON returns the public JWK with kid, alg, key_ops and x5c, ready
// to publish or to store as a destination key.
func (k KeyPair) PublicJSON() ([]byte, error) {
	op, _, _, _, ok := k.Purpose.rules()
	if !ok {
		return nil, fmt.Errorf("marshal public key: unknown purpose %q", k.Purpose)
	}
	pub := k.Public
	if pub.Key == nil && k.Private != nil {
		pub.Key = &k.Private.PublicKey
	}
	raw, err := pub.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	if raw, err = withKeyOps(raw, op); err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	return raw, nil
}

// MarshalPrivate returns the private JWK with kid, alg, x5c and key_ops
// ["unwrapKey"] (encryption) or ["sign"] (signing). Keep it secret.
func (k KeyPair) MarshalPrivate() ([]byte, error) {
	_, _, op, _, ok := k.Purpose.rules()
	if !ok {
		return nil, fmt.Errorf("marshal private key: unknown purpose %q", k.Purpose)
	}
	if k.Private == nil {
		return nil, errors.New("marshal private key: no private key")
	}
	jwk := gojose.JSONWebKey{
		Key:          k.Private,
		KeyID:        k.Public.KeyID,
		Algorithm:    k.Public.Algorithm,
		Certificates: k.Public.Certificates,
	}
	raw, err := jwk.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	if raw, err = withKeyOps(raw, op); err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return raw, nil
}

// ParsePrivate reads a private JWK as MarshalPrivate writes it. The purpose
// follows from alg; key_ops, if present, must fit it (unwrapKey or wrapKey
// for encryption, sign or verify for signing). The public half must pass
// ValidatePublicKey. Errors are *RuleError values wrapping ErrKeyRule.
func ParsePrivate(raw []byte) (KeyPair, error) {
	kp, err := parsePrivate(raw)
	if err != nil {
		return KeyPair{}, fmt.Errorf("parse private key: %w", err)
	}
	return kp, nil
}

func parsePrivate(raw []byte) (KeyPair, error) {
	m, err := strictjson.Object(raw)
	if err != nil {
		return KeyPair{}, keyRule("jwk", "%v", err)
	}
	if kty, _, _ := strictjson.String(m, "kty"); kty != "RSA" {
		return KeyPair{}, keyRule("kty", "must be \"RSA\", got %q", kty)
	}
	alg, _, err := strictjson.String(m, "alg")
	if err != nil {
		return KeyPair{}, keyRule("alg", "%v", err)
	}
	p, ok := purposeOf(alg)
	if !ok {
		return KeyPair{}, keyRule("alg", "must be %q or %q, got %q", AlgRSAOAEP256, AlgPS512, alg)
	}
	op, _, privateOp, _, _ := p.rules()
	if rawOps, present := m["key_ops"]; present {
		var ops []string
		if err := json.Unmarshal(rawOps, &ops); err != nil {
			return KeyPair{}, keyRule("key_ops", "must be an array of strings")
		}
		for _, o := range ops {
			if o != op && o != privateOp {
				return KeyPair{}, keyRule("key_ops", "%q does not fit %s", o, p.noun())
			}
		}
	}
	pub, err := rsaPublic(m)
	if err != nil {
		return KeyPair{}, err
	}
	priv := &rsa.PrivateKey{PublicKey: *pub}
	if priv.D, err = bigMember(m, "d"); err != nil {
		return KeyPair{}, err
	}
	for _, name := range []string{"p", "q"} {
		prime, err := bigMember(m, name)
		if err != nil {
			return KeyPair{}, err
		}
		priv.Primes = append(priv.Primes, prime)
	}
	priv.Precompute()
	if err := priv.Validate(); err != nil {
		return KeyPair{}, keyRule("d", "inconsistent RSA private key: %v", err)
	}

	// Check the public half with the very rules its JWK will be published under.
	pm := make(map[string]json.RawMessage, len(m))
	for name, v := range m {
		if !slices.Contains(privateMembers, name) && name != "key_ops" {
			pm[name] = v
		}
	}
	pm["key_ops"], _ = json.Marshal([]string{op})
	pubJSON, err := json.Marshal(pm)
	if err != nil {
		return KeyPair{}, keyRule("jwk", "%v", err)
	}
	jwk, err := ValidatePublicKey(pubJSON, p)
	if err != nil {
		return KeyPair{}, err
	}
	return KeyPair{Purpose: p, Private: priv, Public: *jwk}, nil
}
