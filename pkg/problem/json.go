package problem

import (
	"errors"

	"github.com/amtsbote/amtsbote/pkg/strictjson"
)

// DecodeJSON reads body, one JSON object, into v with strictjson's rules:
// valid UTF-8, no member twice, member names matched exactly; with
// disallowUnknown a member v does not declare is refused too. Every
// failure is a *Problem naming the offending member ("body" for the body
// as a whole): 400 unknown-field for a member v does not declare (or
// declares in another case), 400 malformed-json for the rest. Long
// strings of v, such as a submission's JWEs, may refer to body, which
// must not change afterwards (strictjson.Options.ShareLong).
func DecodeJSON(body []byte, v any, disallowUnknown bool) error {
	err := strictjson.Decode(body, v, strictjson.Options{DisallowUnknown: disallowUnknown, ShareLong: true})
	if err == nil {
		return nil
	}
	var e *strictjson.Error
	if !errors.As(err, &e) {
		return MalformedJSON("body", err.Error())
	}
	field := e.Path
	if field == "" || errors.Is(err, strictjson.ErrSyntax) || errors.Is(err, strictjson.ErrTrailingData) {
		// Broken JSON is the body's fault, wherever it broke.
		field = "body"
	}
	if errors.Is(err, strictjson.ErrUnknownMember) || errors.Is(err, strictjson.ErrCaseMismatch) {
		// The decoder stops at the first member v lacks; a body that
		// breaks off after it is malformed before anything else.
		var whole any
		if serr := strictjson.Decode(body, &whole, strictjson.Options{}); serr != nil {
			return MalformedJSON("body", serr.Error())
		}
		p := UnknownField(field)
		if errors.Is(err, strictjson.ErrCaseMismatch) {
			p.Detail = field + ": " + e.Reason
		}
		return p
	}
	if len(body) == 0 {
		return MalformedJSON(field, "the request body is empty; a JSON object is required")
	}
	return MalformedJSON(field, e.Error())
}

// JoinField names the member child of parent: "services[0]" and
// "identifier" make "services[0].identifier". A child of "" or "jwk" is
// the parent itself.
func JoinField(parent, child string) string {
	switch {
	case parent == "":
		return child
	case child == "" || child == "jwk":
		return parent
	}
	return parent + "." + child
}
