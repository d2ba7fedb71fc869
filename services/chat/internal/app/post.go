package app

import (
	"context"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// Post posts a message to a conversation. An agent posting to an unassigned
// conversation takes it: it is assigned to them first, within their
// capacity (see takes). A post repeated with its idempotency key answers
// the message the first stored.
func (s *Service) Post(ctx context.Context, p auth.Principal, args chatapi.PostArgs) (chatapi.PostResult, error) {
	k, err := idempotencyOf(p, args.IdempotencyKey, func(ctx context.Context, prior Record) error {
		var posted event.Posted
		if err := s.openPrior(ctx, prior, event.MessagePosted, &posted); err != nil {
			return err
		}
		if posted.Text != args.Text {
			return ErrKeyReused
		}
		return nil
	})
	if err != nil {
		return chatapi.PostResult{}, err
	}
	var takes func(context.Context) error // made only for a post that takes the conversation
	_, appended, err := s.updateKeyed(ctx, p, args.Conversation, k, func(c *conversation.Conversation) ([]conversation.Change, error) {
		changes, err := c.Post(p, args.Text, s.now(), s.policies.Get(p.Tenant).MessageLimit())
		if err != nil || len(changes) == 1 {
			return changes, err
		}
		if takes == nil {
			takes = s.takes(p.Tenant, p.ID, true)
		}
		return changes, takes(ctx)
	})
	if err != nil {
		return chatapi.PostResult{}, err
	}
	// The message is the last event appended; an assignment may precede it.
	last := appended[len(appended)-1]
	return chatapi.PostResult{ID: last.Event.ID, Seq: last.Seq, At: last.Event.At}, nil
}
