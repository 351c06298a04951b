package set

import (
	"github.com/amtsbote/amtsbote/pkg/strictjson"

	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

const (
	// MaxTokenLen bounds a SET. A submit-submission event with a hundred
	// attachments is below 10 KiB.
	MaxTokenLen = 1 << 20
	// DefaultSkew is how far in the future iat may lie by default, for
	// clocks of issuers that run ahead.
	DefaultSkew = 5 * time.Minute
	// pssSaltLen is the salt length JWS PS512 prescribes: the hash size (RFC 7518 3.5).
	pssSaltLen = sha512.Size
)

// Header is the protected header of a SET.
type Header struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	KID string `json:"kid"`
}

// Sign validates c and signs it with PS512 under a header
// {"alg":"PS512","typ":"secevent+jwt","kid":kid}.
func Sign(c Claims, key *rsa.PrivateKey, kid string) (string, error) {
	if key == nil {
		return "", errors.New("sign set: no key")
	}
	if kid == "" {
		return "", errors.New("sign set: no kid")
	}
	if err := c.Validate(); err != nil {
		return "", fmt.Errorf("sign set: %w", err)
	}
	header, err := json.Marshal(Header{Alg: Alg, Typ: Typ, KID: kid})
	if err != nil {
		return "", fmt.Errorf("sign set: %w", err)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("sign set: %w", err)
	}
	input := b64(header) + "." + b64(payload)
	digest := sha512.Sum512([]byte(input))
	var sig []byte
	for range maxSignings {
		if sig, err = rsa.SignPSS(rand.Reader, key, crypto.SHA512, digest[:], &rsa.PSSOptions{SaltLength: pssSaltLen}); err != nil {
			return "", fmt.Errorf("sign set: %w", err)
		}
		if wordStart(sig) {
			break
		}
	}
	return input + "." + b64(sig), nil
}

// FIT-Connect's EventLog schema takes a SET only if it matches
// \w+\.\w+\.\w+: a word character must follow each dot. The header and
// payload segments, JSON objects, begin and end with one; a signature
// begins with '-' when its first six bits are 111110, one in 64 for a key
// whose modulus allows it. PSS is randomised, so such a signature is made
// again, at most maxSignings times in all.
const maxSignings = 16

// wordStart reports whether sig's base64url begins with a word character.
func wordStart(sig []byte) bool { return len(sig) > 0 && sig[0]>>2 != 62 }

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// token is a SET split into its parts.
type token struct {
	header  Header
	members map[string]json.RawMessage // of the header
	claims  Claims
	input   string // the signing input: header and payload segments
	sig     []byte
}

// Parse decodes a SET without verifying its signature or claim rules, so
// that the caller can find the kid and issuer to pick the key. Errors are
// *RuleError values wrapping ErrMalformed. Never act on unverified claims.
func Parse(token string) (Header, Claims, error) {
	t, err := parse(token)
	if err != nil {
		return Header{}, Claims{}, fmt.Errorf("parse set: %w", err)
	}
	return t.header, t.claims, nil
}

func parse(s string) (token, error) {
	if len(s) > MaxTokenLen {
		return token{}, malformed("token", "longer than %d bytes", MaxTokenLen)
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return token{}, malformed("token", "compact JWS must have three segments, has %d", len(parts))
	}
	var t token
	headerJSON, err := decodeSegment("header", parts[0])
	if err != nil {
		return token{}, err
	}
	if t.members, err = strictjson.Object(headerJSON); err != nil {
		return token{}, malformed("header", "%v", err)
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"alg", &t.header.Alg}, {"typ", &t.header.Typ}, {"kid", &t.header.KID}} {
		v, _, err := strictjson.String(t.members, f.name)
		if err != nil {
			return token{}, malformed("header."+f.name, "must be a string")
		}
		*f.dst = v
	}
	payload, err := decodeSegment("payload", parts[1])
	if err != nil {
		return token{}, err
	}
	if err := t.claims.UnmarshalJSON(payload); err != nil {
		return token{}, err
	}
	if t.sig, err = decodeSegment("signature", parts[2]); err != nil {
		return token{}, err
	}
	t.input = s[:len(parts[0])+1+len(parts[1])]
	return t, nil
}

func decodeSegment(field, seg string) ([]byte, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(seg)
	if err != nil {
		return nil, malformed(field, "not unpadded base64url: %v", err)
	}
	return b, nil
}

// Verifier verifies SETs against a clock. The zero value uses time.Now and
// DefaultSkew.
type Verifier struct {
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Skew is how far in the future iat may lie; zero means DefaultSkew,
	// a negative value no tolerance at all.
	Skew time.Duration
}

// Verify verifies token with the zero Verifier.
func Verify(token string, pub *rsa.PublicKey) (Claims, error) {
	return Verifier{}.Verify(token, pub)
}

// Verify checks, in this order: the token's form and header (alg PS512,
// typ secevent+jwt, a kid, no crit; errors wrap ErrMalformed), the PS512
// signature with pub (ErrSignature), Claims.Validate's rules and iat at
// most Skew in the future (ErrClaims). It returns the verified claims.
func (v Verifier) Verify(token string, pub *rsa.PublicKey) (Claims, error) {
	if pub == nil {
		return Claims{}, errors.New("verify set: no key")
	}
	t, err := parse(token)
	if err != nil {
		return Claims{}, fmt.Errorf("verify set: %w", err)
	}
	if err := t.checkHeader(); err != nil {
		return Claims{}, fmt.Errorf("verify set: %w", err)
	}
	digest := sha512.Sum512([]byte(t.input))
	if err := rsa.VerifyPSS(pub, crypto.SHA512, digest[:], t.sig, &rsa.PSSOptions{SaltLength: pssSaltLen}); err != nil {
		return Claims{}, fmt.Errorf("verify set: %w",
			&RuleError{Field: "signature", Reason: "PS512 signature does not verify with the key", Err: ErrSignature})
	}
	if err := t.claims.Validate(); err != nil {
		return Claims{}, fmt.Errorf("verify set: %w", err)
	}
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	skew := v.Skew
	switch {
	case skew == 0:
		skew = DefaultSkew
	case skew < 0:
		skew = 0
	}
	if latest := now.Add(skew); t.claims.IssuedAt.After(latest) {
		return Claims{}, fmt.Errorf("verify set: %w", claimRule("iat", "%s lies more than %s in the future",
			t.claims.IssuedAt.Format(time.RFC3339), skew))
	}
	return t.claims, nil
}

func (t token) checkHeader() error {
	if t.header.Alg != Alg {
		return malformed("header.alg", "must be %q, got %q", Alg, t.header.Alg)
	}
	// RFC 8417 2.3 allows the full media type; RFC 7515 4.1.9 makes typ case-insensitive.
	if !strings.EqualFold(t.header.Typ, Typ) && !strings.EqualFold(t.header.Typ, "application/"+Typ) {
		return malformed("header.typ", "must be %q, got %q", Typ, t.header.Typ)
	}
	if t.header.KID == "" {
		return malformed("header.kid", "is missing")
	}
	if _, ok := t.members["crit"]; ok {
		return malformed("header.crit", "critical header extensions are not supported")
	}
	return nil
}
