package subscriber_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/client"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/metrics"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/services/subscriber"
	"github.com/amtsbote/amtsbote/services/subscriber/config"
	"github.com/amtsbote/amtsbote/services/subscriber/sink"
)

// startSubscriber loads file and runs a subscriber in the test process
// until the test ends.
func startSubscriber(t *testing.T, s *system, file string) *flowtest.Running {
	t.Helper()
	conf, sk := loadConfig(t, file)
	api := s.api(t, conf.HTTP.ClientID, conf.HTTP.ClientSecret.Reveal())
	cfg := subscriber.Config{Conf: conf, Sink: sk, API: api, BackoffBase: 200 * time.Millisecond}
	if conf.Mode == config.ModeNATS {
		cfg.Bus = s.bus
	}
	sub, err := subscriber.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return flowtest.Start(t, sub)
}

// loadConfig loads file and opens its sink until the test ends.
func loadConfig(t *testing.T, file string) (*config.Config, sink.Sink) {
	t.Helper()
	conf, err := config.Load(file)
	if err != nil {
		t.Fatalf("load config: %v", err)
	}
	sk, err := conf.Sink.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sk.Close() })
	return conf, sk
}

// delivered lists the submission folders of a directory sink.
func delivered(t *testing.T, dir string) map[string]bool {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			out[e.Name()] = true
		}
	}
	return out
}

// TestHTTPPickup: submissions picked up from the pickup list land
// decrypted in the directory sink, and the sender sees each accepted.
func TestHTTPPickup(t *testing.T) {
	s := newSystem(t)
	dests := s.addDestinations(t, kreisARS(t, 2)...)
	rid, rsecret := s.receiverOf(t, dests...)
	s.start(t)
	dir := t.TempDir()
	sinkDir := filepath.Join(dir, "sink")
	file := s.configYAML(t, dir, "http", "", rid, rsecret, "sink:\n  kind: directory\n  directory: "+sinkDir+"\n", keyPair(t, encKey), nil, dests...)
	startSubscriber(t, s, file)

	ctx := context.Background()
	var receipts []client.Receipt
	for i := range 4 {
		r, err := s.submit(ctx, s.sender, dests[i%2], i)
		if err != nil {
			t.Fatal(err)
		}
		receipts = append(receipts, r)
	}
	for i, r := range receipts {
		eventually(t, 30*time.Second, func() error {
			st, err := statusOf(ctx, s.sender, r)
			if err != nil {
				return err
			}
			if st.Decision != client.StateAccepted {
				return fmt.Errorf("decision %s", st.Decision)
			}
			return nil
		})
		folder := filepath.Join(sinkDir, r.SubmissionID)
		data, err := os.ReadFile(filepath.Join(folder, "data.json"))
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(`{"antrag":%d,"gemeinde":%q}`, i, dests[i%2].ARS); string(data) != want {
			t.Errorf("data %s, want %s", data, want)
		}
		att, err := os.ReadFile(filepath.Join(folder, sink.AttachmentDir, fmt.Sprintf("antrag-%d.pdf", i)))
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.Repeat(fmt.Sprintf("%%PDF-%d ", i), 200); string(att) != want {
			t.Errorf("attachment of %d differs", i)
		}
	}
	if got := delivered(t, sinkDir); len(got) != len(receipts) {
		t.Errorf("%d folders in the sink, want %d", len(got), len(receipts))
	}
}

// tamper rewrites the submit request (PUT /v1/submissions/{id}) of a
// sender: f changes its body's encryptedMetadata and encryptedData.
type tamper struct {
	next http.RoundTripper
	f    func(body map[string]string)
}

var submitPath = regexp.MustCompile(`^/v1/submissions/[0-9a-f-]{36}$`)

func (tp tamper) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPut || !submitPath.MatchString(req.URL.Path) {
		return tp.next.RoundTrip(req)
	}
	raw, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	var body map[string]string
	if err := json.Unmarshal(raw, &body); err != nil {
		return nil, err
	}
	tp.f(body)
	raw, _ = json.Marshal(body)
	req = req.Clone(req.Context())
	req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(raw)), int64(len(raw))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil }
	return tp.next.RoundTrip(req)
}

// flipCiphertext changes one byte of a compact JWE's ciphertext.
func flipCiphertext(t *testing.T, compact string) string {
	t.Helper()
	parts := strings.Split(compact, ".")
	if len(parts) != 5 || len(parts[3]) < 8 {
		t.Fatalf("not a compact JWE: %d parts", len(parts))
	}
	c := []byte(parts[3])
	// A-Z a-z stay valid base64url characters with other bits.
	if c[2] == 'A' {
		c[2] = 'B'
	} else {
		c[2] = 'A'
	}
	parts[3] = string(c)
	return strings.Join(parts, ".")
}

// TestRejects: a submission that fails a check is rejected with the
// problem of the check, the sender sees it in its event log, and the
// sink never gets it; the submissions beside it are accepted.
func TestRejects(t *testing.T) {
	s := newSystem(t)
	dests := s.addDestinations(t, kreisARS(t, 2)...)
	good, wrongKey := dests[0], dests[1]
	rid, rsecret := s.receiverOf(t, dests...)
	s.start(t)
	dir := t.TempDir()
	sinkDir := filepath.Join(dir, "sink")
	file := s.configYAML(t, dir, "http", "", rid, rsecret, "sink:\n  kind: directory\n  directory: "+sinkDir+"\n",
		keyPair(t, encKey), map[string]jose.KeyPair{wrongKey.ID: keyPair(t, otherEncKey)}, dests...)
	startSubscriber(t, s, file)

	pub := withKID(keyPair(t, encKey), "enc-"+good.ID).Public
	encrypt := func(plain string) string {
		jwe, err := jose.Encrypt([]byte(plain), &pub, "application/json")
		if err != nil {
			t.Fatal(err)
		}
		return jwe
	}
	cases := []struct {
		name     string
		dest     testDestination
		f        func(map[string]string)
		wantType string
		wantPart string
	}{
		{"one flipped byte in the data", good, func(b map[string]string) { b["encryptedData"] = flipCiphertext(t, b["encryptedData"]) }, "decryption-failed", "data"},
		{"one flipped byte in the metadata", good, func(b map[string]string) { b["encryptedMetadata"] = flipCiphertext(t, b["encryptedMetadata"]) }, "decryption-failed", "metadata"},
		{"wrong key", wrongKey, func(map[string]string) {}, "decryption-failed", "metadata"},
		{"hash mismatch", good, func(b map[string]string) { b["encryptedData"] = encrypt(`{"antrag":"anders"}`) }, "hash-mismatch", "data"},
		{"metadata against the schema", good, func(b map[string]string) {
			b["encryptedMetadata"] = encrypt(`{"contentStructure":{"attachments":"keine"}}`)
		}, "invalid-metadata", "metadata"},
	}
	ctx := context.Background()
	sid, ssecret := s.clientFor(t, "tampering sender", "send:region:DE08")
	// The tampering sender reads its own cases' event logs.
	reader := s.api(t, sid, ssecret)
	receipts := make([]client.Receipt, len(cases))
	for i, c := range cases {
		hc := &http.Client{Transport: tamper{next: http.DefaultTransport, f: c.f}, Timeout: time.Minute}
		sender, err := client.New(s.baseURL, client.Credentials(sid, ssecret), client.HTTPClient(hc))
		if err != nil {
			t.Fatal(err)
		}
		if receipts[i], err = s.submit(ctx, sender, c.dest, i); err != nil {
			t.Fatalf("%s: submit: %v", c.name, err)
		}
	}
	control, err := s.submit(ctx, s.sender, good, 99)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var st client.Status
			eventually(t, 30*time.Second, func() error {
				// The tags the backbone recorded are those of the
				// tampered JWEs, not those the sender made.
				st, err = reader.Sender().Status(ctx, receipts[i].CaseID, receipts[i].SubmissionID)
				if err == nil && st.Decision == "" {
					return fmt.Errorf("no decision yet: %s", st.State)
				}
				return err
			})
			if st.Decision != client.StateRejected || len(st.Problems) != 1 {
				t.Fatalf("decision %s with %d problems, want rejected with 1", st.Decision, len(st.Problems))
			}
			if p := st.Problems[0]; p.Type != problem.Base+c.wantType || p.Instance != c.wantPart {
				t.Errorf("problem %s at %s, want %s at %s", p.Type, p.Instance, problem.Base+c.wantType, c.wantPart)
			}
		})
	}
	waitAccepted(t, s.sender, control, 30*time.Second)
	if got := delivered(t, sinkDir); len(got) != 1 || !got[control.SubmissionID] {
		t.Errorf("sink holds %v, want only the control %s", got, control.SubmissionID)
	}
}

// TestNATS: a subscriber whose NATS user may only consume its own durable
// (as deploy/nats and dev configure it) picks up destination A's
// submissions from INBOX; with A's credentials nothing of B's can be
// consumed over NATS, listed or fetched over HTTP.
func TestNATS(t *testing.T) {
	const durA, durB = "subscriber-a", "subscriber-b"
	pwA := "pw-" + durA
	s := newSystem(t,
		bus.User{Name: durA, Password: pwA, Permissions: bus.SubscriberPermissions(durA)},
		bus.User{Name: durB, Password: "pw-" + durB, Permissions: bus.SubscriberPermissions(durB)})
	dests := s.addDestinations(t, kreisARS(t, 2)...)
	a, b := dests[0], dests[1]
	ctx := context.Background()
	for dur, d := range map[string]testDestination{durA: a, durB: b} {
		f, err := bus.InboxDestinationFilter(d.ID)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.bus.EnsureConsumer(ctx, bus.ConsumerConfig{Stream: bus.StreamInbox, Durable: dur, FilterSubjects: []string{f}, AckWait: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	rid, rsecret := s.receiverOf(t, a)
	s.start(t)
	dir := t.TempDir()
	sinkDir := filepath.Join(dir, "sink")
	pickup := fmt.Sprintf("nats:\n  url: %s\n  user: %s\n  password: %s\n  durable: %s\n", s.natsURL, durA, pwA, durA)
	file := s.configYAML(t, dir, "nats", pickup, rid, rsecret, "sink:\n  kind: directory\n  directory: "+sinkDir+"\n", keyPair(t, encKey), nil, a)
	conf, sk := loadConfig(t, file)
	subBus, err := bus.Connect(ctx, conf.NATS.URL, nats.UserInfo(durA, pwA), nats.CustomInboxPrefix(bus.SubscriberInboxPrefix(durA)))
	if err != nil {
		t.Fatalf("connect as %s: %v", durA, err)
	}
	t.Cleanup(func() { _ = subBus.Close() })
	sub, err := subscriber.New(subscriber.Config{Conf: conf, Sink: sk, API: s.api(t, rid, rsecret), Bus: subBus})
	if err != nil {
		t.Fatal(err)
	}
	flowtest.Start(t, sub)

	ra, err := s.submit(ctx, s.sender, a, 1)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := s.submit(ctx, s.sender, b, 2)
	if err != nil {
		t.Fatal(err)
	}
	waitAccepted(t, s.sender, ra, 30*time.Second)
	if got := delivered(t, sinkDir); len(got) != 1 || !got[ra.SubmissionID] {
		t.Errorf("sink holds %v, want only %s", got, ra.SubmissionID)
	}

	t.Run("NATS denies B's consumer and subjects", func(t *testing.T) {
		errs := make(chan error, 16)
		nc, err := nats.Connect(s.natsURL, nats.UserInfo(durA, pwA), nats.CustomInboxPrefix(bus.SubscriberInboxPrefix(durA)),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				select {
				case errs <- err:
				default:
				}
			}))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		wantViolation := func(what, subject string) {
			t.Helper()
			select {
			case err := <-errs:
				if !errors.Is(err, nats.ErrPermissionViolation) && !strings.Contains(err.Error(), "Permissions Violation") {
					t.Errorf("%s: %v, want a permissions violation", what, err)
				} else if !strings.Contains(err.Error(), subject) {
					t.Errorf("%s: %v, want it to name %s", what, err, subject)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("%s: no permissions violation", what)
			}
		}
		short, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := js.Consumer(short, bus.StreamInbox, durB); err == nil {
			t.Error("bound B's consumer")
		}
		wantViolation("bind B's durable", "$JS.API.CONSUMER.INFO.INBOX."+durB)
		fb, _ := bus.InboxDestinationFilter(b.ID)
		short2, cancel2 := context.WithTimeout(ctx, 2*time.Second)
		defer cancel2()
		if _, err := js.CreateConsumer(short2, bus.StreamInbox, jetstream.ConsumerConfig{Durable: "mine", FilterSubject: fb}); err == nil {
			t.Error("created a consumer on B's subjects")
		}
		wantViolation("create a consumer on B's subjects", "$JS.API.CONSUMER.CREATE.INBOX")
		if _, err := nc.SubscribeSync(bus.PrefixInbox + ".>"); err == nil {
			_ = nc.Flush()
		}
		wantViolation("subscribe to the inbox subjects", bus.PrefixInbox+".>")
		if _, err := nc.SubscribeSync("_INBOX.>"); err == nil {
			_ = nc.Flush()
		}
		wantViolation("subscribe to others' answers", "_INBOX.>")
	})

	t.Run("HTTP denies B's submissions", func(t *testing.T) {
		recv := s.api(t, rid, rsecret).Receiver()
		_, err := recv.ListSubmissions(ctx, b.ID, 0, 0)
		if p, ok := problem.As(err); !ok || p.Status != http.StatusForbidden {
			t.Errorf("list B's submissions: %v, want 403", err)
		}
		ring, err := client.NewKeyRing(withKID(keyPair(t, encKey), "enc-"+b.ID))
		if err != nil {
			t.Fatal(err)
		}
		_, err = recv.Fetch(ctx, rb.SubmissionID, ring)
		if p, ok := problem.As(err); !ok || p.Status != http.StatusNotFound {
			t.Errorf("fetch B's submission: %v, want 404", err)
		}
	})
}

// TestNATSFetchesWhatTheAPIListsLate: an INBOX message that comes before
// the API lists its submission (its submit-submission event still in the
// outbox) is fetched again shortly, not after the consumer's backoff.
func TestNATSFetchesWhatTheAPIListsLate(t *testing.T) {
	s := newSystem(t)
	d := s.addDestinations(t, kreisARS(t, 1)...)[0]
	rid, rsecret := s.receiverOf(t, d)
	s.startWithoutSigner(t)
	conf, sk, sinkDir := s.natsDirectory(t, "sub-late", rid, rsecret, d)
	notFound := make(chan struct{})
	hc := &http.Client{Transport: &onStatus{status: http.StatusNotFound, path: "/v1/submissions/", seen: notFound}}
	api, err := client.New(s.baseURL, client.Credentials(rid, rsecret), client.HTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	// A nak would bring the message back after four minutes.
	sub, err := subscriber.New(subscriber.Config{Conf: conf, Sink: sk, API: api, Bus: s.bus, BackoffBase: 4 * time.Minute, Logger: testLog()})
	if err != nil {
		t.Fatal(err)
	}
	flowtest.Start(t, sub)

	ctx := context.Background()
	r, err := s.submit(ctx, s.sender, d, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Routed, and so in the subscriber's hands, but not fetchable.
	select {
	case <-notFound:
	case <-time.After(30 * time.Second):
		t.Fatal("the subscriber never fetched the submission")
	}
	if got := delivered(t, sinkDir); len(got) != 0 {
		t.Fatalf("delivered %v before the submit-submission event was signed", got)
	}
	s.startSigner(t)
	waitAccepted(t, s.sender, r, 10*time.Second)
}

// TestHTTPListHangs: a pickup list the API does not answer (a server
// that hangs rather than refuses) is given up after a while and asked
// again at the next poll, instead of holding the poller until the HTTP
// client's own timeout.
func TestHTTPListHangs(t *testing.T) {
	// Restored after the subscriber stopped: cleanups run last first.
	t.Cleanup(subscriber.SetListFor(2 * time.Second))
	s := newSystem(t)
	d := s.addDestinations(t, kreisARS(t, 1)...)[0]
	rid, rsecret := s.receiverOf(t, d)
	s.start(t)
	dir := t.TempDir()
	sinkDir := filepath.Join(dir, "sink")
	file := s.configYAML(t, dir, "http", "", rid, rsecret, "sink:\n  kind: directory\n  directory: "+sinkDir+"\n", keyPair(t, encKey), nil, d)
	conf, sk := loadConfig(t, file)
	hang := &hangFirst{path: "/v1/submissions", hung: make(chan struct{})}
	api, err := client.New(s.baseURL, client.Credentials(rid, rsecret), client.HTTPClient(&http.Client{Transport: hang}))
	if err != nil {
		t.Fatal(err)
	}
	reg := metrics.NewRegistry()
	handled, err := metrics.NewHandled(reg, subscriber.Outcomes...)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := subscriber.New(subscriber.Config{Conf: conf, Sink: sk, API: api, Handled: handled, Logger: testLog()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r, err := s.submit(ctx, s.sender, d, 1)
	if err != nil {
		t.Fatal(err)
	}
	flowtest.Start(t, sub)
	select {
	case <-hang.hung:
	case <-time.After(30 * time.Second):
		t.Fatal("the subscriber never listed the submissions")
	}
	waitAccepted(t, s.sender, r, time.Minute)
	lists := func(outcome string) float64 {
		return flowtest.Counter(t, reg, "amtsbote_subscriber_pickup_lists_total", map[string]string{"outcome": outcome})
	}
	if failed, ok := lists("failed"), lists("ok"); failed != 1 || ok < 1 {
		t.Errorf("pickup lists counted %v failed and %v ok, want the hung one failed and the next ok", failed, ok)
	}
}

// TestHTTPSinkBackReleasesWaiting: in mode http, submissions the sink
// failed wait with growing backoff; once the sink takes one again, the
// others are handed in at the next poll instead of after their waits.
func TestHTTPSinkBackReleasesWaiting(t *testing.T) {
	s := newSystem(t)
	d := s.addDestinations(t, kreisARS(t, 1)...)[0]
	rid, rsecret := s.receiverOf(t, d)
	s.start(t)

	var down atomic.Bool
	down.Store(true)
	var failed atomic.Int32
	conf, sk := s.httpSink(t, rid, rsecret, d, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if down.Load() {
			failed.Add(1)
			http.Error(w, "Wartung", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	api, err := client.New(s.baseURL, client.Credentials(rid, rsecret))
	if err != nil {
		t.Fatal(err)
	}
	// A failed submission would wait a minute.
	var logs flowtest.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	sub, err := subscriber.New(subscriber.Config{Conf: conf, Sink: sk, API: api, BackoffBase: time.Minute, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	flowtest.Start(t, sub)

	ctx := context.Background()
	waiting := s.submitRange(t, d, 0, 3)
	eventually(t, 30*time.Second, func() error {
		if n := failed.Load(); n < 3 {
			return fmt.Errorf("%d deliveries failed, want 3", n)
		}
		return nil
	})
	// An HTTP sink has no check of its own: its outage is its readiness.
	eventually(t, 10*time.Second, func() error {
		if err := sub.SinkReady(ctx); err == nil || !strings.Contains(err.Error(), "503") {
			return fmt.Errorf("sink readiness during the outage: %v, want the failure", err)
		}
		return nil
	})
	down.Store(false)
	r, err := s.submit(ctx, s.sender, d, 3)
	if err != nil {
		t.Fatal(err)
	}
	waitAccepted(t, s.sender, r, 20*time.Second)
	for _, w := range waiting {
		waitAccepted(t, s.sender, w, 20*time.Second)
	}
	if err := sub.SinkReady(ctx); err != nil {
		t.Errorf("sink readiness after the outage: %v", err)
	}

	// The outage is logged when it begins and when it ends, not once per
	// submission.
	lines := map[string]int{}
	var ended struct{ Failures int }
	for line := range strings.Lines(logs.String()) {
		var l struct{ Level, Msg string }
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		lines[l.Level+" "+l.Msg]++
		if l.Msg == "subscriber: the sink works again" {
			_ = json.Unmarshal([]byte(line), &ended)
		}
	}
	if lines["WARN subscriber: the sink fails; submissions wait for it"] != 1 ||
		lines["INFO subscriber: the sink works again"] != 1 || ended.Failures != 3 ||
		lines["WARN subscriber: not done; trying again"] != 0 {
		t.Errorf("logged %v (the outage ended after %d failures), want the outage's beginning and end once each, "+
			"after 3 failures, and no line per submission", lines, ended.Failures)
	}
}

// hangFirst is a transport whose first request for exactly path hangs
// until the request is cancelled.
type hangFirst struct {
	path string
	hung chan struct{}
	once sync.Once
}

func (h *hangFirst) RoundTrip(req *http.Request) (*http.Response, error) {
	first := false
	if req.URL.Path == h.path {
		h.once.Do(func() { first = true })
	}
	if first {
		<-req.Context().Done()
		close(h.hung)
		return nil, req.Context().Err()
	}
	return http.DefaultTransport.RoundTrip(req)
}

// onStatus is a transport that closes seen when an answer to a request
// under path first has status.
type onStatus struct {
	status int
	path   string
	seen   chan struct{}
	once   sync.Once
}

func (o *onStatus) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil && resp.StatusCode == o.status && strings.HasPrefix(req.URL.Path, o.path) {
		o.once.Do(func() { close(o.seen) })
	}
	return resp, err
}

// TestNATSSinkFailures: a Fachverfahren down for a while gets the
// submission once it is back (the message is nakked and redelivered); one
// that refuses a submission for good sends it to the dead letters with
// the reason, and its case stays undecided.
func TestNATSSinkFailures(t *testing.T) {
	s := newSystem(t)
	dests := s.addDestinations(t, kreisARS(t, 2)...)
	flaky, refusing := dests[0], dests[1]
	rid, rsecret := s.receiverOf(t, dests...)
	s.start(t)

	var mu sync.Mutex
	posts := map[string]int{}
	stored := map[string]bool{}
	fv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var doc struct {
			DestinationID string `json:"destinationId"`
		}
		_ = json.NewDecoder(r.Body).Decode(&doc)
		key := r.Header.Get("Idempotency-Key")
		mu.Lock()
		defer mu.Unlock()
		posts[key]++
		switch {
		case doc.DestinationID == refusing.ID:
			http.Error(w, "Antragsart unbekannt", http.StatusUnprocessableEntity)
		case posts[key] <= 3:
			http.Error(w, "Wartung", http.StatusServiceUnavailable)
		default:
			stored[key] = true
			w.WriteHeader(http.StatusCreated)
		}
	}))
	t.Cleanup(fv.Close)

	dir := t.TempDir()
	// Amtsbote's own user may create the durable: the subscriber does.
	pickup := s.natsPickup("sub-failures")
	sinkYAML := fmt.Sprintf("sink:\n  kind: http\n  http:\n    url: %s\n    maxAttempts: 1\n", fv.URL)
	file := s.configYAML(t, dir, "nats", pickup, rid, rsecret, sinkYAML, keyPair(t, encKey), nil, dests...)
	startSubscriber(t, s, file)

	ctx := context.Background()
	rf, err := s.submit(ctx, s.sender, flaky, 1)
	if err != nil {
		t.Fatal(err)
	}
	rr, err := s.submit(ctx, s.sender, refusing, 2)
	if err != nil {
		t.Fatal(err)
	}
	waitAccepted(t, s.sender, rf, time.Minute)
	var dead []*jetstream.RawStreamMsg
	eventually(t, 30*time.Second, func() error {
		dead = flowtest.Messages(t, s.bus, bus.StreamDead, bus.PrefixDead)
		if len(dead) == 0 {
			return errors.New("no dead letter")
		}
		return nil
	})
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	d := dead[0]
	if d.Subject != bus.PrefixDead+"."+subscriber.ReasonSinkRefused || d.Header.Get(bus.HeaderDeadReason) != subscriber.ReasonSinkRefused {
		t.Errorf("dead letter on %s with reason %q", d.Subject, d.Header.Get(bus.HeaderDeadReason))
	}
	if !strings.Contains(d.Header.Get(bus.HeaderDeadError), "422") || !strings.HasSuffix(d.Header.Get(bus.HeaderOriginalSubject), refusing.ID) {
		t.Errorf("dead letter error %q, original subject %q", d.Header.Get(bus.HeaderDeadError), d.Header.Get(bus.HeaderOriginalSubject))
	}
	st, err := s.sender.Sender().StatusOf(ctx, rr)
	if err != nil {
		t.Fatal(err)
	}
	if st.Decision != "" {
		t.Errorf("refused submission decided %s", st.Decision)
	}
	mu.Lock()
	defer mu.Unlock()
	if !stored[rf.SubmissionID] || stored[rr.SubmissionID] || posts[rr.SubmissionID] != 1 {
		t.Errorf("stored %v after posts %v", stored, posts)
	}
}

// TestHTTPModeBacksOff: in mode http a submission whose delivery failed
// for now is not handled again at every poll but after a wait that grows
// with each failure, as mode nats naks with a delay.
func TestHTTPModeBacksOff(t *testing.T) {
	s := newSystem(t)
	dests := s.addDestinations(t, kreisARS(t, 1)...)
	rid, rsecret := s.receiverOf(t, dests...)
	s.start(t)

	var (
		mu    sync.Mutex
		posts []time.Time
	)
	fv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		defer mu.Unlock()
		posts = append(posts, time.Now())
		if len(posts) <= 2 {
			http.Error(w, "Wartung", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(fv.Close)

	dir := t.TempDir()
	sinkYAML := fmt.Sprintf("sink:\n  kind: http\n  http:\n    url: %s\n    maxAttempts: 1\n", fv.URL)
	file := s.configYAML(t, dir, "http", "", rid, rsecret, sinkYAML, keyPair(t, encKey), nil, dests...)
	conf, sk := loadConfig(t, file)
	// Polled every second; waits of 2 s, then 4 s.
	sub, err := subscriber.New(subscriber.Config{Conf: conf, Sink: sk, API: s.api(t, rid, rsecret), BackoffBase: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	flowtest.Start(t, sub)

	r, err := s.submit(context.Background(), s.sender, dests[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	waitAccepted(t, s.sender, r, time.Minute)
	mu.Lock()
	defer mu.Unlock()
	if len(posts) != 3 {
		t.Fatalf("%d posts, want 3: two failures and the delivery", len(posts))
	}
	for i, least := range []time.Duration{2 * time.Second, 4 * time.Second} {
		if gap := posts[i+1].Sub(posts[i]); gap < least {
			t.Errorf("post %d came %s after the failure before it, want at least %s", i+2, gap, least)
		}
	}
}

// TestHTTPModeStopFinishesWhatIsInHand: a subscriber stopped while a
// delivery is in hand lets it finish and accepts it before Run returns.
func TestHTTPModeStopFinishesWhatIsInHand(t *testing.T) {
	s := newSystem(t)
	dests := s.addDestinations(t, kreisARS(t, 1)...)
	rid, rsecret := s.receiverOf(t, dests...)
	s.start(t)

	arrived := make(chan struct{}, 1)
	fv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		arrived <- struct{}{}
		time.Sleep(2 * time.Second)
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(fv.Close)
	sinkYAML := fmt.Sprintf("sink:\n  kind: http\n  http:\n    url: %s\n    maxAttempts: 1\n", fv.URL)
	file := s.configYAML(t, t.TempDir(), "http", "", rid, rsecret, sinkYAML, keyPair(t, encKey), nil, dests...)
	conf, sk := loadConfig(t, file)
	sub, err := subscriber.New(subscriber.Config{Conf: conf, Sink: sk, API: s.api(t, rid, rsecret)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()

	r, err := s.submit(context.Background(), s.sender, dests[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-arrived:
	case <-time.After(time.Minute):
		t.Fatal("the delivery never reached the Fachverfahren")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not return")
	}
	st, err := s.sender.Sender().StatusOf(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if st.Decision != client.StateAccepted {
		t.Errorf("decision %q after the stop, want the accept of the delivery in hand", st.Decision)
	}
}
