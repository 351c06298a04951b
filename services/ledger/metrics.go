package ledger

import (
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	pkgmetrics "github.com/amtsbote/amtsbote/pkg/metrics"
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

	// The lifecycle, counted once where the ledger projects it: stage is
	// one of the stage constants, land a Land key or "unknown".
	submissions *prometheus.CounterVec
	stages      *prometheus.HistogramVec

	// The backlog by Land, refreshed from the store.
	backlog       *prometheus.GaugeVec
	unpicked      *prometheus.GaugeVec
	oldest        *prometheus.GaugeVec
	overdue       *prometheus.GaugeVec
	overdueDests  *prometheus.GaugeVec
	backlogUpdate prometheus.Gauge
}

// Stages of a submission's lifecycle, the stage label of
// amtsbote_submissions_total.
const (
	StageCreated   = "created"
	StageSubmitted = "submitted"
	StageRouted    = "routed"
	StagePickedUp  = "picked_up"
	StageAccepted  = "accepted"
	StageRejected  = "rejected"
	StageForwarded = "forwarded"
	// StageExpired is Amtsbote's reject of a submission not picked up in
	// time (day 14), told apart from a receiver's reject.
	StageExpired = "expired"
	StageDeleted = "deleted"
)

// Stages lists the stages in lifecycle order.
var Stages = []string{StageCreated, StageSubmitted, StageRouted, StagePickedUp, StageAccepted, StageRejected, StageForwarded, StageExpired, StageDeleted}

// Latencies between stages, the stage label of amtsbote_stage_duration_seconds.
const (
	SubmitToRouted   = "submit_to_routed"
	RoutedToPickedUp = "routed_to_picked_up"
	SubmitToAccepted = "submit_to_accepted"
)

// OverdueDays are the ages, in days since submission, at which an
// unpicked submission counts as overdue: day 3 warns, day 9 is close to
// the automatic reject of day 14.
var OverdueDays = []int{3, 9}

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
	m.submissions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "amtsbote_submissions_total",
		Help: "Submissions reaching a stage of their lifecycle, by stage and Land of the destination's home region.",
	}, []string{"stage", "land"})
	m.stages = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "amtsbote_stage_duration_seconds",
		Help:    "Time between two stages of a submission: submit_to_routed, routed_to_picked_up, submit_to_accepted.",
		Buckets: pkgmetrics.LatencyBuckets,
	}, []string{"stage"})
	m.backlog = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "amtsbote_inbox_backlog",
		Help: "Submissions on the pickup lists (submitted and routed, not yet answered), by Land of the destination's home region.",
	}, []string{"land"})
	m.unpicked = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "amtsbote_inbox_unpicked",
		Help: "Submissions on the pickup lists never fetched, by Land.",
	}, []string{"land"})
	m.oldest = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "amtsbote_inbox_oldest_unpicked_age_seconds",
		Help: "Age since submission of the oldest submission never fetched, by Land; 0 when none waits.",
	}, []string{"land"})
	m.overdue = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "amtsbote_submissions_overdue",
		Help: "Submissions never fetched whose submission is at least days old, by Land.",
	}, []string{"land", "days"})
	m.overdueDests = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "amtsbote_destinations_overdue",
		Help: "Destinations with at least one submission never fetched that is at least days old, by Land.",
	}, []string{"land", "days"})
	m.backlogUpdate = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "amtsbote_inbox_backlog_updated_timestamp_seconds",
		Help: "When the backlog figures were last read from the store (Unix time).",
	})
	for _, c := range []prometheus.Collector{m.events, m.routedMsgs, m.deadlines, m.objectsDeleted, m.stateDeleted,
		m.submissions, m.stages, m.backlog, m.unpicked, m.oldest, m.overdue, m.overdueDests, m.backlogUpdate} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	for _, stage := range Stages {
		for _, land := range pkgmetrics.Lands {
			m.submissions.WithLabelValues(stage, land)
		}
	}
	for _, stage := range []string{SubmitToRouted, RoutedToPickedUp, SubmitToAccepted} {
		m.stages.WithLabelValues(stage)
	}
	m.setBacklog(nil, time.Time{})
	return m, nil
}

// stage counts a submission reaching stage at a destination of land.
func (m *metrics) stage(stage, land string) { m.submissions.WithLabelValues(stage, land).Inc() }

// latency observes the time from one stage to the next; a clock skew
// between the times' sources counts as no time.
func (m *metrics) latency(stage string, from, to time.Time) {
	m.stages.WithLabelValues(stage).Observe(max(to.Sub(from), 0).Seconds())
}

// setBacklog replaces the backlog figures with those of backlogs (cut
// off at OverdueDays) read at now; every Land is present, at 0 when
// nothing waits there.
func (m *metrics) setBacklog(backlogs []store.Backlog, now time.Time) {
	type figures struct {
		listed, unpicked int
		oldest           float64
		overdue, dests   []int
	}
	byLand := make(map[string]*figures, len(pkgmetrics.Lands))
	for _, land := range pkgmetrics.Lands {
		byLand[land] = &figures{overdue: make([]int, len(OverdueDays)), dests: make([]int, len(OverdueDays))}
	}
	for _, b := range backlogs {
		f := byLand[pkgmetrics.Land(b.HomeRegion)]
		f.listed += b.Listed
		f.unpicked += b.Unpicked
		if b.OldestUnpicked != nil {
			f.oldest = max(f.oldest, now.Sub(*b.OldestUnpicked).Seconds())
		}
		for i := range OverdueDays {
			if i < len(b.Overdue) && b.Overdue[i] > 0 {
				f.overdue[i] += b.Overdue[i]
				f.dests[i]++
			}
		}
	}
	for land, f := range byLand {
		m.backlog.WithLabelValues(land).Set(float64(f.listed))
		m.unpicked.WithLabelValues(land).Set(float64(f.unpicked))
		m.oldest.WithLabelValues(land).Set(f.oldest)
		for i, d := range OverdueDays {
			days := strconv.Itoa(d)
			m.overdue.WithLabelValues(land, days).Set(float64(f.overdue[i]))
			m.overdueDests.WithLabelValues(land, days).Set(float64(f.dests[i]))
		}
	}
	if !now.IsZero() {
		m.backlogUpdate.Set(float64(now.Unix()))
	}
}

func (m *metrics) event(name, outcome string) { m.events.WithLabelValues(name, outcome).Inc() }

func (m *metrics) routed(outcome string) { m.routedMsgs.WithLabelValues(outcome).Inc() }

func (m *metrics) deadline(d store.Deadline, outcome string) {
	m.deadlines.WithLabelValues(string(d), outcome).Inc()
}
