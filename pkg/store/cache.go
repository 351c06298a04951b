package store

import (
	"context"
	"slices"
	"sync"
	"time"
)

// DestinationCache keeps destinations read from a store for a short time:
// every submission reads its destination in the gateway (twice), the
// router and the delivery. A change made through the same cache is seen
// at once (Forget); one made by another process when newer says so, or
// when the entry's time is up. The keys read of a destination are kept
// with its entry (Key): each submit checks its JWEs' keys, each decision
// its signature's.
type DestinationCache struct {
	ttl time.Duration
	// newer reports whether a destination is known to have changed after
	// updatedAt (nil: never known).
	newer func(id string, updatedAt time.Time) bool

	mu sync.Mutex
	// gen counts Forgets, so that a read begun before one is not kept.
	gen     uint64
	entries map[string]*cachedDestination
}

type cachedDestination struct {
	d       Destination
	expires time.Time
	keys    map[string]Key
}

// maxCachedDestinations bounds the cache; past it, it starts empty again.
const maxCachedDestinations = 16384

// NewDestinationCache returns a cache keeping destinations for ttl. newer,
// when set, reports whether a destination is known to have changed after
// the given update time; the cache then reads it again.
func NewDestinationCache(ttl time.Duration, newer func(id string, updatedAt time.Time) bool) *DestinationCache {
	return &DestinationCache{ttl: ttl, newer: newer, entries: make(map[string]*cachedDestination)}
}

// Get returns the destination id, from the cache or else from load. Only
// found destinations are kept; errors are returned as load gave them.
func (c *DestinationCache) Get(ctx context.Context, id string, load func(context.Context, string) (Destination, error)) (Destination, error) {
	now := time.Now()
	c.mu.Lock()
	e := c.entries[id]
	gen := c.gen
	c.mu.Unlock()
	if c.fresh(id, e, now) {
		return e.d.clone(), nil
	}
	d, err := load(ctx, id)
	if err != nil {
		return d, err
	}
	c.mu.Lock()
	if c.gen == gen {
		if len(c.entries) >= maxCachedDestinations {
			clear(c.entries)
		}
		c.entries[id] = &cachedDestination{d: d.clone(), expires: now.Add(c.ttl)}
	}
	c.mu.Unlock()
	return d, nil
}

// fresh reports whether e, the entry of destination id, may be used.
func (c *DestinationCache) fresh(id string, e *cachedDestination, now time.Time) bool {
	return e != nil && now.Before(e.expires) && (c.newer == nil || !c.newer(id, e.d.UpdatedAt))
}

// Key returns key kid of destination id, from the cache or else from
// load. A key is kept in its destination's entry and goes with it: a
// roll-over, which limits the previous key, changes the destination. While
// the destination has no fresh entry, keys are read and not kept; only
// found keys are kept.
func (c *DestinationCache) Key(ctx context.Context, id, kid string, load func(context.Context, string, string) (Key, error)) (Key, error) {
	now := time.Now()
	c.mu.Lock()
	e := c.entries[id]
	var (
		k  Key
		ok bool
	)
	if e != nil {
		k, ok = e.keys[kid]
	}
	c.mu.Unlock()
	fresh := c.fresh(id, e, now)
	if ok && fresh {
		return k.clone(), nil
	}
	k, err := load(ctx, id, kid)
	if err != nil || !fresh {
		return k, err
	}
	c.mu.Lock()
	// A Forget or a newer read since replaced the entry: keep nothing.
	if c.entries[id] == e {
		if e.keys == nil {
			e.keys = make(map[string]Key)
		}
		e.keys[kid] = k.clone()
	}
	c.mu.Unlock()
	return k, nil
}

// Forget drops id, after a change to it was written.
func (c *DestinationCache) Forget(id string) {
	c.mu.Lock()
	c.gen++
	delete(c.entries, id)
	c.mu.Unlock()
}

// clone returns k with a JWK and validity of its own.
func (k Key) clone() Key {
	k.JWK = slices.Clone(k.JWK)
	if k.ValidUntil != nil {
		t := *k.ValidUntil
		k.ValidUntil = &t
	}
	return k
}

// clone returns d with slices of its own, so that no caller changes what
// the cache holds.
func (d Destination) clone() Destination {
	d.Services = slices.Clone(d.Services)
	for i, s := range d.Services {
		d.Services[i].Regions = slices.Clone(s.Regions)
		d.Services[i].SubmissionSchemas = slices.Clone(s.SubmissionSchemas)
		if s.ValidFrom != nil {
			t := *s.ValidFrom
			d.Services[i].ValidFrom = &t
		}
		if s.ValidUntil != nil {
			t := *s.ValidUntil
			d.Services[i].ValidUntil = &t
		}
	}
	d.MetadataVersions = slices.Clone(d.MetadataVersions)
	d.ReplyChannels = slices.Clone(d.ReplyChannels)
	return d
}
