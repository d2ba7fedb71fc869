package httpapi

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// idleAfter is how long a key's bucket is kept unused; by then it has
// refilled, so forgetting it changes nothing.
const idleAfter = time.Minute

// limiter is a token bucket per key, safe for concurrent use. Buckets idle
// for idleAfter are swept as new requests arrive, so memory follows the
// number of recently active keys.
type limiter struct {
	limit rate.Limit
	burst int

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

func newLimiter(limit rate.Limit, burst int) *limiter {
	return &limiter{limit: limit, burst: burst, buckets: make(map[string]*bucket), lastSweep: time.Now()}
}

// take spends one of key's requests, or returns a *rateLimited error when
// key has none left.
func (l *limiter) take(key string) error {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) > idleAfter {
		for k, b := range l.buckets {
			if now.Sub(b.used) > idleAfter {
				delete(l.buckets, k)
			}
		}
		l.lastSweep = now
	}
	b := l.buckets[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[key] = b
	}
	b.used = now
	if b.lim.AllowN(now, 1) {
		return nil
	}
	// The bucket refills at l.limit tokens a second; a request takes one.
	missing := 1 - b.lim.TokensAt(now)
	return &rateLimited{retryAfter: time.Duration(missing / float64(l.limit) * float64(time.Second))}
}

// rateLimited is errRateLimited with when the client may try again.
type rateLimited struct{ retryAfter time.Duration }

func (e *rateLimited) Error() string { return errRateLimited.Error() }

func (e *rateLimited) Unwrap() error { return errRateLimited }

// retryAfterSeconds is d as a Retry-After value: whole seconds, rounded up
// so that a client that waits that long finds a request in the bucket, and
// never 0, which would invite an immediate retry.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
