package set_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/pkg/set"
)

const (
	submissionID  = "02bf1d9f-282d-4abf-810a-c4104baf0afe"
	caseID        = "452b5ee6-35df-441a-bd39-6141723cf914"
	destinationID = "40847c29-06aa-40e2-bf28-c29884c694c4"
	attachmentID  = "0b799252-deb9-42b0-98d3-c50d24bbafe0"
	backbone      = "https://amtsbote.example.org"
	testKID       = "sig-key-0001"
)

// now is the fixed clock of these tests.
var now = time.Date(2026, 3, 2, 10, 30, 0, 0, time.UTC)

var verifier = set.Verifier{Now: func() time.Time { return now }}

// RSA-4096 keys take seconds to generate under -race: each is made once per
// test binary, the second only for the tests that need a wrong key.
var (
	signKey  = lazyKey{}
	otherKey = lazyKey{}
)

type lazyKey struct {
	once sync.Once
	key  *rsa.PrivateKey
	err  error
}

func (k *lazyKey) get(tb testing.TB) *rsa.PrivateKey {
	tb.Helper()
	k.once.Do(func() { k.key, k.err = rsa.GenerateKey(rand.Reader, 4096) })
	if k.err != nil {
		tb.Fatalf("generate key: %v", k.err)
	}
	return k.key
}

func testKey(tb testing.TB) *rsa.PrivateKey { return signKey.get(tb) }

func testKeys(tb testing.TB) (key, other *rsa.PrivateKey) {
	return signKey.get(tb), otherKey.get(tb)
}

// tag returns a valid authentication tag made of byte b.
func tag(b byte) string {
	t := make([]byte, 16)
	for i := range t {
		t[i] = b
	}
	return base64.RawURLEncoding.EncodeToString(t)
}

func tags() set.AuthenticationTags {
	return set.AuthenticationTags{Metadata: tag(1), Data: tag(2), Attachments: map[string]string{attachmentID: tag(3)}}
}

// signRaw signs any header and payload with PS512, for tokens Sign would refuse.
func signRaw(tb testing.TB, key *rsa.PrivateKey, header, payload []byte, saltLen int) string {
	tb.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	input := enc(header) + "." + enc(payload)
	digest := sha512.Sum512([]byte(input))
	sig, err := rsa.SignPSS(rand.Reader, key, crypto.SHA512, digest[:], &rsa.PSSOptions{SaltLength: saltLen})
	if err != nil {
		tb.Fatalf("sign: %v", err)
	}
	return input + "." + enc(sig)
}

// claimsMap returns valid accept-submission claims as a map for a test to alter.
func claimsMap(tb testing.TB) map[string]any {
	tb.Helper()
	c, err := set.New(set.AcceptSubmission, destinationID, submissionID, caseID, set.AcceptPayload{AuthenticationTags: tags()}, now.Add(-time.Minute))
	if err != nil {
		tb.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(mustJSON(tb, c), &m); err != nil {
		tb.Fatal(err)
	}
	return m
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatalf("marshal: %v", err)
	}
	return b
}

func ruleField(err error) string {
	var re *set.RuleError
	if errors.As(err, &re) {
		return re.Field
	}
	return ""
}
