package bus

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	tests := []struct {
		attempt int
		want    time.Duration
	}{
		{1, time.Second},
		{2, 2 * time.Second},
		{3, 4 * time.Second},
		{9, 256 * time.Second},
		{10, 5 * time.Minute},
		{1000, 5 * time.Minute},
		{0, time.Second},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("attempt %d", tt.attempt), func(t *testing.T) {
			if got := backoff(tt.attempt, time.Second, 5*time.Minute); got != tt.want {
				t.Errorf("backoff(%d) = %s, want %s", tt.attempt, got, tt.want)
			}
		})
	}
}

func TestHeaderText(t *testing.T) {
	tests := []struct {
		name, in string
		n        int
		want     string
	}{
		{"plain", "no route", 100, "no route"},
		{"newlines", "a\r\nb\tc", 100, "a  b c"},
		{"cut", "abcdef", 3, "abc"},
		{"cut on rune boundary", "aäb", 2, "a"},
		{"invalid utf-8", "a\xffb", 100, "a?b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := headerText(tt.in, tt.n); got != tt.want {
				t.Errorf("headerText(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
			}
		})
	}
}

func TestRunEmbeddedConfig(t *testing.T) {
	bad := []struct {
		name string
		cfg  EmbeddedConfig
		want string
	}{
		{"no dir", EmbeddedConfig{}, "dir is required"},
		{"cluster without name", EmbeddedConfig{Dir: t.TempDir(), ServerName: "n1", Cluster: &ClusterConfig{}}, "cluster name is required"},
		{"cluster without server name", EmbeddedConfig{Dir: t.TempDir(), Cluster: &ClusterConfig{Name: "c"}}, "server name is required"},
		{"bad route", EmbeddedConfig{Dir: t.TempDir(), ServerName: "n1", Cluster: &ClusterConfig{Name: "c", Routes: []string{"nats-route://[::1"}}}, "cluster route"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := RunEmbedded(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}

	t.Run("logs through slog", func(t *testing.T) {
		var buf bytes.Buffer
		s, err := RunEmbedded(EmbeddedConfig{Dir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&buf, nil))})
		if err != nil {
			t.Fatal(err)
		}
		url := s.ClientURL()
		s.Shutdown()
		s.WaitForShutdown()
		if !strings.Contains(buf.String(), "component=nats-server") {
			t.Errorf("no server log lines in %q", buf.String())
		}
		if !strings.HasPrefix(url, "nats://127.0.0.1:") || strings.HasSuffix(url, ":4222") {
			t.Errorf("client URL %s, want 127.0.0.1 on a random port", url)
		}
	})
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                                 "nats://127.0.0.1:4222",
		"nats://amtsbote:s3cret@127.0.0.1:4222":                 "nats://amtsbote:xxxxx@127.0.0.1:4222",
		"nats://a:p1@h1:4222,nats://a:p2@h2:4222":               "nats://a:xxxxx@h1:4222,nats://a:xxxxx@h2:4222",
		"nats://s3cret-token@127.0.0.1:4222":                    "nats://xxxxx@127.0.0.1:4222",
		"tls://amtsbote:s3cret@nats.example:4222,nats://x:4222": "tls://amtsbote:xxxxx@nats.example:4222,nats://x:4222",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConnectWithoutURL(t *testing.T) {
	for _, url := range []string{"", "  "} {
		if _, err := Connect(t.Context(), url); err == nil || !strings.Contains(err.Error(), "no NATS URL") {
			t.Errorf("Connect(%q) = %v, want an error naming the missing URL", url, err)
		}
	}
}

// TestPullStreakLogsOnce: pulls failing every few seconds through an
// outage are one warning, then one line when they are answered again.
func TestPullStreakLogsOnce(t *testing.T) {
	var buf bytes.Buffer
	cfg := ConsumerConfig{Stream: StreamInbox, Durable: "sink",
		Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	var p pullStreak
	p.answered(cfg)
	for range 12 {
		p.failed(cfg, "consume: heartbeats missed; pulling again", fmt.Errorf("no heartbeat"))
	}
	p.answered(cfg)
	p.answered(cfg)
	p.failed(cfg, "consume: pull failed; pulling again", fmt.Errorf("timeout"))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{"level=WARN msg=\"consume: heartbeats missed", "level=INFO msg=\"consume: pulls answered again\"", "level=WARN msg=\"consume: pull failed"}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d %q, want %q", i, lines[i], w)
		}
	}
	if !strings.Contains(lines[1], "failed_pulls=12") {
		t.Errorf("%q, want the 12 failed pulls counted", lines[1])
	}
}
