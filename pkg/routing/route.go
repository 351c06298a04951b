// Package routing holds the routing table: which destination is responsible
// for a service in a place at a time.
//
// A destination declares, per service, the regions ("DE" + an ARS prefix of
// 0, 2, 3, 5, 9 or 12 digits) it serves, each optionally bounded in time.
// Resolution of (service, ARS, time) takes the route active at that time
// with the longest region prefix of the ARS: Gemeinde, else Gemeindeverband,
// else Kreis, else Regierungsbezirk, else Land, else Bund. Two routes for the
// same service and region whose validity overlaps are a conflict, refused
// when the table is built.
//
// The package is pure: it does no I/O and holds no locks. A Table is
// immutable; changes build a new Table that shares what did not change, so
// a process can swap tables atomically while readers keep resolving.
package routing

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/leika"
)

// Route says that a destination is responsible for a service in a region.
type Route struct {
	// Service identifies the service: a LeiKa key, or a service URN as
	// FIT-Connect destinations declare it. A LeiKa URN
	// ("urn:de:fim:leika:leistung:" + key) and its bare key are the same
	// service; the table holds the bare key.
	Service string
	// Region is "DE" + an ARS prefix of 0, 2, 3, 5, 9 or 12 digits.
	Region        string
	DestinationID string
	// ValidFrom and ValidUntil bound the route to [ValidFrom, ValidUntil);
	// the zero time leaves that side unbounded.
	ValidFrom, ValidUntil time.Time
}

// ActiveAt reports whether the route is valid at t.
func (r Route) ActiveAt(t time.Time) bool {
	return (r.ValidFrom.IsZero() || !t.Before(r.ValidFrom)) && (r.ValidUntil.IsZero() || t.Before(r.ValidUntil))
}

// Overlaps reports whether the validity of r and o have an instant in common.
func (r Route) Overlaps(o Route) bool {
	return earlier(r.ValidFrom, o.ValidUntil) && earlier(o.ValidFrom, r.ValidUntil)
}

// earlier reports from < until, the zero from being the distant past and
// the zero until the distant future.
func earlier(from, until time.Time) bool {
	return from.IsZero() || until.IsZero() || from.Before(until)
}

// String describes the route for messages and logs.
func (r Route) String() string {
	s := fmt.Sprintf("%s in %s to %s", r.Service, r.Region, r.DestinationID)
	switch {
	case !r.ValidFrom.IsZero() && !r.ValidUntil.IsZero():
		s += fmt.Sprintf(" from %s until %s", r.ValidFrom.Format(time.RFC3339), r.ValidUntil.Format(time.RFC3339))
	case !r.ValidFrom.IsZero():
		s += " from " + r.ValidFrom.Format(time.RFC3339)
	case !r.ValidUntil.IsZero():
		s += " until " + r.ValidUntil.Format(time.RFC3339)
	}
	return s
}

// ErrConflict is wrapped by *ConflictError.
var ErrConflict = errors.New("conflicting routes")

// ConflictError reports two routes for the same service and region whose
// validity overlaps. It wraps ErrConflict.
type ConflictError struct {
	Route Route // the route refused
	Other Route // the route it conflicts with
}

// Error names both routes and the other destination.
func (e *ConflictError) Error() string {
	return fmt.Sprintf("route %s conflicts with destination %s's route %s", e.Route, e.Other.DestinationID, e.Other)
}

// Unwrap returns ErrConflict.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// ErrInvalidRoute is wrapped by *RouteError.
var ErrInvalidRoute = errors.New("invalid route")

// RouteError reports a malformed route. It wraps ErrInvalidRoute and Err.
type RouteError struct {
	Route Route
	Field string // "service", "region", "destinationId" or "validUntil"
	Err   error
}

// Error names the route, the field and what is wrong.
func (e *RouteError) Error() string {
	return fmt.Sprintf("route %s: %s: %v", e.Route, e.Field, e.Err)
}

// Unwrap returns ErrInvalidRoute and the underlying error.
func (e *RouteError) Unwrap() []error { return []error{ErrInvalidRoute, e.Err} }

// urnPattern is FIT-Connect's pattern for service identifiers.
var urnPattern = regexp.MustCompile(`^urn:[a-z0-9][a-z0-9-]{0,31}:[a-z0-9()+,.:=@;$_!*'%/?#-]+$`)

// CheckServiceURN reports why s is not a FIT-Connect service identifier:
// a URN of 7 to 255 characters of the pattern FIT-Connect gives, and a
// LeiKa URN with a key of 14 digits.
func CheckServiceURN(s string) error {
	if len(s) < 7 || len(s) > 255 {
		return fmt.Errorf("service identifier must have 7 to 255 characters, has %d", len(s))
	}
	if !urnPattern.MatchString(s) {
		return fmt.Errorf("service identifier %q is not a URN of the form urn:<nid>:<nss>", s)
	}
	// A LeiKa URN names its 14-digit key, or no route could ever match it.
	if _, ok := leika.TrimURN(s); ok {
		if _, err := leika.FromURN(s); err != nil {
			return fmt.Errorf("service identifier %q: %w", s, err)
		}
	}
	return nil
}

// ServiceID returns the table's form of a service identifier: the bare key
// for a LeiKa key or LeiKa URN, the identifier itself for another URN.
func ServiceID(s string) (string, error) {
	if _, ok := leika.TrimURN(s); ok {
		key, err := leika.FromURN(s)
		if err != nil {
			return "", err
		}
		return string(key), nil
	}
	if len(s) == 14 && s[0] == '9' {
		key, err := leika.ParseKey(s)
		if err != nil {
			return "", err
		}
		return string(key), nil
	}
	if !urnPattern.MatchString(s) {
		return "", fmt.Errorf("%q is neither a LeiKa key nor a service URN", s)
	}
	return s, nil
}

// normalize validates r and returns it with its service in table form and
// the key of its region.
func normalize(r Route) (Route, uint64, error) {
	id, err := ServiceID(r.Service)
	if err != nil {
		return r, 0, &RouteError{Route: r, Field: "service", Err: err}
	}
	r.Service = id
	k, err := check(&r)
	return r, k, err
}

// check validates all of r but its service and returns its region key.
func check(r *Route) (uint64, error) {
	a, err := ars.ParseRegion(r.Region)
	if err != nil {
		return 0, &RouteError{Route: *r, Field: "region", Err: err}
	}
	if r.DestinationID == "" {
		return 0, &RouteError{Route: *r, Field: "destinationId", Err: errors.New("empty")}
	}
	if !earlier(r.ValidFrom, r.ValidUntil) {
		return 0, &RouteError{Route: *r, Field: "validUntil", Err: errors.New("not after validFrom")}
	}
	return regionKey(a.Code()), nil
}

// A region key packs an ARS prefix into a uint64: its length above bit 40,
// its value (below 10^12 < 2^40) beneath. Keys of different lengths differ,
// so "08" and "008" cannot collide.
const keyShift = 40

func regionKey(digits string) uint64 {
	var v uint64
	for i := 0; i < len(digits); i++ {
		v = v*10 + uint64(digits[i]-'0')
	}
	return uint64(len(digits))<<keyShift | v
}

func regionOfKey(k uint64) string {
	n := int(k >> keyShift)
	if n == 0 {
		return "DE"
	}
	return fmt.Sprintf("DE%0*d", n, k&(1<<keyShift-1))
}

// pow10[i] = 10^i
var pow10 = [13]uint64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12}
