package console

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/services/gateway/httpapi"
)

// overview answers GET /admin/v1/overview: the process's amtsbote_
// series as they stand, and what the store and DEAD say now. A figure the
// process does not export or a part it is not connected to is null, so
// the console shows it as unknown rather than as zero.
type overview struct {
	At time.Time `json:"at"`
	// Series are the process's amtsbote_ counters and gauges; a
	// histogram appears as its _count and _sum.
	Series []series `json:"series"`
	// DeadLetters is how many messages DEAD holds.
	DeadLetters *int `json:"deadLetters"`
	// Waiting counts the submissions not yet picked up, Overdue those
	// waiting longer than each age of OverdueAfter; both null while the
	// store does not answer.
	Waiting      *int       `json:"waiting"`
	Oldest       *time.Time `json:"oldestSubmittedAt"`
	OverdueAfter []string   `json:"overdueAfter"`
	Overdue      []int      `json:"overdue"`
	// Destinations is the same per destination with any waiting.
	Destinations []waitingDestination `json:"destinations"`
	// Unavailable names the parts that did not answer: "store",
	// "jetstream".
	Unavailable []string `json:"unavailable"`
}

// overviewWait bounds each part's answer, so that one not answering
// leaves the others shown.
const overviewWait = 3 * time.Second

type series struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	Value  float64           `json:"value"`
}

type waitingDestination struct {
	DestinationID string    `json:"destinationId"`
	Waiting       int       `json:"waiting"`
	Overdue       []int     `json:"overdue"`
	Oldest        time.Time `json:"oldestSubmittedAt"`
}

func (c *Console) handleOverview(w http.ResponseWriter, r *http.Request, _ httpapi.Principal) error {
	ctx := r.Context()
	now := c.cfg.Now()
	out := overview{At: now.UTC(), Series: []series{}, Destinations: []waitingDestination{}, OverdueAfter: []string{}, Unavailable: []string{}}
	// The first cut-off lies ahead so that every submission waiting now
	// is counted; the ages follow, descending as Overdue wants them.
	cutoffs := []time.Time{now.Add(time.Second)}
	for _, age := range c.cfg.Overdue {
		cutoffs = append(cutoffs, now.Add(-age))
		out.OverdueAfter = append(out.OverdueAfter, age.String())
	}
	sctx, cancel := context.WithTimeout(ctx, overviewWait)
	list, err := c.cfg.Store.Overdue(sctx, cutoffs)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.cfg.API.Log.WarnContext(ctx, "overview without waiting submissions", "err", err)
		out.Unavailable = append(out.Unavailable, "store")
	} else {
		waiting := 0
		out.Waiting, out.Overdue = &waiting, make([]int, len(c.cfg.Overdue))
	}
	for _, o := range list {
		d := waitingDestination{DestinationID: o.DestinationID, Waiting: o.Counts[0], Overdue: o.Counts[1:], Oldest: o.Oldest.UTC()}
		out.Destinations = append(out.Destinations, d)
		*out.Waiting += d.Waiting
		for i, n := range d.Overdue {
			out.Overdue[i] += n
		}
		if out.Oldest == nil || d.Oldest.Before(*out.Oldest) {
			out.Oldest = &d.Oldest
		}
	}
	if c.cfg.Dead != nil {
		dctx, cancel := context.WithTimeout(ctx, overviewWait)
		_, total, err := c.cfg.Dead.DeadLetters(dctx, bus.DeadFilter{}, 0, 1)
		cancel()
		if err == nil {
			out.DeadLetters = &total
		} else {
			c.cfg.API.Log.WarnContext(ctx, "overview without dead letters", "err", err)
			out.Unavailable = append(out.Unavailable, "jetstream")
		}
	}
	families, err := c.cfg.Gatherer.Gather()
	if err != nil {
		c.cfg.API.Log.WarnContext(ctx, "overview with some series missing", "err", err)
	}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "amtsbote_") {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out.Series = append(out.Series, series{f.GetName(), labels, m.GetCounter().GetValue()})
			case dto.MetricType_GAUGE:
				out.Series = append(out.Series, series{f.GetName(), labels, m.GetGauge().GetValue()})
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				out.Series = append(out.Series,
					series{f.GetName() + "_count", labels, float64(h.GetSampleCount())},
					series{f.GetName() + "_sum", labels, h.GetSampleSum()})
			}
		}
	}
	slices.SortStableFunc(out.Series, func(a, b series) int { return strings.Compare(a.Name, b.Name) })
	w.Header().Set("Cache-Control", "no-store")
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}
