package routesync

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/metrics"
)

// newResolutions registers amtsbote_route_resolutions_total on reg, every
// level present from the start; nil reg counts nowhere.
func newResolutions(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	if reg == nil {
		return nil, nil
	}
	c, err := metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "amtsbote_route_resolutions_total",
		Help: "Resolutions of a service and place to a destination (Routing API and router), by the level of the route matched: gemeinde … bund, or none.",
	}, []string{"level"}))
	if err != nil {
		return nil, err
	}
	for _, l := range ars.Levels {
		c.WithLabelValues(l.String())
	}
	c.WithLabelValues(ars.Level(0).String())
	return c, nil
}

// Route is Resolve, counted in amtsbote_route_resolutions_total by the
// level matched. The Routing API and the router resolve through it, so
// that every resolution a caller asked for is counted once; the checks
// that re-resolve (a create naming its region) use Resolve.
func (s *Syncer) Route(service string, a ars.ARS, at time.Time) (Match, bool) {
	m, ok := s.Resolve(service, a, at)
	if s.resolutions != nil {
		level := ars.Level(0)
		if ok {
			level = m.Level
		}
		s.resolutions.WithLabelValues(level.String()).Inc()
	}
	return m, ok
}

// NoRoute counts a resolution the caller ended before resolving: a place
// or service that no route can match (level none).
func (s *Syncer) NoRoute() {
	if s.resolutions != nil {
		s.resolutions.WithLabelValues(ars.Level(0).String()).Inc()
	}
}

// Current is the readiness check of the routing table: loaded, and at the
// registry's latest revision by the time ctx ends (a change published a
// moment ago is waited for, one that never arrives is not).
func (s *Syncer) Current(ctx context.Context) error {
	if !s.Loaded() {
		return ErrNotLoaded
	}
	rev, err := s.Latest(ctx)
	if err != nil {
		return fmt.Errorf("registry revision: %w", err)
	}
	return s.WaitFor(ctx, rev)
}
