package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/pkg/jose"
)

func TestOverdueFlag(t *testing.T) {
	env := func(m map[string]string) envReader { return func(k string) string { return m[k] } }
	base := []string{"--public-url", "http://x", "--database-url", "postgres://x", "--signing-key", "k"}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string // the ages, or "error"
	}{
		{"default", nil, nil, "[72h0m0s 216h0m0s]"},
		{"flag", []string{"--overdue-after", "24h, 48h"}, nil, "[24h0m0s 48h0m0s]"},
		{"environment", nil, map[string]string{"AMTSBOTE_OVERDUE_AFTER": "1h"}, "[1h0m0s]"},
		{"not increasing", []string{"--overdue-after", "48h,24h"}, nil, "error"},
		{"repeated", []string{"--overdue-after", "24h,24h"}, nil, "error"},
		{"not a duration", []string{"--overdue-after", "3d"}, nil, "error"},
		{"zero", []string{"--overdue-after", "0s"}, nil, "error"},
		{"empty", []string{"--overdue-after", ""}, nil, "error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, cmd := range []string{"serve", "dev"} {
				var (
					got []time.Duration
					err error
				)
				if cmd == "serve" {
					var c serveConfig
					c, err = parseServeConfig(append(append([]string{}, base...), tt.args...), env(tt.env), io.Discard)
					got = c.Overdue
				} else {
					var c devConfig
					c, err = parseDevConfig(tt.args, env(tt.env), io.Discard)
					got = c.Overdue
				}
				switch {
				case tt.want == "error" && err == nil:
					t.Errorf("%s: accepted as %v", cmd, got)
				case tt.want != "error" && (err != nil || fmt.Sprint(got) != tt.want):
					t.Errorf("%s: %v, %v; want %s", cmd, got, err, tt.want)
				}
			}
		})
	}
}

func TestServeKnowsDelivery(t *testing.T) {
	c, err := parseServeConfig([]string{"--target", "gateway,delivery", "--public-url", "http://x", "--database-url", "postgres://x", "--signing-key", "k"},
		func(string) string { return "" }, io.Discard)
	if err != nil || fmt.Sprint(c.Targets) != "[gateway delivery]" {
		t.Errorf("targets %v, %v", c.Targets, err)
	}
}

func TestRoutesRateFlag(t *testing.T) {
	base := []string{"--public-url", "http://x", "--database-url", "postgres://x", "--signing-key", "k"}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string // rate and burst, or "error"
	}{
		{"default", nil, nil, "20 100"},
		{"flags", []string{"--routes-rate", "1e6", "--routes-burst", "5000"}, nil, "1e+06 5000"},
		{"environment", nil, map[string]string{"AMTSBOTE_ROUTES_RATE": "50", "AMTSBOTE_ROUTES_BURST": "70"}, "50 70"},
		{"not a number", nil, map[string]string{"AMTSBOTE_ROUTES_RATE": "fast"}, "error"},
		{"burst not an integer", []string{"--routes-burst", "1.5"}, nil, "error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseServeConfig(append(append([]string{}, base...), tt.args...), func(k string) string { return tt.env[k] }, io.Discard)
			got := fmt.Sprint(c.RoutesRate, " ", c.RoutesBurst)
			switch {
			case tt.want == "error" && err == nil:
				t.Errorf("accepted as %s", got)
			case tt.want != "error" && (err != nil || got != tt.want):
				t.Errorf("%s, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestCallbackAllowFlag(t *testing.T) {
	base := []string{"--public-url", "http://x", "--database-url", "postgres://x", "--signing-key", "k"}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string // the networks, or "error"
	}{
		{"default: the public internet alone", nil, nil, "[]"},
		{"flag", []string{"--callback-allow", "10.20.0.0/16, fd00:ab::/32"}, nil, "[10.20.0.0/16 fd00:ab::/32]"},
		{"environment", nil, map[string]string{"AMTSBOTE_CALLBACK_ALLOW": "192.168.7.9/24"}, "[192.168.7.0/24]"},
		{"an address without its length", []string{"--callback-allow", "10.0.0.1"}, nil, "error"},
		{"a name", []string{"--callback-allow", "intranet"}, nil, "error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseServeConfig(append(append([]string{}, base...), tt.args...), func(k string) string { return tt.env[k] }, io.Discard)
			got := fmt.Sprint(c.CallbackAllow)
			switch {
			case tt.want == "error" && err == nil:
				t.Errorf("accepted as %s", got)
			case tt.want != "error" && (err != nil || got != tt.want):
				t.Errorf("%s, %v; want %s", got, err, tt.want)
			}
		})
	}
}

// An encryption key given as the signing key is refused at once, naming
// the flag and the file, before anything is started.
func TestServeRefusesAnEncryptionKey(t *testing.T) {
	kp, err := jose.GenerateKeyPair(jose.Encryption, "enc-key-1", "Test")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := kp.MarshalPrivate()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "enc.jwk.json")
	if err := os.WriteFile(file, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	err = runServe(context.Background(), []string{"--target", "router", "--public-url", "http://x",
		"--database-url", "postgres://127.0.0.1:1/none", "--nats-url", "nats://127.0.0.1:1", "--signing-key", file},
		func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--signing-key "+file) || !strings.Contains(err.Error(), "want a signing key") {
		t.Errorf("serve: %v, want the flag and file named", err)
	}
}

func TestTrustedProxiesFlag(t *testing.T) {
	base := []string{"--public-url", "http://x", "--database-url", "postgres://x", "--signing-key", "k"}
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
		want string // the prefixes, or "error"
	}{
		{"default: none", nil, nil, "[]"},
		{"an address and a network", []string{"--trusted-proxies", "10.0.0.7, fd00::/8"}, nil, "[10.0.0.7/32 fd00::/8]"},
		{"environment", nil, map[string]string{"AMTSBOTE_TRUSTED_PROXIES": "172.16.5.0/24"}, "[172.16.5.0/24]"},
		{"a name", []string{"--trusted-proxies", "ingress"}, nil, "error"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseServeConfig(append(append([]string{}, base...), tt.args...), func(k string) string { return tt.env[k] }, io.Discard)
			got := fmt.Sprint(c.Limits.TrustedProxies)
			switch {
			case tt.want == "error" && err == nil:
				t.Errorf("accepted as %s", got)
			case tt.want != "error" && (err != nil || got != tt.want):
				t.Errorf("%s, %v; want %s", got, err, tt.want)
			}
		})
	}
}

// TestServeUsedWrongly checks that a refused flag value is a usage error
// (exit 2), its message still to be printed.
func TestServeUsedWrongly(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--target=routr", "--public-url", "http://x", "--database-url", "postgres://x", "--signing-key", "k"},
		{"serve", "--target=router"},
		{"serve", "--callback-allow", "10.20.0.1", "--public-url", "http://x", "--database-url", "postgres://x", "--signing-key", "k"},
	} {
		err := Run(context.Background(), args, func(string) string { return "" }, io.Discard, io.Discard)
		var usage *UsageError
		if !errors.As(err, &usage) || usage.Error() == "" {
			t.Errorf("%q: %v, want a usage error with its message", args, err)
		}
	}
}
