package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// Bench runs the store benchmarks: the projection's hot path (a new
// submission and its first event), a pickup list over a filled store, and
// updates from parallel goroutines. open returns a new, empty store and
// cleans up after it with b.Cleanup; Bench closes the store.
func Bench(b *testing.B, open func(b *testing.B) store.Store) {
	b.Run("CreateSubmissionAppendEvent", func(b *testing.B) {
		s := openBench(b, open)
		ctx := context.Background()
		var (
			n    atomic.Int64
			mu   sync.Mutex
			took []time.Duration
		)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var mine []time.Duration
			defer func() {
				mu.Lock()
				took = append(took, mine...)
				mu.Unlock()
			}()
			for pb.Next() {
				start := time.Now()
				i := n.Add(1)
				id := fmt.Sprintf("s%08d", i)
				sub := submission(id, fmt.Sprintf("d%02d", i%16), sealed.Submitted, time.Duration(i))
				if err := s.CreateSubmission(ctx, sub); err != nil {
					b.Error(err)
					return
				}
				e := event("e-"+id, sub.CaseID, 0)
				e.SubmissionID, e.StreamSeq = id, uint64(i)
				if _, err := s.ProjectEvent(ctx, e, foldProgress); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(start))
			}
		})
		reportLatency(b, took)
	})
	b.Run("PickupList", func(b *testing.B) {
		s := openBench(b, open)
		ctx := context.Background()
		for i := range 2000 {
			sub := submission(fmt.Sprintf("s%05d", i), fmt.Sprintf("d%02d", i%40), sealed.Submitted, time.Duration(i)*time.Second)
			if i%3 == 0 {
				sub.Status = sealed.Accepted // answered: off the list
			}
			if err := s.CreateSubmission(ctx, sub); err != nil {
				b.Fatal(err)
			}
		}
		dests := []string{"d01", "d02", "d03", "d04", "d05"}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if _, _, err := s.PickupList(ctx, dests, store.Page{Limit: 50}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("UpdateSubmissionParallel", func(b *testing.B) {
		s := openBench(b, open)
		ctx := context.Background()
		const subs = 64
		for i := range subs {
			if err := s.CreateSubmission(ctx, submission(fmt.Sprintf("s%02d", i), "d1", sealed.Incomplete, 0)); err != nil {
				b.Fatal(err)
			}
		}
		var n atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				id := fmt.Sprintf("s%02d", n.Add(1)%subs)
				if _, err := s.UpdateSubmission(ctx, id, func(u *store.Submission) error {
					u.Status = sealed.Submitted
					return nil
				}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	// A submit checks its JWEs' keys, a decision its signature's: read
	// from the store, and kept with the destination in the cache.
	for _, cached := range []bool{false, true} {
		name := "Key"
		if cached {
			name = "KeyCached"
		}
		b.Run(name, func(b *testing.B) {
			s := openBench(b, open)
			ctx := context.Background()
			d := destination("d1")
			createDestination(b, s, d)
			read := s.Key
			if cached {
				c := store.NewDestinationCache(time.Hour, nil)
				if _, err := c.Get(ctx, d.ID, s.Destination); err != nil {
					b.Fatal(err)
				}
				read = func(ctx context.Context, id, kid string) (store.Key, error) { return c.Key(ctx, id, kid, s.Key) }
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := read(ctx, d.ID, d.EncryptionKID); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// reportLatency adds the median and the 99th percentile of took, the
// time each operation of the parallel goroutines waited: a write that
// waits for another's commit counts in full.
func reportLatency(b *testing.B, took []time.Duration) {
	if len(took) == 0 {
		return
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
}

func openBench(b *testing.B, open func(b *testing.B) store.Store) store.Store {
	b.Helper()
	s := open(b)
	b.Cleanup(func() {
		if err := s.Close(); err != nil {
			b.Errorf("close: %v", err)
		}
	})
	return s
}
