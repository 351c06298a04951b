package client

import (
	"crypto/hmac"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/amtsbote/amtsbote/pkg/problem"
)

// Callback rules of FIT-Connect.
const (
	// CallbackAuthenticationHeader carries the hex HMAC-SHA512 of
	// timestamp + "." + body, keyed with the callback secret.
	CallbackAuthenticationHeader = "Callback-Authentication"
	// CallbackTimestampHeader carries the signing time in Unix seconds.
	CallbackTimestampHeader = "Callback-Timestamp"
	// CallbackMaxAge is how far a callback's timestamp may lie in the past
	// or, for clock skew, in the future.
	CallbackMaxAge = 5 * time.Minute
	// MinCallbackSecret and MaxCallbackSecret bound a callback secret in
	// characters.
	MinCallbackSecret = 32
	MaxCallbackSecret = 512
	// MaxCallbackBody bounds the body CallbackHandler reads.
	MaxCallbackBody = 1 << 20
	// maxTimestampDigits allows every Unix time up to the year 2286 and
	// nothing long enough to overflow.
	maxTimestampDigits = 10
)

// Errors of VerifyCallback, each wrapped with the detail.
var (
	// ErrCallbackSecret means the secret breaks FIT-Connect's length rule.
	ErrCallbackSecret = errors.New("callback secret must have 32 to 512 characters")
	// ErrCallbackHeader means a callback header is missing or repeated.
	ErrCallbackHeader = errors.New("callback header missing")
	// ErrCallbackTimestamp means the timestamp is no Unix time in seconds.
	ErrCallbackTimestamp = errors.New("malformed callback timestamp")
	// ErrCallbackExpired means the timestamp is older than CallbackMaxAge.
	ErrCallbackExpired = errors.New("callback expired")
	// ErrCallbackFuture means the timestamp lies more than CallbackMaxAge
	// ahead.
	ErrCallbackFuture = errors.New("callback timestamp in the future")
	// ErrCallbackSignature means the authentication is malformed or does
	// not match the body, timestamp and secret.
	ErrCallbackSignature = errors.New("callback signature invalid")
	// ErrCallbackTooLarge means the body exceeds MaxCallbackBody.
	ErrCallbackTooLarge = errors.New("callback body too large")
)

// CheckCallbackSecret returns ErrCallbackSecret unless secret has 32 to
// 512 characters.
func CheckCallbackSecret(secret string) error {
	if n := utf8.RuneCountInString(secret); n < MinCallbackSecret || n > MaxCallbackSecret {
		return fmt.Errorf("%w, has %d", ErrCallbackSecret, n)
	}
	return nil
}

// SignCallback returns the Callback-Timestamp and Callback-Authentication
// header values for body, sent at the given time, as FIT-Connect's
// delivery service makes them.
func SignCallback(secret string, body []byte, at time.Time) (timestamp, signature string) {
	timestamp = strconv.FormatInt(at.Unix(), 10)
	return timestamp, hex.EncodeToString(callbackMAC(secret, timestamp, body))
}

func callbackMAC(secret, timestamp string, body []byte) []byte {
	m := hmac.New(sha512.New, []byte(secret))
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// VerifyCallback checks a callback received at now: both headers present
// once, the timestamp a decimal Unix time, the authentication the hex
// HMAC-SHA512 of timestamp + "." + body under secret (compared in
// constant time), and the timestamp no more than CallbackMaxAge from now
// in either direction. header is the request's, as net/http delivers it.
//
// A callback is a notification ("new submissions", "new events") whose
// receiver then asks the API for what is new, so a callback replayed
// within CallbackMaxAge verifies again and costs the receiver one
// listing. VerifyCallback keeps no replay cache for that reason, which
// also lets a sender retry a callback unchanged.
//
// Errors wrap ErrCallbackSecret, ErrCallbackHeader, ErrCallbackTimestamp,
// ErrCallbackSignature, ErrCallbackExpired or ErrCallbackFuture. The
// signature is checked before the time, so that a forged callback is
// called forged, whatever its timestamp.
func VerifyCallback(secret string, header http.Header, body []byte, now time.Time) error {
	if err := CheckCallbackSecret(secret); err != nil {
		return fmt.Errorf("verify callback: %w", err)
	}
	timestamp, err := oneHeader(header, CallbackTimestampHeader)
	if err != nil {
		return fmt.Errorf("verify callback: %w", err)
	}
	auth, err := oneHeader(header, CallbackAuthenticationHeader)
	if err != nil {
		return fmt.Errorf("verify callback: %w", err)
	}
	at, err := parseTimestamp(timestamp)
	if err != nil {
		return fmt.Errorf("verify callback: %w", err)
	}
	got, err := hex.DecodeString(auth)
	if err != nil || len(got) != sha512.Size {
		return fmt.Errorf("verify callback: %w: %s must be %d hex digits", ErrCallbackSignature, CallbackAuthenticationHeader, 2*sha512.Size)
	}
	if !hmac.Equal(got, callbackMAC(secret, timestamp, body)) {
		return fmt.Errorf("verify callback: %w: does not match body, timestamp and secret", ErrCallbackSignature)
	}
	switch age := now.Sub(at); {
	case age > CallbackMaxAge:
		return fmt.Errorf("verify callback: %w: signed %s ago, more than %s", ErrCallbackExpired, age.Truncate(time.Second), CallbackMaxAge)
	case -age > CallbackMaxAge:
		return fmt.Errorf("verify callback: %w: signed %s ahead, more than %s", ErrCallbackFuture, (-age).Truncate(time.Second), CallbackMaxAge)
	}
	return nil
}

func oneHeader(h http.Header, name string) (string, error) {
	switch v := h.Values(name); len(v) {
	case 0:
		return "", fmt.Errorf("%w: %s", ErrCallbackHeader, name)
	case 1:
		if v[0] == "" {
			return "", fmt.Errorf("%w: %s is empty", ErrCallbackHeader, name)
		}
		return v[0], nil
	default:
		return "", fmt.Errorf("%w: %s appears %d times", ErrCallbackHeader, name, len(v))
	}
}

// parseTimestamp reads decimal Unix seconds: digits only, no sign.
func parseTimestamp(s string) (time.Time, error) {
	if len(s) > maxTimestampDigits {
		return time.Time{}, fmt.Errorf("%w: %s has more than %d digits", ErrCallbackTimestamp, CallbackTimestampHeader, maxTimestampDigits)
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return time.Time{}, fmt.Errorf("%w: %s %q is not a number of seconds", ErrCallbackTimestamp, CallbackTimestampHeader, s)
		}
		n = n*10 + int64(c-'0')
	}
	return time.Unix(n, 0), nil
}

// CallbackHandler returns a handler for FIT-Connect callbacks: it accepts
// POST only (405 otherwise), reads the body up to MaxCallbackBody (413
// beyond), verifies it with VerifyCallback at the time of arrival and
// answers a failure with 401 and an application/problem+json naming the
// reason. A verified callback goes to next with the body read.
func CallbackHandler(secret string, next func(w http.ResponseWriter, r *http.Request, body []byte)) (http.Handler, error) {
	return callbackHandler(secret, time.Now, next)
}

func callbackHandler(secret string, now func() time.Time, next func(http.ResponseWriter, *http.Request, []byte)) (http.Handler, error) {
	if err := CheckCallbackSecret(secret); err != nil {
		return nil, fmt.Errorf("callback handler: %w", err)
	}
	if next == nil {
		return nil, errors.New("callback handler: no next handler")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			problem.Write(w, problem.New(problem.TypeMethodNotAllowed, "Method not allowed",
				http.StatusMethodNotAllowed, "", "callbacks are POST requests"))
			return
		}
		arrived := now()
		body, err := io.ReadAll(io.LimitReader(r.Body, MaxCallbackBody+1))
		if err != nil {
			problem.Write(w, problem.New(problem.TypeInvalidRequest, "Invalid request",
				http.StatusBadRequest, "", "read callback body: "+err.Error()))
			return
		}
		if len(body) > MaxCallbackBody {
			problem.Write(w, problem.New(problem.TypeBodyTooLarge, "Body too large",
				http.StatusRequestEntityTooLarge, "", fmt.Sprintf("%v: more than %d bytes", ErrCallbackTooLarge, MaxCallbackBody)))
			return
		}
		if err := VerifyCallback(secret, r.Header, body, arrived); err != nil {
			field := CallbackAuthenticationHeader
			if errors.Is(err, ErrCallbackTimestamp) || errors.Is(err, ErrCallbackExpired) || errors.Is(err, ErrCallbackFuture) ||
				(errors.Is(err, ErrCallbackHeader) && len(r.Header.Values(CallbackTimestampHeader)) != 1) {
				field = CallbackTimestampHeader
			}
			problem.Write(w, problem.New(problem.TypeUnauthorized, "Unauthorized", http.StatusUnauthorized, field, err.Error()))
			return
		}
		next(w, r, body)
	}), nil
}
