package app

import (
	"context"
	"slices"
	"strings"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// List returns one page of the conversations in p's inbox: a visitor's
// own, an agent's assigned and unassigned ones, all of the tenant for
// supervisors and admins, in descending order of id from after the cursor
// (see chatapi.ListArgs).
func (s *Service) List(_ context.Context, p auth.Principal, args chatapi.ListArgs) (chatapi.ListResult, error) {
	if err := conversation.CheckActor(p); err != nil {
		return chatapi.ListResult{}, err
	}
	out := []chatapi.Summary{}
	for _, e := range s.state.all(p.Tenant) {
		if c := e.snapshot(); c.Listed(p) && (args.Page.After == "" || c.ID < args.Page.After) {
			out = append(out, summary(c))
		}
	}
	slices.SortFunc(out, func(a, b chatapi.Summary) int { return strings.Compare(b.ID, a.ID) })
	pg := newPage(args.Page.Limit)
	for i, c := range out {
		ok, err := pg.take(c)
		if err != nil {
			return chatapi.ListResult{}, err
		}
		if !ok {
			return chatapi.ListResult{Conversations: out[:i], Next: &out[i-1].ID}, nil
		}
	}
	return chatapi.ListResult{Conversations: out}, nil
}

func summary(c conversation.Conversation) chatapi.Summary {
	s := chatapi.Summary{
		ID:            c.ID,
		Tenant:        c.Tenant,
		Visitor:       c.Visitor,
		Status:        string(c.Status),
		CreatedAt:     c.CreatedAt,
		LastMessageAt: c.LastMessageAt,
	}
	if c.Assigned && c.Assignee != "" {
		s.Assignee = &c.Assignee
	}
	return s
}
