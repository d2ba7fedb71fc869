package app

import (
	"context"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// HandOff hands a conversation assigned to a bot to the agents, for its
// visitor or that bot (conversation.HandOff), and returns its summary: to
// the bot without the visitor's profile, which is not the bot's to read.
// A conversation assigned to no bot is left as it is.
func (s *Service) HandOff(ctx context.Context, p auth.Principal, args chatapi.ConversationArgs) (chatapi.Summary, error) {
	c, _, err := s.update(ctx, p, args.Conversation, func(c *conversation.Conversation) ([]conversation.Change, error) {
		return c.HandOff(p)
	})
	if err != nil {
		return chatapi.Summary{}, err
	}
	if p.Role == auth.RoleBot {
		return summary(c), nil
	}
	return s.shown(ctx, c)
}
