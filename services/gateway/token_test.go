package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/services/gateway"
)

func TestHappyPath(t *testing.T) {
	for _, b := range flowtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnvOn(t, b.Open(t))
			d := e.createDestination("6c89c356-c354-4459-b2fd-8d1260ea835c", "active", "DE08311")
			secret := e.client("portal", false, "send:region:DE08")

			tr := decode[struct {
				AccessToken string `json:"access_token"`
				TokenType   string `json:"token_type"`
				ExpiresIn   int    `json:"expires_in"`
				Scope       string `json:"scope"`
			}](t, e.postForm("/token", url.Values{
				"grant_type": {"client_credentials"}, "client_id": {"portal"}, "client_secret": {secret},
			}), http.StatusOK)
			if tr.TokenType != "Bearer" || tr.ExpiresIn != 1800 || tr.Scope != "send:region:DE08" || tr.AccessToken == "" {
				t.Fatalf("token response %+v", tr)
			}

			resp := e.do(http.MethodGet, "/v1/destinations/"+d.ID, tr.AccessToken, "", nil)
			if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
				t.Errorf("Cache-Control %q", cc)
			}
			got := decode[map[string]any](t, resp, http.StatusOK)
			if got["destinationId"] != d.ID || got["encryptionKid"] != d.EncryptionKID || got["status"] != "active" {
				t.Errorf("destination %v", got)
			}
			for _, private := range []string{"contactInformation", "callback", "homeRegion", "signingKid"} {
				if _, ok := got[private]; ok {
					t.Errorf("a sender sees %s", private)
				}
			}

			resp = e.do(http.MethodGet, "/v1/destinations/"+d.ID+"/keys/"+d.EncryptionKID, "", "", nil)
			if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
				t.Errorf("key Cache-Control %q", cc)
			}
			raw := readAll(t, resp)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("key: %d %s", resp.StatusCode, raw)
			}
			jwk, err := jose.ValidatePublicKey(raw, jose.Encryption)
			if err != nil {
				t.Fatalf("served key breaks a key rule: %v", err)
			}
			if jwk.KeyID != d.EncryptionKID {
				t.Errorf("kid %q", jwk.KeyID)
			}
		})
	}
}

func TestPrivateView(t *testing.T) {
	e := newEnv(t)
	d := e.createDestination("9e978e6e-782a-4d11-9c27-edec08e71832", "active", "DE08311")
	for _, scope := range []string{"subscribe:destination:" + d.ID, "manage:destination:" + d.ID, "amtsbote:admin"} {
		t.Run(scope, func(t *testing.T) {
			got := decode[map[string]any](t, e.do(http.MethodGet, "/v1/destinations/"+d.ID, e.token(scope), "", nil), http.StatusOK)
			ci, _ := got["contactInformation"].(map[string]any)
			if ci["legalName"] != d.Contact.LegalName {
				t.Errorf("contactInformation %v", got["contactInformation"])
			}
			cb, _ := got["callback"].(map[string]any)
			if cb["url"] != d.CallbackURL || len(cb) != 1 {
				t.Errorf("callback %v: want the url and nothing else", got["callback"])
			}
		})
	}
}

func TestTokenClaims(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config) { c.TokenTTL = 5 * time.Minute })
	secret := e.client("receiver", false, "subscribe:destination:9e978e6e-782a-4d11-9c27-edec08e71832", "send:region:DE08")
	tr := decode[map[string]any](t, e.postForm("/token", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {"receiver"}, "client_secret": {secret}, "scope": {"send:region:DE08"},
	}), http.StatusOK)
	if tr["scope"] != "send:region:DE08" || tr["expires_in"] != float64(300) {
		t.Errorf("response %v", tr)
	}
	tok, err := jwt.ParseSigned(tr["access_token"].(string), []gojose.SignatureAlgorithm{gojose.PS512})
	if err != nil {
		t.Fatal(err)
	}
	h := tok.Headers[0]
	if h.KeyID != e.signer.Public.KeyID || h.ExtraHeaders[gojose.HeaderType] != "at+jwt" {
		t.Errorf("header kid %q typ %v", h.KeyID, h.ExtraHeaders[gojose.HeaderType])
	}
	var c struct {
		jwt.Claims
		Scope string `json:"scope"`
	}
	if err := tok.Claims(&e.signer.Private.PublicKey, &c); err != nil {
		t.Fatalf("signature: %v", err)
	}
	now := e.clock.Now()
	if c.Issuer != e.srv.URL || !c.Audience.Contains(e.srv.URL) || c.Subject != "receiver" || c.ID == "" ||
		c.Scope != "send:region:DE08" || !c.IssuedAt.Time().Equal(now) || !c.Expiry.Time().Equal(now.Add(5*time.Minute)) {
		t.Errorf("claims %+v", c)
	}
}

func TestTokenErrors(t *testing.T) {
	e := newEnv(t)
	secret := e.client("portal", false, "send:region:DE08", "send:region:DE09")
	disabledSecret := e.client("old-portal", true, "send:region:DE08")
	form := func(kv ...string) url.Values {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v
	}
	tests := []struct {
		name        string
		contentType string
		form        url.Values
		status      int
		oauth       string
		field       string
	}{
		{"wrong content type", "application/json", form("grant_type", "client_credentials"), 415, "invalid_request", "Content-Type"},
		{"no grant type", "", form("client_id", "portal", "client_secret", secret), 400, "invalid_request", "grant_type"},
		{"other grant type", "", form("grant_type", "password", "client_id", "portal", "client_secret", secret), 400, "unsupported_grant_type", "grant_type"},
		{"repeated parameter", "", form("grant_type", "client_credentials", "client_id", "portal", "client_id", "x", "client_secret", secret), 400, "invalid_request", "client_id"},
		{"no client id", "", form("grant_type", "client_credentials", "client_secret", secret), 401, "invalid_client", "client_id"},
		{"unknown client", "", form("grant_type", "client_credentials", "client_id", "nobody", "client_secret", secret), 401, "invalid_client", "client_id"},
		{"wrong secret", "", form("grant_type", "client_credentials", "client_id", "portal", "client_secret", secret+"x"), 401, "invalid_client", "client_id"},
		{"disabled client", "", form("grant_type", "client_credentials", "client_id", "old-portal", "client_secret", disabledSecret), 401, "invalid_client", "client_id"},
		{"scope not granted", "", form("grant_type", "client_credentials", "client_id", "portal", "client_secret", secret, "scope", "send:region:DE08 send:region:DE"), 400, "invalid_scope", "scope"},
		{"another Land's Kreis", "", form("grant_type", "client_credentials", "client_id", "portal", "client_secret", secret, "scope", "send:region:DE07311"), 400, "invalid_scope", "scope"},
		{"a scope of another kind", "", form("grant_type", "client_credentials", "client_id", "portal", "client_secret", secret, "scope", "create:destination"), 400, "invalid_scope", "scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := tt.contentType
			if ct == "" {
				ct = "application/x-www-form-urlencoded"
			}
			before := e.state()
			resp := e.do(http.MethodPost, "/token", "", ct, []byte(tt.form.Encode()))
			p := wantProblem(t, resp, tt.status, "", tt.field)
			if p.Extra["error"] != tt.oauth {
				t.Errorf("error %v, want %s", p.Extra["error"], tt.oauth)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q", resp.Header.Get("Cache-Control"))
			}
			if tt.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
				t.Errorf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
			}
			e.wantUnchanged(before)
		})
	}
}

// TestTokenEmptyScope: a scope parameter without a value counts as
// omitted (RFC 6749 §3.1): the token carries the client's scopes.
func TestTokenEmptyScope(t *testing.T) {
	e := newEnv(t)
	secret := e.client("portal", false, "send:region:DE08", "send:region:DE09")
	for _, body := range []string{"scope=", "scope", "scope=+"} {
		t.Run(body, func(t *testing.T) {
			form := "grant_type=client_credentials&client_id=portal&client_secret=" + url.QueryEscape(secret) + "&" + body
			got := decode[struct {
				Scope string `json:"scope"`
			}](t, e.do(http.MethodPost, "/token", "", "application/x-www-form-urlencoded", []byte(form)), http.StatusOK)
			if got.Scope != "send:region:DE08 send:region:DE09" {
				t.Errorf("scope %q, want the client's", got.Scope)
			}
		})
	}
}

// TestTokenNarrowerScope: a client may ask for less than it was granted
// (RFC 6749 3.3): a region within its region, one service of it.
func TestTokenNarrowerScope(t *testing.T) {
	e := newEnv(t)
	secret := e.client("portal", false, "send:region:DE08", "send:region:DE09+send:service:urn:de:fim:leika:leistung:99108008000000")
	for _, tt := range []struct{ ask, want string }{
		{"send:region:DE083", "send:region:DE083"},
		{"send:region:DE08315 send:region:DE09", ""},
		{"send:region:DE08+send:service:urn:de:fim:leika:leistung:99050012000000", "send:region:DE08+send:service:urn:de:fim:leika:leistung:99050012000000"},
		{"send:region:DE09162+send:service:urn:de:fim:leika:leistung:99108008000000", "send:region:DE09162+send:service:urn:de:fim:leika:leistung:99108008000000"},
		{"send:region:DE09162+send:service:urn:de:fim:leika:leistung:99050012000000", ""},
	} {
		t.Run(tt.ask, func(t *testing.T) {
			form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"portal"}, "client_secret": {secret}, "scope": {tt.ask}}
			resp := e.do(http.MethodPost, "/token", "", "application/x-www-form-urlencoded", []byte(form.Encode()))
			if tt.want == "" {
				wantProblem(t, resp, http.StatusBadRequest, "", "scope")
				return
			}
			got := decode[struct {
				Scope string `json:"scope"`
			}](t, resp, http.StatusOK)
			if got.Scope != tt.want {
				t.Errorf("scope %q, want %q", got.Scope, tt.want)
			}
		})
	}
}

// TestTokenBasicAuth authenticates with HTTP Basic, which a client may
// accompany by its client_id in the body (RFC 6749 3.2.1), but not by a
// second way to authenticate (2.3).
func TestTokenBasicAuth(t *testing.T) {
	e := newEnv(t)
	secret := e.client("portal", false, "send:region:DE08")
	basic := func(body string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("portal", secret)
		resp, err := e.srv.Client().Do(req)
		must(t, err)
		return resp
	}
	decode[map[string]any](t, basic("grant_type=client_credentials"), http.StatusOK)
	decode[map[string]any](t, basic("grant_type=client_credentials&client_id=portal"), http.StatusOK)
	for body, field := range map[string]string{
		"grant_type=client_credentials&client_id=other":                          "client_id",
		"grant_type=client_credentials&client_secret=" + url.QueryEscape(secret): "client_secret",
	} {
		got := decode[struct{ Error, Field string }](t, basic(body), http.StatusBadRequest)
		if got.Error != "invalid_request" || got.Field != field {
			t.Errorf("%s: %+v, want invalid_request naming %s", body, got, field)
		}
	}
}

func TestJWKS(t *testing.T) {
	e := newEnv(t)
	set := decode[struct {
		Keys []json.RawMessage `json:"keys"`
	}](t, e.do(http.MethodGet, "/.well-known/jwks.json", "", "", nil), http.StatusOK)
	if len(set.Keys) != 1 {
		t.Fatalf("%d keys", len(set.Keys))
	}
	var m map[string]any
	must(t, json.Unmarshal(set.Keys[0], &m))
	if ops, _ := m["key_ops"].([]any); len(ops) != 1 || ops[0] != "verify" || m["alg"] != "PS512" || m["x5c"] == nil {
		t.Errorf("published key %v", m)
	}
	if _, ok := m["d"]; ok {
		t.Fatal("the JWKS publishes private key material")
	}
	jwk, err := jose.ValidatePublicKey(set.Keys[0], jose.Signing)
	if err != nil {
		t.Fatalf("published key breaks a key rule: %v", err)
	}
	// The published key verifies the tokens the gateway issues.
	tok, err := jwt.ParseSigned(e.issuedToken("send:region:DE08"), []gojose.SignatureAlgorithm{gojose.PS512})
	must(t, err)
	var c jwt.Claims
	if err := tok.Claims(jwk, &c); err != nil {
		t.Errorf("token does not verify with the published key: %v", err)
	}
}
