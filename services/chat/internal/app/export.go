package app

import (
	"context"
	"encoding/json"
	"fmt"
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
// profile the visitor gave themself, as the JSON of a chatapi.ExportResult:
// each message is encoded once, into the page it is measured for. It is
// for the visitor themself or an admin. It returns conversation.ErrErased
// when the visitor has conversations but no keys, so an erased visitor's
// export never looks like an empty one. The caller (the gateway, after
// the privacy service) records and audits the export; this use case only
// reads.
func (s *Service) Export(ctx context.Context, p auth.Principal, args chatapi.ExportArgs) (json.RawMessage, error) {
	if !stream.ValidToken(args.Visitor) {
		return nil, &conversation.ValidationError{Field: "visitor", Reason: "must be 1 to 64 letters, digits, '-' or '_'"}
	}
	if err := conversation.CheckActor(p); err != nil {
		return nil, err
	}
	if p.Role != auth.RoleAdmin && !(p.Role == auth.RoleVisitor && p.ID == args.Visitor) {
		return nil, conversation.ErrForbidden
	}
	// The conversations come from what this instance holds and the View:
	// its follower must have applied what another instance wrote.
	if err := s.followed(ctx); err != nil {
		return nil, err
	}
	ts, err := s.visitorConversations(ctx, p.Tenant, args.Visitor)
	if err != nil {
		return nil, err
	}
	out := newExportJSON()
	pg := &out.page
	if args.After == nil {
		profiles, err := s.profilesOf(ctx, p.Tenant, []string{args.Visitor})
		if err != nil {
			return nil, err
		}
		if prof := profiles[args.Visitor]; prof != nil {
			if err := out.attachProfile(prof); err != nil {
				return nil, err
			}
		}
	}
	if len(ts) == 0 {
		return out.end(nil)
	}
	slices.SortFunc(ts, func(a, b conversation.Conversation) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	key, err := s.visitorKeys(ctx, p.Tenant, args.Visitor)
	if err != nil {
		return nil, err
	}
	start := 0
	if args.After != nil {
		start = slices.IndexFunc(ts, func(c conversation.Conversation) bool { return c.ID == args.After.Conversation })
		if start < 0 {
			return nil, &conversation.ValidationError{Field: "after", Reason: "names no conversation of this visitor"}
		}
	}
	// Events are read no more than the page still has room for, by the
	// size of the messages taken so far (few before the first): the
	// events read and opened are what a page in flight holds, and reading
	// a conversation of large messages whole for a page that takes a few
	// would multiply it.
	var taken, takenBytes int
	batch := func() int {
		if taken == 0 {
			return exportProbe
		}
		return min(readBatch, max(0, chatapi.PageBytes-pg.bytes)*taken/takenBytes+1)
	}
	for i, c := range ts[start:] {
		// The conversation's own bytes are counted with its first message in
		// the page, or alone when none of its messages is left.
		head, err := out.open(summary(c))
		if err != nil {
			return nil, err
		}
		var after, last uint64
		if i == 0 && args.After != nil {
			after = args.After.Seq
		}
		full := false
		tr := lines{key: key.Data, openingWithdrawn: s.openingWithdrawn(ctx, c)}
		err = s.scanBy(ctx, c.Tenant, c.ID, after, batch, func(r Record) (bool, error) {
			cm, shown, err := tr.line(r)
			if err != nil {
				return false, err
			}
			if !shown {
				return true, nil
			}
			n, err := out.message(&cm, head)
			if err != nil || n == 0 {
				full = n == 0
				return false, err
			}
			taken, takenBytes = taken+1, takenBytes+n
			head, last = 0, cm.Seq
			return true, nil
		})
		if err != nil {
			return nil, err
		}
		if full || head > 0 && !pg.fits(head) {
			// The page is full: the next starts after the last message in it,
			// or at the start of this conversation if none of it fitted (it
			// is not the page's first, which always fits).
			out.close(head > 0)
			return out.end(&chatapi.ExportCursor{Conversation: c.ID, Seq: last})
		}
		if head > 0 {
			pg.add(head)
		}
		out.close(false)
	}
	return out.end(nil)
}

// exportJSON is an export page (a chatapi.ExportResult) whose messages are
// encoded into its JSON as they are taken, each once, to measure it and to
// send it, within the bounds of its page: chatapi.PageBytes, whatever the
// number of items (see chatapi.PageItems). Each conversation and each
// message counts the bytes it takes in the whole result, its separating
// comma included.
type exportJSON struct {
	page
	itemWriter
	profile []byte // the profile's JSON, written after the conversations
	convs   int    // conversations written
	start   int    // where the conversation being written starts in buf
	msgs    int    // messages of it written
}

func newExportJSON() *exportJSON {
	out := &exportJSON{page: page{limit: math.MaxInt}, itemWriter: newItemWriter()} // bounded by bytes alone: see chatapi.PageItems
	out.buf.WriteString(`{"conversations":[`)
	return out
}

// attachProfile adds the visitor's profile to the page.
func (out *exportJSON) attachProfile(prof *chatapi.Profile) error {
	b, err := json.Marshal(prof)
	if err != nil {
		return fmt.Errorf("encode an export's profile: %w", err)
	}
	out.profile = b
	out.bytes += len(b) + 1
	return nil
}

// open begins conversation c's part of the page with no messages yet, and
// returns the bytes it counts for in the page: counted with its first
// message, or alone when it has none (see close).
func (out *exportJSON) open(c chatapi.Summary) (int, error) {
	b, err := json.Marshal(chatapi.ExportedConversation{Summary: c, Messages: []chatapi.Message{}})
	if err != nil {
		return 0, fmt.Errorf("encode an exported conversation: %w", err)
	}
	out.start, out.msgs = out.buf.Len(), 0
	if out.convs > 0 {
		out.buf.WriteByte(',')
	}
	out.buf.Write(b[:len(b)-2]) // without the "]}" that close its messages
	return len(b) + 1, nil
}

// message encodes m into the conversation being written if it fits in the
// page with head, the bytes of the conversation still to count, and
// returns the bytes m counts for; 0 when it did not fit.
func (out *exportJSON) message(m *chatapi.Message, head int) (int, error) {
	mark, err := out.encode(m, out.msgs > 0)
	if err != nil {
		return 0, fmt.Errorf("encode an exported message: %w", err)
	}
	n := out.buf.Len() - mark
	if out.msgs == 0 {
		n++ // the comma after it, in place of the one before
	}
	if !out.fits(head + n) {
		out.buf.Truncate(mark)
		return 0, nil
	}
	out.add(head + n)
	out.msgs++
	return n, nil
}

// close ends the conversation being written, or drops it when it is left
// out of the page (none of it fitted).
func (out *exportJSON) close(drop bool) {
	if drop {
		out.buf.Truncate(out.start)
		return
	}
	out.buf.WriteString("]}")
	out.convs++
}

// end closes the page's JSON with next, the cursor of the page that
// follows (nil on the last page), and returns it.
func (out *exportJSON) end(next *chatapi.ExportCursor) (json.RawMessage, error) {
	out.buf.WriteByte(']')
	if out.profile != nil {
		out.buf.WriteString(`,"profile":`)
		out.buf.Write(out.profile)
	}
	if next != nil {
		b, err := json.Marshal(next)
		if err != nil {
			return nil, fmt.Errorf("encode an export's cursor: %w", err)
		}
		out.buf.WriteString(`,"next":`)
		out.buf.Write(b)
	}
	out.buf.WriteByte('}')
	return detach(out.buf), nil
}

// exportProbe is how many events an export page reads before it knows
// the size of its messages: a page holds at least this many of the
// largest (chatapi.PageBytes over chatapi.MaxTextBytes), so the probe is
// never more than the page takes.
const exportProbe = chatapi.PageBytes / chatapi.MaxTextBytes

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
