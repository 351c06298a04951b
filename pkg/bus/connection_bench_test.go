package bus_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/amtsbote/amtsbote/pkg/bus"
)

// BenchmarkConnection writes state entries of 1 KiB (a SET) and 16 KiB
// (a form), four writers per core, to a server embedded in this process, over
// loopback TCP and through the server's in-process pipe, as dev's roles
// reach it.
func BenchmarkConnection(b *testing.B) {
	ns, err := bus.RunEmbedded(bus.EmbeddedConfig{Dir: b.TempDir(), Host: "127.0.0.1", Port: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for _, c := range []struct {
		name string
		opts []nats.Option
	}{{"tcp", nil}, {"in-process", []nats.Option{nats.InProcessServer(ns)}}} {
		bb, err := bus.Connect(ctx, ns.ClientURL(), c.opts...)
		if err != nil {
			b.Fatal(err)
		}
		defer bb.Close()
		if err := bb.Ensure(ctx, bus.TopologyConfig{}); err != nil {
			b.Fatal(err)
		}
		for _, size := range []int{1 << 10, 16 << 10} {
			b.Run(fmt.Sprintf("%s/%dKiB", c.name, size>>10), func(b *testing.B) {
				value := make([]byte, size)
				var n atomic.Int64
				b.SetParallelism(4)
				b.SetBytes(int64(size))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := bb.PutState(ctx, fmt.Sprintf("bench.%s.%d", c.name, n.Add(1)), value); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
