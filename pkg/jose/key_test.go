package jose_test

import (
	"bytes"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/amtsbote/amtsbote/pkg/jose"
)

func TestGeneratedKeysAreValid(t *testing.T) {
	enc, sig := testKeys(t)
	for _, kp := range []jose.KeyPair{enc, sig} {
		t.Run(string(kp.Purpose), func(t *testing.T) {
			raw, err := kp.PublicJSON()
			if err != nil {
				t.Fatal(err)
			}
			jwk, err := jose.ValidatePublicKey(raw, kp.Purpose)
			if err != nil {
				t.Fatalf("generated key is invalid: %v\n%s", err, raw)
			}
			pub, ok := jwk.Key.(*rsa.PublicKey)
			if !ok || !pub.Equal(&kp.Private.PublicKey) {
				t.Fatalf("validated key %T differs from the generated one", jwk.Key)
			}
			if jwk.KeyID != kp.Public.KeyID || len(jwk.Certificates) != 1 {
				t.Fatalf("kid %q, %d certificates", jwk.KeyID, len(jwk.Certificates))
			}
			if bytes.Contains(raw, []byte(`"d"`)) {
				t.Fatalf("public JSON holds private material: %s", raw)
			}
		})
	}
}

func TestValidatePublicKeyRules(t *testing.T) {
	enc, sig := testKeys(t)
	sigCert := publicMembers(t, sig)["x5c"]

	tests := []struct {
		name    string
		purpose jose.Purpose
		key     jose.KeyPair
		edit    func(m map[string]any)
		raw     func(valid []byte) []byte // replaces edit when set
		field   string                    // "" means valid
	}{
		{name: "valid encryption key", purpose: jose.Encryption, key: enc},
		{name: "valid signing key", purpose: jose.Signing, key: sig},
		{name: "use enc is accepted", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) { m["use"] = "enc" }},
		{name: "kid of 8 characters", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) { m["kid"] = "12345678" }},
		{name: "kid of 64 characters", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) { m["kid"] = strings.Repeat("k", 64) }},

		{name: "unknown purpose", purpose: "archiving", key: enc, field: "purpose"},
		{name: "not JSON", purpose: jose.Encryption, key: enc, raw: func([]byte) []byte { return []byte("kty=RSA") }, field: "jwk"},
		{name: "JSON array", purpose: jose.Encryption, key: enc, raw: func([]byte) []byte { return []byte("[]") }, field: "jwk"},
		{name: "duplicate member", purpose: jose.Encryption, key: enc, raw: func(v []byte) []byte {
			return append(v[:len(v)-1], []byte(`,"kid":"another-kid"}`)...)
		}, field: "jwk"},
		{name: "kty EC", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) { m["kty"] = "EC" }, field: "kty"},
		{name: "kty missing", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) { delete(m, "kty") }, field: "kty"},
		{name: "private exponent", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) { m["d"] = "AQAB" }, field: "d"},
		{name: "private prime", purpose: jose.Signing, key: sig, edit: func(m map[string]any) { m["p"] = "AQAB" }, field: "p"},
		{name: "2048-bit key", purpose: jose.Encryption, raw: func([]byte) []byte { return mustJSON(t, smallKeyJWK(t)) }, field: "n"},
		{name: "n missing", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) { delete(m, "n") }, field: "n"},
		{name: "n padded", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) { m["n"] = m["n"].(string) + "==" }, field: "n"},
		{name: "e 3", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) { m["e"] = "Aw" }, field: "e"},
		{name: "e with leading zero", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) { m["e"] = "AAEAAQ" }, field: "e"},
		{name: "e missing", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) { delete(m, "e") }, field: "e"},
		{name: "key_ops missing", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) { delete(m, "key_ops") }, field: "key_ops"},
		{name: "key_ops of a signing key", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) { m["key_ops"] = []string{"verify"} }, field: "key_ops"},
		{name: "key_ops with extra op", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) { m["key_ops"] = []string{"wrapKey", "encrypt"} }, field: "key_ops"},
		{name: "key_ops a string", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) { m["key_ops"] = "wrapKey" }, field: "key_ops"},
		{name: "key_ops empty", purpose: jose.Signing, key: sig, edit: func(m map[string]any) { m["key_ops"] = []string{} }, field: "key_ops"},
		{name: "signing key offered for encryption", purpose: jose.Encryption, key: sig, field: "key_ops"},
		{name: "encryption key offered for signing", purpose: jose.Signing, key: enc, field: "key_ops"},
		{name: "alg missing", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) { delete(m, "alg") }, field: "alg"},
		{name: "alg RSA-OAEP", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) { m["alg"] = "RSA-OAEP" }, field: "alg"},
		{name: "alg of the other purpose", purpose: jose.Signing, key: sig, edit: func(m map[string]any) { m["alg"] = jose.AlgRSAOAEP256 }, field: "alg"},
		{name: "alg RS512", purpose: jose.Signing, key: sig, edit: func(m map[string]any) { m["alg"] = "RS512" }, field: "alg"},
		{name: "use sig on encryption key", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) { m["use"] = "sig" }, field: "use"},
		{name: "kid missing", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) { delete(m, "kid") }, field: "kid"},
		{name: "kid of 7 characters", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) { m["kid"] = "1234567" }, field: "kid"},
		{name: "kid of 65 characters", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) { m["kid"] = strings.Repeat("k", 65) }, field: "kid"},
		{name: "kid a number", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) { m["kid"] = 12345678 }, field: "kid"},
		{name: "x5c missing", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) { delete(m, "x5c") }, field: "x5c"},
		{name: "x5c empty", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) { m["x5c"] = []string{} }, field: "x5c"},
		{name: "x5c not base64", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) { m["x5c"] = []string{"not base64!"} }, field: "x5c"},
		{name: "x5c base64url", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) {
			der, _ := base64.StdEncoding.DecodeString(m["x5c"].([]any)[0].(string))
			m["x5c"] = []string{base64.RawURLEncoding.EncodeToString(der)}
		}, field: "x5c"},
		{name: "x5c not DER", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) {
			m["x5c"] = []string{base64.StdEncoding.EncodeToString([]byte("certificate"))}
		}, field: "x5c"},
		{name: "x5c second entry broken", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) {
			m["x5c"] = append(m["x5c"].([]any), "AAAA")
		}, field: "x5c"},
		{name: "x5c of another key", purpose: jose.Encryption, key: enc, edit: func(m map[string]any) { m["x5c"] = sigCert }, field: "x5c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var raw []byte
			switch {
			case tt.raw != nil:
				valid := []byte("{}")
				if tt.key.Private != nil {
					valid, _ = tt.key.PublicJSON()
				}
				raw = tt.raw(valid)
			default:
				m := publicMembers(t, tt.key)
				if tt.edit != nil {
					tt.edit(m)
				}
				raw = mustJSON(t, m)
			}
			jwk, err := jose.ValidatePublicKey(raw, tt.purpose)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("valid key refused: %v", err)
				}
				if jwk == nil || jwk.Key == nil {
					t.Fatal("no key returned")
				}
				return
			}
			if !errors.Is(err, jose.ErrKeyRule) {
				t.Fatalf("error %v does not wrap ErrKeyRule", err)
			}
			if got := ruleField(err); got != tt.field {
				t.Fatalf("field %q, want %q (%v)", got, tt.field, err)
			}
			if jwk != nil {
				t.Fatal("key returned with an error")
			}
		})
	}
}

func TestValidatePublicKeyNamesOtherPurpose(t *testing.T) {
	_, sig := testKeys(t)
	raw, _ := sig.PublicJSON()
	_, err := jose.ValidatePublicKey(raw, jose.Encryption)
	if err == nil || !strings.Contains(err.Error(), "signing key") {
		t.Fatalf("error %v does not say the key is a signing key", err)
	}
}

func TestPrivateKeyRoundTrip(t *testing.T) {
	enc, sig := testKeys(t)
	for _, kp := range []jose.KeyPair{enc, sig} {
		t.Run(string(kp.Purpose), func(t *testing.T) {
			raw, err := kp.MarshalPrivate()
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{"d", "p", "q", "kid", "alg", "key_ops", "x5c"} {
				if _, ok := m[name]; !ok {
					t.Errorf("private JWK lacks %q", name)
				}
			}
			got, err := jose.ParsePrivate(raw)
			if err != nil {
				t.Fatalf("parse private: %v", err)
			}
			if got.Purpose != kp.Purpose || !got.Private.Equal(kp.Private) || got.Public.KeyID != kp.Public.KeyID {
				t.Fatalf("round trip changed the key pair: purpose %q kid %q", got.Purpose, got.Public.KeyID)
			}
			pubA, _ := kp.PublicJSON()
			pubB, err := got.PublicJSON()
			if err != nil || !bytes.Equal(pubA, pubB) {
				t.Fatalf("public JSON differs after round trip (%v):\n%s\n%s", err, pubA, pubB)
			}
		})
	}
}

func TestParsePrivateRules(t *testing.T) {
	enc, _ := testKeys(t)
	valid, err := enc.MarshalPrivate()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		edit  func(m map[string]any)
		field string
	}{
		{"kty", func(m map[string]any) { m["kty"] = "oct" }, "kty"},
		{"alg", func(m map[string]any) { m["alg"] = "RS256" }, "alg"},
		{"key_ops", func(m map[string]any) { m["key_ops"] = []string{"sign"} }, "key_ops"},
		{"d missing", func(m map[string]any) { delete(m, "d") }, "d"},
		{"d wrong", func(m map[string]any) { m["d"] = "AQAB" }, "d"},
		{"q missing", func(m map[string]any) { delete(m, "q") }, "q"},
		{"kid", func(m map[string]any) { m["kid"] = "short" }, "kid"},
		{"x5c", func(m map[string]any) { delete(m, "x5c") }, "x5c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal(valid, &m); err != nil {
				t.Fatal(err)
			}
			tt.edit(m)
			_, err := jose.ParsePrivate(mustJSON(t, m))
			if !errors.Is(err, jose.ErrKeyRule) || ruleField(err) != tt.field {
				t.Fatalf("error %v, want a key rule on %q", err, tt.field)
			}
		})
	}
}

func TestGenerateKeyPairRefusesBadInput(t *testing.T) {
	if _, err := jose.GenerateKeyPair(jose.Encryption, "short", "cn"); ruleField(err) != "kid" {
		t.Fatalf("short kid: %v", err)
	}
	if _, err := jose.GenerateKeyPair("archiving", "long-enough-kid", "cn"); ruleField(err) != "purpose" {
		t.Fatalf("unknown purpose: %v", err)
	}
}
