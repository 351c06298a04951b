package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/internal/failpoint"
	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/internal/roles"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/client"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// acceptSteps are the failpoints of an accept, in the order an accept
// reaches them, and whether EVENTS holds the decision when the process
// dies there.
var acceptSteps = []struct {
	point     string
	published bool
}{
	{"decision.before-read", false},    // verified, the case's events not yet read
	{"decision.before-publish", false}, // decided against the case, not yet published
	{"decision.before-answer", true},   // published, 204 not yet written
	{"ledger.before-project", true},    // the ledger took the message, the store unchanged
	{"ledger.before-ack", true},        // the store changed, the message not yet acknowledged
}

// TestCrashDuringAccept kills the real `amtsbote dev` process with
// SIGKILL at every step of an accept, on SQLite and on PostgreSQL, then
// starts it again on the same data dir and lets the SDK retry the accept.
// At every moment observed, while the process is dead and after it came
// back, the decision is recorded fully or not at all: the store's status
// is accepted exactly when the case holds the accept-submission event, and
// then the sender's verified status is accepted and the submission is off
// the pickup list. After the retry it is recorded exactly once.
func TestCrashDuringAccept(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the whole system, killing it ten times")
	}
	bin := buildBinary(t)
	t.Run("sqlite", func(t *testing.T) { crashAccepts(t, bin, "") })
	t.Run("postgres", func(t *testing.T) { crashAccepts(t, bin, freshSchema(t)) })
}

// crashAccepts runs every step's crash on one data dir (and database),
// one process armed at that step and one after it, on a fixed port so
// that the SDK's client reaches the restarted process.
func crashAccepts(t *testing.T, bin, dbURL string) {
	dir := t.TempDir()
	extra := []string{"--listen", "127.0.0.1:" + strconv.Itoa(freePort(t))}
	if dbURL != "" {
		extra = append(extra, "--database-url", dbURL)
	}
	for _, step := range acceptSteps {
		t.Run(step.point, func(t *testing.T) {
			point := step.point + ":" + set.Name(set.AcceptSubmission)
			c := startArmed(t, bin, dir, point, extra...)
			d := c.demo
			dest := d.Destinations[0]
			ring, sigKey := destinationKeys(t, dest)
			sender := newActor(t, d, "sender", http.DefaultTransport).Sender()
			receiver := newActor(t, d, "receiver", http.DefaultTransport).Receiver()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()

			receipt, err := sender.Submit(ctx, client.Submission{
				DestinationID: dest.DestinationID,
				ServiceType:   client.ServiceType{Identifier: dest.Services[0], Name: "Gewerbe"},
				Data:          fmt.Appendf(nil, `{"gewerbe":{"failpoint":%q}}`, point),
			})
			if err != nil {
				t.Fatalf("submit: %v", err)
			}
			waitListed(t, receiver, dest.DestinationID, receipt.SubmissionID)
			rec := fetch(t, receiver, receipt.SubmissionID, ring)
			defer rec.Close()
			o := &observer{sender: sender, receiver: receiver, receipt: receipt}

			err = receiver.Accept(ctx, rec, sigKey)
			t.Logf("accept with the process dying at %s: %v", point, err)
			if !step.published && err == nil {
				t.Errorf("accept answered success although the process died before publishing")
			}
			c.waitKilled(t, point)

			// Dead: the store alone tells, and it agrees with itself.
			st := openTestStore(t, dbURL, dir)
			o.check(t, st, false)
			st.Close()

			c = startArmed(t, bin, dir, "", extra...)
			st = openTestStore(t, dbURL, dir)
			defer st.Close()
			b, err := bus.Connect(ctx, c.demo.NATSURL)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			o.bus = b
			if n := acceptsIn(t, b, receipt); n != boolInt(step.published) {
				t.Fatalf("EVENTS holds %d accepts of the submission after a crash at %s, want %d", n, point, boolInt(step.published))
			}
			if step.published {
				// The ledger projects what EVENTS holds once it runs again.
				eventually(t, time.Minute, func() error {
					if !o.check(t, st, true) {
						return errors.New("the published accept is not projected yet")
					}
					return nil
				})
			} else if o.check(t, st, true) {
				t.Fatalf("the store records an accept EVENTS does not hold")
			}

			// The SDK's retry completes the accept while the observer
			// keeps checking.
			stop := o.watch(t, st)
			err = receiver.Accept(ctx, rec, sigKey)
			t.Logf("%d observations while the retry ran", stop())
			if err != nil {
				t.Fatalf("accept retried after the restart: %v", err)
			}
			eventually(t, time.Minute, func() error {
				if !o.check(t, st, true) {
					return errors.New("the accept is not recorded yet")
				}
				return nil
			})
			o.checkOnce(t, st, b)

			// A receiver that lost rec finds the decision.
			if _, err := receiver.Fetch(ctx, receipt.SubmissionID, ring); !isNotFound(err) {
				t.Errorf("fetch of the accepted submission = %v, want 404", err)
			}
			ev, err := receiver.Decided(ctx, client.Pickup{DestinationID: dest.DestinationID, SubmissionID: receipt.SubmissionID, CaseID: receipt.CaseID})
			if err != nil || ev == nil || ev.Type != set.AcceptSubmission {
				t.Errorf("decided = %+v, %v; want the accept", ev, err)
			}
			c.stop(t)
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func isNotFound(err error) bool {
	p, ok := problem.As(err)
	return ok && p.Status == http.StatusNotFound
}

// startArmed runs `bin dev` on dataDir with the failpoints armed (none
// when empty) and waits until it printed its credentials.
func startArmed(t *testing.T, bin, dataDir, points string, extra ...string) *child {
	t.Helper()
	args := append([]string{"dev", "--data-dir", dataDir, "--nats-port", "-1", "--log-level", "warn"}, extra...)
	c := &child{done: make(chan error, 1), out: &flowtest.Buffer{}, errOut: &flowtest.Buffer{}}
	cmd := exec.Command(bin, args...)
	cmd.Env = childEnv()
	if points != "" {
		cmd.Env = append(cmd.Env, failpoint.Env+"="+points)
	}
	cmd.Stdout, cmd.Stderr = c.out, c.errOut
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dev: %v", err)
	}
	c.cmd = cmd
	go func() { c.done <- cmd.Wait() }()
	t.Cleanup(func() { c.stop(t) })
	eventually(t, 3*time.Minute, func() error {
		select {
		case err := <-c.done:
			c.done <- err
			t.Fatalf("dev exited: %v\n%s", err, c.errOut.String())
		default:
		}
		if !strings.Contains(c.out.String(), "Try:") {
			return errors.New("dev: not ready yet")
		}
		return nil
	})
	raw, err := os.ReadFile(filepath.Join(dataDir, "demo.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &c.demo); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitKilled waits until the process died by SIGKILL at point.
func (c *child) waitKilled(t *testing.T, point string) {
	t.Helper()
	var err error
	select {
	case err = <-c.done:
	case <-time.After(time.Minute):
		t.Fatalf("dev still runs a minute after the accept; failpoint %s not reached\n%s", point, c.errOut.String())
	}
	c.cmd = nil
	var ee *exec.ExitError
	ws, ok := syscall.WaitStatus(0), false
	if errors.As(err, &ee) {
		ws, ok = ee.Sys().(syscall.WaitStatus)
	}
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("dev ended with %v, want SIGKILL\n%s", err, c.errOut.String())
	}
	if want := "failpoint " + point + ":"; !strings.Contains(c.errOut.String(), want) {
		t.Fatalf("dev was killed, but not at %s:\n%s", point, c.errOut.String())
	}
}

// openTestStore opens the store dev uses: PostgreSQL at dbURL or SQLite
// in dataDir.
func openTestStore(t *testing.T, dbURL, dataDir string) roles.Store {
	t.Helper()
	st, _, err := openStore(context.Background(), dbURL, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// acceptsIn counts the accept-submission events of the receipt's
// submission in EVENTS.
func acceptsIn(t *testing.T, b *bus.Bus, r client.Receipt) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	evs, err := b.CaseEvents(ctx, r.CaseID)
	if err != nil {
		t.Fatalf("read EVENTS: %v", err)
	}
	n := 0
	for _, e := range evs {
		_, c, err := set.Parse(e.Token)
		if err != nil {
			t.Fatalf("EVENTS holds a token that does not parse: %v", err)
		}
		uri, _, _ := c.Event()
		if sid, _ := c.SubmissionID(); sid == r.SubmissionID && uri == set.AcceptSubmission {
			n++
		}
	}
	return n
}

// observer checks that one submission's accept is recorded fully or not
// at all, wherever it looks.
type observer struct {
	sender   *client.Sender
	receiver *client.Receiver
	receipt  client.Receipt
	// bus reads EVENTS, which the sender's event log is read from: it may
	// be ahead of the store's projection, never behind it.
	bus *bus.Bus
}

// eventsAccepts counts the submission's accept-submission events in
// EVENTS.
func (o *observer) eventsAccepts(ctx context.Context) (int, error) {
	evs, err := o.bus.CaseEvents(ctx, o.receipt.CaseID)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range evs {
		if _, sid, uri, ok := e.Read(); ok && sid == o.receipt.SubmissionID && uri == set.AcceptSubmission {
			n++
		}
	}
	return n, nil
}

// storeAccepts counts the submission's accept-submission events in the
// store's log of its case.
func (o *observer) storeAccepts(ctx context.Context, st roles.Store) (int, error) {
	evs, _, err := st.Events(ctx, o.receipt.CaseID, store.Page{Limit: store.MaxPageLimit})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range evs {
		if e.SubmissionID == o.receipt.SubmissionID && e.Type == set.AcceptSubmission {
			n++
		}
	}
	return n, nil
}

// observe looks once and returns what contradicts itself, and whether
// the accept is recorded. A decision, once recorded, stays; so reading
// the event log first and last brackets every other reading: an accept
// in the first read must show everywhere, one missing from the last read
// nowhere. live adds what only the running process answers: the sender's
// verified status and the pickup list.
func (o *observer) observe(ctx context.Context, st roles.Store, live bool) (bool, []string, error) {
	sid := o.receipt.SubmissionID
	first, err := o.storeAccepts(ctx, st)
	if err != nil {
		return false, nil, fmt.Errorf("store events: %w", err)
	}
	sub, err := st.Submission(ctx, sid)
	if err != nil {
		return false, nil, fmt.Errorf("store submission: %w", err)
	}
	var (
		state               client.State
		listed              bool
		evsBefore, evsAfter int
	)
	if live {
		if evsBefore, err = o.eventsAccepts(ctx); err != nil {
			return false, nil, fmt.Errorf("EVENTS: %w", err)
		}
		status, err := o.sender.StatusOf(ctx, o.receipt)
		if err != nil {
			return false, nil, fmt.Errorf("sender status: %w", err)
		}
		state = status.State
		list, err := o.receiver.ListSubmissions(ctx, o.receipt.DestinationID, 500, 0)
		if err != nil {
			return false, nil, fmt.Errorf("pickup list: %w", err)
		}
		for _, p := range list.Submissions {
			listed = listed || p.SubmissionID == sid
		}
		if list.TotalCount > len(list.Submissions) {
			return false, nil, fmt.Errorf("pickup list of %d exceeds one page", list.TotalCount)
		}
		if evsAfter, err = o.eventsAccepts(ctx); err != nil {
			return false, nil, fmt.Errorf("EVENTS: %w", err)
		}
	}
	last, err := o.storeAccepts(ctx, st)
	if err != nil {
		return false, nil, fmt.Errorf("store events: %w", err)
	}
	var bad []string
	if first > 1 || last > 1 {
		bad = append(bad, fmt.Sprintf("the case holds %d accepts of the submission", max(first, last)))
	}
	if first > 0 {
		if sub.Status != sealed.Accepted {
			bad = append(bad, fmt.Sprintf("the case holds the accept but the store's status is %s", sub.Status))
		}
		if live && listed {
			bad = append(bad, "the case holds the accept but the submission is still listed for pickup")
		}
	}
	if last == 0 {
		if sub.Status != sealed.Submitted {
			bad = append(bad, fmt.Sprintf("the case holds no accept but the store's status is %s", sub.Status))
		}
		if live && !listed {
			bad = append(bad, "the case holds no accept but the submission left the pickup list")
		}
	}
	if live {
		// The event log is EVENTS: the sender sees the accept once EVENTS
		// holds it, whatever the projection has yet, and never otherwise.
		switch {
		case max(evsBefore, evsAfter) > 1:
			bad = append(bad, fmt.Sprintf("EVENTS holds %d accepts of the submission", max(evsBefore, evsAfter)))
		case evsBefore > 0 && state != client.StateAccepted:
			bad = append(bad, fmt.Sprintf("EVENTS holds the accept but the sender's verified status is %s", state))
		case evsAfter == 0 && state != client.StateSubmitted:
			bad = append(bad, fmt.Sprintf("EVENTS holds no accept but the sender's verified status is %s", state))
		case first > 0 && evsAfter == 0:
			bad = append(bad, "the store holds an accept EVENTS does not")
		}
	}
	return first > 0 && last > 0, bad, nil
}

// check observes once, fails t on a contradiction and reports whether the
// accept is recorded.
func (o *observer) check(t *testing.T, st roles.Store, live bool) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recorded, bad, err := o.observe(ctx, st, live)
	if err != nil {
		t.Fatalf("observe: %v", err)
	}
	for _, b := range bad {
		t.Errorf("half-recorded decision: %s", b)
	}
	return recorded
}

// watch observes over and over until the returned stop is called, which
// lets the observation under way finish and returns how many were made.
func (o *observer) watch(t *testing.T, st roles.Store) (stop func() int) {
	var stopped atomic.Bool
	n := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stopped.Load() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, bad, err := o.observe(ctx, st, true)
			cancel()
			if err != nil {
				t.Errorf("observe while the retry ran: %v", err)
				return
			}
			n++
			for _, b := range bad {
				t.Errorf("half-recorded decision while the retry ran: %s", b)
			}
		}
	}()
	return func() int {
		stopped.Store(true)
		<-done
		return n
	}
}

// checkOnce checks that the accept is recorded exactly once: one event in
// EVENTS, in the store and in the sender's verified log, and the store's
// status accepted.
func (o *observer) checkOnce(t *testing.T, st roles.Store, b *bus.Bus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if n := acceptsIn(t, b, o.receipt); n != 1 {
		t.Errorf("EVENTS holds %d accepts, want 1", n)
	}
	if n, err := o.storeAccepts(ctx, st); err != nil || n != 1 {
		t.Errorf("the store holds %d accepts (%v), want 1", n, err)
	}
	if sub, err := st.Submission(ctx, o.receipt.SubmissionID); err != nil || sub.Status != sealed.Accepted {
		t.Errorf("store status %s (%v), want accepted", sub.Status, err)
	}
	status, err := o.sender.StatusOf(ctx, o.receipt)
	if err != nil {
		t.Fatalf("sender status: %v", err)
	}
	n := 0
	for _, ev := range status.Events {
		if ev.Type == set.AcceptSubmission {
			n++
		}
	}
	if status.State != client.StateAccepted || status.Decision != client.StateAccepted || n != 1 {
		t.Errorf("sender's verified status %s, decision %s, %d accepts; want accepted once", status.State, status.Decision, n)
	}
}
