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
func (s *Service) Open(ctx context.Context, p auth.Principal, args chatapi.OpenArgs) (chatapi.OpenResult, error) {
	policy := s.policies.Get(p.Tenant)
	ch, err := conversation.OpenWith(p, args.Text, args.EraseAfterCloseHours, policy.EraseAfterClose())
	if err != nil {
		return chatapi.OpenResult{}, err
	}
	mu := s.opening.of(p.Tenant, p.ID)
	mu.Lock()
	defer mu.Unlock()
	if err := conversation.CheckOpen(s.state.openOf(p.Tenant, p.ID), policy.OpenConversationLimit()); err != nil {
		return chatapi.OpenResult{}, err
	}
	keys, err := s.visitorKeys(ctx, p.Tenant, p.ID)
	if err != nil {
		return chatapi.OpenResult{}, err
	}
	id := event.NewID()
	env, err := event.New(keys.Data, ch.Type, p.Tenant, p.ID, id, s.now(), ch.Payload)
	if err != nil {
		return chatapi.OpenResult{}, err
	}
	r, err := s.appendEvent(ctx, env, 0)
	if errors.Is(err, ErrStale) {
		// The id is new, so only an id collision gets here.
		return chatapi.OpenResult{}, fmt.Errorf("open %s: new conversation id in use: %w", id, err)
	}
	if err != nil {
		return chatapi.OpenResult{}, err
	}
	if e := s.state.getOrCreate(p.Tenant, id); e != nil { // nil only were the new id erased
		e.apply(r, ch.Payload, false)
	}
	return chatapi.OpenResult{ID: id}, nil
}
