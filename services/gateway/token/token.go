// Package token is Amtsbote's OAuth2 token endpoint and access token
// verifier: POST /token issues short-lived PS512 JWTs to OAuth clients
// (client credentials, client_secret_post or _basic), GET
// /.well-known/jwks.json publishes the key they and Amtsbote's other
// signatures verify with, and Verify checks the bearer tokens of every
// other endpoint, Amtsbote's own or those of an external OIDC issuer.
package token

import (
	"cmp"
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"

	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/scope"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/gateway/httpapi"
)

// DefaultTTL is the lifetime of issued access tokens.
const DefaultTTL = 30 * time.Minute

// Defaults of the token endpoint's limits.
const (
	// DefaultMaxBody bounds a token request's form: a client id, a secret,
	// a grant type and scopes fit many times over.
	DefaultMaxBody int64 = 4 << 10
	// DefaultHashWait is how long a request waits for a free secret
	// comparison before it is answered 503.
	DefaultHashWait = 2 * time.Second
	// DefaultVerifiedTokens: far more clients than a gateway serves at
	// once, a few MiB at most.
	DefaultVerifiedTokens = 10000
)

// Default limits of failed client authentications.
var (
	// DefaultClientFailures: ten wrong secrets for one client id from one
	// address, then one every ten seconds.
	DefaultClientFailures = httpapi.Rate{PerSecond: 0.1, Burst: 10}
	// DefaultAddressFailures: fifty failures from one address, then one a
	// second, so guessing across many client ids is slow too.
	DefaultAddressFailures = httpapi.Rate{PerSecond: 1, Burst: 50}
)

// Clock skew tolerated on exp, nbf and iat: an external issuer's clock
// may be off by leeway; Amtsbote's own tokens are issued and checked by
// the gateways of one installation, whose clocks agree far closer.
const (
	leeway    = 30 * time.Second
	ownLeeway = 5 * time.Second
)

// externalAlgs are the signature algorithms accepted from an external
// issuer; Amtsbote's own tokens are PS512 only.
var externalAlgs = []gojose.SignatureAlgorithm{
	gojose.PS512, gojose.PS384, gojose.PS256, gojose.RS512, gojose.RS384, gojose.RS256,
	gojose.ES512, gojose.ES384, gojose.ES256, gojose.EdDSA,
}

// Clients looks up OAuth clients.
type Clients interface {
	Client(ctx context.Context, id string) (store.Client, error)
}

// Config is what a Service needs. API, Clients, Key and URL are required.
type Config struct {
	API     *httpapi.API
	Clients Clients
	// Key is Amtsbote's PS512 key; it signs access tokens and is published
	// in the JWKS.
	Key jose.KeyPair
	// URL is the gateway's public URL: the issuer and audience of tokens.
	URL string
	// TTL of issued tokens (default DefaultTTL).
	TTL time.Duration
	// OIDCIssuer, when set, is an external issuer whose tokens are accepted
	// too; its keys are discovered through its openid-configuration with
	// HTTPClient (default: 10-second timeout).
	OIDCIssuer string
	HTTPClient *http.Client
	Logger     *slog.Logger
	Now        func() time.Time

	// MaxBody bounds the token request's body (default DefaultMaxBody).
	MaxBody int64
	// ClientFailures and AddressFailures limit failed authentications per
	// client id and per client address (defaults DefaultClientFailures,
	// DefaultAddressFailures); beyond them the endpoint answers 429 with
	// Retry-After before comparing a secret.
	ClientFailures  httpapi.Rate
	AddressFailures httpapi.Rate
	// Hashes bounds the secret comparisons running at once (default
	// GOMAXPROCS); a request waits at most HashWait (default
	// DefaultHashWait) for one, then gets 503 with Retry-After.
	Hashes   int
	HashWait time.Duration
	// VerifiedTokens bounds how many of Amtsbote's own tokens are
	// remembered after their signature verified (default
	// DefaultVerifiedTokens, negative: none); a remembered token's claims
	// are checked again on every request, its signature not. Tokens of
	// the external issuer are not remembered.
	VerifiedTokens int
}

// Service issues and verifies access tokens. It is safe for concurrent use.
type Service struct {
	api     *httpapi.API
	clients Clients
	key     *rsa.PrivateKey
	url     string
	ttl     time.Duration
	now     func() time.Time
	signer  gojose.Signer
	jwks    []byte
	oidc    *oidcKeys
	// verified remembers own tokens whose signature verified.
	verified *verifiedCache
	// disabled remembers, per client id, whether the client was disabled
	// when last read (a clientState), so that its tokens stop working
	// within clientStateTTL of it being disabled.
	disabled sync.Map

	maxBody         int64
	clientFailures  *httpapi.Limiter
	addressFailures *httpapi.Limiter
	hashes          chan struct{}
	hashWait        time.Duration
}

// New checks cfg and prepares the signer and the JWKS.
func New(cfg Config) (*Service, error) {
	switch {
	case cfg.API == nil || cfg.Clients == nil:
		return nil, errors.New("new token service: no API or clients")
	case cfg.Key.Private == nil || cfg.Key.Public.KeyID == "":
		return nil, errors.New("new token service: no signing key with a kid")
	case cfg.Key.Purpose != jose.Signing:
		return nil, fmt.Errorf("new token service: signing key has purpose %q, want %q", cfg.Key.Purpose, jose.Signing)
	case cfg.URL == "":
		return nil, errors.New("new token service: no url")
	}
	s := &Service{api: cfg.API, clients: cfg.Clients, key: cfg.Key.Private, url: cfg.URL, ttl: cfg.TTL, now: cfg.Now}
	s.verified = newVerifiedCache(cmp.Or(cfg.VerifiedTokens, DefaultVerifiedTokens))
	if s.ttl == 0 {
		s.ttl = DefaultTTL
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.maxBody = cmp.Or(cfg.MaxBody, DefaultMaxBody)
	s.clientFailures = cmp.Or(cfg.ClientFailures, DefaultClientFailures).NewLimiter()
	s.addressFailures = cmp.Or(cfg.AddressFailures, DefaultAddressFailures).NewLimiter()
	s.hashes = make(chan struct{}, cmp.Or(cfg.Hashes, runtime.GOMAXPROCS(0)))
	s.hashWait = cmp.Or(cfg.HashWait, DefaultHashWait)
	signer, err := gojose.NewSigner(
		gojose.SigningKey{Algorithm: gojose.PS512, Key: gojose.JSONWebKey{Key: cfg.Key.Private, KeyID: cfg.Key.Public.KeyID}},
		(&gojose.SignerOptions{}).WithType("at+jwt"),
	)
	if err != nil {
		return nil, fmt.Errorf("new token service: signer: %w", err)
	}
	s.signer = signer
	pub, err := cfg.Key.PublicJSON()
	if err != nil {
		return nil, fmt.Errorf("new token service: %w", err)
	}
	s.jwks = []byte(`{"keys":[` + string(pub) + `]}`)
	if cfg.OIDCIssuer != "" {
		client := cfg.HTTPClient
		if client == nil {
			client = &http.Client{Timeout: 10 * time.Second}
		}
		log := cfg.Logger
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		s.oidc = newOIDCKeys(strings.TrimRight(cfg.OIDCIssuer, "/"), client, s.now, log)
	}
	return s, nil
}

// Routes registers POST /token and GET /.well-known/jwks.json.
func (s *Service) Routes(m *httpapi.Mux) {
	m.Handle("POST /token", s.api.Unauthenticated(http.HandlerFunc(s.handleToken)))
	m.Handle("GET /.well-known/jwks.json", s.api.Unauthenticated(http.HandlerFunc(s.handleJWKS)))
}

// handleJWKS publishes Amtsbote's public signing key(s): they verify access
// tokens, route signatures and Amtsbote's own security event tokens.
func (s *Service) handleJWKS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(s.jwks)
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
func (s *Service) handleToken(w http.ResponseWriter, r *http.Request) {
	// RFC 6749 5.1 and 5.2: token answers must not be cached.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	resp, err := s.issueToken(w, r)
	if err != nil {
		// RFC 6749 5.2: OAuth's error responses are application/json;
		// what is no OAuth error (a timeout, an overload) stays a problem.
		ct := problem.ContentType
		if p, ok := problem.As(err); ok {
			if p.Status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Basic realm="`+httpapi.QuoteSafe(s.url)+`"`)
			}
			if p.Extra["error"] != nil {
				ct = "application/json"
			}
		}
		s.api.WriteErrorAs(w, r, err, ct)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, resp)
}

func (s *Service) issueToken(w http.ResponseWriter, r *http.Request) (tokenResponse, error) {
	if err := httpapi.RequireContentType(r, "application/x-www-form-urlencoded"); err != nil {
		p, _ := problem.As(err)
		return tokenResponse{}, oauthError("invalid_request", p)
	}
	body, err := httpapi.ReadLimited(w, r, s.maxBody)
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
		// One way to authenticate (RFC 6749 2.3): a client_id beside
		// Basic only identifies the client, and must be Basic's.
		switch {
		case secret != "":
			return tokenResponse{}, oauthError("invalid_request", problem.InvalidRequest("client_secret",
				"authenticate the client either with client_secret in the body or with HTTP Basic, not both"))
		case id != "" && id != bid:
			return tokenResponse{}, oauthError("invalid_request", problem.InvalidRequest("client_id",
				"client_id in the body names another client than HTTP Basic"))
		}
		id, secret = bid, bsecret
	}
	client, err := s.authenticateClient(r, id, secret)
	if err != nil {
		return tokenResponse{}, err
	}

	scopes := client.Scopes
	// A parameter without a value counts as omitted (RFC 6749 §3.1).
	if requested := strings.Fields(form.Get("scope")); len(requested) > 0 {
		scopes = requested
		for _, s := range scopes {
			if !scope.Covers(client.Scopes, s) {
				return tokenResponse{}, oauthError("invalid_scope", problem.InvalidRequest("scope",
					fmt.Sprintf("scope %q is not granted to this client", s)))
			}
		}
	}
	if len(scopes) == 0 {
		return tokenResponse{}, oauthError("invalid_scope", problem.InvalidRequest("scope", "this client has no scopes"))
	}

	now := s.now()
	claims := tokenClaims{
		Claims: jwt.Claims{
			Issuer:    s.url,
			Subject:   client.ID,
			Audience:  jwt.Audience{s.url},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			Expiry:    jwt.NewNumericDate(now.Add(s.ttl)),
			ID:        uuid.NewString(),
		},
		ClientID:  client.ID,
		SecretGen: secretGen(client.SecretHash),
	}
	scope := strings.Join(scopes, " ")
	token, err := jwt.Signed(s.signer).Claims(claims).Claims(map[string]any{"scope": scope}).Serialize()
	if err != nil {
		return tokenResponse{}, fmt.Errorf("sign access token: %w", err)
	}
	httpapi.SetSubject(r, client.ID)
	return tokenResponse{AccessToken: token, TokenType: "Bearer", ExpiresIn: int64(s.ttl.Seconds()), Scope: scope}, nil
}

// authenticateClient checks id and secret. Every failure costs one bcrypt
// comparison, so response times do not tell which client ids exist. A
// comparison is made only within the failure limits of the client's
// address and of id, and only as many at once as Config.Hashes allows.
func (s *Service) authenticateClient(r *http.Request, id, secret string) (store.Client, error) {
	release, err := s.admit(r, id)
	if err != nil {
		return store.Client{}, err
	}
	client, err := s.checkSecret(r, id, secret)
	if err == nil {
		release(true)
		return client, nil
	}
	_, isProblem := problem.As(err)
	// Only a wrong credential counts; a failing store is not the client's.
	release(!isProblem)
	return store.Client{}, err
}

// admit reserves a failure of the client's address and of id and a
// secret comparison. release frees the comparison and settles the
// reservations: a failed attempt (ok false) spends them.
func (s *Service) admit(r *http.Request, id string) (release func(ok bool), err error) {
	now := s.now()
	addr, key := httpapi.ClientAddress(r), httpapi.AddressKey(r)
	var settle []func(failed bool, now time.Time)
	settleAll := func(failed bool) {
		now := s.now()
		for _, done := range settle {
			done(failed, now)
		}
	}
	if s.addressFailures != nil {
		ok, wait, done := s.addressFailures.Reserve(key, now)
		if !ok {
			// No OAuth error: invalid_client would tell a client whose
			// secret is right that it is wrong.
			return nil, s.addressFailures.Refused(problem.TooManyRequests(
				fmt.Sprintf("too many failed client authentications from %s; retry in %ds", key, waitSeconds(wait))), wait)
		}
		settle = append(settle, done)
	}
	if s.clientFailures != nil && id != "" {
		// Per client id and address: failures from elsewhere do not lock
		// a client out, since client ids are not secret.
		ok, wait, done := s.clientFailures.Reserve(id+" "+addr, now)
		if !ok {
			settleAll(false)
			return nil, s.clientFailures.Refused(problem.TooManyRequests(
				fmt.Sprintf("too many failed authentications of client_id %q from %s; retry in %ds", id, addr, waitSeconds(wait))).WithField("client_id"), wait)
		}
		settle = append(settle, done)
	}
	timer := time.NewTimer(s.hashWait)
	defer timer.Stop()
	select {
	case s.hashes <- struct{}{}:
	case <-timer.C:
		settleAll(false)
		return nil, httpapi.RetryAfter(problem.Unavailable("too many token requests at once; retry shortly"), time.Second)
	case <-r.Context().Done():
		settleAll(false)
		return nil, problem.Unavailable("the request ended while waiting for a secret comparison")
	}
	return func(ok bool) {
		<-s.hashes
		settleAll(!ok)
	}, nil
}

// waitSeconds is wait in whole seconds, rounded up, at least 1: as the
// Retry-After header gives it.
func waitSeconds(wait time.Duration) int {
	return max(1, int(math.Ceil(wait.Seconds())))
}

// dummyHash makes a token request for an unknown client cost as much as
// one for a known client: a bcrypt hash at registry.SecretCost of a
// secret no client has. Only its cost matters, so it is a constant
// rather than made at every start.
var dummyHash = []byte("$2a$10$dit/D9bXNQ9IZS4mmGif0eW3W6nJNuSuGYH9WsRy0cNroqsuvT7mC")

// checkSecret compares secret with id's, or with a dummy for an unknown id.
func (s *Service) checkSecret(r *http.Request, id, secret string) (store.Client, error) {
	fail := oauthError("invalid_client", problem.Unauthorized("client authentication failed").WithField("client_id"))
	if id == "" || secret == "" {
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(secret))
		return store.Client{}, oauthError("invalid_client",
			problem.Unauthorized("client_id and client_secret are required").WithField("client_id"))
	}
	client, err := s.clients.Client(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(secret))
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

// tokenClaims are the claims Amtsbote reads from an access token.
type tokenClaims struct {
	jwt.Claims
	Scope    scopeClaim `json:"scope,omitempty"`
	Scp      scopeClaim `json:"scp,omitempty"`
	ClientID string     `json:"client_id,omitempty"`
	// SecretGen names the client secret an own token was issued for, so
	// that a new secret ends the tokens the old one got.
	SecretGen string `json:"secret_gen,omitempty"`
}

// secretGen is a short digest of a client's secret hash: it tells secrets
// apart and reveals nothing of the hash.
func secretGen(hash []byte) string {
	sum := sha256.Sum256(hash)
	return base64.RawURLEncoding.EncodeToString(sum[:9])
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

// Verify checks signature, issuer, audience and lifetime of an access
// token: one of Amtsbote's own, or of the external OIDC issuer.
func (s *Service) Verify(ctx context.Context, raw string) (httpapi.Principal, error) {
	sum := sha256.Sum256([]byte(raw))
	if claims, ok := s.verified.get(sum, s.now()); ok {
		return s.acceptOwn(ctx, claims)
	}
	if err := canonical(raw); err != nil {
		return httpapi.Principal{}, err
	}
	tok, err := jwt.ParseSigned(raw, externalAlgs)
	if err != nil {
		return httpapi.Principal{}, httpapi.InvalidToken("the token is not a signed JWT: %v", err)
	}
	if len(tok.Headers) != 1 {
		return httpapi.Principal{}, httpapi.InvalidToken("the token must carry exactly one signature")
	}
	hdr := tok.Headers[0]
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return httpapi.Principal{}, httpapi.InvalidToken("the token's claims are not readable: %v", err)
	}

	var key any
	switch {
	case unverified.Issuer == s.url:
		if hdr.Algorithm != string(gojose.PS512) {
			return httpapi.Principal{}, httpapi.InvalidToken("tokens of %s are signed with PS512, not %s", s.url, hdr.Algorithm)
		}
		if typ, _ := hdr.ExtraHeaders[gojose.HeaderType].(string); !strings.EqualFold(typ, "at+jwt") {
			return httpapi.Principal{}, httpapi.InvalidToken("the token is not an access token (typ %q, want at+jwt)", typ)
		}
		key = &s.key.PublicKey
	case s.oidc != nil && unverified.Issuer == s.oidc.issuer:
		k, err := s.oidc.key(ctx, hdr.KeyID)
		if err != nil {
			return httpapi.Principal{}, err
		}
		if k.Algorithm != "" && k.Algorithm != hdr.Algorithm {
			return httpapi.Principal{}, httpapi.InvalidToken("key %s is for %s, the token uses %s", hdr.KeyID, k.Algorithm, hdr.Algorithm)
		}
		key = k.Key
	default:
		return httpapi.Principal{}, httpapi.InvalidToken("tokens of issuer %q are not accepted", unverified.Issuer)
	}

	var claims tokenClaims
	if err := tok.Claims(key, &claims); err != nil {
		return httpapi.Principal{}, httpapi.InvalidToken("the token's signature does not verify with the issuer's key")
	}
	if unverified.Issuer != s.url {
		p, err := s.accept(claims)
		p.Subject = ExternalSubject + p.Subject
		return p, err
	}
	p, err := s.acceptOwn(ctx, claims)
	// Only Amtsbote's own tokens are remembered: its key lives as long as
	// the Service, while an external issuer's keys may be withdrawn.
	if err == nil {
		s.verified.put(sum, claims, s.now())
	}
	return p, err
}

// canonical refuses a token whose parts are not unpadded base64url in its
// one form: the decoder go-jose uses ignores set trailing bits, which
// would let one token be sent as several strings.
func canonical(raw string) error {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return httpapi.InvalidToken("the token is not a signed JWT: want three parts, got %d", len(parts))
	}
	for i, part := range parts {
		if _, err := base64.RawURLEncoding.Strict().DecodeString(part); err != nil {
			return httpapi.InvalidToken("the token's %s is not unpadded base64url: %v", [...]string{"header", "payload", "signature"}[i], err)
		}
	}
	return nil
}

// ExternalSubject begins the subject of an external issuer's token, so
// that it never names one of Amtsbote's own clients (whose ids hold no
// ':'): what one owns, the other does not.
const ExternalSubject = "oidc:"

// clientStateTTL bounds how long a client disabled, or given a new secret,
// elsewhere may still use the tokens it holds.
const clientStateTTL = 5 * time.Second

// clientState is what the Service last read of a client.
type clientState struct {
	disabled  bool
	secretGen string
	at        time.Time
}

// acceptOwn is accept for Amtsbote's own tokens, whose client must not be
// disabled nor have had its secret changed since. A client the store cannot be asked about is taken as last
// read, or as enabled: the request needs the store itself and fails there.
func (s *Service) acceptOwn(ctx context.Context, claims tokenClaims) (httpapi.Principal, error) {
	p, err := s.accept(claims)
	if err != nil {
		return p, err
	}
	now := s.now()
	v, ok := s.disabled.Load(p.Subject)
	st, _ := v.(clientState)
	if !ok || now.Sub(st.at) > clientStateTTL {
		switch c, err := s.clients.Client(ctx, p.Subject); {
		case err == nil:
			st = clientState{disabled: c.Disabled, secretGen: secretGen(c.SecretHash), at: now}
			s.disabled.Store(p.Subject, st)
		case errors.Is(err, store.ErrNotFound):
			st = clientState{at: now}
			s.disabled.Store(p.Subject, st)
		}
	}
	if st.disabled {
		return httpapi.Principal{}, httpapi.InvalidToken("client %s is disabled", p.Subject)
	}
	// Tokens issued before secret_gen existed carry none and run out.
	if claims.SecretGen != "" && st.secretGen != "" && claims.SecretGen != st.secretGen {
		return httpapi.Principal{}, httpapi.InvalidToken("client %s has a new secret since this token was issued; get a new token", p.Subject)
	}
	return p, nil
}

// accept checks the claims of a token whose signature verified and
// returns its principal. It is all of Verify that depends on the time.
func (s *Service) accept(claims tokenClaims) (httpapi.Principal, error) {
	if claims.Expiry == nil {
		return httpapi.Principal{}, httpapi.InvalidToken("the token has no expiry (exp)")
	}
	skew := leeway
	if claims.Issuer == s.url {
		skew = ownLeeway
	}
	err := claims.ValidateWithLeeway(jwt.Expected{
		Issuer:      claims.Issuer,
		AnyAudience: jwt.Audience{s.url},
		Time:        s.now(),
	}, skew)
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return httpapi.Principal{}, httpapi.InvalidToken("the token expired at %s", claims.Expiry.Time().UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
		return httpapi.Principal{}, httpapi.InvalidToken("the token is not valid yet")
	case errors.Is(err, jwt.ErrInvalidAudience):
		return httpapi.Principal{}, httpapi.InvalidToken("the token is not meant for this service (aud must contain %s)", s.url)
	case err != nil:
		return httpapi.Principal{}, httpapi.InvalidToken("the token's claims are not acceptable: %v", err)
	}
	sub := claims.Subject
	if sub == "" {
		sub = claims.ClientID
	}
	if sub == "" {
		return httpapi.Principal{}, httpapi.InvalidToken("the token names no subject (sub)")
	}
	scopes := claims.Scope
	if len(scopes) == 0 {
		scopes = claims.Scp
	}
	return httpapi.Principal{Subject: sub, Issuer: claims.Issuer, Scopes: scope.Parse(scopes)}, nil
}
