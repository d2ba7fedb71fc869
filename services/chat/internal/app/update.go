package app

import (
	"context"
	"errors"
	"slices"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/personkey"

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
// It decides on the state this instance holds without reading the store
// first: the append's expected version is the check, and a refusal is
// decided again on the state caught up from the store, as is a decision
// that refuses the command on a state not read from the store, so a
// writer whose requests reach instances at random is refused only when
// another writer got in between, not because an instance lagged.
func (s *Service) update(ctx context.Context, p auth.Principal, id string, decide decision) (conversation.Conversation, []Record, error) {
	return s.updateKeyed(ctx, p, id, idempotency{}, decide)
}

// updateKeyed is update for a request with idempotency k: the last event it
// appends carries k, and when an event with k is stored already, in what
// this instance holds or what it catches up with after losing a race, it
// answers that event (see idempotency.repeat) instead of deciding. A bot
// no longer registered is refused every command (stillRegistered).
func (s *Service) updateKeyed(ctx context.Context, p auth.Principal, id string, k idempotency, decide decision) (conversation.Conversation, []Record, error) {
	if err := conversation.CheckWriter(p); err != nil {
		return conversation.Conversation{}, nil, err
	}
	if err := s.stillRegistered(ctx, p); err != nil {
		return conversation.Conversation{}, nil, err
	}
	e, err := s.find(ctx, p.Tenant, id, false)
	if err != nil {
		return conversation.Conversation{}, nil, err
	}
	e.cmd.Lock()
	defer e.cmd.Unlock()

	var keys *personkey.Keys
	current := false // whether the state was read from the store in this command
	// tried are the ids the event of a request without a key was
	// appended with, one per try (see landed); one with a key finds its
	// event by the key (prior).
	var tried []string
	// gone is set when the store's last event of the conversation, last,
	// is below the state's version: the events after it expired (see
	// expiredTail).
	var gone struct{ version, last uint64 }
	for try := 1; ; try++ {
		c := e.snapshot()
		prior, ok, err := s.prior(ctx, e, k.hash)
		if err != nil {
			return c, nil, err
		}
		if ok {
			rs, err := k.repeat(ctx, prior)
			return c, rs, err
		}
		changes, err := decide(&c)
		if err != nil && !current {
			// Refused on what this instance held: another may have written
			// what allows it (an assignment, say).
			before := e.version()
			if _, err := s.caughtUp(ctx, e, c.Tenant, c.ID); err != nil {
				return c, nil, err
			}
			current = true
			if e.version() != before {
				continue
			}
		}
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
		lastID := k.id("event")
		if k.hash == "" {
			tried = append(tried, lastID)
		}
		if gone.version != 0 && gone.version == c.Version {
			// Expected of the store rather than of the state: an event the
			// state applied is no longer there to be the last.
			c.Version = gone.last
		}
		appended, err := s.appendAll(ctx, e, keys, &c, changes, k, lastID)
		s.state.track(e)
		if errors.Is(err, ErrDuplicateID) && k.hash != "" {
			if current || try == MaxTries {
				return c, appended, ErrKeyReused
			}
			// The id may be of this key's own message, withdrawn and deleted
			// by a command this instance has not caught up with (a replicated
			// stream checks the id before the version): the key finds its
			// withdrawal in the store's state.
			if _, err := s.caughtUp(ctx, e, c.Tenant, c.ID); err != nil {
				return c, nil, err
			}
			current = true
			continue
		}
		if !errors.Is(err, ErrStale) {
			return c, appended, err
		}
		if current {
			// A race lost; a refusal of what this instance held is the
			// check doing its work, not a race (see find).
			s.onConflict()
		}
		before := e.version()
		r, ok, err := s.landed(ctx, e, c.Tenant, c.ID, tried)
		switch {
		case err != nil:
			return c, nil, err
		case ok:
			return e.snapshot(), append(appended, r), nil
		case try == MaxTries:
			return c, nil, ErrContended
		}
		if e.version() == before {
			if gone.last, err = s.expiredTail(ctx, c.Tenant, c.ID, before); err != nil {
				return c, nil, err
			}
			gone.version = before
		}
		current = true
	}
}

// landed catches e up with the store after an append refused as stale,
// and returns the record of the event caught up with whose id is one of
// tried, if any. An append can be stored and still answered as refused: its
// acknowledgement lost while the stream changed leaders, the client's
// resend is refused for the version the first one took (or, replicated,
// for an append of the same id still in process). Deciding again would
// store the message twice.
func (s *Service) landed(ctx context.Context, e *entry, tenant, id string, tried []string) (Record, bool, error) {
	rs, err := s.caughtUp(ctx, e, tenant, id)
	if err != nil {
		return Record{}, false, err
	}
	for _, r := range rs {
		if slices.Contains(tried, r.Event.ID) {
			return r, true, nil
		}
	}
	return Record{}, false, nil
}

// expiredTail returns the sequence of the conversation's last event in the
// store when it is below version, the state's, and version otherwise: it is
// asked when an append expecting version was refused and the catch-up found
// nothing new. Events expire each by the retention they were appended
// under, so after a tenant shortened it the last events can go before the
// earlier ones; the state keeps its version, the store checks an append
// against the last event it holds, and every try would be refused, each
// catch-up finding nothing. Expecting the store's last instead is safe: an
// event appended since would be above version, and the store still refuses
// an append that misses one. Once an append is stored the state's version is
// the store's again, so a conversation pays this read once.
func (s *Service) expiredTail(ctx context.Context, tenant, id string, version uint64) (uint64, error) {
	last, err := s.events.Last(ctx, tenant, id)
	if err != nil {
		return 0, err
	}
	return min(last, version), nil
}

// appendAll appends changes to c one by one, each expecting the version the
// previous one left, and applies each to e as soon as it is stored, so the
// instance reads its own writes. The last change, the one the request is
// about, is stored with idempotency k and id lastID; a change may carry
// another key's hash (conversation.Change.Idempotency).
func (s *Service) appendAll(ctx context.Context, e *entry, keys *personkey.Keys, c *conversation.Conversation, changes []conversation.Change, k idempotency, lastID string) ([]Record, error) {
	out := make([]Record, 0, len(changes))
	for i, ch := range changes {
		last := i == len(changes)-1
		id := event.NewID()
		if last {
			id = lastID
		}
		at := s.now()
		c.Stamp(ch, at)
		env, err := event.NewWithID(id, keys.Data, ch.Type, c.Tenant, c.Visitor, c.ID, at, ch.Payload)
		if err != nil {
			return out, err
		}
		env.Idempotency = ch.Idempotency
		if last && k.hash != "" {
			env.Idempotency = k.hash
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
