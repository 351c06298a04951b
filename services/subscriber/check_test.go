package subscriber_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
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
	"github.com/amtsbote/amtsbote/services/subscriber/config"
	"github.com/amtsbote/amtsbote/services/subscriber/sink"
)

// Check finds at start what would otherwise reject valid submissions or
// fail every accept: keys that are not the destination's, and refused
// credentials.
func TestCheck(t *testing.T) {
	s, dests, rid, rsecret, file := oneDestination(t)
	d := dests[0]
	other := keyPair(t, otherEncKey)

	cases := []struct {
		name   string
		secret string
		change func(*config.Destination)
		want   error
		detail string
	}{
		{"the configured keys", rsecret, func(*config.Destination) {}, nil, ""},
		{"another key under the destination's kid", rsecret, func(c *config.Destination) {
			c.EncryptionKeys[0].Private = other.Private
		}, client.ErrKeyMismatch, "is not the one published"},
		{"no key for the destination's kid", rsecret, func(c *config.Destination) {
			c.EncryptionKeys[0] = withKID(c.EncryptionKeys[0], "enc-old")
		}, client.ErrKeyMismatch, "not among the encryption keys"},
		{"a signing key the destination does not publish", rsecret, func(c *config.Destination) {
			c.SigningKey = withKID(c.SigningKey, "sig-unknown")
		}, client.ErrKeyMismatch, `signing key "sig-unknown" is not one of its keys`},
		{"another signing key under the destination's kid", rsecret, func(c *config.Destination) {
			c.SigningKey.Private = other.Private
		}, client.ErrKeyMismatch, "signing key given"},
		{"a wrong client secret", "wrong-secret", func(*config.Destination) {}, client.ErrToken, "invalid_client"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conf, sk := loadConfig(t, file)
			c.change(&conf.Destinations[0])
			sub, err := subscriber.New(subscriber.Config{Conf: conf, Sink: sk, API: s.api(t, rid, c.secret)})
			if err != nil {
				t.Fatal(err)
			}
			err = sub.Check(context.Background())
			if c.want == nil {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.detail) || !strings.Contains(err.Error(), d.ID) {
				t.Fatalf("Check: %v; want %v naming %s and %q", err, c.want, d.ID, c.detail)
			}
		})
	}
}

// A token endpoint failing with 500 at start is the server's fault, as
// any other 5xx: Check asks again instead of ending the subscriber.
func TestCheckOutlastsATokenEndpointFailing(t *testing.T) {
	var failed atomic.Int32
	sub, _ := behindFront(t, func(r *http.Request) int {
		if r.URL.Path == "/token" && failed.Add(1) <= 2 {
			return http.StatusInternalServerError
		}
		return 0
	})
	if err := sub.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if n := failed.Load(); n < 3 {
		t.Fatalf("token asked %d times, want the two failures and a success", n)
	}
}

// Ready follows the Submission API: ready while the client may list its
// pickup list, not while the API fails or refuses its token.
func TestReady(t *testing.T) {
	var down atomic.Bool
	sub, withSecret := behindFront(t, func(*http.Request) int {
		if down.Load() {
			return http.StatusBadGateway
		}
		return 0
	})
	ctx := context.Background()
	if err := sub.Ready(ctx); err != nil {
		t.Fatalf("Ready with the API answering: %v", err)
	}
	down.Store(true)
	if err := sub.Ready(ctx); err == nil || !strings.Contains(err.Error(), "502") {
		t.Fatalf("Ready with the API failing: %v, want its 502", err)
	}
	down.Store(false)
	if err := sub.Ready(ctx); err != nil {
		t.Fatalf("Ready with the API back: %v", err)
	}
	if err := withSecret("wrong-secret").Ready(ctx); !errors.Is(err, client.ErrToken) {
		t.Fatalf("Ready with a refused client: %v, want client.ErrToken", err)
	}
}

// behindFront returns a subscriber of one destination whose API client
// talks through a proxy that answers a request fail's status (0 passes
// it on), and one whose client has another secret.
func behindFront(t *testing.T, fail func(*http.Request) int) (*subscriber.Subscriber, func(secret string) *subscriber.Subscriber) {
	t.Helper()
	s, _, rid, rsecret, file := oneDestination(t)
	conf, sk := loadConfig(t, file)
	target, err := url.Parse(s.baseURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if status := fail(r); status != 0 {
			http.Error(w, http.StatusText(status), status)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	api, err := client.New(front.URL, client.Credentials(rid, rsecret), client.Retries(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	newSub := func(api *client.Client) *subscriber.Subscriber {
		sub, err := subscriber.New(subscriber.Config{Conf: conf, Sink: sk, API: api})
		if err != nil {
			t.Fatal(err)
		}
		return sub
	}
	return newSub(api), func(secret string) *subscriber.Subscriber { return newSub(s.api(t, rid, secret)) }
}

// A submission encrypted to a key the destination publishes but the
// configuration lacks is this side's fault: it is retried, never
// rejected in the sender's face.
func TestUnconfiguredKeyIsNotRejected(t *testing.T) {
	s, dests, rid, rsecret, file := oneDestination(t)
	conf, sk := loadConfig(t, file)
	conf.Destinations[0].EncryptionKeys[0] = withKID(conf.Destinations[0].EncryptionKeys[0], "enc-old")
	reg := metrics.NewRegistry()
	handled, err := metrics.NewHandled(reg, subscriber.Outcomes...)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := subscriber.New(subscriber.Config{Conf: conf, Sink: sk, API: s.api(t, rid, rsecret), Handled: handled})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r, err := s.submit(ctx, s.sender, dests[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	waitListed(t, s.api(t, rid, rsecret), dests[0].ID, r.SubmissionID)
	outcome, err := sub.Handle(ctx, client.Pickup{DestinationID: dests[0].ID, SubmissionID: r.SubmissionID, CaseID: r.CaseID})
	var perm *bus.PermanentError
	if err == nil || errors.As(err, &perm) || !strings.Contains(err.Error(), "not configured") {
		t.Fatalf("Handle = %q, %v; want an error to retry naming the unconfigured key", outcome, err)
	}
	// Beside the log, the metrics tell.
	if n := flowtest.Counter(t, reg, "amtsbote_subscriber_submissions_total", map[string]string{"outcome": "retry"}); n != 1 {
		t.Errorf("retries counted %v, want 1", n)
	}
	st, err := s.sender.Sender().StatusOf(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if st.Decision != "" {
		t.Errorf("the submission was decided: %s %+v", st.Decision, st.Problems)
	}
}

// waitListed waits until the pickup list of destination id holds the
// submission.
func waitListed(t *testing.T, api *client.Client, id, submissionID string) {
	t.Helper()
	eventually(t, 30*time.Second, func() error {
		list, err := api.Receiver().ListSubmissions(context.Background(), id, 500, 0)
		if err != nil {
			return err
		}
		for _, p := range list.Submissions {
			if p.SubmissionID == submissionID {
				return nil
			}
		}
		return fmt.Errorf("submission %s not listed", submissionID)
	})
}

// oneDestination starts a system with one destination and a receiver of
// it, and writes a configuration in mode http for them that delivers into
// a temporary directory.
func oneDestination(t *testing.T) (s *system, dests []testDestination, rid, rsecret, file string) {
	t.Helper()
	s = newSystem(t)
	dests = s.addDestinations(t, kreisARS(t, 1)...)
	rid, rsecret = s.receiverOf(t, dests...)
	s.start(t)
	dir := t.TempDir()
	file = s.configYAML(t, dir, "http", "", rid, rsecret, "sink:\n  kind: directory\n  directory: "+filepath.Join(dir, "sink")+"\n",
		keyPair(t, encKey), nil, dests...)
	return s, dests, rid, rsecret, file
}

// natsDirectory loads a configuration of d in mode nats, picking up with
// the durable as Amtsbote's NATS user, that delivers into sinkDir, a
// directory sink in a temporary directory.
func (s *system) natsDirectory(t *testing.T, durable, rid, rsecret string, d testDestination) (conf *config.Config, sk sink.Sink, sinkDir string) {
	t.Helper()
	dir := t.TempDir()
	sinkDir = filepath.Join(dir, "sink")
	file := s.configYAML(t, dir, "nats", s.natsPickup(durable), rid, rsecret, "sink:\n  kind: directory\n  directory: "+sinkDir+"\n", keyPair(t, encKey), nil, d)
	conf, sk = loadConfig(t, file)
	return conf, sk, sinkDir
}
