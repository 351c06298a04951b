package client

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// TokenSource hands out OAuth2 access tokens. Implementations must be safe
// for concurrent use. A source that also has an Invalidate method is told
// when the server refused its token, so that the next call fetches anew.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// ErrToken means the token endpoint refused the client or answered with
// something that is not an access token.
var ErrToken = errors.New("access token not issued")

// ClientCredentials fetches access tokens with OAuth2's client credentials
// grant, authenticating with client_secret_post, and caches each token
// until shortly before it expires. It is safe for concurrent use;
// concurrent callers wait for one fetch.
type ClientCredentials struct {
	TokenURL     string
	ClientID     string
	ClientSecret string
	// Scopes to request; none asks for all scopes granted to the client.
	Scopes []string
	// HTTPClient defaults to http.DefaultClient.
	HTTPClient *http.Client
	// Now defaults to time.Now.
	Now func() time.Time

	mu      sync.Mutex
	token   string
	refresh time.Time // when the cached token is to be replaced
	pending *tokenFetch
}

// tokenFetch is one fetch that concurrent callers wait for, each as long
// as its own context lets it.
type tokenFetch struct {
	done chan struct{}
	tok  string
	err  error
}

// tokenAnswer is RFC 6749's access token response, and its error response.
type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Error       string `json:"error"`
	Description string `json:"error_description"`
	Detail      string `json:"detail"`
}

// defaultLifetime is assumed for a token answer without expires_in.
const defaultLifetime = time.Minute

// tokenFetchFor bounds a fetch with its retries. It runs apart from the
// callers' contexts, so that one caller giving up (a readiness probe of a
// second) does not cut it short for the others.
const tokenFetchFor = time.Minute

// Token returns the cached token, or fetches a new one when there is none
// or the cached one is about to expire: a tenth of its lifetime, at most a
// minute, before. Concurrent callers share one fetch; each waits for it
// only as long as its ctx allows.
func (cc *ClientCredentials) Token(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("fetch token: %w", err)
	}
	cc.mu.Lock()
	now := cc.now()
	if cc.token != "" && now.Before(cc.refresh) {
		tok := cc.token
		cc.mu.Unlock()
		return tok, nil
	}
	f := cc.pending
	if f == nil {
		f = &tokenFetch{done: make(chan struct{})}
		cc.pending = f
		go cc.lead(context.WithoutCancel(ctx), f, now)
	}
	cc.mu.Unlock()
	select {
	case <-ctx.Done():
		return "", fmt.Errorf("fetch token: %w", ctx.Err())
	case <-f.done:
		return f.tok, f.err
	}
}

// lead runs the fetch f, within tokenFetchFor.
func (cc *ClientCredentials) lead(ctx context.Context, f *tokenFetch, now time.Time) {
	ctx, cancel := context.WithTimeout(ctx, tokenFetchFor)
	defer cancel()
	tok, refresh, err := cc.fetchRetrying(ctx, now)
	cc.mu.Lock()
	if err == nil {
		cc.token, cc.refresh = tok, refresh
	}
	cc.pending = nil
	cc.mu.Unlock()
	f.tok, f.err = tok, err
	close(f.done)
}

// fetchRetrying fetches a token, asking again while the endpoint is busy,
// and says when to replace it.
func (cc *ClientCredentials) fetchRetrying(ctx context.Context, now time.Time) (string, time.Time, error) {
	var (
		tok      string
		lifetime time.Duration
		err      error
	)
	for attempt := 0; ; attempt++ {
		var busy *busyError
		tok, lifetime, err = cc.fetch(ctx)
		if !errors.As(err, &busy) || attempt >= tokenTries-1 {
			break
		}
		// A token endpoint that is busy says when to come back; a
		// refused client is not asked again.
		wait := cmp.Or(busy.after, tokenBackoff<<attempt)
		wait += time.Duration(rand.Int64N(int64(wait)/4 + 1))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", time.Time{}, fmt.Errorf("fetch token: %w (after %w)", ctx.Err(), err)
		case <-t.C:
		}
	}
	if err != nil {
		return "", time.Time{}, err
	}
	return tok, now.Add(lifetime - min(lifetime/10, time.Minute)), nil
}

// Invalidate drops the cached token.
func (cc *ClientCredentials) Invalidate() {
	cc.mu.Lock()
	cc.token = ""
	cc.mu.Unlock()
}

func (cc *ClientCredentials) now() time.Time {
	if cc.Now != nil {
		return cc.Now()
	}
	return time.Now()
}

// Retries of a token request the endpoint answered 429 or 503, or that
// did not reach it.
const (
	tokenTries   = 6
	tokenBackoff = 250 * time.Millisecond
)

// busyError is a token request worth repeating: after says when, 0 when
// the endpoint did not say.
type busyError struct {
	err   error
	after time.Duration
}

func (e *busyError) Error() string { return e.err.Error() }
func (e *busyError) Unwrap() error { return e.err }

// tokenStatusError is the token endpoint's answer other than 200.
type tokenStatusError struct {
	status int
	err    error
}

func (e *tokenStatusError) Error() string { return e.err.Error() }
func (e *tokenStatusError) Unwrap() error { return e.err }

// TokenStatus returns the HTTP status of the token endpoint's answer when
// err is its refusal to issue a token (ErrToken with a status other than
// 200): a 4xx refuses the client, a 5xx is the server's failure.
func TokenStatus(err error) (int, bool) {
	var e *tokenStatusError
	if errors.As(err, &e) {
		return e.status, true
	}
	return 0, false
}

func (cc *ClientCredentials) fetch(ctx context.Context) (string, time.Duration, error) {
	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {cc.ClientID},
		"client_secret": {cc.ClientSecret},
	}
	if len(cc.Scopes) > 0 {
		form.Set("scope", strings.Join(cc.Scopes, " "))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cc.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, fmt.Errorf("fetch token: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	hc := cc.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		err = fmt.Errorf("fetch token: %w", err)
		if ctx.Err() == nil {
			err = &busyError{err: err}
		}
		return "", 0, err
	}
	defer drain(resp)
	var a tokenAnswer
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", 0, fmt.Errorf("fetch token: %w", err)
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	jsonErr := json.Unmarshal(body, &a)
	if resp.StatusCode != http.StatusOK {
		reason := strings.TrimSpace(string(body))
		if jsonErr == nil && a.Error != "" {
			reason = a.Error
			if d := cmp.Or(a.Description, a.Detail); d != "" {
				reason += ": " + d
			}
		}
		if len(reason) > 512 {
			reason = reason[:512] + "…"
		}
		var err error = &tokenStatusError{status: resp.StatusCode,
			err: fmt.Errorf("fetch token: %w: status %d: %s", ErrToken, resp.StatusCode, reason)}
		// As for every other request: a busy endpoint, or a proxy in front
		// of a gateway that is gone.
		switch resp.StatusCode {
		case http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusBadGateway, http.StatusGatewayTimeout:
			err = &busyError{err: err, after: retryAfter(resp)}
		}
		return "", 0, err
	}
	switch {
	case jsonErr != nil:
		return "", 0, fmt.Errorf("fetch token: %w: answer (%s) is not JSON: %v", ErrToken, mt, jsonErr)
	case a.AccessToken == "":
		return "", 0, fmt.Errorf("fetch token: %w: answer carries no access_token", ErrToken)
	case !strings.EqualFold(a.TokenType, "bearer"):
		return "", 0, fmt.Errorf("fetch token: %w: token_type %q, want Bearer", ErrToken, a.TokenType)
	}
	lifetime := defaultLifetime
	if a.ExpiresIn > 0 {
		lifetime = time.Duration(a.ExpiresIn) * time.Second
	}
	return a.AccessToken, lifetime, nil
}
