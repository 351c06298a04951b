package bus

import (
	"context"
	"time"
)

// LeaderState is leaderState for the tests of package bus_test.
func (b *Bus) LeaderState(ctx context.Context, key string) (StateEntry, error) {
	return b.leaderState(ctx, key)
}

// ObjectChunk is objectChunk for the tests of package bus_test.
const ObjectChunk = objectChunk

// StateMessages is how many messages the state bucket's stream holds on
// key, markers included, for the tests of package bus_test.
func (b *Bus) StateMessages(ctx context.Context, key string) (uint64, error) {
	return b.subjectCount(ctx, stateStream, stateSubject(key))
}

// DirectCaseEvents reports whether CaseEvents reads with batched direct
// gets, for the tests of package bus_test.
func (b *Bus) DirectCaseEvents(ctx context.Context) (bool, error) {
	st, err := b.stream(ctx, StreamEvents)
	if err != nil {
		return false, err
	}
	return b.direct.usable(b.nc, st.CachedInfo().Config), nil
}

// SetSettleTimeout sets settleTimeout until the returned func restores it.
func SetSettleTimeout(d time.Duration) func() {
	old := settleTimeout
	settleTimeout = d
	return func() { settleTimeout = old }
}
