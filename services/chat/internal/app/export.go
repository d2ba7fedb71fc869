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
// first, each with its transcript decrypted: for the visitor themself or an
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
	type transcript struct {
		conv conversation.Conversation
		msgs []message
	}
	var ts []transcript
	for _, e := range s.state.all(p.Tenant) {
		if c, msgs := e.transcript(); c.Exists() && c.Visitor == args.Visitor {
			ts = append(ts, transcript{c, msgs})
		}
	}
	out := chatapi.ExportResult{Conversations: []chatapi.ExportedConversation{}}
	if len(ts) == 0 {
		return out, nil
	}
	slices.SortFunc(ts, func(a, b transcript) int {
		if c := a.conv.CreatedAt.Compare(b.conv.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.conv.ID, b.conv.ID)
	})
	key, err := s.visitorKeys(ctx, p.Tenant, args.Visitor)
	if err != nil {
		return chatapi.ExportResult{}, err
	}
	start := 0
	if args.After != nil {
		start = slices.IndexFunc(ts, func(t transcript) bool { return t.conv.ID == args.After.Conversation })
		if start < 0 {
			return chatapi.ExportResult{}, &conversation.ValidationError{Field: "after", Reason: "names no conversation of this visitor"}
		}
	}
	pg := &page{limit: math.MaxInt} // bounded by bytes alone: see chatapi.PageItems
	for i, t := range ts[start:] {
		ec := chatapi.ExportedConversation{Summary: summary(t.conv), Messages: []chatapi.Message{}}
		// The conversation's own bytes are counted with its first message in
		// the page, or alone when none of its messages is left.
		head, err := jsonSize(ec)
		if err != nil {
			return chatapi.ExportResult{}, err
		}
		for _, m := range t.msgs {
			if i == 0 && args.After != nil && m.seq <= args.After.Seq {
				continue
			}
			cm := chatapi.Message{ID: m.env.ID, Seq: m.seq, At: m.env.At}
			if cm.Author, cm.Text, err = open(key.Data, m.env); err != nil {
				return chatapi.ExportResult{}, err
			}
			n, err := jsonSize(cm)
			if err != nil {
				return chatapi.ExportResult{}, err
			}
			if !pg.fits(head + n) {
				// The page is full: the next starts after the last message in it,
				// or at the start of this conversation if none of it fitted (it
				// is not the page's first, which always fits).
				out.Next = &chatapi.ExportCursor{Conversation: t.conv.ID}
				if len(ec.Messages) > 0 {
					out.Conversations = append(out.Conversations, ec)
					out.Next.Seq = ec.Messages[len(ec.Messages)-1].Seq
				}
				return out, nil
			}
			pg.add(head + n)
			head = 0
			ec.Messages = append(ec.Messages, cm)
		}
		if head > 0 {
			if !pg.fits(head) {
				out.Next = &chatapi.ExportCursor{Conversation: t.conv.ID}
				return out, nil
			}
			pg.add(head)
		}
		out.Conversations = append(out.Conversations, ec)
	}
	return out, nil
}
