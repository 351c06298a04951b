package metrics_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/amtsbote/amtsbote/pkg/metrics"
)

func TestLand(t *testing.T) {
	for _, tc := range []struct{ ars, want string }{
		{"083110000000", "08"},
		{"DE08311", "08"},
		{"16", "16"},
		{"DE", metrics.Unknown},
		{"", metrics.Unknown},
		{"00", metrics.Unknown},
		{"17", metrics.Unknown},
		{"+1", metrics.Unknown},
		{"8", metrics.Unknown},
		{"DEab", metrics.Unknown},
	} {
		if got := metrics.Land(tc.ars); got != tc.want {
			t.Errorf("Land(%q) = %q, want %q", tc.ars, got, tc.want)
		}
	}
}

func TestStatusClass(t *testing.T) {
	for code, want := range map[int]string{200: "2xx", 204: "2xx", 301: "3xx", 404: "4xx", 429: "4xx", 503: "5xx", 0: "other", 600: "other", 99: "other"} {
		if got := metrics.StatusClass(code); got != want {
			t.Errorf("StatusClass(%d) = %q, want %q", code, got, want)
		}
	}
}

func TestMethod(t *testing.T) {
	for m, want := range map[string]string{"GET": "GET", "PATCH": "PATCH", "get": "other", "X1234": "other", "": "other"} {
		if got := metrics.Method(m); got != want {
			t.Errorf("Method(%q) = %q, want %q", m, got, want)
		}
	}
}

func TestRegisterShares(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := metrics.NewSinks(reg, "http")
	if err != nil {
		t.Fatal(err)
	}
	b, err := metrics.NewSinks(reg, "http")
	if err != nil {
		t.Fatalf("second registration: %v", err)
	}
	a.Observe("http", metrics.SinkDelivered, time.Millisecond)
	b.Observe("http", metrics.SinkFailed, time.Millisecond)
	want := `
# HELP amtsbote_sink_deliveries_total Subscriber deliveries into a sink, by sink kind and outcome.
# TYPE amtsbote_sink_deliveries_total counter
amtsbote_sink_deliveries_total{kind="http",outcome="delivered"} 1
amtsbote_sink_deliveries_total{kind="http",outcome="failed"} 1
amtsbote_sink_deliveries_total{kind="http",outcome="retry"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "amtsbote_sink_deliveries_total"); err != nil {
		t.Error(err)
	}
	// A collector of another shape under the same name is refused.
	if _, err := metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "amtsbote_sink_deliveries_total", Help: "x"})); err == nil {
		t.Error("a counter without labels registered over the labelled one")
	}
}

func TestSinksPresent(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := metrics.NewSinks(reg, "directory")
	if err != nil {
		t.Fatal(err)
	}
	s.Observe("directory", metrics.SinkRetry, time.Second)
	want := `
# HELP amtsbote_sink_deliveries_total Subscriber deliveries into a sink, by sink kind and outcome.
# TYPE amtsbote_sink_deliveries_total counter
amtsbote_sink_deliveries_total{kind="directory",outcome="delivered"} 0
amtsbote_sink_deliveries_total{kind="directory",outcome="failed"} 0
amtsbote_sink_deliveries_total{kind="directory",outcome="retry"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "amtsbote_sink_deliveries_total"); err != nil {
		t.Error(err)
	}
}
