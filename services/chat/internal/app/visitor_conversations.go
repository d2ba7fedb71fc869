package app

import (
	"context"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// VisitorConversations lists one page of a visitor's conversations in p's
// tenant, as the visitor would see them (List), for another service: p
// must be the system principal, so that no user, whatever their role,
// lists someone else's conversations this way. It returns
// conversation.ErrForbidden for any other principal.
func (s *Service) VisitorConversations(ctx context.Context, p auth.Principal, args chatapi.VisitorConversationsArgs) (chatapi.ListResult, error) {
	if p.Role != auth.RoleSystem {
		return chatapi.ListResult{}, conversation.ErrForbidden
	}
	if err := conversation.CheckID("visitor", args.Visitor); err != nil {
		return chatapi.ListResult{}, err
	}
	visitor := auth.Principal{Tenant: p.Tenant, ID: args.Visitor, Role: auth.RoleVisitor}
	return s.List(ctx, visitor, chatapi.ListArgs{Page: args.Page})
}
