package bus_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
)

// publishCaseEvents publishes n events to each case in turn, the token of
// each naming its case and number, and returns what each case holds.
func publishCaseEvents(t *testing.T, b *bus.Bus, cases []string, n int) map[string][]bus.CaseEvent {
	t.Helper()
	want := map[string][]bus.CaseEvent{}
	for i := range n {
		for _, c := range cases {
			ev := newEvent(t, uuid.NewString())
			token := fmt.Sprintf("token-%s-%d-%s", c, i, strings.Repeat("x", 300))
			if err := ev.SetData(bus.ContentTypeSET, []byte(token)); err != nil {
				t.Fatal(err)
			}
			subject, err := bus.EventsSubject(c)
			if err != nil {
				t.Fatal(err)
			}
			ack, err := b.Publish(testContext(t), subject, ev, ev.ID())
			if err != nil {
				t.Fatal(err)
			}
			want[c] = append(want[c], bus.CaseEvent{Seq: ack.Sequence, Token: token})
		}
	}
	return want
}

func checkCaseEvents(t *testing.T, b *bus.Bus, caseID string, want []bus.CaseEvent) {
	t.Helper()
	got, err := b.CaseEvents(testContext(t), caseID)
	if err != nil {
		t.Fatalf("CaseEvents(%s): %v", caseID, err)
	}
	if len(got) != len(want) {
		t.Fatalf("CaseEvents(%s): %d events, want %d", caseID, len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("CaseEvents(%s)[%d] = seq %d %.20q…, want seq %d %.20q…", caseID, i, got[i].Seq, got[i].Token, want[i].Seq, want[i].Token)
		}
	}
}

// A case's events are its own, in stream order, however the cases'
// events interleave.
// A stream of one replica is read with batched direct gets; one that does
// not allow them (made by an earlier version) from its leader, one event
// at a time, with the same answer.
func TestCaseEvents(t *testing.T) {
	b, node := bustest.Bus(t)
	cases := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	want := publishCaseEvents(t, b, cases, 7)
	if direct, err := b.DirectCaseEvents(testContext(t)); err != nil || !direct {
		t.Fatalf("DirectCaseEvents = %v, %v; want true on a stream of one replica", direct, err)
	}
	for _, c := range cases {
		checkCaseEvents(t, b, c, want[c])
	}
	checkCaseEvents(t, b, uuid.NewString(), nil)

	st, err := b.JetStream().Stream(testContext(t), bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.AllowDirect = false
	if _, err := b.JetStream().UpdateStream(testContext(t), cfg); err != nil {
		t.Fatal(err)
	}
	leader, err := bus.Connect(testContext(t), node.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = leader.Close() })
	if direct, err := leader.DirectCaseEvents(testContext(t)); err != nil || direct {
		t.Fatalf("DirectCaseEvents = %v, %v; want false without direct gets", direct, err)
	}
	for _, c := range cases {
		checkCaseEvents(t, leader, c, want[c])
	}
	checkCaseEvents(t, leader, uuid.NewString(), nil)
}

// The replies of batched direct gets read at once reach each its reader.
func TestCaseEventsAtOnce(t *testing.T) {
	b, _ := bustest.Bus(t)
	cases := make([]string, 16)
	for i := range cases {
		cases[i] = uuid.NewString()
	}
	want := publishCaseEvents(t, b, cases, 40)
	var wg sync.WaitGroup
	for range 4 {
		for _, c := range cases {
			wg.Go(func() {
				got, err := b.CaseEvents(testContext(t), c)
				if err != nil || len(got) != len(want[c]) {
					t.Errorf("CaseEvents(%s) = %d events, %v; want %d", c, len(got), err, len(want[c]))
					return
				}
				for i := range got {
					if got[i] != want[c][i] {
						t.Errorf("CaseEvents(%s)[%d] = seq %d, want %d", c, i, got[i].Seq, want[c][i].Seq)
						return
					}
				}
			})
		}
	}
	wg.Wait()
}

func TestCaseEventsTooMany(t *testing.T) {
	b, _ := bustest.Bus(t)
	c := uuid.NewString()
	publishCaseEvents(t, b, []string{c}, 1001)
	if _, err := b.CaseEvents(testContext(t), c); err == nil || !strings.Contains(err.Error(), "more than 1000") {
		t.Errorf("CaseEvents of 1001 events: %v, want more than 1000", err)
	}
}
