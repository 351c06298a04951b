package set_test

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"testing"

	"github.com/amtsbote/amtsbote/pkg/set"
)

// FuzzParse checks that Parse never panics, reports only malformed-token
// errors, that Validate judges whatever Parse accepts without panicking,
// and that accepted claims survive a JSON round trip.
func FuzzParse(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, token string) {
		_, c, err := set.Parse(token)
		if err != nil {
			if !errors.Is(err, set.ErrMalformed) || ruleField(err) == "" {
				t.Fatalf("error without a malformed-token rule: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil && (!errors.Is(err, set.ErrClaims) || ruleField(err) == "") {
			t.Fatalf("Validate error without a claim rule: %v", err)
		}
		c.Event()
		c.SubmissionID()
		c.CaseID()
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("marshal parsed claims: %v", err)
		}
		var again set.Claims
		if err := json.Unmarshal(b, &again); err != nil {
			t.Fatalf("decode own output %s: %v", b, err)
		}
		if b2, _ := json.Marshal(again); !bytes.Equal(b, b2) {
			t.Fatalf("round trip changed claims:\n%s\n%s", b, b2)
		}
	})
}

// FuzzVerify checks that Verify never panics, wraps one of its sentinels on
// every error, and returns only claims that keep the rules. The seeds in
// testdata are signed with the key in testdata/fuzz-verify-key.pem.
func FuzzVerify(f *testing.F) {
	pub := fuzzKey(f)
	addSeeds(f)
	f.Fuzz(func(t *testing.T, token string) {
		c, err := verifier.Verify(token, pub)
		if err != nil {
			if !errors.Is(err, set.ErrMalformed) && !errors.Is(err, set.ErrSignature) && !errors.Is(err, set.ErrClaims) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("verified claims break a rule: %v", err)
		}
		if _, parsed, err := set.Parse(token); err != nil || parsed.JTI != c.JTI {
			t.Fatalf("Parse disagrees with Verify: %v", err)
		}
	})
}

func addSeeds(f *testing.F) {
	for _, s := range []string{
		"",
		"a.b.c",
		"eyJhbGciOiJQUzUxMiJ9.e30.",
		"eyJhbGciOiJQUzUxMiIsInR5cCI6InNlY2V2ZW50K2p3dCIsImtpZCI6ImsifQ.eyJpYXQiOjF9.AAAA",
		"eyJhbGciOiJub25lIn0.eyJldmVudHMiOnt9fQ.",
	} {
		f.Add(s)
	}
}

func fuzzKey(tb testing.TB) *rsa.PublicKey {
	tb.Helper()
	raw, err := os.ReadFile("testdata/fuzz-verify-key.pem")
	if err != nil {
		tb.Fatal(err)
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		tb.Fatal("testdata/fuzz-verify-key.pem holds no PEM block")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		tb.Fatal(err)
	}
	pub, ok := k.(*rsa.PublicKey)
	if !ok {
		tb.Fatalf("fuzz key is a %T", k)
	}
	return pub
}
