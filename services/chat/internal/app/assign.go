package app

import (
	"context"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// Assign assigns a conversation to an agent and returns its summary.
func (s *Service) Assign(ctx context.Context, p auth.Principal, args chatapi.AssignArgs) (chatapi.Summary, error) {
	c, _, err := s.update(ctx, p, args.Conversation, func(c *conversation.Conversation) ([]conversation.Change, error) {
		return c.Assign(p, args.Agent)
	})
	if err != nil {
		return chatapi.Summary{}, err
	}
	return s.shown(ctx, c)
}
