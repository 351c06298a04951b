package gateway_test

import (
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
