package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/client"
	"github.com/amtsbote/amtsbote/pkg/jose"
)

// sharedFile returns a file of ../shared beside the module, or "" when
// it is absent.
func sharedFile(parts ...string) string {
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(append([]string{filepath.Dir(file), "..", "..", "..", "shared"}, parts...)...)
	if _, err := os.Stat(path); err != nil {
		return ""
	}
	return path
}

// binDir holds the amtsbote command the tests run; TestMain removes it.
var binDir string

// built builds the amtsbote command once per test binary: linking it
// costs seconds of CPU, and every test runs the same one.
var built = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "amtsbote-cli-test-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "amtsbote")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/amtsbote/amtsbote")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// buildBinary returns the amtsbote command, built on first use.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin, err := built()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// child is an amtsbote command running as a process of its own, so that
// its heap is its own. demo is dev's demo.json.
type child struct {
	cmd    *exec.Cmd
	done   chan error
	out    *flowtest.Buffer
	errOut *flowtest.Buffer
	demo   demoFile
}

// childEnv is the test's environment without AMTSBOTE_* variables, which
// would change the child's flag defaults.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AMTSBOTE_") {
			env = append(env, kv)
		}
	}
	return env
}

// startChild runs `bin dev` on dataDir and waits until it printed its
// credentials.
func startChild(t *testing.T, bin, dataDir string, extra ...string) *child {
	t.Helper()
	args := append([]string{"dev", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--nats-port", "-1", "--log-level", "warn"}, extra...)
	c := startProcess(t, bin, "Try:", args...)
	raw, err := os.ReadFile(filepath.Join(dataDir, "demo.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &c.demo); err != nil {
		t.Fatal(err)
	}
	return c
}

// startProcess runs bin with args until the test ends and waits until its
// standard output contains ready.
func startProcess(t *testing.T, bin, ready string, args ...string) *child {
	t.Helper()
	c := &child{done: make(chan error, 1), out: &flowtest.Buffer{}, errOut: &flowtest.Buffer{}}
	cmd := exec.Command(bin, args...)
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = c.out, c.errOut
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", args[0], err)
	}
	c.cmd = cmd
	go func() { c.done <- cmd.Wait() }()
	t.Cleanup(func() { c.stop(t) })
	eventually(t, 3*time.Minute, func() error {
		select {
		case err := <-c.done:
			c.done <- err
			t.Fatalf("%s exited: %v\n%s", args[0], err, c.errOut.String())
		default:
		}
		if !strings.Contains(c.out.String(), ready) {
			return fmt.Errorf("%s: %q not printed yet", args[0], ready)
		}
		return nil
	})
	return c
}

// stop interrupts the process as Ctrl-C would and waits for it to exit.
func (c *child) stop(t *testing.T) {
	t.Helper()
	if c.cmd == nil {
		return
	}
	cmd := c.cmd
	c.cmd = nil
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-c.done:
		if err != nil {
			t.Errorf("%s stopped with %v\n%s", cmd.Args[1], err, c.errOut.String())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-c.done
		t.Errorf("%s did not stop within 30s after an interrupt\n%s", cmd.Args[1], c.errOut.String())
	}
}

// testDatabaseURL returns AMTSBOTE_TEST_DATABASE_URL, skipping without it
// unless CI is set.
func testDatabaseURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("AMTSBOTE_TEST_DATABASE_URL")
	if u == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("AMTSBOTE_TEST_DATABASE_URL is unset, and CI needs the PostgreSQL tests")
		}
		t.Skip("AMTSBOTE_TEST_DATABASE_URL is unset; set it (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to run the PostgreSQL variant")
	}
	return u
}

// freshSchema creates an empty schema, drops it when the test ends and
// returns a database URL whose search_path selects it.
func freshSchema(t *testing.T) string {
	t.Helper()
	base := testDatabaseURL(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to AMTSBOTE_TEST_DATABASE_URL: %v", err)
	}
	defer conn.Close(ctx)
	var b [8]byte
	_, _ = rand.Read(b[:])
	schema := "e2e_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("connect to drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("AMTSBOTE_TEST_DATABASE_URL must be a postgres:// URL for dev --database-url, got %q", base)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// contract is an http.RoundTripper that validates every response of the
// Submission API against FIT-Connect's OpenAPI document. Responses to paths
// the document does not describe (the token endpoint, metrics) pass
// unchecked. Bodies of application/jose answers, which may be large, are
// checked while the caller reads them.
type contract struct {
	next   http.RoundTripper
	router routers.Router // nil without the spec

	mu      sync.Mutex
	checked int
	errs    []string
}

// specHost is the host the spec's server is set to; requests are matched
// under it whatever port the system listens on.
const specHost = "amtsbote.e2e.test"

func newContract(t *testing.T) *contract {
	t.Helper()
	c := &contract{next: http.DefaultTransport}
	path := sharedFile("fit-connect", "submission-api.yaml")
	if path == "" {
		t.Log("FIT-Connect Submission API spec not found beside the module; responses are not validated")
		return c
	}
	doc, err := openapi3.NewLoader().LoadFromFile(path)
	if err != nil {
		t.Fatalf("load spec: %v", err)
	}
	doc.Servers = openapi3.Servers{{URL: "http://" + specHost}}
	// The spec's own examples break its schemas; the schemas are what a
	// response must meet.
	if c.router, err = legacy.NewRouter(doc, openapi3.DisableExamplesValidation()); err != nil {
		t.Fatalf("spec router: %v", err)
	}
	return c
}

func (c *contract) fail(req *http.Request, status int, format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs = append(c.errs, fmt.Sprintf("%s %s → %d: %s", req.Method, req.URL.Path, status, fmt.Sprintf(format, args...)))
}

// RoundTrip implements http.RoundTripper.
func (c *contract) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err != nil || c.router == nil {
		return resp, err
	}
	probe := req.Clone(req.Context())
	probe.URL.Host, probe.Host, probe.Body = specHost, specHost, http.NoBody
	route, params, ferr := c.router.FindRoute(probe)
	if ferr != nil {
		if strings.HasPrefix(req.URL.Path, "/v1/") || strings.HasPrefix(req.URL.Path, "/.well-known/") {
			c.fail(req, resp.StatusCode, "no operation in the spec: %v", ferr)
		}
		return resp, nil
	}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: probe, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		},
		Status:  resp.StatusCode,
		Header:  resp.Header,
		Options: opts,
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == "application/jose" {
		// Status and headers here, the compact JWE's alphabet while read.
		opts.ExcludeResponseBody = true
		if err := openapi3filter.ValidateResponse(req.Context(), in); err != nil {
			c.fail(req, resp.StatusCode, "%v", err)
		}
		if r := route.Operation.Responses.Status(resp.StatusCode); r == nil || r.Value == nil || r.Value.Content.Get(mt) == nil {
			c.fail(req, resp.StatusCode, "the spec names no %s answer", mt)
		}
		resp.Body = &joseBody{ReadCloser: resp.Body, c: c, req: req, status: resp.StatusCode}
		c.count()
		return resp, nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	in.Body = io.NopCloser(bytes.NewReader(body))
	if err := openapi3filter.ValidateResponse(req.Context(), in); err != nil {
		c.fail(req, resp.StatusCode, "%v\nbody: %.512s", err, body)
	}
	c.count()
	return resp, nil
}

func (c *contract) count() {
	c.mu.Lock()
	c.checked++
	c.mu.Unlock()
}

// report fails t with every mismatch found since the last report.
func (c *contract) report(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.errs {
		t.Errorf("response does not match FIT-Connect's Submission API: %s", e)
	}
	c.errs = nil
	if c.router != nil {
		t.Logf("%d responses validated against submission-api.yaml so far", c.checked)
	}
}

// joseBody checks an application/jose body against the spec's Attachment
// pattern ^[a-zA-Z0-9-_=.]+$ as it streams.
type joseBody struct {
	io.ReadCloser
	c      *contract
	req    *http.Request
	status int
	n      int64
	bad    bool
	done   bool
}

func (j *joseBody) Read(p []byte) (int, error) {
	n, err := j.ReadCloser.Read(p)
	if i := outsideAlphabet(p[:n]); i >= 0 && !j.bad {
		j.bad = true
		j.c.fail(j.req, j.status, "body byte %d (%q) is outside the compact serialization's alphabet", j.n+int64(i), p[i])
	}
	j.n += int64(n)
	if errors.Is(err, io.EOF) && !j.done {
		j.done = true
		if j.n == 0 {
			j.c.fail(j.req, j.status, "empty application/jose body")
		}
	}
	return n, err
}

// outsideAlphabet returns the index of the first byte of p outside
// [a-zA-Z0-9-_=.], or -1. It reads attachments of many MiB byte by byte,
// too slow with the race detector's checks on every byte.
//
//go:norace
func outsideAlphabet(p []byte) int {
	for i, b := range p {
		if !joseAlphabet[b] {
			return i
		}
	}
	return -1
}

var joseAlphabet = func() (a [256]bool) {
	for _, c := range "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=." {
		a[c] = true
	}
	return a
}()

// heapStats is a process's heap as its /metrics tell it.
type heapStats struct {
	// Inuse is go_memstats_heap_inuse_bytes: live objects and garbage
	// not yet collected.
	Inuse float64
	// Live estimates the heap the last collection found live, from the
	// collector's goal: go_memstats_next_gc_bytes / (1 + GOGC/100).
	Live float64
}

// readHeap reads a /metrics page.
func readHeap(ctx context.Context, metricsURL string) (heapStats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return heapStats{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return heapStats{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return heapStats{}, err
	}
	v := map[string]float64{}
	for _, line := range strings.Split(string(raw), "\n") {
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		switch name {
		case "go_memstats_heap_inuse_bytes", "go_memstats_next_gc_bytes", "go_gc_gogc_percent":
			if v[name], err = strconv.ParseFloat(strings.TrimSpace(val), 64); err != nil {
				return heapStats{}, fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	inuse, ok1 := v["go_memstats_heap_inuse_bytes"]
	next, ok2 := v["go_memstats_next_gc_bytes"]
	gogc, ok3 := v["go_gc_gogc_percent"]
	if !ok1 || !ok2 || !ok3 || gogc <= 0 {
		return heapStats{}, fmt.Errorf("/metrics lacks heap in use, GC goal or GOGC: %v", v)
	}
	return heapStats{Inuse: inuse, Live: next / (1 + gogc/100)}, nil
}

// heapWatch samples a process's heap until stopped and keeps the peaks.
type heapWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
	before heapStats
	peak   heapStats
	n      int
	err    error
}

// watchHeap takes a first sample and then samples every 50ms: often
// enough to catch a peak, seldom enough not to make the heap it measures.
func watchHeap(t *testing.T, metricsURL string) *heapWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	before, err := readHeap(ctx, metricsURL)
	if err != nil {
		cancel()
		t.Fatalf("read heap: %v", err)
	}
	w := &heapWatch{cancel: cancel, done: make(chan struct{}), before: before, peak: before}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			h, err := readHeap(ctx, metricsURL)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				w.err = err
			} else {
				w.n++
				w.peak.Inuse = max(w.peak.Inuse, h.Inuse)
				w.peak.Live = max(w.peak.Live, h.Live)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// stop ends the sampling and returns the growth over the first sample.
func (w *heapWatch) stop(t *testing.T) heapStats {
	t.Helper()
	w.cancel()
	<-w.done
	if w.n == 0 {
		t.Fatalf("no heap sample: %v", w.err)
	}
	return heapStats{Inuse: w.peak.Inuse - w.before.Inuse, Live: w.peak.Live - w.before.Live}
}

// jetStream connects to a NATS server for the test's own look into the streams.
func jetStream(t *testing.T, natsURL string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatalf("connect to nats %s: %v", natsURL, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// streamMsgs returns how many messages a stream holds.
func streamMsgs(ctx context.Context, js jetstream.JetStream, name string) (uint64, error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// inboxCopies counts the INBOX messages per Nats-Msg-Id (submission id)
// for one destination.
func inboxCopies(t *testing.T, js jetstream.JetStream, destinationID string) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	filter, err := bus.InboxDestinationFilter(destinationID)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctx, bus.StreamInbox, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatalf("inbox consumer: %v", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatalf("inbox consumer info: %v", err)
	}
	copies := map[string]int{}
	for left := int(info.NumPending); left > 0; {
		batch, err := cons.Fetch(min(left, 256), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatalf("read inbox: %v", err)
		}
		got := 0
		for m := range batch.Messages() {
			copies[m.Headers().Get(jetstream.MsgIDHeader)]++
			got++
		}
		if err := batch.Error(); err != nil {
			t.Fatalf("read inbox: %v", err)
		}
		if got == 0 {
			t.Fatalf("inbox: %d messages announced but not delivered", left)
		}
		left -= got
	}
	return copies
}

// newActor builds an SDK client for the demo role whose requests go
// through rt.
func newActor(t *testing.T, d demoFile, role string, rt http.RoundTripper) *client.Client {
	t.Helper()
	for _, dc := range d.Clients {
		if dc.Role != role {
			continue
		}
		opts := []client.Option{
			client.Credentials(dc.ClientID, dc.ClientSecret),
			client.HTTPClient(&http.Client{Transport: rt, Timeout: 5 * time.Minute}),
			client.AttachmentDir(t.TempDir()),
		}
		if schema := sharedFile("fit-connect", "metadata.schema.v1.0.0.json"); schema != "" {
			opts = append(opts, client.MetadataSchema(schema))
		}
		c, err := client.New(d.BaseURL, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	t.Fatalf("no %s client in demo.json", role)
	return nil
}

// destinationKeys reads a demo destination's private keys.
func destinationKeys(t *testing.T, dest demoDestination) (client.KeyRing, jose.KeyPair) {
	t.Helper()
	read := func(path string) jose.KeyPair {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		kp, err := jose.ParsePrivate(raw)
		if err != nil {
			t.Fatalf("key %s: %v", path, err)
		}
		kp.Private.Precompute()
		return kp
	}
	ring, err := client.NewKeyRing(read(dest.EncryptionKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return ring, read(dest.SigningKeyFile)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
