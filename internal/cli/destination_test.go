package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCmd runs one amtsbote command and returns its output and error.
func runCmd(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := Run(context.Background(), args, func(string) string { return "" }, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

func TestOperatorCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("generates RSA-4096 keys")
	}
	dir := storeDir(t)
	keyDir := filepath.Join(dir, "keys")
	if err := os.MkdirAll(keyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	readKey := func(kid string) json.RawMessage {
		raw, err := os.ReadFile(filepath.Join(keyDir, kid+".public.jwk.json"))
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	for _, kid := range []string{"enc-key-0001", "sig-key-0001", "enc-key-0002", "sig-key-0002"} {
		purpose := "encryption"
		if strings.HasPrefix(kid, "sig") {
			purpose = "signing"
		}
		if _, stderr, err := runCmd(t, "keys", "generate", "--purpose", purpose, "--kid", kid, "--out", keyDir); err != nil {
			t.Fatalf("keys generate %s: %v %s", kid, err, stderr)
		}
	}
	if _, _, err := runCmd(t, "keys", "generate", "--purpose", "signing", "--kid", "sig-key-0001", "--out", keyDir); err == nil || !strings.Contains(err.Error(), "not overwriting") {
		t.Fatalf("keys generate over an existing key = %v, want a refusal", err)
	}

	destination := func(id, n string) string {
		body, _ := json.Marshal(map[string]any{
			"destinationId": id,
			"homeRegion":    "083155003064",
			"contactInformation": map[string]string{
				"legalName": "Gemeinde Kirchzarten", "address": "Rathaus, 79199 Kirchzarten",
				"phone": "+49 7661 0", "email": "gewerbe@kirchzarten.example",
			},
			"services": []map[string]any{{
				"identifier": "urn:de:fim:leika:leistung:99050012000000",
				"regions":    []string{"DE083155003064"},
				"submissionSchemas": []map[string]string{{
					"mimeType": "application/json", "schemaUri": "https://schema.example/gewerbe.json",
				}},
			}},
			"encryptionKid":       "enc-key-000" + n,
			"encryptionPublicKey": readKey("enc-key-000" + n),
			"signingPublicKey":    readKey("sig-key-000" + n),
			"metadataVersions":    []string{"1.0.0"},
		})
		f := filepath.Join(dir, id+".json")
		if err := os.WriteFile(f, body, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	first := "2b1f5c9e-52c4-4d3e-9a7e-3f0c2a1b6d11"
	out, stderr, err := runCmd(t, "destination", "create", "--data-dir", dir, "--file", destination(first, "1"))
	if err != nil || strings.TrimSpace(out) != first {
		t.Fatalf("destination create = %q, %v %s", out, err, stderr)
	}

	// A second destination claiming the same service and region is refused
	// naming the first, and nothing is stored.
	second := "7c3d1e2f-0a4b-4c5d-8e6f-9a0b1c2d3e44"
	_, _, err = runCmd(t, "destination", "create", "--data-dir", dir, "--file", destination(second, "2"))
	if err == nil || !strings.Contains(err.Error(), first) {
		t.Fatalf("conflicting destination create = %v, want a refusal naming %s", err, first)
	}
	out, _, err = runCmd(t, "destination", "list", "--data-dir", dir)
	if err != nil || !strings.Contains(out, first) || strings.Contains(out, second) {
		t.Fatalf("destination list = %q, %v", out, err)
	}

	// A bad file gets an error naming the field, and a missing file a clear one.
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"destinationId": 5}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCmd(t, "destination", "create", "--data-dir", dir, "--file", bad); err == nil || !strings.Contains(err.Error(), "destinationId") {
		t.Fatalf("destination create with a bad file = %v, want an error naming destinationId", err)
	}
	if _, _, err := runCmd(t, "destination", "create", "--data-dir", dir, "--file", filepath.Join(dir, "absent.json")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("destination create with a missing file = %v", err)
	}

	out, stderr, err = runCmd(t, "client", "create", "--data-dir", dir, "--name", "Portal BW", "--scope", "send:region:DE08")
	if err != nil {
		t.Fatalf("client create: %v %s", err, stderr)
	}
	var c struct {
		ClientID, ClientSecret string
		Scopes                 []string
	}
	if err := json.Unmarshal([]byte(out), &c); err != nil || c.ClientID == "" || len(c.ClientSecret) < 32 {
		t.Fatalf("client create printed %q (%v)", out, err)
	}
	var usage *UsageError
	if _, _, err := runCmd(t, "client", "create", "--data-dir", dir, "--name", "x", "--scope", "send:everything"); !errors.As(err, &usage) {
		t.Fatalf("client create with a malformed scope = %v, want a usage error", err)
	}
	if _, _, err := runCmd(t, "client", "create", "--data-dir", dir, "--name", "x", "--scope", "subscribe:destination:0b5e7a52-6d0c-4f2a-9c55-1f0e3d1c2b3a"); !errors.As(err, &usage) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("client create for a destination that does not exist = %v, want a usage error", err)
	}
	if _, stderr, err := runCmd(t, "client", "create", "--data-dir", dir); err == nil || !strings.Contains(stderr, "--name") {
		t.Fatalf("client create without flags = %v %q", err, stderr)
	}
}
