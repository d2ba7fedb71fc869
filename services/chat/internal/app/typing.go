package app

import (
	"context"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// Typing answers whether p may show the other side of a conversation that
// they are typing (conversation.CanType) with its summary, which names who
// that other side is. Nothing is stored: the gateway relays the signal.
func (s *Service) Typing(ctx context.Context, p auth.Principal, args chatapi.ConversationArgs) (chatapi.Summary, error) {
	c, err := s.findAllowed(ctx, p, args.Conversation, (*conversation.Conversation).CanType)
	if err != nil {
		return chatapi.Summary{}, err
	}
	return summary(c), nil
}

// findAllowed returns the conversation id of p's tenant when allow lets p
// at it, decided on the state this instance holds and, when that refuses,
// on the state caught up from the store: an assignment on another instance
// may allow it. A bot no longer registered is refused once allowed
// (stillRegistered).
func (s *Service) findAllowed(ctx context.Context, p auth.Principal, id string, allow func(*conversation.Conversation, auth.Principal) error) (conversation.Conversation, error) {
	e, err := s.find(ctx, p.Tenant, id, false)
	if err != nil {
		return conversation.Conversation{}, err
	}
	c := e.snapshot()
	if allow(&c, p) != nil {
		if e, err = s.find(ctx, p.Tenant, id, true); err != nil {
			return conversation.Conversation{}, err
		}
		c = e.snapshot()
	}
	if err := allow(&c, p); err != nil {
		return conversation.Conversation{}, err
	}
	if err := s.stillRegistered(ctx, p); err != nil {
		return conversation.Conversation{}, err
	}
	return c, nil
}
