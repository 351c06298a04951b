package bus

import "context"

// LeaderState is leaderState for the tests of package bus_test.
func (b *Bus) LeaderState(ctx context.Context, key string) (StateEntry, error) {
	return b.leaderState(ctx, key)
}

// ObjectChunk is objectChunk for the tests of package bus_test.
const ObjectChunk = objectChunk
