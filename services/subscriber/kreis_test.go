package subscriber_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/amtsbote/amtsbote/internal/cli"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/client"
	"github.com/amtsbote/amtsbote/pkg/set"
)

// childEnv makes the test binary run `amtsbote subscriber` instead of the
// tests, so that the Kreis test can kill a real subscriber process.
const childEnv = "AMTSBOTE_TEST_SUBSCRIBER_CHILD"

func TestMain(m *testing.M) {
	if args := os.Getenv(childEnv); args != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := cli.Run(ctx, strings.Split(args, "\n"), func(string) string { return "" }, os.Stdout, os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "amtsbote:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fachverfahren is a specialist procedure's HTTP intake: it stores each
// Idempotency-Key's submission once and answers 500 to every tenth first
// attempt.
type fachverfahren struct {
	mu     sync.Mutex
	firsts int
	tries  map[string]int
	stored map[string][]byte // the data by submission id
	copies map[string]int    // stores per submission id: must stay 1
}

func newFachverfahren() *fachverfahren {
	return &fachverfahren{tries: map[string]int{}, stored: map[string][]byte{}, copies: map[string]int{}}
}

func (f *fachverfahren) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Idempotency-Key")
	f.mu.Lock()
	f.tries[key]++
	fail := false
	if f.tries[key] == 1 {
		f.firsts++
		fail = f.firsts%10 == 0
	}
	f.mu.Unlock()
	body, err := io.ReadAll(r.Body)
	if err != nil || fail {
		http.Error(w, "Fachverfahren überlastet", http.StatusInternalServerError)
		return
	}
	var doc struct {
		SubmissionID string `json:"submissionId"`
		Data         string `json:"data"`
		Attachments  []struct {
			Content string `json:"content"`
		} `json:"attachments"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.SubmissionID != key || len(doc.Attachments) != 1 {
		http.Error(w, "not a submission", http.StatusBadRequest)
		return
	}
	if _, err := base64.StdEncoding.DecodeString(doc.Attachments[0].Content); err != nil {
		http.Error(w, "attachment", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.stored[key]; ok {
		w.WriteHeader(http.StatusOK) // a repeated key: stored already
		return
	}
	f.stored[key] = []byte(doc.Data)
	f.copies[key]++
	w.WriteHeader(http.StatusCreated)
}

// process is a subscriber running as a child process.
type process struct {
	cmd  *exec.Cmd
	done chan error
	log  *os.File
}

func startProcess(t *testing.T, logFile string, args ...string) *process {
	t.Helper()
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+strings.Join(args, "\n"))
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, done: make(chan error, 1), log: f}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() { p.stop(t, syscall.SIGTERM) })
	return p
}

// stop sends sig and waits for the process to end.
func (p *process) stop(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	if p.cmd == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(sig)
	var err error
	select {
	case err = <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		err = <-p.done
		t.Errorf("subscriber did not stop within 30s of %s", sig)
	}
	p.cmd = nil
	p.log.Close()
	return err
}

// accepts records when each accept-submission reaches EVENTS.
type accepts struct {
	mu sync.Mutex
	at map[string]time.Time
}

func watchAccepts(t *testing.T, nc *nats.Conn) *accepts {
	t.Helper()
	a := &accepts{at: map[string]time.Time{}}
	sub, err := nc.Subscribe(bus.PrefixEvents+".>", func(m *nats.Msg) {
		parts := strings.Split(strings.TrimSpace(string(m.Data)), ".")
		if len(parts) != 3 {
			return
		}
		payload, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil || !bytes.Contains(payload, []byte(set.AcceptSubmission)) {
			return
		}
		now := time.Now()
		a.mu.Lock()
		if _, ok := a.at[m.Header.Get("ce-subject")]; !ok {
			a.at[m.Header.Get("ce-subject")] = now
		}
		a.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return a
}

func (a *accepts) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.at)
}

// TestKreis: submissions to the Gemeinden of one Kreis reach one
// subscriber process filtering the Kreis over NATS with a consume-only
// user. The subscriber is killed with SIGKILL half-way and started again,
// and the Fachverfahren answers 500 to every tenth first attempt; each
// submission is stored exactly once and every case ends accepted, which
// the sender verifies. KREIS_SUBMISSIONS sets the number (default 200,
// 40 with -short); `make kreis` runs 1,000 and prints the figures.
func TestKreis(t *testing.T) {
	n, destinations := 200, 50
	if testing.Short() {
		n, destinations = 40, 10
	}
	if v := os.Getenv("KREIS_SUBMISSIONS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("KREIS_SUBMISSIONS=%q", v)
		}
	}
	const durable, kreis = "subscriber-08315", "08315"
	pw := "pw-" + durable
	s := newSystem(t, bus.User{Name: durable, Password: pw, Permissions: bus.SubscriberPermissions(durable)})
	dests := s.addDestinations(t, kreisARS(t, destinations)...)
	filter, err := bus.InboxFilter(kreis)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// The operator's step: the durable with the Kreis filter, before the
	// subscriber, whose user may not create it, binds to it.
	if err := s.bus.EnsureConsumer(ctx, bus.ConsumerConfig{
		Stream: bus.StreamInbox, Durable: durable, FilterSubjects: []string{filter},
		AckWait: 20 * time.Second, MaxDeliver: 20,
	}); err != nil {
		t.Fatal(err)
	}
	rid, rsecret := s.receiverOf(t, dests...)
	s.start(t)
	fv := newFachverfahren()
	fvSrv := httptest.NewServer(fv)
	t.Cleanup(fvSrv.Close)

	dir := t.TempDir()
	pickup := fmt.Sprintf("nats:\n  url: %s\n  user: %s\n  password: %s\n  durable: %s\n  filters: [%q]\n", s.natsURL, durable, pw, durable, filter)
	sinkYAML := fmt.Sprintf("sink:\n  kind: http\n  http:\n    url: %s/eingang\n    timeout: 20s\n    maxAttempts: 5\n", fvSrv.URL)
	file := s.configYAML(t, dir, "nats", pickup, rid, rsecret, sinkYAML, keyPair(t, encKey), nil, dests...)
	logFile := filepath.Join(dir, "subscriber.log")
	t.Cleanup(func() {
		if t.Failed() {
			raw, _ := os.ReadFile(logFile)
			t.Logf("subscriber log:\n%s", tail(string(raw), 40))
		}
	})
	acc := watchAccepts(t, s.bus.Conn())
	proc := startProcess(t, logFile, "subscriber", "--config", file, "--log-level", "warn")

	// Submit from 8 senders at once, recording when each was handed in.
	var (
		mu       sync.Mutex
		receipts = make([]client.Receipt, n)
		sentAt   = map[string]time.Time{}
		wg       sync.WaitGroup
		errs     = make(chan error, n)
		next     = make(chan int)
	)
	start := time.Now()
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				r, err := s.submit(ctx, s.sender, dests[i%len(dests)], i)
				if err != nil {
					errs <- fmt.Errorf("submit %d: %w", i, err)
					continue
				}
				mu.Lock()
				receipts[i], sentAt[r.SubmissionID] = r, time.Now()
				mu.Unlock()
			}
		}()
	}
	killed := false
	for i := range n {
		next <- i
		// Kill the subscriber for good measure while it is busy.
		if !killed && acc.count() >= n/4 {
			_ = proc.stop(t, syscall.SIGKILL)
			killed = true
			proc = startProcess(t, logFile, "subscriber", "--config", file, "--log-level", "warn")
		}
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if !killed {
		eventually(t, 5*time.Minute, func() error {
			if c := acc.count(); c < n/4 {
				return fmt.Errorf("%d of %d accepted", c, n)
			}
			return nil
		})
		_ = proc.stop(t, syscall.SIGKILL)
		proc = startProcess(t, logFile, "subscriber", "--config", file, "--log-level", "warn")
	}
	// Generous for a shared machine: a second per submission beyond ten minutes.
	eventually(t, 10*time.Minute+time.Duration(n)*time.Second, func() error {
		if c := acc.count(); c < n {
			return fmt.Errorf("%d of %d accepted", c, n)
		}
		return nil
	})
	elapsed := time.Since(start)

	// The sender verifies each accept: signed by the destination, with
	// the tags it sent.
	for _, r := range receipts {
		st, err := s.sender.Sender().StatusOf(ctx, r)
		if err != nil {
			t.Fatalf("status of %s: %v", r.SubmissionID, err)
		}
		if st.Decision != client.StateAccepted {
			t.Fatalf("%s: decision %q, want accepted", r.SubmissionID, st.Decision)
		}
	}
	fv.mu.Lock()
	defer fv.mu.Unlock()
	if len(fv.stored) != n {
		t.Errorf("the Fachverfahren stored %d submissions, want %d", len(fv.stored), n)
	}
	for i, r := range receipts {
		if c := fv.copies[r.SubmissionID]; c != 1 {
			t.Errorf("%s stored %d times", r.SubmissionID, c)
		}
		if want := fmt.Sprintf(`{"antrag":%d,"gemeinde":%q}`, i, dests[i%len(dests)].ARS); string(fv.stored[r.SubmissionID]) != want {
			t.Errorf("%s: data %s, want %s", r.SubmissionID, fv.stored[r.SubmissionID], want)
		}
	}
	if fv.firsts/10 == 0 {
		t.Errorf("the Fachverfahren failed no first attempt")
	}
	acc.mu.Lock()
	var lat []time.Duration
	for id, at := range acc.at {
		if sent, ok := sentAt[id]; ok {
			lat = append(lat, at.Sub(sent))
		}
	}
	acc.mu.Unlock()
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	t.Logf("kreis %s: %d submissions to %d destinations in %s: %.1f submissions/s; submit to accepted p50 %s, p99 %s; %d first attempts failed with 500; subscriber killed once",
		kreis, n, len(dests), elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(),
		pct(0.50).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), fv.firsts/10)
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}
