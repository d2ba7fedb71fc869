package app

import (
	"context"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// Assign assigns a conversation to an agent and returns its summary. It
// goes by the agent's availability (see takes) unless a supervisor or
// admin overrides it.
func (s *Service) Assign(ctx context.Context, p auth.Principal, args chatapi.AssignArgs) (chatapi.Summary, error) {
	if args.Override {
		if err := conversation.CanManageAgents(p); err != nil {
			return chatapi.Summary{}, err
		}
	}
	takes := s.takes(p.Tenant, args.Agent, p.ID == args.Agent)
	c, _, err := s.update(ctx, p, args.Conversation, func(c *conversation.Conversation) ([]conversation.Change, error) {
		changes, err := c.Assign(p, args.Agent)
		if err != nil || len(changes) == 0 || args.Override {
			return changes, err
		}
		return changes, takes(ctx)
	})
	if err != nil {
		return chatapi.Summary{}, err
	}
	return s.shown(ctx, c)
}
