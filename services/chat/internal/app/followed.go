package app

import (
	"context"
	"fmt"
	"time"
)

// followed waits until this instance's follower of the event store has
// applied every event stored when it was called, or until ctx is done. A
// read served from what the instance holds (the inbox, the conversations an
// export lists) calls it first, so that it shows every write answered
// before it, whichever instance wrote it: another instance's write reaches
// this one through its follower, which may lag. It costs one read of the
// store's head and, when the follower is behind it, the wait for it, a few
// milliseconds at most while it keeps up.
//
// The event at the head can be removed before the follower got to it
// (expired, or erased), and the follower then never hands it over: past
// headRecheck of waiting, and every headRecheck after, the store tells
// whether it holds any event between the follower and the head. When it
// holds none, the follower is taken to have passed the head, so that the
// reads after this one do not wait for it again. Once the follower stopped
// for good (Unfollowed: the instance drains the requests it received as it
// stops) nothing is waited for.
func (s *Service) followed(ctx context.Context) error {
	head, err := s.events.Head(ctx)
	if err != nil {
		return err
	}
	var recheck *time.Timer
	defer func() {
		if recheck != nil {
			recheck.Stop()
		}
	}()
	for {
		s.viewMu.Lock()
		at := s.projected
		if at >= head || s.unfollowed {
			s.viewMu.Unlock()
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
			next, err := s.events.Next(ctx, at)
			if err != nil {
				return err
			}
			if next == 0 || next > head {
				s.viewMu.Lock()
				s.advanceLocked(head)
				s.viewMu.Unlock()
				return nil
			}
			recheck.Reset(headRecheck)
		case <-ctx.Done():
			return fmt.Errorf("wait for the events up to %d to be applied: %w", head, ctx.Err())
		}
	}
}

// Unfollowed says the follower stopped for good: the instance is
// stopping, and answers the requests it still drains from what it holds,
// as no wait for the follower would end before their deadline.
func (s *Service) Unfollowed() {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	s.unfollowed = true
	if s.advanced != nil {
		close(s.advanced)
		s.advanced = nil
	}
}

// headRecheck is how long a read waits for the follower (see followed)
// before it asks the store whether the follower has anything left to get:
// the follower applies an event a millisecond or two after it is stored, so
// a wait this long is most likely one for an event removed before it got to
// it.
const headRecheck = 20 * time.Millisecond
