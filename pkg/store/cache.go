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
// when the entry's time is up.
type DestinationCache struct {
	ttl time.Duration
	// newer reports whether a destination is known to have changed after
	// updatedAt (nil: never known).
	newer func(id string, updatedAt time.Time) bool

	mu sync.Mutex
	// gen counts Forgets, so that a read begun before one is not kept.
	gen     uint64
	entries map[string]cachedDestination
}

type cachedDestination struct {
	d       Destination
	expires time.Time
}

// maxCachedDestinations bounds the cache; past it, it starts empty again.
const maxCachedDestinations = 16384

// NewDestinationCache returns a cache keeping destinations for ttl. newer,
// when set, reports whether a destination is known to have changed after
// the given update time; the cache then reads it again.
func NewDestinationCache(ttl time.Duration, newer func(id string, updatedAt time.Time) bool) *DestinationCache {
	return &DestinationCache{ttl: ttl, newer: newer, entries: make(map[string]cachedDestination)}
}

// Get returns the destination id, from the cache or else from load. Only
// found destinations are kept; errors are returned as load gave them.
func (c *DestinationCache) Get(ctx context.Context, id string, load func(context.Context, string) (Destination, error)) (Destination, error) {
	now := time.Now()
	c.mu.Lock()
	e, ok := c.entries[id]
	gen := c.gen
	c.mu.Unlock()
	if ok && now.Before(e.expires) && (c.newer == nil || !c.newer(id, e.d.UpdatedAt)) {
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
		c.entries[id] = cachedDestination{d: d.clone(), expires: now.Add(c.ttl)}
	}
	c.mu.Unlock()
	return d, nil
}

// Forget drops id, after a change to it was written.
func (c *DestinationCache) Forget(id string) {
	c.mu.Lock()
	c.gen++
	delete(c.entries, id)
	c.mu.Unlock()
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
