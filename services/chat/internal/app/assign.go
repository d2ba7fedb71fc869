package app

import (
	"context"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// Bots tells which bots the tenants registered; *jetstream.Bots is one.
type Bots interface {
	// Registered reports whether tenant registered a bot of id: an
	// integration of kind bot.
	Registered(ctx context.Context, tenant, id string) (bool, error)
}

// Assign assigns a conversation to an agent, or to a bot the tenant
// registered, and returns its summary. An assignment to an agent goes by
// their availability (see takes) unless a supervisor or admin overrides it.
func (s *Service) Assign(ctx context.Context, p auth.Principal, args chatapi.AssignArgs) (chatapi.Summary, error) {
	if args.Bot != "" {
		return s.assignBot(ctx, p, args)
	}
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

// assignBot assigns a conversation to the bot args name, once the
// decision stands and the bot is found registered. A bot is no agent:
// neither presence nor capacity applies, so override changes nothing.
func (s *Service) assignBot(ctx context.Context, p auth.Principal, args chatapi.AssignArgs) (chatapi.Summary, error) {
	if args.Agent != "" {
		return chatapi.Summary{}, &conversation.ValidationError{Field: "bot_id", Reason: "give agent_id or bot_id, not both"}
	}
	var registered *bool // read once, the first time a decision needs it
	c, _, err := s.update(ctx, p, args.Conversation, func(c *conversation.Conversation) ([]conversation.Change, error) {
		changes, err := c.AssignBot(p, args.Bot)
		if err != nil || len(changes) == 0 {
			return changes, err
		}
		if registered == nil {
			found, err := s.registered(ctx, p.Tenant, args.Bot)
			if err != nil {
				return nil, err
			}
			registered = &found
		}
		if !*registered {
			return nil, &conversation.ValidationError{Field: "bot_id", Reason: "no bot of this id is registered"}
		}
		return changes, nil
	})
	if err != nil {
		return chatapi.Summary{}, err
	}
	return s.shown(ctx, c)
}

// registered reports whether tenant registered a bot of id; with no
// registry, none.
func (s *Service) registered(ctx context.Context, tenant, id string) (bool, error) {
	if s.bots == nil {
		return false, nil
	}
	return s.bots.Registered(ctx, tenant, id)
}

// stillRegistered refuses a bot whose registration was deleted: its
// access token outlives the deletion by up to its lifetime, and a
// deletion stops the bot at once. Every command checks it (updateKeyed),
// and every read of one conversation (findAllowed): a bot reaches a
// conversation no other way. Any other principal passes.
func (s *Service) stillRegistered(ctx context.Context, p auth.Principal) error {
	if p.Role != auth.RoleBot {
		return nil
	}
	found, err := s.registered(ctx, p.Tenant, p.ID)
	if err != nil {
		return err
	}
	if !found {
		return conversation.ErrForbidden
	}
	return nil
}
