package app

import (
	"context"
	"errors"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/subjectkey"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// decision is a command's rule: the events to append to c, if any.
type decision func(c *conversation.Conversation) ([]conversation.Change, error)

// update runs a command on conversation id for p: decide on the state this
// instance holds, seal, append expecting that state's version, apply. When
// another writer got there first it catches up from the event store and
// decides again, at most MaxTries times. It returns the state after the
// command and the records it appended.
//
// The happy path reads nothing from the event store: this instance's state
// is current unless another instance wrote in between, which the append
// detects.
func (s *Service) update(ctx context.Context, p auth.Principal, id string, decide decision) (conversation.Conversation, []Record, error) {
	if err := conversation.CheckActor(p); err != nil {
		return conversation.Conversation{}, nil, err
	}
	e, err := s.find(ctx, p.Tenant, id)
	if err != nil {
		return conversation.Conversation{}, nil, err
	}
	e.cmd.Lock()
	defer e.cmd.Unlock()

	var keys *subjectkey.Keys
	for try := 1; ; try++ {
		c := e.snapshot()
		changes, err := decide(&c)
		if err != nil || len(changes) == 0 {
			return c, nil, err
		}
		if keys == nil {
			k, err := s.visitorKeys(ctx, c.Tenant, c.Visitor)
			if err != nil {
				return c, nil, err
			}
			keys = &k
		}
		appended, err := s.appendAll(ctx, e, keys, &c, changes)
		if !errors.Is(err, ErrStale) {
			return c, appended, err
		}
		s.onConflict()
		if try == MaxTries {
			return c, nil, ErrContended
		}
		if err := s.catchUp(ctx, e); err != nil {
			return c, nil, err
		}
	}
}

// appendAll appends changes to c one by one, each expecting the version the
// previous one left, and applies each to e as soon as it is stored, so the
// instance reads its own writes.
func (s *Service) appendAll(ctx context.Context, e *entry, keys *subjectkey.Keys, c *conversation.Conversation, changes []conversation.Change) ([]Record, error) {
	out := make([]Record, 0, len(changes))
	for _, ch := range changes {
		env, err := event.New(keys.Data, ch.Type, c.Tenant, c.Visitor, c.ID, s.now(), ch.Payload)
		if err != nil {
			return out, err
		}
		r, err := s.appendEvent(ctx, env, c.Version)
		if err != nil {
			return out, err
		}
		e.apply(r, ch.Payload, false)
		c.Apply(r.Seq, r.Event, ch.Payload)
		out = append(out, r)
	}
	return out, nil
}
