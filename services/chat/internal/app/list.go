package app

import (
	"container/heap"
	"context"
	"slices"
	"strings"
	"time"

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
// It shows every write answered before it was asked, through any instance:
// it waits first for this instance's follower to apply every event the
// store held (see followed), bounded by ctx. Open conversations then come
// from memory. Closed ones come from the View a
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
	if err := s.followed(ctx); err != nil {
		return chatapi.ListResult{}, err
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
	top := &greatest[conversation.Conversation]{n: pg.limit, id: func(c conversation.Conversation) string { return c.ID }}
	listed := func(c conversation.Conversation) bool {
		return c.Exists() && (after == "" || c.ID < after) && c.ID >= floor && c.Listed(p) &&
			(args.Status == "" || string(c.Status) == args.Status)
	}
	// held merges a conversation this instance holds with the window, and
	// offers it; it reports whether the page could still take one of a
	// lesser id.
	held := func(c conversation.Conversation) bool {
		if w, ok := window[c.ID]; ok {
			if c.Version > w.Version {
				window[c.ID] = c
			}
			return true
		}
		if !listed(c) {
			return true
		}
		top.offer(c)
		return !top.full() || c.ID >= top.least()
	}
	s.state.held(p.Tenant, false, true, func(_ *entry, c conversation.Conversation) { held(c) })
	// The open ones are walked from the cursor down, and only as far as the
	// page reaches: a page costs the same in an inbox of any size.
	s.state.openBelow(p.Tenant, after, func(c conversation.Conversation) bool {
		return c.ID >= floor && held(c)
	})
	for _, c := range window {
		if listed(c) {
			top.offer(c)
		}
	}
	out := make([]chatapi.Summary, 0, top.Len())
	cs := top.desc()
	// Read before the page is measured: a profile counts in its bytes.
	profiles, err := s.profilesOf(ctx, p.Tenant, visitorsOf(cs))
	if err != nil {
		return chatapi.ListResult{}, err
	}
	for _, c := range cs {
		sum := summary(c)
		sum.VisitorProfile = profiles[c.Visitor]
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

// greatest keeps the n items of greatest id offered to it, in a heap of
// least id first, and whether it was offered more.
type greatest[T any] struct {
	n     int
	id    func(T) string
	items []T
	more  bool
}

func (h *greatest[T]) offer(x T) {
	if len(h.items) < h.n {
		heap.Push(h, x)
		return
	}
	h.more = true
	if h.id(x) > h.id(h.items[0]) {
		h.items[0] = x
		heap.Fix(h, 0)
	}
}

// full reports whether h keeps n items.
func (h *greatest[T]) full() bool { return len(h.items) >= h.n }

// least returns the least id kept; h is not empty.
func (h *greatest[T]) least() string { return h.id(h.items[0]) }

// desc returns the items kept, greatest id first.
func (h *greatest[T]) desc() []T {
	slices.SortFunc(h.items, func(a, b T) int { return strings.Compare(h.id(b), h.id(a)) })
	return h.items
}

func (h *greatest[T]) Len() int           { return len(h.items) }
func (h *greatest[T]) Less(i, j int) bool { return h.id(h.items[i]) < h.id(h.items[j]) }
func (h *greatest[T]) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *greatest[T]) Push(x any)         { h.items = append(h.items, x.(T)) }
func (h *greatest[T]) Pop() any {
	x := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return x
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
	w := &greatest[ClosedKey]{n: n, id: func(k ClosedKey) string { return k.ID }}
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
		floor = w.items[0].ID // the heap's least
	}
	out := make([]conversation.Conversation, len(w.items))
	found := make([]bool, len(w.items))
	now := s.now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(viewWriters)
	for i, k := range w.items {
		if e := s.state.peek(k.Tenant, k.ID); e != nil {
			if c := e.snapshot(); c.Status != conversation.Open {
				out[i], found[i] = c, true
				continue
			}
		}
		g.Go(func() (err error) {
			out[i], found[i], err = s.viewed(gctx, k, now)
			return err
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

// viewed returns the closed conversation k as the View holds it, and false
// when it holds none or its events are all expired at now.
func (s *Service) viewed(ctx context.Context, k ClosedKey, now time.Time) (conversation.Conversation, bool, error) {
	v, ok, err := s.view.Get(ctx, k.Tenant, k.Visitor, k.ID)
	if err != nil || !ok {
		return conversation.Conversation{}, false, err
	}
	e, err := s.restored(ctx, v)
	if err != nil || e.expired(now) {
		return conversation.Conversation{}, false, err
	}
	return e.conv, true, nil
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
	if c.Score > 0 {
		s.Rating = &c.Score
	}
	if !c.ClosedAt.IsZero() {
		s.ClosedAt = &c.ClosedAt
	}
	if !c.FirstResponseAt.IsZero() {
		s.FirstResponseAt = &c.FirstResponseAt
	}
	return s
}
