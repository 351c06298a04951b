package router_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/router"
)

func newRouter(t *testing.T, b *bus.Bus, st store.Store, reg *prometheus.Registry, resolve router.Resolver) *router.Router {
	t.Helper()
	rt, err := router.New(router.Config{
		Bus: b, Store: st, Issuer: flowtest.Issuer(t, b, issuer), Resolver: resolve, Registry: reg, Concurrency: 2,
	})
	if err != nil {
		t.Fatalf("new router: %v", err)
	}
	return rt
}

func inboxSubject(t *testing.T, d store.Destination) string {
	t.Helper()
	s, err := bus.InboxSubject(d.HomeRegion, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRoutes(t *testing.T) {
	for _, be := range flowtest.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			b, _ := bustest.Bus(t)
			st := be.Open(t)
			d := destination()
			createDestination(t, st, d)
			reg := prometheus.NewRegistry()
			flowtest.Start(t, newRouter(t, b, st, reg, nil))

			s := submission(d.ID)
			sent := time.Now()
			submit(t, b, s)
			subject := inboxSubject(t, d)
			var routed []*jetstream.RawStreamMsg
			flowtest.Eventually(t, 20*time.Second, func() error {
				if routed = flowtest.Messages(t, b, bus.StreamInbox, subject); len(routed) != 1 {
					return fmt.Errorf("%d messages in the inbox", len(routed))
				}
				return nil
			})
			m := routed[0]
			for header, want := range map[string]string{
				jetstream.MsgIDHeader: s.SubmissionID,
				"ce-type":             sealed.TypeRouted,
				"ce-id":               s.SubmissionID,
				"ce-traceparent":      traceparent,
			} {
				if got := m.Header.Get(header); got != want {
					t.Errorf("header %s = %q, want %q", header, got, want)
				}
			}
			// When INGRESS stored it, to the fraction of a second.
			submitted, err := time.Parse(time.RFC3339Nano, m.Header.Get("ce-"+bus.ExtensionSubmittedTime))
			if err != nil || submitted.Before(sent) || submitted.After(m.Time) || submitted.Nanosecond() == 0 {
				t.Errorf("submitted time %q (%v), want one between the submit at %v and INBOX's %v", m.Header.Get("ce-"+bus.ExtensionSubmittedTime), err, sent, m.Time)
			}
			got, err := sealed.Decode(m.Data)
			if err != nil {
				t.Fatalf("decode routed message: %v", err)
			}
			if !reflect.DeepEqual(got, s) {
				t.Errorf("routed %+v, want %+v", got, s)
			}

			// The same submission again, as after a lost ack or a gateway
			// retry past the ingress duplicates window: routed once.
			submit(t, b, s, uuid.NewString())
			flowtest.Settled(t, b, bus.StreamIngress, router.Durable)
			if n := len(flowtest.Messages(t, b, bus.StreamInbox, bus.PrefixInbox)); n != 1 {
				t.Errorf("%d messages in the inbox after the repeat, want 1", n)
			}
			if n := len(flowtest.Messages(t, b, bus.StreamIngress, bus.PrefixIngress)); n != 0 {
				t.Errorf("%d messages left in ingress", n)
			}
			if n := len(flowtest.Messages(t, b, bus.StreamEvents, bus.PrefixEvents)); n != 0 {
				t.Errorf("%d events published for a routable submission", n)
			}
			for outcome, want := range map[string]float64{"routed": 1, "duplicate": 1, "unroutable": 0, "invalid": 0} {
				if got := flowtest.Counter(t, reg, "amtsbote_router_messages_total", map[string]string{"outcome": outcome, "land": "08"}); got != want {
					t.Errorf("%s: %v, want %v", outcome, got, want)
				}
			}
		})
	}
}

func TestUnroutable(t *testing.T) {
	other := uuid.NewString()
	past := time.Now().Add(-time.Hour)
	tests := []struct {
		name    string
		change  func(*store.Destination) // nil: the destination stays as created
		create  bool                     // false: the destination never exists
		region  string                   // overrides the submission's region
		resolve router.Resolver
		reason  string // "" means routed
		problem string
	}{
		{name: "active", create: true},
		{name: "deactivated", create: true, change: func(d *store.Destination) { d.Status = store.StatusInactive },
			reason: router.ReasonDestinationInactive, problem: router.ProblemDestinationUnavailable},
		{name: "decommissioned", create: true, change: func(d *store.Destination) { d.Status = store.StatusDecommissioned },
			reason: router.ReasonDestinationInactive, problem: router.ProblemDestinationUnavailable},
		{name: "gone", reason: router.ReasonDestinationGone, problem: router.ProblemDestinationUnavailable},
		{name: "service withdrawn", create: true,
			change: func(d *store.Destination) { d.Services[0].Identifier = "urn:de:fim:leika:leistung:99107004018000" },
			reason: router.ReasonServiceNotOffered, problem: router.ProblemServiceNotOffered},
		{name: "service handed over", create: true, change: func(d *store.Destination) { d.Services[0].ValidUntil = &past },
			reason: router.ReasonServiceNotOffered, problem: router.ProblemServiceNotOffered},
		{name: "region not served", create: true, region: "DE091620000000",
			reason: router.ReasonServiceNotOffered, problem: router.ProblemServiceNotOffered},
		{name: "still responsible", create: true,
			resolve: func(svc, ars string, _ time.Time) (string, bool) { return "", false }},
		{name: "another is responsible", create: true,
			resolve: func(string, string, time.Time) (string, bool) { return other, true },
			reason:  router.ReasonNotResponsible, problem: router.ProblemNotResponsible},
		{name: "none is responsible", create: true,
			resolve: func(string, string, time.Time) (string, bool) { return "", false },
			reason:  router.ReasonNotResponsible, problem: router.ProblemNotResponsible},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := bustest.Bus(t)
			st := flowtest.OpenSQLite(t)
			d := destination()
			if tc.create {
				createDestination(t, st, d)
			}
			s := submission(d.ID)
			if tc.region != "" {
				s.Region = tc.region
			}
			resolve := tc.resolve
			if tc.name == "still responsible" {
				resolve = func(svc, ars string, _ time.Time) (string, bool) {
					if svc != service || ars != gemeinde {
						t.Errorf("resolve(%q, %q)", svc, ars)
					}
					return d.ID, true
				}
			}
			// Submitted first, changed before the router sees it.
			submit(t, b, s)
			if tc.change != nil {
				if _, err := st.UpdateDestination(context.Background(), "test", d.ID, func(d *store.Destination) error {
					tc.change(d)
					return nil
				}); err != nil {
					t.Fatalf("update destination: %v", err)
				}
			}
			reg := prometheus.NewRegistry()
			flowtest.Start(t, newRouter(t, b, st, reg, resolve))
			flowtest.Settled(t, b, bus.StreamIngress, router.Durable)

			inbox := flowtest.Messages(t, b, bus.StreamInbox, bus.PrefixInbox)
			dead := flowtest.Messages(t, b, bus.StreamDead, bus.PrefixDead)
			events := flowtest.Messages(t, b, bus.StreamEvents, bus.PrefixEvents)
			if tc.reason == "" {
				if len(inbox) != 1 || len(dead) != 0 || len(events) != 0 {
					t.Fatalf("routable: %d routed, %d dead, %d events; want 1, 0, 0", len(inbox), len(dead), len(events))
				}
				return
			}
			if len(inbox) != 0 || len(dead) != 1 || len(events) != 1 {
				t.Fatalf("%d routed, %d dead, %d events; want 0, 1, 1", len(inbox), len(dead), len(events))
			}
			checkDead(t, dead[0], tc.reason, s.SubmissionID)
			checkReject(t, events[0], s, tc.problem)
			if got := flowtest.Counter(t, reg, "amtsbote_router_unroutable_total", map[string]string{"reason": tc.reason, "land": "08"}); got != 1 {
				t.Errorf("unroutable counter %v, want 1", got)
			}

			// Delivered again (as after a lost term): another dead letter,
			// but the same reject-submission event, which EVENTS drops.
			submit(t, b, s, uuid.NewString())
			flowtest.Settled(t, b, bus.StreamIngress, router.Durable)
			if n := len(flowtest.Messages(t, b, bus.StreamDead, bus.PrefixDead)); n != 2 {
				t.Errorf("%d dead letters after the repeat, want 2", n)
			}
			if n := len(flowtest.Messages(t, b, bus.StreamEvents, bus.PrefixEvents)); n != 1 {
				t.Errorf("%d events after the repeat, want 1", n)
			}
		})
	}
}

// checkDead checks a dead letter's subject and reason headers.
func checkDead(t *testing.T, m *jetstream.RawStreamMsg, reason, submissionID string) {
	t.Helper()
	if want := bus.PrefixDead + "." + reason; m.Subject != want {
		t.Errorf("dead letter subject %s, want %s", m.Subject, want)
	}
	for header, want := range map[string]string{
		bus.HeaderDeadReason:      reason,
		bus.HeaderDeadConsumer:    router.Durable,
		bus.HeaderOriginalStream:  bus.StreamIngress,
		bus.HeaderOriginalMsgID:   submissionID,
		bus.HeaderOriginalSubject: bus.PrefixIngress + ".08.08311." + gemeinde + "." + leikaKey,
	} {
		if got := m.Header.Get(header); got != want {
			t.Errorf("dead letter header %s = %q, want %q", header, got, want)
		}
	}
	if m.Header.Get(bus.HeaderDeadError) == "" {
		t.Errorf("dead letter without %s", bus.HeaderDeadError)
	}
}

// checkReject checks that m is Amtsbote's signed reject-submission event
// for s with one problem of type problemType.
func checkReject(t *testing.T, m *jetstream.RawStreamMsg, s sealed.Submission, problemType string) {
	t.Helper()
	if want, _ := bus.EventsSubject(s.CaseID); m.Subject != want {
		t.Errorf("event subject %s, want %s", m.Subject, want)
	}
	for header, want := range map[string]string{"ce-type": sealed.TypeEvent, "ce-subject": s.SubmissionID, "ce-traceparent": traceparent} {
		if got := m.Header.Get(header); got != want {
			t.Errorf("event header %s = %q, want %q", header, got, want)
		}
	}
	c, err := set.Verify(string(m.Data), &flowtest.Signer(t).Private.PublicKey)
	if err != nil {
		t.Fatalf("verify reject-submission: %v", err)
	}
	if got := m.Header.Get(jetstream.MsgIDHeader); got != c.JTI {
		t.Errorf("Nats-Msg-Id %q, want the jti %q", got, c.JTI)
	}
	if want := flowtest.JTI(t, s.SubmissionID, set.RejectSubmission); c.JTI != want {
		t.Errorf("jti %s, want the derived %s", c.JTI, want)
	}
	sid, _ := c.SubmissionID()
	cid, _ := c.CaseID()
	if c.Issuer != issuer || sid != s.SubmissionID || cid != s.CaseID {
		t.Errorf("claims iss %q sub %q txn %q", c.Issuer, c.Subject, c.Txn)
	}
	problems, err := c.Problems()
	if err != nil {
		t.Fatalf("problems: %v", err)
	}
	if len(problems) != 1 || problems[0].Type != problemType || problems[0].Detail == "" {
		t.Errorf("problems %+v, want one of type %s with a detail", problems, problemType)
	}
}

func TestInvalidMessages(t *testing.T) {
	d := destination()
	valid := submission(d.ID)
	body, _ := json.Marshal(valid)
	noPayload := valid
	noPayload.Payload = nil
	noPayloadBody, _ := json.Marshal(noPayload)
	tests := []struct {
		name   string
		typ    string
		body   []byte
		reason string
	}{
		{"not json", sealed.TypeSubmitted, []byte("not json"), router.ReasonInvalid},
		{"no payload", sealed.TypeSubmitted, noPayloadBody, router.ReasonInvalid},
		{"bad ids", sealed.TypeSubmitted, []byte(`{"submissionId":"1","caseId":"2","destinationId":"3","service":"x","payload":{"encryptedMetadata":"a"}}`), router.ReasonInvalid},
		{"wrong type", sealed.TypeRouted, body, router.ReasonInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := bustest.Bus(t)
			st := flowtest.OpenSQLite(t)
			createDestination(t, st, d)
			reg := prometheus.NewRegistry()
			flowtest.Start(t, newRouter(t, b, st, reg, nil))
			id := uuid.NewString()
			publishIngress(t, b, tc.typ, tc.body, id)
			var dead []*jetstream.RawStreamMsg
			flowtest.Eventually(t, 20*time.Second, func() error {
				if dead = flowtest.Messages(t, b, bus.StreamDead, bus.PrefixDead); len(dead) != 1 {
					return fmt.Errorf("%d dead letters", len(dead))
				}
				return nil
			})
			checkDead(t, dead[0], tc.reason, id)
			flowtest.Settled(t, b, bus.StreamIngress, router.Durable)
			if n := len(flowtest.Messages(t, b, bus.StreamInbox, bus.PrefixInbox)); n != 0 {
				t.Errorf("%d routed", n)
			}
			if n := len(flowtest.Messages(t, b, bus.StreamEvents, bus.PrefixEvents)); n != 0 {
				t.Errorf("%d events for an invalid message", n)
			}
			if got := flowtest.Counter(t, reg, "amtsbote_router_messages_total", map[string]string{"outcome": "invalid"}); got != 1 {
				t.Errorf("invalid counter %v, want 1", got)
			}
		})
	}
}

func TestRoutersShareWork(t *testing.T) {
	b, node := bustest.Bus(t)
	st := flowtest.OpenSQLite(t)
	d := destination()
	createDestination(t, st, d)
	regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
	for _, reg := range regs {
		// Each router on its own connection, as in separate processes.
		flowtest.Start(t, newRouter(t, bustest.Connect(t, node.URL), st, reg, nil))
	}
	const n = 40
	want := make(map[string]bool)
	for range n {
		s := submission(d.ID)
		want[s.SubmissionID] = true
		submit(t, b, s)
	}
	flowtest.Eventually(t, 60*time.Second, func() error {
		if got := len(flowtest.Messages(t, b, bus.StreamInbox, bus.PrefixInbox)); got != n {
			return fmt.Errorf("%d of %d routed", got, n)
		}
		return nil
	})
	flowtest.Settled(t, b, bus.StreamIngress, router.Durable)
	checkRoutedOnce(t, b, want)
	var routed, duplicates float64
	for i, reg := range regs {
		r := flowtest.Counter(t, reg, "amtsbote_router_messages_total", map[string]string{"outcome": "routed"})
		t.Logf("router %d routed %v", i+1, r)
		routed += r
		duplicates += flowtest.Counter(t, reg, "amtsbote_router_messages_total", map[string]string{"outcome": "duplicate"})
	}
	if routed != n || duplicates != 0 {
		t.Errorf("routed %v with %v duplicates, want %d and 0", routed, duplicates, n)
	}
}

// checkRoutedOnce checks that INBOX holds each submission of want exactly once.
func checkRoutedOnce(t *testing.T, b *bus.Bus, want map[string]bool) {
	t.Helper()
	seen := make(map[string]int)
	for _, m := range flowtest.Messages(t, b, bus.StreamInbox, bus.PrefixInbox) {
		s, err := sealed.Decode(m.Data)
		if err != nil {
			t.Fatalf("decode routed message: %v", err)
		}
		seen[s.SubmissionID]++
	}
	for id := range want {
		if seen[id] != 1 {
			t.Errorf("submission %s routed %d times", id, seen[id])
		}
	}
	if len(seen) != len(want) {
		t.Errorf("%d submissions routed, want %d", len(seen), len(want))
	}
}

func TestRouterCatchesUp(t *testing.T) {
	b, _ := bustest.Bus(t)
	st := flowtest.OpenSQLite(t)
	d := destination()
	createDestination(t, st, d)
	want := make(map[string]bool)
	fill := func(n int) {
		for range n {
			s := submission(d.ID)
			want[s.SubmissionID] = true
			submit(t, b, s)
		}
	}

	// Ingress fills while no router runs.
	fill(30)
	if n := len(flowtest.Messages(t, b, bus.StreamIngress, bus.PrefixIngress)); n != 30 {
		t.Fatalf("%d waiting in ingress, want 30", n)
	}

	// A router starts, and stops again in the middle of the work.
	first := flowtest.Start(t, newRouter(t, b, st, prometheus.NewRegistry(), nil))
	flowtest.Eventually(t, 20*time.Second, func() error {
		if n := len(flowtest.Messages(t, b, bus.StreamInbox, bus.PrefixInbox)); n == 0 {
			return fmt.Errorf("nothing routed yet")
		}
		return nil
	})
	first.Stop(t)
	fill(10)

	// Another takes over and finishes.
	flowtest.Start(t, newRouter(t, b, st, prometheus.NewRegistry(), nil))
	flowtest.Eventually(t, 60*time.Second, func() error {
		if got := len(flowtest.Messages(t, b, bus.StreamInbox, bus.PrefixInbox)); got != len(want) {
			return fmt.Errorf("%d of %d routed", got, len(want))
		}
		return nil
	})
	flowtest.Settled(t, b, bus.StreamIngress, router.Durable)
	checkRoutedOnce(t, b, want)
	if n := len(flowtest.Messages(t, b, bus.StreamIngress, bus.PrefixIngress)); n != 0 {
		t.Errorf("%d left in ingress", n)
	}
}

func TestNewChecksConfig(t *testing.T) {
	b, _ := bustest.Bus(t)
	st := flowtest.OpenSQLite(t)
	good := router.Config{Bus: b, Store: st, Issuer: flowtest.Issuer(t, b, issuer)}
	tests := []struct {
		name   string
		change func(*router.Config)
	}{
		{"no bus", func(c *router.Config) { c.Bus = nil }},
		{"no store", func(c *router.Config) { c.Store = nil }},
		{"no issuer", func(c *router.Config) { c.Issuer = nil }},
		{"negative concurrency", func(c *router.Config) { c.Concurrency = -1 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.change(&cfg)
			if _, err := router.New(cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	reg := prometheus.NewRegistry()
	cfg := good
	cfg.Registry = reg
	if _, err := router.New(cfg); err != nil {
		t.Fatalf("new: %v", err)
	}
	if _, err := router.New(cfg); err == nil {
		t.Error("second router registered the same metrics")
	}
}

// TestRedriveOfARejectedSubmission proves that a submission rejected as
// unroutable is not routed when its dead letter is re-driven after the
// route was mended: the sender was told it is rejected, and the dead
// letter comes back with the reason.
func TestRedriveOfARejectedSubmission(t *testing.T) {
	ctx := context.Background()
	b, st := redriveEnv(t)
	d := destination()
	d.Status = store.StatusInactive
	createDestination(t, st, d)
	s := submission(d.ID)
	record(t, st, s)
	submit(t, b, s)
	flowtest.Start(t, newRouter(t, b, st, prometheus.NewRegistry(), nil))
	flowtest.Settled(t, b, bus.StreamIngress, router.Durable)
	dead := flowtest.Messages(t, b, bus.StreamDead, bus.PrefixDead)
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	checkDead(t, dead[0], router.ReasonDestinationInactive, s.SubmissionID)

	if _, err := st.UpdateDestination(ctx, "test", d.ID, func(d *store.Destination) error {
		d.Status = store.StatusActive
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	flowtest.Eventually(t, 10*time.Second, func() error {
		_, err := b.Redrive(ctx, dead[0].Sequence)
		return err
	})
	flowtest.Settled(t, b, bus.StreamIngress, router.Durable)
	if inbox := flowtest.Messages(t, b, bus.StreamInbox, bus.PrefixInbox); len(inbox) != 0 {
		t.Fatalf("%d routed after the re-drive, want none", len(inbox))
	}
	dead = flowtest.Messages(t, b, bus.StreamDead, bus.PrefixDead)
	if len(dead) != 1 {
		t.Fatalf("%d dead letters after the re-drive, want 1", len(dead))
	}
	checkDead(t, dead[0], router.ReasonDecided, s.SubmissionID)
	if !strings.Contains(dead[0].Header.Get(bus.HeaderDeadError), "reject-submission") {
		t.Errorf("dead letter error %q, want the reject named", dead[0].Header.Get(bus.HeaderDeadError))
	}
}

// TestRedriveOfAForgedDeadLetter: a dead letter is written by whoever may
// publish to DEAD, a subscriber's user among them. One naming INGRESS with
// a real submission sent elsewhere is re-driven by an operator: the router
// neither routes it nor rejects the submission in Amtsbote's name.
func TestRedriveOfAForgedDeadLetter(t *testing.T) {
	ctx := context.Background()
	b, st := redriveEnv(t)
	d := destination()
	createDestination(t, st, d)
	s := submission(d.ID)
	record(t, st, s)
	submit(t, b, s)
	flowtest.Start(t, newRouter(t, b, st, prometheus.NewRegistry(), nil))
	flowtest.Settled(t, b, bus.StreamIngress, router.Durable)
	if inbox := flowtest.Messages(t, b, bus.StreamInbox, bus.PrefixInbox); len(inbox) != 1 {
		t.Fatalf("%d routed, want 1", len(inbox))
	}

	subject, err := bus.IngressSubject(gemeinde, leikaKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, forge := range []func(*sealed.Submission){
		func(f *sealed.Submission) { f.DestinationID = uuid.NewString() },
		func(f *sealed.Submission) { f.Service = "urn:de:fim:leika:leistung:99107004018000" },
		func(f *sealed.Submission) { f.CaseID = uuid.NewString() },
		func(f *sealed.Submission) { f.SubmissionID = uuid.NewString() },
	} {
		forged := s
		forge(&forged)
		body, err := json.Marshal(forged)
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(bus.PrefixDead + "." + bus.ReasonPermanent)
		for k, v := range map[string]string{
			"ce-specversion": "1.0", "ce-id": forged.SubmissionID, "ce-source": issuer, "ce-type": sealed.TypeSubmitted,
			"content-type": "application/json", bus.HeaderOriginalSubject: subject, bus.HeaderOriginalStream: bus.StreamIngress,
			bus.HeaderOriginalMsgID: uuid.NewString(), bus.HeaderDeadReason: bus.ReasonPermanent, bus.HeaderDeadError: "sink refused: disk full",
		} {
			m.Header.Set(k, v)
		}
		m.Data = body
		ack, err := b.JetStream().PublishMsg(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Redrive(ctx, ack.Sequence); err != nil {
			t.Fatalf("re-drive: %v", err)
		}
	}
	flowtest.Settled(t, b, bus.StreamIngress, router.Durable)
	if inbox := flowtest.Messages(t, b, bus.StreamInbox, bus.PrefixInbox); len(inbox) != 1 {
		t.Errorf("%d routed after the forged re-drives, want the 1 before", len(inbox))
	}
	if events := flowtest.Messages(t, b, bus.StreamEvents, bus.PrefixEvents); len(events) != 0 {
		t.Errorf("%d events after the forged re-drives, want none (no reject)", len(events))
	}
	dead := flowtest.Messages(t, b, bus.StreamDead, bus.PrefixDead)
	if len(dead) != 4 {
		t.Fatalf("%d dead letters, want the 4 forged ones back", len(dead))
	}
	for _, m := range dead {
		if m.Subject != bus.PrefixDead+"."+router.ReasonInvalid || !strings.Contains(m.Header.Get(bus.HeaderDeadError), "re-driven message is not the submission recorded") {
			t.Errorf("dead letter %s: %s", m.Subject, m.Header.Get(bus.HeaderDeadError))
		}
	}
}

// record stores s as the gateway does when it is created.
func record(t *testing.T, st store.Store, s sealed.Submission) {
	t.Helper()
	if err := st.CreateSubmission(context.Background(), store.Submission{
		ID: s.SubmissionID, CaseID: s.CaseID, DestinationID: s.DestinationID, ServiceIdentifier: s.Service,
		Region: s.Region, SenderClientID: s.SenderClientID, AnnouncedAttachments: s.Attachments, CreatedAt: time.Now(),
	}); err != nil {
		t.Fatalf("record submission: %v", err)
	}
}

// redriveEnv is a bus whose duplicate window passes quickly, so that a
// dead letter can be re-driven under its original message id, and a store.
func redriveEnv(t *testing.T) (*bus.Bus, store.Store) {
	t.Helper()
	b := bustest.Connect(t, bustest.Server(t).URL)
	if err := b.Ensure(context.Background(), bus.TopologyConfig{Duplicates: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	return b, flowtest.OpenSQLite(t)
}
