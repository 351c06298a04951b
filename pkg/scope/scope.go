// Package scope reads and checks the scopes of access tokens: FIT-Connect's
// send:region:DE<ARS>[+send:service:<urn>], subscribe:destination:<id>,
// manage:destination:<id> and create:destination, and Amtsbote's operator
// scope amtsbote:admin. It decides what a set of scopes allows; it does no
// I/O.
package scope

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/routing"
)

// Scope names and prefixes as FIT-Connect defines them, plus Amtsbote's
// operator scope.
const (
	Admin             = "amtsbote:admin"
	CreateDestination = "create:destination"
	SendRegion        = "send:region:"
	SendService       = "send:service:"
	Subscribe         = "subscribe:destination:"
	Manage            = "manage:destination:"
)

// ErrInvalid means a scope string does not follow the scope grammar.
var ErrInvalid = errors.New("invalid scope")

// canonicalUUID returns s as a lower-case canonical UUID, or false when s is
// not a UUID in its 36-character form.
func canonicalUUID(s string) (string, bool) {
	if len(s) != 36 {
		return "", false
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return "", false
	}
	return u.String(), true
}

// grant is one parsed scope.
type grant struct {
	kind    string // "send", "subscribe", "manage", "create", "admin"
	region  string // send: "DE" + ARS prefix
	service string // send: optional service URN narrowing the grant
	dest    string // subscribe, manage: destination id
}

func parseScope(s string) (grant, error) {
	switch {
	case s == Admin:
		return grant{kind: "admin"}, nil
	case s == CreateDestination:
		return grant{kind: "create"}, nil
	case strings.HasPrefix(s, SendRegion):
		rest := strings.TrimPrefix(s, SendRegion)
		region, service, narrowed := strings.Cut(rest, "+")
		if _, err := ars.ParseRegion(region); err != nil {
			return grant{}, fmt.Errorf("%w %q: %v", ErrInvalid, s, err)
		}
		g := grant{kind: "send", region: region}
		if narrowed {
			if !strings.HasPrefix(service, SendService) {
				return grant{}, fmt.Errorf("%w %q: a region scope is narrowed only by +%s<urn>", ErrInvalid, s, SendService)
			}
			g.service = strings.TrimPrefix(service, SendService)
			if err := routing.CheckServiceURN(g.service); err != nil {
				return grant{}, fmt.Errorf("%w %q: %v", ErrInvalid, s, err)
			}
		}
		return g, nil
	case strings.HasPrefix(s, Subscribe), strings.HasPrefix(s, Manage):
		kind, prefix := "subscribe", Subscribe
		if strings.HasPrefix(s, Manage) {
			kind, prefix = "manage", Manage
		}
		id, ok := canonicalUUID(strings.TrimPrefix(s, prefix))
		if !ok {
			return grant{}, fmt.Errorf("%w %q: the destination must be a UUID", ErrInvalid, s)
		}
		return grant{kind: kind, dest: id}, nil
	}
	return grant{}, fmt.Errorf("%w %q: want send:region:DE<ARS>[+send:service:<urn>], subscribe:destination:<id>, manage:destination:<id>, %s or %s",
		ErrInvalid, s, CreateDestination, Admin)
}

// Validate checks s against the scope grammar: send:region:DE<ARS
// prefix of 0, 2, 3, 5, 9 or 12 digits>, optionally followed by
// +send:service:<service URN>; subscribe:destination:<UUID>;
// manage:destination:<UUID>; create:destination; amtsbote:admin.
// The error wraps ErrInvalid.
func Validate(s string) error {
	_, err := parseScope(s)
	return err
}

// DestinationOf returns the destination a subscribe or manage scope
// names, or false for any other scope.
func DestinationOf(s string) (string, bool) {
	g, err := parseScope(s)
	if err != nil || g.dest == "" {
		return "", false
	}
	return g.dest, true
}

// Covers reports whether a client granted these scopes may have a token
// with scope s: s is one of them, or a send scope within one of them, of a
// region within the granted region (DE083 within DE08) and, where the
// grant names a service, of that service (RFC 6749 3.3 lets a client ask
// for less than it was granted).
func Covers(granted []string, s string) bool {
	if slices.Contains(granted, s) {
		return true
	}
	r, err := parseScope(s)
	if err != nil || r.kind != "send" {
		return false
	}
	for _, g := range Parse(granted).grants {
		if g.kind == "send" && strings.HasPrefix(r.region, g.region) && (g.service == "" || g.service == r.service) {
			return true
		}
	}
	return false
}

// Set is what a token allows. The zero value allows nothing. Methods
// are pure and safe for concurrent use.
type Set struct {
	raw    []string
	grants []grant
}

// Parse reads scope strings, skipping those outside the grammar:
// tokens of an external issuer carry scopes of other systems (openid,
// profile) that mean nothing here.
func Parse(list []string) Set {
	var s Set
	for _, v := range list {
		g, err := parseScope(v)
		if err != nil {
			continue
		}
		s.raw = append(s.raw, v)
		s.grants = append(s.grants, g)
	}
	return s
}

// List returns the recognised scopes in their original order.
func (s Set) List() []string { return slices.Clone(s.raw) }

// Has reports whether scope is among the scopes, literally.
func (s Set) Has(scope string) bool { return slices.Contains(s.raw, scope) }

// IsAdmin reports whether the operator scope is present.
func (s Set) IsAdmin() bool { return s.Has(Admin) }

// CanSubscribe reports whether the scopes allow picking up the
// destination's submissions.
func (s Set) CanSubscribe(destinationID string) bool { return s.hasDest("subscribe", destinationID) }

// Subscribed lists the destinations the scopes may pick up from.
func (s Set) Subscribed() []string {
	var ids []string
	for _, g := range s.grants {
		if g.kind == "subscribe" && !slices.Contains(ids, g.dest) {
			ids = append(ids, g.dest)
		}
	}
	return ids
}

// Managed lists the destinations the scopes may manage.
func (s Set) Managed() []string {
	var ids []string
	for _, g := range s.grants {
		if g.kind == "manage" && !slices.Contains(ids, g.dest) {
			ids = append(ids, g.dest)
		}
	}
	return ids
}

// CanCreate reports whether the scopes may create destinations.
func (s Set) CanCreate() bool { return s.Has(CreateDestination) }

// Sends reports whether any send grant is present.
func (s Set) Sends() bool {
	return slices.ContainsFunc(s.grants, func(g grant) bool { return g.kind == "send" })
}

// OfParty reports whether the scopes are those of a submission's party
// (a send grant, or a destination's subscribe or manage grant) or an
// operator's: what reading a destination or a case needs at least.
func (s Set) OfParty() bool {
	return s.IsAdmin() || slices.ContainsFunc(s.grants, func(g grant) bool {
		return g.kind == "send" || g.kind == "subscribe" || g.kind == "manage"
	})
}

// CanManage reports whether the scopes allow managing the destination.
func (s Set) CanManage(destinationID string) bool { return s.hasDest("manage", destinationID) }

func (s Set) hasDest(kind, id string) bool {
	id, ok := canonicalUUID(id)
	if !ok {
		return false
	}
	for _, g := range s.grants {
		if g.kind == kind && g.dest == id {
			return true
		}
	}
	return false
}

// CanSend reports whether a send grant covers service in at least one of
// regions: the grant's region is a prefix of that region ("DE08" covers
// "DE08311" and "DE08"), and the grant is not narrowed to another service.
// An empty service matches only grants that are not narrowed.
func (s Set) CanSend(regions []string, service string) bool {
	return s.send(regions, service, false)
}

// CanLookUp reports whether a send grant reaches a destination serving
// service in one of regions, in either direction: the grant covers the
// region, or the region covers the grant's area (a Freiburg portal may
// address a Land-level destination that serves Freiburg too).
func (s Set) CanLookUp(regions []string, service string) bool {
	return s.send(regions, service, true)
}

func (s Set) send(regions []string, service string, upward bool) bool {
	for _, g := range s.grants {
		if g.kind != "send" || (g.service != "" && g.service != service) {
			continue
		}
		for _, r := range regions {
			if strings.HasPrefix(r, g.region) || (upward && strings.HasPrefix(g.region, r)) {
				return true
			}
		}
	}
	return false
}
