package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/gateway/admin"
)

// deadWindow is the duplicates window of the dead-letter tests' streams.
const deadWindow = 300 * time.Millisecond

// deadFixture is a gateway on a bus whose consumer dead-letters every
// inbox message until fixed, then counts what reaches it.
type deadFixture struct {
	*env
	bus  *bus.Bus
	spec *ownSpec

	mu       sync.Mutex
	fixed    bool
	received map[string]int
}

func newDeadFixture(t *testing.T) *deadFixture {
	t.Helper()
	node := bustest.Server(t)
	b := bustest.Connect(t, node.URL)
	if err := b.Ensure(context.Background(), bus.TopologyConfig{Duplicates: deadWindow}); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, withBus(b))
	f := &deadFixture{env: e, bus: b, spec: newOwnSpec(t, e), received: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- b.Consume(ctx, bus.ConsumerConfig{Stream: bus.StreamInbox, Durable: "fachverfahren"}, func(ctx context.Context, m *bus.Message) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			if !f.fixed {
				return bus.PermanentReason("sink-down", errors.New("the Fachverfahren refused the connection"))
			}
			f.received[m.Event.ID()]++
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("consume: %v", err)
		}
	})
	return f
}

// inbox records a submission to destination and publishes it to the
// destination's inbox under its id.
func (f *deadFixture) inbox(destination string) string {
	f.t.Helper()
	rec := store.Submission{
		ID: uuid.NewString(), CaseID: uuid.NewString(), DestinationID: destination, SenderClientID: "portal",
		ServiceIdentifier: "urn:de:fim:leika:leistung:99050012104000", CreatedAt: f.clock.Now(),
	}
	if err := f.st.CreateSubmission(context.Background(), rec); err != nil {
		f.t.Fatal(err)
	}
	f.publishInbox(destination, routedBody(f.t, rec))
	return rec.ID
}

// publishInbox publishes body to destination's inbox as a routed
// submission, under the id it names.
func (f *deadFixture) publishInbox(destination string, body []byte) {
	f.t.Helper()
	subject, err := bus.InboxSubject("08311", destination)
	if err != nil {
		f.t.Fatal(err)
	}
	var named struct{ SubmissionID string }
	if err := json.Unmarshal(body, &named); err != nil {
		f.t.Fatal(err)
	}
	ev := event.New()
	ev.SetID(named.SubmissionID)
	ev.SetSource("https://amtsbote.test")
	ev.SetType(sealed.TypeRouted)
	if err := ev.SetData("application/json", body); err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.bus.Publish(context.Background(), subject, ev, named.SubmissionID); err != nil {
		f.t.Fatal(err)
	}
}

// routedBody is the INBOX message of the recorded submission rec.
func routedBody(t *testing.T, rec store.Submission) []byte {
	t.Helper()
	body, err := json.Marshal(sealed.Submission{
		SubmissionID: rec.ID, CaseID: rec.CaseID, DestinationID: rec.DestinationID, Service: rec.ServiceIdentifier,
		ARS: "083110000000", Attachments: []string{}, Object: sealed.PayloadObject(rec.ID), SenderClientID: rec.SenderClientID,
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

type deadList struct {
	Count       int              `json:"count"`
	Offset      int              `json:"offset"`
	TotalCount  int              `json:"totalCount"`
	DeadLetters []bus.DeadLetter `json:"deadLetters"`
}

func (f *deadFixture) list(token, query string) deadList {
	f.t.Helper()
	var l deadList
	body := f.spec.call(f.t, http.MethodGet, "/admin/v1/dead-letters"+query, token, "", nil, http.StatusOK)
	if err := json.Unmarshal(body, &l); err != nil {
		f.t.Fatal(err)
	}
	return l
}

func TestAdminDeadLetters(t *testing.T) {
	f := newDeadFixture(t)
	tok := f.adminToken()
	destA, destB := uuid.NewString(), uuid.NewString()
	a1, a2, b1 := f.inbox(destA), f.inbox(destA), f.inbox(destB)
	flowtest.Eventually(t, 10*time.Second, func() error {
		if l := f.list(tok, ""); l.TotalCount != 3 {
			return fmt.Errorf("%d dead letters", l.TotalCount)
		}
		return nil
	})

	t.Run("list by reason and destination, paged", func(t *testing.T) {
		l := f.list(tok, "?reason=sink-down&destinationId="+destA+"&limit=1&offset=1")
		if l.TotalCount != 2 || l.Count != 1 || l.Offset != 1 || l.DeadLetters[0].MsgID != a2 {
			t.Errorf("page %+v, want the second of destination A's two", l)
		}
		d := l.DeadLetters[0]
		if d.DestinationID != destA || d.Reason != "sink-down" || d.Attempts != 1 || len(d.History) != 1 ||
			d.History[0].Error != "the Fachverfahren refused the connection" || d.Consumer != "fachverfahren" {
			t.Errorf("dead letter %+v", d)
		}
		if l := f.list(tok, "?reason=callback-failed"); l.TotalCount != 0 || l.DeadLetters == nil {
			t.Errorf("another reason: %+v", l)
		}
	})

	all := f.list(tok, "").DeadLetters
	seqOf := map[string]uint64{}
	for _, d := range all {
		seqOf[d.MsgID] = d.Seq
	}

	t.Run("show one", func(t *testing.T) {
		body := f.spec.call(t, http.MethodGet, fmt.Sprintf("/admin/v1/dead-letters/%d", seqOf[b1]), tok, "", nil, http.StatusOK)
		var d struct {
			bus.DeadLetter
			Header map[string][]string `json:"header"`
			Data   []byte              `json:"data"`
		}
		if err := json.Unmarshal(body, &d); err != nil {
			t.Fatal(err)
		}
		if d.MsgID != b1 || !strings.Contains(string(d.Data), `"submissionId":"`+b1+`"`) || d.Header[bus.HeaderDeadReason][0] != "sink-down" {
			t.Errorf("dead letter %s", body)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for _, tc := range []struct {
			method, path string
			status       int
			field        string
		}{
			{http.MethodGet, "/admin/v1/dead-letters?reason=a.b", 400, "reason"},
			{http.MethodGet, "/admin/v1/dead-letters?destinationId=nope", 400, "destinationId"},
			{http.MethodGet, "/admin/v1/dead-letters?reason=a&reason=b", 400, "reason"},
			{http.MethodGet, "/admin/v1/dead-letters?limit=501", 400, "limit"},
			{http.MethodGet, "/admin/v1/dead-letters/abc", 400, "seq"},
			{http.MethodGet, "/admin/v1/dead-letters/0", 400, "seq"},
			{http.MethodGet, "/admin/v1/dead-letters/99999", 404, "seq"},
			{http.MethodDelete, "/admin/v1/dead-letters/99999", 404, "seq"},
			{http.MethodPost, "/admin/v1/dead-letters/99999/redrive", 404, "seq"},
			{http.MethodPost, "/admin/v1/dead-letters/redrive?destinationId=nope", 400, "destinationId"},
		} {
			t.Run(tc.method+" "+tc.path, func(t *testing.T) {
				before := f.list(tok, "").TotalCount
				body := f.spec.call(t, tc.method, tc.path, tok, "", nil, tc.status)
				var p struct{ Type, Field string }
				if err := json.Unmarshal(body, &p); err != nil || p.Field != tc.field {
					t.Errorf("problem %s, want field %s", body, tc.field)
				}
				if after := f.list(tok, "").TotalCount; after != before {
					t.Errorf("%d dead letters after a refused request, %d before", after, before)
				}
			})
		}
		f.spec.call(t, http.MethodGet, "/admin/v1/dead-letters", f.token(), "", nil, http.StatusForbidden)
	})

	t.Run("re-drive too soon changes nothing", func(t *testing.T) {
		// The dead letters are younger than the window only right after
		// they were written; one written now is.
		fresh := f.inbox(destB)
		var seq uint64
		flowtest.Eventually(t, 10*time.Second, func() error {
			for _, d := range f.list(tok, "?destinationId="+destB).DeadLetters {
				if d.MsgID == fresh {
					seq = d.Seq
					return nil
				}
			}
			return errors.New("not dead yet")
		})
		resp := f.do(http.MethodPost, fmt.Sprintf("/admin/v1/dead-letters/%d/redrive", seq), tok, "", nil)
		body := readAll(t, resp)
		if resp.StatusCode == http.StatusConflict {
			if !strings.Contains(string(body), admin.TypeRedriveTooSoon) {
				t.Errorf("409 %s", body)
			}
			if _, err := f.bus.DeadLetter(context.Background(), seq); err != nil {
				t.Errorf("the refused re-drive removed the dead letter: %v", err)
			}
		} else if resp.StatusCode != http.StatusOK {
			t.Errorf("re-drive: %d %s", resp.StatusCode, body)
		}
	})

	f.mu.Lock()
	f.fixed = true
	f.mu.Unlock()

	t.Run("re-drive one", func(t *testing.T) {
		path := fmt.Sprintf("/admin/v1/dead-letters/%d/redrive", seqOf[b1])
		flowtest.Eventually(t, 10*time.Second, func() error {
			resp := f.do(http.MethodPost, path, tok, "", nil)
			if body := readAll(t, resp); resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%d %s", resp.StatusCode, body)
			}
			return nil
		})
		f.spec.call(t, http.MethodPost, path, tok, "", nil, http.StatusNotFound)
	})

	t.Run("re-drive all of a destination", func(t *testing.T) {
		var res struct {
			Redriven []uint64 `json:"redriven"`
			Failed   []struct {
				Seq    uint64 `json:"seq"`
				Detail string `json:"detail"`
			} `json:"failed"`
		}
		flowtest.Eventually(t, 10*time.Second, func() error {
			body := f.spec.call(t, http.MethodPost, "/admin/v1/dead-letters/redrive?destinationId="+destA, tok, "", nil, http.StatusOK)
			if err := json.Unmarshal(body, &res); err != nil {
				return err
			}
			if len(res.Failed) > 0 || f.list(tok, "?destinationId="+destA).TotalCount != 0 {
				return fmt.Errorf("re-drive: %s", body)
			}
			return nil
		})
	})

	flowtest.Eventually(t, 10*time.Second, func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, id := range []string{a1, a2, b1} {
			if f.received[id] != 1 {
				return fmt.Errorf("%s received %d times", id, f.received[id])
			}
		}
		return nil
	})

	t.Run("purge with an audit record", func(t *testing.T) {
		rest := f.list(tok, "").DeadLetters
		for _, d := range rest {
			f.spec.call(t, http.MethodDelete, fmt.Sprintf("/admin/v1/dead-letters/%d", d.Seq), tok, "", nil, http.StatusNoContent)
			f.spec.call(t, http.MethodDelete, fmt.Sprintf("/admin/v1/dead-letters/%d", d.Seq), tok, "", nil, http.StatusNotFound)
			entries, err := f.st.AuditLog(context.Background(), fmt.Sprintf("dead-letter:%d", d.Seq), store.Page{})
			if err != nil {
				t.Fatal(err)
			}
			var actions []string
			for _, e := range entries {
				actions = append(actions, e.Action)
			}
			if len(entries) == 0 || entries[0].Action != admin.ActionDeadPurge || !strings.Contains(string(entries[0].Before), d.MsgID) {
				t.Errorf("audit of %d: %v", d.Seq, actions)
			}
		}
		if l := f.list(tok, ""); l.TotalCount != 0 {
			t.Errorf("%d dead letters after purging", l.TotalCount)
		}
		redriven, err := f.st.AuditLog(context.Background(), fmt.Sprintf("dead-letter:%d", seqOf[b1]), store.Page{})
		if err != nil || len(redriven) != 1 || redriven[0].Action != admin.ActionDeadRedrive {
			t.Errorf("audit of the re-drive: %+v, %v", redriven, err)
		}
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range []string{a1, a2, b1} {
		if f.received[id] != 1 {
			t.Errorf("%s received %d times, want once", id, f.received[id])
		}
	}
}

// TestAdminRedriveRefusesForgedInbox: whoever may write to DEAD (a
// subscriber's user) writes a dead letter's headers and body; one naming
// an inbox is re-driven only when it is the submission the gateway
// recorded for that destination, else it is refused and stays.
func TestAdminRedriveRefusesForgedInbox(t *testing.T) {
	f := newDeadFixture(t)
	f.mu.Lock()
	f.fixed = true
	f.mu.Unlock()
	tok := f.adminToken()
	ctx := context.Background()
	destA, destB := uuid.NewString(), uuid.NewString()
	other := store.Submission{
		ID: uuid.NewString(), CaseID: uuid.NewString(), DestinationID: destB, SenderClientID: "portal-b",
		ServiceIdentifier: "urn:de:fim:leika:leistung:99050012104000", CreatedAt: f.clock.Now(),
	}
	if err := f.st.CreateSubmission(ctx, other); err != nil {
		t.Fatal(err)
	}
	retargeted := other
	retargeted.DestinationID = destA
	unknown := other
	unknown.ID = uuid.NewString()
	unknown.DestinationID = destA
	inboxA, err := bus.InboxSubject("08311", destA)
	if err != nil {
		t.Fatal(err)
	}
	inbox, err := f.bus.JetStream().Stream(ctx, bus.StreamInbox)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"another destination's submission", routedBody(t, retargeted), "destinationId"},
		{"a body for another destination", routedBody(t, other), "on the inbox subject of " + destA},
		{"a submission never recorded", routedBody(t, unknown), "none Amtsbote recorded"},
		{"no routed submission", []byte(`{"forged":true}`), "invalid sealed submission"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := nats.NewMsg(bus.PrefixDead + ".max-deliver")
			m.Header.Set(bus.HeaderDeadReason, "max-deliver")
			m.Header.Set(bus.HeaderOriginalSubject, inboxA)
			m.Header.Set(bus.HeaderOriginalStream, bus.StreamInbox)
			m.Data = tc.body
			ack, err := f.bus.JetStream().PublishMsg(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			before, err := inbox.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			body := f.spec.call(t, http.MethodPost, fmt.Sprintf("/admin/v1/dead-letters/%d/redrive", ack.Sequence), tok, "", nil, http.StatusUnprocessableEntity)
			if !strings.Contains(string(body), tc.want) {
				t.Errorf("problem %s, want it to say %q", body, tc.want)
			}
			if _, err := f.bus.DeadLetter(ctx, ack.Sequence); err != nil {
				t.Errorf("the refused dead letter is gone: %v", err)
			}
			after, err := inbox.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if after.State.LastSeq != before.State.LastSeq {
				t.Errorf("INBOX went from sequence %d to %d", before.State.LastSeq, after.State.LastSeq)
			}
		})
	}
}

func TestAdminDeadLettersWithoutBus(t *testing.T) {
	e := newEnv(t)
	s := newOwnSpec(t, e)
	s.call(t, http.MethodGet, "/admin/v1/dead-letters", e.adminToken(), "", nil, http.StatusServiceUnavailable)
}

func TestAdminOverdue(t *testing.T) {
	e := newEnv(t)
	s := newOwnSpec(t, e)
	tok := e.adminToken()
	ctx := context.Background()
	now := e.clock.Now()
	day := 24 * time.Hour
	destA, destB := uuid.NewString(), uuid.NewString()
	add := func(dest string, age time.Duration, status sealed.Status, picked bool) {
		sub := store.Submission{
			ID: uuid.NewString(), CaseID: uuid.NewString(), DestinationID: dest, SenderClientID: "sender",
			ServiceIdentifier: "urn:de:fim:leika:leistung:99050012104000", CreatedAt: now.Add(-age - time.Minute),
		}
		at := now.Add(-age)
		sub.Status, sub.SubmittedAt, sub.RoutedAt = status, &at, &at
		if picked {
			sub.PickedUpAt = &at
		}
		if err := e.st.CreateSubmission(ctx, sub); err != nil {
			t.Fatal(err)
		}
	}
	add(destA, 10*day, sealed.Submitted, false)
	add(destA, 4*day, sealed.Submitted, false)
	add(destA, 4*day, sealed.Submitted, true)
	add(destA, 4*day, sealed.Accepted, false)
	add(destB, 2*day, sealed.Submitted, false)
	add(destB, time.Hour, sealed.Submitted, false)

	type overdue struct {
		After        []string `json:"after"`
		Destinations []struct {
			DestinationID     string    `json:"destinationId"`
			Overdue           []int     `json:"overdue"`
			OldestSubmittedAt time.Time `json:"oldestSubmittedAt"`
		} `json:"destinations"`
	}
	get := func() overdue {
		var o overdue
		if err := json.Unmarshal(s.call(t, http.MethodGet, "/admin/v1/overdue", tok, "", nil, http.StatusOK), &o); err != nil {
			t.Fatal(err)
		}
		return o
	}
	o := get()
	if fmt.Sprint(o.After) != "[72h0m0s 216h0m0s]" {
		t.Errorf("after %v", o.After)
	}
	if len(o.Destinations) != 1 || o.Destinations[0].DestinationID != destA || fmt.Sprint(o.Destinations[0].Overdue) != "[2 1]" ||
		!o.Destinations[0].OldestSubmittedAt.Equal(now.Add(-10*day)) {
		t.Errorf("overdue %+v, want destination A with 2 after 3 days, 1 after 9", o.Destinations)
	}

	// A day later the two-day-old one is due too.
	e.clock.Advance(day + time.Minute)
	tok = e.adminToken()
	o = get()
	if len(o.Destinations) != 2 || o.Destinations[1].DestinationID != destB || fmt.Sprint(o.Destinations[1].Overdue) != "[1 0]" {
		t.Errorf("a day later: %+v", o.Destinations)
	}
	s.call(t, http.MethodGet, "/admin/v1/overdue", e.token(), "", nil, http.StatusForbidden)
}
