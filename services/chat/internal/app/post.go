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
// the message the first stored, also once its visitor withdrew it: then
// the withdrawal is what the key finds, and its text is gone, so the
// repeat's is not compared with it.
func (s *Service) Post(ctx context.Context, p auth.Principal, args chatapi.PostArgs) (chatapi.PostResult, error) {
	var (
		k         idempotency
		withdrawn *event.Withdrawn // of the key's message, when it is what the key found
	)
	k, err := idempotencyOf(p, args.IdempotencyKey, func(ctx context.Context, prior Record) error {
		if prior.Event.Type == event.MessageWithdrawn {
			var w event.Withdrawn
			if err := s.openPrior(ctx, prior, event.MessageWithdrawn, &w); err != nil {
				return err
			}
			if w.Message != k.id("event") {
				return ErrKeyReused
			}
			withdrawn = &w
			return nil
		}
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
	if withdrawn != nil {
		return chatapi.PostResult{ID: withdrawn.Message, Seq: withdrawn.PostedSeq, At: withdrawn.PostedAt}, nil
	}
	// The message is the last event appended; an assignment may precede it.
	last := appended[len(appended)-1]
	return chatapi.PostResult{ID: last.Event.ID, Seq: last.Seq, At: last.Event.At}, nil
}
