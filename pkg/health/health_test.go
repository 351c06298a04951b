package health_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/health"
	"github.com/amtsbote/amtsbote/pkg/problem"
)

func TestHealth(t *testing.T) {
	var natsDown atomic.Bool
	var logs bytes.Buffer
	h := health.New(slog.New(slog.NewJSONHandler(&logs, nil)),
		health.Check{Name: "nats", Func: func(context.Context) error {
			if natsDown.Load() {
				return errors.New("nats: connection refused to 10.0.0.7:4222")
			}
			return nil
		}},
		health.Check{Name: "store", Func: func(context.Context) error { return nil }},
	)
	srv := httptest.NewServer(h.Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("metrics\n"))
	})))
	defer srv.Close()
	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp, b.Bytes()
	}

	t.Run("ready", func(t *testing.T) {
		resp, body := get("/readyz")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("/readyz %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		var r struct {
			Status string            `json:"status"`
			Checks map[string]string `json:"checks"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatal(err)
		}
		if r.Status != "ready" || r.Checks["nats"] != "ok" || r.Checks["store"] != "ok" || len(r.Checks) != 2 {
			t.Errorf("/readyz: %s", body)
		}
	})

	t.Run("not ready names the failing check, not its error", func(t *testing.T) {
		natsDown.Store(true)
		defer natsDown.Store(false)
		for range 2 {
			resp, body := get("/readyz")
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Type") != problem.ContentType {
				t.Fatalf("/readyz %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			var p problem.Problem
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatal(err)
			}
			if p.Type != problem.TypeUnavailable || p.Detail != "not ready: nats failing" {
				t.Errorf("problem: %s", body)
			}
			if checks, _ := p.Extra["checks"].(map[string]any); checks["nats"] != "failing" || checks["store"] != "ok" {
				t.Errorf("checks: %s", body)
			}
			if strings.Contains(string(body), "10.0.0.7") {
				t.Errorf("the answer shows the check's error: %s", body)
			}
			if resp, _ := get("/healthz"); resp.StatusCode != http.StatusOK {
				t.Errorf("/healthz %d while not ready, want 200", resp.StatusCode)
			}
		}
		if n := strings.Count(logs.String(), `"msg":"not ready"`); n != 1 {
			t.Errorf("failure logged %d times over two probes, want once:\n%s", n, logs.String())
		}
	})

	t.Run("ready again is logged", func(t *testing.T) {
		if resp, _ := get("/readyz"); resp.StatusCode != http.StatusOK {
			t.Fatalf("/readyz %d", resp.StatusCode)
		}
		if !strings.Contains(logs.String(), `"msg":"ready again","check":"nats"`) {
			t.Errorf("recovery not logged:\n%s", logs.String())
		}
	})

	t.Run("metrics", func(t *testing.T) {
		if resp, body := get("/metrics"); resp.StatusCode != http.StatusOK || string(body) != "metrics\n" {
			t.Errorf("/metrics %d: %s", resp.StatusCode, body)
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(h.Collector())
		natsDown.Store(true)
		defer natsDown.Store(false)
		want := `
# HELP amtsbote_ready 1 when the readiness check passed at this scrape, else 0, by check (nats, store, routes, …).
# TYPE amtsbote_ready gauge
amtsbote_ready{check="nats"} 0
amtsbote_ready{check="store"} 1
`
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "amtsbote_ready"); err != nil {
			t.Error(err)
		}
	})
}

func TestCheckEndsWithItsContext(t *testing.T) {
	h := health.New(nil, health.Check{Name: "stuck", Func: func(ctx context.Context) error {
		<-ctx.Done()
		return nil
	}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.Check(ctx)["stuck"]; !errors.Is(err, context.Canceled) {
		t.Errorf("a check that returned nil after its context ended: %v, want context.Canceled", err)
	}
}

// TestWatch shows that a failure and a recovery are logged when they
// happen, with nobody asking /readyz.
func TestWatch(t *testing.T) {
	var down atomic.Bool
	logs := &flowtest.Buffer{}
	h := health.New(slog.New(slog.NewTextHandler(logs, nil)), health.Check{Name: "sink", Func: func(context.Context) error {
		if down.Load() {
			return errors.New("folder gone")
		}
		return nil
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.Watch(ctx, 5*time.Millisecond)
	}()
	waitFor := func(line string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), line); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q logged; the log:\n%s", line, logs.String())
			}
		}
	}
	down.Store(true)
	waitFor(`msg="not ready" check=sink err="folder gone"`)
	down.Store(false)
	waitFor(`msg="ready again" check=sink`)
	cancel()
	<-done
	if n := strings.Count(logs.String(), "not ready"); n != 1 {
		t.Errorf("the failure logged %d times, want once:\n%s", n, logs.String())
	}
}

// TestCheckCancelledNotLogged shows that a check its caller gave up on
// logs no failure: it says nothing of the dependency.
func TestCheckCancelledNotLogged(t *testing.T) {
	logs := &flowtest.Buffer{}
	h := health.New(slog.New(slog.NewTextHandler(logs, nil)), health.Check{Name: "nats", Func: func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h.Check(ctx)
	if logs.String() != "" {
		t.Errorf("a cancelled check logged:\n%s", logs.String())
	}
}
