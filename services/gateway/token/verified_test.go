package token

import (
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

func claimsUntil(sub string, exp time.Time) tokenClaims {
	return tokenClaims{Claims: jwt.Claims{Subject: sub, Expiry: jwt.NewNumericDate(exp)}}
}

func TestVerifiedCacheExpiry(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := newVerifiedCache(10)
	sum := sha256.Sum256([]byte("token"))
	c.put(sum, claimsUntil("a", now.Add(time.Minute)), now)

	if got, ok := c.get(sum, now.Add(time.Minute+ownLeeway)); !ok || got.Subject != "a" {
		t.Fatalf("within exp+ownLeeway: %v %v", got.Subject, ok)
	}
	if _, ok := c.get(sum, now.Add(time.Minute+ownLeeway+time.Second)); ok {
		t.Fatal("an expired token is still remembered")
	}
	if n := c.len(); n != 0 {
		t.Errorf("the expired token stays in the cache: %d entries", n)
	}
	// Asked for again at an earlier time (a clock set back), it is gone
	// for good: the next Verify checks the signature again.
	if _, ok := c.get(sum, now); ok {
		t.Error("a forgotten token came back")
	}

	c.put(sha256.Sum256([]byte("no exp")), tokenClaims{}, now)
	if n := c.len(); n != 0 {
		t.Errorf("a token without expiry is remembered: %d entries", n)
	}
}

func TestVerifiedCacheBound(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	const max = 50
	c := newVerifiedCache(max)
	sums := make([][32]byte, 0, 3*max)
	for i := range 3 * max {
		sum := sha256.Sum256(fmt.Appendf(nil, "token-%d", i))
		sums = append(sums, sum)
		c.put(sum, claimsUntil(fmt.Sprint(i), now.Add(time.Hour)), now)
		if n := c.len(); n > max {
			t.Fatalf("after %d tokens the cache holds %d, more than %d", i+1, n, max)
		}
	}
	if _, ok := c.get(sums[len(sums)-1], now); !ok {
		t.Error("the token just verified is not remembered")
	}

	// Expired tokens make room before valid ones are dropped.
	c = newVerifiedCache(max)
	for i := range max - 1 {
		c.put(sha256.Sum256(fmt.Appendf(nil, "old-%d", i)), claimsUntil("old", now.Add(time.Minute)), now)
	}
	keep := sha256.Sum256([]byte("keep"))
	c.put(keep, claimsUntil("keep", now.Add(time.Hour)), now)
	later := now.Add(time.Hour / 2)
	c.put(sha256.Sum256([]byte("new")), claimsUntil("new", later.Add(time.Hour)), later)
	if n := c.len(); n != 2 {
		t.Errorf("%d entries after the expired ones were swept, want 2", n)
	}
	if _, ok := c.get(keep, later); !ok {
		t.Error("a valid token was dropped while expired ones made room")
	}

	off := newVerifiedCache(-1)
	off.put(keep, claimsUntil("keep", now.Add(time.Hour)), now)
	if off.len() != 0 {
		t.Error("a cache of size -1 remembers tokens")
	}
}
