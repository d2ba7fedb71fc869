package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// Open opens a new conversation of visitor p with its first message. The
// delay of its erasure after closing is resolved now, from the request or
// the tenant's settings, and recorded in the event: a later change of the
// settings does not change what the visitor was promised. A visitor with
// as many conversations open as the tenant allows gets
// conversation.ErrTooManyOpen: this instance's openings for one visitor
// are serialised so that racing requests cannot pass the limit together.
//
// With an idempotency key the conversation's id is derived from it, so an
// opening repeated with the key finds the conversation the first stored
// (the append expecting no event fails) and answers it.
func (s *Service) Open(ctx context.Context, p auth.Principal, args chatapi.OpenArgs) (chatapi.OpenResult, error) {
	k, err := idempotencyOf(p, args.IdempotencyKey, func(ctx context.Context, prior Record) error {
		var o event.Opened
		if err := s.openPrior(ctx, prior, event.ConversationOpened, &o); err != nil {
			return err
		}
		if o.Text != args.Text || o.EraseAfterCloseHours != hoursOf(args.EraseAfterCloseHours) {
			return ErrKeyReused
		}
		return nil
	})
	if err != nil {
		return chatapi.OpenResult{}, err
	}
	policy := s.policies.Get(p.Tenant)
	ch, err := conversation.OpenWith(p, args.Text, args.EraseAfterCloseHours, policy.EraseAfterClose())
	if err != nil {
		return chatapi.OpenResult{}, err
	}
	mu := s.opening.of(p.Tenant, p.ID)
	mu.Lock()
	defer mu.Unlock()
	err = conversation.CheckOpen(s.state.openOf(p.Tenant, p.ID), policy.OpenConversationLimit())
	if err != nil && s.followed(ctx) == nil {
		// Counted again once this instance applied every event stored: a
		// close made through another instance may not have reached it yet.
		err = conversation.CheckOpen(s.state.openOf(p.Tenant, p.ID), policy.OpenConversationLimit())
	}
	if err != nil {
		// A repeat of an opening that was stored answers it, whatever the
		// visitor opened since.
		if k.hash != "" {
			if r, rerr := s.reopen(ctx, p, k.id("conversation"), k); rerr == nil {
				return r, nil
			}
		}
		return chatapi.OpenResult{}, err
	}
	keys, err := s.visitorKeys(ctx, p.Tenant, p.ID)
	if err != nil {
		return chatapi.OpenResult{}, err
	}
	id := k.id("conversation")
	env, err := event.NewWithID(k.id("event"), keys.Data, ch.Type, p.Tenant, p.ID, id, s.now(), ch.Payload)
	if err != nil {
		return chatapi.OpenResult{}, err
	}
	env.Idempotency = k.hash
	r, err := s.appendEvent(ctx, env, 0)
	switch {
	case errors.Is(err, ErrStale) && k.hash != "":
		return s.reopen(ctx, p, id, k)
	case errors.Is(err, ErrStale):
		// The id is new, so only an id collision gets here.
		return chatapi.OpenResult{}, fmt.Errorf("open %s: new conversation id in use: %w", id, err)
	case errors.Is(err, ErrDuplicateID) && k.hash != "":
		return chatapi.OpenResult{}, ErrKeyReused
	case err != nil:
		return chatapi.OpenResult{}, err
	}
	if e := s.state.getOrCreate(p.Tenant, id); e != nil { // nil only were the new id erased
		e.apply(r, ch.Payload, false)
		s.state.track(e)
	}
	return chatapi.OpenResult{ID: id}, nil
}

// reopen answers an opening repeated with idempotency k, whose conversation
// id exists: the conversation, when its first event is this request's.
func (s *Service) reopen(ctx context.Context, p auth.Principal, id string, k idempotency) (chatapi.OpenResult, error) {
	e, err := s.find(ctx, p.Tenant, id, false)
	if err != nil {
		return chatapi.OpenResult{}, err
	}
	prior, ok, err := s.prior(ctx, e, k.hash)
	if err != nil {
		return chatapi.OpenResult{}, err
	}
	if !ok {
		return chatapi.OpenResult{}, ErrKeyReused
	}
	if _, err := k.repeat(ctx, prior); err != nil {
		return chatapi.OpenResult{}, err
	}
	return chatapi.OpenResult{ID: id}, nil
}

// hoursOf is the erasure delay an opening asked for as event.Opened
// records it.
func hoursOf(h *int) int {
	if h == nil {
		return 0
	}
	return *h
}
