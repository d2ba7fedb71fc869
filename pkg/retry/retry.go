// Package retry is how Parley waits out a failure: one backoff policy, on
// github.com/cenkalti/backoff/v5, for every loop that tries again.
//
// The waits start at 100 ms and double up to 5 s, each jittered by half,
// so that a dependency starting beside Parley is found quickly, a long
// outage costs little, and instances do not retry in step.
package retry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// The policy's waits.
const (
	InitialInterval = 100 * time.Millisecond
	MaxInterval     = 5 * time.Second
)

// GiveUp is how long a background consumer may keep failing before its
// service stops and Run returns the error: long enough to outlast a NATS
// cluster's rolling restart, short enough that an orchestrator restarts a
// process that cannot recover on its own.
const GiveUp = 15 * time.Minute

// policy returns the policy as a fresh backoff.BackOff, for the loops here
// that wait themselves. It never stops by itself.
func policy() *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{
		InitialInterval:     InitialInterval,
		RandomizationFactor: backoff.DefaultRandomizationFactor,
		Multiplier:          2,
		MaxInterval:         MaxInterval,
	}
}

// Permanent marks err as one no retry can help: Until and Keep return it at
// once.
func Permanent(err error) error { return backoff.Permanent(err) }

// Until calls op until it succeeds, waiting as Backoff says between calls,
// and returns its result. It returns op's last error when op fails
// permanently (Permanent) or has failed for longer than giveUp (0: never
// gives up), and ctx's error when ctx ends first. notify, when not nil,
// hears each failure before the wait.
func Until[T any](ctx context.Context, giveUp time.Duration, notify func(error), op func() (T, error)) (T, error) {
	permanent := false
	try := func() (T, error) {
		v, err := op()
		permanent = errors.As(err, new(*backoff.PermanentError))
		return v, err
	}
	opts := []backoff.RetryOption{backoff.WithBackOff(policy()), backoff.WithMaxElapsedTime(giveUp)}
	if notify != nil {
		opts = append(opts, backoff.WithNotify(func(err error, _ time.Duration) { notify(err) }))
	}
	start := time.Now()
	v, err := backoff.Retry(ctx, try, opts...)
	if err != nil && !permanent && ctx.Err() == nil {
		return v, gaveUp(start, err)
	}
	return v, err
}

// Keep runs run again each time it fails, waiting as Backoff says, until
// ctx ends: for what should run as long as its service, such as a
// consumer. run calls working once it works (its consumer made, say),
// which tells health nil and restarts the give-up clock; health hears each
// failure. A run that lasted longer than MaxInterval before it failed is
// tried again after the shortest wait.
//
// Keep returns nil when ctx ends, and run's error when run fails
// permanently (Permanent) or keeps failing for longer than giveUp since it
// last worked, or since Keep began (0: never gives up). working must be
// called on run's goroutine.
func Keep(ctx context.Context, giveUp time.Duration, health func(error), run func(ctx context.Context, working func()) error) error {
	b := policy()
	since := time.Now()
	working := func() {
		since = time.Now()
		health(nil)
	}
	for {
		began := time.Now()
		err := run(ctx, working)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errors.New("stopped")
		}
		if p := new(backoff.PermanentError); errors.As(err, &p) {
			health(p.Err)
			return p.Err
		}
		health(err)
		if time.Since(began) > MaxInterval {
			b.Reset()
		}
		wait := b.NextBackOff()
		if giveUp > 0 && time.Since(since)+wait > giveUp {
			return gaveUp(since, err)
		}
		if !Sleep(ctx, wait) {
			return nil
		}
	}
}

// Sleep waits for d, or until ctx ends; false means ctx ended.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func gaveUp(since time.Time, err error) error {
	return fmt.Errorf("gave up after %v: %w", time.Since(since).Round(time.Second), err)
}
