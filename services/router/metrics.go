package router

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of one delivery, the outcome label of amtsbote_router_messages_total.
const (
	outcomeRouted     = "routed"
	outcomeDuplicate  = "duplicate"
	outcomeUnroutable = "unroutable"
	outcomeInvalid    = "invalid"
	outcomeRetry      = "retry"
)

// metrics are the router's Prometheus series. Labels are bounded: outcome
// and reason are the constants above, land a two-digit Land code ("00" for
// the Bund) or "unknown".
type metrics struct {
	messages   *prometheus.CounterVec
	unroutable *prometheus.CounterVec
	latency    prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "amtsbote_router_messages_total",
			Help: "Ingress deliveries handled by the router, by outcome and Land of the applicant's place.",
		}, []string{"outcome", "land"}),
		unroutable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "amtsbote_router_unroutable_total",
			Help: "Submissions the router could not route, by reason and Land of the applicant's place.",
		}, []string{"reason", "land"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "amtsbote_router_submit_to_routed_seconds",
			Help:    "Time from a submission's arrival in INGRESS to its publish to INBOX.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
	}
	for _, c := range []prometheus.Collector{m.messages, m.unroutable, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}

// outcome counts one delivery.
func (m *metrics) outcome(outcome, land string) {
	m.messages.WithLabelValues(outcome, land).Inc()
}
