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

// proxyKey carries to the dial the address of the proxy a callback goes
// through.
type proxyKey struct{}

// guardedTransport is http.DefaultTransport's equivalent that connects to
// public addresses and those in allow only (netguard). The address is
// checked as dialled, after name resolution, so that a name resolving to
// an internal address later is refused too. The proxy the environment
// names for a callback (HTTPS_PROXY, NO_PROXY) is dialled whatever its
// address, and only when the callback goes through it; the proxy then
// decides where callbacks may go. Requests must carry their context
// through via: without it nothing is dialled unchecked.
func guardedTransport(allow []netip.Prefix) (t *http.Transport, via func(context.Context, *url.URL) context.Context) {
	t = http.DefaultTransport.(*http.Transport).Clone()
	proxyFor := httpproxy.FromEnvironment().ProxyFunc()
	t.Proxy = func(r *http.Request) (*url.URL, error) { return proxyFor(r.URL) }
	via = func(ctx context.Context, u *url.URL) context.Context {
		p, err := proxyFor(u)
		if err != nil || p == nil {
			return ctx
		}
		return context.WithValue(ctx, proxyKey{}, dialAddress(p))
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
		if p, _ := ctx.Value(proxyKey{}).(string); p != "" && p == addr {
			return plain.DialContext(ctx, network, addr)
		}
		return guarded.DialContext(ctx, network, addr)
	}
	return t, via
}

// dialAddress is the host:port net/http dials for proxy p.
func dialAddress(p *url.URL) string {
	host := p.Hostname()
	if a, err := netguard.ASCIIHost(host); err == nil {
		host = a
	}
	port := p.Port()
	if port == "" {
		port = map[string]string{"https": "443", "socks5": "1080", "socks5h": "1080"}[p.Scheme]
		if port == "" {
			port = "80"
		}
	}
	return net.JoinHostPort(host, port)
}
