package gateway

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/google/uuid"
)

// Scope names and prefixes as FIT-Connect defines them, plus Amtsbote's
// operator scope.
const (
	ScopeAdmin             = "amtsbote:admin"
	ScopeCreateDestination = "create:destination"
	scopeSendRegion        = "send:region:"
	scopeSendService       = "send:service:"
	scopeSubscribe         = "subscribe:destination:"
	scopeManage            = "manage:destination:"
)

// ErrScope means a scope string does not follow the scope grammar.
var ErrScope = errors.New("invalid scope")

// serviceURN is FIT-Connect's pattern for service identifiers.
var serviceURN = regexp.MustCompile(`^urn:[a-z0-9][a-z0-9-]{0,31}:[a-z0-9()+,.:=@;$_!*'%/?#-]+$`)

// regionPattern is FIT-Connect's ServiceRegion pattern; the digit count is
// further limited to the ARS levels by regionLevel.
var regionPattern = regexp.MustCompile(`^DE[0-9]{0,12}$`)

// ARS prefix lengths: Bund, Land, Regierungsbezirk, Kreis, Gemeindeverband, Gemeinde.
var arsLevels = []int{0, 2, 3, 5, 9, 12}

// checkRegion reports why r is not "DE" followed by an ARS prefix of a level's length.
func checkRegion(r string) error {
	if !regionPattern.MatchString(r) {
		return fmt.Errorf("region %q must match ^DE[0-9]{0,12}$", r)
	}
	if n := len(r) - 2; !slices.Contains(arsLevels, n) {
		return fmt.Errorf("region %q has %d digits; an ARS prefix has 0, 2, 3, 5, 9 or 12", r, n)
	}
	return nil
}

// checkServiceURN reports why s is not a FIT-Connect service identifier.
func checkServiceURN(s string) error {
	if len(s) < 7 || len(s) > 255 {
		return fmt.Errorf("service identifier must have 7 to 255 characters, has %d", len(s))
	}
	if !serviceURN.MatchString(s) {
		return fmt.Errorf("service identifier %q is not a URN of the form urn:<nid>:<nss>", s)
	}
	return nil
}

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
	case s == ScopeAdmin:
		return grant{kind: "admin"}, nil
	case s == ScopeCreateDestination:
		return grant{kind: "create"}, nil
	case strings.HasPrefix(s, scopeSendRegion):
		rest := strings.TrimPrefix(s, scopeSendRegion)
		region, service, narrowed := strings.Cut(rest, "+")
		if err := checkRegion(region); err != nil {
			return grant{}, fmt.Errorf("%w %q: %v", ErrScope, s, err)
		}
		g := grant{kind: "send", region: region}
		if narrowed {
			if !strings.HasPrefix(service, scopeSendService) {
				return grant{}, fmt.Errorf("%w %q: a region scope is narrowed only by +%s<urn>", ErrScope, s, scopeSendService)
			}
			g.service = strings.TrimPrefix(service, scopeSendService)
			if err := checkServiceURN(g.service); err != nil {
				return grant{}, fmt.Errorf("%w %q: %v", ErrScope, s, err)
			}
		}
		return g, nil
	case strings.HasPrefix(s, scopeSubscribe), strings.HasPrefix(s, scopeManage):
		kind, prefix := "subscribe", scopeSubscribe
		if strings.HasPrefix(s, scopeManage) {
			kind, prefix = "manage", scopeManage
		}
		id, ok := canonicalUUID(strings.TrimPrefix(s, prefix))
		if !ok {
			return grant{}, fmt.Errorf("%w %q: the destination must be a UUID", ErrScope, s)
		}
		return grant{kind: kind, dest: id}, nil
	}
	return grant{}, fmt.Errorf("%w %q: want send:region:DE<ARS>[+send:service:<urn>], subscribe:destination:<id>, manage:destination:<id>, %s or %s",
		ErrScope, s, ScopeCreateDestination, ScopeAdmin)
}

// ValidateScope checks s against the scope grammar: send:region:DE<ARS
// prefix of 0, 2, 3, 5, 9 or 12 digits>, optionally followed by
// +send:service:<service URN>; subscribe:destination:<UUID>;
// manage:destination:<UUID>; create:destination; amtsbote:admin.
// The error wraps ErrScope.
func ValidateScope(s string) error {
	_, err := parseScope(s)
	return err
}

// Scopes is what a token allows. The zero value allows nothing. Methods
// are pure and safe for concurrent use.
type Scopes struct {
	raw    []string
	grants []grant
}

// ParseScopes reads scope strings, skipping those outside the grammar:
// tokens of an external issuer carry scopes of other systems (openid,
// profile) that mean nothing here.
func ParseScopes(list []string) Scopes {
	var s Scopes
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
func (s Scopes) List() []string { return slices.Clone(s.raw) }

// Has reports whether scope is among the scopes, literally.
func (s Scopes) Has(scope string) bool { return slices.Contains(s.raw, scope) }

// IsAdmin reports whether the operator scope is present.
func (s Scopes) IsAdmin() bool { return s.Has(ScopeAdmin) }

// CanSubscribe reports whether the scopes allow picking up the
// destination's submissions.
func (s Scopes) CanSubscribe(destinationID string) bool { return s.hasDest("subscribe", destinationID) }

// CanManage reports whether the scopes allow managing the destination.
func (s Scopes) CanManage(destinationID string) bool { return s.hasDest("manage", destinationID) }

func (s Scopes) hasDest(kind, id string) bool {
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
func (s Scopes) CanSend(regions []string, service string) bool {
	return s.send(regions, service, false)
}

// CanLookUp reports whether a send grant reaches a destination serving
// service in one of regions, in either direction: the grant covers the
// region, or the region covers the grant's area (a Freiburg portal may
// address a Land-level destination that serves Freiburg too).
func (s Scopes) CanLookUp(regions []string, service string) bool {
	return s.send(regions, service, true)
}

func (s Scopes) send(regions []string, service string, upward bool) bool {
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
