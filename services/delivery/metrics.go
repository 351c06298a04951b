package delivery

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of one callback attempt, the outcome label of
// amtsbote_callbacks_total.
const (
	outcomeDelivered = "delivered"
	outcomeFailed    = "failed"
	outcomeDropped   = "dropped"
)

// metrics are the role's Prometheus series; kind is one of the two
// callback kinds, outcome one of the constants above.
type metrics struct {
	callbacks *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "amtsbote_callbacks_total",
			Help: "Callback attempts by kind and outcome: delivered (2xx), failed (retried or dead-lettered), dropped (no callback configured any more, or the submission no longer to be picked up).",
		}, []string{"kind", "outcome"}),
	}
	if err := reg.Register(m.callbacks); err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	// Present from the start, so that alerts on the failure ratio and the
	// dashboard find them before the first callback.
	for _, kind := range []string{KindNewSubmissions, KindNewEvents} {
		for _, o := range []string{outcomeDelivered, outcomeFailed, outcomeDropped} {
			m.callbacks.WithLabelValues(kind, o)
		}
	}
	return m, nil
}

func (m *metrics) outcome(kind, outcome string) {
	if kind != KindNewSubmissions && kind != KindNewEvents {
		kind = "unknown"
	}
	m.callbacks.WithLabelValues(kind, outcome).Inc()
}
