package httpapi_test

import (
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/services/gateway/httpapi"
)

// TestReserve: attempts under way claim the failure budget, successes
// give it back whole however they interleave, and failures spend it.
func TestReserve(t *testing.T) {
	l := httpapi.NewLimiter(1, 3)
	t0 := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	// Three at once claim the whole budget; a fourth waits.
	var done []func(bool, time.Time)
	for i := range 3 {
		ok, _, d := l.Reserve("10.0.0.1", at(time.Duration(i)*300*time.Millisecond))
		if !ok {
			t.Fatalf("attempt %d refused", i)
		}
		done = append(done, d)
	}
	if ok, wait, _ := l.Reserve("10.0.0.1", at(time.Second)); ok || wait <= 0 {
		t.Fatalf("fourth attempt under way: ok %v, wait %s; want refused with a wait", ok, wait)
	}
	// Another key has its own budget.
	if ok, _, d := l.Reserve("10.0.0.2", at(time.Second)); !ok {
		t.Fatal("another address refused")
	} else {
		d(false, at(time.Second))
	}
	// They succeed, in another order than they started.
	for _, i := range []int{2, 0, 1} {
		done[i](false, at(time.Second))
		done[i](true, at(time.Second)) // settled once only
	}
	// Many successes overlapping each other cost nothing.
	for round := range 50 {
		now := at(time.Second + time.Duration(round)*10*time.Millisecond)
		ok1, _, d1 := l.Reserve("10.0.0.1", now)
		ok2, _, d2 := l.Reserve("10.0.0.1", now.Add(5*time.Millisecond))
		if !ok1 || !ok2 {
			t.Fatalf("round %d: overlapping successful attempts refused", round)
		}
		d1(false, now.Add(7*time.Millisecond))
		d2(false, now.Add(9*time.Millisecond))
	}
	// The budget is whole: three failures, then a refusal.
	now := at(2 * time.Second)
	for i := range 3 {
		ok, _, d := l.Reserve("10.0.0.1", now)
		if !ok {
			t.Fatalf("failure %d refused: successes used up the budget", i)
		}
		d(true, now)
	}
	ok, wait, _ := l.Reserve("10.0.0.1", now)
	if ok {
		t.Fatal("a fourth failure was admitted")
	}
	if wait < 900*time.Millisecond || wait > time.Second {
		t.Errorf("wait %s, want about a second for the next token", wait)
	}
	if ok, _, _ := l.Reserve("10.0.0.1", now.Add(time.Second)); !ok {
		t.Error("refused after the next token came")
	}
}
