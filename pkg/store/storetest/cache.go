package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/pkg/store"
)

var cacheTests = []test{
	{"KeepsUntilForgotten", testCacheKeepsUntilForgotten},
	{"ReadsAgainWhenNewer", testCacheReadsAgainWhenNewer},
	{"ReadsAgainAfterItsTime", testCacheReadsAgainAfterItsTime},
	{"KeepsNoReadBegunBeforeForget", testCacheKeepsNoReadBegunBeforeForget},
	{"KeepsNothingMissing", testCacheKeepsNothingMissing},
	{"ClonesWhatItGives", testCacheClonesWhatItGives},
	{"KeepsKeysWithTheirDestination", testCacheKeepsKeysWithTheirDestination},
	{"ReadsKeysAgainWhenNewer", testCacheReadsKeysAgainWhenNewer},
	{"KeepsNoKeyMissingAndClonesKeys", testCacheKeepsNoKeyMissingAndClonesKeys},
}

// counting returns s.Destination and the number of its calls.
func counting(s store.Store) (func(context.Context, string) (store.Destination, error), *int) {
	n := new(int)
	return func(ctx context.Context, id string) (store.Destination, error) {
		*n++
		return s.Destination(ctx, id)
	}, n
}

// countingKeys returns s.Key and the number of its calls.
func countingKeys(s store.Store) (func(context.Context, string, string) (store.Key, error), *int) {
	n := new(int)
	return func(ctx context.Context, id, kid string) (store.Key, error) {
		*n++
		return s.Key(ctx, id, kid)
	}, n
}

// keyCache creates destination d1 and a cache holding its entry, and
// returns them with s.Key and the number of its calls.
func keyCache(t *testing.T, s store.Store, newer func(string, time.Time) bool) (*store.DestinationCache, store.Destination, func(context.Context, string, string) (store.Key, error), *int) {
	t.Helper()
	d := destination("d1")
	createDestination(t, s, d)
	c := store.NewDestinationCache(time.Hour, newer)
	_, err := c.Get(context.Background(), d.ID, s.Destination)
	must(t, "get", err)
	load, n := countingKeys(s)
	return c, d, load, n
}

// roll makes a new encryption key of d1 current and limits the previous
// one to an hour from t0.
func roll(t *testing.T, s store.Store) store.Destination {
	t.Helper()
	d, err := s.RollKey(context.Background(), "cli", key("d1", "d1-enc-2", store.UseEncryption, t0), at(time.Hour))
	must(t, "roll", err)
	return d
}

func deactivate(t *testing.T, s store.Store, id string) store.Destination {
	t.Helper()
	d, err := s.UpdateDestination(context.Background(), "cli", id, func(d *store.Destination) error {
		d.Status = store.StatusInactive
		return nil
	})
	must(t, "deactivate "+id, err)
	return d
}

func testCacheKeepsUntilForgotten(t *testing.T, s store.Store) {
	ctx := context.Background()
	createDestination(t, s, destination("d1"))
	c := store.NewDestinationCache(time.Hour, nil)
	load, n := counting(s)
	for range 3 {
		d, err := c.Get(ctx, "d1", load)
		must(t, "get", err)
		equal(t, "status", d.Status, store.StatusActive)
	}
	equal(t, "store reads", *n, 1)

	deactivate(t, s, "d1")
	d, err := c.Get(ctx, "d1", load)
	must(t, "get", err)
	equal(t, "status before Forget", d.Status, store.StatusActive)
	c.Forget("d1")
	d, err = c.Get(ctx, "d1", load)
	must(t, "get", err)
	equal(t, "status after Forget", d.Status, store.StatusInactive)
	equal(t, "store reads", *n, 2)
}

func testCacheReadsAgainWhenNewer(t *testing.T, s store.Store) {
	ctx := context.Background()
	createDestination(t, s, destination("d1"))
	var announced time.Time // what another process announced, as REGISTRY does
	c := store.NewDestinationCache(time.Hour, func(id string, updatedAt time.Time) bool {
		return id == "d1" && announced.After(updatedAt)
	})
	load, n := counting(s)
	_, err := c.Get(ctx, "d1", load)
	must(t, "get", err)

	announced = deactivate(t, s, "d1").UpdatedAt
	d, err := c.Get(ctx, "d1", load)
	must(t, "get", err)
	equal(t, "status", d.Status, store.StatusInactive)
	_, err = c.Get(ctx, "d1", load)
	must(t, "get", err)
	equal(t, "store reads", *n, 2)
}

func testCacheReadsAgainAfterItsTime(t *testing.T, s store.Store) {
	ctx := context.Background()
	createDestination(t, s, destination("d1"))
	c := store.NewDestinationCache(time.Nanosecond, nil)
	load, _ := counting(s)
	_, err := c.Get(ctx, "d1", load)
	must(t, "get", err)
	deactivate(t, s, "d1")
	d, err := c.Get(ctx, "d1", load)
	must(t, "get", err)
	equal(t, "status", d.Status, store.StatusInactive)
}

// A read that began before a change was written and forgotten returns
// what it read, but the cache does not keep it.
func testCacheKeepsNoReadBegunBeforeForget(t *testing.T, s store.Store) {
	ctx := context.Background()
	createDestination(t, s, destination("d1"))
	c := store.NewDestinationCache(time.Hour, nil)
	slow := func(ctx context.Context, id string) (store.Destination, error) {
		d, err := s.Destination(ctx, id)
		deactivate(t, s, id)
		c.Forget(id)
		return d, err
	}
	d, err := c.Get(ctx, "d1", slow)
	must(t, "get", err)
	equal(t, "status read", d.Status, store.StatusActive)
	load, _ := counting(s)
	d, err = c.Get(ctx, "d1", load)
	must(t, "get", err)
	equal(t, "status then", d.Status, store.StatusInactive)
}

func testCacheKeepsNothingMissing(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := store.NewDestinationCache(time.Hour, nil)
	load, n := counting(s)
	if _, err := c.Get(ctx, "d1", load); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get missing = %v, want ErrNotFound", err)
	}
	createDestination(t, s, destination("d1"))
	d, err := c.Get(ctx, "d1", load)
	must(t, "get", err)
	equal(t, "id", d.ID, "d1")
	equal(t, "store reads", *n, 2)
}

func testCacheClonesWhatItGives(t *testing.T, s store.Store) {
	ctx := context.Background()
	createDestination(t, s, destination("d1"))
	c := store.NewDestinationCache(time.Hour, nil)
	load, _ := counting(s)
	want, err := s.Destination(ctx, "d1")
	must(t, "read", err)
	d, err := c.Get(ctx, "d1", load)
	must(t, "get", err)
	d.Services[0].Regions[0] = "DE09"
	*d.Services[0].ValidUntil = time.Time{}
	d.MetadataVersions = append(d.MetadataVersions[:0], "0.0.0")
	got, err := c.Get(ctx, "d1", load)
	must(t, "get", err)
	equal(t, "destination", got, want)
}

func testCacheKeepsKeysWithTheirDestination(t *testing.T, s store.Store) {
	ctx := context.Background()
	c, d, load, n := keyCache(t, s, nil)
	for range 3 {
		k, err := c.Key(ctx, "d1", d.EncryptionKID, load)
		must(t, "key", err)
		equal(t, "valid until", k.ValidUntil, nil)
	}
	equal(t, "key reads", *n, 1)

	roll(t, s)
	c.Forget("d1")
	for range 2 {
		k, err := c.Key(ctx, "d1", d.EncryptionKID, load)
		must(t, "key after Forget", err)
		equal(t, "valid until after Forget", k.ValidUntil, ptr(at(time.Hour)))
	}
	equal(t, "key reads without the destination's entry", *n, 3)
	_, err := c.Get(ctx, "d1", s.Destination)
	must(t, "get", err)
	for range 2 {
		_, err := c.Key(ctx, "d1", d.EncryptionKID, load)
		must(t, "key", err)
	}
	equal(t, "key reads", *n, 4)
}

func testCacheReadsKeysAgainWhenNewer(t *testing.T, s store.Store) {
	ctx := context.Background()
	var announced time.Time
	c, d, load, n := keyCache(t, s, func(id string, updatedAt time.Time) bool {
		return id == "d1" && announced.After(updatedAt)
	})
	_, err := c.Key(ctx, "d1", d.EncryptionKID, load)
	must(t, "key", err)

	announced = roll(t, s).UpdatedAt
	k, err := c.Key(ctx, "d1", d.EncryptionKID, load)
	must(t, "key", err)
	equal(t, "valid until", k.ValidUntil, ptr(at(time.Hour)))
	equal(t, "key reads", *n, 2)
}

func testCacheKeepsNoKeyMissingAndClonesKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	c, _, load, n := keyCache(t, s, nil)
	if _, err := c.Key(ctx, "d1", "d1-enc-2", load); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("key missing = %v, want ErrNotFound", err)
	}
	roll(t, s)
	k, err := c.Key(ctx, "d1", "d1-enc-2", load)
	must(t, "key", err)
	equal(t, "key reads", *n, 2)

	k.JWK[2] = 'X'
	hit, err := c.Key(ctx, "d1", "d1-enc-2", load)
	must(t, "key", err)
	hit.JWK[3] = 'Y'
	got, err := c.Key(ctx, "d1", "d1-enc-2", load)
	must(t, "key", err)
	equal(t, "key", got, key("d1", "d1-enc-2", store.UseEncryption, t0))
	equal(t, "key reads", *n, 2)
}
