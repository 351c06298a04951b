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
// level present from the start, and returns its counters indexed by
// level (none at 0); nil reg counts nowhere.
func newResolutions(reg prometheus.Registerer) ([]prometheus.Counter, error) {
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
	// Looked up once: a resolution takes less time than hashing its label.
	byLevel := make([]prometheus.Counter, ars.Gemeinde+1)
	for l := range byLevel {
		byLevel[l] = c.WithLabelValues(ars.Level(l).String())
	}
	return byLevel, nil
}

// Route is Resolve, counted in amtsbote_route_resolutions_total by the
// level matched. The Routing API and the router resolve through it, so
// that every resolution a caller asked for is counted once; the checks
// that re-resolve (a create naming its region) use Resolve.
func (s *Syncer) Route(service string, a ars.ARS, at time.Time) (Match, bool) {
	m, ok := s.Resolve(service, a, at)
	if s.resolutions != nil {
		level := ars.Level(0)
		if ok && int(m.Level) < len(s.resolutions) {
			level = m.Level
		}
		s.resolutions[level].Inc()
	}
	return m, ok
}

// NoRoute counts a resolution the caller ended before resolving: a place
// or service that no route can match (level none).
func (s *Syncer) NoRoute() {
	if s.resolutions != nil {
		s.resolutions[0].Inc()
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
