package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/amtsbote/amtsbote/services/gateway/httpapi"
)

// TestTrustProxies: behind a trusted load balancer the client is the
// rightmost untrusted address of X-Forwarded-For; from anywhere else the
// header is not believed.
func TestTrustProxies(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32")}
	var got string
	h := httpapi.TrustProxies(trusted, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = httpapi.ClientAddress(r)
	}))
	for _, tt := range []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"through the balancer", "10.1.2.3:5555", []string{"203.0.113.9"}, "203.0.113.9"},
		{"a forged hop before the client", "10.1.2.3:5555", []string{"198.51.100.1, 203.0.113.9"}, "203.0.113.9"},
		{"through two trusted proxies", "10.1.2.3:5555", []string{"203.0.113.9, 192.0.2.7"}, "203.0.113.9"},
		{"two header lines", "10.1.2.3:5555", []string{"198.51.100.1", "203.0.113.9"}, "203.0.113.9"},
		{"no header", "10.1.2.3:5555", nil, "10.1.2.3"},
		{"garbage in the header", "10.1.2.3:5555", []string{"203.0.113.9, unknown"}, "10.1.2.3"},
		{"a client claiming another address", "203.0.113.50:4444", []string{"198.51.100.1"}, "203.0.113.50"},
		{"IPv6 peer", "[2001:db8::1]:4444", []string{"198.51.100.1"}, "2001:db8::1"},
		{"IPv6 client through the balancer", "10.1.2.3:5555", []string{"2001:db8:a:b:c::9"}, "2001:db8:a:b:c::9"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tt.peer
		for _, v := range tt.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
		if got != tt.want {
			t.Errorf("%s: client %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestAddressKey: per-address limits count an IPv6 client by its /64,
// but IPv4 behind NAT64 by its IPv4 address and loopback and link-local
// clients by their whole address.
func TestAddressKey(t *testing.T) {
	for _, tt := range []struct{ peer, want string }{
		{"203.0.113.9:1", "203.0.113.9"},
		{"[::ffff:203.0.113.9]:1", "203.0.113.9"},
		{"[2001:db8::1]:1", "2001:db8::/64"},
		{"[2001:db8::ffff:1:2:3]:1", "2001:db8::/64"},
		{"[2001:db8:0:1::1]:1", "2001:db8:0:1::/64"},
		{"[64:ff9b::cb00:7109]:1", "203.0.113.9"},
		{"[64:ff9b::c633:6401]:1", "198.51.100.1"},
		{"[::1]:1", "::1"},
		{"[fe80::1%eth0]:1", "fe80::1"},
		{"[fe80::2%eth1]:1", "fe80::2"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tt.peer
		if got := httpapi.AddressKey(r); got != tt.want {
			t.Errorf("%s: key %q, want %q", tt.peer, got, tt.want)
		}
	}
}
