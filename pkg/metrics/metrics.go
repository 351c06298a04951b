// Package metrics holds what every Amtsbote process shares of its
// Prometheus metrics: a registry of its own with the Go and process
// collectors, the handler serving it, registration that lets two
// components of one process share a series, the bounded label values
// (status class, Land), and the sink deliveries a subscriber counts, so
// that every subscriber names them alike and the shipped dashboard finds
// them.
//
// Labels are bounded by construction: never an id, a path or a token.
package metrics

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a registry with the Go runtime and process
// collectors, for one process to own.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves reg's metrics in Prometheus's text format (or
// OpenMetrics, when the scraper asks for it).
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: true})
}

// Register registers c, or returns the collector registered before under
// the same name and labels, so that two components of one process (two
// gateways in a test, the gateway and the router on one routing table)
// share a series instead of failing.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("register metrics: %w", err)
	}
	return c, nil
}

// StatusClass is the code label of an HTTP status: "2xx" … "5xx", or
// "other" for a status outside 100..599.
func StatusClass(status int) string {
	if status < 100 || status > 599 {
		return "other"
	}
	return statusClasses[status/100-1]
}

var statusClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// Method is the label of an HTTP request method: one of the standard
// methods, else "other", as a client chooses the method and each new
// label value is a new series.
func Method(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

// Unknown is the Land label of what has no Land (a Bund-wide home region,
// an unknown destination).
const Unknown = "unknown"

// Lands are the values of a land label: the 16 two-digit Land keys and
// Unknown.
var Lands = []string{"01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "13", "14", "15", "16", Unknown}

// Land is the land label of an ARS (with or without "DE"): its first two
// digits when they are a Land key, else Unknown.
func Land(ars string) string {
	if len(ars) >= 2 && ars[:2] == "DE" {
		ars = ars[2:]
	}
	if len(ars) < 2 {
		return Unknown
	}
	n, err := strconv.Atoi(ars[:2])
	if err != nil || n < 1 || n > 16 || ars[0] < '0' || ars[0] > '1' {
		return Unknown
	}
	return ars[:2]
}

// LatencyBuckets are the buckets of stage latencies: from a tenth of a
// second to three weeks, the span between a submit and a late accept.
var LatencyBuckets = []float64{0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400, 14 * 86400, 21 * 86400}

// Sink outcomes, the outcome label of amtsbote_sink_deliveries_total.
const (
	// SinkDelivered: the sink holds the submission, stored now or
	// before (a redelivery after a crash finds its copy).
	SinkDelivered = "delivered"
	SinkRetry     = "retry"  // failed; the message is redelivered
	SinkFailed    = "failed" // failed for good
)

// Sinks counts the subscriber's deliveries into sinks by sink kind
// (directory, http, postgres) and outcome.
type Sinks struct {
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewSinks registers the sink series on reg, with every outcome of each
// kind present from the start.
func NewSinks(reg prometheus.Registerer, kinds ...string) (*Sinks, error) {
	total, err := Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "amtsbote_sink_deliveries_total",
		Help: "Subscriber deliveries into a sink, by sink kind and outcome.",
	}, []string{"kind", "outcome"}))
	if err != nil {
		return nil, err
	}
	duration, err := Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "amtsbote_sink_delivery_duration_seconds",
		Help:    "Time one delivery into a sink took, by sink kind.",
		Buckets: prometheus.DefBuckets,
	}, []string{"kind"}))
	if err != nil {
		return nil, err
	}
	for _, k := range kinds {
		for _, o := range []string{SinkDelivered, SinkRetry, SinkFailed} {
			total.WithLabelValues(k, o)
		}
		duration.WithLabelValues(k)
	}
	return &Sinks{total: total, duration: duration}, nil
}

// Handled outcomes of a subscriber besides its decisions (accepted,
// rejected, forwarded, decided, skipped), the outcome label of
// amtsbote_subscriber_submissions_total.
const (
	HandledRetry  = "retry"  // failed for now: a key not configured, an API or a sink that does not answer
	HandledFailed = "failed" // failed for good: dead-lettered, or left on the pickup list
)

// Handled counts the submissions a subscriber handled, by outcome, so that
// one failing for now (a key rolled without the subscriber's file, an API
// down) shows besides its log; and, in mode http, its requests for the
// pickup lists, so that a subscriber that cannot list shows too.
type Handled struct{ total, lists *prometheus.CounterVec }

// NewHandled registers amtsbote_subscriber_submissions_total and
// amtsbote_subscriber_pickup_lists_total on reg with every outcome present
// from the start.
func NewHandled(reg prometheus.Registerer, outcomes ...string) (*Handled, error) {
	total, err := Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "amtsbote_subscriber_submissions_total",
		Help: "Submissions a subscriber handled, by outcome: its decision, retry (failed for now) or failed (for good).",
	}, []string{"outcome"}))
	if err != nil {
		return nil, err
	}
	for _, o := range append(outcomes, HandledRetry, HandledFailed) {
		total.WithLabelValues(o)
	}
	lists, err := Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "amtsbote_subscriber_pickup_lists_total",
		Help: "Pickup-list pages a subscriber in mode http asked the Submission API for, by outcome: ok or failed.",
	}, []string{"outcome"}))
	if err != nil {
		return nil, err
	}
	lists.WithLabelValues("ok")
	lists.WithLabelValues("failed")
	return &Handled{total: total, lists: lists}, nil
}

// Count counts one submission handled with outcome.
func (h *Handled) Count(outcome string) { h.total.WithLabelValues(outcome).Inc() }

// Listed counts one request for a page of a pickup list.
func (h *Handled) Listed(ok bool) {
	outcome := "failed"
	if ok {
		outcome = "ok"
	}
	h.lists.WithLabelValues(outcome).Inc()
}

// Observe counts one delivery into a sink of kind with outcome that took d.
func (s *Sinks) Observe(kind, outcome string, d time.Duration) {
	s.total.WithLabelValues(kind, outcome).Inc()
	s.duration.WithLabelValues(kind).Observe(d.Seconds())
}
