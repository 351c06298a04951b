// Package httpapi is what the gateway's APIs share: who the caller is
// (bearer tokens, scopes), how an error becomes an application/problem+json
// answer (written once, logged only when it is a 500), how request bodies
// and parameters are read, the mux that knows its routes, the access log,
// the HTTP metrics and the rate limiter. Each API (submission, routing,
// token, admin) is a package of its own that registers its routes on a Mux.
package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/scope"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// Principal is the verified caller of a request.
type Principal struct {
	// Subject is the token's sub: the client id for Amtsbote's own tokens.
	// It is the actor of audit entries.
	Subject string
	// Issuer is the token's iss.
	Issuer string
	// Scopes are the token's recognised scopes.
	Scopes scope.Set
}

// Verifier verifies an access token. Its errors are InvalidToken
// problems (or a failure of its own, a 500).
type Verifier interface {
	Verify(ctx context.Context, token string) (Principal, error)
}

// Handler is a handler that runs for a verified caller; the error it
// returns is answered as a problem.
type Handler func(w http.ResponseWriter, r *http.Request, p Principal) error

// PublicHandler is a handler that needs no caller; the error it returns
// is answered as a problem.
type PublicHandler func(w http.ResponseWriter, r *http.Request) error

// API is what every part of the gateway shares. It is safe for
// concurrent use.
type API struct {
	// Realm names the service in WWW-Authenticate challenges: its public URL.
	Realm string
	// MaxBody bounds request bodies read whole, in bytes.
	MaxBody int64
	// Verifier checks bearer tokens.
	Verifier Verifier
	// Log receives what becomes a 500, once.
	Log *slog.Logger
	// PublicLimit is the per-address limit of the routes anyone may call
	// (Unauthenticated, Public); nil for none.
	PublicLimit *Limiter
	// Transient, when set, tells a failure of the store to answer (it is
	// unreachable or refuses connections) from other errors: the request
	// is answered 503 to be retried, not 500.
	Transient func(error) bool
}

// Authed requires a valid bearer token and runs h for its principal.
func (a *API) Authed(h Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.authenticate(r)
		if err != nil {
			a.WriteError(w, r, err)
			return
		}
		if ri := infoFrom(r.Context()); ri != nil {
			ri.subject = p.Subject
		}
		if err := h(w, r, p); err != nil {
			a.WriteError(w, r, err)
		}
	})
}

// Admin is Authed plus the operator scope.
func (a *API) Admin(h Handler) http.Handler {
	authed := a.Authed(func(w http.ResponseWriter, r *http.Request, p Principal) error {
		if !p.Scopes.IsAdmin() {
			return Forbidden(scope.Admin, "the operator API requires scope "+scope.Admin)
		}
		return h(w, r, p)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Clients, secrets, audit entries: no cache keeps a copy.
		w.Header().Set("Cache-Control", "no-store")
		authed.ServeHTTP(w, r)
	})
}

// Public runs h for anyone, within PublicLimit.
func (a *API) Public(h PublicHandler) http.Handler {
	return a.Unauthenticated(a.public(h))
}

func (a *API) public(h PublicHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			a.WriteError(w, r, err)
		}
	})
}

// authenticate verifies the bearer token of r.
func (a *API) authenticate(r *http.Request) (Principal, error) {
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
	return a.Verifier.Verify(r.Context(), strings.TrimSpace(raw))
}

// authError is a 401 with the RFC 6750 challenge that goes with it.
type authError struct {
	p *problem.Problem
	// code is the RFC 6750 error code; empty when no credentials came.
	code string
}

func (e *authError) Error() string { return e.p.Error() }
func (e *authError) Unwrap() error { return e.p }

// InvalidToken is a 401 for a bearer token that does not verify.
func InvalidToken(format string, args ...any) error {
	d := fmt.Sprintf(format, args...)
	return &authError{p: problem.Unauthorized(d), code: "invalid_token"}
}

// scopeError is a 403 with an insufficient_scope challenge naming the
// scope that would have allowed the request.
type scopeError struct {
	p     *problem.Problem
	scope string
}

func (e *scopeError) Error() string { return e.p.Error() }
func (e *scopeError) Unwrap() error { return e.p }

// Forbidden is a 403 naming the scope that would have allowed the request.
func Forbidden(scope, detail string) error {
	return &scopeError{p: problem.Forbidden(detail).WithField("scope"), scope: scope}
}

// QuoteSafe keeps a description inside an RFC 6750 quoted string, whose
// allowed characters exclude '"' and '\'.
func QuoteSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 || r > 0x7e {
			return '\''
		}
		return r
	}, s)
}

// WriteError answers with the problem err carries. Errors that are not
// problems become a 500 and are logged here, once; their text never
// reaches the client.
func (a *API) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	a.WriteErrorAs(w, r, err, problem.ContentType)
}

// WriteErrorAs answers as WriteError does, under another Content-Type
// (problem.WriteAs).
func (a *API) WriteErrorAs(w http.ResponseWriter, r *http.Request, err error, contentType string) {
	var ae *authError
	var se *scopeError
	var re *retryError
	if errors.As(err, &re) {
		secs := retrySeconds(re.after)
		w.Header().Set("Retry-After", secs)
		if re.p.Status == http.StatusTooManyRequests && (re.by != nil || w.Header().Get(headerLimit) != "") {
			// A limit of the handler's own refused it within Throttle's
			// quota: its headers must not tell the client to go on.
			if re.by != nil {
				_, limit, policy := re.by.policy()
				w.Header().Set(headerLimit, limit)
				w.Header().Set(headerPolicy, policy)
			}
			w.Header().Set(headerRemaining, "0")
			w.Header().Set(headerReset, secs)
		}
	}
	switch {
	case errors.As(err, &ae):
		challenge := `Bearer realm="` + QuoteSafe(a.Realm) + `"`
		if ae.code != "" {
			challenge += `, error="` + ae.code + `", error_description="` + QuoteSafe(ae.p.Detail) + `"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
	case errors.As(err, &se):
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+QuoteSafe(a.Realm)+`", error="insufficient_scope", scope="`+QuoteSafe(se.scope)+`"`)
	}
	p, ok := problem.As(err)
	if !ok {
		switch {
		case errors.Is(err, store.ErrNotFound):
			p = problem.NotFound("", "the requested resource does not exist")
		case errors.Is(err, store.ErrConflict):
			p = problem.Conflict("", "the request conflicts with an existing record")
		case errors.Is(err, http.ErrAbortHandler):
			panic(err)
		case a.Transient != nil && a.Transient(err):
			a.Log.WarnContext(r.Context(), "store failed", "method", r.Method, "route", RouteOf(r), "err", err)
			p = problem.Unavailable("the store did not answer; retry the request")
		default:
			a.Log.ErrorContext(r.Context(), "request failed", "method", r.Method, "route", RouteOf(r), "err", err)
			p = problem.Internal()
		}
	}
	// A client told to come back is told when.
	if (p.Status == http.StatusServiceUnavailable || p.Status == http.StatusTooManyRequests) && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1")
	}
	problem.WriteAs(w, p, contentType)
}

// Unavailable logs a failure of the message bus and answers 503: the
// request may be retried as it is.
func (a *API) Unavailable(r *http.Request, op string, err error) error {
	a.Log.WarnContext(r.Context(), "message bus failed", "op", op, "route", RouteOf(r), "err", err)
	return problem.Unavailable(op + ": the message bus did not answer; retry the request")
}

// ReadBody reads the whole body within MaxBody (ReadLimited).
func (a *API) ReadBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	return ReadLimited(w, r, a.MaxBody)
}

// readAhead bounds the buffer a body's announced length reserves before
// the body arrives.
const readAhead = 1 << 20

// ReadLimited reads the whole body within limit bytes. A body announced
// or found longer is refused with 413 without reading the rest; one that
// does not arrive in time (Deadlines) with 408.
func ReadLimited(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, problem.BodyTooLarge(limit)
	}
	// Sized by the announced length, up to readAhead, so that a form of a
	// few KiB is read without growing the buffer again and again.
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(min(r.ContentLength, readAhead)) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	body := buf.Bytes()
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, problem.BodyTooLarge(mbe.Limit)
		}
		if p, ok := problem.As(err); ok {
			return nil, p
		}
		return nil, problem.InvalidRequest("body", fmt.Sprintf("reading the request body: %v", err))
	}
	return body, nil
}

// DecodeRequest checks that the request is JSON and reads its body into
// v (problem.DecodeJSON); strict refuses members v does not declare.
func (a *API) DecodeRequest(w http.ResponseWriter, r *http.Request, v any, strict bool) error {
	if err := RequireContentType(r, "application/json"); err != nil {
		return err
	}
	body, err := a.ReadBody(w, r)
	if err != nil {
		return err
	}
	return problem.DecodeJSON(body, v, strict)
}
