package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus"
)

// TestSubscriberWaitsForNATS: a NATS that comes up shortly after the
// subscriber is waited for, as the Submission API is, rather than ending
// the subscriber at once.
func TestSubscriberWaitsForNATS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	started := make(chan *server.Server, 1)
	go func() {
		time.Sleep(1500 * time.Millisecond)
		s, err := bus.RunEmbedded(bus.EmbeddedConfig{Dir: t.TempDir(), Port: port})
		if err != nil {
			t.Error(err)
		}
		started <- s
	}()
	t.Cleanup(func() {
		if s := <-started; s != nil {
			s.Shutdown()
			s.WaitForShutdown()
		}
	})
	var logs flowtest.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := connectWaiting(ctx, slog.New(slog.NewTextHandler(&logs, nil)), fmt.Sprintf("nats://127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	b.Close()
	if !strings.Contains(logs.String(), "NATS does not answer yet; asking again") {
		t.Errorf("the wait is not logged:\n%s", logs.String())
	}
}
