package app

import (
	"context"
	"math"
	"slices"
	"strings"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// Export returns every conversation of a visitor of p's tenant, oldest
// first, each with its transcript decrypted, and on the first page the
// profile the visitor gave themself: for the visitor themself or an
// admin. It returns conversation.ErrErased when the visitor has conversations but no
// keys, so an erased visitor's export never looks like an empty one. The
// caller (the gateway, after the privacy service) records and audits the
// export; this use case only reads.
func (s *Service) Export(ctx context.Context, p auth.Principal, args chatapi.ExportArgs) (chatapi.ExportResult, error) {
	if !stream.ValidToken(args.Visitor) {
		return chatapi.ExportResult{}, &conversation.ValidationError{Field: "visitor", Reason: "must be 1 to 64 letters, digits, '-' or '_'"}
	}
	if err := conversation.CheckActor(p); err != nil {
		return chatapi.ExportResult{}, err
	}
	if p.Role != auth.RoleAdmin && !(p.Role == auth.RoleVisitor && p.ID == args.Visitor) {
		return chatapi.ExportResult{}, conversation.ErrForbidden
	}
	ts, err := s.visitorConversations(ctx, p.Tenant, args.Visitor)
	if err != nil {
		return chatapi.ExportResult{}, err
	}
	out := chatapi.ExportResult{Conversations: []chatapi.ExportedConversation{}}
	pg := &page{limit: math.MaxInt} // bounded by bytes alone: see chatapi.PageItems
	if args.After == nil {
		profiles, err := s.profilesOf(ctx, p.Tenant, []string{args.Visitor})
		if err != nil {
			return chatapi.ExportResult{}, err
		}
		if out.Profile = profiles[args.Visitor]; out.Profile != nil {
			n, err := jsonSize(out.Profile)
			if err != nil {
				return chatapi.ExportResult{}, err
			}
			pg.bytes += n
		}
	}
	if len(ts) == 0 {
		return out, nil
	}
	slices.SortFunc(ts, func(a, b conversation.Conversation) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	key, err := s.visitorKeys(ctx, p.Tenant, args.Visitor)
	if err != nil {
		return chatapi.ExportResult{}, err
	}
	start := 0
	if args.After != nil {
		start = slices.IndexFunc(ts, func(c conversation.Conversation) bool { return c.ID == args.After.Conversation })
		if start < 0 {
			return chatapi.ExportResult{}, &conversation.ValidationError{Field: "after", Reason: "names no conversation of this visitor"}
		}
	}
	for i, c := range ts[start:] {
		ec := chatapi.ExportedConversation{Summary: summary(c), Messages: []chatapi.Message{}}
		// The conversation's own bytes are counted with its first message in
		// the page, or alone when none of its messages is left.
		head, err := jsonSize(ec)
		if err != nil {
			return chatapi.ExportResult{}, err
		}
		var after uint64
		if i == 0 && args.After != nil {
			after = args.After.Seq
		}
		full := false
		tr := lines{key: key.Data, openingWithdrawn: c.OpeningWithdrawn}
		err = s.scan(ctx, c.Tenant, c.ID, after, readBatch, func(r Record) (bool, error) {
			cm, shown, err := tr.line(r)
			if err != nil {
				return false, err
			}
			if !shown {
				return true, nil
			}
			n, err := jsonSize(cm)
			if err != nil {
				return false, err
			}
			if full = !pg.fits(head + n); full {
				return false, nil
			}
			pg.add(head + n)
			head = 0
			ec.Messages = append(ec.Messages, cm)
			return true, nil
		})
		if err != nil {
			return chatapi.ExportResult{}, err
		}
		if full || head > 0 && !pg.fits(head) {
			// The page is full: the next starts after the last message in it,
			// or at the start of this conversation if none of it fitted (it
			// is not the page's first, which always fits).
			out.Next = &chatapi.ExportCursor{Conversation: c.ID}
			if len(ec.Messages) > 0 {
				out.Conversations = append(out.Conversations, ec)
				out.Next.Seq = ec.Messages[len(ec.Messages)-1].Seq
			}
			return out, nil
		}
		if head > 0 {
			pg.add(head)
		}
		out.Conversations = append(out.Conversations, ec)
	}
	return out, nil
}

// visitorConversations returns the visitor's conversations: those this
// instance holds, and the closed ones in the View it does not.
func (s *Service) visitorConversations(ctx context.Context, tenant, visitor string) ([]conversation.Conversation, error) {
	byID := map[string]conversation.Conversation{}
	s.state.each(tenant, true, func(_ *entry, c conversation.Conversation) {
		if c.Exists() && c.Visitor == visitor {
			byID[c.ID] = c
		}
	})
	now := s.now()
	err := s.view.Closed(ctx, tenant, visitor, func(k ClosedKey) error {
		if c, ok := byID[k.ID]; ok && c.Status != conversation.Open {
			return nil
		}
		c, ok, err := s.viewed(ctx, k, now)
		if err != nil || !ok {
			return err
		}
		if held, ok := byID[k.ID]; !ok || c.Version > held.Version {
			byID[k.ID] = c
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]conversation.Conversation, 0, len(byID))
	for _, c := range byID {
		out = append(out, c)
	}
	return out, nil
}
