package bus_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
)

// TestClusterFailover runs the topology with three replicas on a
// three-node cluster and shuts down the node leading the consumer, while
// the client stays connected to a surviving node: publishing and the
// running Consume carry on with the remaining two nodes.
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster failover takes several seconds")
	}
	nodes := bustest.Cluster(t, 3)
	ctx := testContext(t)
	admin := bustest.Connect(t, nodes.URL())
	eventually(t, 30*time.Second, func() error {
		return admin.Ensure(ctx, bus.TopologyConfig{Replicas: 3})
	})
	s, err := admin.JetStream().Stream(ctx, bus.StreamInbox)
	if err != nil {
		t.Fatal(err)
	}
	if info := s.CachedInfo(); info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("INBOX replicas: config %d, cluster %+v", info.Config.Replicas, info.Cluster)
	}

	// Create the consumer first to learn its leader, then connect the
	// subscriber to another node, so it loses only the leader, not its
	// connection.
	cfg := bus.ConsumerConfig{Stream: bus.StreamInbox, Durable: "subscriber", PullExpiry: 2 * time.Second, AckWait: 5 * time.Second}
	if _, err := admin.JetStream().CreateOrUpdateConsumer(ctx, cfg.Stream, jetstream.ConsumerConfig{
		Durable: cfg.Durable, AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}
	leader := nodes.ConsumerLeader(t, cfg.Stream, cfg.Durable)
	var survivor *bustest.Node
	for _, n := range nodes {
		if n != leader {
			survivor = n
			break
		}
	}
	b := bustest.Connect(t, survivor.URL)

	var (
		mu   sync.Mutex
		seen = map[string]bool{}
	)
	c := startConsume(t, b, cfg, func(ctx context.Context, m *bus.Message) error {
		mu.Lock()
		seen[m.Event.ID()] = true
		mu.Unlock()
		return nil
	})
	received := func(n int) func() error {
		return func() error {
			select {
			case err := <-c.done:
				t.Fatalf("Consume ended: %v", err)
			default:
			}
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

	t.Logf("shutting down %s, leader of consumer %s; client on %s", leader.Server.Name(), cfg.Durable, survivor.Server.Name())
	leader.Shutdown()

	for i := 5; i < 10; i++ {
		publishRetrying(fmt.Sprintf("e%d", i))
	}
	eventually(t, 45*time.Second, received(10))
	if n := nodes.ConsumerLeader(t, cfg.Stream, cfg.Durable); n == leader {
		t.Fatal("consumer leader unchanged after shutdown")
	}
	if n := streamMsgs(t, b, bus.StreamInbox); n != 10 {
		t.Errorf("INBOX holds %d messages after failover, want 10", n)
	}
}
