// Package netguard tells which addresses Amtsbote may post callbacks to.
// A callback URL is a sender's or a receiver's choice, and must not make
// Amtsbote post into its own network: its NATS monitoring, a cloud's
// metadata service, an internal API. The public internet is permitted,
// and the networks an operator allows besides it.
package netguard

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// ErrNotPublic is an address outside the public internet and the allowed
// networks.
var ErrNotPublic = errors.New("not a public address")

// nonPublic are the ranges besides what netip classifies that no callback
// lives in (IANA's special-purpose registries): "this network", shared
// address space (carrier-grade NAT), IETF protocol assignments, the
// documentation networks, benchmarking and the reserved block; in IPv6
// IPv4-compatible addresses, local-use NAT64, discard-only, the IETF
// protocol assignments (Teredo among them), site-local and SRv6 SIDs.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("100::/64"),
	netip.MustParsePrefix("2001::/23"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("3fff::/20"),
	netip.MustParsePrefix("5f00::/16"),
	netip.MustParsePrefix("fec0::/10"),
}

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// Embedded4 returns the IPv4 address an IPv6 address stands for: mapped
// (::ffff:a.b.c.d), NAT64 (64:ff9b::/96) or 6to4 (2002::/16).
func Embedded4(a netip.Addr) (netip.Addr, bool) {
	a = a.WithZone("")
	if a.Is4In6() {
		return a.Unmap(), true
	}
	if !a.Is6() {
		return netip.Addr{}, false
	}
	b := a.As16()
	switch {
	case nat64.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

// Public reports whether a is an address on the public internet. An IPv6
// address that stands for an IPv4 one (Embedded4) is public when the IPv4
// address is. A zone is ignored: the kernel ignores it for a global
// address.
func Public(a netip.Addr) bool {
	a = a.WithZone("")
	if v4, ok := Embedded4(a); ok {
		a = v4
	}
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsUnspecified() || a.IsLinkLocalUnicast() ||
		a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() || a.IsMulticast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// Permitted reports whether a callback may go to a: a public address or
// one in allow, itself or the IPv4 address it stands for.
func Permitted(a netip.Addr, allow []netip.Prefix) bool {
	a = a.WithZone("")
	in := func(a netip.Addr) bool {
		return slices.ContainsFunc(allow, func(p netip.Prefix) bool { return p.Contains(a) })
	}
	if Public(a) || in(a) {
		return true
	}
	v4, ok := Embedded4(a)
	return ok && in(v4)
}

// CheckHost checks a callback URL's host (as url.URL.Hostname returns it)
// when the URL is given: an address must be permitted, and so must the
// loopback addresses for "localhost" and its subdomains (RFC 6761). Other
// names are checked as dialled, after name resolution, since what they
// resolve to can change. A host whose last label is a number is an IPv4
// address in some URL parsers (WHATWG's, libc's: "127.1", "2130706433",
// "0x7f.1"); it must be one in dotted-decimal form.
func CheckHost(host string, allow []netip.Prefix) error {
	name, err := ASCIIHost(host)
	if err != nil {
		return fmt.Errorf("host %q is not a valid name: %w", host, err)
	}
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	var a netip.Addr
	switch {
	case name == "localhost" || strings.HasSuffix(name, ".localhost"):
		a = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	default:
		if a, err = netip.ParseAddr(name); err != nil {
			if numeric(name[strings.LastIndexByte(name, '.')+1:]) {
				return fmt.Errorf("host %q is a number but not an IPv4 address in dotted-decimal form", host)
			}
			return nil
		}
	}
	if !Permitted(a, allow) {
		return fmt.Errorf("host %s: %w", host, ErrNotPublic)
	}
	return nil
}

// ASCIIHost is host as net/http dials it: a name that is not ASCII
// mapped by IDNA (full-width digits and dots among them), any other as
// it is.
func ASCIIHost(host string) (string, error) {
	if !strings.ContainsFunc(host, func(r rune) bool { return r >= utf8.RuneSelf }) {
		return host, nil
	}
	return idna.Lookup.ToASCII(host)
}

// numeric reports whether label reads as a number: decimal digits, or
// hexadecimal after 0x.
func numeric(label string) bool {
	if rest, ok := strings.CutPrefix(label, "0x"); ok {
		return strings.Trim(rest, "0123456789abcdef") == ""
	}
	return label != "" && strings.Trim(label, "0123456789") == ""
}
