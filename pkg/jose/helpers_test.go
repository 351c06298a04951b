package jose_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"sync"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/amtsbote/amtsbote/pkg/jose"
)

// RSA-4096 generation takes seconds under -race, so every test and fuzz
// target of this binary shares one encryption and one signing key.
var (
	keysOnce       sync.Once
	encKey, sigKey jose.KeyPair
	keysErr        error
)

func testKeys(t testing.TB) (enc, sig jose.KeyPair) {
	t.Helper()
	keysOnce.Do(func() {
		encKey, keysErr = jose.GenerateKeyPair(jose.Encryption, "enc-key-0001", "Amtsbote test encryption")
		if keysErr == nil {
			sigKey, keysErr = jose.GenerateKeyPair(jose.Signing, "sig-key-0001", "Amtsbote test signing")
		}
	})
	if keysErr != nil {
		t.Fatalf("generate test keys: %v", keysErr)
	}
	return encKey, sigKey
}

// publicMembers returns the members of kp's public JWK for a test to alter.
func publicMembers(t testing.TB, kp jose.KeyPair) map[string]any {
	t.Helper()
	raw, err := kp.PublicJSON()
	if err != nil {
		t.Fatalf("public json: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("decode public json: %v", err)
	}
	return m
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}

// smallKeyJWK returns a well-formed encryption JWK whose RSA key has only 2048 bits.
func smallKeyJWK(t testing.TB) map[string]any {
	t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("generate 2048-bit key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "small"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	kp := jose.KeyPair{Purpose: jose.Encryption, Private: priv, Public: gojose.JSONWebKey{
		Key: &priv.PublicKey, KeyID: "small-key-01", Algorithm: jose.AlgRSAOAEP256, Certificates: []*x509.Certificate{cert},
	}}
	return publicMembers(t, kp)
}

// compact joins a protected header and four raw parts into a compact JWE.
func compact(header string, key, iv, ct, tag []byte) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc(key) + "." + enc(iv) + "." + enc(ct) + "." + enc(tag)
}

// ruleField returns the Field of err's *RuleError, or "" if there is none.
func ruleField(err error) string {
	var re *jose.RuleError
	if errors.As(err, &re) {
		return re.Field
	}
	return ""
}

// b64 is unpadded base64url.
func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
