package ledger_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/ledger"
)

func newLedger(t *testing.T, b *bus.Bus, st store.Store, reg *prometheus.Registry, r ledger.Retention) *ledger.Ledger {
	t.Helper()
	l, err := ledger.New(ledger.Config{
		Bus: b, Store: st, Issuer: flowtest.Issuer(t, b, issuer), Retention: r, Registry: reg, Concurrency: 2,
	})
	if err != nil {
		t.Fatalf("new ledger: %v", err)
	}
	return l
}

// tags are authentication tags of a submission: 16 bytes each.
var tags = set.AuthenticationTags{
	Metadata: base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{1}, 16)),
	Data:     base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{2}, 16)),
}

func TestProjectsEvents(t *testing.T) {
	for _, be := range flowtest.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			b, _ := bustest.Bus(t)
			st := be.Open(t)
			sub := newSubmission(sealed.Incomplete, time.Now(), nil, nil, nil)
			createSubmission(t, st, sub)
			reg := prometheus.NewRegistry()
			flowtest.Start(t, newLedger(t, b, st, reg, ledger.Retention{}))

			type step struct {
				name   string
				uri    string
				iss    string
				data   any
				status sealed.Status
				check  func(t *testing.T, s store.Submission, c set.Claims)
			}
			steps := []step{
				{"create", set.CreateSubmission, issuer, nil, sealed.Incomplete, nil},
				{"submit", set.SubmitSubmission, issuer, set.SubmitPayload{AuthenticationTags: tags}, sealed.Submitted,
					func(t *testing.T, s store.Submission, c set.Claims) {
						if s.SubmittedAt == nil || !s.SubmittedAt.Equal(c.IssuedAt) {
							t.Errorf("submitted at %v, want %v", s.SubmittedAt, c.IssuedAt)
						}
					}},
				{"notify", set.NotifySubmission, issuer, nil, sealed.Submitted,
					func(t *testing.T, s store.Submission, c set.Claims) {
						if s.PickedUpAt == nil || !s.PickedUpAt.Equal(c.IssuedAt) {
							t.Errorf("picked up at %v, want %v", s.PickedUpAt, c.IssuedAt)
						}
					}},
				{"accept", set.AcceptSubmission, sub.DestinationID, set.AcceptPayload{AuthenticationTags: tags}, sealed.Accepted, nil},
				// Recorded, as everything on EVENTS is, but no transition from accepted.
				{"reject after accept", set.RejectSubmission, sub.DestinationID,
					set.RejectPayload{Problems: []set.Problem{{Type: "https://schema.fitko.de/fit-connect/events/problems/technical-error", Instance: "submission"}}},
					sealed.Accepted, nil},
			}
			var tokens []string
			for i, st0 := range steps {
				c, token := sign(t, st0.uri, st0.iss, sub, st0.data)
				tokens = append(tokens, token)
				publishEvent(t, b, sub.CaseID, sealed.TypeEvent, []byte(token), c.JTI)
				flowtest.Eventually(t, 20*time.Second, func() error {
					if n := len(events(t, st, sub.CaseID)); n != i+1 {
						return fmt.Errorf("after %s: %d events recorded", st0.name, n)
					}
					return nil
				})
				got := submissionOf(t, st, sub.ID)
				if got.Status != st0.status {
					t.Fatalf("after %s: status %s, want %s", st0.name, got.Status, st0.status)
				}
				if st0.check != nil {
					st0.check(t, got, c)
				}
			}

			// The accept-submission again under another message id, as
			// after the stream's duplicates window: still one row.
			_, accept, _ := set.Parse(tokens[3])
			publishEvent(t, b, sub.CaseID, sealed.TypeEvent, []byte(tokens[3]), uuid.NewString())
			flowtest.Settled(t, b, bus.StreamEvents, ledger.DurableEvents)
			got := events(t, st, sub.CaseID)
			if len(got) != len(steps) {
				t.Fatalf("%d events after the repeat, want %d", len(got), len(steps))
			}
			for i, e := range got {
				if e.Token != tokens[i] {
					t.Errorf("event %d is not the token published in that order", i)
				}
				if e.SubmissionID != sub.ID || e.CaseID != sub.CaseID || e.Type != steps[i].uri || e.Issuer != steps[i].iss {
					t.Errorf("event %d: %+v", i, e)
				}
			}
			if got[3].JTI != accept.JTI {
				t.Errorf("accept recorded under jti %s, want %s", got[3].JTI, accept.JTI)
			}
			if s := submissionOf(t, st, sub.ID); s.Status != sealed.Accepted {
				t.Errorf("status %s after the repeat", s.Status)
			}
			if n := flowtest.Counter(t, reg, "amtsbote_ledger_events_total", map[string]string{"event": "accept-submission", "outcome": "unchanged"}); n != 1 {
				t.Errorf("unchanged accept counted %v times, want 1", n)
			}
			// Each stage once, the repeat and the refused reject not at
			// all; the destination is unknown to the store, so its Land is.
			for stage, want := range map[string]float64{
				ledger.StageCreated: 1, ledger.StageSubmitted: 1, ledger.StagePickedUp: 1, ledger.StageAccepted: 1,
				ledger.StageRejected: 0, ledger.StageRouted: 0, ledger.StageExpired: 0,
			} {
				if n := flowtest.Counter(t, reg, "amtsbote_submissions_total", map[string]string{"stage": stage, "land": "unknown"}); n != want {
					t.Errorf("stage %s counted %v times, want %v", stage, n, want)
				}
				if n := flowtest.Counter(t, reg, "amtsbote_submissions_total", map[string]string{"stage": stage}); n != want {
					t.Errorf("stage %s counted %v times in all Länder, want %v", stage, n, want)
				}
			}
			if n := observations(t, reg, "amtsbote_stage_duration_seconds", ledger.SubmitToAccepted); n != 1 {
				t.Errorf("submit to accept observed %d times, want 1", n)
			}
		})
	}
}

// observations counts what the histogram name of stage observed.
func observations(t *testing.T, reg *prometheus.Registry, name, stage string) uint64 {
	t.Helper()
	n, _ := histogram(t, reg, name, stage)
	return n
}

// histogram returns the count and sum of what the histogram name of
// stage observed.
func histogram(t *testing.T, reg *prometheus.Registry, name, stage string) (uint64, float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "stage" && lp.GetValue() == stage {
					n += m.GetHistogram().GetSampleCount()
					sum += m.GetHistogram().GetSampleSum()
				}
			}
		}
	}
	return n, sum
}

func TestEventOfUnknownSubmissionIsRecorded(t *testing.T) {
	b, _ := bustest.Bus(t)
	st := flowtest.OpenSQLite(t)
	flowtest.Start(t, newLedger(t, b, st, nil, ledger.Retention{}))
	sub := newSubmission(sealed.Submitted, time.Now(), nil, nil, nil)
	c, token := sign(t, set.SubmitSubmission, issuer, sub, set.SubmitPayload{AuthenticationTags: tags})
	publishEvent(t, b, sub.CaseID, sealed.TypeEvent, []byte(token), c.JTI)
	flowtest.Settled(t, b, bus.StreamEvents, ledger.DurableEvents)
	if n := len(events(t, st, sub.CaseID)); n != 1 {
		t.Errorf("%d events recorded, want 1", n)
	}
	if _, err := st.Submission(context.Background(), sub.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("submission: %v, want ErrNotFound", err)
	}
}

func TestInvalidEvents(t *testing.T) {
	sub := newSubmission(sealed.Submitted, time.Now(), nil, nil, nil)
	other := newSubmission(sealed.Submitted, time.Now(), nil, nil, nil)
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	badClaims := b64(`{"alg":"PS512","typ":"secevent+jwt","kid":"k1"}`) + "." +
		b64(`{"jti":"not-a-uuid","iss":"x","iat":1700000000,"sub":"submission:`+sub.ID+`","txn":"case:`+sub.CaseID+`","events":{}}`) + ".c2ln"
	tests := []struct {
		name    string
		caseID  string // the subject's case
		typ     string
		data    func(t *testing.T) []byte
		recheck string // a case whose log must stay empty
	}{
		{"not a token", sub.CaseID, sealed.TypeEvent, func(*testing.T) []byte { return []byte("garbage") }, sub.CaseID},
		{"claims break the rules", sub.CaseID, sealed.TypeEvent, func(*testing.T) []byte { return []byte(badClaims) }, sub.CaseID},
		{"wrong type", sub.CaseID, sealed.TypeSubmitted, func(t *testing.T) []byte {
			_, token := sign(t, set.NotifySubmission, issuer, sub, nil)
			return []byte(token)
		}, sub.CaseID},
		{"published to another case", other.CaseID, sealed.TypeEvent, func(t *testing.T) []byte {
			_, token := sign(t, set.NotifySubmission, issuer, sub, nil)
			return []byte(token)
		}, other.CaseID},
		{"submission of another case", other.CaseID, sealed.TypeEvent, func(t *testing.T) []byte {
			forged := sub
			forged.CaseID = other.CaseID
			_, token := sign(t, set.AcceptSubmission, sub.DestinationID, forged, set.AcceptPayload{AuthenticationTags: tags})
			return []byte(token)
		}, other.CaseID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := bustest.Bus(t)
			st := flowtest.OpenSQLite(t)
			createSubmission(t, st, sub)
			createSubmission(t, st, other)
			reg := prometheus.NewRegistry()
			flowtest.Start(t, newLedger(t, b, st, reg, ledger.Retention{}))
			publishEvent(t, b, tc.caseID, tc.typ, tc.data(t), uuid.NewString())
			flowtest.Settled(t, b, bus.StreamEvents, ledger.DurableEvents)
			dead := flowtest.Messages(t, b, bus.StreamDead, bus.PrefixDead)
			if len(dead) != 1 || dead[0].Subject != bus.PrefixDead+"."+ledger.ReasonInvalid {
				t.Fatalf("%d dead letters, want 1 on %s.%s", len(dead), bus.PrefixDead, ledger.ReasonInvalid)
			}
			if got := dead[0].Header.Get(bus.HeaderDeadConsumer); got != ledger.DurableEvents {
				t.Errorf("dead letter consumer %q", got)
			}
			if n := len(events(t, st, tc.recheck)); n != 0 {
				t.Errorf("%d events recorded", n)
			}
			if s := submissionOf(t, st, sub.ID); s.Status != sealed.Submitted {
				t.Errorf("status %s, want submitted", s.Status)
			}
			if n := flowtest.Counter(t, reg, "amtsbote_ledger_events_total", map[string]string{"outcome": "invalid"}); n != 1 {
				t.Errorf("invalid counted %v times, want 1", n)
			}
		})
	}
}

// publishRouted publishes s to its destination's INBOX subject as the
// router does, with msgID as Nats-Msg-Id.
// publishRouted publishes s as routed, naming when it was submitted unless
// submitted is zero.
func publishRouted(t *testing.T, b *bus.Bus, s store.Submission, msgID string, submitted time.Time) {
	t.Helper()
	subject, err := bus.InboxSubject("08311", s.DestinationID)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(sealed.Submission{
		SubmissionID: s.ID, CaseID: s.CaseID, DestinationID: s.DestinationID, Service: s.ServiceIdentifier,
		ARS: "083110000000", Attachments: []string{}, Object: sealed.PayloadObject(s.ID),
	})
	if err != nil {
		t.Fatal(err)
	}
	ev := event.New()
	ev.SetID(s.ID)
	ev.SetSource(issuer)
	ev.SetType(sealed.TypeRouted)
	ev.SetSubject(s.ID)
	if !submitted.IsZero() {
		ev.SetExtension(bus.ExtensionSubmittedTime, submitted.UTC().Format(time.RFC3339Nano))
	}
	if err := ev.SetData("application/json", body); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.Publish(ctx, subject, ev, msgID); err != nil {
		t.Fatalf("publish routed: %v", err)
	}
}

func TestMarksRouted(t *testing.T) {
	for _, be := range flowtest.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			b, _ := bustest.Bus(t)
			st := be.Open(t)
			now := time.Now()
			// The store's submitted time is the submit SET's iat, in whole
			// seconds; the routed event's own is the one measured from.
			iat := now.Add(-10 * time.Minute).Truncate(time.Second)
			sub := newSubmission(sealed.Submitted, now, &iat, nil, nil)
			createSubmission(t, st, sub)
			reg := prometheus.NewRegistry()
			flowtest.Start(t, newLedger(t, b, st, reg, ledger.Retention{}))

			pickup := func() []store.Submission {
				list, _, err := st.PickupList(context.Background(), []string{sub.DestinationID}, store.Page{})
				if err != nil {
					t.Fatalf("pickup list: %v", err)
				}
				return list
			}
			if n := len(pickup()); n != 0 {
				t.Fatalf("%d listed before routing", n)
			}
			publishRouted(t, b, sub, sub.ID, time.Now())
			var listed []store.Submission
			flowtest.Eventually(t, 20*time.Second, func() error {
				if listed = pickup(); len(listed) != 1 {
					return fmt.Errorf("%d listed", len(listed))
				}
				return nil
			})
			routedAt := listed[0].RoutedAt
			if routedAt == nil || routedAt.Before(now.Add(-time.Second)) {
				t.Fatalf("routed at %v", routedAt)
			}

			// Routed again (a redelivery past the duplicates window): the
			// first time stays.
			publishRouted(t, b, sub, uuid.NewString(), time.Time{})
			flowtest.Settled(t, b, bus.StreamInbox, ledger.DurableInbox)
			if got := submissionOf(t, st, sub.ID).RoutedAt; got == nil || !got.Equal(*routedAt) {
				t.Errorf("routed at %v after the repeat, want %v", got, routedAt)
			}
			if n, sum := histogram(t, reg, "amtsbote_stage_duration_seconds", ledger.SubmitToRouted); n != 1 || sum > 60 {
				t.Errorf("submit to routed: %d observations of %v s in all, want 1 of the routed event's submitted time, not the SET's 10 minutes before", n, sum)
			}
			for outcome, want := range map[string]float64{"applied": 1, "unchanged": 1} {
				if n := flowtest.Counter(t, reg, "amtsbote_ledger_routed_total", map[string]string{"outcome": outcome}); n != want {
					t.Errorf("%s: %v, want %v", outcome, n, want)
				}
			}

			// A routed submission of no stored submission is acknowledged;
			// one that names no submission is dead-lettered.
			publishRouted(t, b, newSubmission(sealed.Submitted, now, &now, nil, nil), uuid.NewString(), time.Time{})
			subject, _ := bus.InboxSubject("08311", sub.DestinationID)
			ev := event.New()
			ev.SetID(uuid.NewString())
			ev.SetSource(issuer)
			ev.SetType(sealed.TypeRouted)
			_ = ev.SetData("application/json", []byte(`{"submissionId":"x"}`))
			if _, err := b.Publish(context.Background(), subject, ev, ev.ID()); err != nil {
				t.Fatal(err)
			}
			flowtest.Settled(t, b, bus.StreamInbox, ledger.DurableInbox)
			if dead := flowtest.Messages(t, b, bus.StreamDead, bus.PrefixDead); len(dead) != 1 {
				t.Errorf("%d dead letters, want 1", len(dead))
			}
		})
	}
}

func TestNewChecksConfig(t *testing.T) {
	b, _ := bustest.Bus(t)
	st := flowtest.OpenSQLite(t)
	good := ledger.Config{Bus: b, Store: st, Issuer: flowtest.Issuer(t, b, issuer)}
	tests := []struct {
		name   string
		change func(*ledger.Config)
	}{
		{"no bus", func(c *ledger.Config) { c.Bus = nil }},
		{"no store", func(c *ledger.Config) { c.Store = nil }},
		{"no issuer", func(c *ledger.Config) { c.Issuer = nil }},
		{"negative concurrency", func(c *ledger.Config) { c.Concurrency = -1 }},
		{"negative retention", func(c *ledger.Config) { c.Retention.AfterPickup = -time.Second }},
		{"deletion before rejection", func(c *ledger.Config) {
			c.Retention.RejectUnpicked, c.Retention.DeleteUnpicked = 2*time.Second, time.Second
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.change(&cfg)
			if _, err := ledger.New(cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestConsumersNeverGiveUp checks that the ledger's durables redeliver
// however long the store fails, also where an earlier release made them
// with a last delivery: an event dead-lettered then would be missing
// from the store for good.
func TestConsumersNeverGiveUp(t *testing.T) {
	b, _ := bustest.Bus(t)
	st := flowtest.OpenSQLite(t)
	ctx := context.Background()
	if err := b.EnsureConsumer(ctx, bus.ConsumerConfig{Stream: bus.StreamEvents, Durable: ledger.DurableEvents, FilterSubjects: []string{bus.PrefixEvents + ".>"}, MaxDeliver: 10}); err != nil {
		t.Fatal(err)
	}
	flowtest.Start(t, newLedger(t, b, st, prometheus.NewRegistry(), ledger.Retention{}))
	for _, c := range []struct{ stream, durable string }{
		{bus.StreamEvents, ledger.DurableEvents},
		{bus.StreamInbox, ledger.DurableInbox},
	} {
		flowtest.Eventually(t, 10*time.Second, func() error {
			cons, err := b.JetStream().Consumer(ctx, c.stream, c.durable)
			if err != nil {
				return err
			}
			if md := cons.CachedInfo().Config.MaxDeliver; md != -1 {
				return fmt.Errorf("%s: max deliver %d, want -1", c.durable, md)
			}
			return nil
		})
	}
}
