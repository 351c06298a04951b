package netguard_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/amtsbote/amtsbote/pkg/netguard"
)

func TestPublic(t *testing.T) {
	for _, tt := range []struct {
		addr string
		want bool
	}{
		{"8.8.8.8", true},
		{"91.198.174.192", true},
		{"2a00:1450:4001:82b::200e", true},
		{"2001:4860:4860::8888", true},
		{"64:ff9b::808:808", true},
		{"2002:808:808::1", true},
		{"127.0.0.1", false},
		{"10.1.2.3", false},
		{"172.16.0.1", false},
		{"192.168.178.1", false},
		{"169.254.169.254", false},
		{"100.64.0.1", false},
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"192.0.2.10", false},
		{"198.18.0.1", false},
		{"224.0.0.251", false},
		{"255.255.255.255", false},
		{"::1", false},
		{"::", false},
		{"fe80::1", false},
		{"fe80::1%eth0", false},
		{"fd00::1", false},
		{"ff02::1", false},
		{"::ffff:127.0.0.1", false},
		{"::ffff:10.0.0.1", false},
		{"2001:db8::1", false},
		// IPv6 forms that carry an internal IPv4 address, and reserved ranges.
		{"64:ff9b::7f00:1", false},
		{"64:ff9b::a9fe:a9fe", false},
		{"64:ff9b:1::a00:1", false},
		{"2002:7f00:1::1", false},
		{"2002:a9fe:a9fe::1", false},
		{"::127.0.0.1", false},
		{"::a9fe:a9fe", false},
		{"fec0::1", false},
		{"100::1", false},
		{"2001::1", false},
		{"3fff::1", false},
		// A zone changes nothing for a global address.
		{"64:ff9b::a9fe:a9fe%1", false},
		{"2002:a9fe:a9fe::1%eth0", false},
		{"2001:db8::1%1", false},
		{"2001:4860:4860::8888%eth0", true},
	} {
		if got := netguard.Public(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Public(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

func TestPermitted(t *testing.T) {
	allow := []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("fd12::/16")}
	for _, tt := range []struct {
		addr string
		want bool
	}{
		{"8.8.8.8", true},
		{"10.20.3.4", true},
		{"::ffff:10.20.3.4", true},
		{"fd12::7", true},
		{"64:ff9b::a14:304", true},
		{"2002:a14:304::1", true},
		{"10.21.0.1", false},
		{"127.0.0.1", false},
	} {
		if got := netguard.Permitted(netip.MustParseAddr(tt.addr), allow); got != tt.want {
			t.Errorf("Permitted(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

func TestCheckHost(t *testing.T) {
	allow := []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}
	for _, tt := range []struct {
		host      string
		notPublic bool
		other     bool
	}{
		{host: "example.org"},
		{host: "fachverfahren.kreis.example"},
		{host: "8.8.8.8"},
		{host: "2001:4860:4860::8888"},
		{host: "10.20.0.5"},
		{host: "127.0.0.1", notPublic: true},
		{host: "::1", notPublic: true},
		{host: "::ffff:127.0.0.1", notPublic: true},
		{host: "169.254.169.254", notPublic: true},
		{host: "0.0.0.0", notPublic: true},
		{host: "localhost", notPublic: true},
		{host: "LocalHost.", notPublic: true},
		{host: "api.localhost", notPublic: true},
		{host: "fe80::1%eth0", notPublic: true},
		{host: "127.1", other: true},
		{host: "2130706433", other: true},
		{host: "0177.0.0.1", other: true},
		{host: "0x7f.1", other: true},
		{host: "host.0x10", other: true},
		{host: "1.example"},
		{host: "example.0xbad.org"},
		{host: "64:ff9b::a9fe:a9fe%1", notPublic: true},
		{host: "ｌｏｃａｌｈｏｓｔ", notPublic: true},
		{host: "１２７.０.０.１", notPublic: true},
		{host: "127。0。0。1", notPublic: true},
		{host: "bürgeramt.example"},
	} {
		err := netguard.CheckHost(tt.host, allow)
		switch {
		case tt.notPublic:
			if !errors.Is(err, netguard.ErrNotPublic) {
				t.Errorf("CheckHost(%q) = %v, want ErrNotPublic", tt.host, err)
			}
		case tt.other:
			if err == nil || errors.Is(err, netguard.ErrNotPublic) {
				t.Errorf("CheckHost(%q) = %v, want a malformed host", tt.host, err)
			}
		case err != nil:
			t.Errorf("CheckHost(%q) = %v, want nil", tt.host, err)
		}
	}
}
