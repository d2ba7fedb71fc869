package app

import (
	"context"

	"github.com/parley-chat/parley/pkg/event"
)

// scan hands fn the conversation's events after stream sequence after,
// oldest first, read from the event store batch events at a time, until fn
// returns false or an error, or no event is left. Events past their
// retention that the store has not removed yet are skipped, as the store
// is about to remove them. It holds one batch at a time, never the whole
// transcript.
func (s *Service) scan(ctx context.Context, tenant, id string, after uint64, batch int, fn func(Record) (bool, error)) error {
	return s.scanBy(ctx, tenant, id, after, func() int { return batch }, fn)
}

// scanBy is scan reading as many events at a time as batch says before
// each read: a reader that knows what it still has room for reads no
// more.
func (s *Service) scanBy(ctx context.Context, tenant, id string, after uint64, batch func() int, fn func(Record) (bool, error)) error {
	now := s.now()
	for {
		rs, more, err := s.events.Read(ctx, tenant, id, after, batch())
		if err != nil {
			return err
		}
		for _, r := range rs {
			if r.expired(now) {
				continue
			}
			if ok, err := fn(r); err != nil || !ok {
				return err
			}
		}
		if !more || len(rs) == 0 {
			return nil
		}
		after = rs[len(rs)-1].Seq
	}
}

// isMessage reports whether e is a message of the transcript: the opening
// message, a posted one, or what is left of a withdrawn one.
func isMessage(e event.Envelope) bool {
	return e.Type == event.ConversationOpened || e.Type == event.MessagePosted || e.Type == event.MessageWithdrawn
}

// isLine reports whether e is a line of the transcript: a message, or a
// hand-off, which stays in the transcript so that a reader sees where the
// visitor (or the bot) asked for a person.
func isLine(e event.Envelope) bool {
	return isMessage(e) || e.Type == event.ConversationHandedOff
}
