package app

import (
	"context"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
)

// Get returns the summary of one conversation, with the profile its
// visitor gave themself, to its visitor or to staff of its tenant.
func (s *Service) Get(ctx context.Context, p auth.Principal, args chatapi.ConversationArgs) (chatapi.Summary, error) {
	e, err := s.find(ctx, p.Tenant, args.Conversation, true)
	if err != nil {
		return chatapi.Summary{}, err
	}
	c := e.snapshot()
	if err := c.CanSee(p); err != nil {
		return chatapi.Summary{}, err
	}
	return s.shown(ctx, c)
}
