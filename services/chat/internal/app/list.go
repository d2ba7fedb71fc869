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
	pg := newPage(args.Page.Limit)
	// The View's window of closed conversations, then what this instance
	// holds, the later version of a conversation winning: the View may lag
	// a close, or hold one this instance has yet to apply.
	var (
		window = map[string]conversation.Conversation{}
		floor  string // the window's last id, when closed ones follow it
	)
	if args.Status != chatapi.StatusOpen {
		cs, last, err := s.closedWindow(ctx, p, after, pg.limit)
		if err != nil {
			return chatapi.ListResult{}, err
		}
		for _, c := range cs {
			window[c.ID] = c
		}
		floor = last
	}
	// Only the page's first pg.limit can be listed: a heap keeps those.
	top := &convHeap{n: pg.limit}
	offer := func(c conversation.Conversation) {
		if c.Exists() && (after == "" || c.ID < after) && c.ID >= floor && c.Listed(p) &&
			(args.Status == "" || string(c.Status) == args.Status) {
			top.offer(c)
		}
	}
	s.state.each(p.Tenant, func(_ *entry, c conversation.Conversation) {
		if w, ok := window[c.ID]; ok {
			if c.Version > w.Version {
				window[c.ID] = c
			}
			return
		}
		offer(c)
	})
	for _, c := range window {
		offer(c)
	}
	out := make([]chatapi.Summary, 0, top.Len())
	for _, c := range top.desc() {
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
	switch {
	case top.more:
		res.Next = &out[len(out)-1].ID
	case floor != "":
		res.Next = &floor
	}
	return res, nil
}

// convHeap keeps the n conversations of greatest id offered to it, least
// id first, and whether it was offered more.
type convHeap struct {
	n    int
	cs   []conversation.Conversation
	more bool
}

func (h *convHeap) offer(c conversation.Conversation) {
	if len(h.cs) < h.n {
		heap.Push(h, c)
		return
	}
	h.more = true
	if c.ID > h.cs[0].ID {
		h.cs[0] = c
		heap.Fix(h, 0)
	}
}

// desc returns the conversations kept, greatest id first.
func (h *convHeap) desc() []conversation.Conversation {
	slices.SortFunc(h.cs, func(a, b conversation.Conversation) int { return strings.Compare(b.ID, a.ID) })
	return h.cs
}

func (h *convHeap) Len() int           { return len(h.cs) }
func (h *convHeap) Less(i, j int) bool { return h.cs[i].ID < h.cs[j].ID }
func (h *convHeap) Swap(i, j int)      { h.cs[i], h.cs[j] = h.cs[j], h.cs[i] }
func (h *convHeap) Push(x any)         { h.cs = append(h.cs, x.(conversation.Conversation)) }
func (h *convHeap) Pop() any {
	c := h.cs[len(h.cs)-1]
	h.cs = h.cs[:len(h.cs)-1]
	return c
}

// closedWindow returns the closed conversations among the n of p's tenant
// (p's own, for a visitor) with the greatest ids below after in the View,
// those expired left out, and the least id of them when the View holds more
// below it. Those this instance holds closed are taken from memory rather
// than read.
func (s *Service) closedWindow(ctx context.Context, p auth.Principal, after string, n int) ([]conversation.Conversation, string, error) {
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
		if e := s.state.peek(k.Tenant, k.ID); e != nil {
			if c := e.snapshot(); c.Status != conversation.Open {
				out[i], found[i] = c, true
				continue
			}
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
