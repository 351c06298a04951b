package config_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/services/subscriber/config"
	"github.com/amtsbote/amtsbote/services/subscriber/sink"
)

// The keys under testdata/keys were made by jose.GenerateKeyPair for these
// tests only.
const (
	destA = "2f0b0e1c-8d0a-4b9e-9c77-5f1b3d1e2a01"
	destB = "7c1e5a3b-9f2d-4e8a-b6c4-0d3f2a1b5e9c"
)

// setup copies the test keys and secrets into a fresh folder, as the
// configuration's neighbours, and returns the folder.
func setup(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"enc.private.jwk.json", "enc2.private.jwk.json", "sig.private.jwk.json"} {
		raw, err := os.ReadFile(filepath.Join("testdata", "keys", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "keys", name), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"sub.creds":       "-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QifQ.e30.sig\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\nSUAXXX\n------END USER NKEY SEED------\n",
		"client.secret":   "client-secret-from-file\n",
		"callback.secret": strings.Repeat("c", 40) + "\r\n",
		"two-lines":       "first\nsecond\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const natsYAML = `mode: nats
nats:
  url: nats://127.0.0.1:4223, tls://nats-2.example:4222
  credentials: ./sub.creds
  durable: subscriber-08315
destinations:
  - id: ` + destA + `
    encryptionKeys: [./keys/enc.private.jwk.json, keys/enc2.private.jwk.json]
    signingKey: ./keys/sig.private.jwk.json
  - id: ` + "7C1E5A3B-9F2D-4E8A-B6C4-0D3F2A1B5E9C" + `
    encryptionKeys:
      - keys/enc.private.jwk.json
    signingKey: keys/sig.private.jwk.json
sink:
  kind: directory
  directory: ./data/sink
http:
  baseUrl: http://localhost:8080
  clientId: bauamt-08315
  clientSecretFile: client.secret
`

func parse(t *testing.T, dir, yaml string) (*config.Config, error) {
	t.Helper()
	return config.Parse(filepath.Join(dir, "subscriber.yaml"), []byte(yaml))
}

func TestParseNATS(t *testing.T) {
	dir := setup(t)
	c, err := parse(t, dir, natsYAML)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if c.Mode != config.ModeNATS || c.Concurrency != config.DefaultConcurrency {
		t.Fatalf("mode %q, concurrency %d", c.Mode, c.Concurrency)
	}
	n := c.NATS
	if n.URL != "nats://127.0.0.1:4223,tls://nats-2.example:4222" || n.Credentials != filepath.Join(dir, "sub.creds") || n.Durable != "subscriber-08315" {
		t.Fatalf("nats %+v", n)
	}
	wantFilters := []string{"ab.inbox.*.*.*." + destA, "ab.inbox.*.*.*." + destB}
	if !slices.Equal(n.Filters, wantFilters) {
		t.Fatalf("derived filters %q, want %q", n.Filters, wantFilters)
	}
	if len(c.Destinations) != 2 {
		t.Fatalf("%d destinations", len(c.Destinations))
	}
	a, b := c.Destinations[0], c.Destinations[1]
	if a.ID != destA || b.ID != destB {
		t.Fatalf("ids %s, %s", a.ID, b.ID)
	}
	if len(a.EncryptionKeys) != 2 || a.EncryptionKeys[0].Public.KeyID != "bauamt-test-enc-1" || a.EncryptionKeys[1].Public.KeyID != "bauamt-test-enc-2" {
		t.Fatalf("encryption keys of %s: %d", a.ID, len(a.EncryptionKeys))
	}
	for _, k := range a.EncryptionKeys {
		if k.Purpose != jose.Encryption || k.Private == nil {
			t.Fatalf("encryption key %s: purpose %s", k.Public.KeyID, k.Purpose)
		}
	}
	if a.SigningKey.Purpose != jose.Signing || a.SigningKey.Private == nil || a.SigningKeyFile != filepath.Join(dir, "keys", "sig.private.jwk.json") {
		t.Fatalf("signing key %s from %s", a.SigningKey.Purpose, a.SigningKeyFile)
	}
	if a.EncryptionKeyFiles[1] != filepath.Join(dir, "keys", "enc2.private.jwk.json") {
		t.Fatalf("key file %s", a.EncryptionKeyFiles[1])
	}
	if c.Sink.Kind != config.SinkDirectory || c.Sink.Directory != filepath.Join(dir, "data", "sink") {
		t.Fatalf("sink %+v", c.Sink)
	}
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o750); err != nil {
		t.Fatal(err)
	}
	s, err := c.Sink.Open(context.Background())
	if err != nil {
		t.Fatalf("open sink: %v", err)
	}
	defer s.Close()
	if s.Kind() != "directory" {
		t.Fatalf("sink kind %s", s.Kind())
	}
}

func TestParseNATSAuthAndFilters(t *testing.T) {
	dir := setup(t)
	c, err := parse(t, dir, strings.Replace(natsYAML, "  credentials: ./sub.creds\n",
		"  user: bauamt\n  passwordFile: client.secret\n  filters: [\"ab.inbox.08.08315.>\", ab.inbox.08.08316.*.*]\n", 1)+"concurrency: 16\n")
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if c.NATS.User != "bauamt" || c.NATS.Password.Reveal() != "client-secret-from-file" || c.Concurrency != 16 {
		t.Fatalf("nats %+v, concurrency %d", c.NATS, c.Concurrency)
	}
	if want := []string{"ab.inbox.08.08315.>", "ab.inbox.08.08316.*.*"}; !slices.Equal(c.NATS.Filters, want) {
		t.Fatalf("filters %q, want %q", c.NATS.Filters, want)
	}
}

const httpYAML = `mode: http
http:
  baseUrl: http://localhost:8080/
  clientId: bauamt-08315
  clientSecretFile: client.secret
  pollInterval: 10s
  callbackListen: 127.0.0.1:9090
  callbackSecretFile: callback.secret
destinations:
  - id: ` + destA + `
    encryptionKeys: [keys/enc.private.jwk.json]
    signingKey: keys/sig.private.jwk.json
sink:
  kind: http
  http:
    url: https://fachverfahren.example/intake?source=amtsbote
    timeout: 30s
    maxAttempts: 5
    maxElapsed: 2m
    headers:
      Authorization: Bearer fv-geheim-123
      X-Behoerde: "08315"
`

func TestParseMetadataSchema(t *testing.T) {
	dir := setup(t)
	if err := os.WriteFile(filepath.Join(dir, "metadata.schema.json"), []byte(`{"type":"object"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for schema, want := range map[string]string{
		"metadata.schema.json": filepath.Join(dir, "metadata.schema.json"),
		"https://schema.fitko.de/fit-connect/metadata/1.0.0/metadata.schema.json": "https://schema.fitko.de/fit-connect/metadata/1.0.0/metadata.schema.json",
	} {
		c, err := parse(t, dir, natsYAML+"metadataSchema: "+schema+"\n")
		if err != nil || c.MetadataSchema != want {
			t.Errorf("metadataSchema %s: %q, %v; want %q", schema, c.MetadataSchema, err, want)
		}
	}
	c, err := parse(t, dir, natsYAML)
	if err != nil || c.MetadataSchema != "" {
		t.Errorf("without metadataSchema: %q, %v", c.MetadataSchema, err)
	}
}

func TestParseHTTP(t *testing.T) {
	dir := setup(t)
	c, err := parse(t, dir, httpYAML)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	h := c.HTTP
	want := config.HTTP{
		BaseURL: "http://localhost:8080", TokenURL: "http://localhost:8080/token", ClientID: "bauamt-08315",
		ClientSecret: "client-secret-from-file", PollInterval: 10 * time.Second,
		CallbackListen: "127.0.0.1:9090", CallbackSecret: config.Secret(strings.Repeat("c", 40)),
	}
	if h != want {
		t.Fatalf("http %#v, want %#v", h, want)
	}
	s := c.Sink.HTTP
	if c.Sink.Kind != config.SinkHTTP || s.URL != "https://fachverfahren.example/intake?source=amtsbote" || s.Timeout != 30*time.Second ||
		s.MaxAttempts != 5 || s.MaxElapsed != 2*time.Minute || s.Header.Get("Authorization") != "Bearer fv-geheim-123" || s.Header.Get("X-Behoerde") != "08315" {
		t.Fatalf("sink %+v", s)
	}
}

func TestParsePostgresSink(t *testing.T) {
	dir := setup(t)
	yaml := strings.Replace(natsYAML, "  kind: directory\n  directory: ./data/sink\n",
		"  kind: postgres\n  postgres:\n    url: postgres://sub:pw@db:5432/fv\n    schema: eingang\n    table: antraege\n    maxAttachment: 1048576\n", 1) + "concurrency: 12\n"
	c, err := parse(t, dir, yaml)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	// Each delivery holds a connection: the pool is as large as the concurrency.
	want := sink.PostgresConfig{URL: "postgres://sub:pw@db:5432/fv", Schema: "eingang", Table: "antraege", MaxAttachment: 1 << 20, Conns: 12}
	if c.Sink.Kind != config.SinkPostgres || c.Sink.Postgres != want {
		t.Fatalf("sink %+v", c.Sink)
	}
}

// forwardService is a service the test destinations hand on.
const forwardService = "urn:de:fim:leika:leistung:99108011000000"

// TestParseForward reads the forward rules and picks a submission's
// target: a rule for its destination before a general one, never the
// destination itself.
func TestParseForward(t *testing.T) {
	dir := setup(t)
	const kreis = "5d2c7b1a-3e4f-4a5b-9c6d-7e8f9a0b1c2d"
	c, err := parse(t, dir, natsYAML+`forward:
  clientId: weiterleitung
  clientSecretFile: client.secret
  rules:
    - service: `+forwardService+`
      to: `+kreis+`
    - service: `+forwardService+`
      from: `+destB+`
      to: `+strings.ToUpper(destA)+`
`)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	f := c.Forward
	if f == nil || f.ClientID != "weiterleitung" || f.ClientSecret.Reveal() != "client-secret-from-file" || len(f.Rules) != 2 {
		t.Fatalf("forward %+v", f)
	}
	for _, tc := range []struct {
		from, service, want string
	}{
		{destA, forwardService, kreis},
		{strings.ToUpper(destB), forwardService, destA},
		{kreis, forwardService, ""},
		{destA, "urn:de:fim:leika:leistung:99050012000000", ""},
	} {
		got, ok := f.Target(tc.from, tc.service)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("Target(%s, %s) = %q, %v; want %q", tc.from, tc.service, got, ok, tc.want)
		}
	}
	if out := c.String(); strings.Contains(out, "client-secret-from-file") || !strings.Contains(out, "from: "+destB) {
		t.Errorf("String:\n%s", out)
	}
	var none *config.Forward
	if _, ok := none.Target(destA, forwardService); ok {
		t.Error("a configuration without forward rules forwards")
	}
}

// TestParseErrors holds each mistake to an error naming its line and field.
func TestParseErrors(t *testing.T) {
	dir := setup(t)
	cases := []struct {
		name string
		yaml string
		want []string // "line: field: message part", one per error
	}{
		{"unknown key", natsYAML + "colour: blue\n", []string{"21: colour: unknown key"}},
		{"unknown nested key", strings.Replace(natsYAML, "  durable:", "  durabel: x\n  durable:", 1), []string{"5: nats.durabel: unknown key; allowed: url,"}},
		{"duplicate key", strings.Replace(natsYAML, "mode: nats\n", "mode: nats\nmode: http\n", 1), []string{"2: mode: appears twice"}},
		{"no mode", strings.Replace(natsYAML, "mode: nats\n", "", 1), []string{"1: mode: required"}},
		{"bad mode", strings.Replace(natsYAML, "mode: nats", "mode: kafka", 1), []string{`1: mode: "kafka" is none of nats, http`}},
		{"polling with mode nats", natsYAML + "  pollInterval: 5s\n  callbackListen: 127.0.0.1:0\n", []string{"21: http.pollInterval: not used with mode nats", "22: http.callbackListen: not used with mode nats"}},
		{"no api with mode nats", strings.Replace(natsYAML, "http:\n  baseUrl: http://localhost:8080\n  clientId: bauamt-08315\n  clientSecretFile: client.secret\n", "", 1), []string{"1: http: required"}},
		{"no nats section", strings.Replace(natsYAML, "nats:\n  url: nats://127.0.0.1:4223, tls://nats-2.example:4222\n  credentials: ./sub.creds\n  durable: subscriber-08315\n", "", 1), []string{"1: nats: required"}},
		{"bad nats url", strings.Replace(natsYAML, "nats://127.0.0.1:4223, tls", "http://127.0.0.1:4223, tls", 1), []string{`3: nats.url: "http://127.0.0.1:4223" must be a nats`}},
		{"missing creds", strings.Replace(natsYAML, "./sub.creds", "./missing.creds", 1), []string{"4: nats.credentials: file ./missing.creds: no such file"}},
		{"creds not creds", strings.Replace(natsYAML, "./sub.creds", "client.secret", 1), []string{"4: nats.credentials: file client.secret is no NATS .creds file"}},
		{"two auth methods", strings.Replace(natsYAML, "  durable:", "  token: abc\n  durable:", 1), []string{"2: nats: give one of credentials"}},
		{"password without user", strings.Replace(natsYAML, "  durable:", "  password: abc\n  durable:", 1), []string{"2: nats.user: required with a password"}},
		{"bad durable", strings.Replace(natsYAML, "subscriber-08315", "sub.08315", 1), []string{`5: nats.durable: "sub.08315" must be`}},
		{"bad filter", strings.Replace(natsYAML, "  durable:", "  filters: [ab.inbox.08.>.x, ab.ingress.>]\n  durable:", 1), []string{
			`5: nats.filters[0]: "ab.inbox.08.>.x" has '>' before its last token`, `5: nats.filters[1]: "ab.ingress.>" is no ab.inbox subject`}},
		{"empty filters", strings.Replace(natsYAML, "  durable:", "  filters: []\n  durable:", 1), []string{"5: nats.filters: is empty"}},
		{"bad uuid", strings.Replace(natsYAML, destA, "2f0b0e1c", 1), []string{`7: destinations[0].id: "2f0b0e1c" is not a UUID`}},
		{"duplicate destination", strings.Replace(natsYAML, "7C1E5A3B-9F2D-4E8A-B6C4-0D3F2A1B5E9C", strings.ToUpper(destA), 1), []string{"10: destinations[1].id: " + destA + " appears twice"}},
		{"missing key file", strings.Replace(natsYAML, "keys/enc2.private.jwk.json", "keys/x.json", 1), []string{"8: destinations[0].encryptionKeys[1]: file keys/x.json: no such file"}},
		{"signing key as encryption key", strings.Replace(natsYAML, "keys/enc2.private.jwk.json", "keys/sig.private.jwk.json", 1), []string{"8: destinations[0].encryptionKeys[1]: file keys/sig.private.jwk.json holds a signing (PS512) key, want an encryption (RSA-OAEP-256) key"}},
		{"encryption key as signing key", strings.Replace(natsYAML, "signingKey: keys/sig", "signingKey: keys/enc", 1), []string{"13: destinations[1].signingKey: file keys/enc.private.jwk.json holds an encryption (RSA-OAEP-256) key, want a signing (PS512) key"}},
		{"key file no jwk", strings.Replace(natsYAML, "keys/enc2.private.jwk.json", "client.secret", 1), []string{"8: destinations[0].encryptionKeys[1]: file client.secret: parse private key"}},
		{"key file a folder", strings.Replace(natsYAML, "keys/enc2.private.jwk.json", "keys", 1), []string{"not a regular file"}},
		{"same kid twice", strings.Replace(natsYAML, "keys/enc2.private.jwk.json", "keys/enc.private.jwk.json", 1), []string{`8: destinations[0].encryptionKeys[1]: kid "bauamt-test-enc-1" appears twice`}},
		{"no encryption keys", strings.Replace(natsYAML, "    encryptionKeys:\n      - keys/enc.private.jwk.json\n", "    encryptionKeys: []\n", 1), []string{"11: destinations[1].encryptionKeys: is empty"}},
		{"no signing key", strings.Replace(natsYAML, "    signingKey: ./keys/sig.private.jwk.json\n", "", 1), []string{"7: destinations[0].signingKey: required"}},
		{"no destinations", strings.Replace(natsYAML, natsYAML[strings.Index(natsYAML, "destinations:"):strings.Index(natsYAML, "sink:")], "", 1), []string{"1: destinations: required"}},
		{"destination a string", strings.Replace(natsYAML, "destinations:\n", "destinations:\n  - "+destA+"\n", 1), []string{"7: destinations[0]: must be a mapping, is a scalar"}},
		{"concurrency zero", natsYAML + "concurrency: 0\n", []string{"21: concurrency: 0 is outside 1 to 1024"}},
		{"concurrency word", natsYAML + "concurrency: four\n", []string{"21: concurrency: must be a whole number"}},
		{"metadata schema file missing", natsYAML + "metadataSchema: none.json\n", []string{"21: metadataSchema: file none.json: no such file"}},
		{"metadata schema bad url", natsYAML + "metadataSchema: ftp://schema.example/m.json\n", []string{`21: metadataSchema: "ftp://schema.example/m.json" must be an http or https URL`}},
		{"no sink kind", strings.Replace(natsYAML, "  kind: directory\n", "", 1), []string{"14: sink.kind: required"}},
		{"bad sink kind", strings.Replace(natsYAML, "kind: directory", "kind: s3", 1), []string{`15: sink.kind: "s3" is none of directory, http, postgres`}},
		{"section of another sink", strings.Replace(natsYAML, "  directory: ./data/sink\n", "  directory: ./data/sink\n  http:\n    url: http://x\n", 1), []string{"17: sink.http: not used with sink kind directory"}},
		{"sink http without url", strings.Replace(natsYAML, "  kind: directory\n  directory: ./data/sink\n", "  kind: http\n  http:\n    timeout: 5s\n", 1), []string{"16: sink.http.url: required"}},
		{"sink http bad values", strings.Replace(natsYAML, "  kind: directory\n  directory: ./data/sink\n", "  kind: http\n  http:\n    url: https://u:p@fv.example\n    timeout: soon\n    maxAttempts: 1000\n    headers: {Idempotency-Key: x, \"Bad Name\": y}\n", 1), []string{
			"17: sink.http.url: must not carry credentials", `18: sink.http.timeout: "soon" is no duration`, "19: sink.http.maxAttempts: 1000 is outside 1 to 100",
			"20: sink.http.headers.Idempotency-Key: header Idempotency-Key: set by the sink", `20: sink.http.headers."Bad Name": header name "Bad Name": not a token`}},
		{"sink postgres bad names", strings.Replace(natsYAML, "  kind: directory\n  directory: ./data/sink\n", "  kind: postgres\n  postgres:\n    url: postgres://db/fv\n    table: Antraege\n    schema: a;b\n", 1), []string{
			`18: sink.postgres.table: table "Antraege": must match`, `19: sink.postgres.schema: schema "a;b": must match`}},
		{"sink postgres url twice", strings.Replace(natsYAML, "  kind: directory\n  directory: ./data/sink\n", "  kind: postgres\n  postgres:\n    url: postgres://db/fv\n    urlFile: client.secret\n", 1), []string{
			"18: sink.postgres.urlFile: give url or urlFile, not both"}},
		{"http mode mistakes", strings.Replace(httpYAML, "  pollInterval: 10s\n", "  clientSecret: inline\n  pollInterval: 10ms\n", 1), []string{
			"5: http.clientSecretFile: give clientSecret or clientSecretFile, not both", "7: http.pollInterval: 10ms is shorter than 1s"}},
		{"http bad urls", strings.Replace(strings.Replace(httpYAML, "http://localhost:8080/", "localhost:8080", 1), "  clientId:", "  tokenUrl: https://auth.example/token#x\n  clientId:", 1), []string{
			`3: http.baseUrl: "localhost:8080" must be an http or https URL`, `4: http.tokenUrl: "https://auth.example/token#x" must not have a query or fragment`}},
		{"http no secret", strings.Replace(httpYAML, "  clientSecretFile: client.secret\n", "", 1), []string{"2: http.clientSecret: required (or clientSecretFile)"}},
		{"secret file two lines", strings.Replace(httpYAML, "clientSecretFile: client.secret", "clientSecretFile: two-lines", 1), []string{"5: http.clientSecretFile: file two-lines must hold the secret on one line"}},
		{"short callback secret", strings.Replace(httpYAML, "callbackSecretFile: callback.secret", "callbackSecret: short", 1), []string{"8: http.callbackSecret: callback secret must have 32 to 512 characters, has 5"}},
		{"callback secret without listen", strings.Replace(httpYAML, "  callbackListen: 127.0.0.1:9090\n", "", 1), []string{"7: http.callbackSecretFile: without callbackListen"}},
		{"bad listen", strings.Replace(httpYAML, "127.0.0.1:9090", "127.0.0.1:99999", 1), []string{`7: http.callbackListen: "127.0.0.1:99999": port must be 0 to 65535`}},
		{"alias", strings.Replace(natsYAML, "  durable: subscriber-08315\n", "  durable: &d subscriber-08315\n  filters: [*d]\n", 1), []string{"6: nats.filters[0]: YAML aliases are not supported"}},
		{"merge key", "base: &b {kind: directory}\n" + natsYAML, []string{"1: base: unknown key"}},
		{"custom tag", strings.Replace(natsYAML, "durable: subscriber-08315", "durable: !env DURABLE", 1), []string{`5: nats.durable: custom YAML tag "!env" is not supported`}},
		{"list value for string", strings.Replace(natsYAML, "durable: subscriber-08315", "durable: [a, b]", 1), []string{"5: nats.durable: must be a string, is a list"}},
		{"control character", strings.Replace(natsYAML, "durable: subscriber-08315", `durable: "sub\u0007"`, 1), []string{"5: nats.durable: has a control character at byte 3"}},
		{"syntax", "mode: nats\nnats:\n  url: [\n", []string{"3: did not find expected node content"}},
		{"tab indentation", "mode: nats\nnats:\n\turl: x\n", []string{"3: found character that cannot start any token"}},
		{"top-level list", "- mode: nats\n", []string{"1: must be a mapping, is a list"}},
		{"two documents", natsYAML + "---\nmode: http\n", []string{"21: a second YAML document"}},
		{"forward without rules", natsYAML + "forward:\n  clientId: weiterleitung\n  clientSecret: s\n", []string{"21: forward.rules: required"}},
		{"forward without client", natsYAML + "forward:\n  rules: []\n", []string{"21: forward.clientId: required", "21: forward.clientSecret: required", "22: forward.rules: is empty"}},
		{"forward rule mistakes", natsYAML + "forward:\n  clientId: w\n  clientSecret: s\n  rules:\n" +
			"    - {service: leika-99108011000000, to: " + destB + "}\n" +
			"    - {service: " + forwardService + ", from: 9a0b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d, to: " + destB + "}\n" +
			"    - {service: " + forwardService + ", from: " + destA + ", to: " + strings.ToUpper(destA) + "}\n" +
			"    - {service: " + forwardService + ", to: 42}\n" +
			"    - {service: " + forwardService + ", too: " + destB + "}\n", []string{
			`25: forward.rules[0].service: service identifier "leika-99108011000000" is not a URN`,
			"26: forward.rules[1].from: 9a0b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d is none of the destinations served here",
			"27: forward.rules[2].to: forwards " + destA + " to itself",
			`28: forward.rules[3].to: "42" is not a UUID`,
			"29: forward.rules[4].too: unknown key", "29: forward.rules[4].to: required"}},
		{"forward cycle", natsYAML + "forward:\n  clientId: w\n  clientSecret: s\n  rules:\n" +
			"    - {service: " + forwardService + ", from: " + destA + ", to: " + destB + "}\n" +
			"    - {service: " + forwardService + ", from: " + destB + ", to: " + destA + "}\n", []string{
			"25: forward.rules: the rules forward service " + forwardService + " in a cycle among the destinations served here: " + destA + " → " + destB + " → " + destA}},
		{"forward chain into a cycle", natsYAML + "forward:\n  clientId: w\n  clientSecret: s\n  rules:\n" +
			"    - {service: " + forwardService + ", to: " + destB + "}\n" +
			"    - {service: " + forwardService + ", from: " + destB + ", to: " + destA + "}\n", []string{
			"the rules forward service " + forwardService + " in a cycle among the destinations served here: " + destA + " → " + destB + " → " + destA}},
		{"forward malformed LeiKa URN", natsYAML + "forward:\n  clientId: w\n  clientSecret: s\n  rules:\n" +
			"    - {service: urn:de:fim:leika:leistung:9910801100000, to: 9a0b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d}\n", []string{
			`25: forward.rules[0].service: service identifier "urn:de:fim:leika:leistung:9910801100000": `}},
		{"forward rule twice", natsYAML + "forward:\n  clientId: w\n  clientSecret: s\n  rules:\n" +
			"    - {service: " + forwardService + ", to: " + destB + "}\n" +
			"    - {service: " + forwardService + ", to: " + destA + "}\n", []string{
			"26: forward.rules[1]: forwards the same service from the same destinations as rule 0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, dir, tc.yaml)
			var errs config.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("parse: %v, want config.Errors", err)
			}
			prefix := filepath.Join(dir, "subscriber.yaml") + ":"
			var got []string
			for _, e := range errs {
				if !strings.HasPrefix(e.Error(), prefix) {
					t.Errorf("error %q does not name the file", e)
				}
				got = append(got, strings.TrimPrefix(e.Error(), prefix))
			}
			if len(got) != len(tc.want) {
				t.Fatalf("errors:\n%s\nwant %d:\n%s", strings.Join(got, "\n"), len(tc.want), strings.Join(tc.want, "\n"))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("error %d: %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func TestParseWholeFileErrors(t *testing.T) {
	dir := setup(t)
	for _, tc := range []struct{ name, yaml, want string }{
		{"empty", "", "subscriber.yaml: empty configuration"},
		{"comment only", "# nothing\n", "subscriber.yaml: empty configuration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, dir, tc.yaml)
			if err == nil || !strings.HasSuffix(err.Error(), tc.want) {
				t.Fatalf("parse: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := setup(t)
	path := filepath.Join(dir, "subscriber.yaml")
	if err := os.WriteFile(path, []byte(natsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	// Paths resolve against the file's folder, not the working directory.
	c, err := config.Load(path)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if c.File != path || c.Sink.Directory != filepath.Join(dir, "data", "sink") {
		t.Fatalf("file %s, directory %s", c.File, c.Sink.Directory)
	}
	for _, p := range []string{filepath.Join(dir, "missing.yaml"), dir} {
		_, err := config.Load(p)
		var errs config.Errors
		if !errors.As(err, &errs) || len(errs) != 1 || errs[0].File != p || !strings.HasPrefix(err.Error(), p+": ") || strings.Count(err.Error(), p) != 1 {
			t.Errorf("load %s: %v, want one error naming the file once", p, err)
		}
	}
}

// TestString shows the configuration printed with every secret masked.
func TestString(t *testing.T) {
	dir := setup(t)
	secrets := []string{"client-secret-from-file", strings.Repeat("c", 40), "Bearer fv-geheim-123", `"08315"`}
	c, err := parse(t, dir, httpYAML)
	if err != nil {
		t.Fatal(err)
	}
	pg, err := parse(t, dir, strings.Replace(natsYAML, "  kind: directory\n  directory: ./data/sink\n",
		"  kind: postgres\n  postgres:\n    url: postgres://sub:pg-geheim@db:5432/fv?sslmode=require\n", 1))
	if err != nil {
		t.Fatal(err)
	}
	kvc, err := parse(t, dir, strings.Replace(strings.Replace(natsYAML, "  credentials: ./sub.creds\n", "  token: nats-token-geheim\n", 1),
		"  kind: directory\n  directory: ./data/sink\n", "  kind: postgres\n  postgres:\n    url: host=db user=sub password='pg geheim' dbname=fv\n", 1))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		c       *config.Config
		secrets []string
		shows   []string
	}{
		{c, secrets, []string{"clientSecret: *****", "callbackSecret: *****", "Authorization: *****", "kid bauamt-test-enc-1", "url: https://fachverfahren.example/intake"}},
		{pg, []string{"pg-geheim"}, []string{"postgres://sub:*****@db:5432/fv?sslmode=require", "credentials: " + filepath.Join(dir, "sub.creds")}},
		{kvc, []string{"pg geheim", "nats-token-geheim"}, []string{"password=*****", "token: *****"}},
	} {
		out := tc.c.String()
		for _, s := range tc.secrets {
			if strings.Contains(out, s) {
				t.Errorf("String shows the secret %q:\n%s", s, out)
			}
		}
		for _, s := range tc.shows {
			if !strings.Contains(out, s) {
				t.Errorf("String does not show %q:\n%s", s, out)
			}
		}
	}
	s := config.Secret("geheim")
	for _, format := range []string{"%v", "%s", "%q", "%#v", "%+v", "%x", "%d"} {
		if out := fmt.Sprintf(format, s); strings.Contains(out, "geheim") || !strings.Contains(out, "*****") {
			t.Errorf("Sprintf(%q) = %q", format, out)
		}
	}
	if out := fmt.Sprintf("%+v", c.HTTP); strings.Contains(out, "client-secret-from-file") {
		t.Errorf("%%+v of the HTTP section shows its secret: %s", out)
	}
	if s.Reveal() != "geheim" {
		t.Error("Reveal does not return the secret")
	}
}

// A sink folder that cannot be made is named with the field, not as a
// failed delivery.
func TestOpenDirectorySinkError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := config.Sink{Kind: config.SinkDirectory, Directory: filepath.Join(file, "sink")}.Open(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "sink.directory: ") || strings.Contains(err.Error(), "transient") {
		t.Errorf("open: %v, want an error naming sink.directory", err)
	}
}

// A sink folder whose parent is missing (a path mistyped, a share not
// mounted) is not made with its parents: the error says the parent must
// exist.
func TestOpenDirectorySinkParentMissing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mnt", "fachverfahren", "eingang")
	_, err := config.Sink{Kind: config.SinkDirectory, Directory: dir}.Open(context.Background())
	if err == nil || !strings.Contains(err.Error(), "its parent must exist") {
		t.Errorf("open: %v, want an error saying the parent must exist", err)
	}
	if _, err := os.Stat(filepath.Dir(dir)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the parent was made: %v", err)
	}
}
