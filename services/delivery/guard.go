package delivery

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"

	"golang.org/x/net/http/httpproxy"

	"github.com/amtsbote/amtsbote/pkg/netguard"
)

// targetKey carries a callback's own host:port to the dial.
type targetKey struct{}

// withTarget marks ctx with the host:port u is posted to.
func withTarget(ctx context.Context, u *url.URL) context.Context {
	port := u.Port()
	if port == "" {
		port = "443"
	}
	return context.WithValue(ctx, targetKey{}, net.JoinHostPort(u.Hostname(), port))
}

// publicTransport is http.DefaultTransport's equivalent that connects to
// public addresses and those in allow only (netguard). The address is
// checked as dialled, after name resolution, so that a name resolving to
// an internal address later is refused too. The proxy from HTTPS_PROXY
// (callbacks are https) is dialled whatever its address when the transport
// goes through it; the proxy then decides where callbacks may go. A
// callback whose own URL names the proxy's address is checked like any
// other.
func publicTransport(allow []netip.Prefix) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	cfg := httpproxy.FromEnvironment()
	proxyFor := cfg.ProxyFunc()
	t.Proxy = func(r *http.Request) (*url.URL, error) { return proxyFor(r.URL) }
	proxy := ""
	if u, err := url.Parse(cfg.HTTPSProxy); err == nil && u.Host != "" {
		port := u.Port()
		if port == "" {
			port = map[string]string{"https": "443", "socks5": "1080"}[u.Scheme]
			if port == "" {
				port = "80"
			}
		}
		proxy = net.JoinHostPort(u.Hostname(), port)
	}
	plain := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	guarded := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second,
		Control: func(network, address string, _ syscall.RawConn) error {
			// The dial's error names the address.
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return err
			}
			if !netguard.Permitted(ap.Addr(), allow) {
				return netguard.ErrNotPublic
			}
			return nil
		}}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if proxy != "" && addr == proxy && ctx.Value(targetKey{}) != addr {
			return plain.DialContext(ctx, network, addr)
		}
		return guarded.DialContext(ctx, network, addr)
	}
	return t
}
