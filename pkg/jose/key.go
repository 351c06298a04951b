package jose

import (
	"github.com/amtsbote/amtsbote/pkg/strictjson"

	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"slices"
	"unicode/utf8"

	gojose "github.com/go-jose/go-jose/v4"
)

// Bounds of a kid as FIT-Connect demands them.
const (
	MinKIDLen = 8
	MaxKIDLen = 64
)

// privateMembers are the JWK members that carry private or symmetric key material.
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// ValidatePublicKey parses a public JWK and checks every FIT-Connect rule
// for a key of purpose p: kty RSA, no private material, modulus of at least
// 4096 bits, e = AQAB, key_ops exactly ["wrapKey"] (encryption) or
// ["verify"] (signing), the matching alg, use (if present) matching the
// purpose, a kid of 8 to 64 characters, and an x5c chain of valid DER
// certificates whose first certificate holds this very key. The chain is
// not verified against a trust anchor.
//
// Each broken rule yields a *RuleError wrapping ErrKeyRule that names the
// member; the rules are checked in the order listed, and the first broken
// one is reported.
func ValidatePublicKey(raw []byte, p Purpose) (*gojose.JSONWebKey, error) {
	op, alg, _, use, ok := p.rules()
	if !ok {
		return nil, keyRule("purpose", "unknown key purpose %q, want %q or %q", p, Encryption, Signing)
	}
	m, err := strictjson.Object(raw)
	if err != nil {
		return nil, keyRule("jwk", "%v", err)
	}
	kty, _, err := strictjson.String(m, "kty")
	if err != nil {
		return nil, keyRule("kty", "%v", err)
	}
	if kty != "RSA" {
		return nil, keyRule("kty", "must be \"RSA\", got %q", kty)
	}
	for _, name := range privateMembers {
		if _, present := m[name]; present {
			return nil, keyRule(name, "private key material must not be part of a public key")
		}
	}
	pub, err := rsaPublic(m)
	if err != nil {
		return nil, err
	}
	if err := checkKeyOps(m, []string{op}, p); err != nil {
		return nil, err
	}
	gotAlg, present, err := strictjson.String(m, "alg")
	switch {
	case err != nil:
		return nil, keyRule("alg", "%v", err)
	case !present:
		return nil, keyRule("alg", "is missing, must be %q for %s", alg, p.noun())
	case gotAlg != alg:
		return nil, keyRule("alg", "must be %q for %s, got %q", alg, p.noun(), gotAlg)
	}
	gotUse, present, err := strictjson.String(m, "use")
	if err != nil {
		return nil, keyRule("use", "%v", err)
	}
	if present && gotUse != use {
		return nil, keyRule("use", "must be %q for %s if present, got %q", use, p.noun(), gotUse)
	}
	kid, err := kidMember(m)
	if err != nil {
		return nil, err
	}
	certs, err := certificates(m, pub)
	if err != nil {
		return nil, err
	}
	return &gojose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: alg, Use: gotUse, Certificates: certs}, nil
}

// rsaPublic reads n and e and checks size and exponent.
func rsaPublic(m map[string]json.RawMessage) (*rsa.PublicKey, error) {
	n, err := bigMember(m, "n")
	if err != nil {
		return nil, err
	}
	if bits := n.BitLen(); bits < MinRSABits {
		return nil, keyRule("n", "RSA modulus must have at least %d bits, has %d", MinRSABits, bits)
	} else if bits > MaxRSABits {
		return nil, keyRule("n", "RSA modulus must have at most %d bits, has %d", MaxRSABits, bits)
	}
	e, present, err := strictjson.String(m, "e")
	switch {
	case err != nil:
		return nil, keyRule("e", "%v", err)
	case !present:
		return nil, keyRule("e", "is missing, must be \"AQAB\"")
	case e != "AQAB":
		return nil, keyRule("e", "public exponent must be \"AQAB\" (65537), got %q", e)
	}
	return &rsa.PublicKey{N: n, E: 65537}, nil
}

// bigMember decodes a base64url (unpadded) big-endian integer member.
func bigMember(m map[string]json.RawMessage, name string) (*big.Int, error) {
	s, present, err := strictjson.String(m, name)
	if err != nil {
		return nil, keyRule(name, "%v", err)
	}
	if !present || s == "" {
		return nil, keyRule(name, "is missing")
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, keyRule(name, "must be unpadded base64url: %v", err)
	}
	return new(big.Int).SetBytes(b), nil
}

func checkKeyOps(m map[string]json.RawMessage, want []string, p Purpose) error {
	raw, present := m["key_ops"]
	if !present {
		return keyRule("key_ops", "is missing, must be %s for %s", quoteList(want), p.noun())
	}
	var ops []string
	if err := json.Unmarshal(raw, &ops); err != nil || ops == nil {
		return keyRule("key_ops", "must be an array of strings")
	}
	if slices.Equal(ops, want) {
		return nil
	}
	other := Signing
	if p == Signing {
		other = Encryption
	}
	otherOp, _, _, _, _ := other.rules()
	if slices.Equal(ops, []string{otherOp}) {
		return keyRule("key_ops", "must be %s for %s; %s marks %s", quoteList(want), p.noun(), quoteList(ops), other.noun())
	}
	return keyRule("key_ops", "must be exactly %s for %s, got %s", quoteList(want), p.noun(), quoteList(ops))
}

func quoteList(ss []string) string {
	b, _ := json.Marshal(ss)
	return string(b)
}

func kidMember(m map[string]json.RawMessage) (string, error) {
	kid, present, err := strictjson.String(m, "kid")
	if err != nil {
		return "", keyRule("kid", "%v", err)
	}
	if !present {
		return "", keyRule("kid", "is missing")
	}
	if n := utf8.RuneCountInString(kid); n < MinKIDLen || n > MaxKIDLen {
		return "", keyRule("kid", "must have %d to %d characters, has %d", MinKIDLen, MaxKIDLen, n)
	}
	return kid, nil
}

// certificates parses x5c and checks that the first certificate holds pub.
func certificates(m map[string]json.RawMessage, pub *rsa.PublicKey) ([]*x509.Certificate, error) {
	raw, present := m["x5c"]
	if !present {
		return nil, keyRule("x5c", "certificate chain is missing")
	}
	var chain []string
	if err := json.Unmarshal(raw, &chain); err != nil {
		return nil, keyRule("x5c", "must be an array of base64 strings")
	}
	if len(chain) == 0 {
		return nil, keyRule("x5c", "certificate chain is empty")
	}
	certs := make([]*x509.Certificate, len(chain))
	for i, s := range chain {
		// RFC 7517 4.7: standard base64 with padding, not base64url.
		der, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil {
			return nil, keyRule("x5c", "entry %d is not valid base64: %v", i, err)
		}
		if certs[i], err = x509.ParseCertificate(der); err != nil {
			return nil, keyRule("x5c", "entry %d is not a DER certificate: %v", i, err)
		}
	}
	certPub, ok := certs[0].PublicKey.(*rsa.PublicKey)
	if !ok || !certPub.Equal(pub) {
		return nil, keyRule("x5c", "the first certificate's public key differs from the key in n and e")
	}
	return certs, nil
}

// withKeyOps adds key_ops to a JWK that go-jose serialised, which knows no key_ops.
func withKeyOps(jwk []byte, op string) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(jwk, &m); err != nil {
		return nil, err
	}
	ops, err := json.Marshal([]string{op})
	if err != nil {
		return nil, err
	}
	m["key_ops"] = ops
	return json.Marshal(m)
}

// purposeOf reads the purpose a key declares through alg.
func purposeOf(alg string) (Purpose, bool) {
	switch alg {
	case AlgRSAOAEP256:
		return Encryption, true
	case AlgPS512:
		return Signing, true
	}
	return "", false
}
