package chat_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
)

// listPages reads p's list page by page, limit a page, calling between
// after every page but the last. It returns the ids in the order the pages
// gave them, and the number of pages.
func (c client) listPages(p auth.Principal, limit int, between func()) ([]string, int) {
	c.t.Helper()
	args := chatapi.ListArgs{Page: chatapi.Page[string]{Limit: limit}}
	var got []string
	for pages := 1; ; pages++ {
		var res chatapi.ListResult
		c.must(p, chatapi.ListSubject, args, &res)
		got = append(got, ids(res.Conversations)...)
		if res.Next == nil {
			return got, pages
		}
		if n := len(res.Conversations); n == 0 || *res.Next != res.Conversations[n-1].ID {
			c.t.Fatalf("page %d: Next = %q, want the last id of the page", pages, *res.Next)
		}
		between()
		args.Page.After = *res.Next
	}
}

// TestListComesInPages lists more conversations than a page holds: every
// one comes exactly once, newest id first, also when a message posted
// between two pages changes its activity.
func TestListComesInPages(t *testing.T) {
	s, _ := startKeyed(t, visitor.ID, visitor2.ID)
	unlimited(t, s, tenant)
	startChat(t, s)
	c := newClient(t, s)

	var all, own []string
	for i := range 25 {
		if i%3 == 0 {
			own = append(own, c.open(visitor, "hello"))
			continue
		}
		all = append(all, c.open(visitor2, "hello"))
	}
	all = append(all, own...)
	slices.Sort(all)
	slices.Reverse(all)
	slices.Sort(own)
	slices.Reverse(own)
	// The oldest, which the last page lists, gets a message after the first
	// page: by activity, it would now come first.
	moved := all[len(all)-1]
	moveUp := func() {
		if moved != "" {
			c.post(agent, moved, "an answer")
			moved = ""
		}
	}

	tests := []struct {
		name      string
		as        auth.Principal
		limit     int
		want      []string
		wantPages int
	}{
		{"supervisor, 10 a page", supervisor, 10, all, 3},
		{"visitor, their own, 4 a page", visitor, 4, own, 3},
		{"limit 0: the largest page", supervisor, 0, all, 1},
		{"limit above the largest page", supervisor, chatapi.PageItems + 1, all, 1},
		{"other tenant", foreigner, 10, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, pages := c.listPages(tt.as, tt.limit, moveUp)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("paged List(%s) mismatch (-want +got):\n%s", tt.as.ID, diff)
			}
			if pages != tt.wantPages {
				t.Errorf("paged List(%s) took %d pages, want %d", tt.as.ID, pages, tt.wantPages)
			}
		})
	}
	if moved != "" {
		t.Fatal("no conversation moved up between pages")
	}
}

// TestMessagesComeInPages reads a transcript far larger than a NATS message
// in pages: all of it comes, in order, each page within its count and its
// bytes as sent (escapes included), and no page smaller than its bounds
// make it.
func TestMessagesComeInPages(t *testing.T) {
	s, _ := startKeyed(t, visitor.ID)
	startChat(t, s)
	c := newClient(t, s)

	// 2 texts of 60 KiB that JSON escapes to 360 KiB, more than a page, each
	// alone on its page; 8 of 60 KiB of letters, 4 a page; 30 short ones.
	want := []string{"hello"}
	for range 2 {
		want = append(want, strings.Repeat("<", 60<<10))
	}
	for range 8 {
		want = append(want, strings.Repeat("a", 60<<10))
	}
	for range 30 {
		want = append(want, "ok")
	}
	conv := c.open(visitor, want[0])
	for _, text := range want[1:] {
		c.post(visitor, conv, text)
	}

	size := func(v any) int {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return len(b)
	}
	for _, limit := range []int{0, 10} {
		args := chatapi.MessagesArgs{Conversation: conv, Page: chatapi.Page[uint64]{Limit: limit}}
		var pages []chatapi.MessagesResult
		for {
			var res chatapi.MessagesResult
			c.must(visitor, chatapi.MessagesSubject, args, &res)
			pages = append(pages, res)
			if res.Next == nil {
				break
			}
			args.Page.After = *res.Next
		}
		most := limit
		if most == 0 {
			most = chatapi.PageItems
		}
		var got []string
		for i, pg := range pages {
			items := 0
			for _, m := range pg.Messages {
				items += size(m) + 1
				got = append(got, *m.Text)
			}
			n := len(pg.Messages)
			if n == 0 || n > most || (items > chatapi.PageBytes && n > 1) || size(pg) >= 1<<20 {
				t.Errorf("limit %d, page %d: %d messages, %d bytes; want 1 to %d, within %d bytes unless alone, less than 1 MiB", limit, i, n, size(pg), most, chatapi.PageBytes)
			}
			if i == len(pages)-1 {
				continue
			}
			if *pg.Next != pg.Messages[n-1].Seq {
				t.Errorf("limit %d, page %d: Next = %d, want the last seq of the page, %d", limit, i, *pg.Next, pg.Messages[n-1].Seq)
			}
			if next := pages[i+1].Messages[0]; n < most && items+size(next)+1 <= chatapi.PageBytes {
				t.Errorf("limit %d, page %d: %d messages, %d bytes, and the next one would have fitted", limit, i, n, items)
			}
		}
		if len(got) != len(want) || !slices.Equal(got, want) {
			t.Errorf("limit %d: %d messages in %d pages, want the %d posted, in order", limit, len(got), len(pages), len(want))
		}
	}
}
