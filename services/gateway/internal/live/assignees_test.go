package live

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/parley-chat/parley/pkg/event"
)

// TestAssigneesBound fills the assignee cache past maxAssignees: it keeps
// at most that many conversations, those used recently among them, and asks
// the chat service again about one that left.
func TestAssigneesBound(t *testing.T) {
	var asked atomic.Int64
	h := NewHub(slog.New(slog.DiscardHandler), noKeys{}, func(_ context.Context, _, conv string) (string, error) {
		asked.Add(1)
		return "agent-of-" + conv, nil
	}, nil)
	ctx := t.Context()
	lookup := func(conv string) string {
		t.Helper()
		a, ok := h.lookupAssignee(ctx, "acme", conv, event.MessagePosted)
		if !ok {
			t.Fatalf("lookupAssignee(%s) failed", conv)
		}
		return a
	}
	lookup("c0")
	for i := 1; i <= maxAssignees+100; i++ {
		h.setAssignee(fmt.Sprintf("acme.c%d", i), "a")
		if i%1000 == 0 {
			lookup("recent") // used now and then: it stays
		}
	}
	h.amu.Lock()
	n := h.assignees.Len()
	h.amu.Unlock()
	if n > maxAssignees {
		t.Fatalf("assignees holds %d conversations, want at most %d", n, maxAssignees)
	}
	before := asked.Load()
	lookup("recent")
	if got := asked.Load(); got != before {
		t.Errorf("chat asked %d times for a recently used conversation, want 0", got-before)
	}
	if a := lookup("c0"); a != "agent-of-c0" {
		t.Errorf("lookupAssignee(c0) = %q, want agent-of-c0", a)
	}
	if got := asked.Load(); got != before+1 {
		t.Errorf("chat asked %d times for a conversation that left the cache, want 1", got-before)
	}
}
