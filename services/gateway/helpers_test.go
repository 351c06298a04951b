package gateway_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/issuer"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/registry"
	"github.com/amtsbote/amtsbote/pkg/scope"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/pkg/tracing"
	"github.com/amtsbote/amtsbote/services/gateway"
)

// Key pairs are RSA-4096 and slow to make, so each is made once per test
// binary, on first use.
var (
	signerKey = sync.OnceValues(func() (jose.KeyPair, error) {
		return jose.GenerateKeyPair(jose.Signing, "amtsbote-signer-1", "Amtsbote test")
	})
	otherSignerKey = sync.OnceValues(func() (jose.KeyPair, error) {
		return jose.GenerateKeyPair(jose.Signing, "amtsbote-signer-1", "Impostor")
	})
	encKey1 = sync.OnceValues(func() (jose.KeyPair, error) {
		return jose.GenerateKeyPair(jose.Encryption, "enc-key-0001", "Test Destination")
	})
	encKey2 = sync.OnceValues(func() (jose.KeyPair, error) {
		return jose.GenerateKeyPair(jose.Encryption, "enc-key-0002", "Test Destination")
	})
	sigKey1 = sync.OnceValues(func() (jose.KeyPair, error) {
		return jose.GenerateKeyPair(jose.Signing, "sig-key-0001", "Test Destination")
	})
)

func keyPair(t testing.TB, f func() (jose.KeyPair, error)) jose.KeyPair {
	t.Helper()
	kp, err := f()
	if err != nil {
		t.Fatalf("generate key pair: %v", err)
	}
	return kp
}

// publicJWK returns kp's public JWK as a map, with kid replaced when kid is
// not empty, so one key pair serves as several keys.
func publicJWK(t testing.TB, kp jose.KeyPair, kid string) map[string]any {
	t.Helper()
	if kid != "" {
		kp.Public.KeyID = kid
	}
	raw, err := kp.PublicJSON()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// clock is a settable time source for Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a gateway on a real store behind an httptest server.
type env struct {
	t      *testing.T
	st     store.Store
	gw     *gateway.Gateway
	srv    *httptest.Server
	clock  *clock
	logs   *flowtest.Buffer
	reg    *prometheus.Registry
	signer jose.KeyPair
	issuer *issuer.Issuer // with a bus
}

type envOption func(*gateway.Config)

func newEnv(t *testing.T, opts ...envOption) *env {
	return newEnvOn(t, flowtest.OpenSQLite(t), opts...)
}

func newEnvOn(t *testing.T, st store.Store, opts ...envOption) *env {
	t.Helper()
	e := &env{
		t: t, st: st,
		clock:  &clock{t: time.Now().UTC().Truncate(time.Second)},
		logs:   &flowtest.Buffer{},
		reg:    prometheus.NewRegistry(),
		signer: keyPair(t, signerKey),
	}
	var h http.Handler
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(e.srv.Close)
	cfg := gateway.Config{
		Store:     st,
		Signer:    e.signer,
		PublicURL: e.srv.URL,
		Logger:    slog.New(tracing.LogHandler(slog.NewJSONHandler(e.logs, nil))),
		Registry:  e.reg,
		Now:       e.clock.Now,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.Bus != nil && cfg.Issuer == nil {
		i, err := issuer.New(cfg.Bus, cfg.Signer, cfg.PublicURL, cfg.Now)
		if err != nil {
			t.Fatalf("new issuer: %v", err)
		}
		cfg.Issuer = i
	}
	e.issuer = cfg.Issuer
	gw, err := gateway.New(cfg)
	if err != nil {
		t.Fatalf("new gateway: %v", err)
	}
	e.gw, h = gw, gw.Handler()
	return e
}

// client creates an OAuth client directly in the store and returns its secret.
func (e *env) client(id string, disabled bool, scopes ...string) string {
	e.t.Helper()
	secret := registry.NewSecret()
	hash, err := testHash(secret)
	if err != nil {
		e.t.Fatal(err)
	}
	c := store.Client{ID: id, Name: "test " + id, SecretHash: hash, Scopes: scopes, Disabled: disabled}
	if err := e.st.CreateClient(context.Background(), "test", c); err != nil {
		e.t.Fatalf("create client: %v", err)
	}
	return secret
}

// testHash hashes a test client's secret at bcrypt's lowest cost: at
// registry.SecretCost one comparison takes most of a second under the race
// detector, and the token endpoint compares at the cost the hash names.
func testHash(secret string) ([]byte, error) {
	return bcrypt.GenerateFromPassword([]byte(secret), bcrypt.MinCost)
}

// fixedSecret and its hash serve the clients behind minted tokens.
const fixedSecret = "amtsbote-test-secret-0123456789abcdef"

var fixedHash = sync.OnceValues(func() ([]byte, error) { return testHash(fixedSecret) })

// jti returns the jti of Amtsbote's event uri about a submission, as the
// env's issuer derives it.
func (e *env) jti(submissionID, uri string) string {
	return sealed.NewJTIKey(e.signer.Private.D.Bytes()).EventJTI(submissionID, uri)
}

// token creates a client with scopes in the store and returns an access
// token for it, signed with the gateway's key exactly as the token endpoint
// signs one (the token endpoint itself is tested in token_test.go; going
// through it here would cost a bcrypt comparison per token).
func (e *env) token(scopes ...string) string {
	e.t.Helper()
	hash, err := fixedHash()
	if err != nil {
		e.t.Fatal(err)
	}
	id := "client-" + uuid.NewString()[:8]
	c := store.Client{ID: id, Name: "test " + id, SecretHash: hash, Scopes: scopes}
	if err := e.st.CreateClient(context.Background(), "test", c); err != nil {
		e.t.Fatalf("create client: %v", err)
	}
	claims := e.claims(strings.Join(scopes, " "))
	claims["sub"], claims["client_id"] = id, id
	claims["exp"] = e.clock.Now().Add(30 * time.Minute).Unix()
	return mint(e.t, e.signer.Private, gojose.PS512, e.signer.Public.KeyID, "at+jwt", claims)
}

// issuedToken creates a client with scopes and fetches a token for it from
// the token endpoint.
func (e *env) issuedToken(scopes ...string) string {
	e.t.Helper()
	id := "client-" + uuid.NewString()[:8]
	secret := e.client(id, false, scopes...)
	resp := e.postForm("/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}})
	body := readAll(e.t, resp)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("token: %d %s", resp.StatusCode, body)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tr); err != nil {
		e.t.Fatal(err)
	}
	return tr.AccessToken
}

func (e *env) adminToken() string { return e.token(scope.Admin) }

func (e *env) postForm(path string, form url.Values) *http.Response {
	e.t.Helper()
	return e.do(http.MethodPost, path, "", "application/x-www-form-urlencoded", []byte(form.Encode()))
}

// do sends a request; token and contentType may be empty.
func (e *env) do(method, path, token, contentType string, body []byte) *http.Response {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// doJSON sends v as a JSON body (raw bytes are sent as they are).
func (e *env) doJSON(method, path, token string, v any) *http.Response {
	e.t.Helper()
	var body []byte
	switch b := v.(type) {
	case []byte:
		body = b
	case string:
		body = []byte(b)
	default:
		var err error
		if body, err = json.Marshal(v); err != nil {
			e.t.Fatal(err)
		}
	}
	return e.do(method, path, token, "application/json", body)
}

func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decode reads a JSON body after checking the status.
func decode[T any](t *testing.T, resp *http.Response, status int) T {
	t.Helper()
	body := readAll(t, resp)
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, body)
	}
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return v
}

// wantProblem checks a problem answer: status, media type, type URI,
// title, and a detail naming field (when field is not empty).
func wantProblem(t *testing.T, resp *http.Response, status int, typ, field string) problem.Problem {
	t.Helper()
	body := readAll(t, resp)
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, body)
	}
	var p problem.Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("decode problem %s: %v", body, err)
	}
	want := problem.ContentType
	if resp.Request != nil && resp.Request.URL.Path == "/token" && p.Extra["error"] != nil {
		want = "application/json" // RFC 6749 5.2
	}
	if ct := resp.Header.Get("Content-Type"); ct != want {
		t.Errorf("Content-Type %q, want %q", ct, want)
	}
	if p.Status != status || p.Title == "" || p.Detail == "" {
		t.Errorf("incomplete problem %s", body)
	}
	if typ != "" && p.Type != typ {
		t.Errorf("type %q, want %q (%s)", p.Type, typ, body)
	}
	if !strings.HasPrefix(p.Type, "https://") {
		t.Errorf("type %q is not a URI", p.Type)
	}
	if field != "" {
		if p.Field != field {
			t.Errorf("field %q, want %q (%s)", p.Field, field, body)
		}
		if !strings.Contains(p.Detail, field) {
			t.Errorf("detail %q does not name %s", p.Detail, field)
		}
	}
	return p
}

// state is what the bad-input tests compare before and after: the audit
// log and every registry record.
type state struct {
	audit        int
	destinations string
	keys         string
	clients      string
}

func (e *env) state() state {
	e.t.Helper()
	ctx := context.Background()
	entries, err := e.st.AuditLog(ctx, "", store.Page{Limit: store.MaxPageLimit})
	if err != nil {
		e.t.Fatal(err)
	}
	dests, _, err := e.st.Destinations(ctx, store.Page{Limit: store.MaxPageLimit})
	if err != nil {
		e.t.Fatal(err)
	}
	var keys []store.Key
	for _, d := range dests {
		k, err := e.st.Keys(ctx, d.ID)
		if err != nil {
			e.t.Fatal(err)
		}
		keys = append(keys, k...)
	}
	clients, err := e.st.Clients(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	j := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	return state{audit: len(entries), destinations: j(dests), keys: j(keys), clients: j(clients)}
}

func (e *env) wantUnchanged(before state) {
	e.t.Helper()
	after := e.state()
	if after.audit != before.audit {
		e.t.Errorf("audit log grew from %d to %d entries", before.audit, after.audit)
	}
	if after.destinations != before.destinations || after.keys != before.keys || after.clients != before.clients {
		e.t.Errorf("registry changed:\nbefore %+v\nafter  %+v", before, after)
	}
}

// Service and region fixtures: real LeiKa keys and ARS of Baden-Württemberg.
const (
	serviceA = "urn:de:fim:leika:leistung:99108008000000"
	serviceB = "urn:de:fim:leika:leistung:99050012104000"
)

// destinationBody is a valid admin create body for a destination serving
// serviceA in regions, with the test key pairs under the given kids.
func destinationBody(t *testing.T, id string, regions []string, encKID, sigKID string) map[string]any {
	t.Helper()
	return map[string]any{
		"destinationId": id,
		"contactInformation": map[string]any{
			"legalName": "Stadt Freiburg im Breisgau", "address": "Rathausplatz 2-4, 79098 Freiburg im Breisgau",
			"phone": "+49 761 2010", "email": "poststelle@stadt.freiburg.de",
		},
		"services": []any{map[string]any{
			"identifier": serviceA,
			"regions":    regions,
			"submissionSchemas": []any{map[string]any{
				"mimeType": "application/json", "schemaUri": "https://schema.fitko.de/fim/s00000096_1.0.schema.json",
			}},
		}},
		"callback":            map[string]any{"url": "https://fachverfahren.example.org/callback", "secret": strings.Repeat("s", 40)},
		"encryptionKid":       encKID,
		"encryptionPublicKey": publicJWK(t, keyPair(t, encKey1), encKID),
		"signingPublicKey":    publicJWK(t, keyPair(t, sigKey1), sigKID),
		"metadataVersions":    []string{"1.0.0"},
	}
}

// createDestination creates a destination through the store, as the CLI does.
func (e *env) createDestination(id string, status store.DestinationStatus, regions ...string) store.Destination {
	e.t.Helper()
	body := destinationBody(e.t, id, regions, "enc-"+id[:8], "sig-"+id[:8])
	body["status"] = string(status)
	raw, _ := json.Marshal(body)
	d, keys, err := registry.ParseDestination(raw)
	if err != nil {
		e.t.Fatalf("decode destination: %v", err)
	}
	if err := e.st.CreateDestination(context.Background(), "test", d, keys); err != nil {
		e.t.Fatalf("create destination: %v", err)
	}
	return d
}

// mint signs claims as an access token with key, as an issuer other than
// the gateway (or an impostor) would.
func mint(t *testing.T, key any, alg gojose.SignatureAlgorithm, kid, typ string, claims any) string {
	t.Helper()
	opts := (&gojose.SignerOptions{}).WithHeader("kid", kid)
	if typ != "" {
		opts = opts.WithType(gojose.ContentType(typ))
	}
	s, err := gojose.NewSigner(gojose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// claims returns valid access token claims of the env's gateway.
func (e *env) claims(scope string) map[string]any {
	now := e.clock.Now()
	return map[string]any{
		"iss": e.srv.URL, "aud": e.srv.URL, "sub": "minted", "scope": scope,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "jti": uuid.NewString(),
	}
}

func rsa2048(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wantUnchangedExceptClients is wantUnchanged for tests that create token
// clients between the two snapshots.
func (e *env) wantUnchangedExceptClients(before state) {
	e.t.Helper()
	after := e.state()
	if after.audit != before.audit {
		e.t.Errorf("audit log has %d entries, want %d", after.audit, before.audit)
	}
	if after.destinations != before.destinations || after.keys != before.keys {
		e.t.Errorf("registry changed:\nbefore %+v\nafter  %+v", before, after)
	}
}

// tokenSubject reads the sub claim of a token without verifying it.
func (e *env) tokenSubject(tok string) string {
	e.t.Helper()
	parts := strings.Split(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		e.t.Fatal(err)
	}
	var c struct {
		Sub string `json:"sub"`
	}
	must(e.t, json.Unmarshal(raw, &c))
	return c.Sub
}
