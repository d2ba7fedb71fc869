package gateway_test

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
)

// TestPagedReadsAreJoined serves the list and transcripts two items a page,
// as the chat service pages them, and checks that the gateway answers each
// read whole, in the contract's order, audited once.
func TestPagedReadsAreJoined(t *testing.T) {
	e := startGateway(t)
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	// In order of id, as the pages come; by activity c4, c2, c5, c3, c1.
	var summaries []chatapi.Summary
	for i, minutes := range []int{1, 4, 2, 5, 3} {
		id := "c" + strconv.Itoa(i+1)
		summaries = append(summaries, chatapi.Summary{ID: id, Tenant: "demo", Visitor: "v1", Status: chatapi.StatusOpen, CreatedAt: at, LastMessageAt: at.Add(time.Duration(minutes) * time.Minute)})
	}
	var pages atomic.Int64
	serve(t, e.nc, chatapi.ListSubject, func(_ context.Context, req rpc.Request[chatapi.ListArgs]) (chatapi.ListResult, error) {
		pages.Add(1)
		var res chatapi.ListResult
		for i, s := range summaries {
			if s.ID <= req.Args.Page.After {
				continue
			}
			if len(res.Conversations) == 2 {
				res.Next = &summaries[i-1].ID
				break
			}
			res.Conversations = append(res.Conversations, s)
		}
		return res, nil
	})
	// Conversation "ok" reads whole; "erased" has its visitor erased after
	// the first page was read; "stuck" answers a page that ends where it
	// started.
	serve(t, e.nc, chatapi.MessagesSubject, func(_ context.Context, req rpc.Request[chatapi.MessagesArgs]) (chatapi.MessagesResult, error) {
		pages.Add(1)
		pg := req.Args.Page
		if req.Args.Conversation == "stuck" {
			return chatapi.MessagesResult{Messages: []chatapi.Message{}, Next: &pg.After}, nil
		}
		var res chatapi.MessagesResult
		for seq := pg.After + 1; seq <= 5; seq++ {
			if len(res.Messages) == 2 {
				res.Next = &res.Messages[1].Seq
				break
			}
			m := chatapi.Message{ID: "m" + strconv.Itoa(int(seq)), Seq: seq, Author: &event.Author{Role: string(auth.RoleVisitor), ID: "v1"}, At: at}
			if req.Args.Conversation == "erased" && pg.After > 0 {
				m.Erased = true
			} else {
				text := "text " + strconv.Itoa(int(seq))
				m.Text = &text
			}
			res.Messages = append(res.Messages, m)
		}
		return res, nil
	})
	var audited atomic.Int64
	serve(t, e.nc, privacyapi.AppendAuditSubject, func(_ context.Context, args privacyapi.AppendAuditArgs) (audit.Entry, error) {
		audited.Add(1)
		return audit.Entry{}, nil
	})
	supervisor := e.token(auth.Principal{Tenant: "demo", ID: "s1", Role: auth.RoleSupervisor})

	r := e.do(http.MethodGet, "/v1/conversations", supervisor, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /v1/conversations = %d, want 200 (body %s)", r.status, r.body)
	}
	var list struct {
		Conversations []struct {
			ID string `json:"id"`
		} `json:"conversations"`
	}
	r.decode(t, &list)
	var got []string
	for _, c := range list.Conversations {
		got = append(got, c.ID)
	}
	if diff := cmp.Diff([]string{"c4", "c2", "c5", "c3", "c1"}, got); diff != "" {
		t.Errorf("GET /v1/conversations mismatch (-want +got):\n%s", diff)
	}
	if n := pages.Swap(0); n != 3 {
		t.Errorf("GET /v1/conversations asked %d pages, want 3", n)
	}

	tests := []struct {
		name        string
		give        string
		want        int
		wantTexts   []string
		wantAudited int64
	}{
		{"whole, audited once", "ok", http.StatusOK, []string{"text 1", "text 2", "text 3", "text 4", "text 5"}, 1},
		{"erased between pages: erased throughout", "erased", http.StatusOK, []string{"", "", "", "", ""}, 1},
		{"a page that does not move on", "stuck", http.StatusInternalServerError, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			audited.Store(0)
			r := e.do(http.MethodGet, "/v1/conversations/"+tt.give+"/messages", supervisor, nil)
			if tt.want != http.StatusOK {
				checkProblem(t, r, tt.want)
			} else if r.status != http.StatusOK {
				t.Fatalf("GET messages = %d, want 200 (body %s)", r.status, r.body)
			}
			if n := audited.Load(); n != tt.wantAudited {
				t.Errorf("GET messages wrote %d audit entries, want %d", n, tt.wantAudited)
			}
			if tt.want != http.StatusOK {
				return
			}
			var res struct {
				Messages []struct {
					ID     string  `json:"id"`
					Text   *string `json:"text"`
					Erased bool    `json:"erased"`
				} `json:"messages"`
			}
			r.decode(t, &res)
			var texts []string
			for _, m := range res.Messages {
				if (m.Text == nil) != m.Erased {
					t.Errorf("message %s: text %v with erased %v", m.ID, m.Text, m.Erased)
				}
				text := ""
				if m.Text != nil {
					text = *m.Text
				}
				texts = append(texts, text)
			}
			if diff := cmp.Diff(tt.wantTexts, texts); diff != "" {
				t.Errorf("GET messages texts mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
