package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/ledger"
	"github.com/amtsbote/amtsbote/services/router"
)

// countingStore counts the store's write transactions by method.
type countingStore struct {
	store.Store
	mu     sync.Mutex
	writes map[string]int
}

func (c *countingStore) count(method string) {
	c.mu.Lock()
	c.writes[method]++
	c.mu.Unlock()
}

func (c *countingStore) CreateSubmission(ctx context.Context, s store.Submission) error {
	c.count("CreateSubmission")
	return c.Store.CreateSubmission(ctx, s)
}

func (c *countingStore) UpdateSubmission(ctx context.Context, id string, update func(*store.Submission) error) (store.Submission, error) {
	c.count("UpdateSubmission")
	return c.Store.UpdateSubmission(ctx, id, update)
}

func (c *countingStore) ProjectEvent(ctx context.Context, e store.Event, fold store.Fold) (store.Projection, error) {
	c.count("ProjectEvent")
	return c.Store.ProjectEvent(ctx, e, fold)
}

func (c *countingStore) PutIdempotency(ctx context.Context, r store.IdempotencyRecord) (store.IdempotencyRecord, bool, error) {
	c.count("PutIdempotency")
	return c.Store.PutIdempotency(ctx, r)
}

func (c *countingStore) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.writes))
	for k, v := range c.writes {
		out[k] = v
	}
	return out
}

// TestLifecycleWritesEachFactOnce counts the store's writes of one
// lifecycle (create with an attachment, upload, submit, route, fetch,
// accept) with the real router and ledger: each fact has one writer and is
// written once. The gateway writes the submission, its uploaded
// attachment and the submit's permanent record; the ledger marks it
// routed and projects each of its four events (create, submit, notify,
// accept), each in one transaction with the event's record.
func TestLifecycleWritesEachFactOnce(t *testing.T) {
	st := &countingStore{Store: flowtest.OpenSQLite(t), writes: map[string]int{}}
	b, _ := bustest.Bus(t)
	f := newFlowEnvOn(t, st, b)
	rt, err := router.New(router.Config{Bus: b, Store: st, Issuer: f.issuer})
	if err != nil {
		t.Fatal(err)
	}
	flowtest.Start(t, rt)
	d := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
	sender := f.token("send:region:DE08")
	receiver := f.token("subscribe:destination:" + d.ID)
	before := st.snapshot()

	s := f.prepare(t, sender, d, 1)
	f.submit(t, sender, s).want(t, http.StatusAccepted)
	flowtest.Eventually(t, 10*time.Second, func() error {
		sub, err := f.st.Submission(context.Background(), s.SubmissionID)
		if err == nil && (sub.RoutedAt == nil || sub.Status != sealed.Submitted) {
			err = fmt.Errorf("submission %s is %s, routed at %v", sub.ID, sub.Status, sub.RoutedAt)
		}
		return err
	})
	f.call(t, http.MethodGet, "/v1/submissions/"+s.SubmissionID, receiver, "", nil).want(t, http.StatusOK)
	accept := f.receiverSET(t, set.AcceptSubmission, s, set.AcceptPayload{AuthenticationTags: s.tags()}, nil)
	f.postEvent(t, receiver, s.CaseID, accept).want(t, http.StatusNoContent)
	f.waitStatus(t, s.SubmissionID, sealed.Accepted)
	f.settle(t)
	flowtest.Settled(t, b, bus.StreamInbox, ledger.DurableInbox)

	after := st.snapshot()
	got := map[string]int{}
	for k, v := range after {
		if n := v - before[k]; n > 0 {
			got[k] = n
		}
	}
	want := map[string]int{"CreateSubmission": 1, "UpdateSubmission": 2, "PutIdempotency": 1, "ProjectEvent": 4}
	total := 0
	for _, n := range got {
		total += n
	}
	t.Logf("store writes of one lifecycle: %v, %d in all", got, total)
	if len(got) != len(want) {
		t.Fatalf("writes %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("writes %v, want %v", got, want)
			break
		}
	}
}
