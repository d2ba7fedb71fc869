package app

import (
	"context"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
)

// Get returns the summary of one conversation, caught up from the event
// store, with the profile its visitor gave themself, to whoever finds it in
// their inbox (conversation.CanSee). Unlike a transcript read it is not
// audited, as the inbox's pages are not: a summary holds no message content.
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
