package ledger_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/ledger"
)

// TestBacklogFigures reads the backlog of two destinations in Baden-
// Württemberg and one the store does not know into the gauges by Land.
func TestBacklogFigures(t *testing.T) {
	for _, be := range flowtest.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			b, _ := bustest.Bus(t)
			st := be.Open(t)
			ctx := context.Background()
			now := time.Now().UTC().Truncate(time.Second)
			days := func(n float64) time.Time { return now.Add(-time.Duration(n * 24 * float64(time.Hour))) }

			waiting := func(dest string, submitted time.Time, picked bool) store.Submission {
				s := newSubmission(sealed.Submitted, submitted.Add(-time.Minute), &submitted, &submitted, nil)
				s.DestinationID = dest
				if picked {
					s.PickedUpAt = &now
				}
				return s
			}
			for i, id := range []string{"freiburg", "karlsruhe"} {
				d := store.Destination{ID: id, Status: store.StatusActive, HomeRegion: []string{"083110000000", "082120000000"}[i],
					Contact: store.ContactInformation{LegalName: id}, MetadataVersions: []string{"1.0.0"}}
				if err := st.CreateDestination(ctx, "test", d, nil); err != nil {
					t.Fatal(err)
				}
			}
			for _, s := range []store.Submission{
				waiting("freiburg", days(10), false),
				waiting("freiburg", days(4), false),
				waiting("freiburg", days(1), true),
				waiting("karlsruhe", days(0.5), false),
				waiting("unknown-destination", days(3.5), false),
				newSubmission(sealed.Accepted, days(20), ptr(days(20)), ptr(days(20)), nil),
			} {
				createSubmission(t, st, s)
			}

			reg := prometheus.NewRegistry()
			l, err := ledger.New(ledger.Config{
				Bus: b, Store: st, Issuer: flowtest.Issuer(t, b, issuer), Registry: reg,
				Now: func() time.Time { return now },
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := l.RefreshBacklog(ctx, st.(store.Backlogs)); err != nil {
				t.Fatalf("refresh: %v", err)
			}
			for _, tc := range []struct {
				name   string
				labels map[string]string
				want   float64
			}{
				{"amtsbote_inbox_backlog", map[string]string{"land": "08"}, 4},
				{"amtsbote_inbox_unpicked", map[string]string{"land": "08"}, 3},
				{"amtsbote_inbox_oldest_unpicked_age_seconds", map[string]string{"land": "08"}, 10 * 86400},
				{"amtsbote_submissions_overdue", map[string]string{"land": "08", "days": "3"}, 2},
				{"amtsbote_submissions_overdue", map[string]string{"land": "08", "days": "9"}, 1},
				{"amtsbote_destinations_overdue", map[string]string{"land": "08", "days": "3"}, 1},
				{"amtsbote_destinations_overdue", map[string]string{"land": "08", "days": "9"}, 1},
				{"amtsbote_inbox_backlog", map[string]string{"land": "unknown"}, 1},
				{"amtsbote_submissions_overdue", map[string]string{"land": "unknown", "days": "3"}, 1},
				{"amtsbote_inbox_backlog", map[string]string{"land": "09"}, 0},
				{"amtsbote_inbox_backlog_updated_timestamp_seconds", nil, float64(now.Unix())},
			} {
				if got := gaugeValue(t, reg, tc.name, tc.labels); got != tc.want {
					t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
				}
			}
		})
	}
}

// gaugeValue sums the gauges name whose labels match labels.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metric
				}
			}
			sum += m.GetGauge().GetValue()
		}
	}
	return sum
}
