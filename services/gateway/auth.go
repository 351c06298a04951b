package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/amtsbote/amtsbote/pkg/problem"
)

// leeway is the clock skew tolerated on exp, nbf and iat.
const leeway = 30 * time.Second

// externalAlgs are the signature algorithms accepted from an external
// issuer; Amtsbote's own tokens are PS512 only.
var externalAlgs = []gojose.SignatureAlgorithm{
	gojose.PS512, gojose.PS384, gojose.PS256, gojose.RS512, gojose.RS384, gojose.RS256,
	gojose.ES512, gojose.ES384, gojose.ES256, gojose.EdDSA,
}

// Principal is the verified caller of a request.
type Principal struct {
	// Subject is the token's sub: the client id for Amtsbote's own tokens.
	// It is the actor of audit entries.
	Subject string
	// Issuer is the token's iss.
	Issuer string
	// Scopes are the token's recognised scopes.
	Scopes Scopes
}

type principalKey struct{}

// PrincipalFrom returns the caller an authenticated handler runs for.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// authError is a 401 with the RFC 6750 challenge that goes with it.
type authError struct {
	p *problem.Problem
	// code is the RFC 6750 error code; empty when no credentials came.
	code string
}

func (e *authError) Error() string { return e.p.Error() }
func (e *authError) Unwrap() error { return e.p }

func invalidToken(format string, args ...any) error {
	d := fmt.Sprintf(format, args...)
	return &authError{p: problem.Unauthorized(d), code: "invalid_token"}
}

// authedHandler is a handler that runs for a verified caller.
type authedHandler func(w http.ResponseWriter, r *http.Request, p Principal) error

// authed requires a valid bearer token and runs h for its principal.
// Errors h returns are written as problems.
func (g *Gateway) authed(h authedHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := g.authenticate(r)
		if err != nil {
			g.writeError(w, r, err)
			return
		}
		if ri := infoFrom(r.Context()); ri != nil {
			ri.subject = p.Subject
		}
		r = r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
		if err := h(w, r, p); err != nil {
			g.writeError(w, r, err)
		}
	})
}

// admin is authed plus the operator scope.
func (g *Gateway) admin(h authedHandler) http.Handler {
	return g.authed(func(w http.ResponseWriter, r *http.Request, p Principal) error {
		if !p.Scopes.IsAdmin() {
			return forbidden(ScopeAdmin, "the operator API requires scope "+ScopeAdmin)
		}
		return h(w, r, p)
	})
}

// scopeError is a 403 with an insufficient_scope challenge naming the
// scope that would have allowed the request.
type scopeError struct {
	p     *problem.Problem
	scope string
}

func (e *scopeError) Error() string { return e.p.Error() }
func (e *scopeError) Unwrap() error { return e.p }

func forbidden(scope, detail string) error {
	return &scopeError{p: problem.Forbidden(detail).WithField("scope"), scope: scope}
}

// quoteSafe keeps a description inside an RFC 6750 quoted string, whose
// allowed characters exclude '"' and '\'.
func quoteSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 || r > 0x7e {
			return '\''
		}
		return r
	}, s)
}

// tokenClaims are the claims Amtsbote reads from an access token.
type tokenClaims struct {
	jwt.Claims
	Scope    scopeClaim `json:"scope,omitempty"`
	Scp      scopeClaim `json:"scp,omitempty"`
	ClientID string     `json:"client_id,omitempty"`
}

// scopeClaim reads OAuth's space-separated scope string or a JSON array of scopes.
type scopeClaim []string

func (s *scopeClaim) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err == nil {
		*s = strings.Fields(str)
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf("scope claim must be a string or an array of strings")
	}
	*s = list
	return nil
}

// authenticate verifies the bearer token of r.
func (g *Gateway) authenticate(r *http.Request) (Principal, error) {
	h := r.Header.Values("Authorization")
	if len(h) == 0 {
		return Principal{}, &authError{p: problem.Unauthorized("this endpoint requires a bearer token in the Authorization header")}
	}
	if len(h) > 1 {
		return Principal{}, &authError{p: problem.Unauthorized("more than one Authorization header"), code: "invalid_request"}
	}
	scheme, raw, ok := strings.Cut(h[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(raw) == "" {
		return Principal{}, &authError{p: problem.Unauthorized("the Authorization header must be \"Bearer <token>\""), code: "invalid_request"}
	}
	return g.verifyToken(r.Context(), strings.TrimSpace(raw))
}

// verifyToken checks signature, issuer, audience and lifetime of an access token.
func (g *Gateway) verifyToken(ctx context.Context, raw string) (Principal, error) {
	tok, err := jwt.ParseSigned(raw, externalAlgs)
	if err != nil {
		return Principal{}, invalidToken("the token is not a signed JWT: %v", err)
	}
	if len(tok.Headers) != 1 {
		return Principal{}, invalidToken("the token must carry exactly one signature")
	}
	hdr := tok.Headers[0]
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return Principal{}, invalidToken("the token's claims are not readable: %v", err)
	}

	var key any
	switch {
	case unverified.Issuer == g.publicURL:
		if hdr.Algorithm != string(gojose.PS512) {
			return Principal{}, invalidToken("tokens of %s are signed with PS512, not %s", g.publicURL, hdr.Algorithm)
		}
		if typ, _ := hdr.ExtraHeaders[gojose.HeaderType].(string); !strings.EqualFold(typ, "at+jwt") {
			return Principal{}, invalidToken("the token is not an access token (typ %q, want at+jwt)", typ)
		}
		key = g.verifyKey.Key
	case g.oidc != nil && unverified.Issuer == g.oidc.issuer:
		k, err := g.oidc.key(ctx, hdr.KeyID)
		if err != nil {
			return Principal{}, err
		}
		if k.Algorithm != "" && k.Algorithm != hdr.Algorithm {
			return Principal{}, invalidToken("key %s is for %s, the token uses %s", hdr.KeyID, k.Algorithm, hdr.Algorithm)
		}
		key = k.Key
	default:
		return Principal{}, invalidToken("tokens of issuer %q are not accepted", unverified.Issuer)
	}

	var claims tokenClaims
	if err := tok.Claims(key, &claims); err != nil {
		return Principal{}, invalidToken("the token's signature does not verify with the issuer's key")
	}
	if claims.Expiry == nil {
		return Principal{}, invalidToken("the token has no expiry (exp)")
	}
	err = claims.ValidateWithLeeway(jwt.Expected{
		Issuer:      unverified.Issuer,
		AnyAudience: jwt.Audience{g.publicURL},
		Time:        g.now(),
	}, leeway)
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return Principal{}, invalidToken("the token expired at %s", claims.Expiry.Time().UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
		return Principal{}, invalidToken("the token is not valid yet")
	case errors.Is(err, jwt.ErrInvalidAudience):
		return Principal{}, invalidToken("the token is not meant for this service (aud must contain %s)", g.publicURL)
	case err != nil:
		return Principal{}, invalidToken("the token's claims are not acceptable: %v", err)
	}
	sub := claims.Subject
	if sub == "" {
		sub = claims.ClientID
	}
	if sub == "" {
		return Principal{}, invalidToken("the token names no subject (sub)")
	}
	scopes := claims.Scope
	if len(scopes) == 0 {
		scopes = claims.Scp
	}
	return Principal{Subject: sub, Issuer: claims.Issuer, Scopes: ParseScopes(scopes)}, nil
}
