package ledger

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/amtsbote/amtsbote/pkg/store"
)

// metrics are the ledger's Prometheus series. Labels are bounded: event is
// one of FIT-Connect's seven event names or "unknown", outcome one of the
// outcome constants, deadline one of store's four deadlines.
type metrics struct {
	events         *prometheus.CounterVec
	routedMsgs     *prometheus.CounterVec
	deadlines      *prometheus.CounterVec
	objectsDeleted prometheus.Counter
	stateDeleted   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "amtsbote_ledger_events_total",
			Help: "EVENTS deliveries projected by the ledger, by event and outcome.",
		}, []string{"event", "outcome"}),
		routedMsgs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "amtsbote_ledger_routed_total",
			Help: "INBOX deliveries the ledger marked routed, by outcome.",
		}, []string{"outcome"}),
		deadlines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "amtsbote_ledger_deadlines_total",
			Help: "Retention deadlines kept (applied) or left for the next sweep (retry), by deadline.",
		}, []string{"deadline", "outcome"}),
		objectsDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "amtsbote_ledger_objects_deleted_total",
			Help: "Payloads and attachments deleted from the object store on a deadline.",
		}),
		stateDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "amtsbote_ledger_state_deleted_total",
			Help: "Authentication tags and outbox entries deleted from the state bucket on a deadline.",
		}),
	}
	for _, c := range []prometheus.Collector{m.events, m.routedMsgs, m.deadlines, m.objectsDeleted, m.stateDeleted} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) event(name, outcome string) { m.events.WithLabelValues(name, outcome).Inc() }

func (m *metrics) routed(outcome string) { m.routedMsgs.WithLabelValues(outcome).Inc() }

func (m *metrics) deadline(d store.Deadline, outcome string) {
	m.deadlines.WithLabelValues(string(d), outcome).Inc()
}
