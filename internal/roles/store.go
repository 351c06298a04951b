package roles

import (
	"context"
	"time"

	"github.com/amtsbote/amtsbote/pkg/routesync"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// destinationTTL bounds how long a destination changed by another process
// without an announcement (a key rolled) may be read as it was.
const destinationTTL = time.Second

// cachedStore is the store with its destination and key reads cached; its own
// writes of a destination drop the cached copy, and an announcement of a
// newer state on REGISTRY makes the next read go to the store.
type cachedStore struct {
	Store
	cache *store.DestinationCache
}

func newCachedStore(s Store, routes *routesync.Syncer) cachedStore {
	newer := func(id string, updatedAt time.Time) bool {
		e, ok := routes.Destination(id)
		return ok && e.UpdatedAt.After(updatedAt)
	}
	return cachedStore{Store: s, cache: store.NewDestinationCache(destinationTTL, newer)}
}

func (s cachedStore) Destination(ctx context.Context, id string) (store.Destination, error) {
	return s.cache.Get(ctx, id, s.Store.Destination)
}

func (s cachedStore) Key(ctx context.Context, destinationID, kid string) (store.Key, error) {
	return s.cache.Key(ctx, destinationID, kid, s.Store.Key)
}

func (s cachedStore) CreateDestination(ctx context.Context, actor string, d store.Destination, keys []store.Key) error {
	defer s.cache.Forget(d.ID)
	return s.Store.CreateDestination(ctx, actor, d, keys)
}

func (s cachedStore) UpdateDestination(ctx context.Context, actor string, id string, update func(*store.Destination) error) (store.Destination, error) {
	defer s.cache.Forget(id)
	return s.Store.UpdateDestination(ctx, actor, id, update)
}

func (s cachedStore) RollKey(ctx context.Context, actor string, k store.Key, previousValidUntil time.Time) (store.Destination, error) {
	defer s.cache.Forget(k.DestinationID)
	return s.Store.RollKey(ctx, actor, k, previousValidUntil)
}
