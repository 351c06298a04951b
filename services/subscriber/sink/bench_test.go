package sink_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"testing"

	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/services/subscriber/sink"
	"github.com/amtsbote/amtsbote/services/subscriber/sink/sinktest"
)

// benchContent is the attachment every benchmark delivers: its size in
// B/op would show a sink that holds an attachment whole.
const benchContent = 16 << 20

// BenchmarkDeliver delivers one submission with a 16 MiB attachment per
// operation. B/op far below 16 MiB shows that the sink streams.
func BenchmarkDeliver(b *testing.B) {
	content := sinktest.Random(99, benchContent)
	run := func(b *testing.B, s sink.Sink) {
		b.SetBytes(benchContent)
		b.ReportAllocs()
		for b.Loop() {
			d := sinktest.NewDelivery()
			d.Attachments = []sink.Attachment{(&sinktest.Content{Bytes: content}).Attachment(uuid.NewString(), "gross.bin", "application/octet-stream")}
			if err := s.Deliver(context.Background(), d); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("directory", func(b *testing.B) {
		s, err := sink.NewDirectory(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		run(b, s)
	})
	b.Run("http", func(b *testing.B) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusCreated)
		}))
		defer srv.Close()
		s, err := sink.NewHTTP(sink.HTTPConfig{URL: srv.URL})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		run(b, s)
	})
	b.Run("postgres", func(b *testing.B) {
		if os.Getenv(flowtest.DatabaseURLEnv) == "" {
			b.Skip(flowtest.DatabaseURLEnv + " is unset")
		}
		s, err := sink.OpenPostgres(context.Background(), sink.PostgresConfig{URL: flowtest.FreshSchema(b)})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		run(b, s)
	})
}

// benchConcurrency is the subscriber's concurrency in
// BenchmarkPostgresConcurrent: each delivery holds a connection for its
// transaction.
const benchConcurrency = 16

// BenchmarkPostgresConcurrent delivers small submissions with a 16 KiB
// attachment from benchConcurrency goroutines, as a subscriber with that
// concurrency does.
func BenchmarkPostgresConcurrent(b *testing.B) {
	if os.Getenv(flowtest.DatabaseURLEnv) == "" {
		b.Skip(flowtest.DatabaseURLEnv + " is unset")
	}
	s, err := sink.OpenPostgres(context.Background(), sink.PostgresConfig{URL: flowtest.FreshSchema(b), Conns: benchConcurrency})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	content := sinktest.Random(7, 16<<10)
	b.SetParallelism((benchConcurrency + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d := sinktest.NewDelivery()
			d.Attachments = []sink.Attachment{(&sinktest.Content{Bytes: content}).Attachment(uuid.NewString(), "antrag.pdf", "application/pdf")}
			if err := s.Deliver(context.Background(), d); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
