package personkey

import (
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// DefaultCacheSize is how many people's keys an LRU (and so a Cache)
// holds when it is given no size.
const DefaultCacheSize = 100_000

// LRU is the bounded memory of keys both sides of the key service keep:
// the values of at most size people (data subjects), the least recently
// used leaving first. A value read from the key service or store while an erasure went
// by must not be cached after it, so Get hands out a stamp, and Add with
// that stamp adds nothing when Forget or Replace ran in between. It is safe
// for concurrent use.
type LRU[K comparable, V any] struct {
	// mu is a full lock: a lookup moves the key up the LRU order.
	mu      sync.Mutex
	entries *simplelru.LRU[K, V]
	// forgets counts Forget and Replace calls; it is the stamp.
	forgets uint64
}

// NewLRU returns an LRU of size entries, DefaultCacheSize when size is 0
// or less.
func NewLRU[K comparable, V any](size int) *LRU[K, V] {
	if size <= 0 {
		size = DefaultCacheSize
	}
	entries, _ := simplelru.NewLRU[K, V](size, nil) // fails only for size <= 0
	return &LRU[K, V]{entries: entries}
}

// Get returns k's value and whether there is one, with the stamp to pass to
// Add for a value read after this miss.
func (c *LRU[K, V]) Get(k K) (v V, ok bool, stamp uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok = c.entries.Get(k)
	return v, ok, c.forgets
}

// Add caches v for k, unless Forget or Replace ran since Get handed out
// stamp.
func (c *LRU[K, V]) Add(k K, v V, stamp uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.forgets == stamp {
		c.entries.Add(k, v)
	}
}

// Forget drops k's value, and any value being read by a caller of Get.
func (c *LRU[K, V]) Forget(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries.Remove(k)
	c.forgets++
}

// Replace is Forget, then caches v for k: what an erasure leaves known.
func (c *LRU[K, V]) Replace(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries.Add(k, v)
	c.forgets++
}

// Len returns how many entries the LRU holds.
func (c *LRU[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries.Len()
}
