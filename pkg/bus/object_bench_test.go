package bus_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
)

// BenchmarkObject puts and gets a 64 MiB object through PutObject and
// GetObject, and through the object store's own Put and Get on the same
// server (in another process) as the yardstick. It reports MB/s.
func BenchmarkObject(b *testing.B) {
	const size = 64 * mib
	bb := bustest.Connect(b, serverProcess(b))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := bb.Ensure(ctx, bus.TopologyConfig{}); err != nil {
		b.Fatal(err)
	}
	obs, err := bb.JetStream().ObjectStore(ctx, bus.BucketPayloads)
	if err != nil {
		b.Fatal(err)
	}
	run := func(name string, put func(string) error, get func(string) (io.ReadCloser, error)) {
		b.Run(name+"/put", func(b *testing.B) {
			b.SetBytes(size)
			for i := range b.N {
				if err := put(fmt.Sprintf("%s/put-%d", name, i)); err != nil {
					b.Fatal(err)
				}
			}
		})
		if err := put(name + "/get"); err != nil {
			b.Fatal(err)
		}
		b.Run(name+"/get", func(b *testing.B) {
			b.SetBytes(size)
			for range b.N {
				r, err := get(name + "/get")
				if err != nil {
					b.Fatal(err)
				}
				if n, err := io.Copy(io.Discard, r); err != nil || n != size {
					b.Fatalf("read %d bytes: %v", n, err)
				}
				r.Close()
			}
		})
	}
	run("amtsbote", func(name string) error {
		_, err := bb.PutObject(ctx, name, &generator{size: size})
		return err
	}, func(name string) (io.ReadCloser, error) { return bb.GetObject(ctx, name) })
	run("objectstore", func(name string) error {
		_, err := obs.Put(ctx, jetstream.ObjectMeta{Name: name}, &generator{size: size})
		return err
	}, func(name string) (io.ReadCloser, error) { return obs.Get(ctx, name) })
}

// BenchmarkReadObjectWhole reads a 350 KB object (a 256 KiB scan as
// compact JWE) whole, as the gateway answers small attachments and
// payloads. B/op shows what reading it costs besides its own size.
func BenchmarkReadObjectWhole(b *testing.B) {
	const size = 350_000
	bb := bustest.Connect(b, serverProcess(b))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := bb.Ensure(ctx, bus.TopologyConfig{}); err != nil {
		b.Fatal(err)
	}
	if _, err := bb.PutObject(ctx, "whole", &generator{size: size}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		got, err := bb.ReadObject(ctx, "whole")
		if err != nil || len(got) != size {
			b.Fatalf("read %d bytes: %v", len(got), err)
		}
	}
}
