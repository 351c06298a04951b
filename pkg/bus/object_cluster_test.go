package bus_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
)

// objectConsumers counts the consumers on the object store's stream.
func objectConsumers(ctx context.Context, b *bus.Bus) (int, error) {
	s, err := b.JetStream().Stream(ctx, bus.StreamPayloads)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Consumers, nil
}

// replicated starts a three-node cluster with the topology at three
// replicas and returns it, a connection through any node and a context
// that ends after timeout.
func replicated(t *testing.T, timeout time.Duration) (bustest.Nodes, *bus.Bus, context.Context) {
	t.Helper()
	nodes := bustest.Cluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	b := bustest.Connect(t, nodes.URL())
	eventually(t, 30*time.Second, func() error {
		return b.Ensure(ctx, bus.TopologyConfig{Replicas: 3})
	})
	return nodes, b, ctx
}

// TestObjectReadsReleaseConsumers reads objects 1,000 times in a row from
// a three-node cluster whose object stream allows only 8 consumers at a
// time: every read, whether it ends at EOF, is closed early or fails on a
// corrupt object, must give its consumer back.
func TestObjectReadsReleaseConsumers(t *testing.T) {
	nodes, _, ctx := replicated(t, 5*time.Minute)
	// On the leader's node every chunk request is answered without a hop.
	b := bustest.Connect(t, nodes.Leader(t, bus.StreamPayloads).URL)
	js := b.JetStream()
	s, err := js.Stream(ctx, bus.StreamPayloads)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	const maxConsumers = 8
	cfg.MaxConsumers = maxConsumers
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}

	content := bytes.Repeat([]byte("0123456789abcdef"), 512) // 8 KiB, as a typical attachment
	if _, err := b.PutObject(ctx, "r1/attachment", bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	big := &generator{size: 4 * bus.ObjectChunk, probe: &heapProbe{}}
	if _, err := b.PutObject(ctx, "r1/large", big); err != nil {
		t.Fatal(err)
	}
	corrupt := putCorrupt(t, ctx, b, "r1/corrupt")

	const reads = 1000
	buf := make([]byte, 1024)
	for i := range reads {
		switch {
		case i%100 == 1:
			// Closed before the end, as when a client goes away.
			r, err := b.GetObject(ctx, "r1/large")
			if err != nil {
				t.Fatalf("read %d: open: %v", i, err)
			}
			if _, err := io.ReadFull(r, buf); err != nil {
				t.Fatalf("read %d: %v", i, err)
			}
			r.Close()
		case i%100 == 2:
			r, err := b.GetObject(ctx, corrupt)
			if err != nil {
				t.Fatalf("read %d: open: %v", i, err)
			}
			if _, err := io.Copy(io.Discard, r); !errors.Is(err, bus.ErrCorrupt) {
				t.Fatalf("read %d of a corrupt object: %v, want ErrCorrupt", i, err)
			}
			// Deliberately not closed: a read holds nothing on the server.
		default:
			r, err := b.GetObject(ctx, "r1/attachment")
			if err != nil {
				t.Fatalf("read %d: open: %v", i, err)
			}
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatalf("read %d: %v", i, err)
			}
			// Deliberately not closed: a read holds nothing on the server.
			if !bytes.Equal(got, content) {
				t.Fatalf("read %d: %d bytes, not the content", i, len(got))
			}
		}
	}
	eventually(t, 10*time.Second, func() error {
		n, err := objectConsumers(ctx, b)
		if err != nil {
			return err
		}
		if n != 0 {
			return fmt.Errorf("%d consumers left on the object stream", n)
		}
		return nil
	})
}

// putCorrupt stores an object of two chunks and then replaces its second
// chunk by a copy of the first, as a publish repeated during a leader
// change does, and returns its name.
// objectChunks returns the object stream and the subject of the chunks
// of the stored object name.
func objectChunks(t testing.TB, ctx context.Context, b *bus.Bus, name string) (jetstream.Stream, string) {
	t.Helper()
	js := b.JetStream()
	obs, err := js.ObjectStore(ctx, bus.BucketPayloads)
	if err != nil {
		t.Fatal(err)
	}
	info, err := obs.GetInfo(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, bus.StreamPayloads)
	if err != nil {
		t.Fatal(err)
	}
	return stream, "$O." + bus.BucketPayloads + ".C." + info.NUID
}

func putCorrupt(t testing.TB, ctx context.Context, b *bus.Bus, name string) string {
	t.Helper()
	if _, err := b.PutObject(ctx, name, &generator{size: 2 * bus.ObjectChunk, probe: &heapProbe{}}); err != nil {
		t.Fatal(err)
	}
	js := b.JetStream()
	stream, subject := objectChunks(t, ctx, b, name)
	first, err := stream.GetMsg(ctx, 0, jetstream.WithGetMsgSubject(subject))
	if err != nil {
		t.Fatal(err)
	}
	last, err := stream.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.DeleteMsg(ctx, last.Sequence); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, subject, first.Data); err != nil {
		t.Fatal(err)
	}
	return name
}

// TestObjectPutDuringLeaderChange uploads objects while the object
// stream's leader steps down or is shut down, again and again: every
// upload that succeeded reads back intact, and every one that failed left
// no object or one that reads back intact.
func TestObjectPutDuringLeaderChange(t *testing.T) {
	if testing.Short() {
		t.Skip("leader changes take several seconds")
	}
	nodes, b, ctx := replicated(t, 4*time.Minute)
	const stream = bus.StreamPayloads

	type upload struct {
		name string
		sum  [sha256.Size]byte
		err  error
	}
	var uploads []upload
	const size = 6*bus.ObjectChunk + 1000 // seven chunks, the last one short
	for round := range 6 {
		// One leader change at a time: the node restarted in the round
		// before has caught up.
		nodes.Current(t, stream, time.Minute)
		leader := nodes.Leader(t, stream)
		done := make(chan struct{})
		results := make(chan upload)
		go func() {
			defer close(results)
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				content := make([]byte, size)
				for j := range content {
					content[j] = byte(j*31 + i + round*7)
				}
				u := upload{name: fmt.Sprintf("round%d/object%d", round, i), sum: sha256.Sum256(content)}
				pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
				_, u.err = b.PutObject(pctx, u.name, bytes.NewReader(content))
				pcancel()
				results <- u
			}
		}()
		// Some uploads land before the change, some during, some after.
		for range 3 {
			uploads = append(uploads, <-results)
		}
		if round%2 == 0 {
			t.Logf("round %d: %s steps down", round, leader.Server.Name())
			if _, err := b.JetStream().Conn().Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, nil, 5*time.Second); err != nil {
				t.Logf("step down: %v", err)
			}
		} else {
			t.Logf("round %d: shutting down %s", round, leader.Server.Name())
			leader.Shutdown()
		}
		for range 6 {
			uploads = append(uploads, <-results)
		}
		close(done)
		for u := range results {
			uploads = append(uploads, u)
		}
		if leader.Server == nil {
			leader.Restart(t)
		}
		eventually(t, 30*time.Second, func() error {
			_, err := b.StatObject(ctx, uploads[0].name)
			if errors.Is(err, bus.ErrNotFound) {
				return nil
			}
			return err
		})
	}

	var stored, refused int
	for _, u := range uploads {
		var got []byte
		var err error
		eventually(t, 30*time.Second, func() error {
			r, gerr := b.GetObject(ctx, u.name)
			if gerr != nil {
				err = gerr
				if errors.Is(gerr, bus.ErrNotFound) {
					return nil
				}
				return gerr
			}
			defer r.Close()
			got, err = io.ReadAll(r)
			if err != nil && !errors.Is(err, bus.ErrCorrupt) {
				return err
			}
			return nil
		})
		switch {
		case u.err == nil && err != nil:
			t.Errorf("%s: upload succeeded, read back: %v", u.name, err)
		case u.err == nil && sha256.Sum256(got) != u.sum:
			t.Errorf("%s: upload succeeded, read back %d bytes of other content", u.name, len(got))
		case u.err == nil:
			stored++
		case err == nil && sha256.Sum256(got) != u.sum:
			t.Errorf("%s: upload failed (%v), a stored object of other content reads back", u.name, u.err)
		case errors.Is(err, bus.ErrCorrupt):
			t.Errorf("%s: upload failed (%v), a corrupt object stays: %v", u.name, u.err, err)
		default:
			refused++
		}
	}
	t.Logf("%d uploads: %d stored intact, %d refused", len(uploads), stored, refused)
	if stored == 0 {
		t.Error("no upload succeeded")
	}
}

// TestObjectReadsAcrossStepDown reads an object while its stream's leader
// steps down again and again. A read that reached the leader as it stepped
// down is not answered; it must be asked again rather than wait for its
// caller's deadline.
func TestObjectReadsAcrossStepDown(t *testing.T) {
	nodes, b, ctx := replicated(t, 3*time.Minute)
	content := bytes.Repeat([]byte("0123456789abcdef"), bus.ObjectChunk/8) // two chunks
	if _, err := b.PutObject(ctx, "r1/attachment", bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}

	read := func(i int) error {
		// Far more than a leader election takes.
		rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
		defer rcancel()
		if i%2 == 0 {
			_, err := b.StatObject(rctx, "r1/attachment")
			return err
		}
		r, err := b.GetObject(rctx, "r1/attachment")
		if err != nil {
			return err
		}
		defer r.Close()
		got, err := io.ReadAll(r)
		if err == nil && !bytes.Equal(got, content) {
			err = fmt.Errorf("read %d bytes of other content", len(got))
		}
		return err
	}
	done := make(chan struct{})
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			for i := g; ; i++ {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				if err := read(i); err != nil {
					errs <- fmt.Errorf("read %d: %w", i, err)
					return
				}
			}
		}()
	}
	for range 5 {
		nodes.Current(t, bus.StreamPayloads, time.Minute)
		if _, err := b.JetStream().Conn().Request("$JS.API.STREAM.LEADER.STEPDOWN."+bus.StreamPayloads, nil, 5*time.Second); err != nil {
			t.Logf("step down: %v", err)
		}
		time.Sleep(time.Second)
	}
	close(done)
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestLargeObjectReadsUseNoConsumer reads an object of 12 chunks from
// every node of a three-node cluster. No read may create a consumer: a
// fresh consumer's first pull could go unanswered there until its
// heartbeats were missed, 10 s later. A consumer created at the end shows
// that creations are seen. The reads' times are logged.
func TestLargeObjectReadsUseNoConsumer(t *testing.T) {
	nodes, admin, ctx := replicated(t, 3*time.Minute)
	created := make(chan string, 100)
	sub, err := admin.Conn().Subscribe("$JS.EVENT.ADVISORY.CONSUMER.CREATED.OBJ_"+bus.BucketPayloads+".>", func(m *nats.Msg) {
		created <- m.Subject
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := admin.Conn().Flush(); err != nil {
		t.Fatal(err)
	}

	const size = 12*bus.ObjectChunk - 1000
	wantHash := sha256.New()
	if _, err := io.Copy(wantHash, &generator{size: size, probe: &heapProbe{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.PutObject(ctx, "r1/large", &generator{size: size, probe: &heapProbe{}}); err != nil {
		t.Fatal(err)
	}
	var times []time.Duration
	for _, n := range nodes {
		b := bustest.Connect(t, n.URL)
		for range 5 {
			start := time.Now()
			r, err := b.GetObject(ctx, "r1/large")
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			got, err := io.Copy(h, r)
			r.Close()
			if err != nil || got != size || !bytes.Equal(h.Sum(nil), wantHash.Sum(nil)) {
				t.Fatalf("read from %s: %d bytes, %v", n.Server.Name(), got, err)
			}
			if _, err := b.VerifyObject(ctx, "r1/large"); err != nil {
				t.Fatalf("verify on %s: %v", n.Server.Name(), err)
			}
			times = append(times, time.Since(start))
		}
	}
	slices.Sort(times)
	t.Logf("%d reads and verifications: median %s, slowest %s", len(times), times[len(times)/2], times[len(times)-1])

	if _, err := admin.JetStream().CreateConsumer(ctx, bus.StreamPayloads, jetstream.ConsumerConfig{Name: "marker"}); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case subject := <-created:
			if !strings.HasSuffix(subject, ".marker") {
				t.Fatalf("a read created consumer %s", subject)
			}
			return
		case <-ctx.Done():
			t.Fatal("the marker consumer's creation was not seen")
		}
	}
}
