package delivery

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"syscall"
	"time"

	"golang.org/x/net/http/httpproxy"
)

// errNotPublic is the dial of a callback to an address that is not on the
// public internet.
var errNotPublic = errors.New("not a public address")

// nonPublic are the ranges besides what netip classifies that no
// receiver's callback lives in: "this network", shared address space
// (carrier-grade NAT), IETF protocol assignments, the documentation
// networks, benchmarking and the reserved block.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("2001:db8::/32"),
}

// public reports whether a is an address on the public internet.
func public(a netip.Addr) bool {
	a = a.Unmap()
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

// publicTransport is http.DefaultTransport's equivalent that connects to
// public addresses and those in allow only: a callback URL is a sender's
// or a receiver's choice, and must not make Amtsbote post into its own
// network (its NATS monitoring, a cloud's metadata service, an internal
// API). The address is checked as dialled, after name resolution, so that
// a name resolving to an internal address later is refused too. A proxy
// from the environment (HTTPS_PROXY, NO_PROXY) is dialled whatever its
// address; the proxy then decides where callbacks may go.
func publicTransport(allow []netip.Prefix) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	proxies := map[string]bool{}
	cfg := httpproxy.FromEnvironment()
	for _, raw := range []string{cfg.HTTPSProxy, cfg.HTTPProxy} {
		if raw == "" {
			continue
		}
		if u, err := url.Parse(raw); err == nil && u.Host != "" {
			port := u.Port()
			if port == "" {
				port = map[string]string{"https": "443", "socks5": "1080"}[u.Scheme]
				if port == "" {
					port = "80"
				}
			}
			proxies[net.JoinHostPort(u.Hostname(), port)] = true
		}
	}
	plain := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	guarded := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second,
		Control: func(network, address string, _ syscall.RawConn) error {
			// The dial's error names the address.
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return err
			}
			if !public(ap.Addr()) && !slices.ContainsFunc(allow, func(p netip.Prefix) bool { return p.Contains(ap.Addr().Unmap()) }) {
				return errNotPublic
			}
			return nil
		}}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if proxies[addr] {
			return plain.DialContext(ctx, network, addr)
		}
		return guarded.DialContext(ctx, network, addr)
	}
	return t
}
