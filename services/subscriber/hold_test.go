package subscriber_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/client"
	"github.com/amtsbote/amtsbote/pkg/metrics"
	"github.com/amtsbote/amtsbote/services/subscriber"
	"github.com/amtsbote/amtsbote/services/subscriber/sink"
)

// countFetches counts the submissions (GET /v1/submissions/{id}) handed
// out through it; a 404 of one not listed yet does not count.
type countFetches struct{ n atomic.Int32 }

func (c *countFetches) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	rest, ok := strings.CutPrefix(req.URL.Path, "/v1/submissions/")
	if err == nil && resp.StatusCode == http.StatusOK && req.Method == http.MethodGet && ok && !strings.Contains(rest, "/") {
		c.n.Add(1)
	}
	return resp, err
}

// countingAPI is the Submission API as receiver rid, counting the
// submissions it hands out.
func (s *system) countingAPI(t *testing.T, rid, rsecret string) (*client.Client, *countFetches) {
	t.Helper()
	fetches := &countFetches{}
	api, err := client.New(s.baseURL, client.Credentials(rid, rsecret), client.HTTPClient(&http.Client{Transport: fetches}))
	if err != nil {
		t.Fatal(err)
	}
	return api, fetches
}

// waitLogged waits until logs hold msg.
func waitLogged(t *testing.T, logs *flowtest.Buffer, msg string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() error {
		if !strings.Contains(logs.String(), msg) {
			return fmt.Errorf("%q not logged", msg)
		}
		return nil
	})
}

// failure is a line of logs telling of a submission the sink failed.
type failure struct {
	Attempt int
	RetryIn *time.Duration `json:"retry_in"`
}

// failures reads the lines of logs that hold msg, each with its attempt.
func failures(t *testing.T, logs *flowtest.Buffer, msg string) []failure {
	t.Helper()
	var out []failure
	for line := range strings.Lines(logs.String()) {
		if !strings.Contains(line, msg) {
			continue
		}
		var f failure
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatal(err)
		}
		if f.Attempt < 1 {
			t.Fatalf("a failure logged without its attempt: %s", line)
		}
		out = append(out, f)
	}
	return out
}

// TestNATSHoldsForFailingSink: in mode nats, messages that find the sink
// failing wait in hand instead of coming back with the consumer's backoff,
// so that an outage longer than the deliveries' backoff leaves no dead
// letters and nothing is fetched again meanwhile; once the sink's check
// passes, they are delivered.
func TestNATSHoldsForFailingSink(t *testing.T) {
	s := newSystem(t)
	d := s.addDestinations(t, kreisARS(t, 1)...)[0]
	rid, rsecret := s.receiverOf(t, d)
	s.start(t)
	conf, sk, sinkDir := s.natsDirectory(t, "sub-hold", rid, rsecret, d)
	api, fetches := s.countingAPI(t, rid, rsecret)
	// Ten deliveries after waits of 10 ms doubling take about 5 s.
	var logs flowtest.Buffer
	sub, err := subscriber.New(subscriber.Config{Conf: conf, Sink: sk, API: api, Bus: s.bus, BackoffBase: 10 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	flowtest.Start(t, sub)

	if err := os.RemoveAll(sinkDir); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	receipts := s.submitRange(t, d, 0, 3)
	// Three failures in a row make an outage; the deliveries in hand
	// then finish failing.
	waitLogged(t, &logs, "the sink fails; submissions wait for it", 30*time.Second)
	time.Sleep(time.Second)
	before := fetches.n.Load()
	time.Sleep(8 * time.Second)
	dead, _, err := s.bus.DeadLetters(ctx, bus.DeadFilter{}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 0 || fetches.n.Load() != before {
		t.Fatalf("after 8 s of outage: %d dead letters and %d fetches more, want none", len(dead), fetches.n.Load()-before)
	}

	if got := s.sinkBack(t, sinkDir, receipts); len(got) != 3 {
		t.Errorf("%d submissions in the sink, want 3", len(got))
	}
}

// TestNATSLastDeliveryCountsFailed: a submission that fails on its last
// delivery is dead-lettered and counted failed, not retried.
func TestNATSLastDeliveryCountsFailed(t *testing.T) {
	s := newSystem(t)
	d := s.addDestinations(t, kreisARS(t, 1)...)[0]
	rid, rsecret := s.receiverOf(t, d)
	s.start(t)
	conf, sk, _ := s.natsDirectory(t, "sub-last", rid, rsecret, d)
	// A key rolled without the subscriber's file: retried, never rejected.
	conf.Destinations[0].EncryptionKeys[0] = withKID(conf.Destinations[0].EncryptionKeys[0], "enc-old")
	reg := metrics.NewRegistry()
	handled, err := metrics.NewHandled(reg, subscriber.Outcomes...)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := subscriber.New(subscriber.Config{Conf: conf, Sink: sk, API: s.api(t, rid, rsecret), Bus: s.bus,
		BackoffBase: 10 * time.Millisecond, Handled: handled, Logger: testLog()})
	if err != nil {
		t.Fatal(err)
	}
	flowtest.Start(t, sub)
	if _, err := s.submit(context.Background(), s.sender, d, 0); err != nil {
		t.Fatal(err)
	}
	count := func(outcome string) float64 {
		return flowtest.Counter(t, reg, "amtsbote_subscriber_submissions_total", map[string]string{"outcome": outcome})
	}
	eventually(t, time.Minute, func() error {
		if n := count("failed"); n != 1 {
			return fmt.Errorf("%v failed, %v retried", n, count("retry"))
		}
		return nil
	})
	if n := count("retry"); n != subscriber.DefaultMaxDeliver-1 {
		t.Errorf("%v retries counted, want %d: every delivery but the last", n, subscriber.DefaultMaxDeliver-1)
	}
}

// TestHTTPHoldsForFailingSink: in mode http, submissions listed while the
// sink fails wait on the pickup list unfetched; once the sink's check
// passes they are handed in at once, and the one the sink failed with
// them, instead of after its backoff.
func TestHTTPHoldsForFailingSink(t *testing.T) {
	s, dests, rid, rsecret, file := oneDestination(t)
	d := dests[0]
	conf, sk := loadConfig(t, file)
	sinkDir := conf.Sink.Directory
	api, fetches := s.countingAPI(t, rid, rsecret)
	// The submission the sink failed would be handed in again after a
	// minute; the others after a second.
	var logs flowtest.Buffer
	sub, err := subscriber.New(subscriber.Config{Conf: conf, Sink: sk, API: api, BackoffBase: time.Minute,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	flowtest.Start(t, sub)

	if err := os.RemoveAll(sinkDir); err != nil {
		t.Fatal(err)
	}
	// Three failures in a row, or the sink's check, make an outage; the
	// deliveries in hand then finish failing.
	receipts := s.submitRange(t, d, 0, 3)
	waitLogged(t, &logs, "the sink fails; submissions wait for it", 30*time.Second)
	time.Sleep(time.Second)
	before := fetches.n.Load()
	for _, r := range s.submitRange(t, d, 3, 6) {
		waitListed(t, api, d.ID, r.SubmissionID)
		receipts = append(receipts, r)
	}
	// Polls once a second.
	time.Sleep(4 * time.Second)
	if n := fetches.n.Load() - before; n != 0 {
		t.Fatalf("%d submissions fetched while the sink failed, want none", n)
	}

	if got := s.sinkBack(t, sinkDir, receipts); len(got) != 6 {
		t.Errorf("%d submissions in the sink, want 6", len(got))
	}
	if n := fetches.n.Load(); n != before+6 {
		t.Errorf("%d fetches, want %d: the %d that failed twice, the others once", n, before+6, before)
	}
}

// TestHTTPCheckFailingHoldsAtOnce: a sink that fails its readiness check,
// while running or already at start, holds the submissions before any
// delivery failed, and the check passing again lets them go.
func TestHTTPCheckFailingHoldsAtOnce(t *testing.T) {
	t.Run("running", func(t *testing.T) { testCheckFailingHolds(t, false) })
	t.Run("at start", func(t *testing.T) { testCheckFailingHolds(t, true) })
}

func testCheckFailingHolds(t *testing.T, atStart bool) {
	s, dests, rid, rsecret, file := oneDestination(t)
	d := dests[0]
	conf, sk := loadConfig(t, file)
	sinkDir := conf.Sink.Directory
	api, fetches := s.countingAPI(t, rid, rsecret)
	var logs flowtest.Buffer
	sub, err := subscriber.New(subscriber.Config{Conf: conf, Sink: sk, API: api, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	var receipts []client.Receipt
	if atStart {
		// Listed before the subscriber starts, with the sink's folder gone.
		for _, r := range s.submitRange(t, d, 0, 3) {
			waitListed(t, api, d.ID, r.SubmissionID)
			receipts = append(receipts, r)
		}
		if err := os.RemoveAll(sinkDir); err != nil {
			t.Fatal(err)
		}
	}
	flowtest.Start(t, sub)

	if !atStart {
		if err := os.RemoveAll(sinkDir); err != nil {
			t.Fatal(err)
		}
	}
	waitLogged(t, &logs, "the sink fails; submissions wait for it", 30*time.Second)
	if !atStart {
		for _, r := range s.submitRange(t, d, 0, 3) {
			waitListed(t, api, d.ID, r.SubmissionID)
			receipts = append(receipts, r)
		}
	}
	// Polls once a second.
	time.Sleep(3 * time.Second)
	if n := fetches.n.Load(); n != 0 {
		t.Fatalf("%d submissions fetched while the sink failed its check, want none", n)
	}
	if got := s.sinkBack(t, sinkDir, receipts); len(got) != 3 {
		t.Errorf("%d submissions in the sink, want 3", len(got))
	}
	if n := fetches.n.Load(); n != 3 {
		t.Errorf("%d fetches, want 3", n)
	}
	if !strings.Contains(logs.String(), "the sink works again") {
		t.Errorf("the outage's end is not logged:\n%s", logs.String())
	}
}

// TestOneFailingSubmissionHoldsNoOneBack: a submission the sink keeps
// failing, among others it takes, is no outage: the others go on at once.
func TestOneFailingSubmissionHoldsNoOneBack(t *testing.T) {
	s, dests, rid, rsecret, _ := oneDestination(t)
	d := dests[0]
	var failed atomic.Int32
	conf, sk := s.httpSink(t, rid, rsecret, d, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		// The Fachverfahren cannot take the first submission's attachment.
		if strings.Contains(string(body), `"antrag-0.pdf"`) {
			failed.Add(1)
			http.Error(w, "Interner Fehler", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	var logs flowtest.Buffer
	// The failing one is tried again after 10 ms, 20 ms, …
	sub, err := subscriber.New(subscriber.Config{Conf: conf, Sink: sk, API: s.api(t, rid, rsecret), BackoffBase: 10 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	flowtest.Start(t, sub)

	s.submitRange(t, d, 0, 1)
	eventually(t, 30*time.Second, func() error {
		if n := failed.Load(); n < 1 {
			return errors.New("the failing submission was not handed in")
		}
		return nil
	})
	for _, r := range s.submitRange(t, d, 1, 5) {
		waitAccepted(t, s.sender, r, 30*time.Second)
	}
	if strings.Contains(logs.String(), "the sink fails; submissions wait for it") {
		t.Errorf("one failing submission made an outage:\n%s", logs.String())
	}
	// Each failure is logged with its attempt and the wait before the next.
	var attempts []int
	for _, f := range failures(t, &logs, "the sink failed a submission; it is tried again") {
		if want := 10 * time.Millisecond << (f.Attempt - 1); f.RetryIn == nil || *f.RetryIn != want {
			t.Errorf("attempt %d: retry_in %v, want %v", f.Attempt, f.RetryIn, want)
		}
		attempts = append(attempts, f.Attempt)
	}
	if len(attempts) < 2 || attempts[0] != 1 || attempts[1] != 2 {
		t.Errorf("its failures are logged as attempts %v, want 1, 2, …:\n%s", attempts, logs.String())
	}
}

// TestOneProbeAtATime: while an HTTP sink fails, one submission at a time
// tries it, however long its delivery takes, rather than one more every
// few seconds.
func TestOneProbeAtATime(t *testing.T) {
	s, dests, rid, rsecret, _ := oneDestination(t)
	d := dests[0]
	var inFlight, most atomic.Int32
	conf, sk := s.httpSink(t, rid, rsecret, d, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		// Longer than the probes' interval.
		time.Sleep(7 * time.Second)
		http.Error(w, "Wartung", http.StatusServiceUnavailable)
	})
	var logs flowtest.Buffer
	sub, err := subscriber.New(subscriber.Config{Conf: conf, Sink: sk, API: s.api(t, rid, rsecret), BackoffBase: time.Minute,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	flowtest.Start(t, sub)

	s.submitRange(t, d, 0, 3)
	waitLogged(t, &logs, "the sink fails; submissions wait for it", time.Minute)
	// These wait for the sink, each a probe when its turn comes.
	s.submitRange(t, d, 3, 6)
	// The deliveries under way when the outage began finish failing.
	eventually(t, 30*time.Second, func() error {
		if n := inFlight.Load(); n != 0 {
			return fmt.Errorf("%d deliveries under way", n)
		}
		return nil
	})
	most.Store(0)
	time.Sleep(20 * time.Second)
	if n := most.Load(); n != 1 {
		t.Errorf("%d submissions tried the failing sink at once, want 1", n)
	}
}

// failLists fails every pickup list request while down is set.
type failLists struct{ down atomic.Bool }

func (f *failLists) RoundTrip(req *http.Request) (*http.Response, error) {
	if f.down.Load() && req.Method == http.MethodGet && req.URL.Path == "/v1/submissions" {
		return nil, errors.New("connection refused")
	}
	return http.DefaultTransport.RoundTrip(req)
}

// TestHTTPListFailuresReportedOnce: pickup lists that fail poll after poll
// (the Submission API down) are reported when the failure begins and when
// the lists answer again, not in a line per destination and poll.
func TestHTTPListFailuresReportedOnce(t *testing.T) {
	s := newSystem(t)
	dests := s.addDestinations(t, kreisARS(t, 2)...)
	rid, rsecret := s.receiverOf(t, dests...)
	s.start(t)
	dir := t.TempDir()
	file := s.configYAML(t, dir, "http", "", rid, rsecret, "sink:\n  kind: directory\n  directory: "+filepath.Join(dir, "sink")+"\n",
		keyPair(t, encKey), nil, dests...)
	conf, sk := loadConfig(t, file)
	lists := &failLists{}
	lists.down.Store(true)
	api, err := client.New(s.baseURL, client.Credentials(rid, rsecret), client.Retries(0, 0), client.HTTPClient(&http.Client{Transport: lists}))
	if err != nil {
		t.Fatal(err)
	}
	var logs flowtest.Buffer
	sub, err := subscriber.New(subscriber.Config{Conf: conf, Sink: sk, API: api, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	flowtest.Start(t, sub)
	// Polls once a second: two destinations' lists fail four times each.
	time.Sleep(4 * time.Second)
	lists.down.Store(false)
	r := s.submitRange(t, dests[1], 0, 1)[0]
	waitAccepted(t, s.sender, r, 30*time.Second)

	out := logs.String()
	if n := strings.Count(out, "a pickup list fails"); n != 1 {
		t.Errorf("the failing lists reported in %d lines, want 1:\n%s", n, out)
	}
	var back struct{ Failures int }
	for line := range strings.Lines(out) {
		if strings.Contains(line, "the pickup lists answer again") {
			if err := json.Unmarshal([]byte(line), &back); err != nil {
				t.Fatal(err)
			}
		}
	}
	if back.Failures < 4 {
		t.Errorf("the lists' return says %d failures, want at least 4:\n%s", back.Failures, out)
	}
}

// failOne is a sink that fails every delivery of one submission for now.
type failOne struct {
	sink.Sink
	id string
}

func (f failOne) Deliver(ctx context.Context, d sink.Delivery) error {
	if d.SubmissionID == f.id {
		return errors.New("Fachverfahren: interner Fehler")
	}
	return f.Sink.Deliver(ctx, d)
}

// TestNATSFailingSubmissionLogsAttempts: in mode nats, each delivery of a
// submission the sink fails is logged with its attempt and the wait before
// the next, and the last one says so.
func TestNATSFailingSubmissionLogsAttempts(t *testing.T) {
	s := newSystem(t)
	d := s.addDestinations(t, kreisARS(t, 1)...)[0]
	rid, rsecret := s.receiverOf(t, d)
	s.start(t)
	conf, sk, _ := s.natsDirectory(t, "sub-attempts", rid, rsecret, d)
	r := s.submitRange(t, d, 0, 1)[0]
	var logs flowtest.Buffer
	sub, err := subscriber.New(subscriber.Config{Conf: conf, Sink: failOne{sk, r.SubmissionID}, API: s.api(t, rid, rsecret), Bus: s.bus,
		BackoffBase: 10 * time.Millisecond, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	flowtest.Start(t, sub)
	waitLogged(t, &logs, "the sink failed a submission's last delivery", time.Minute)
	var attempts []int
	for _, f := range failures(t, &logs, "the sink failed a submission") {
		switch want := 10 * time.Millisecond << (f.Attempt - 1); {
		case f.Attempt == subscriber.DefaultMaxDeliver:
			if f.RetryIn != nil {
				t.Errorf("the last delivery says retry_in %v", *f.RetryIn)
			}
		case f.RetryIn == nil || *f.RetryIn != want:
			t.Errorf("attempt %d: retry_in %v, want %v", f.Attempt, f.RetryIn, want)
		}
		attempts = append(attempts, f.Attempt)
	}
	if len(attempts) != subscriber.DefaultMaxDeliver || attempts[0] != 1 || attempts[len(attempts)-1] != subscriber.DefaultMaxDeliver {
		t.Errorf("failures logged as attempts %v, want 1 to %d", attempts, subscriber.DefaultMaxDeliver)
	}
}
