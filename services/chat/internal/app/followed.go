package app

import (
	"context"
	"fmt"
	"time"
)

// followed waits until this instance's follower of the event store has
// applied every event the store held when it was called, or until ctx is
// done. A read served from what the instance holds (the inbox, the
// conversations an export lists) calls it first, so that it shows every
// write answered before it, whichever instance wrote it: another
// instance's write reaches this one through its follower, which may lag.
// It costs one read of the store's head and, when the follower is behind
// it, the wait for it, a few milliseconds at most while it keeps up.
//
// The event at the head can be removed before the follower got to it
// (expired, or erased), and the follower then never hands it over: every
// headRecheck the wait reads the head again and waits no further than it.
func (s *Service) followed(ctx context.Context) error {
	head, err := s.events.Head(ctx)
	if err != nil {
		return err
	}
	var recheck *time.Timer
	for {
		s.viewMu.Lock()
		if s.projected >= head {
			s.viewMu.Unlock()
			if recheck != nil {
				recheck.Stop()
			}
			return nil
		}
		if s.advanced == nil {
			s.advanced = make(chan struct{})
		}
		advanced := s.advanced
		s.viewMu.Unlock()
		if recheck == nil {
			recheck = time.NewTimer(headRecheck)
		}
		select {
		case <-advanced:
		case <-recheck.C:
			now, err := s.events.Head(ctx)
			if err != nil {
				return err
			}
			head = min(head, now)
			recheck.Reset(headRecheck)
		case <-ctx.Done():
			recheck.Stop()
			return fmt.Errorf("wait for the events up to %d to be applied: %w", head, ctx.Err())
		}
	}
}

// headRecheck is how often a read waiting for the follower (see followed)
// reads the store's head again: the follower keeps up within milliseconds,
// so a wait this long is one for an event removed before it got to it.
const headRecheck = 100 * time.Millisecond
