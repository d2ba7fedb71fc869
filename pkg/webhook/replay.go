package webhook

import (
	"sync"
	"time"
)

// ReplayCache remembers accepted deliveries (timestamp and body) until
// their timestamp leaves the tolerance, up to a bound. When it is full the oldest entry is dropped, so
// the bound should exceed the deliveries one integration receives within
// twice the tolerance. Safe for concurrent use.
type ReplayCache struct {
	mu     sync.Mutex
	max    int
	expiry map[string]time.Time
	order  []string // insertion order, oldest first
}

// NewReplayCache returns a cache holding at most size deliveries (at least 1).
func NewReplayCache(size int) *ReplayCache {
	size = max(size, 1)
	return &ReplayCache{max: size, expiry: make(map[string]time.Time, size)}
}

// add records key until expires and reports whether it was new (or had
// expired by now).
func (c *ReplayCache) add(key string, expires, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.expiry[key]; ok && now.Before(e) {
		return false
	}
	// Entries expire roughly in insertion order; the front is swept until one
	// is still live, and the bound drops the oldest regardless.
	for len(c.order) > 0 && (len(c.expiry) >= c.max || !now.Before(c.expiry[c.order[0]])) {
		delete(c.expiry, c.order[0])
		c.order = c.order[1:]
	}
	if _, ok := c.expiry[key]; !ok {
		c.order = append(c.order, key)
	}
	c.expiry[key] = expires
	return true
}

// Len returns how many deliveries the cache holds.
func (c *ReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.expiry)
}
