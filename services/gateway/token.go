package gateway

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"

	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// NewSecret returns a fresh client secret: 32 random bytes, base64url.
func NewSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// oauthError is a problem that also carries RFC 6749's "error" member, so
// OAuth client libraries and problem-aware clients both understand it.
func oauthError(code string, p *problem.Problem) *problem.Problem {
	return p.With("error", code).With("error_description", p.Detail)
}

// tokenResponse is RFC 6749's successful access token response.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

// handleToken is the OAuth2 token endpoint: client credentials grant with
// client_secret_post (or client_secret_basic).
func (g *Gateway) handleToken(w http.ResponseWriter, r *http.Request) {
	// RFC 6749 5.1 and 5.2: token answers must not be cached.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	resp, err := g.issueToken(w, r)
	if err != nil {
		p, ok := problem.As(err)
		if !ok {
			g.writeError(w, r, err)
			return
		}
		if p.Status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+quoteSafe(g.publicURL)+`"`)
		}
		problem.Write(w, p)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (g *Gateway) issueToken(w http.ResponseWriter, r *http.Request) (tokenResponse, error) {
	if err := requireContentType(r, "application/x-www-form-urlencoded"); err != nil {
		p, _ := problem.As(err)
		return tokenResponse{}, oauthError("invalid_request", p)
	}
	body, err := g.readBody(w, r)
	if err != nil {
		p, _ := problem.As(err)
		return tokenResponse{}, oauthError("invalid_request", p)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return tokenResponse{}, oauthError("invalid_request", problem.InvalidRequest("body", "the body is not form-encoded: "+err.Error()))
	}
	for name, v := range form {
		if len(v) > 1 {
			return tokenResponse{}, oauthError("invalid_request", problem.InvalidRequest(name, fmt.Sprintf("parameter %s must not repeat", name)))
		}
	}

	grant := form.Get("grant_type")
	switch grant {
	case "":
		return tokenResponse{}, oauthError("invalid_request", problem.InvalidRequest("grant_type", "grant_type is required"))
	case "client_credentials":
	default:
		return tokenResponse{}, oauthError("unsupported_grant_type", problem.InvalidRequest("grant_type",
			fmt.Sprintf("grant_type %q is not supported; use client_credentials", grant)))
	}

	id, secret := form.Get("client_id"), form.Get("client_secret")
	if bid, bsecret, ok := r.BasicAuth(); ok {
		if id != "" || secret != "" {
			return tokenResponse{}, oauthError("invalid_request", problem.InvalidRequest("client_secret",
				"authenticate the client either in the body or with HTTP Basic, not both"))
		}
		id, secret = bid, bsecret
	}
	client, err := g.authenticateClient(r, id, secret)
	if err != nil {
		return tokenResponse{}, err
	}

	scopes := client.Scopes
	if requested, ok := form["scope"]; ok {
		scopes = strings.Fields(requested[0])
		if len(scopes) == 0 {
			return tokenResponse{}, oauthError("invalid_scope", problem.InvalidRequest("scope", "scope is empty"))
		}
		for _, s := range scopes {
			if !slices.Contains(client.Scopes, s) {
				return tokenResponse{}, oauthError("invalid_scope", problem.InvalidRequest("scope",
					fmt.Sprintf("scope %q is not granted to this client", s)))
			}
		}
	}
	if len(scopes) == 0 {
		return tokenResponse{}, oauthError("invalid_scope", problem.InvalidRequest("scope", "this client has no scopes"))
	}

	now := g.now()
	claims := tokenClaims{
		Claims: jwt.Claims{
			Issuer:    g.publicURL,
			Subject:   client.ID,
			Audience:  jwt.Audience{g.publicURL},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			Expiry:    jwt.NewNumericDate(now.Add(g.tokenTTL)),
			ID:        uuid.NewString(),
		},
		ClientID: client.ID,
	}
	scope := strings.Join(scopes, " ")
	token, err := jwt.Signed(g.signer).Claims(claims).Claims(map[string]any{"scope": scope}).Serialize()
	if err != nil {
		return tokenResponse{}, fmt.Errorf("sign access token: %w", err)
	}
	if ri := infoFrom(r.Context()); ri != nil {
		ri.subject = client.ID
	}
	return tokenResponse{AccessToken: token, TokenType: "Bearer", ExpiresIn: int64(g.tokenTTL.Seconds()), Scope: scope}, nil
}

// authenticateClient checks id and secret. Every failure costs one bcrypt
// comparison, so response times do not tell which client ids exist.
func (g *Gateway) authenticateClient(r *http.Request, id, secret string) (store.Client, error) {
	fail := oauthError("invalid_client", problem.Unauthorized("client authentication failed").WithField("client_id"))
	if id == "" || secret == "" {
		_ = bcrypt.CompareHashAndPassword(g.dummyHash, []byte(secret))
		return store.Client{}, oauthError("invalid_client",
			problem.Unauthorized("client_id and client_secret are required").WithField("client_id"))
	}
	client, err := g.store.Client(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		_ = bcrypt.CompareHashAndPassword(g.dummyHash, []byte(secret))
		return store.Client{}, fail
	case err != nil:
		return store.Client{}, fmt.Errorf("read client: %w", err)
	}
	if err := bcrypt.CompareHashAndPassword(client.SecretHash, []byte(secret)); err != nil {
		return store.Client{}, fail
	}
	if client.Disabled {
		return store.Client{}, fail
	}
	return client, nil
}
