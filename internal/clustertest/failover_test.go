package clustertest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/internal/roles"
	"github.com/amtsbote/amtsbote/pkg/bus"
)

// TestStreamLeaderFailover submits continuously while the node leading
// INGRESS, then the one leading INBOX, then the one leading EVENTS is shut
// down and, once submissions flowed without it, started again on its
// store. Every submission the API accepted reaches the Fachverfahren
// exactly once and ends accepted, and each case's events are in EVENTS
// and the store once each. It logs submit to accepted p99 during the
// failovers.
func TestStreamLeaderFailover(t *testing.T) {
	// Below the subscriber's capacity under the race detector on two
	// cores, so that the latencies show the failovers, not a backlog.
	workers, pause, progress := 2, time.Second, 4
	if testing.Short() {
		workers, pause, progress = 2, time.Second, 3
	}
	start := time.Now()
	d := newDeployment(t, flowtest.OpenSQLite(t), 4)
	gw := d.startRoles(t, roles.Roles{Gateway: true, Signer: true, Router: true, Ledger: true})
	d.startSubscriber(t, gw.URL)
	l := d.startLoad(t, workers, pause, gw.URL)
	l.waitProgress(t, progress, 2*time.Minute)

	var windows []window
	for _, stream := range []string{bus.StreamIngress, bus.StreamInbox, bus.StreamEvents} {
		leader := d.nodes.Leader(t, stream)
		name := leader.Server.Name()
		w := window{name: stream + " leader " + name, start: time.Now()}
		leader.Shutdown()
		if n := d.nodes.Leader(t, stream); n == leader {
			t.Fatalf("%s still leads %s after its shutdown", name, stream)
		}
		l.waitProgress(t, progress, 2*time.Minute)
		leader.Start(t)
		w.end = time.Now()
		windows = append(windows, w)
		t.Logf("%s shut down and restarted after %s; %d submissions accepted so far (%s)",
			w.name, w.end.Sub(w.start).Round(time.Millisecond), l.accepted(), time.Since(start).Round(time.Second))
		// The next shutdown leaves two nodes only once this one caught up.
		flowtest.Eventually(t, time.Minute, func() error { return current(d, stream) })
		l.waitProgress(t, progress, 2*time.Minute)
	}
	l.verify(t, gw.URL, 2*time.Minute, windows...)
	t.Logf("done after %s", time.Since(start).Round(time.Second))
}

// current returns nil once every replica of stream is current.
func current(d *deployment, stream string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := d.admin.JetStream().Stream(ctx, stream)
	if err != nil {
		return err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return fmt.Errorf("%s has no leader", stream)
	}
	if len(info.Cluster.Replicas) != 2 {
		return fmt.Errorf("%s has %d replicas besides its leader, want 2", stream, len(info.Cluster.Replicas))
	}
	for _, r := range info.Cluster.Replicas {
		if !r.Current || r.Offline {
			return fmt.Errorf("%s replica %s is not current (lag %d)", stream, r.Name, r.Lag)
		}
	}
	return nil
}
