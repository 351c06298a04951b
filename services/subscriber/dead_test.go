package subscriber_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/internal/cli"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/services/subscriber"
)

// A subscriber whose NATS user may consume its durable and write dead
// letters, and nothing else, dead-letters a submission the Fachverfahren
// refuses for good, with the attempts before: its user may not write the
// state bucket where the backbone's consumers keep them.
func TestRefusedAsASubscriberUser(t *testing.T) {
	const durable = "subscriber-refused"
	pw := "pw-" + durable
	s := newSystem(t, bus.User{Name: durable, Password: pw, Permissions: bus.SubscriberPermissions(durable)})
	dests := s.addDestinations(t, kreisARS(t, 1)...)
	filter, err := bus.InboxFilter("08315")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.bus.EnsureConsumer(ctx, bus.ConsumerConfig{
		Stream: bus.StreamInbox, Durable: durable, FilterSubjects: []string{filter},
	}); err != nil {
		t.Fatal(err)
	}
	rid, rsecret := s.receiverOf(t, dests...)
	s.start(t)
	// Overloaded twice, then the submission is refused.
	var tries atomic.Int32
	fv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tries.Add(1) <= 2 {
			http.Error(w, "überlastet", http.StatusServiceUnavailable)
			return
		}
		http.Error(w, "Antrag unvollständig", http.StatusBadRequest)
	}))
	t.Cleanup(fv.Close)

	dir := t.TempDir()
	pickup := fmt.Sprintf("nats:\n  url: %s\n  user: %s\n  password: %s\n  durable: %s\n  filters: [%q]\n", s.natsURL, durable, pw, durable, filter)
	sinkYAML := fmt.Sprintf("sink:\n  kind: http\n  http:\n    url: %s/eingang\n    timeout: 5s\n    maxAttempts: 1\n", fv.URL)
	file := s.configYAML(t, dir, "nats", pickup, rid, rsecret, sinkYAML, keyPair(t, encKey), nil, dests...)
	logFile := filepath.Join(dir, "subscriber.log")
	startProcess(t, logFile, "subscriber", "--config", file, "--log-level", "info")

	r, err := s.submit(ctx, s.sender, dests[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	var dead bus.DeadLetter
	eventually(t, time.Minute, func() error {
		dls, _, err := s.bus.DeadLetters(ctx, bus.DeadFilter{Reason: subscriber.ReasonSinkRefused}, 0, 0)
		if err != nil {
			return err
		}
		if len(dls) == 0 {
			return fmt.Errorf("no dead letter; the Fachverfahren was asked %d times", tries.Load())
		}
		dead = dls[0]
		return nil
	})
	if dead.DestinationID != dests[0].ID || dead.Consumer != durable || dead.Attempts != 3 || len(dead.History) != 3 {
		t.Errorf("dead letter: destination %s, consumer %s, %d attempts, history %+v; want %s, %s, 3 and 3",
			dead.DestinationID, dead.Consumer, dead.Attempts, dead.History, dests[0].ID, durable)
	}
	if n := tries.Load(); n != 3 {
		t.Errorf("the Fachverfahren was asked %d times for submission %s, want 3", n, r.SubmissionID)
	}
	raw, _ := os.ReadFile(logFile)
	for _, bad := range []string{"ermissions", "not kept", "not written"} {
		if strings.Contains(string(raw), bad) {
			t.Errorf("subscriber log says %q:\n%s", bad, tail(string(raw), 20))
		}
	}
}

// In mode http a submission the Fachverfahren refuses for good stays on
// the pickup list for an operator, and is not handed in again at every
// poll.
func TestRefusedInHTTPMode(t *testing.T) {
	s := newSystem(t)
	dests := s.addDestinations(t, kreisARS(t, 1)...)
	rid, rsecret := s.receiverOf(t, dests...)
	s.start(t)
	var tries atomic.Int32
	fv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tries.Add(1)
		http.Error(w, "Antrag unvollständig", http.StatusBadRequest)
	}))
	t.Cleanup(fv.Close)
	dir := t.TempDir()
	sinkYAML := fmt.Sprintf("sink:\n  kind: http\n  http:\n    url: %s/eingang\n    timeout: 5s\n    maxAttempts: 1\n", fv.URL)
	file := s.configYAML(t, dir, "http", "", rid, rsecret, sinkYAML, keyPair(t, encKey), nil, dests...)
	startSubscriber(t, s, file)

	if _, err := s.submit(context.Background(), s.sender, dests[0], 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, func() error {
		if tries.Load() == 0 {
			return fmt.Errorf("not handed in yet")
		}
		return nil
	})
	// Four polls of a second each.
	time.Sleep(4 * time.Second)
	if n := tries.Load(); n != 1 {
		t.Errorf("the Fachverfahren was asked %d times, want once", n)
	}
}

// A configuration naming another durable than its NATS user may consume
// says so, rather than only that JetStream did not answer.
func TestAnotherUsersDurable(t *testing.T) {
	// Without a deadline of its own, as from a signal: JetStream's
	// default timeout applies.
	err := runAsSubscriberUser(t, "subscriber-a", "subscriber-b")
	if err == nil || !strings.Contains(err.Error(), `consume the durable "subscriber-b"`) {
		t.Errorf("run: %v, want an error naming the durable", err)
	}
}

// A durable the operator has not created yet, for a user who may not
// create it, is named as missing.
func TestMissingDurable(t *testing.T) {
	err := runAsSubscriberUser(t, "subscriber-a", "subscriber-a")
	if err == nil || !strings.Contains(err.Error(), `the durable "subscriber-a" does not exist on INBOX`) {
		t.Errorf("run: %v, want an error naming the missing durable", err)
	}
}

// runAsSubscriberUser runs amtsbote subscriber in mode nats as the NATS
// user that may consume user's durable alone, configured for durable,
// which no one has created, and returns how it ends.
func runAsSubscriberUser(t *testing.T, user, durable string) error {
	t.Helper()
	pw := "pw-" + user
	s := newSystem(t, bus.User{Name: user, Password: pw, Permissions: bus.SubscriberPermissions(user)})
	dests := s.addDestinations(t, kreisARS(t, 1)...)
	rid, rsecret := s.receiverOf(t, dests...)
	s.start(t)
	dir := t.TempDir()
	pickup := fmt.Sprintf("nats:\n  url: %s\n  user: %s\n  password: %s\n  durable: %s\n", s.natsURL, user, pw, durable)
	file := s.configYAML(t, dir, "nats", pickup, rid, rsecret, "sink:\n  kind: directory\n  directory: "+filepath.Join(dir, "sink")+"\n", keyPair(t, encKey), nil, dests...)
	var out strings.Builder
	return cli.Run(context.Background(), []string{"subscriber", "--config", file}, func(string) string { return "" }, &out, &out)
}
