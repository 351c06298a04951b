package bus_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
)

const mib = 1 << 20

// heapProbe records the highest live heap seen at its samples. Each sample
// collects garbage first, so only memory still referenced counts.
type heapProbe struct {
	base, peak uint64
}

func newHeapProbe() *heapProbe {
	p := &heapProbe{}
	p.base = p.live()
	return p
}

func (p *heapProbe) live() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func (p *heapProbe) sample() {
	if p == nil {
		return
	}
	if h := p.live(); h > p.peak {
		p.peak = h
	}
}

func (p *heapProbe) growth() uint64 {
	if p.peak < p.base {
		return 0
	}
	return p.peak - p.base
}

// pattern repeats with a prime period, so it never lines up with chunk
// boundaries and reordered chunks change the digest.
var pattern = func() []byte {
	p := make([]byte, 65521)
	for i := range p {
		p[i] = byte(i*7 + i>>8)
	}
	return p
}()

// generator yields size bytes of pattern without holding them, sampling the
// heap every 4 MiB.
type generator struct {
	size, off int
	probe     *heapProbe
}

func (g *generator) Read(p []byte) (int, error) {
	if g.off >= g.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && g.off < g.size {
		k := copy(p[n:min(len(p), n+g.size-g.off)], pattern[g.off%len(pattern):])
		before := g.off / (4 * mib)
		n += k
		g.off += k
		if g.off/(4*mib) != before {
			g.probe.sample()
		}
	}
	return n, nil
}

// sampler is a writer that samples the heap every 4 MiB it receives.
type sampler struct {
	n     int
	probe *heapProbe
}

func (s *sampler) Write(p []byte) (int, error) {
	before := s.n / (4 * mib)
	s.n += len(p)
	if s.n/(4*mib) != before {
		s.probe.sample()
	}
	return len(p), nil
}

func TestObjectStreaming64MiB(t *testing.T) {
	// The server runs in another process: only the client's memory counts.
	b := bustest.Connect(t, serverProcess(t))
	ctx := testContext(t)
	if err := b.Ensure(ctx, bus.TopologyConfig{}); err != nil {
		t.Fatal(err)
	}
	const size = 64 * mib
	// Far below the object's size: a buffered implementation would need all 64 MiB.
	const limit = 16 * mib

	wantHash := sha256.New()
	if _, err := io.Copy(wantHash, &generator{size: size, probe: &heapProbe{}}); err != nil {
		t.Fatal(err)
	}

	put := newHeapProbe()
	info, err := b.PutObject(ctx, "s1/attachment-1", &generator{size: size, probe: put})
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != size || info.Chunks < 2 {
		t.Errorf("stored %d bytes in %d chunks", info.Size, info.Chunks)
	}
	t.Logf("put: heap grew at most %.1f MiB", float64(put.growth())/mib)
	if put.growth() > limit {
		t.Errorf("put: heap grew %.1f MiB for a %d MiB object, want under %d MiB", float64(put.growth())/mib, size/mib, limit/mib)
	}

	get := newHeapProbe()
	r, err := b.GetObject(ctx, "s1/attachment-1")
	if err != nil {
		t.Fatal(err)
	}
	gotHash := sha256.New()
	n, err := io.Copy(io.MultiWriter(gotHash, &sampler{probe: get}), r)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if n != size || !bytes.Equal(gotHash.Sum(nil), wantHash.Sum(nil)) {
		t.Errorf("read back %d bytes with another digest", n)
	}
	t.Logf("get: heap grew at most %.1f MiB", float64(get.growth())/mib)
	if get.growth() > limit {
		t.Errorf("get: heap grew %.1f MiB for a %d MiB object, want under %d MiB", float64(get.growth())/mib, size/mib, limit/mib)
	}

	// The consumer the read streamed through is gone once it ended.
	st, err := b.JetStream().Stream(ctx, bus.StreamPayloads)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		si, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if si.State.Consumers == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d consumers left on the object stream after the read", si.State.Consumers)
		}
		time.Sleep(50 * time.Millisecond)
	}

	if err := b.DeleteObject(ctx, "s1/attachment-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetObject(ctx, "s1/attachment-1"); !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("get after delete: %v, want ErrNotFound", err)
	}
}

func TestObjectErrors(t *testing.T) {
	b, _ := bustest.Bus(t)
	ctx := testContext(t)
	if _, err := b.PutObject(ctx, "", strings.NewReader("x")); err == nil {
		t.Error("empty name accepted")
	}
	if _, err := b.StatObject(ctx, "missing"); !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("stat missing: %v, want ErrNotFound", err)
	}
	if err := b.DeleteObject(ctx, "missing"); !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("delete missing: %v, want ErrNotFound", err)
	}
	// Replacing keeps one object with the new content.
	for _, content := range []string{"first", "second"} {
		if _, err := b.PutObject(ctx, "s2/data", strings.NewReader(content)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := b.GetObject(ctx, "s2/data")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, _ := io.ReadAll(r); string(got) != "second" {
		t.Errorf("content %q, want second", got)
	}
}

func TestState(t *testing.T) {
	b, _ := bustest.Bus(t)
	ctx := testContext(t)
	const key = "submission.9f0c4e2a-5b1d-4c3e-8f7a-2d6b1e0c9a44"

	if _, err := b.GetState(ctx, key); !errors.Is(err, bus.ErrNotFound) {
		t.Fatalf("get missing: %v, want ErrNotFound", err)
	}
	rev1, err := b.CreateState(ctx, key, []byte(`{"status":"announced"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateState(ctx, key, []byte(`{}`)); !errors.Is(err, bus.ErrRevisionMismatch) {
		t.Errorf("create existing: %v, want ErrRevisionMismatch", err)
	}
	e, err := b.GetState(ctx, key)
	if err != nil || e.Revision != rev1 || string(e.Value) != `{"status":"announced"}` || e.Key != key {
		t.Fatalf("get: %+v, %v", e, err)
	}
	// What the stream's leader holds, as GetState asks it when a replica
	// says the key is missing.
	if l, err := b.LeaderState(ctx, key); err != nil || l.Revision != rev1 || string(l.Value) != string(e.Value) || l.Created.IsZero() {
		t.Fatalf("leader: %+v, %v; want %+v", l, err, e)
	}
	rev2, err := b.UpdateState(ctx, key, []byte(`{"status":"attachments-present"}`), rev1)
	if err != nil {
		t.Fatal(err)
	}
	// A writer still holding rev1 lost the race.
	if _, err := b.UpdateState(ctx, key, []byte(`{"status":"stale"}`), rev1); !errors.Is(err, bus.ErrRevisionMismatch) {
		t.Errorf("stale update: %v, want ErrRevisionMismatch", err)
	}
	if e, _ := b.GetState(ctx, key); e.Revision != rev2 || string(e.Value) != `{"status":"attachments-present"}` {
		t.Errorf("after updates: %+v", e)
	}
	if _, err := b.PutState(ctx, key, []byte(`{"status":"submitted"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.PutState(ctx, "other.1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if l, err := b.ListState(ctx, "submission."); err != nil || len(l) != 1 || l[0].Key != key || string(l[0].Value) != `{"status":"submitted"}` {
		t.Fatalf("list: %+v, %v", l, err)
	}
	if l, err := b.ListState(ctx, ""); err != nil || len(l) != 2 {
		t.Fatalf("list all: %+v, %v", l, err)
	}
	if err := b.DeleteState(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetState(ctx, key); !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("get deleted: %v, want ErrNotFound", err)
	}
	if l, err := b.ListState(ctx, "submission."); err != nil || len(l) != 0 {
		t.Errorf("list after delete: %+v, %v", l, err)
	}
	if _, err := b.LeaderState(ctx, key); !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("leader of deleted: %v, want ErrNotFound", err)
	}
	// No marker stays behind: the bucket does not grow by a message per
	// deleted key, which a watch of the keys' prefix would have to read.
	if n, err := b.StateMessages(ctx, key); err != nil || n != 0 {
		t.Errorf("messages on the deleted key: %d, %v; want none", n, err)
	}
	if err := b.DeleteState(ctx, key); err != nil {
		t.Errorf("delete missing: %v", err)
	}
	// A deleted key can be created again.
	if _, err := b.CreateState(ctx, key, []byte(`{}`)); err != nil {
		t.Errorf("create after delete: %v", err)
	}
	if _, err := b.PutState(ctx, "bad key*", []byte(`{}`)); err == nil {
		t.Error("invalid key accepted")
	}
}

// TestObjectSlowReader reads an object in pauses, as a gateway does that
// writes it to a slow client: the chunks must not pile up ahead of the
// reader.
func TestObjectSlowReader(t *testing.T) {
	b := bustest.Connect(t, serverProcess(t))
	ctx := testContext(t)
	if err := b.Ensure(ctx, bus.TopologyConfig{}); err != nil {
		t.Fatal(err)
	}
	const size = 48 * mib
	// JetStream's flow-control window for pushed chunks is 32 MiB.
	const limit = 8 * mib
	if _, err := b.PutObject(ctx, "s3/attachment-1", &generator{size: size, probe: &heapProbe{}}); err != nil {
		t.Fatal(err)
	}
	r, err := b.GetObject(ctx, "s3/attachment-1")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	probe := newHeapProbe()
	buf := make([]byte, 256<<10)
	read := 0
	for {
		n, err := r.Read(buf)
		if n > 0 && (read+n)/(4*mib) != read/(4*mib) {
			// The pause stands for a slow client, not for waiting on a result.
			time.Sleep(100 * time.Millisecond)
			probe.sample()
		}
		read += n
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if read != size {
		t.Fatalf("read %d bytes, want %d", read, size)
	}
	t.Logf("slow get: heap grew at most %.1f MiB", float64(probe.growth())/mib)
	if probe.growth() > limit {
		t.Errorf("slow get: heap grew %.1f MiB for a %d MiB object, want under %d MiB", float64(probe.growth())/mib, size/mib, limit/mib)
	}
}

// TestObjectTampered changes an object's chunks behind the store's back:
// reading it must fail with a digest mismatch, not hang or succeed.
func TestObjectTampered(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(ctx context.Context, js jetstream.JetStream, s jetstream.Stream, subject string, seqs []uint64) error
	}{
		{"extra chunk", func(ctx context.Context, js jetstream.JetStream, _ jetstream.Stream, subject string, _ []uint64) error {
			_, err := js.Publish(ctx, subject, []byte("more"))
			return err
		}},
		{"missing chunk", func(ctx context.Context, _ jetstream.JetStream, s jetstream.Stream, _ string, seqs []uint64) error {
			return s.DeleteMsg(ctx, seqs[1])
		}},
		{"reordered chunk", func(ctx context.Context, js jetstream.JetStream, s jetstream.Stream, subject string, seqs []uint64) error {
			m, err := s.GetMsg(ctx, seqs[1])
			if err != nil {
				return err
			}
			if err := s.DeleteMsg(ctx, seqs[1]); err != nil {
				return err
			}
			_, err = js.Publish(ctx, subject, m.Data)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := bustest.Bus(t)
			ctx := testContext(t)
			if err := b.Ensure(ctx, bus.TopologyConfig{}); err != nil {
				t.Fatal(err)
			}
			if _, err := b.PutObject(ctx, "s4/data", &generator{size: 4 * bus.ObjectChunk, probe: &heapProbe{}}); err != nil {
				t.Fatal(err)
			}
			js := b.JetStream()
			obs, err := js.ObjectStore(ctx, bus.BucketPayloads)
			if err != nil {
				t.Fatal(err)
			}
			info, err := obs.GetInfo(ctx, "s4/data")
			if err != nil {
				t.Fatal(err)
			}
			stream, err := js.Stream(ctx, bus.StreamPayloads)
			if err != nil {
				t.Fatal(err)
			}
			subject := "$O." + bus.BucketPayloads + ".C." + info.NUID
			var seqs []uint64
			for seq := uint64(1); len(seqs) < int(info.Chunks); seq++ {
				m, err := stream.GetMsg(ctx, seq)
				if err != nil {
					t.Fatalf("chunk %d: %v", len(seqs), err)
				}
				if m.Subject == subject {
					seqs = append(seqs, seq)
				}
			}
			if err := tt.tamper(ctx, js, stream, subject, seqs); err != nil {
				t.Fatal(err)
			}
			r, err := b.GetObject(ctx, "s4/data")
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if _, err := io.ReadAll(r); !errors.Is(err, jetstream.ErrDigestMismatch) {
				t.Errorf("read tampered object: %v, want ErrDigestMismatch", err)
			}
		})
	}
}

// TestObjectCorruptVerifyAndDeadLetter: a stored object with a chunk
// repeated and the last one missing fails verification, and the dead
// letter names it and the reason.
func TestObjectCorruptVerifyAndDeadLetter(t *testing.T) {
	b, _ := bustest.Bus(t)
	ctx := testContext(t)
	name := putCorrupt(t, ctx, b, "s5/attachment")
	_, err := b.VerifyObject(ctx, name)
	if !errors.Is(err, bus.ErrCorrupt) {
		t.Fatalf("verify corrupt object: %v, want ErrCorrupt", err)
	}
	if _, err := b.VerifyObject(ctx, "s5/missing"); !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("verify missing object: %v, want ErrNotFound", err)
	}
	for range 2 {
		if err := b.DeadLetterObject(ctx, name, err); err != nil {
			t.Fatal(err)
		}
	}
	dead := deadLetter(t, b, bus.ReasonCorruptObject)
	if got := dead.Header.Get(bus.HeaderDeadObject); got != name {
		t.Errorf("dead letter object %q, want %q", got, name)
	}
	if got := dead.Header.Get(bus.HeaderDeadError); !strings.Contains(got, "corrupt object") {
		t.Errorf("dead letter error %q", got)
	}
	if n := streamMsgs(t, b, bus.StreamDead); n != 1 {
		t.Errorf("DEAD holds %d letters for one object, want 1", n)
	}
}

// TestReadObject reads objects whole: the content as GetObject streams it,
// ErrNotFound for none and ErrCorrupt for one whose chunks do not add up.
func TestReadObject(t *testing.T) {
	b, _ := bustest.Bus(t)
	ctx := testContext(t)
	for _, size := range []int{0, 1, bus.ObjectChunk, 3*bus.ObjectChunk + 17} {
		name := "s6/" + strconv.Itoa(size)
		if _, err := b.PutObject(ctx, name, &generator{size: size}); err != nil {
			t.Fatal(err)
		}
		r, err := b.GetObject(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		want, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		got, err := b.ReadObject(ctx, name)
		if err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		if len(got) != size || !bytes.Equal(got, want) {
			t.Errorf("%d bytes: read %d, not the streamed content", size, len(got))
		}
	}
	if _, err := b.ReadObject(ctx, "s6/missing"); !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("read missing object: %v, want ErrNotFound", err)
	}
	if _, err := b.ReadObject(ctx, putCorrupt(t, ctx, b, "s6/corrupt")); !errors.Is(err, bus.ErrCorrupt) {
		t.Errorf("read corrupt object: %v, want ErrCorrupt", err)
	}
}

// TestObjectReadWithoutDirectGets reads an object of several chunks from a
// stream that answers no direct gets: the stream's leader then serves
// every chunk.
func TestObjectReadWithoutDirectGets(t *testing.T) {
	b, _ := bustest.Bus(t)
	ctx := testContext(t)
	const size = 10*bus.ObjectChunk + 1
	wantHash := sha256.New()
	if _, err := io.Copy(wantHash, &generator{size: size, probe: &heapProbe{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.PutObject(ctx, "r1/large", &generator{size: size, probe: &heapProbe{}}); err != nil {
		t.Fatal(err)
	}
	s, err := b.JetStream().Stream(ctx, bus.StreamPayloads)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.AllowDirect = false
	if _, err := b.JetStream().UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	r, err := b.GetObject(ctx, "r1/large")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil || n != size || !bytes.Equal(h.Sum(nil), wantHash.Sum(nil)) {
		t.Fatalf("read %d bytes, %v; want the %d bytes put", n, err, size)
	}
}

// TestObjectEndsWithItsLastChunk reads exactly an object's bytes and then
// cancels the read's context, as an HTTP client that got every byte and
// went away cancels its handler's: the next Read must still report the
// end, the object having been checked before its last bytes were handed
// out.
func TestObjectEndsWithItsLastChunk(t *testing.T) {
	b, _ := bustest.Bus(t)
	for _, size := range []int{1000, 3*bus.ObjectChunk + 5, 6 * bus.ObjectChunk} {
		name := "r1/end-" + strconv.Itoa(size)
		if _, err := b.PutObject(testContext(t), name, &generator{size: size, probe: &heapProbe{}}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		r, err := b.GetObject(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(r, make([]byte, size)); err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		cancel()
		if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Errorf("%d bytes: after the last one Read gave %d, %v; want 0, EOF", size, n, err)
		}
		r.Close()
	}
}

// TestCheckObject: CheckObject finds an object that lost a chunk or holds
// one twice, and a missing one, without reading it.
func TestCheckObject(t *testing.T) {
	b, _ := bustest.Bus(t)
	ctx := testContext(t)
	js := b.JetStream()
	put := func(name string) (jetstream.Stream, string) {
		t.Helper()
		if _, err := b.PutObject(ctx, name, &generator{size: 3*bus.ObjectChunk + 7}); err != nil {
			t.Fatal(err)
		}
		return objectChunks(t, ctx, b, name)
	}

	put("c1/intact")
	want, err := b.StatObject(ctx, "c1/intact")
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.CheckObject(ctx, "c1/intact")
	if err != nil || got.Size != want.Size || got.Chunks != 4 || got.Digest != want.Digest {
		t.Errorf("intact object: %+v, %v; want %d bytes in 4 chunks", got, err, want.Size)
	}

	stream, subject := put("c1/lost")
	last, err := stream.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.DeleteMsg(ctx, last.Sequence); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CheckObject(ctx, "c1/lost"); !errors.Is(err, bus.ErrCorrupt) {
		t.Errorf("object with a chunk lost: %v, want ErrCorrupt", err)
	}

	stream, subject = put("c1/repeated")
	first, err := stream.GetMsg(ctx, 0, jetstream.WithGetMsgSubject(subject))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, subject, first.Data); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CheckObject(ctx, "c1/repeated"); !errors.Is(err, bus.ErrCorrupt) {
		t.Errorf("object with a chunk stored twice: %v, want ErrCorrupt", err)
	}

	if _, err := b.CheckObject(ctx, "c1/missing"); !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("missing object: %v, want ErrNotFound", err)
	}
}
