package bus_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
)

// TestLock has three processes' connections take one entry: one at a
// time, the next once the holder releases it, and once a holder that
// stopped renewing it (a process killed) left it for LockStale.
func TestLock(t *testing.T) {
	node := bustest.Server(t)
	ctx := testContext(t)
	conns := make([]*bus.Bus, 3)
	for i := range conns {
		conns[i] = bustest.Connect(t, node.URL)
	}
	if err := conns[0].Ensure(ctx, bus.TopologyConfig{}); err != nil {
		t.Fatal(err)
	}
	const key = "lock.test"

	first, err := conns[0].Lock(ctx, key, []byte("first"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Held across several renewals, it is not taken.
	wctx, wcancel := context.WithTimeout(ctx, 2*bus.LockRenew+time.Second)
	_, err = conns[1].Lock(wctx, key, []byte("second"), nil)
	wcancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("lock of a held entry: %v, want to wait until the deadline", err)
	}

	taken := make(chan *bus.Lease, 1)
	go func() {
		l, err := conns[1].Lock(ctx, key, []byte("second"), nil)
		if err != nil {
			t.Error(err)
		}
		taken <- l
	}()
	select {
	case <-taken:
		t.Fatal("taken while held")
	case <-time.After(100 * time.Millisecond):
	}
	if err := first.Release(ctx); err != nil {
		t.Fatal(err)
	}
	second := <-taken
	if second == nil {
		t.FailNow()
	}
	e, err := conns[2].GetState(ctx, key)
	if err != nil || string(e.Value) != "second" || !bus.Held(e) {
		t.Fatalf("entry after the release: %q held %v, %v", e.Value, bus.Held(e), err)
	}

	// The holder stops renewing as a killed process does: the entry stays
	// until it is stale, then the next takes it, and the old holder, were
	// it to renew again, learns that it lost it.
	second.Stop()
	var lost atomic.Bool
	third, err := conns[2].Lock(ctx, key, []byte("third"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Release(ctx)
	e, err = conns[0].GetState(ctx, key)
	if err != nil || string(e.Value) != "third" {
		t.Fatalf("entry after the takeover: %q, %v", e.Value, err)
	}
	stale := conns[1].Hold(key, []byte("second"), e.Revision-1, func() { lost.Store(true) })
	defer stale.Stop()
	eventually(t, 3*bus.LockRenew, func() error {
		if !lost.Load() {
			return errors.New("the stale holder did not learn that it lost the entry")
		}
		return nil
	})
	if e, err := conns[0].GetState(ctx, key); err != nil || string(e.Value) != "third" {
		t.Errorf("entry after the stale renewal: %q, %v", e.Value, err)
	}
}
