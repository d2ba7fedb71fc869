package app

import (
	"container/heap"
	"context"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// List returns one page of the conversations in p's inbox: a visitor's
// own, an agent's assigned and unassigned ones, all of the tenant for
// supervisors and admins, in descending order of id from after the cursor
// (see chatapi.ListArgs), of the status asked for or of both.
//
// Open conversations come from memory. Closed ones come from the View a
// window at a time: the ids of the page's size that follow the cursor,
// found by a scan of the View's keys that holds no more than the window,
// then their entries. A page ends where the window does, so it may hold
// fewer conversations than asked for (none, for an agent whose window is
// all others') and still name a next page: paging moves on all the same.
func (s *Service) List(ctx context.Context, p auth.Principal, args chatapi.ListArgs) (chatapi.ListResult, error) {
	if err := conversation.CheckActor(p); err != nil {
		return chatapi.ListResult{}, err
	}
	if args.Status != "" && args.Status != chatapi.StatusOpen && args.Status != chatapi.StatusClosed {
		return chatapi.ListResult{}, &conversation.ValidationError{Field: "status", Reason: "want open or closed"}
	}
	after := args.Page.After
	below := func(id string) bool { return after == "" || id < after }
	pg := newPage(args.Page.Limit)
	// Conversations by id: what this instance holds, then the View's closed
	// ones, the later version winning (the View may lag a close or hold one
	// this instance has yet to apply).
	byID := map[string]conversation.Conversation{}
	keep := func(c conversation.Conversation) {
		if prev, ok := byID[c.ID]; !ok || c.Version > prev.Version {
			byID[c.ID] = c
		}
	}
	for _, e := range s.state.held(p.Tenant) {
		if c := e.snapshot(); c.Exists() && below(c.ID) {
			keep(c)
		}
	}
	var floor string // the window's last id, when closed ones follow it
	if args.Status != chatapi.StatusOpen {
		cs, last, err := s.closedWindow(ctx, p, after, pg.limit, byID)
		if err != nil {
			return chatapi.ListResult{}, err
		}
		for _, c := range cs {
			keep(c)
		}
		floor = last
	}
	cs := make([]conversation.Conversation, 0, len(byID))
	for _, c := range byID {
		if c.Listed(p) && (args.Status == "" || string(c.Status) == args.Status) && c.ID >= floor {
			cs = append(cs, c)
		}
	}
	slices.SortFunc(cs, func(a, b conversation.Conversation) int { return strings.Compare(b.ID, a.ID) })
	out := make([]chatapi.Summary, 0, min(len(cs), pg.limit))
	for _, c := range cs {
		sum := summary(c)
		ok, err := pg.take(sum)
		if err != nil {
			return chatapi.ListResult{}, err
		}
		if !ok {
			return chatapi.ListResult{Conversations: out, Next: &out[len(out)-1].ID}, nil
		}
		out = append(out, sum)
	}
	res := chatapi.ListResult{Conversations: out}
	if floor != "" {
		res.Next = &floor
	}
	return res, nil
}

// closedWindow returns the closed conversations among the n of p's tenant
// (p's own, for a visitor) with the greatest ids below after in the View,
// those expired left out, and the least id of them when the View holds more
// below it. Those in held are taken from there rather than read.
func (s *Service) closedWindow(ctx context.Context, p auth.Principal, after string, n int, held map[string]conversation.Conversation) ([]conversation.Conversation, string, error) {
	visitor := ""
	if p.Role == auth.RoleVisitor {
		visitor = p.ID
	}
	w := &window{n: n}
	err := s.view.Closed(ctx, p.Tenant, visitor, func(k ClosedKey) error {
		if after == "" || k.ID < after {
			w.offer(k)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	var floor string
	if w.more {
		floor = w.keys[0].ID // the heap's least
	}
	out := make([]conversation.Conversation, len(w.keys))
	found := make([]bool, len(w.keys))
	now := s.now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(viewWriters)
	for i, k := range w.keys {
		if c, ok := held[k.ID]; ok && c.Status != conversation.Open {
			out[i], found[i] = c, true
			continue
		}
		g.Go(func() error {
			v, ok, err := s.view.Get(gctx, k.Tenant, k.Visitor, k.ID)
			if err != nil || !ok {
				return err
			}
			e, err := s.restored(gctx, v)
			if err != nil || e.expired(now) {
				return err
			}
			out[i], found[i] = e.conv, true
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, "", err
	}
	live := out[:0]
	for i, c := range out {
		if found[i] {
			live = append(live, c)
		}
	}
	return live, floor, nil
}

// window keeps the n closed keys of greatest id offered to it, in a heap
// of least id first, and whether it was offered more.
type window struct {
	n    int
	keys []ClosedKey
	more bool
}

func (w *window) offer(k ClosedKey) {
	if len(w.keys) < w.n {
		heap.Push(w, k)
		return
	}
	w.more = true
	if k.ID > w.keys[0].ID {
		w.keys[0] = k
		heap.Fix(w, 0)
	}
}

func (w *window) Len() int           { return len(w.keys) }
func (w *window) Less(i, j int) bool { return w.keys[i].ID < w.keys[j].ID }
func (w *window) Swap(i, j int)      { w.keys[i], w.keys[j] = w.keys[j], w.keys[i] }
func (w *window) Push(x any)         { w.keys = append(w.keys, x.(ClosedKey)) }
func (w *window) Pop() any {
	k := w.keys[len(w.keys)-1]
	w.keys = w.keys[:len(w.keys)-1]
	return k
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
