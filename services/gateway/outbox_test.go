package gateway_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// TestOutboxSurvivesAStoppedGateway proves that an accepted request's
// event is not lost when no signer runs: a gateway without one takes a
// create and a submit; a signer started later on the same bus finds both
// events in the outbox and publishes them once.
func TestOutboxSurvivesAStoppedGateway(t *testing.T) {
	st := flowtest.OpenSQLite(t)
	b, _ := bustest.Bus(t)
	stopped := newEnvOn(t, st, withBus(b))
	stoppedFlow := &flowEnv{env: stopped, bus: b}
	d := stopped.createDestination(newUUID(t), store.StatusActive, "DE08311")
	sender := stopped.token("send:region:DE08")
	s := stoppedFlow.prepare(t, sender, d, 1)
	stoppedFlow.submit(t, sender, s).want(t, http.StatusAccepted)

	var outbox []string
	for k := range stoppedFlow.stateEntries(t) {
		if strings.HasPrefix(k, sealed.OutboxPrefix) {
			outbox = append(outbox, k)
		}
	}
	slices.Sort(outbox)
	want := []string{
		sealed.OutboxKey(stopped.jti(s.SubmissionID, set.CreateSubmission)),
		sealed.OutboxKey(stopped.jti(s.SubmissionID, set.SubmitSubmission)),
	}
	slices.Sort(want)
	if !slices.Equal(outbox, want) {
		t.Fatalf("outbox holds %v, want the create- and submit-submission %v", outbox, want)
	}
	if n := len(flowtest.Messages(t, stoppedFlow.bus, bus.StreamEvents, "")); n != 0 {
		t.Fatalf("EVENTS holds %d messages before any worker ran", n)
	}

	f := newFlowEnvOn(t, st, b)
	log := f.waitEvents(t, f.adminToken(), s.CaseID, "create-submission", "submit-submission")
	f.settle(t)
	if n := len(flowtest.Messages(t, f.bus, bus.StreamEvents, "")); n != 2 {
		t.Errorf("EVENTS holds %d messages, want 2", n)
	}
	// The recovered events are signed by Amtsbote and carry the tags.
	pub := f.jwksKey(t)
	for _, tok := range log.EventLog {
		c, err := set.Verify(tok, pub)
		if err != nil {
			t.Fatalf("recovered event: %v", err)
		}
		if uri, _, _ := c.Event(); uri == set.SubmitSubmission {
			tags, err := c.Tags()
			must(t, err)
			if !tags.Equal(s.tags()) {
				t.Errorf("recovered tags %+v, want %+v", tags, s.tags())
			}
		}
	}
}

// A sender reading its case's event log right after its submit finds the
// create- and submit-submission there, in that order, however far behind
// the signers are: the gateway publishes what of the case still waits in
// the outbox before it answers. This gateway has no signer at all.
func TestEventLogRightAfterSubmit(t *testing.T) {
	st := flowtest.OpenSQLite(t)
	b, _ := bustest.Bus(t)
	e := newEnvOn(t, st, withBus(b))
	f := &flowEnv{env: e, bus: b}
	d := e.createDestination(newUUID(t), store.StatusActive, "DE08311")
	sender := e.token("send:region:DE08")
	s := f.prepare(t, sender, d, 1)
	f.submit(t, sender, s).want(t, http.StatusAccepted)

	for _, page := range []string{"", "?limit=1&offset=1"} {
		r := f.call(t, http.MethodGet, "/v1/cases/"+s.CaseID+"/events"+page, sender, "", nil)
		if r.status != http.StatusOK {
			t.Fatalf("GET events%s: status %d: %s", page, r.status, r.body)
		}
		var log eventLogBody
		must(t, json.Unmarshal(r.body, &log))
		want := []string{"create-submission", "submit-submission"}
		if page != "" {
			want = want[1:]
		}
		if got := eventTypes(t, log.EventLog); !slices.Equal(got, want) || log.TotalCount != 2 {
			t.Errorf("GET events%s: %v of %d, want %v of 2", page, got, log.TotalCount, want)
		}
	}
	for k := range f.stateEntries(t) {
		if strings.HasPrefix(k, sealed.OutboxPrefix) {
			t.Errorf("outbox still holds %s", k)
		}
	}
	if n := len(flowtest.Messages(t, b, bus.StreamEvents, "")); n != 2 {
		t.Errorf("EVENTS holds %d messages, want 2", n)
	}
}
