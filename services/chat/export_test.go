package chat_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/rpc"
)

func TestExport(t *testing.T) {
	s, ks := startKeyed(t, visitor.ID, visitor2.ID)
	in := startChat(t, s)
	c := newClient(t, s)

	first := c.open(visitor, "first question")
	c.post(agent, first, "first answer")
	second := c.open(visitor, "second question")
	c.open(visitor2, "someone else")

	export := func(p auth.Principal, v string) (chatapi.ExportResult, error) {
		var res chatapi.ExportResult
		err := c.call(p, chatapi.ExportSubject, chatapi.ExportArgs{Visitor: v}, &res)
		return res, err
	}
	for _, p := range []auth.Principal{visitor, admin} {
		res, err := export(p, visitor.ID)
		if err != nil {
			t.Fatalf("Export(%s) error = %v", p.Role, err)
		}
		var got [][]string
		for _, conv := range res.Conversations {
			if conv.Visitor != visitor.ID {
				t.Errorf("Export(%s) holds conversation %s of %s", p.Role, conv.ID, conv.Visitor)
			}
			got = append(got, append([]string{conv.ID}, texts(conv.Messages)...))
		}
		want := [][]string{
			{first, "visitor/v1: first question", "agent/a1: first answer"},
			{second, "visitor/v1: second question"},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Export(%s) mismatch (-want +got):\n%s", p.Role, diff)
		}
	}

	// A visitor without conversations, and an admin of another tenant (who
	// looks in their own tenant), get an empty list.
	empty := []struct {
		as   auth.Principal
		give string
	}{
		{principal(tenant, auth.RoleVisitor, "v3"), "v3"},
		{principal("other", auth.RoleAdmin, "ad1"), visitor.ID},
	}
	for _, tt := range empty {
		res, err := export(tt.as, tt.give)
		if err != nil || res.Conversations == nil || len(res.Conversations) != 0 {
			t.Errorf("Export(%s) as %s/%s = %+v, %v; want an empty list", tt.give, tt.as.Tenant, tt.as.ID, res, err)
		}
	}

	refused := []struct {
		name string
		as   auth.Principal
		give string
		want rpc.Code
	}{
		{"another visitor", visitor2, visitor.ID, rpc.CodeForbidden},
		{"an agent", agent, visitor.ID, rpc.CodeForbidden},
		{"a supervisor", supervisor, visitor.ID, rpc.CodeForbidden},
		{"a malformed visitor id", admin, "v.1", rpc.CodeInvalid},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := export(tt.as, tt.give); rpc.CodeOf(err) != tt.want {
				t.Errorf("Export(%s) error = %v, want code %s", tt.give, err, tt.want)
			}
		})
	}

	ks.erase(tenant, visitor.ID)
	in.keys.Evict(personkey.Erased{Tenant: tenant, Person: visitor.ID})
	if _, err := export(admin, visitor.ID); rpc.CodeOf(err) != rpc.CodeGone {
		t.Errorf("Export() of an erased visitor error = %v, want code %s", err, rpc.CodeGone)
	}
}

func TestExportComesInPages(t *testing.T) {
	s, _ := startKeyed(t, visitor.ID)
	unlimited(t, s, tenant)
	startChat(t, s)
	c := newClient(t, s)

	// 3 conversations of 5 messages of 60 KiB, then 3,000 short ones: about
	// 900 KiB of text and as much of ids and times, more than fits one bus
	// message, so the export needs several pages.
	big := strings.Repeat("x", 60<<10)
	var want []string
	for range 3 {
		conv := c.open(visitor, big)
		want = append(want, conv+":"+strconv.Itoa(0))
		for i := 1; i < 5; i++ {
			c.post(visitor, conv, big)
			want = append(want, conv+":"+strconv.Itoa(i))
		}
	}

	short := c.open(visitor, "short")
	want = append(want, short+":0")
	for i := 1; i <= 3000; i++ {
		c.post(visitor, short, "ok")
		want = append(want, short+":"+strconv.Itoa(i))
	}

	var got []string
	pages := 0
	args := chatapi.ExportArgs{Visitor: visitor.ID}
	for {
		var page chatapi.ExportResult
		c.must(visitor, chatapi.ExportSubject, args, &page)
		pages++
		if b, err := json.Marshal(page); err != nil || len(b) > 1<<20 {
			t.Errorf("page %d is %d bytes (%v), want less than a NATS message of 1 MiB", pages, len(b), err)
		}
		for _, conv := range page.Conversations {
			for _, m := range conv.Messages {
				n := 0
				for _, g := range got {
					if strings.HasPrefix(g, conv.ID+":") {
						n++
					}
				}
				got = append(got, conv.ID+":"+strconv.Itoa(n))
				if m.Text == nil || m.Erased {
					t.Errorf("message %s not decrypted", m.ID)
				}
			}
		}
		if page.Next == nil {
			break
		}
		args.After = page.Next
	}
	if pages < 5 {
		t.Errorf("export took %d pages, want at least 5", pages)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("paged export mismatch (-want +got):\n%s", diff)
	}
}
