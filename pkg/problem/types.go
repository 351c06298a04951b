package problem

import (
	"fmt"
	"net/http"
	"strings"
)

// Problem types. FIT-Connect's own types are used where FIT-Connect defines
// one for the situation; the rest are Amtsbote's, under Base.
const (
	TypeSubmissionNotFound      = FITConnectBase + "submission-not-found"
	TypeDestinationNotFound     = FITConnectBase + "destination-not-found"
	TypeDestinationStateInvalid = FITConnectBase + "destination-state-invalid"

	TypeInvalidRequest       = Base + "invalid-request"
	TypeMalformedJSON        = Base + "malformed-json"
	TypeUnknownField         = Base + "unknown-field"
	TypeInvalidValue         = Base + "invalid-value"
	TypeInvalidKey           = Base + "invalid-key"
	TypeUnauthorized         = Base + "unauthorized"
	TypeForbidden            = Base + "forbidden"
	TypeNotFound             = Base + "not-found"
	TypeKeyNotFound          = Base + "key-not-found"
	TypeMethodNotAllowed     = Base + "method-not-allowed"
	TypeConflict             = Base + "conflict"
	TypeBodyTooLarge         = Base + "body-too-large"
	TypeHeaderTooLarge       = Base + "header-too-large"
	TypeRequestTimeout       = Base + "request-timeout"
	TypeUnsupportedMediaType = Base + "unsupported-media-type"
	TypeUnprocessable        = Base + "unprocessable"
	TypeTooManyRequests      = Base + "too-many-requests"
	TypeInternal             = Base + "internal-error"
	TypeUnavailable          = Base + "unavailable"
)

// New returns a problem of the given type. A detail that does not mention
// field is prefixed with it, so the detail alone tells what to fix.
func New(typ, title string, status int, field, detail string) *Problem {
	return &Problem{Type: typ, Title: title, Status: status, Field: field, Detail: withField(field, detail)}
}

func withField(field, detail string) string {
	if field == "" || strings.Contains(detail, field) {
		return detail
	}
	if detail == "" {
		return field
	}
	return field + ": " + detail
}

// InvalidRequest is a 400 for a request that is wrong in a way no more
// specific type describes (a bad query or path parameter, a form field).
func InvalidRequest(field, detail string) *Problem {
	return New(TypeInvalidRequest, "Invalid request", http.StatusBadRequest, field, detail)
}

// MalformedJSON is a 400 for a body that is not JSON or does not fit the
// expected structure; field is the JSON path or the byte offset where
// decoding stopped.
func MalformedJSON(field, detail string) *Problem {
	return New(TypeMalformedJSON, "Malformed JSON", http.StatusBadRequest, field, detail)
}

// UnknownField is a 400 for a member the schema does not allow.
func UnknownField(field string) *Problem {
	return New(TypeUnknownField, "Unknown field", http.StatusBadRequest, field,
		fmt.Sprintf("field %s is not allowed here", field))
}

// Invalid is a 400 for a value that breaks a rule of its field.
func Invalid(field, detail string) *Problem {
	return New(TypeInvalidValue, "Invalid value", http.StatusBadRequest, field, detail)
}

// InvalidKey is a 400 for a JWK that breaks one of FIT-Connect's key rules.
func InvalidKey(field, detail string) *Problem {
	return New(TypeInvalidKey, "Invalid key", http.StatusBadRequest, field, detail)
}

// Unauthorized is a 401: no token, or one that cannot be accepted.
func Unauthorized(detail string) *Problem {
	return New(TypeUnauthorized, "Unauthorized", http.StatusUnauthorized, "Authorization", detail)
}

// Forbidden is a 403: the token is valid but its scopes do not cover the request.
func Forbidden(detail string) *Problem {
	return New(TypeForbidden, "Forbidden", http.StatusForbidden, "", detail)
}

// NotFound is a 404 for a resource no more specific type describes.
func NotFound(field, detail string) *Problem {
	return New(TypeNotFound, "Not found", http.StatusNotFound, field, detail)
}

// DestinationNotFound is a 404 for an unknown destination.
func DestinationNotFound(id string) *Problem {
	return New(TypeDestinationNotFound, "Destination not found", http.StatusNotFound, "destinationId",
		fmt.Sprintf("destination %s does not exist", id))
}

// KeyNotFound is a 404 for an unknown or expired key of a destination.
func KeyNotFound(destinationID, kid string) *Problem {
	return New(TypeKeyNotFound, "Key not found", http.StatusNotFound, "keyId",
		fmt.Sprintf("destination %s has no valid key %s", destinationID, kid))
}

// SubmissionNotFound is FIT-Connect's 404 for an unknown submission.
func SubmissionNotFound(id string) *Problem {
	return New(TypeSubmissionNotFound, "Submission not found", http.StatusNotFound, "submissionId",
		fmt.Sprintf("submission %s does not exist or is not this client's", id))
}

// MethodNotAllowed is a 405; allowed lists the methods the resource offers.
func MethodNotAllowed(method string, allowed ...string) *Problem {
	d := fmt.Sprintf("method %s is not allowed here", method)
	if len(allowed) > 0 {
		d += "; allowed: " + strings.Join(allowed, ", ")
	}
	return New(TypeMethodNotAllowed, "Method not allowed", http.StatusMethodNotAllowed, "", d)
}

// Conflict is a 409: the request contradicts existing state (a duplicate
// id, an invalid state transition).
func Conflict(field, detail string) *Problem {
	return New(TypeConflict, "Conflict", http.StatusConflict, field, detail)
}

// BodyTooLarge is a 413 for a body over limit bytes.
func BodyTooLarge(limit int64) *Problem {
	return New(TypeBodyTooLarge, "Request body too large", http.StatusRequestEntityTooLarge, "body",
		fmt.Sprintf("the request body exceeds the limit of %d bytes", limit))
}

// HeaderTooLarge is a 431 for a request line and header fields over limit
// bytes together.
func HeaderTooLarge(limit int) *Problem {
	return New(TypeHeaderTooLarge, "Request header fields too large", http.StatusRequestHeaderFieldsTooLarge, "",
		fmt.Sprintf("the request line and header fields exceed the limit of %d bytes", limit))
}

// RequestTimeout is a 408 for a request body that did not arrive in time.
func RequestTimeout(detail string) *Problem {
	return New(TypeRequestTimeout, "Request timeout", http.StatusRequestTimeout, "body", detail)
}

// UnsupportedMediaType is a 415 for a body whose Content-Type is not one of want.
func UnsupportedMediaType(got string, want ...string) *Problem {
	if got == "" {
		got = "none"
	}
	return New(TypeUnsupportedMediaType, "Unsupported media type", http.StatusUnsupportedMediaType, "Content-Type",
		fmt.Sprintf("content type %s is not supported; use %s", got, strings.Join(want, " or ")))
}

// Unprocessable is a 422: well-formed but not acceptable in substance
// (an unknown region or service, a destination not responsible).
func Unprocessable(field, detail string) *Problem {
	return New(TypeUnprocessable, "Unprocessable request", http.StatusUnprocessableEntity, field, detail)
}

// TooManyRequests is a 429.
func TooManyRequests(detail string) *Problem {
	return New(TypeTooManyRequests, "Too many requests", http.StatusTooManyRequests, "", detail)
}

// Internal is a 500. Its detail never carries the cause; log that instead.
func Internal() *Problem {
	return New(TypeInternal, "Internal server error", http.StatusInternalServerError, "",
		"the server could not complete the request")
}

// Unavailable is a 503: a dependency is down; retry later.
func Unavailable(detail string) *Problem {
	return New(TypeUnavailable, "Service unavailable", http.StatusServiceUnavailable, "", detail)
}
