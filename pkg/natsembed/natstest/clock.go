package natstest

import (
	"sync"
	"time"
)

// Clock is a time a test moves by hand, for services that take their
// clock as a func() time.Time: it makes a test of expiry independent of
// how long the machine takes to run it.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock reading the present time until moved.
func NewClock() *Clock { return &Clock{now: time.Now()} }

// Now returns the clock's time; it fits where a func() time.Time is wanted.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock d forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
