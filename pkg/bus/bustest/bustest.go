// Package bustest starts real NATS servers with JetStream inside a test: one
// node, or a three-node cluster for failover tests. Every server stores in
// t.TempDir(), listens on 127.0.0.1 at a free port and is shut down at the
// end of the test.
package bustest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/amtsbote/amtsbote/pkg/bus"
)

// Node is one running embedded server.
type Node struct {
	// URL is the client URL (nats://127.0.0.1:port).
	URL string
	// Dir is the JetStream store directory.
	Dir string
	// Server is the running server; nil after Shutdown.
	Server *server.Server

	cfg bus.EmbeddedConfig
}

// Server starts a single JetStream server on a free port with a fresh store
// and shuts it down when the test ends.
func Server(t testing.TB) *Node {
	t.Helper()
	n := &Node{Dir: t.TempDir()}
	n.cfg = bus.EmbeddedConfig{Dir: n.Dir, Host: "127.0.0.1", Port: -1}
	n.start(t)
	t.Cleanup(n.Shutdown)
	return n
}

// start runs the server with n.cfg and records its URL. A restart keeps the
// port, so clients reconnect by themselves.
func (n *Node) start(t testing.TB) {
	t.Helper()
	s, err := bus.RunEmbedded(n.cfg)
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	n.Server = s
	n.URL = s.ClientURL()
	n.cfg.Port = s.Addr().(*net.TCPAddr).Port
}

// Shutdown stops the server and waits until its store is closed. It is a
// no-op on a stopped node.
func (n *Node) Shutdown() {
	if n.Server == nil {
		return
	}
	n.Server.Shutdown()
	n.Server.WaitForShutdown()
	n.Server = nil
}

// Restart stops the server and starts it again on the same store and port.
func (n *Node) Restart(t testing.TB) {
	t.Helper()
	n.Shutdown()
	n.start(t)
}

// Start starts a node stopped by Shutdown again on the same store and
// ports, so that it rejoins its cluster and clients reconnect to it.
func (n *Node) Start(t testing.TB) {
	t.Helper()
	if n.Server != nil {
		t.Fatalf("start %s: already running", n.Server.Name())
	}
	n.start(t)
}

// Nodes is a running cluster.
type Nodes []*Node

// URL returns every node's client URL, comma-separated, as nats.Connect
// takes it.
func (ns Nodes) URL() string {
	urls := make([]string, 0, len(ns))
	for _, n := range ns {
		urls = append(urls, n.URL)
	}
	return strings.Join(urls, ",")
}

// Cluster starts size JetStream servers that form one cluster, waits until
// it has elected a meta leader, and shuts it down when the test ends. Streams
// with up to size replicas can be created at once.
func Cluster(t testing.TB, size int) Nodes {
	t.Helper()
	if size < 1 {
		t.Fatalf("cluster size %d: want at least 1", size)
	}
	// Every node must know the others' route ports before it starts.
	ports := freePorts(t, size)
	routes := make([]string, size)
	for i, p := range ports {
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", p)
	}
	name := fmt.Sprintf("amtsbote-test-%d", time.Now().UnixNano())
	nodes := make(Nodes, size)
	for i := range nodes {
		n := &Node{Dir: t.TempDir()}
		n.cfg = bus.EmbeddedConfig{
			Dir:        n.Dir,
			Host:       "127.0.0.1",
			Port:       -1,
			ServerName: fmt.Sprintf("n%d", i+1),
			Cluster: &bus.ClusterConfig{
				Name:   name,
				Host:   "127.0.0.1",
				Port:   ports[i],
				Routes: routes,
			},
		}
		n.start(t)
		t.Cleanup(n.Shutdown)
		nodes[i] = n
	}
	waitFor(t, 30*time.Second, func() error {
		for _, n := range nodes {
			if got := n.Server.NumRoutes(); got < size-1 {
				return fmt.Errorf("%s has %d routes, want %d", n.Server.Name(), got, size-1)
			}
		}
		for _, n := range nodes {
			if n.Server.JetStreamIsLeader() {
				return nil
			}
		}
		return fmt.Errorf("no jetstream meta leader")
	})
	return nodes
}

// Leader returns the node that leads the named stream's replicas.
func (ns Nodes) Leader(t testing.TB, stream string) *Node {
	t.Helper()
	var leader *Node
	waitFor(t, 30*time.Second, func() error {
		for _, n := range ns {
			if n.Server != nil && n.Server.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
				leader = n
				return nil
			}
		}
		return fmt.Errorf("no leader for stream %s", stream)
	})
	return leader
}

// Current waits until every running node holds the named stream's
// replica up to date, as an operator waits after a restart before the next
// one: a restarted replica may still be catching up.
func (ns Nodes) Current(t testing.TB, stream string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, func() error {
		for _, n := range ns {
			if n.Server != nil && !n.Server.JetStreamIsStreamCurrent(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
				return fmt.Errorf("%s: replica of stream %s not current", n.Server.Name(), stream)
			}
		}
		return nil
	})
}

// ConsumerLeader returns the node that leads the named consumer's replicas.
func (ns Nodes) ConsumerLeader(t testing.TB, stream, consumer string) *Node {
	t.Helper()
	var leader *Node
	waitFor(t, 30*time.Second, func() error {
		for _, n := range ns {
			if n.Server != nil && n.Server.JetStreamIsConsumerLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream, consumer) {
				leader = n
				return nil
			}
		}
		return fmt.Errorf("no leader for consumer %s/%s", stream, consumer)
	})
	return leader
}

// freePorts reserves n distinct free TCP ports on 127.0.0.1.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("reserve port: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// Bus starts a server, connects to it and ensures the default topology
// (one replica); it closes the connection and the server when the test ends.
func Bus(t testing.TB) (*bus.Bus, *Node) {
	t.Helper()
	n := Server(t)
	b := Connect(t, n.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Ensure(ctx, bus.TopologyConfig{}); err != nil {
		t.Fatalf("ensure topology: %v", err)
	}
	return b, n
}

// Connect connects to url and closes the connection when the test ends.
func Connect(t testing.TB, url string) *bus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// waitFor polls f until it returns nil or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
