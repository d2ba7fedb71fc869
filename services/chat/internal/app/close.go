package app

import (
	"context"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// Close closes a conversation and returns its summary.
func (s *Service) Close(ctx context.Context, p auth.Principal, args chatapi.ConversationArgs) (chatapi.Summary, error) {
	c, _, err := s.update(ctx, p, args.Conversation, func(c *conversation.Conversation) ([]conversation.Change, error) {
		return c.Close(p)
	})
	if err != nil {
		return chatapi.Summary{}, err
	}
	return s.shown(ctx, c)
}
