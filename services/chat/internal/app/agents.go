package app

import (
	"cmp"
	"context"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// Agents keeps each agent's presence and capacity where every chat
// instance reads them; *jetstream.Agents is one.
type Agents interface {
	// Get returns the agent's availability, the zero one when nothing was
	// set for them.
	Get(ctx context.Context, tenant, agent string) (conversation.Availability, error)
	// SetPresence stores the agent's presence, set at a.PresenceAt.
	SetPresence(ctx context.Context, tenant, agent string, a conversation.Availability) error
	// SetCapacity stores the agent's capacity, a.MaxOpen.
	SetCapacity(ctx context.Context, tenant, agent string, a conversation.Availability) error
}

// SetPresence sets the calling agent's presence and returns their
// availability.
func (s *Service) SetPresence(ctx context.Context, p auth.Principal, args chatapi.PresenceArgs) (chatapi.Availability, error) {
	if err := conversation.CanSetPresence(p); err != nil {
		return chatapi.Availability{}, err
	}
	presence, err := conversation.ParsePresence(args.Status)
	if err != nil {
		return chatapi.Availability{}, err
	}
	if s.agents == nil {
		return chatapi.Availability{}, ErrNoAgents
	}
	if err := s.agents.SetPresence(ctx, p.Tenant, p.ID, conversation.Availability{Presence: presence, PresenceAt: s.now()}); err != nil {
		return chatapi.Availability{}, err
	}
	return s.availability(ctx, p.Tenant, p.ID)
}

// SetCapacity sets how many open conversations may be assigned to an agent
// and returns their availability; supervisors and admins may.
func (s *Service) SetCapacity(ctx context.Context, p auth.Principal, args chatapi.CapacityArgs) (chatapi.Availability, error) {
	if err := conversation.CanManageAgents(p); err != nil {
		return chatapi.Availability{}, err
	}
	if err := conversation.CheckID("agent_id", args.Agent); err != nil {
		return chatapi.Availability{}, err
	}
	if err := conversation.CheckCapacity(args.MaxOpen); err != nil {
		return chatapi.Availability{}, err
	}
	if s.agents == nil {
		return chatapi.Availability{}, ErrNoAgents
	}
	if err := s.agents.SetCapacity(ctx, p.Tenant, args.Agent, conversation.Availability{MaxOpen: args.MaxOpen}); err != nil {
		return chatapi.Availability{}, err
	}
	return s.availability(ctx, p.Tenant, args.Agent)
}

// Availability returns an agent's presence, capacity and open
// conversations, to the agent themself, supervisors and admins.
func (s *Service) Availability(ctx context.Context, p auth.Principal, args chatapi.AgentArgs) (chatapi.Availability, error) {
	if err := conversation.CanSeeAgent(p, args.Agent); err != nil {
		return chatapi.Availability{}, err
	}
	if err := conversation.CheckID("agent_id", args.Agent); err != nil {
		return chatapi.Availability{}, err
	}
	return s.availability(ctx, p.Tenant, args.Agent)
}

func (s *Service) availability(ctx context.Context, tenant, agent string) (chatapi.Availability, error) {
	var a conversation.Availability
	if s.agents != nil {
		var err error
		if a, err = s.agents.Get(ctx, tenant, agent); err != nil {
			return chatapi.Availability{}, err
		}
	}
	out := chatapi.Availability{Agent: agent, Status: string(cmp.Or(a.Presence, conversation.Online)), MaxOpen: a.MaxOpen, Open: s.openAssigned(tenant, agent)}
	if !a.PresenceAt.IsZero() {
		out.StatusAt = &a.PresenceAt
	}
	return out, nil
}

// takes returns the check, for the decisions of one command, of whether a
// conversation of tenant may be assigned to agent by their availability
// (conversation.Availability.Takes); it always passes when no Agents are
// kept. A command decides again after losing a race, so the availability
// is read once, the first time it is needed, not once a decision: each
// read would widen the window in which the command can lose again. The
// agent's open conversations are counted from what this instance holds,
// which may lag another's assignments and closes by its follower's delay:
// a command does not wait for its follower, which would make every
// assignment as slow as the follower is behind.
func (s *Service) takes(tenant, agent string, themself bool) func(context.Context) error {
	var av *conversation.Availability
	return func(ctx context.Context) error {
		if s.agents == nil {
			return nil
		}
		if av == nil {
			a, err := s.agents.Get(ctx, tenant, agent)
			if err != nil {
				return err
			}
			av = &a
		}
		return av.Takes(s.openAssigned(tenant, agent), themself)
	}
}

// openAssigned counts the open conversations of tenant assigned to agent
// that this instance holds: every open one it has applied, as each
// instance follows all of CHAT.
func (s *Service) openAssigned(tenant, agent string) int {
	n := 0
	s.state.each(tenant, false, func(_ *entry, c conversation.Conversation) {
		if c.Status == conversation.Open && c.Assigned && c.Assignee == agent {
			n++
		}
	})
	return n
}
