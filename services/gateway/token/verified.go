package token

import (
	"sync"
	"time"
)

// verifiedCache remembers the claims of tokens whose signature verified,
// by the SHA-256 of the token, so that a client's requests cost one RSA
// verification per token rather than one each. It holds at most max
// entries; an entry is dropped once its token expired, and when the
// cache is full.
type verifiedCache struct {
	mu      sync.Mutex
	max     int
	entries map[[sha256Size]byte]tokenClaims
}

const sha256Size = 32

func newVerifiedCache(max int) *verifiedCache {
	return &verifiedCache{max: max, entries: make(map[[sha256Size]byte]tokenClaims)}
}

// get returns the claims remembered for sum unless the token expired at
// now; an expired token is forgotten, so that verifying it again fails
// as it did before it was remembered.
func (c *verifiedCache) get(sum [sha256Size]byte, now time.Time) (tokenClaims, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	claims, ok := c.entries[sum]
	if ok && expired(claims, now) {
		delete(c.entries, sum)
		return tokenClaims{}, false
	}
	return claims, ok
}

func expired(claims tokenClaims, now time.Time) bool {
	return claims.Expiry.Time().Add(ownLeeway).Before(now)
}

// put remembers claims, which have an expiry. A full cache first drops
// the tokens expired at now, then arbitrary ones.
func (c *verifiedCache) put(sum [sha256Size]byte, claims tokenClaims, now time.Time) {
	if c.max <= 0 || claims.Expiry == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[sum]; !ok && len(c.entries) >= c.max {
		for k, v := range c.entries {
			if expired(v, now) {
				delete(c.entries, k)
			}
		}
		// Map order is random: this drops a random tenth.
		for k := range c.entries {
			if len(c.entries) < c.max-c.max/10 {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[sum] = claims
}

// len is the number of remembered tokens.
func (c *verifiedCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
