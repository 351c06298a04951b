package signer

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	pkgmetrics "github.com/amtsbote/amtsbote/pkg/metrics"
)

// Outcomes of signing one entry, the outcome label of amtsbote_signing_total.
const (
	outcomePublished = "published"
	outcomeRetry     = "retry"
)

// metrics are the signer's series; outcome is one of the constants above.
type metrics struct {
	total    *prometheus.CounterVec
	duration prometheus.Histogram
	latency  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, queueLength func() float64) (*metrics, error) {
	m := &metrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "amtsbote_signing_total",
			Help: "Outbox events the signer signed and published, or left for a retry, by outcome.",
		}, []string{"outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "amtsbote_signing_duration_seconds",
			Help:    "Time to claim, sign and publish one outbox event.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "amtsbote_signing_latency_seconds",
			Help:    "Time from an event's issue (the request that accepted it) to its publish by the signer.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900},
		}),
	}
	queue := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "amtsbote_signing_queue_length",
		Help: "Outbox events this signer holds for its workers, waiting or being signed.",
	}, queueLength)
	for _, c := range []prometheus.Collector{m.total, m.duration, m.latency, queue} {
		if _, err := pkgmetrics.Register(reg, c); err != nil {
			return nil, err
		}
	}
	m.total.WithLabelValues(outcomePublished)
	m.total.WithLabelValues(outcomeRetry)
	return m, nil
}

// signed records one entry's outcome: took is the work, issued the
// event's issue time and now when it was published.
func (m *metrics) signed(err error, took time.Duration, issued, now time.Time) {
	if err != nil {
		m.total.WithLabelValues(outcomeRetry).Inc()
		return
	}
	m.total.WithLabelValues(outcomePublished).Inc()
	m.duration.Observe(took.Seconds())
	if !issued.IsZero() {
		m.latency.Observe(max(now.Sub(issued), 0).Seconds())
	}
}
