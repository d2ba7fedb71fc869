package app

import (
	"context"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
)

// Typing answers whether p may show the other side of a conversation that
// they are typing (conversation.CanType) with its summary, which names who
// that other side is. Nothing is stored: the gateway relays the signal.
func (s *Service) Typing(ctx context.Context, p auth.Principal, args chatapi.ConversationArgs) (chatapi.Summary, error) {
	e, err := s.find(ctx, p.Tenant, args.Conversation, false)
	if err != nil {
		return chatapi.Summary{}, err
	}
	c := e.snapshot()
	if c.CanType(p) != nil {
		// Refused on what this instance holds: another may have written
		// what allows it, as for a command (see update).
		if e, err = s.find(ctx, p.Tenant, args.Conversation, true); err != nil {
			return chatapi.Summary{}, err
		}
		c = e.snapshot()
	}
	if err := c.CanType(p); err != nil {
		return chatapi.Summary{}, err
	}
	return summary(c), nil
}
