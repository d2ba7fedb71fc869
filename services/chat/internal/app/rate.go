package app

import (
	"context"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// Rate records the visitor's rating of a closed conversation and returns its
// summary.
func (s *Service) Rate(ctx context.Context, p auth.Principal, args chatapi.RateArgs) (chatapi.Summary, error) {
	c, _, err := s.update(ctx, p, args.Conversation, func(c *conversation.Conversation) ([]conversation.Change, error) {
		return c.Rate(p, args.Score)
	})
	if err != nil {
		return chatapi.Summary{}, err
	}
	return s.shown(ctx, c)
}
