package gateway_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/services/gateway"
)

func TestAuthRejectsTokens(t *testing.T) {
	e := newEnv(t)
	d := e.createDestination("6c89c356-c354-4459-b2fd-8d1260ea835c", "active", "DE08311")
	own := e.signer.Private
	kid := e.signer.Public.KeyID
	impostor := keyPair(t, otherSignerKey).Private
	const scope = "send:region:DE08 amtsbote:admin"

	expired := e.issuedToken(strings.Fields(scope)...)
	valid := func(mut func(map[string]any)) string {
		c := e.claims(scope)
		mut(c)
		return mint(t, own, gojose.PS512, kid, "at+jwt", c)
	}
	tests := []struct {
		name      string
		header    string // full Authorization header; "" sends none
		challenge string // expected error in WWW-Authenticate; "" for none
		advance   time.Duration
	}{
		{name: "missing", header: ""},
		{name: "not bearer", header: "Basic cG9ydGFsOnNlY3JldA==", challenge: "invalid_request"},
		{name: "garbage", header: "Bearer not.a.jwt", challenge: "invalid_token"},
		{name: "expired", header: "Bearer " + expired, challenge: "invalid_token", advance: 31 * time.Minute},
		{name: "signed by another key", header: "Bearer " + mint(t, impostor, gojose.PS512, kid, "at+jwt", e.claims(scope)), challenge: "invalid_token"},
		{name: "other audience", header: "Bearer " + valid(func(c map[string]any) { c["aud"] = "https://fit-connect.example.org" }), challenge: "invalid_token"},
		{name: "other issuer", header: "Bearer " + valid(func(c map[string]any) { c["iss"] = "https://idp.example.org" }), challenge: "invalid_token"},
		{name: "no expiry", header: "Bearer " + valid(func(c map[string]any) { delete(c, "exp") }), challenge: "invalid_token"},
		{name: "not yet valid", header: "Bearer " + valid(func(c map[string]any) { c["nbf"] = time.Now().Add(time.Hour).Unix() }), challenge: "invalid_token"},
		{name: "not an access token", header: "Bearer " + mint(t, own, gojose.PS512, kid, "secevent+jwt", e.claims(scope)), challenge: "invalid_token"},
		{name: "weaker algorithm", header: "Bearer " + mint(t, own, gojose.RS256, kid, "at+jwt", e.claims(scope)), challenge: "invalid_token"},
		{name: "signature with its unused bits set", header: "Bearer " + unusedBitsSet(t, valid(func(map[string]any) {})), challenge: "invalid_token"},
	}
	requests := []struct {
		method, path, body string
	}{
		{http.MethodGet, "/v1/destinations/" + d.ID, ""},
		{http.MethodPost, "/admin/v1/clients", `{"name":"intruder","scopes":["amtsbote:admin"]}`},
		{http.MethodPost, "/admin/v1/destinations/" + d.ID + "/deactivate", ""},
	}
	for _, tt := range tests {
		for _, rq := range requests {
			t.Run(tt.name+" "+rq.method+" "+rq.path, func(t *testing.T) {
				e.clock.Advance(tt.advance)
				defer e.clock.Advance(-tt.advance)
				before := e.state()
				req, _ := http.NewRequest(rq.method, e.srv.URL+rq.path, strings.NewReader(rq.body))
				req.Header.Set("Content-Type", "application/json")
				if tt.header != "" {
					req.Header.Set("Authorization", tt.header)
				}
				resp, err := e.srv.Client().Do(req)
				must(t, err)
				defer resp.Body.Close()
				wantProblem(t, resp, http.StatusUnauthorized, problem.TypeUnauthorized, "Authorization")
				ch := resp.Header.Get("WWW-Authenticate")
				if !strings.HasPrefix(ch, `Bearer realm="`) {
					t.Errorf("WWW-Authenticate %q", ch)
				}
				if tt.challenge == "" && strings.Contains(ch, "error=") {
					t.Errorf("a request without credentials gets an error code: %q", ch)
				}
				if tt.challenge != "" && (!strings.Contains(ch, `error="`+tt.challenge+`"`) || !strings.Contains(ch, `error_description="`)) {
					t.Errorf("WWW-Authenticate %q, want error %s with a description", ch, tt.challenge)
				}
				e.wantUnchanged(before)
			})
		}
	}
	// The same requests with a valid token pass, so the refusals above are
	// the token's doing.
	tok := valid(func(map[string]any) {})
	decode[map[string]any](t, e.do(http.MethodGet, "/v1/destinations/"+d.ID, tok, "", nil), http.StatusOK)
	decode[map[string]any](t, e.do(http.MethodPost, "/admin/v1/destinations/"+d.ID+"/deactivate", tok, "", nil), http.StatusOK)
}

func TestScopeNotCovering(t *testing.T) {
	e := newEnv(t)
	freiburg := e.createDestination("6c89c356-c354-4459-b2fd-8d1260ea835c", "active", "DE08311")
	land := e.createDestination("2f59b8c6-3206-4734-aa21-a7b2a4d92f7a", "active", "DE08")
	tests := []struct {
		name   string
		scope  string
		dest   string
		status int
	}{
		{"land portal reads kreis destination", "send:region:DE08", freiburg.ID, 200},
		{"kreis portal reads land destination", "send:region:DE08311", land.ID, 200},
		{"gemeinde portal reads land destination", "send:region:DE083110000001", land.ID, 200},
		{"bund portal reads anything", "send:region:DE", freiburg.ID, 200},
		{"service-narrowed scope for the offered service", "send:region:DE08+send:service:" + serviceA, freiburg.ID, 200},
		{"other land", "send:region:DE09", freiburg.ID, 403},
		{"sibling kreis", "send:region:DE08312", freiburg.ID, 403},
		{"service-narrowed scope for another service", "send:region:DE08+send:service:" + serviceB, freiburg.ID, 403},
		{"subscriber of another destination", "subscribe:destination:" + land.ID, freiburg.ID, 403},
		{"create only", "create:destination", freiburg.ID, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.state()
			resp := e.do(http.MethodGet, "/v1/destinations/"+tt.dest, e.token(tt.scope), "", nil)
			if tt.status == 200 {
				decode[map[string]any](t, resp, 200)
				return
			}
			wantProblem(t, resp, http.StatusForbidden, problem.TypeForbidden, "scope")
			if ch := resp.Header.Get("WWW-Authenticate"); !strings.Contains(ch, `error="insufficient_scope"`) {
				t.Errorf("WWW-Authenticate %q", ch)
			}
			before.audit += 1 // the token's client was created in between
			e.wantUnchangedExceptClients(before)
		})
	}
}

func TestDestinationLookupErrors(t *testing.T) {
	e := newEnv(t)
	tok := e.token("send:region:DE08")
	t.Run("unknown destination", func(t *testing.T) {
		wantProblem(t, e.do(http.MethodGet, "/v1/destinations/7881dba9-4055-4854-8b6d-11ea5b7f3047", tok, "", nil),
			http.StatusNotFound, problem.TypeDestinationNotFound, "destinationId")
	})
	t.Run("not a uuid", func(t *testing.T) {
		// The operation declares 401, 403 and 404: no destination has the id.
		wantProblem(t, e.do(http.MethodGet, "/v1/destinations/freiburg", tok, "", nil),
			http.StatusNotFound, problem.TypeDestinationNotFound, "destinationId")
	})
	t.Run("unknown key", func(t *testing.T) {
		wantProblem(t, e.do(http.MethodGet, "/v1/destinations/7881dba9-4055-4854-8b6d-11ea5b7f3047/keys/unknown-kid", "", "", nil),
			http.StatusNotFound, problem.TypeKeyNotFound, "keyId")
	})
	t.Run("key id too short", func(t *testing.T) {
		// The operation declares 200 and 404 alone: no key has the id.
		wantProblem(t, e.do(http.MethodGet, "/v1/destinations/7881dba9-4055-4854-8b6d-11ea5b7f3047/keys/short", "", "", nil),
			http.StatusNotFound, problem.TypeKeyNotFound, "keyId")
	})
	t.Run("unknown route", func(t *testing.T) {
		wantProblem(t, e.do(http.MethodGet, "/v1/nothing-here", "", "", nil), http.StatusNotFound, problem.TypeNotFound, "path")
	})
	t.Run("wrong method", func(t *testing.T) {
		resp := e.do(http.MethodDelete, "/v1/info", "", "", nil)
		wantProblem(t, resp, http.StatusMethodNotAllowed, problem.TypeMethodNotAllowed, "")
		if a := resp.Header.Get("Allow"); !strings.Contains(a, "GET") {
			t.Errorf("Allow %q", a)
		}
	})
}

// oidcIssuer is an external OpenID Connect issuer with its own keys.
type oidcIssuer struct {
	srv     *httptest.Server
	keys    atomic.Pointer[[]gojose.JSONWebKey]
	fetches atomic.Int32
}

func newOIDCIssuer(t *testing.T) *oidcIssuer {
	o := &oidcIssuer{}
	o.keys.Store(&[]gojose.JSONWebKey{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": o.srv.URL, "jwks_uri": o.srv.URL + "/keys"})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		o.fetches.Add(1)
		_ = json.NewEncoder(w).Encode(gojose.JSONWebKeySet{Keys: *o.keys.Load()})
	})
	o.srv = httptest.NewServer(mux)
	t.Cleanup(o.srv.Close)
	return o
}

// addKey makes a new ES256 key, publishes its public half and returns it.
func (o *oidcIssuer) addKey(t *testing.T, kid string) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	keys := append(*o.keys.Load(), gojose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: "ES256", Use: "sig"})
	o.keys.Store(&keys)
	return k
}

func TestOIDCIssuer(t *testing.T) {
	idp := newOIDCIssuer(t)
	e := newEnv(t, func(c *gateway.Config) { c.OIDCIssuer = idp.srv.URL })
	d := e.createDestination("6c89c356-c354-4459-b2fd-8d1260ea835c", "active", "DE08311")
	path := "/v1/destinations/" + d.ID
	claims := func() map[string]any {
		c := e.claims("openid send:region:DE08")
		c["iss"], c["sub"] = idp.srv.URL, "portal-at-idp"
		return c
	}

	k1 := idp.addKey(t, "idp-key-1")
	decode[map[string]any](t, e.do(http.MethodGet, path, mint(t, k1, gojose.ES256, "idp-key-1", "", claims()), "", nil), http.StatusOK)
	if n := idp.fetches.Load(); n != 1 {
		t.Fatalf("%d key fetches, want 1", n)
	}
	decode[map[string]any](t, e.do(http.MethodGet, path, mint(t, k1, gojose.ES256, "idp-key-1", "", claims()), "", nil), http.StatusOK)
	if n := idp.fetches.Load(); n != 1 {
		t.Errorf("%d key fetches after a second request, want the cached key", n)
	}

	t.Run("wrong audience", func(t *testing.T) {
		c := claims()
		c["aud"] = "https://other.example.org"
		resp := e.do(http.MethodGet, path, mint(t, k1, gojose.ES256, "idp-key-1", "", c), "", nil)
		wantProblem(t, resp, http.StatusUnauthorized, problem.TypeUnauthorized, "Authorization")
	})

	t.Run("key the issuer never published", func(t *testing.T) {
		stranger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(t, err)
		resp := e.do(http.MethodGet, path, mint(t, stranger, gojose.ES256, "idp-key-1", "", claims()), "", nil)
		wantProblem(t, resp, http.StatusUnauthorized, problem.TypeUnauthorized, "Authorization")
	})

	t.Run("rotated key is fetched, unknown kids are bounded", func(t *testing.T) {
		k2 := idp.addKey(t, "idp-key-2")
		e.clock.Advance(2 * time.Minute)
		decode[map[string]any](t, e.do(http.MethodGet, path, mint(t, k2, gojose.ES256, "idp-key-2", "", claims()), "", nil), http.StatusOK)
		fetched := idp.fetches.Load()
		for i := range 3 {
			resp := e.do(http.MethodGet, path, mint(t, k2, gojose.ES256, "made-up-"+string(rune('a'+i)), "", claims()), "", nil)
			wantProblem(t, resp, http.StatusUnauthorized, problem.TypeUnauthorized, "Authorization")
		}
		if n := idp.fetches.Load(); n != fetched {
			t.Errorf("made-up kids caused %d fetches within the refetch interval", n-fetched)
		}
	})

	t.Run("its subject is never an own client's", func(t *testing.T) {
		c := claims()
		c["sub"], c["scope"] = "operator-at-idp", "amtsbote:admin"
		admin := mint(t, k1, gojose.ES256, "idp-key-1", "", c)
		created := decode[map[string]any](t, e.doJSON(http.MethodPost, "/admin/v1/clients", admin, map[string]any{"name": "portal", "scopes": []string{"send:region:DE08"}}), http.StatusCreated)
		raw := string(readAll(t, e.do(http.MethodGet, "/admin/v1/audit?object=client:"+created["clientId"].(string), admin, "", nil)))
		if !strings.Contains(raw, `"actor":"oidc:operator-at-idp"`) {
			t.Errorf("audit entry %s, want the actor oidc:operator-at-idp", raw)
		}
	})

	t.Run("scopes of the external token apply", func(t *testing.T) {
		c := claims()
		c["scope"] = "openid send:region:DE09"
		resp := e.do(http.MethodGet, path, mint(t, k1, gojose.ES256, "idp-key-1", "", c), "", nil)
		wantProblem(t, resp, http.StatusForbidden, problem.TypeForbidden, "scope")
	})
}

// unusedBitsSet returns tok with the last character of its signature
// changed in the bits base64 leaves unused: the same bytes to a lenient
// decoder, another string.
func unusedBitsSet(t *testing.T, tok string) string {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, tok[len(tok)-1])
	if i < 0 || len(tok[strings.LastIndexByte(tok, '.')+1:])%4 == 0 {
		t.Fatalf("token %q has no unused bits at its end", tok)
	}
	return tok[:len(tok)-1] + string(alphabet[i|1])
}
