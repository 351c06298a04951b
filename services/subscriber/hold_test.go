package subscriber_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/client"
	"github.com/amtsbote/amtsbote/pkg/metrics"
	"github.com/amtsbote/amtsbote/services/subscriber"
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
	fetches := &countFetches{}
	api, err := client.New(s.baseURL, client.Credentials(rid, rsecret), client.HTTPClient(&http.Client{Transport: fetches}))
	if err != nil {
		t.Fatal(err)
	}
	// Ten deliveries after waits of 10 ms doubling take about 5 s.
	sub, err := subscriber.New(subscriber.Config{Conf: conf, Sink: sk, API: api, Bus: s.bus, BackoffBase: 10 * time.Millisecond, Logger: testLog()})
	if err != nil {
		t.Fatal(err)
	}
	flowtest.Start(t, sub)

	if err := os.RemoveAll(sinkDir); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var receipts []client.Receipt
	for i := range 3 {
		r, err := s.submit(ctx, s.sender, d, i)
		if err != nil {
			t.Fatal(err)
		}
		receipts = append(receipts, r)
	}
	eventually(t, 30*time.Second, func() error {
		if n := fetches.n.Load(); n < 3 {
			return fmt.Errorf("%d of 3 submissions fetched", n)
		}
		return nil
	})
	time.Sleep(8 * time.Second)
	dead, _, err := s.bus.DeadLetters(ctx, bus.DeadFilter{}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 0 || fetches.n.Load() != 3 {
		t.Fatalf("after 8 s of outage: %d dead letters and %d fetches, want none and one per submission", len(dead), fetches.n.Load())
	}

	if err := os.Mkdir(sinkDir, 0o750); err != nil {
		t.Fatal(err)
	}
	for _, r := range receipts {
		waitAccepted(t, s.sender, r, 30*time.Second)
	}
	if got := delivered(t, sinkDir); len(got) != 3 {
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
	fetches := &countFetches{}
	api, err := client.New(s.baseURL, client.Credentials(rid, rsecret), client.HTTPClient(&http.Client{Transport: fetches}))
	if err != nil {
		t.Fatal(err)
	}
	// The submission the sink failed would be handed in again after a
	// minute; the others after a second.
	sub, err := subscriber.New(subscriber.Config{Conf: conf, Sink: sk, API: api, BackoffBase: time.Minute, Logger: testLog()})
	if err != nil {
		t.Fatal(err)
	}
	flowtest.Start(t, sub)

	if err := os.RemoveAll(sinkDir); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, err := s.submit(ctx, s.sender, d, 0)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		if n := fetches.n.Load(); n < 1 {
			return errors.New("the first submission was not fetched")
		}
		return nil
	})
	receipts := []client.Receipt{first}
	for i := 1; i <= 3; i++ {
		r, err := s.submit(ctx, s.sender, d, i)
		if err != nil {
			t.Fatal(err)
		}
		waitListed(t, api, d.ID, r.SubmissionID)
		receipts = append(receipts, r)
	}
	// Polls once a second.
	time.Sleep(4 * time.Second)
	if n := fetches.n.Load(); n != 1 {
		t.Fatalf("%d submissions fetched while the sink failed, want only the first", n)
	}

	if err := os.Mkdir(sinkDir, 0o750); err != nil {
		t.Fatal(err)
	}
	for _, r := range receipts {
		waitAccepted(t, s.sender, r, 30*time.Second)
	}
	if got := delivered(t, sinkDir); len(got) != 4 {
		t.Errorf("%d submissions in the sink, want 4", len(got))
	}
	if n := fetches.n.Load(); n != 5 {
		t.Errorf("%d fetches, want 5: the first twice, the others once", n)
	}
}
