package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/set"
)

// yardsticks are what this machine does without Amtsbote, measured in the
// same run: the bounds each figure is set beside.
type yardsticks struct {
	// Signing is PS512 (RSA-4096) signatures per second on all CPUs, before
	// and after the load, and the CPU seconds one signature costs.
	SigningPerSecond  [2]float64 `json:"signingPerSecond"`
	SigningCPUSeconds float64    `json:"signingCpuSecondsEach"`
	JetStreamServer   string     `json:"jetStreamServer"`
	JetStream         []jsFigure `json:"jetStream"`
	ObjectStore       []osFigure `json:"objectStore"`
	// BareHTTPPerSecond is the bare handler in a process of its own, the
	// bound of routesToBareHTTP; BareHTTPInProcessPerSecond the same
	// handler in the load test's process, for comparison.
	BareHTTPPerSecond          float64 `json:"bareHttpPerSecond"`
	BareHTTPInProcessPerSecond float64 `json:"bareHttpInProcessPerSecond"`
	RoutesPerSecond            float64 `json:"routesPerSecond"`
	RoutesErrors               int64   `json:"routesErrors"`
	RoutesConcurrency          int     `json:"routesConcurrency"`
	RoutesAnswerBytes          int     `json:"routesAnswerBytes"`
}

// jsFigure is raw JetStream async publish and pull-consume of one size.
type jsFigure struct {
	Bytes            int     `json:"bytes"`
	PublishPerSecond float64 `json:"publishPerSecond"`
	ConsumePerSecond float64 `json:"consumePerSecond"`
}

// osFigure is raw object-store put and get of one size, one at a time.
type osFigure struct {
	Bytes int64 `json:"bytes"`
	// MeasuredBytes is the size of the objects put and got, when smaller
	// than Bytes (see maxRawObject).
	MeasuredBytes     int64   `json:"measuredBytes,omitempty"`
	PutBytesPerSecond float64 `json:"putBytesPerSecond"`
	GetBytesPerSecond float64 `json:"getBytesPerSecond"`
}

// signingRate signs one SET over and over on runtime.NumCPU() goroutines
// for d and returns signatures per second and the CPU seconds of each.
func signingCost(ctx context.Context, key jose.KeyPair, d time.Duration) (float64, float64, error) {
	cpu0 := selfCPU()
	claims, err := set.New(set.SubmitSubmission, "https://amtsbote.example", uuid.NewString(), uuid.NewString(),
		set.SubmitPayload{AuthenticationTags: set.AuthenticationTags{Metadata: "AAECAwQFBgcICQoLDA0ODw", Data: "EBESExQVFhcYGRobHB0eHw"}}, time.Now())
	if err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var n atomic.Int64
	var wg sync.WaitGroup
	var first atomic.Pointer[error]
	start := time.Now()
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, err := set.Sign(claims, key.Private, key.Public.KeyID); err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	if e := first.Load(); e != nil {
		return 0, 0, fmt.Errorf("sign: %w", *e)
	}
	if n.Load() == 0 {
		return 0, 0, fmt.Errorf("no signature within %s", d)
	}
	return float64(n.Load()) / time.Since(start).Seconds(), (selfCPU() - cpu0).Seconds() / float64(n.Load()), nil
}

// natsFor connects to url, or to an embedded server in dir when url is "".
func natsFor(url, dir string) (*nats.Conn, string, func(), error) {
	stop := func() {}
	name := url
	if url == "" {
		ns, err := bus.RunEmbedded(bus.EmbeddedConfig{Dir: filepath.Join(dir, "yardstick-jetstream"), Port: -1, MaxPayload: 8 << 20})
		if err != nil {
			return nil, "", nil, err
		}
		url, name = ns.ClientURL(), "embedded, file store, R1"
		stop = func() { ns.Shutdown(); ns.WaitForShutdown() }
	} else {
		name = "the target's NATS, file store"
	}
	nc, err := nats.Connect(url, nats.MaxReconnects(0))
	if err != nil {
		stop()
		return nil, "", nil, err
	}
	return nc, name, func() { nc.Close(); stop() }, nil
}

// replicasOf is the replication of the target's stream, so that a
// yardstick on a cluster is measured as the target stores: 1 where the
// stream cannot be read (an embedded yardstick server has none).
func replicasOf(ctx context.Context, js jetstream.JetStream, stream string) int {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return 1
	}
	return max(st.CachedInfo().Config.Replicas, 1)
}

// jetStreamRate publishes messages of size asynchronously, with at most
// 256 unacknowledged, for d, then pull-consumes and acknowledges them all,
// on a stream of replicas.
func jetStreamRate(ctx context.Context, js jetstream.JetStream, size, replicas int, d time.Duration) (jsFigure, error) {
	name := fmt.Sprintf("LOADTEST_%d", size)
	subject := fmt.Sprintf("loadtest.%d", size)
	_ = js.DeleteStream(ctx, name)
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject}, Storage: jetstream.FileStorage, Replicas: replicas, MaxMsgSize: int32(size + 1024)})
	if err != nil {
		return jsFigure{}, fmt.Errorf("create yardstick stream: %w", err)
	}
	defer js.DeleteStream(context.WithoutCancel(ctx), name)
	msg := make([]byte, size)
	rand.Read(msg)
	start := time.Now()
	n := 0
	for time.Since(start) < d && ctx.Err() == nil {
		_, err := js.PublishAsync(subject, msg, jetstream.WithMsgID(uuid.NewString()))
		if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			continue // the window of 256 is full
		}
		if err != nil {
			return jsFigure{}, err
		}
		n++
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		return jsFigure{}, fmt.Errorf("async publishes not acknowledged within a minute")
	}
	pub := float64(n) / time.Since(start).Seconds()
	info, err := st.Info(ctx)
	if err != nil {
		return jsFigure{}, err
	}
	stored := int(info.State.Msgs)
	cons, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 4096})
	if err != nil {
		return jsFigure{}, err
	}
	start = time.Now()
	got := 0
	for got < stored && ctx.Err() == nil {
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return jsFigure{}, err
		}
		k := 0
		for m := range batch.Messages() {
			_ = m.Ack()
			k++
		}
		if k == 0 {
			break
		}
		got += k
	}
	return jsFigure{Bytes: size, PublishPerSecond: pub, ConsumePerSecond: float64(got) / time.Since(start).Seconds()}, nil
}

// objectTimeout bounds one put or get of the object-store yardstick.
const objectTimeout = 10 * time.Minute

// maxRawObject is the largest object the yardstick puts: the object
// store's Put sends every chunk without waiting for acknowledgements, and
// of a larger object a server with its default 128 MiB ingest queue may
// refuse chunks (429). Its rate, bytes per second, stands for larger sizes.
const maxRawObject = 64 << 20

// objectRate puts and gets objects of size (at most maxRawObject) one at a
// time, at least once and until d passed, in a bucket of replicas, and
// returns the bytes per second of each.
func objectRate(ctx context.Context, js jetstream.JetStream, size int64, replicas int, d time.Duration) (osFigure, error) {
	fig := osFigure{Bytes: size}
	if size > maxRawObject {
		size, fig.MeasuredBytes = maxRawObject, maxRawObject
	}
	obs, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "LOADTEST_OBJECTS", Storage: jetstream.FileStorage, Replicas: replicas})
	if err != nil {
		return osFigure{}, err
	}
	defer js.DeleteObjectStore(context.WithoutCancel(ctx), "LOADTEST_OBJECTS")
	block := make([]byte, 1<<20)
	rand.Read(block)
	var putT, getT time.Duration
	var moved int64
	for i := 0; i == 0 || (putT+getT < d && ctx.Err() == nil); i++ {
		name := fmt.Sprintf("o%d", i)
		// Without a deadline the object store gives a whole Get 5 s.
		ctx, cancel := context.WithTimeout(ctx, objectTimeout)
		defer cancel()
		t0 := time.Now()
		if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: name}, io.LimitReader(repeat(block), size)); err != nil {
			return osFigure{}, fmt.Errorf("put: %w", err)
		}
		putT += time.Since(t0)
		t0 = time.Now()
		r, err := obs.Get(ctx, name)
		// On replicated streams the object store reads its description
		// with a direct get, which a replica behind the leader answers
		// with not found for a moment.
		for wait := time.Now(); errors.Is(err, jetstream.ErrObjectNotFound) && time.Since(wait) < 5*time.Second; {
			time.Sleep(20 * time.Millisecond)
			r, err = obs.Get(ctx, name)
		}
		if err != nil {
			return osFigure{}, fmt.Errorf("get: %w", err)
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			r.Close()
			return osFigure{}, fmt.Errorf("get: %w", err)
		}
		r.Close()
		getT += time.Since(t0)
		moved += size
		_ = obs.Delete(ctx, name)
	}
	fig.PutBytesPerSecond, fig.GetBytesPerSecond = float64(moved)/putT.Seconds(), float64(moved)/getT.Seconds()
	return fig, nil
}

type repeater struct {
	b   []byte
	off int
}

func repeat(b []byte) io.Reader { return &repeater{b: b} }

func (r *repeater) Read(p []byte) (int, error) {
	n := copy(p, r.b[r.off:])
	r.off = (r.off + n) % len(r.b)
	return n, nil
}

// requestRate sends GET url from c goroutines for d with hc and returns
// answers per second with status 200 and the count of others.
func requestRate(ctx context.Context, hc *http.Client, url string, c int, d time.Duration) (float64, int64) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var ok, bad atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				resp, err := hc.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						bad.Add(1)
					}
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ok.Add(1)
				} else {
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return float64(ok.Load()) / time.Since(start).Seconds(), bad.Load()
}

// routesRounds is how many turns /v1/routes and the bare handler take
// each: alternating, so that a machine's speed drifting during the
// yardstick (a backlog still settling, the CPU clock) weighs on both alike.
const routesRounds = 4

// alternateRates measures a and b for d each in routesRounds turns, a
// first in even rounds and b first in odd ones, and returns both rates
// over all turns and a's failed requests.
func alternateRates(ctx context.Context, hc *http.Client, a, b string, c int, d time.Duration) (float64, float64, int64) {
	turn := d / routesRounds
	var rateA, rateB float64
	var bad int64
	measureA := func() {
		r, n := requestRate(ctx, hc, a, c, turn)
		rateA, bad = rateA+r, bad+n
	}
	measureB := func() {
		r, _ := requestRate(ctx, hc, b, c, turn)
		rateB += r
	}
	for i := range routesRounds {
		if i%2 == 0 {
			measureA()
			measureB()
		} else {
			measureB()
			measureA()
		}
	}
	return rateA / routesRounds, rateB / routesRounds, bad
}

// bareServer answers every request with body as JSON: the yardstick for
// /v1/routes, with the same answer. It runs in a process of its own, as
// Amtsbote does: a server in the client's own process shares its
// scheduler and netpoller and answers about 1.5 times as many requests
// (see bareServerInProcess).
func bareServer(ctx context.Context, work string, body []byte) (string, func(), error) {
	exe, err := os.Executable()
	if err != nil {
		return "", nil, fmt.Errorf("bare handler: %w", err)
	}
	file := filepath.Join(tempDirFor(work), "bare-answer.json")
	if err := os.WriteFile(file, body, 0o600); err != nil {
		return "", nil, fmt.Errorf("bare handler: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, bareCommand, file)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, fmt.Errorf("bare handler: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("bare handler: %w", err)
	}
	stop := func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("bare handler: no address: %w", err)
	}
	return strings.TrimSpace(line), stop, nil
}

// bareCommand is the hidden command that runs the bare handler.
const bareCommand = "bare-http"

// runBare serves the answer in file on a free port of 127.0.0.1, prints
// its URL and serves until killed.
func runBare(args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return errors.New(bareCommand + ": want the answer's file")
	}
	body, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "http://%s\n", ln.Addr())
	return http.Serve(ln, bareHandler(body))
}

// bareServerInProcess is bareServer in the load test's own process.
func bareServerInProcess(body []byte) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: bareHandler(body)}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

func bareHandler(body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
}

// benchClient is one HTTP client for both sides of a comparison.
func benchClient(conns int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost, tr.MaxIdleConns = conns, conns
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// tempDirFor is a directory for the yardsticks' files.
func tempDirFor(work string) string {
	d := filepath.Join(work, "yardsticks")
	os.MkdirAll(d, 0o700)
	return d
}
