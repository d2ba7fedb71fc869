package gateway_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
)

// page is a page of GET /v1/conversations or GET …/messages.
type page struct {
	Conversations []struct {
		ID string `json:"id"`
	} `json:"conversations"`
	Messages []struct {
		ID   string  `json:"id"`
		Text *string `json:"text"`
	} `json:"messages"`
	NextCursor *string `json:"next_cursor"`
}

// readPages follows next_cursor from path until it is null, and returns
// the pages.
func (e *env) readPages(path, token string, limit int) []page {
	e.t.Helper()
	var pages []page
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	for len(pages) < 100 {
		r := e.do(http.MethodGet, path+"?"+q.Encode(), token, nil)
		if r.status != http.StatusOK {
			e.t.Fatalf("GET %s?%s = %d, want 200 (body %s)", path, q.Encode(), r.status, r.body)
		}
		var pg page
		r.decode(e.t, &pg)
		pages = append(pages, pg)
		if pg.NextCursor == nil {
			return pages
		}
		q.Set("cursor", *pg.NextCursor)
	}
	e.t.Fatalf("GET %s: no last page after 100", path)
	return nil
}

// TestReadsArePaged serves the list and a transcript as the chat service
// pages them, and reads them through the API a page at a time: each HTTP
// page is one bus page, its cursor passed through, and a cursor works only
// for the list it came from.
func TestReadsArePaged(t *testing.T) {
	e := startGateway(t)
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	ids := []string{"c5", "c4", "c3", "c2", "c1"} // as the chat service orders them
	var (
		mu     sync.Mutex
		listed []chatapi.ListArgs
	)
	asked := func() []chatapi.ListArgs {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(listed)
	}
	serve(t, e.nc, chatapi.ListSubject, func(_ context.Context, req rpc.Request[chatapi.ListArgs]) (chatapi.ListResult, error) {
		mu.Lock()
		listed = append(listed, req.Args)
		mu.Unlock()
		res := chatapi.ListResult{Conversations: []chatapi.Summary{}}
		for _, id := range ids {
			if req.Args.Page.After != "" && id >= req.Args.Page.After {
				continue
			}
			if len(res.Conversations) == req.Args.Page.Limit {
				res.Next = &res.Conversations[len(res.Conversations)-1].ID
				break
			}
			res.Conversations = append(res.Conversations, chatapi.Summary{ID: id, Tenant: req.Principal.Tenant, Visitor: "v1", Status: chatapi.StatusOpen, CreatedAt: at, LastMessageAt: at})
		}
		return res, nil
	})
	// Conversation "ok" has five messages; any other two.
	serve(t, e.nc, chatapi.MessagesSubject, func(_ context.Context, req rpc.Request[chatapi.MessagesArgs]) (chatapi.MessagesResult, error) {
		last := uint64(2)
		if req.Args.Conversation == "ok" {
			last = 5
		}
		res := chatapi.MessagesResult{Messages: []chatapi.Message{}}
		for seq := req.Args.Page.After + 1; seq <= last; seq++ {
			if len(res.Messages) == req.Args.Page.Limit {
				res.Next = &res.Messages[len(res.Messages)-1].Seq
				break
			}
			text := req.Args.Conversation + " " + strconv.Itoa(int(seq))
			res.Messages = append(res.Messages, chatapi.Message{ID: "m" + strconv.Itoa(int(seq)), Seq: seq, Author: &event.Author{Role: string(auth.RoleVisitor), ID: "v1"}, Text: &text, At: at})
		}
		return res, nil
	})
	supervisor := e.token(auth.Principal{Tenant: "demo", ID: "s1", Role: auth.RoleSupervisor})
	visitor := e.token(auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor})

	var got []string
	pages := e.readPages("/v1/conversations", supervisor, 2)
	for _, pg := range pages {
		for _, c := range pg.Conversations {
			got = append(got, c.ID)
		}
	}
	if diff := cmp.Diff(ids, got); diff != "" {
		t.Errorf("paged GET /v1/conversations mismatch (-want +got):\n%s", diff)
	}
	wantListed := []chatapi.ListArgs{{Page: chatapi.Page[string]{Limit: 2}}, {Page: chatapi.Page[string]{After: "c4", Limit: 2}}, {Page: chatapi.Page[string]{After: "c2", Limit: 2}}}
	if diff := cmp.Diff(wantListed, asked()); diff != "" {
		t.Errorf("list pages asked of the chat service mismatch (-want +got):\n%s", diff)
	}
	r := e.do(http.MethodGet, "/v1/conversations", supervisor, nil)
	if last := asked()[len(wantListed)]; r.status != http.StatusOK || last.Page.Limit != 100 {
		t.Errorf("GET /v1/conversations = %d, asked for %+v; want 200 and the default limit, 100", r.status, last.Page)
	}

	for _, as := range []struct {
		name  string
		token string
	}{{"supervisor", supervisor}, {"visitor", visitor}} {
		var texts []string
		for _, pg := range e.readPages("/v1/conversations/ok/messages", as.token, 2) {
			for _, m := range pg.Messages {
				texts = append(texts, *m.Text)
			}
		}
		if diff := cmp.Diff([]string{"ok 1", "ok 2", "ok 3", "ok 4", "ok 5"}, texts); diff != "" {
			t.Errorf("%s: paged transcript mismatch (-want +got):\n%s", as.name, diff)
		}
	}

	// Cursors of each kind, to present where they do not belong.
	listCursor := *pages[0].NextCursor
	okCursor := *e.readPages("/v1/conversations/ok/messages", visitor, 2)[0].NextCursor
	op := e.operator()
	if r := e.do(http.MethodPut, "/v1/tenants/acme", op, []byte(`{"name":"Acme"}`)); r.status >= 300 {
		t.Fatalf("PUT /v1/tenants/acme = %d (body %s)", r.status, r.body)
	}
	foreign := e.token(auth.Principal{Tenant: "acme", ID: "s2", Role: auth.RoleSupervisor})
	natstest.Until(t, 5*time.Second, "tenant acme known to the gateway", func() bool {
		return e.do(http.MethodGet, "/v1/conversations", foreign, nil).status == http.StatusOK
	})
	// forge rewrites the JSON inside a cursor.
	forge := func(c string, edit func(map[string]any)) string {
		b, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		b, _ = json.Marshal(m)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	requests := countBus(t, e.nc)
	tests := []struct {
		name  string
		path  string
		token string
	}{
		{"limit 0", "/v1/conversations?limit=0", supervisor},
		{"limit above the largest page", "/v1/conversations?limit=501", supervisor},
		{"limit not a number", "/v1/conversations/ok/messages?limit=ten", supervisor},
		{"empty cursor", "/v1/conversations?cursor=", supervisor},
		{"cursor not URL encoding", "/v1/conversations?cursor=%%%", supervisor},
		{"limit twice", "/v1/conversations?limit=1&limit=2", supervisor},
		{"cursor twice", "/v1/conversations?cursor=" + listCursor + "&cursor=" + listCursor, supervisor},
		{"cursor with a field added", "/v1/conversations?cursor=" + forge(listCursor, func(m map[string]any) { m["x"] = 1 }), supervisor},
		{"cursor without its position", "/v1/conversations?cursor=" + forge(listCursor, func(m map[string]any) { delete(m, "a") }), supervisor},
		{"transcript cursor without its position", "/v1/conversations/ok/messages?cursor=" + forge(okCursor, func(m map[string]any) { delete(m, "a") }), supervisor},
		{"cursor not base64url", "/v1/conversations?cursor=" + url.QueryEscape("a+b/c=="), supervisor},
		{"cursor not JSON", "/v1/conversations?cursor=bm90IGpzb24", supervisor},
		{"cursor too long", "/v1/conversations?cursor=" + strings.Repeat("A", 600), supervisor},
		{"list cursor on a transcript", "/v1/conversations/ok/messages?cursor=" + listCursor, supervisor},
		{"transcript cursor on the list", "/v1/conversations?cursor=" + okCursor, supervisor},
		{"cursor of another conversation", "/v1/conversations/other/messages?cursor=" + okCursor, supervisor},
		{"cursor of another tenant's list", "/v1/conversations?cursor=" + listCursor, foreign},
		{"cursor of another tenant's transcript", "/v1/conversations/ok/messages?cursor=" + okCursor, foreign},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkProblem(t, e.do(http.MethodGet, tt.path, tt.token, nil), http.StatusBadRequest)
		})
	}
	if n := requests(); n != 0 {
		t.Errorf("refused pages sent %d messages on parley.>, want 0", n)
	}
}

// TestExportIsStreamed serves an export as the privacy service does, its
// own part and then pages of conversations under the export's id, a
// conversation split between two pages, and checks that the document is
// whole and valid JSON; then an export whose second page fails, which must
// end cut off, never as a document that looks complete.
func TestExportIsStreamed(t *testing.T) {
	e := startGateway(t)
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	serve(t, e.nc, privacyapi.ExportSubject, func(_ context.Context, req rpc.Request[privacyapi.PersonArgs]) (privacyapi.ExportResult, error) {
		return privacyapi.ExportResult{ExportID: "x1", At: at}, nil
	})
	message := func(seq uint64) chatapi.Message {
		text := "text " + strconv.Itoa(int(seq))
		return chatapi.Message{ID: "m" + strconv.Itoa(int(seq)), Seq: seq, Author: &event.Author{Role: string(auth.RoleVisitor), ID: "v1"}, Text: &text, At: at}
	}
	conv := func(id string, seqs ...uint64) chatapi.ExportedConversation {
		c := chatapi.ExportedConversation{Summary: chatapi.Summary{ID: id, Tenant: "demo", Visitor: "v1", Status: chatapi.StatusOpen, CreatedAt: at, LastMessageAt: at}, Messages: []chatapi.Message{}}
		for _, s := range seqs {
			c.Messages = append(c.Messages, message(s))
		}
		return c
	}
	// c1 whole; c2 split over pages 1 and 2; c3 with no message left; c4.
	pages := []chatapi.ExportResult{
		{Conversations: []chatapi.ExportedConversation{conv("c1", 1, 2), conv("c2", 3)}, Next: &chatapi.ExportCursor{Conversation: "c2", Seq: 3}},
		{Conversations: []chatapi.ExportedConversation{conv("c2", 4, 5)}, Next: &chatapi.ExportCursor{Conversation: "c3"}},
		{Conversations: []chatapi.ExportedConversation{conv("c3"), conv("c4", 6)}},
	}
	var fail atomic.Bool
	serve(t, e.nc, privacyapi.ExportPageSubject, func(_ context.Context, req rpc.Request[privacyapi.ExportPageArgs]) (chatapi.ExportResult, error) {
		switch {
		case req.Args.ExportID != "x1" || req.Args.Person != "v1":
			return chatapi.ExportResult{}, rpc.Errorf(rpc.CodeNotFound, "no such export")
		case req.Args.After == nil:
			return pages[0], nil
		case fail.Load():
			return chatapi.ExportResult{}, rpc.Errorf(rpc.CodeGone, "the visitor is erased")
		case req.Args.After.Conversation == "c2":
			return pages[1], nil
		}
		return pages[2], nil
	})
	visitor := e.token(auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor})

	r := e.do(http.MethodGet, "/v1/me/export", visitor, nil)
	if r.status != http.StatusOK || r.contentType != "application/json" {
		t.Fatalf("GET /v1/me/export = %d %s, want 200 application/json (body %s)", r.status, r.contentType, r.body)
	}
	var doc struct {
		Subject       map[string]string `json:"subject"`
		ExportedAt    time.Time         `json:"exported_at"`
		Consents      []any             `json:"consents"`
		NetworkData   []any             `json:"network_data"`
		Requests      []any             `json:"requests"`
		Conversations []struct {
			ID       string            `json:"id"`
			Messages []chatapi.Message `json:"messages"`
		} `json:"conversations"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatalf("export is not valid JSON: %v\n%s", err, r.body)
	}
	type exported struct {
		ID   string
		Seqs []uint64
	}
	var got []exported
	for _, c := range doc.Conversations {
		x := exported{ID: c.ID, Seqs: []uint64{}}
		for _, m := range c.Messages {
			if diff := cmp.Diff(message(m.Seq), m); diff != "" {
				t.Errorf("exported message %d mismatch (-want +got):\n%s", m.Seq, diff)
			}
			x.Seqs = append(x.Seqs, m.Seq)
		}
		got = append(got, x)
	}
	want := []exported{{"c1", []uint64{1, 2}}, {"c2", []uint64{3, 4, 5}}, {"c3", []uint64{}}, {"c4", []uint64{6}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("exported conversations mismatch (-want +got):\n%s", diff)
	}
	if !doc.ExportedAt.Equal(at) {
		t.Errorf("exported_at = %v, want %v, when the privacy service started the export", doc.ExportedAt, at)
	}
	if doc.Subject["id"] != "v1" || doc.Consents == nil || doc.NetworkData == nil || doc.Requests == nil {
		t.Errorf("export subject %v, consents %v, network data %v, requests %v; want v1 and empty lists", doc.Subject, doc.Consents, doc.NetworkData, doc.Requests)
	}

	fail.Store(true)
	req, err := http.NewRequest(http.MethodGet, e.base+"/v1/me/export", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+visitor)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || err == nil {
		t.Errorf("export failing on its second page = %d, read error %v; want 200 cut off with a read error (body %s)", resp.StatusCode, err, body)
	}
	if json.Valid(body) {
		t.Errorf("export failing on its second page reads as a whole document: %s", body)
	}
}

// TestTranscriptPagePassedThrough serves transcript pages as the chat
// service encodes them and reads them through the API: messages pass
// through as they were sent, and a reply that is not a page answers a
// problem, never the reply's bytes.
func TestTranscriptPagePassedThrough(t *testing.T) {
	e := startGateway(t)
	tests := []struct {
		name       string
		give       string
		wantStatus int
		want       string
	}{
		{name: "page", give: `{"messages":[{"id":"m1","seq":1,"author":null,"text":"\u003cb\u003e","at":"2025-03-04T05:06:07Z","erased":false}]}`,
			wantStatus: http.StatusOK, want: `{"messages":[{"id":"m1","seq":1,"author":null,"text":"\u003cb\u003e","at":"2025-03-04T05:06:07Z","erased":false}],"next_cursor":null}` + "\n"},
		{name: "no messages", give: `{}`, wantStatus: http.StatusOK, want: `{"messages":[],"next_cursor":null}` + "\n"},
		{name: "messages not an array", give: `{"messages":{"id":"m1"}}`, wantStatus: http.StatusInternalServerError},
		{name: "not JSON", give: `{"messages":[{"id":"m1"]}`, wantStatus: http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			served, err := rpc.Serve(t.Context(), e.nc, slog.New(slog.DiscardHandler), rpc.Service{Name: "fake", Queue: "test",
				Groups: []rpc.Group{{Routes: []rpc.Route{{Subject: chatapi.MessagesSubject, Handler: func(context.Context, []byte) (any, error) {
					return json.RawMessage(tt.give), nil
				}}}}}})
			if err != nil {
				t.Fatal(err)
			}
			defer served.Stop()
			visitor := e.token(auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor})
			r := e.do(http.MethodGet, "/v1/conversations/c1/messages", visitor, nil)
			if r.status != tt.wantStatus {
				t.Fatalf("GET messages = %d %s, want %d", r.status, r.body, tt.wantStatus)
			}
			if tt.want != "" && string(r.body) != tt.want {
				t.Errorf("GET messages = %s, want %s", r.body, tt.want)
			}
			if tt.want == "" && r.contentType != "application/problem+json" {
				t.Errorf("GET messages answered %s %s, want a problem", r.contentType, r.body)
			}
		})
	}
}
