package gateway_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/services/gateway"
)

// TestVerifiedTokensStillChecked: the gateway remembers its own tokens
// once their signature verified, and a remembered token is refused for
// everything a fresh verification refuses it for.
func TestVerifiedTokensStillChecked(t *testing.T) {
	e := newEnv(t)
	d := e.createDestination("6c89c356-c354-4459-b2fd-8d1260ea835c", "active", "DE08311")
	path := "/v1/destinations/" + d.ID
	refused := func(t *testing.T, tok, detail string) {
		t.Helper()
		p := wantProblem(t, e.do(http.MethodGet, path, tok, "", nil), http.StatusUnauthorized, problem.TypeUnauthorized, "Authorization")
		if !strings.Contains(p.Detail, detail) {
			t.Errorf("detail %q, want %q", p.Detail, detail)
		}
	}

	tok := e.issuedToken("send:region:DE08")
	for range 3 {
		decode[map[string]any](t, e.do(http.MethodGet, path, tok, "", nil), http.StatusOK)
	}

	t.Run("signature of another token", func(t *testing.T) {
		other := e.issuedToken("send:region:DE08")
		i, j := strings.LastIndexByte(tok, '.'), strings.LastIndexByte(other, '.')
		refused(t, tok[:i]+other[j:], "signature does not verify")
		decode[map[string]any](t, e.do(http.MethodGet, path, tok, "", nil), http.StatusOK)
	})

	t.Run("expired", func(t *testing.T) {
		// Ten seconds past its exp (a lifetime of 30 minutes): the
		// gateways' own tokens have little leeway.
		e.clock.Advance(30*time.Minute + 10*time.Second)
		refused(t, tok, "the token expired at")
		e.clock.Advance(-30*time.Minute - 10*time.Second)
		// Within its lifetime again, it verifies afresh.
		decode[map[string]any](t, e.do(http.MethodGet, path, tok, "", nil), http.StatusOK)
	})

	t.Run("not yet valid", func(t *testing.T) {
		e.clock.Advance(-time.Hour)
		refused(t, tok, "not valid yet")
		e.clock.Advance(time.Hour)
		decode[map[string]any](t, e.do(http.MethodGet, path, tok, "", nil), http.StatusOK)
	})

	t.Run("scopes are the token's", func(t *testing.T) {
		other := e.createDestination("9e978e6e-782a-4d11-9c27-edec08e71832", "active", "DE09311")
		wantProblem(t, e.do(http.MethodGet, "/admin/v1/destinations/"+other.ID, tok, "", nil), http.StatusForbidden, problem.TypeForbidden, "scope")
	})
}

// TestExternalTokensNotRemembered: a token of the external issuer is
// refused once the issuer withdrew its key, even after it verified.
func TestExternalTokensNotRemembered(t *testing.T) {
	idp := newOIDCIssuer(t)
	e := newEnv(t, func(c *gateway.Config) { c.OIDCIssuer = idp.srv.URL })
	d := e.createDestination("6c89c356-c354-4459-b2fd-8d1260ea835c", "active", "DE08311")
	path := "/v1/destinations/" + d.ID
	c := e.claims("openid send:region:DE08")
	c["iss"], c["sub"] = idp.srv.URL, "portal-at-idp"
	c["exp"] = e.clock.Now().Add(3 * time.Hour).Unix()
	k := idp.addKey(t, "idp-key-1")
	tok := mint(t, k, gojose.ES256, "idp-key-1", "", c)
	decode[map[string]any](t, e.do(http.MethodGet, path, tok, "", nil), http.StatusOK)

	idp.keys.Store(&[]gojose.JSONWebKey{})
	e.clock.Advance(61 * time.Minute) // the fetched keys are stale
	wantProblem(t, e.do(http.MethodGet, path, tok, "", nil), http.StatusUnauthorized, problem.TypeUnauthorized, "Authorization")
}
