package strictjson

import "errors"

// The kinds of Error; test for them with errors.Is.
var (
	// ErrSyntax is input that is not JSON, or is empty.
	ErrSyntax = errors.New("invalid JSON")
	// ErrInvalidUTF8 is a string or member name that is not valid UTF-8,
	// including an escaped lone surrogate such as "\ud800".
	ErrInvalidUTF8 = errors.New("invalid UTF-8")
	// ErrDuplicateKey is a member name that appears twice in one object.
	ErrDuplicateKey = errors.New("duplicate member")
	// ErrCaseMismatch is a member that names a field of the target only
	// when case is ignored, such as "DESTINATIONID" for "destinationId".
	ErrCaseMismatch = errors.New("member name differs in case")
	// ErrUnknownMember is a member the target does not declare, refused
	// only with Options.DisallowUnknown.
	ErrUnknownMember = errors.New("unknown member")
	// ErrType is a value that does not fit the target: a string for a
	// number, an integer out of range, an array where an object belongs.
	ErrType = errors.New("value does not fit")
	// ErrTrailingData is anything but white space after the JSON value.
	ErrTrailingData = errors.New("trailing data")
	// ErrTooDeep is nesting beyond Options.MaxDepth.
	ErrTooDeep = errors.New("nested too deeply")
)

// Error is a refused document: what is wrong (Reason, and Kind for
// errors.Is) and where (Path, Offset).
type Error struct {
	// Path names the member at fault from the top, like
	// "serviceType.name" or "announcedAttachments[2]"; names that are not
	// plain words are quoted, like `["a.b"]`. It is empty when the fault is
	// the document itself, such as an empty body or trailing data.
	Path string
	// Offset is the byte in the input where the fault was found.
	Offset int64
	// Reason says what is wrong, without the path.
	Reason string
	// Kind is one of the Err* values above.
	Kind error
	// Err is the error of encoding/json or of a type's UnmarshalJSON or
	// UnmarshalText that refused the value, if that is how it was found.
	Err error
}

// Error returns "member PATH: REASON", or the reason alone without a path.
func (e *Error) Error() string {
	if e.Path == "" {
		return e.Reason
	}
	return "member " + e.Path + ": " + e.Reason
}

// Unwrap returns Kind and, if set, Err.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}
