package app_test

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
)

// TestListWalksOpenInIDOrder lists an inbox of more open conversations
// than the walk takes at a time, some assigned to another agent and some
// closed, page by page: every page lists what the whole inbox holds for
// its reader, newest id first, whatever the page's size.
func TestListWalksOpenInIDOrder(t *testing.T) {
	w := newWorld()
	in := w.start(t)
	other := auth.Principal{Tenant: tenant, ID: "a2", Role: auth.RoleAgent}
	var all, mine, open []string
	for i := range 300 {
		id := in.open(t, visitorN(i), "hi")
		all = append(all, id)
		switch {
		case i%5 == 0:
			if _, err := in.Assign(t.Context(), supervisor, chatapi.AssignArgs{Conversation: id, Agent: other.ID}); err != nil {
				t.Fatal(err)
			}
			open = append(open, id)
		case i%7 == 0:
			if _, err := in.Close(t.Context(), visitorN(i), chatapi.ConversationArgs{Conversation: id}); err != nil {
				t.Fatal(err)
			}
			mine = append(mine, id) // unassigned: an agent sees it closed too
		default:
			mine = append(mine, id)
			open = append(open, id)
		}
	}
	in.follow(t)
	desc := func(ids []string) []string {
		ids = slices.Clone(ids)
		slices.Sort(ids)
		slices.Reverse(ids)
		return ids
	}
	tests := []struct {
		name   string
		as     auth.Principal
		status string
		want   []string
	}{
		{"supervisor", supervisor, "", desc(all)},
		{"supervisor, open", supervisor, chatapi.StatusOpen, desc(open)},
		{"agent: unassigned and their own", agent, "", desc(mine)},
	}
	for _, tt := range tests {
		for _, limit := range []int{1, 7, 100, 0} {
			if got := in.list(t, tt.as, tt.status, limit); !cmp.Equal(tt.want, got) {
				t.Errorf("List(%s, %d a page) mismatch (-want +got):\n%s", tt.name, limit, cmp.Diff(tt.want, got))
			}
		}
	}
}
