package delivery_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
	"github.com/amtsbote/amtsbote/pkg/client"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/pkg/store/sqlite"
	"github.com/amtsbote/amtsbote/services/delivery"
)

const (
	service  = "urn:de:fim:leika:leistung:99050012104000"
	gemeinde = "083110000000"
	// window is the duplicates window of the test streams: a re-drive
	// comes after it.
	window = 300 * time.Millisecond
)

// secret is a callback secret; no log line or dead letter may show it.
var secret = strings.Repeat("s3cr3t-", 6)

// tag is an authentication tag: 16 bytes in base64url.
const tag = "AAECAwQFBgcICQoLDA0ODw"

// eventually polls f until it returns nil or timeout passes.
func eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// receiver is a callback endpoint: it verifies what arrives with the SDK's
// verifier and answers as its behaviour says.
type receiver struct {
	t   *testing.T
	srv *httptest.Server

	mu        sync.Mutex
	behave    func(r *http.Request, n int) int // answer to the n-th request, 0 for 200
	requests  int
	delivered map[string]int // submission id → verified 2xx answers
	bodies    []delivery.Body
	raw       []capture
	redirects int
}

// capture is one verified callback as it arrived.
type capture struct {
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{t: t, delivered: map[string]int{}}
	verified, err := client.CallbackHandler(secret, func(w http.ResponseWriter, r *http.Request, body []byte) {
		rc.mu.Lock()
		rc.requests++
		n, behave := rc.requests, rc.behave
		rc.mu.Unlock()
		status := 0
		if behave != nil {
			status = behave(r, n)
		}
		if status < 0 {
			// No answer at all: an answer written once the caller gave up
			// could still reach it.
			panic(http.ErrAbortHandler)
		}
		if status == http.StatusTemporaryRedirect {
			http.Redirect(w, r, "/elsewhere", status)
			return
		}
		if status != 0 && status != http.StatusOK {
			w.WriteHeader(status)
			return
		}
		var b delivery.Body
		if err := json.Unmarshal(body, &b); err != nil {
			t.Errorf("callback body %s: %v", body, err)
		}
		rc.mu.Lock()
		rc.bodies = append(rc.bodies, b)
		rc.raw = append(rc.raw, capture{r.Header.Clone(), body})
		for _, s := range b.Submissions {
			rc.delivered[s.SubmissionID]++
		}
		rc.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/callback", verified)
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) {
		rc.mu.Lock()
		rc.redirects++
		rc.mu.Unlock()
	})
	rc.srv = httptest.NewTLSServer(mux)
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) url() string { return rc.srv.URL + "/callback" }

func (rc *receiver) setBehaviour(f func(r *http.Request, n int) int) {
	rc.mu.Lock()
	rc.behave = f
	rc.mu.Unlock()
}

func (rc *receiver) count(submissionID string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.delivered[submissionID]
}

// env is a running delivery role on a real JetStream and SQLite store.
type env struct {
	t     *testing.T
	bus   *bus.Bus
	store *sqlite.DB
	rc    *receiver
	logs  *flowtest.Buffer
	key   *rsa.PrivateKey
}

func newEnv(t *testing.T, cfg delivery.Config) *env {
	t.Helper()
	return newEnvTransport(t, cfg, true)
}

// newEnvTransport is newEnv; with testTransport false the role posts with
// its own default transport instead of one trusting the test receiver.
func newEnvTransport(t *testing.T, cfg delivery.Config, testTransport bool) *env {
	t.Helper()
	ctx := context.Background()
	node := bustest.Server(t)
	b := bustest.Connect(t, node.URL)
	if err := b.Ensure(ctx, bus.TopologyConfig{Duplicates: window}); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "amtsbote.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, bus: b, store: st, rc: newReceiver(t), logs: &flowtest.Buffer{}, key: key}
	cfg.Bus, cfg.Store, cfg.Source = b, st, "https://amtsbote.test"
	if testTransport {
		cfg.Transport = e.rc.srv.Client().Transport
	}
	cfg.Logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase, cfg.BackoffMax = 10*time.Millisecond, 40*time.Millisecond
	}
	d, err := delivery.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		if strings.Contains(e.logs.String(), secret) {
			t.Error("a log line shows the callback secret")
		}
	})
	return e
}

// destination creates an active destination whose callback goes to url
// ("" for none).
func (e *env) destination(url string) string {
	e.t.Helper()
	d := store.Destination{
		ID: uuid.NewString(), Status: store.StatusActive,
		Contact:          store.ContactInformation{LegalName: "Stadt Freiburg", Address: "Rathausplatz 2", Phone: "+49 761 2010", Email: "post@freiburg.example"},
		Services:         []store.Service{{Identifier: service, Regions: []string{"DE08311"}}},
		EncryptionKID:    "enc-key-0001",
		MetadataVersions: []string{"1.0.0"},
		HomeRegion:       "08311",
		CallbackURL:      url,
	}
	if url != "" {
		d.CallbackSecret = secret
	}
	if err := e.store.CreateDestination(context.Background(), "test", d, nil); err != nil {
		e.t.Fatal(err)
	}
	return d.ID
}

// route creates a submission to destinationID whose sender's callback
// goes to senderURL ("" for none) and publishes it to the inbox as the
// router does.
func (e *env) route(destinationID, senderURL string) sealed.Submission {
	e.t.Helper()
	return e.routeAs(destinationID, senderURL, nil)
}

// routeAs is route with the store's record as change leaves it (nil: as
// the ledger leaves it once the submission is handed out).
func (e *env) routeAs(destinationID, senderURL string, change func(*store.Submission)) sealed.Submission {
	e.t.Helper()
	ctx := context.Background()
	s := sealed.Submission{
		SubmissionID: uuid.NewString(), CaseID: uuid.NewString(), DestinationID: destinationID,
		Service: service, ARS: gemeinde, Attachments: []string{},
		Payload: &sealed.Payload{EncryptedMetadata: "eyJhbGciOiJSU0EtT0FFUC0yNTYifQ.a.b.c.d"},
	}
	rec := store.Submission{
		ID: s.SubmissionID, CaseID: s.CaseID, DestinationID: destinationID, SenderClientID: "sender",
		ServiceIdentifier: service, CallbackURL: senderURL,
	}
	rec.Status = sealed.Submitted
	if senderURL != "" {
		rec.CallbackSecret = secret
	}
	if change == nil {
		now := time.Now()
		rec.RoutedAt = &now
	} else {
		change(&rec)
	}
	if err := e.store.CreateSubmission(ctx, rec); err != nil {
		e.t.Fatal(err)
	}
	if rec.RoutedAt != nil {
		e.markRouted(s.SubmissionID)
	}
	data, err := s.Encode()
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.bus.PublishRouted(ctx, "https://amtsbote.test", "08311", s, data, time.Time{}, time.Now()); err != nil {
		e.t.Fatal(err)
	}
	return s
}

// arrived waits until the callbacks verified for submission id number want.
func (e *env) arrived(id string, want int, timeout time.Duration) {
	e.t.Helper()
	eventually(e.t, timeout, func() error {
		if n := e.rc.count(id); n != want {
			return fmt.Errorf("callback for %s arrived %d times, want %d", id, n, want)
		}
		return nil
	})
}

// markRouted records submission id as routed, as the ledger does.
func (e *env) markRouted(id string) {
	e.t.Helper()
	if _, err := e.store.UpdateSubmission(context.Background(), id, func(s *store.Submission) error {
		now := time.Now()
		s.RoutedAt = &now
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
}

// event publishes an event about s to EVENTS as the gateway does.
func (e *env) event(s sealed.Submission, uri string, payload any) set.Claims {
	e.t.Helper()
	c, err := set.New(uri, s.DestinationID, s.SubmissionID, s.CaseID, payload, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	token, err := set.Sign(c, e.key, "sig-key-0001")
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.bus.PublishEvent(context.Background(), "https://amtsbote.test", c, token); err != nil {
		e.t.Fatal(err)
	}
	return c
}

// deadLetters waits until DEAD holds n callback dead letters and returns them.
func (e *env) deadLetters(n int) []bus.DeadLetter {
	e.t.Helper()
	var list []bus.DeadLetter
	eventually(e.t, 20*time.Second, func() error {
		var err error
		list, _, err = e.bus.DeadLetters(context.Background(), bus.DeadFilter{Reason: delivery.ReasonCallbackFailed}, 0, 0)
		if err != nil {
			return err
		}
		if len(list) != n {
			return fmt.Errorf("%d dead letters, want %d", len(list), n)
		}
		return nil
	})
	return list
}

// settled waits until the callback consumer has nothing left to do.
func (e *env) settled() {
	e.t.Helper()
	ctx := context.Background()
	eventually(e.t, 20*time.Second, func() error {
		for _, c := range []struct{ stream, durable string }{
			{bus.StreamInbox, delivery.DurableSubmissions},
			{bus.StreamEvents, delivery.DurableEvents},
			{bus.StreamCallbacks, delivery.DurableCallbacks},
		} {
			cons, err := e.bus.JetStream().Consumer(ctx, c.stream, c.durable)
			if err != nil {
				return err
			}
			info, err := cons.Info(ctx)
			if err != nil {
				return err
			}
			if info.NumPending != 0 || info.NumAckPending != 0 {
				return fmt.Errorf("%s: %d pending, %d awaiting ack", c.durable, info.NumPending, info.NumAckPending)
			}
		}
		return nil
	})
}

func TestNewSubmissionsCallback(t *testing.T) {
	e := newEnv(t, delivery.Config{})
	dest := e.destination(e.rc.url())
	quiet := e.destination("")
	s := e.route(dest, "")
	unseen := e.route(quiet, "")

	e.arrived(s.SubmissionID, 1, 10*time.Second)
	e.settled()
	e.rc.mu.Lock()
	defer e.rc.mu.Unlock()
	if len(e.rc.bodies) != 1 {
		t.Fatalf("%d callbacks, want 1", len(e.rc.bodies))
	}
	b := e.rc.bodies[0]
	if b.Type != delivery.TypeNewSubmissions || len(b.Submissions) != 1 || fmt.Sprint(b.SubmissionIDs) != "["+s.SubmissionID+"]" {
		t.Errorf("body %+v", b)
	}
	if got := b.Submissions[0]; got.DestinationID != dest || got.CaseID != s.CaseID {
		t.Errorf("submission %+v, want destination %s and case %s", got, dest, s.CaseID)
	}
	if e.rc.delivered[unseen.SubmissionID] != 0 {
		t.Error("a destination without a callback URL got a callback")
	}
	if ct := e.rc.raw[0].header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	if ua := e.rc.raw[0].header.Get("User-Agent"); ua != "Amtsbote" {
		t.Errorf("user agent %q, want Amtsbote", ua)
	}
}

// TestNewSubmissionsCallbackWaitsForPickup checks that a new-submissions
// callback is posted only once the API hands the submission out: its
// INBOX message may come while the ledger has not yet recorded the
// submit-submission (a signing backlog, a ledger down), and a receiver
// fetching on the callback would be told it does not exist.
func TestNewSubmissionsCallbackWaitsForPickup(t *testing.T) {
	e := newEnv(t, delivery.Config{MaxAttempts: 1})
	dest := e.destination(e.rc.url())
	s := e.route(dest, "")
	e.arrived(s.SubmissionID, 1, 10*time.Second)
	e.settled()

	waiting := e.routeAs(dest, "", func(s *store.Submission) { s.Status = sealed.Incomplete })
	decided := e.routeAs(dest, "", func(s *store.Submission) {
		now := time.Now()
		s.Status, s.RoutedAt = sealed.Accepted, &now
	})
	time.Sleep(time.Second)
	if n := e.rc.count(waiting.SubmissionID); n != 0 {
		t.Fatalf("callback for a submission not handed out yet arrived %d times", n)
	}
	if _, err := e.store.UpdateSubmission(context.Background(), waiting.SubmissionID, func(s *store.Submission) error {
		s.Status = sealed.Submitted
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e.markRouted(waiting.SubmissionID)
	e.arrived(waiting.SubmissionID, 1, 10*time.Second)
	e.settled()
	if n := e.rc.count(decided.SubmissionID); n != 0 {
		t.Errorf("callback for a decided submission arrived %d times", n)
	}
}

func TestNewEventsCallback(t *testing.T) {
	e := newEnv(t, delivery.Config{})
	dest := e.destination("")
	s := e.route(dest, e.rc.url())
	e.event(s, set.SubmitSubmission, set.SubmitPayload{AuthenticationTags: set.AuthenticationTags{Metadata: tag}})
	e.event(s, set.AcceptSubmission, set.AcceptPayload{AuthenticationTags: set.AuthenticationTags{Metadata: tag}})

	e.arrived(s.SubmissionID, 1, 10*time.Second)
	e.settled()
	e.rc.mu.Lock()
	defer e.rc.mu.Unlock()
	if len(e.rc.bodies) != 1 {
		t.Fatalf("%d callbacks, want 1 (none for the sender's own submit)", len(e.rc.bodies))
	}
	b := e.rc.bodies[0]
	if b.Type != delivery.TypeNewEvents || b.Submissions[0].DestinationID != dest || b.Submissions[0].CaseID != s.CaseID {
		t.Errorf("body %+v", b)
	}
}

func TestReceiverDownForAWhile(t *testing.T) {
	e := newEnv(t, delivery.Config{MaxAttempts: 10})
	e.rc.setBehaviour(func(_ *http.Request, n int) int {
		if n <= 3 {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	s := e.route(e.destination(e.rc.url()), "")
	e.arrived(s.SubmissionID, 1, 20*time.Second)
	e.settled()
	if n := e.rc.count(s.SubmissionID); n != 1 {
		t.Errorf("callback arrived %d times, want 1", n)
	}
	if list, _, err := e.bus.DeadLetters(context.Background(), bus.DeadFilter{}, 0, 0); err != nil || len(list) != 0 {
		t.Errorf("dead letters %v (%v), want none", list, err)
	}
	// The failures were warned of, each once, so is the recovery.
	logs := e.logs.String()
	if n := strings.Count(logs, `level=WARN msg="delivery: callback failed"`); n != 3 {
		t.Errorf("%d failures warned of, want 3:\n%s", n, logs)
	}
	if strings.Contains(logs, `level=WARN msg="consume: handler failed; retrying"`) {
		t.Errorf("a failure warned of twice:\n%s", logs)
	}
	if !strings.Contains(logs, `level=INFO msg="delivery: callback delivered after failed attempts"`) {
		t.Errorf("the delivery after failures is not logged at info:\n%s", logs)
	}
}

// TestHangingReceiverDelaysNoOther: a receiver that never answers holds
// a post for the whole timeout; a dozen of its callbacks must not hold
// back another receiver's.
func TestHangingReceiverDelaysNoOther(t *testing.T) {
	e := newEnv(t, delivery.Config{Timeout: 30 * time.Second, MaxAttempts: 1})
	ended := make(chan struct{})
	e.rc.setBehaviour(func(r *http.Request, _ int) int {
		if r.URL.RawQuery == "hang" {
			select {
			case <-r.Context().Done():
			case <-ended:
			}
			return -1
		}
		return 0
	})
	t.Cleanup(func() { close(ended) })
	hanging := e.destination(e.rc.url() + "?hang")
	for range 12 {
		e.route(hanging, "")
	}
	time.Sleep(500 * time.Millisecond)
	s := e.route(e.destination(e.rc.url()), "")
	// With the hanging posts holding every slot, it would wait 30 s.
	e.arrived(s.SubmissionID, 1, 15*time.Second)
}

func TestDownForGoodThenRedrive(t *testing.T) {
	e := newEnv(t, delivery.Config{MaxAttempts: 3})
	e.rc.setBehaviour(func(*http.Request, int) int { return http.StatusInternalServerError })
	dest := e.destination(e.rc.url())
	var subs []sealed.Submission
	for range 4 {
		subs = append(subs, e.route(dest, e.rc.url()))
	}
	e.event(subs[0], set.RejectSubmission, set.RejectPayload{Problems: []set.Problem{{Type: "https://schema.fitko.de/fit-connect/events/problems/x", Instance: "submission"}}})
	dead := e.deadLetters(5)
	e.settled()

	ctx := context.Background()
	for _, d := range dead {
		if d.DestinationID != dest || d.Attempts != 3 || len(d.History) != 3 || !strings.HasPrefix(d.Subject, bus.PrefixCallback+".") {
			t.Errorf("dead letter %+v", d)
		}
		for _, a := range d.History {
			if !strings.Contains(a.Error, "answered 500") {
				t.Errorf("attempt %+v: want the receiver's 500", a)
			}
		}
		raw := fmt.Sprint(d.Header) + string(d.Data)
		if strings.Contains(raw, secret) {
			t.Errorf("dead letter %d carries the callback secret", d.Seq)
		}
	}
	list, total, err := e.bus.DeadLetters(ctx, bus.DeadFilter{DestinationID: dest}, 0, 2)
	if err != nil || total != 5 || len(list) != 2 {
		t.Errorf("by destination: %d of %d (%v), want 2 of 5", len(list), total, err)
	}

	e.rc.setBehaviour(nil)
	for _, d := range dead {
		eventually(t, 10*time.Second, func() error {
			_, err := e.bus.Redrive(ctx, d.Seq)
			return err
		})
		// A second re-drive finds nothing: the first removed it.
		if _, err := e.bus.Redrive(ctx, d.Seq); !errors.Is(err, bus.ErrNotFound) {
			t.Errorf("second re-drive of %d: %v, want ErrNotFound", d.Seq, err)
		}
	}
	eventually(t, 20*time.Second, func() error {
		for _, s := range subs[1:] {
			if n := e.rc.count(s.SubmissionID); n != 1 {
				return fmt.Errorf("%s: %d callbacks", s.SubmissionID, n)
			}
		}
		if n := e.rc.count(subs[0].SubmissionID); n != 2 {
			return fmt.Errorf("%s: %d callbacks, want new-submissions and new-events", subs[0].SubmissionID, n)
		}
		return nil
	})
	e.settled()
	for i, s := range subs {
		want := 1
		if i == 0 {
			want = 2
		}
		if n := e.rc.count(s.SubmissionID); n != want {
			t.Errorf("%s: %d callbacks after the re-drive, want %d", s.SubmissionID, n, want)
		}
	}
	if _, n, _ := e.bus.DeadLetters(ctx, bus.DeadFilter{}, 0, 0); n != 0 {
		t.Errorf("%d dead letters left", n)
	}
}

func TestHangingRedirectingAndSlowReceivers(t *testing.T) {
	tests := []struct {
		name      string
		behave    func(r *http.Request, n int) int
		wantDead  string // an error every attempt shows; "" for delivered
		redirects int
	}{
		{"hangs", func(r *http.Request, _ int) int {
			<-r.Context().Done()
			return -1
		}, "no answer within 500ms", 0},
		{"redirects", func(*http.Request, int) int { return http.StatusTemporaryRedirect }, "a redirect, which is not followed", 0},
		{"slow", func(*http.Request, int) int {
			time.Sleep(150 * time.Millisecond)
			return http.StatusOK
		}, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, delivery.Config{MaxAttempts: 2, Timeout: 500 * time.Millisecond})
			e.rc.setBehaviour(tt.behave)
			s := e.route(e.destination(e.rc.url()), "")
			if tt.wantDead == "" {
				e.arrived(s.SubmissionID, 1, 10*time.Second)
				e.settled()
				if n := e.rc.count(s.SubmissionID); n != 1 {
					t.Errorf("%d callbacks, want 1", n)
				}
				return
			}
			d := e.deadLetters(1)[0]
			e.settled()
			if len(d.History) != 2 {
				t.Fatalf("history %+v, want 2 attempts", d.History)
			}
			for _, a := range d.History {
				if !strings.Contains(a.Error, tt.wantDead) {
					t.Errorf("attempt %d: %q, want %q", a.Attempt, a.Error, tt.wantDead)
				}
			}
			e.rc.mu.Lock()
			defer e.rc.mu.Unlock()
			if e.rc.redirects != tt.redirects {
				t.Errorf("redirect target reached %d times", e.rc.redirects)
			}
			if e.rc.delivered[s.SubmissionID] != 0 {
				t.Error("a failed callback counted as delivered")
			}
		})
	}
}

func TestForgedAndReplayedCallbacksRefused(t *testing.T) {
	e := newEnv(t, delivery.Config{})
	s := e.route(e.destination(e.rc.url()), "")
	e.arrived(s.SubmissionID, 1, 10*time.Second)
	e.rc.mu.Lock()
	got := e.rc.raw[0]
	e.rc.mu.Unlock()
	now := time.Now()
	if err := client.VerifyCallback(secret, got.header, got.body, now); err != nil {
		t.Fatalf("the callback as sent does not verify: %v", err)
	}
	forged := bytes.Replace(got.body, []byte(s.SubmissionID), []byte(uuid.NewString()), 1)
	tests := []struct {
		name   string
		header http.Header
		body   []byte
		secret string
		at     time.Time
		want   error
	}{
		{"replayed after the window", got.header, got.body, secret, now.Add(client.CallbackMaxAge + time.Minute), client.ErrCallbackExpired},
		{"forged body", got.header, forged, secret, now, client.ErrCallbackSignature},
		{"another secret", got.header, got.body, strings.Repeat("x", 40), now, client.ErrCallbackSignature},
		{"timestamp moved", withHeader(got.header, client.CallbackTimestampHeader, fmt.Sprint(now.Unix()+60)), got.body, secret, now, client.ErrCallbackSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := client.VerifyCallback(tt.secret, tt.header, tt.body, tt.at); !errors.Is(err, tt.want) {
				t.Errorf("verify: %v, want %v", err, tt.want)
			}
		})
	}
	// The receiver's handler answers a forged callback 401 and never
	// hands it on.
	req, err := http.NewRequest(http.MethodPost, e.rc.url(), bytes.NewReader(forged))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = got.header.Clone()
	resp, err := e.rc.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("forged callback answered %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if n := e.rc.count(s.SubmissionID); n != 1 {
		t.Errorf("forged callback handed on: %d deliveries", n)
	}
}

func withHeader(h http.Header, k, v string) http.Header {
	h = h.Clone()
	h.Set(k, v)
	return h
}

// TestCallbackToAPrivateAddress proves that the default transport posts
// to public addresses only: a callback URL on loopback is dead-lettered
// at its first attempt, with its reason, and never posted.
func TestCallbackToAPrivateAddress(t *testing.T) {
	e := newEnvTransport(t, delivery.Config{}, false)
	dest := e.destination(e.rc.url())
	s := e.route(dest, "")
	var dead []bus.DeadLetter
	eventually(t, 20*time.Second, func() error {
		var err error
		dead, _, err = e.bus.DeadLetters(context.Background(), bus.DeadFilter{Reason: delivery.ReasonNotPublic}, 0, 0)
		if err != nil {
			return err
		}
		if len(dead) != 1 {
			return fmt.Errorf("%d dead letters, want 1", len(dead))
		}
		return nil
	})
	e.settled()
	if d := dead[0]; d.Attempts != 1 || len(d.History) != 1 || !strings.Contains(d.History[0].Error, "not a public address") {
		t.Errorf("dead letter %+v", d)
	}
	if n := e.rc.count(s.SubmissionID); n != 0 {
		t.Errorf("%d callbacks posted to loopback", n)
	}
}

// TestCallbackToAnAllowedNetwork proves that an allowed network is posted
// to by the default transport: the test receiver's certificate is not
// trusted, so the post fails as a TLS failure, not as a refusal.
func TestCallbackToAnAllowedNetwork(t *testing.T) {
	e := newEnvTransport(t, delivery.Config{MaxAttempts: 1, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, false)
	dest := e.destination(e.rc.url())
	e.route(dest, "")
	dead := e.deadLetters(1)
	if h := dead[0].History; len(h) != 1 || !strings.Contains(h[0].Error, "certificate") {
		t.Errorf("attempts %+v, want a TLS failure", h)
	}
}

// TestConsumersOfTheFlowNeverGiveUp checks that the durables turning INBOX
// and EVENTS into callbacks redeliver however long the store fails: an
// EVENTS message dead-lettered after its last delivery could not be
// re-driven. The callbacks' own durable gives up after its attempts.
func TestConsumersOfTheFlowNeverGiveUp(t *testing.T) {
	e := newEnv(t, delivery.Config{MaxAttempts: 3})
	ctx := context.Background()
	for _, c := range []struct {
		stream, durable string
		want            int
	}{
		{bus.StreamInbox, delivery.DurableSubmissions, -1},
		{bus.StreamEvents, delivery.DurableEvents, -1},
		{bus.StreamCallbacks, delivery.DurableCallbacks, 3},
	} {
		eventually(t, 10*time.Second, func() error {
			cons, err := e.bus.JetStream().Consumer(ctx, c.stream, c.durable)
			if err != nil {
				return err
			}
			if md := cons.CachedInfo().Config.MaxDeliver; md != c.want {
				return fmt.Errorf("%s: max deliver %d, want %d", c.durable, md, c.want)
			}
			return nil
		})
	}
}

// TestForgedCallbackJobRefused: whoever may write to DEAD writes a
// re-driven callback job; one naming another destination's submission is
// not posted, signed, to this destination's receiver, but dead-lettered as
// invalid.
func TestForgedCallbackJobRefused(t *testing.T) {
	e := newEnv(t, delivery.Config{})
	dest := e.destination(e.rc.url())
	other := e.destination("")
	theirs := e.route(other, "")
	for _, j := range []map[string]string{
		{"kind": delivery.KindNewSubmissions, "destinationId": dest, "submissionId": theirs.SubmissionID, "caseId": theirs.CaseID},
		{"kind": delivery.KindNewSubmissions, "destinationId": other, "submissionId": theirs.SubmissionID, "caseId": uuid.NewString()},
	} {
		body, err := json.Marshal(j)
		if err != nil {
			t.Fatal(err)
		}
		subject, err := bus.CallbackSubject(j["kind"], uuid.NewString())
		if err != nil {
			t.Fatal(err)
		}
		ev := event.New()
		ev.SetID(uuid.NewString())
		ev.SetSource("https://forger.example")
		ev.SetType(delivery.TypeCallback)
		if err := ev.SetData("application/json", body); err != nil {
			t.Fatal(err)
		}
		if _, err := e.bus.Publish(context.Background(), subject, ev, ev.ID()); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 20*time.Second, func() error {
		list, _, err := e.bus.DeadLetters(context.Background(), bus.DeadFilter{Reason: delivery.ReasonInvalid}, 0, 0)
		if err != nil {
			return err
		}
		if len(list) != 2 {
			return fmt.Errorf("%d invalid dead letters, want 2", len(list))
		}
		for _, d := range list {
			if !strings.Contains(d.History[len(d.History)-1].Error, "not its own") {
				return fmt.Errorf("dead letter %d: %+v", d.Seq, d.History)
			}
		}
		return nil
	})
	e.settled()
	if n := e.rc.count(theirs.SubmissionID); n != 0 {
		t.Errorf("%d callbacks posted for another destination's submission", n)
	}
}
