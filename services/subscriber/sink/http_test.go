package sink_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/services/subscriber/sink"
	"github.com/amtsbote/amtsbote/services/subscriber/sink/sinktest"
)

// fachverfahren is a specialist procedure's intake as the HTTP sink
// expects one: it stores each Idempotency-Key's submission once and
// answers a repeated key with success.
type fachverfahren struct {
	srv *httptest.Server
	// before, if set, may answer a request before its body is read; it
	// returns true when it did. n counts the requests, from 1.
	before func(w http.ResponseWriter, r *http.Request, n int64) bool

	requests atomic.Int64
	received atomic.Int64 // body bytes read, over all requests

	mu         sync.Mutex
	byKey      map[string]sinktest.Delivered
	violations []string
	headers    []http.Header
}

// wireDelivery is the HTTP sink's JSON document.
type wireDelivery struct {
	SubmissionID      string          `json:"submissionId"`
	CaseID            string          `json:"caseId"`
	DestinationID     string          `json:"destinationId"`
	ServiceIdentifier string          `json:"serviceIdentifier"`
	Metadata          json.RawMessage `json:"metadata"`
	DataMimeType      string          `json:"dataMimeType"`
	DataEncoding      string          `json:"dataEncoding"`
	Data              *string         `json:"data"`
	Attachments       []struct {
		ID       string `json:"id"`
		Filename string `json:"filename"`
		MimeType string `json:"mimeType"`
		Content  []byte `json:"content"`
		Size     int64  `json:"size"`
	} `json:"attachments"`
}

func newFachverfahren(t *testing.T) *fachverfahren {
	f := &fachverfahren{byKey: map[string]sinktest.Delivered{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (f *fachverfahren) violate(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.violations = append(f.violations, fmt.Sprintf(format, args...))
}

func (f *fachverfahren) serve(w http.ResponseWriter, r *http.Request) {
	n := f.requests.Add(1)
	f.mu.Lock()
	f.headers = append(f.headers, r.Header.Clone())
	f.mu.Unlock()
	if f.before != nil && f.before(w, r, n) {
		return
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		f.violate("%s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
		http.Error(w, "POST application/json only", http.StatusBadRequest)
		return
	}
	key := r.Header.Get(sink.IdempotencyKeyHeader)
	dec := json.NewDecoder(countingReader{r.Body, &f.received})
	dec.DisallowUnknownFields()
	var in wireDelivery
	if err := dec.Decode(&in); err != nil {
		// A body cut off by a sender that gave up is no violation.
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if dec.More() {
		f.violate("data after the document")
	}
	if key == "" || key != in.SubmissionID {
		f.violate("Idempotency-Key %q for submission %q", key, in.SubmissionID)
	}
	d := sinktest.Delivered{
		SubmissionID: in.SubmissionID, CaseID: in.CaseID, DestinationID: in.DestinationID,
		ServiceIdentifier: in.ServiceIdentifier, Metadata: in.Metadata, DataMimeType: in.DataMimeType,
	}
	if in.Data != nil {
		switch in.DataEncoding {
		case "utf-8":
			d.Data = []byte(*in.Data)
		case "base64":
			var err error
			if d.Data, err = base64.StdEncoding.DecodeString(*in.Data); err != nil {
				f.violate("data: %v", err)
			}
		default:
			f.violate("data encoding %q", in.DataEncoding)
		}
	}
	for _, a := range in.Attachments {
		if int64(len(a.Content)) != a.Size {
			f.violate("attachment %s: size %d for %d bytes", a.ID, a.Size, len(a.Content))
		}
		d.Attachments = append(d.Attachments, sinktest.Attachment{ID: a.ID, Filename: a.Filename, MimeType: a.MimeType, Content: a.Content})
	}
	f.mu.Lock()
	_, dup := f.byKey[key]
	if !dup {
		f.byKey[key] = d
	}
	f.mu.Unlock()
	if dup {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

func (f *fachverfahren) delivered(t *testing.T) []sinktest.Delivered {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.violations) > 0 {
		t.Fatalf("the sink broke the protocol: %s", strings.Join(f.violations, "; "))
	}
	var out []sinktest.Delivered
	for _, d := range f.byKey {
		out = append(out, d)
	}
	return out
}

// sleeps records the waits of an HTTP sink without waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) waits() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

func newHTTP(t *testing.T, cfg sink.HTTPConfig) (*sink.HTTP, *sleeps) {
	t.Helper()
	s, err := sink.NewHTTP(cfg)
	if err != nil {
		t.Fatalf("new http sink: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	w := &sleeps{}
	sink.SetSleep(s, w.sleep)
	return s, w
}

func TestHTTPConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Backend {
		f := newFachverfahren(t)
		return sinktest.Backend{
			Open: func(t *testing.T) sink.Sink {
				s, err := sink.NewHTTP(sink.HTTPConfig{URL: f.srv.URL, MaxAttempts: 3, BaseDelay: time.Millisecond})
				if err != nil {
					t.Fatalf("new http sink: %v", err)
				}
				return s
			},
			Delivered: f.delivered,
		}
	})
}

func TestHTTPRetriesServerErrors(t *testing.T) {
	f := newFachverfahren(t)
	f.before = func(w http.ResponseWriter, r *http.Request, n int64) bool {
		switch n {
		case 1:
			http.Error(w, "database down", http.StatusInternalServerError)
		case 2:
			_, _ = io.Copy(io.Discard, r.Body) // fails after reading all of it
			http.Error(w, "busy", http.StatusServiceUnavailable)
		default:
			return false
		}
		return true
	}
	s, w := newHTTP(t, sink.HTTPConfig{
		URL: f.srv.URL, Header: http.Header{"Authorization": {"Bearer fv-token"}}, MaxAttempts: 5,
	})
	d := sinktest.NewDelivery()
	content := sinktest.Random(11, 300_000)
	c := &sinktest.Content{Bytes: content}
	d.Attachments = []sink.Attachment{c.Attachment(uuid.NewString(), "a.pdf", "application/pdf")}
	if err := s.Deliver(context.Background(), d); err != nil {
		t.Fatalf("deliver: %v", err)
	}
	sinktest.Check(t, f.delivered(t), d, map[string][]byte{d.Attachments[0].ID: content})
	if n := f.requests.Load(); n != 3 {
		t.Fatalf("%d requests, want 3", n)
	}
	if n := len(w.waits()); n != 2 {
		t.Fatalf("%d waits, want 2", n)
	}
	for _, wait := range w.waits() {
		if wait < 0 || wait > sink.DefaultHTTPBaseDelay*2 {
			t.Errorf("wait %s outside the jitter of the first attempts", wait)
		}
	}
	if n := c.Opens(); n != 3 {
		t.Errorf("attachment opened %d times in 3 attempts", n)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, h := range f.headers {
		if h.Get(sink.IdempotencyKeyHeader) != d.SubmissionID || h.Get("Authorization") != "Bearer fv-token" {
			t.Errorf("request %d: Idempotency-Key %q, Authorization %q", i+1, h.Get(sink.IdempotencyKeyHeader), h.Get("Authorization"))
		}
	}
}

func TestHTTPRetryAfter(t *testing.T) {
	f := newFachverfahren(t)
	f.before = func(w http.ResponseWriter, r *http.Request, n int64) bool {
		if n > 1 {
			return false
		}
		w.Header().Set("Retry-After", "7")
		http.Error(w, "slow down", http.StatusTooManyRequests)
		return true
	}
	s, w := newHTTP(t, sink.HTTPConfig{URL: f.srv.URL, BaseDelay: time.Millisecond})
	d := sinktest.NewDelivery()
	if err := s.Deliver(context.Background(), d); err != nil {
		t.Fatalf("deliver: %v", err)
	}
	sinktest.Check(t, f.delivered(t), d, nil)
	if waits := w.waits(); len(waits) != 1 || waits[0] != 7*time.Second {
		t.Fatalf("waits %v, want the 7s Retry-After asked for", waits)
	}

	t.Run("beyond max elapsed", func(t *testing.T) {
		f := newFachverfahren(t)
		f.before = func(w http.ResponseWriter, r *http.Request, n int64) bool {
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		s, w := newHTTP(t, sink.HTTPConfig{URL: f.srv.URL, MaxElapsed: time.Minute})
		err := s.Deliver(context.Background(), sinktest.NewDelivery())
		var status *sink.StatusError
		if !errors.Is(err, sink.ErrTransient) || !errors.As(err, &status) || status.Code != http.StatusServiceUnavailable {
			t.Fatalf("deliver: %v, want a transient 503", err)
		}
		if n := f.requests.Load(); n != 1 || len(w.waits()) != 0 {
			t.Fatalf("%d requests and waits %v, want one request and no wait", n, w.waits())
		}
	})
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"120", 2 * time.Minute},
		{"-5", 0},
		{"1.5", 0},
		{"soon", 0},
		{"99999999999", 0},
		{"86401", 24 * time.Hour},
		{"Mon, 04 May 2026 12:00:30 GMT", 30 * time.Second},
		{"Mon, 04 May 2026 11:00:00 GMT", 0},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			if got := sink.ParseRetryAfter(tc.in, now); got != tc.want {
				t.Fatalf("ParseRetryAfter(%q) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}

func TestHTTPRefusedConnection(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s, w := newHTTP(t, sink.HTTPConfig{URL: "http://" + addr + "/intake", MaxAttempts: 4})
	err = s.Deliver(context.Background(), sinktest.NewDelivery())
	if !errors.Is(err, sink.ErrTransient) || errors.Is(err, sink.ErrPermanent) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("deliver: %v, want a transient error for the refused connection", err)
	}
	if n := len(w.waits()); n != 3 {
		t.Fatalf("%d waits, want 3 between 4 attempts", n)
	}
}

func TestHTTPRefusal(t *testing.T) {
	for _, code := range []int{400, 410, 413, 415, 422} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			f := newFachverfahren(t)
			f.before = func(w http.ResponseWriter, r *http.Request, n int64) bool {
				w.WriteHeader(code)
				fmt.Fprintf(w, "{\"error\":\"Antrag abgelehnt\",\n\"code\":%d}\x00%s", code, strings.Repeat("x", 2000))
				return true
			}
			s, w := newHTTP(t, sink.HTTPConfig{URL: f.srv.URL})
			err := s.Deliver(context.Background(), sinktest.NewDelivery())
			var status *sink.StatusError
			if !errors.Is(err, sink.ErrPermanent) || errors.Is(err, sink.ErrTransient) || !errors.As(err, &status) {
				t.Fatalf("deliver: %v, want a permanent *StatusError", err)
			}
			if status.Code != code || !strings.Contains(status.Snippet, `"Antrag abgelehnt", "code"`) || len(status.Snippet) > 600 {
				t.Fatalf("status %d, snippet %q", status.Code, status.Snippet)
			}
			if !strings.Contains(err.Error(), fmt.Sprint(code)) {
				t.Errorf("error %q does not name the status", err)
			}
			if n := f.requests.Load(); n != 1 || len(w.waits()) != 0 {
				t.Fatalf("%d requests, %d waits: a refusal must not be retried", n, len(w.waits()))
			}
		})
	}
}

// TestHTTPMisconfigured shows that answers an operator mends (wrong
// credentials, a wrong address) are no refusal of the submission: it
// waits for the mend instead of being dead-lettered.
func TestHTTPMisconfigured(t *testing.T) {
	for _, code := range []int{401, 403, 404, 308} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			f := newFachverfahren(t)
			f.before = func(w http.ResponseWriter, r *http.Request, n int64) bool {
				w.WriteHeader(code)
				return true
			}
			s, w := newHTTP(t, sink.HTTPConfig{URL: f.srv.URL, MaxAttempts: 3})
			err := s.Deliver(context.Background(), sinktest.NewDelivery())
			var status *sink.StatusError
			if !errors.Is(err, sink.ErrTransient) || errors.Is(err, sink.ErrPermanent) || !errors.As(err, &status) || status.Code != code {
				t.Fatalf("deliver: %v, want a transient *StatusError %d", err, code)
			}
			if n := f.requests.Load(); n != 1 || len(w.waits()) != 0 {
				t.Fatalf("%d requests, %d waits, want 1 and none: asked again at once it answers the same", n, len(w.waits()))
			}
		})
	}
}

func TestHTTPNoRedirects(t *testing.T) {
	elsewhere := newFachverfahren(t)
	f := newFachverfahren(t)
	f.before = func(w http.ResponseWriter, r *http.Request, n int64) bool {
		http.Redirect(w, r, elsewhere.srv.URL+"/intake", http.StatusTemporaryRedirect)
		return true
	}
	s, _ := newHTTP(t, sink.HTTPConfig{URL: f.srv.URL})
	err := s.Deliver(context.Background(), sinktest.NewDelivery())
	var status *sink.StatusError
	if !errors.Is(err, sink.ErrTransient) || !errors.As(err, &status) || status.Code != http.StatusTemporaryRedirect || !strings.Contains(status.Location, elsewhere.srv.URL) {
		t.Fatalf("deliver: %v, want a transient 307 naming its target", err)
	}
	if n := elsewhere.requests.Load(); n != 0 {
		t.Fatalf("the redirect was followed %d times", n)
	}
}

func TestHTTPSlowServer(t *testing.T) {
	release := make(chan struct{})
	f := newFachverfahren(t)
	f.before = func(w http.ResponseWriter, r *http.Request, n int64) bool {
		select {
		case <-r.Context().Done():
		case <-release:
		}
		return true
	}
	defer close(release)
	s, w := newHTTP(t, sink.HTTPConfig{URL: f.srv.URL, Timeout: 100 * time.Millisecond, MaxAttempts: 2})
	err := s.Deliver(context.Background(), sinktest.NewDelivery())
	if !errors.Is(err, sink.ErrTransient) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deliver: %v, want a transient timeout", err)
	}
	if n := len(w.waits()); n != 1 {
		t.Fatalf("%d waits, want 1 between 2 attempts", n)
	}
}

func TestHTTPCancelledWhileWaiting(t *testing.T) {
	f := newFachverfahren(t)
	f.before = func(w http.ResponseWriter, r *http.Request, n int64) bool {
		w.WriteHeader(http.StatusBadGateway)
		return true
	}
	s, err := sink.NewHTTP(sink.HTTPConfig{URL: f.srv.URL, BaseDelay: time.Hour, MaxDelay: time.Hour, MaxElapsed: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	sink.SetSleep(s, func(context.Context, time.Duration) error { cancel(); return context.Canceled })
	err = s.Deliver(ctx, sinktest.NewDelivery())
	if !errors.Is(err, sink.ErrTransient) || !errors.Is(err, context.Canceled) {
		t.Fatalf("deliver: %v, want a transient cancellation", err)
	}
}

// TestHTTPStreams shows that an attachment reaches the Fachverfahren
// while its source is still being read.
func TestHTTPStreams(t *testing.T) {
	f := newFachverfahren(t)
	s, _ := newHTTP(t, sink.HTTPConfig{URL: f.srv.URL})
	const half = 4 << 20
	content := sinktest.Random(12, 2*half)
	var once sync.Once
	var streamed error
	c := &sinktest.Content{Bytes: content, OnRead: func(n int) {
		if n < half {
			return
		}
		once.Do(func() {
			// base64 makes 4 bytes of 3: well over half arrives unless held back.
			deadline := time.Now().Add(10 * time.Second)
			for f.received.Load() < half {
				if time.Now().After(deadline) {
					streamed = fmt.Errorf("the Fachverfahren received %d bytes while the source waited half-way", f.received.Load())
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}}
	d := sinktest.NewDelivery()
	d.Attachments = []sink.Attachment{c.Attachment(uuid.NewString(), "gross.bin", "application/octet-stream")}
	if err := s.Deliver(context.Background(), d); err != nil {
		t.Fatalf("deliver: %v", err)
	}
	if streamed != nil {
		t.Fatal(streamed)
	}
	sinktest.Check(t, f.delivered(t), d, map[string][]byte{d.Attachments[0].ID: content})
}

func TestNewHTTP(t *testing.T) {
	cases := []struct {
		name string
		cfg  sink.HTTPConfig
	}{
		{"no url", sink.HTTPConfig{}},
		{"relative", sink.HTTPConfig{URL: "/intake"}},
		{"ftp", sink.HTTPConfig{URL: "ftp://fv.example/intake"}},
		{"credentials", sink.HTTPConfig{URL: "https://user:pw@fv.example/intake"}},
		{"fragment", sink.HTTPConfig{URL: "https://fv.example/intake#x"}},
		{"idempotency header", sink.HTTPConfig{URL: "https://fv.example", Header: http.Header{"Idempotency-Key": {"x"}}}},
		{"content type header", sink.HTTPConfig{URL: "https://fv.example", Header: http.Header{"content-type": {"text/plain"}}}},
		{"header name", sink.HTTPConfig{URL: "https://fv.example", Header: http.Header{"X Bad": {"x"}}}},
		{"header value", sink.HTTPConfig{URL: "https://fv.example", Header: http.Header{"X-Token": {"a\r\nInjected: 1"}}}},
		{"negative timeout", sink.HTTPConfig{URL: "https://fv.example", Timeout: -time.Second}},
		{"negative attempts", sink.HTTPConfig{URL: "https://fv.example", MaxAttempts: -1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := sink.NewHTTP(tc.cfg); !errors.Is(err, sink.ErrPermanent) {
				t.Fatalf("NewHTTP: %v, want a permanent error", err)
			}
		})
	}
}
