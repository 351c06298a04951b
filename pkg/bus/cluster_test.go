package bus_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
)

// TestClusterFailover runs the topology with three replicas on a
// three-node cluster, shuts down the node leading INBOX, and checks that
// publishing and a running consumer carry on with the remaining two.
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster failover takes several seconds")
	}
	nodes := bustest.Cluster(t, 3)
	ctx := testContext(t)
	b, err := bus.Connect(ctx, nodes.URL(), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	eventually(t, 30*time.Second, func() error {
		return b.Ensure(ctx, bus.TopologyConfig{Replicas: 3})
	})
	s, err := b.JetStream().Stream(ctx, bus.StreamInbox)
	if err != nil {
		t.Fatal(err)
	}
	if info := s.CachedInfo(); info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("INBOX replicas: config %d, cluster %+v", info.Config.Replicas, info.Cluster)
	}

	var (
		mu   sync.Mutex
		seen = map[string]bool{}
	)
	startConsume(t, b, bus.ConsumerConfig{Stream: bus.StreamInbox, Durable: "subscriber", PullExpiry: 2 * time.Second, AckWait: 5 * time.Second},
		func(ctx context.Context, m *bus.Message) error {
			mu.Lock()
			seen[m.Event.ID()] = true
			mu.Unlock()
			return nil
		})
	received := func(n int) func() error {
		return func() error {
			mu.Lock()
			defer mu.Unlock()
			for i := range n {
				if id := fmt.Sprintf("e%d", i); !seen[id] {
					return fmt.Errorf("%s not received (%d of %d)", id, len(seen), n)
				}
			}
			return nil
		}
	}
	subject := inboxSubject(t)
	publishRetrying := func(id string) {
		// Retries while a new leader is elected are safe: the id deduplicates.
		eventually(t, 30*time.Second, func() error {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, err := b.Publish(pctx, subject, newEvent(t, id), id)
			return err
		})
	}
	for i := range 5 {
		publishRetrying(fmt.Sprintf("e%d", i))
	}
	eventually(t, 20*time.Second, received(5))

	leader := nodes.Leader(t, bus.StreamInbox)
	t.Logf("shutting down %s, leader of %s", leader.Server.Name(), bus.StreamInbox)
	leader.Shutdown()

	for i := 5; i < 10; i++ {
		publishRetrying(fmt.Sprintf("e%d", i))
	}
	eventually(t, 45*time.Second, received(10))
	if newLeader := nodes.Leader(t, bus.StreamInbox); newLeader == leader {
		t.Fatal("leader unchanged after shutdown")
	}
	if n := streamMsgs(t, b, bus.StreamInbox); n != 10 {
		t.Errorf("INBOX holds %d messages after failover, want 10", n)
	}
}
