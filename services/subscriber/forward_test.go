package subscriber_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/client"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/services/subscriber"
	"github.com/amtsbote/amtsbote/services/subscriber/sink"
)

// dropEvents fails the first n event posts to the first case posted to
// before they reach the server, as a subscriber that crashed after
// forwarding and before marking the original would never have sent them.
type dropEvents struct {
	next http.RoundTripper
	mu   sync.Mutex
	path string
	n    int
}

func (d *dropEvents) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPost && strings.HasPrefix(req.URL.Path, "/v1/cases/") {
		d.mu.Lock()
		if d.path == "" {
			d.path = req.URL.Path
		}
		drop := d.path == req.URL.Path && d.n > 0
		if drop {
			d.n--
		}
		d.mu.Unlock()
		if drop {
			return nil, errors.New("connection reset")
		}
	}
	return d.next.RoundTrip(req)
}

func (d *dropEvents) left() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n
}

// TestForward: a Gemeinde's subscriber hands the submissions of a service
// the Kreis is responsible for on to the Kreis's destination, re-encrypted
// to the Kreis's key (its subscriber holds no other), marks each original
// forwarded with the new submission's ids, and delivers nothing itself.
// The first attempt's forward-submission is lost: the repeat finds the
// submission it made before, so the Kreis gets each one once.
func TestForward(t *testing.T) {
	s := newSystem(t)
	arsList := kreisARS(t, 2)
	gemeinde := s.addDestinations(t, arsList[0])[0]
	kreis := s.addDestinationsKeyed(t, keyPair(t, otherEncKey), arsList[1])[0]
	gid, gsecret := s.receiverOf(t, gemeinde)
	kid, ksecret := s.receiverOf(t, kreis)
	fid, fsecret := s.clientFor(t, "weiterleitung", "send:region:DE08")
	s.start(t)

	dir := t.TempDir()
	gemeindeSink, kreisSink := filepath.Join(dir, "gemeinde", "sink"), filepath.Join(dir, "kreis", "sink")
	for _, d := range []string{filepath.Dir(gemeindeSink), filepath.Dir(kreisSink)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	forward := fmt.Sprintf("forward:\n  clientId: %s\n  clientSecret: %s\n  rules:\n    - service: %s\n      from: %s\n      to: %s\n",
		fid, fsecret, service, gemeinde.ID, kreis.ID)
	gemeindeFile := s.configYAML(t, filepath.Dir(gemeindeSink), "http", "", gid, gsecret,
		forward+"sink:\n  kind: directory\n  directory: "+gemeindeSink+"\n", keyPair(t, encKey), nil, gemeinde)
	kreisFile := s.configYAML(t, filepath.Dir(kreisSink), "http", "", kid, ksecret,
		"sink:\n  kind: directory\n  directory: "+kreisSink+"\n", keyPair(t, otherEncKey), nil, kreis)
	startSubscriber(t, s, kreisFile)

	conf, sk := loadConfig(t, gemeindeFile)
	// As many losses as the client makes attempts: the first Handle of
	// one submission fails after its Submit to the Kreis went through.
	drop := &dropEvents{next: http.DefaultTransport, n: 5}
	api, err := client.New(s.baseURL, client.Credentials(gid, gsecret), client.Retries(4, 50*time.Millisecond),
		client.HTTPClient(&http.Client{Transport: drop, Timeout: time.Minute}))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := subscriber.New(subscriber.Config{
		Conf: conf, Sink: sk, API: api, Forwarder: s.api(t, fid, fsecret), BackoffBase: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	flowtest.Start(t, sub)

	ctx := context.Background()
	var receipts []client.Receipt
	for i := range 3 {
		r, err := s.submit(ctx, s.sender, gemeinde, i)
		if err != nil {
			t.Fatal(err)
		}
		receipts = append(receipts, r)
	}
	forwarder := s.api(t, fid, fsecret).Sender()
	seen := map[string]bool{}
	for i, r := range receipts {
		var st client.Status
		eventually(t, 60*time.Second, func() error {
			st, err = s.sender.Sender().StatusOf(ctx, r)
			if err == nil && st.State != client.StateForwarded {
				return fmt.Errorf("%s is %s", r.SubmissionID, st.State)
			}
			return err
		})
		var forwards []set.ForwardTarget
		for _, ev := range st.Events {
			if ev.Type != set.ForwardSubmission {
				continue
			}
			_, payload, err := ev.Claims.Event()
			if err != nil {
				t.Fatal(err)
			}
			var p set.ForwardPayload
			if err := json.Unmarshal(payload, &p); err != nil || p.ForwardedTo == nil {
				t.Fatalf("forward payload %s: %v", payload, err)
			}
			forwards = append(forwards, *p.ForwardedTo)
		}
		if len(forwards) != 1 || forwards[0].DestinationID != kreis.ID || seen[forwards[0].SubmissionID] {
			t.Fatalf("submission %d: forward events %+v, want one to %s", i, forwards, kreis.ID)
		}
		to := forwards[0]
		seen[to.SubmissionID] = true

		// The Kreis accepted the new submission: the forwarding client
		// follows it as its sender.
		eventually(t, 60*time.Second, func() error {
			kst, err := forwarder.Status(ctx, to.CaseID, to.SubmissionID)
			if err == nil && kst.Decision != client.StateAccepted {
				return fmt.Errorf("forwarded %s is %s", to.SubmissionID, kst.State)
			}
			return err
		})
		folder := filepath.Join(kreisSink, to.SubmissionID)
		data, err := os.ReadFile(filepath.Join(folder, "data.json"))
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(`{"antrag":%d,"gemeinde":%q}`, i, gemeinde.ARS); string(data) != want {
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
	if n := drop.left(); n > 0 {
		t.Fatalf("%d event posts left to drop: the loss was never exercised", n)
	}
	if got := delivered(t, kreisSink); len(got) != len(receipts) {
		t.Errorf("the Kreis's sink holds %d submissions, want %d", len(got), len(receipts))
	}
	if got := delivered(t, gemeindeSink); len(got) != 0 {
		t.Errorf("the Gemeinde's sink holds %v; forwarded submissions are not delivered", got)
	}
	list, err := s.api(t, gid, gsecret).Receiver().ListSubmissions(ctx, gemeinde.ID, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Submissions) != 0 {
		t.Errorf("the Gemeinde's pickup list holds %d forwarded submissions", len(list.Submissions))
	}

	// A second subscriber of the Gemeinde without the rule, handed a
	// forwarded submission again (a re-drive, a redelivery), finds it
	// decided and delivers nothing: the Kreis decides on it.
	otherSink := filepath.Join(dir, "other", "sink")
	if err := os.MkdirAll(filepath.Dir(otherSink), 0o700); err != nil {
		t.Fatal(err)
	}
	otherFile := s.configYAML(t, filepath.Dir(otherSink), "http", "", gid, gsecret,
		"sink:\n  kind: directory\n  directory: "+otherSink+"\n", keyPair(t, encKey), nil, gemeinde)
	otherConf, otherSk := loadConfig(t, otherFile)
	other, err := subscriber.New(subscriber.Config{Conf: otherConf, Sink: otherSk, API: s.api(t, gid, gsecret)})
	if err != nil {
		t.Fatal(err)
	}
	r := receipts[0]
	out, err := other.Handle(ctx, client.Pickup{DestinationID: gemeinde.ID, SubmissionID: r.SubmissionID, CaseID: r.CaseID})
	if err != nil || out != subscriber.Decided {
		t.Errorf("a forwarded submission handled again: %s, %v; want decided", out, err)
	}
	if got := delivered(t, otherSink); len(got) != 0 {
		t.Errorf("the second sink holds %v; a forwarded submission is not delivered", got)
	}
	// FIT-Connect still hands a forwarded submission out.
	ring, err := client.NewKeyRing(withKID(keyPair(t, encKey), "enc-"+gemeinde.ID))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := s.api(t, gid, gsecret).Receiver().Fetch(ctx, r.SubmissionID, ring)
	if err != nil {
		t.Errorf("fetch of a forwarded submission: %v", err)
	} else {
		if !rec.Forwarded() {
			t.Error("a forwarded submission fetched is not told forwarded")
		}
		rec.Close()
	}
	// The SDK's receiver, restarted, learns the same.
	ev, err := s.api(t, gid, gsecret).Receiver().Decided(ctx, client.Pickup{DestinationID: gemeinde.ID, SubmissionID: r.SubmissionID, CaseID: r.CaseID})
	if err != nil || ev == nil || ev.Type != set.ForwardSubmission {
		t.Errorf("Decided of a forwarded submission: %+v, %v; want its forward-submission", ev, err)
	}
}
