package gateway_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
)

type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// checkProblem fails unless r is a problem+json with status want.
func checkProblem(t *testing.T, r response, want int) {
	t.Helper()
	if r.status != want {
		t.Errorf("status = %d, want %d (body %s)", r.status, want, r.body)
		return
	}
	if r.contentType != "application/problem+json" {
		t.Errorf("Content-Type = %q, want application/problem+json", r.contentType)
	}
	var p problem
	r.decode(t, &p)
	if p.Status != want || p.Title == "" || p.Type == "" {
		t.Errorf("problem = %+v, want status %d with type and title", p, want)
	}
}

func TestTenants(t *testing.T) {
	e := startGateway(t)
	op := e.operator()
	admin := e.token(auth.Principal{Tenant: "demo", ID: "a1", Role: auth.RoleAdmin})
	tests := []struct {
		name   string
		method string
		path   string
		token  string
		body   string
		want   int
	}{
		{"create", http.MethodPut, "/v1/tenants/acme", op, `{"name":"Acme"}`, http.StatusCreated},
		{"rename", http.MethodPut, "/v1/tenants/acme", op, `{"name":"Acme Inc"}`, http.StatusOK},
		{"create another", http.MethodPut, "/v1/tenants/b-2", op, `{"name":"B"}`, http.StatusCreated},
		{"upper-case id", http.MethodPut, "/v1/tenants/Acme", op, `{"name":"x"}`, http.StatusUnprocessableEntity},
		{"underscore id", http.MethodPut, "/v1/tenants/a_b", op, `{"name":"x"}`, http.StatusUnprocessableEntity},
		{"id too long", http.MethodPut, "/v1/tenants/" + strings.Repeat("a", 64), op, `{"name":"x"}`, http.StatusUnprocessableEntity},
		{"empty name", http.MethodPut, "/v1/tenants/c", op, `{"name":""}`, http.StatusUnprocessableEntity},
		{"name too long", http.MethodPut, "/v1/tenants/c", op, `{"name":"` + strings.Repeat("é", 201) + `"}`, http.StatusUnprocessableEntity},
		{"malformed", http.MethodPut, "/v1/tenants/c", op, `{"name":`, http.StatusBadRequest},
		{"no token", http.MethodPut, "/v1/tenants/c", "", `{"name":"C"}`, http.StatusUnauthorized},
		{"tenant admin", http.MethodPut, "/v1/tenants/c", admin, `{"name":"C"}`, http.StatusForbidden},
		{"tenant admin lists", http.MethodGet, "/v1/tenants", admin, "", http.StatusForbidden},
		{"nobody lists", http.MethodGet, "/v1/tenants", "", "", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(tt.method, tt.path, tt.token, bodyOf(tt.body))
			if tt.want >= 400 {
				checkProblem(t, r, tt.want)
				return
			}
			if r.status != tt.want {
				t.Fatalf("%s %s = %d, want %d (body %s)", tt.method, tt.path, r.status, tt.want, r.body)
			}
		})
	}

	r := e.do(http.MethodGet, "/v1/tenants", op, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /v1/tenants = %d, want 200", r.status)
	}
	var got struct {
		Tenants []struct{ ID, Name string } `json:"tenants"`
	}
	r.decode(t, &got)
	want := []struct{ ID, Name string }{{"acme", "Acme Inc"}, {"b-2", "B"}, {"demo", "Demo"}}
	if diff := cmp.Diff(want, got.Tenants); diff != "" {
		t.Errorf("GET /v1/tenants mismatch (-want +got):\n%s", diff)
	}
}

func TestBadRequestsNeverReachTheBus(t *testing.T) {
	e := startGateway(t)
	requests := countBus(t, e.nc)

	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := auth.NewSigner(otherKey).Issue(auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	expired, err := e.signer.Issue(auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor}, -time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	visitor := e.token(auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor})
	agent := e.token(auth.Principal{Tenant: "demo", ID: "a1", Role: auth.RoleAgent})
	ghost := e.token(auth.Principal{Tenant: "ghost", ID: "v1", Role: auth.RoleVisitor})
	op := e.operator()
	long := `{"text":"` + strings.Repeat("x", chatapi.MaxTextBytes+1) + `"}`
	// Over the body limit before the text is even decoded.
	huge := `{"text":"` + strings.Repeat(`\u0041`, 70_000) + `"}`

	tests := []struct {
		name   string
		method string
		path   string
		token  string
		body   string
		want   int
	}{
		{"malformed json", http.MethodPost, "/v1/conversations", visitor, `{"text":`, http.StatusBadRequest},
		{"not an object", http.MethodPost, "/v1/conversations", visitor, `["hi"]`, http.StatusBadRequest},
		{"unknown field", http.MethodPost, "/v1/conversations", visitor, `{"text":"hi","ip":"1.2.3.4"}`, http.StatusBadRequest},
		{"trailing data", http.MethodPost, "/v1/conversations", visitor, `{"text":"hi"} {}`, http.StatusBadRequest},
		{"trailing object", http.MethodPost, "/v1/conversations", visitor, `{"text":"hi"}{}`, http.StatusBadRequest},
		{"invalid utf-8", http.MethodPost, "/v1/conversations", visitor, "{\"text\":\"h\xffi\"}", http.StatusBadRequest},
		{"text too long", http.MethodPost, "/v1/conversations", visitor, long, http.StatusRequestEntityTooLarge},
		{"body too large", http.MethodPost, "/v1/conversations", visitor, huge, http.StatusRequestEntityTooLarge},
		{"no token", http.MethodPost, "/v1/conversations", "", `{"text":"hi"}`, http.StatusUnauthorized},
		{"garbage token", http.MethodPost, "/v1/conversations", "not-a-token", `{"text":"hi"}`, http.StatusUnauthorized},
		{"forged token", http.MethodPost, "/v1/conversations", forged, `{"text":"hi"}`, http.StatusUnauthorized},
		{"expired token", http.MethodGet, "/v1/conversations", expired, "", http.StatusUnauthorized},
		{"unknown tenant", http.MethodGet, "/v1/conversations", ghost, "", http.StatusNotFound},
		{"operator reads conversations", http.MethodGet, "/v1/conversations", op, "", http.StatusForbidden},
		{"operator streams", http.MethodGet, "/v1/stream", op, "", http.StatusForbidden},
		{"stream without token", http.MethodGet, "/v1/stream", "", "", http.StatusUnauthorized},
		{"bad conversation id", http.MethodPost, "/v1/conversations/a.b/messages", visitor, `{"text":"hi"}`, http.StatusNotFound},
		{"bad conversation id read", http.MethodGet, "/v1/conversations/" + strings.Repeat("c", 65) + "/messages", agent, "", http.StatusNotFound},
		{"close with junk", http.MethodPost, "/v1/conversations/c1/close", agent, `{"why":1}`, http.StatusBadRequest},
		{"fractional score", http.MethodPost, "/v1/conversations/c1/rating", visitor, `{"score":4.5}`, http.StatusBadRequest},
		{"visitor of unknown tenant", http.MethodPost, "/v1/tenants/ghost/visitors", "", `{"consent":{"analytics":true,"network_data":false,"ai":false},"notice_version":"v1"}`, http.StatusNotFound},
		{"visitor without consent", http.MethodPost, "/v1/tenants/demo/visitors", "", `{"notice_version":"v1"}`, http.StatusUnprocessableEntity},
		{"visitor partial consent", http.MethodPost, "/v1/tenants/demo/visitors", "", `{"consent":{"analytics":true},"notice_version":"v1"}`, http.StatusUnprocessableEntity},
		{"visitor consent not bool", http.MethodPost, "/v1/tenants/demo/visitors", "", `{"consent":{"analytics":"yes","network_data":false,"ai":false},"notice_version":"v1"}`, http.StatusBadRequest},
		{"unknown route", http.MethodGet, "/v1/nothing", visitor, "", http.StatusNotFound},
		{"root", http.MethodGet, "/", "", "", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(tt.method, tt.path, tt.token, bodyOf(tt.body))
			checkProblem(t, r, tt.want)
			for _, s := range []string{"h\xffi", "1.2.3.4", tt.token} {
				if s != "" && strings.Contains(string(r.body), s) {
					t.Errorf("problem %s echoes %q", r.body, s)
				}
			}
		})
	}
	if n := requests(); n != 0 {
		t.Errorf("bad requests sent %d messages on parley.>, want 0", n)
	}
}

// TestMe checks that GET /v1/me names the caller only when the token is one
// the other calls take, saying why otherwise: a client checks a token with
// it (a browser cannot read why the stream's handshake was refused), so a
// token of a tenant that does not exist answers 404 here as everywhere.
func TestMe(t *testing.T) {
	e := startGateway(t)
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	agent := auth.Principal{Tenant: "demo", ID: "alice", Role: auth.RoleAgent}
	forged, err := auth.NewSigner(otherKey).Issue(agent, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	expired, err := e.signer.Issue(agent, -time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	analyst := auth.Principal{Tenant: "demo", ID: "ann", Role: auth.RoleAnalyst}
	visitor := auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor}
	bot := auth.Principal{Tenant: "demo", ID: "faq", Role: auth.RoleBot}

	tests := []struct {
		name       string
		token      string
		want       int
		wantWho    auth.Principal // of a 200
		wantDetail string         // of a problem
	}{
		{"agent", e.token(agent), http.StatusOK, agent, ""},
		{"analyst", e.token(analyst), http.StatusOK, analyst, ""},
		{"visitor", e.token(visitor), http.StatusForbidden, auth.Principal{}, "this role may not make this call"},
		{"bot", e.token(bot), http.StatusForbidden, auth.Principal{}, "this role may not make this call"},
		{"unknown tenant", e.token(auth.Principal{Tenant: "ghost", ID: "alice", Role: auth.RoleAgent}), http.StatusNotFound, auth.Principal{}, "no such tenant"},
		{"forged token", forged, http.StatusUnauthorized, auth.Principal{}, "the token is not valid"},
		{"expired token", expired, http.StatusUnauthorized, auth.Principal{}, "the token has expired"},
		{"no token", "", http.StatusUnauthorized, auth.Principal{}, "an Authorization: Bearer token is required"},
		{"operator", e.operator(), http.StatusForbidden, auth.Principal{}, "the operator manages tenants only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(http.MethodGet, "/v1/me", tt.token, nil)
			if tt.want != http.StatusOK {
				checkProblem(t, r, tt.want)
				var p problem
				r.decode(t, &p)
				if p.Detail != tt.wantDetail {
					t.Errorf("GET /v1/me detail = %q, want %q", p.Detail, tt.wantDetail)
				}
				return
			}
			if r.status != http.StatusOK {
				t.Fatalf("GET /v1/me = %d %s, want 200", r.status, r.body)
			}
			var who auth.Principal
			r.decode(t, &who)
			if diff := cmp.Diff(tt.wantWho, who); diff != "" {
				t.Errorf("GET /v1/me mismatch (-want +got):\n%s", diff)
			}
		})
	}

	// The answer is the principal as session answers name it; a member of
	// staff's costs no call on the bus.
	requests := countBus(t, e.nc)
	r := e.do(http.MethodGet, "/v1/me", e.token(agent), nil)
	if want := `{"tenant":"demo","id":"alice","role":"agent"}`; r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != want {
		t.Errorf("GET /v1/me = %d %s, want 200 %s", r.status, r.body, want)
	}
	if n := requests(); n != 0 {
		t.Errorf("a member of staff's GET /v1/me sent %d messages on parley.>, want 0", n)
	}
}

// registered is what the privacy service answers a registration of
// visitor id of demo.
func registered(id string) privacyapi.RegisterVisitorResult {
	return privacyapi.RegisterVisitorResult{VisitorID: id, Session: privacyapi.Session{
		ID: "s-" + id, Principal: auth.Principal{Tenant: "demo", ID: id, Role: auth.RoleVisitor}, RefreshToken: "r-" + id, ExpiresAt: time.Now().Add(time.Hour),
	}}
}

func TestCreateVisitor(t *testing.T) {
	e := startGateway(t)
	got := make(chan privacyapi.RegisterVisitorArgs, 1)
	serve(t, e.nc, privacyapi.RegisterVisitorSubject, func(_ context.Context, req rpc.Request[privacyapi.RegisterVisitorArgs]) (privacyapi.RegisterVisitorResult, error) {
		got <- req.Args
		return registered("v-123"), nil
	})
	r := e.do(http.MethodPost, "/v1/tenants/demo/visitors", "", []byte(`{"consent":{"analytics":true,"network_data":false,"ai":true},"notice_version":"2025-01"}`))
	if r.status != http.StatusCreated {
		t.Fatalf("POST visitors = %d, want 201 (body %s)", r.status, r.body)
	}
	var res struct {
		VisitorID string `json:"visitor_id"`
		Token     string `json:"token"`
	}
	r.decode(t, &res)
	if res.VisitorID != "v-123" {
		t.Errorf("visitor_id = %q, want v-123", res.VisitorID)
	}
	wantArgs := privacyapi.RegisterVisitorArgs{Tenant: "demo", Consent: event.Consent{Analytics: true, AI: true, NoticeVersion: "2025-01"}}
	if diff := cmp.Diff(wantArgs, <-got); diff != "" {
		t.Errorf("RegisterVisitor args mismatch (-want +got):\n%s", diff)
	}
	// The token works: the visitor reaches the chat service as themselves.
	who := make(chan auth.Principal, 1)
	serve(t, e.nc, chatapi.ListSubject, func(_ context.Context, req rpc.Request[chatapi.ListArgs]) (chatapi.ListResult, error) {
		who <- req.Principal
		return chatapi.ListResult{}, nil
	})
	r = e.do(http.MethodGet, "/v1/conversations", res.Token, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /v1/conversations with the visitor token = %d, want 200 (body %s)", r.status, r.body)
	}
	if diff := cmp.Diff(auth.Principal{Tenant: "demo", ID: "v-123", Role: auth.RoleVisitor}, <-who); diff != "" {
		t.Errorf("principal mismatch (-want +got):\n%s", diff)
	}
	if want := `{"conversations":[],"next_cursor":null}`; strings.TrimSpace(string(r.body)) != want {
		t.Errorf("GET /v1/conversations = %s, want %s", r.body, want)
	}
}

func TestChatCalls(t *testing.T) {
	e := startGateway(t)
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	agentID := "a1"
	score := 4
	summary := chatapi.Summary{ID: "c1", Tenant: "demo", Visitor: "v1", Status: chatapi.StatusOpen, Assignee: &agentID, Rating: &score, CreatedAt: at, LastMessageAt: at}
	posted := make(chan rpc.Request[chatapi.PostArgs], 1)
	serve(t, e.nc, chatapi.PostSubject, func(_ context.Context, req rpc.Request[chatapi.PostArgs]) (chatapi.PostResult, error) {
		posted <- req
		return chatapi.PostResult{ID: "m1", Seq: 7, At: at}, nil
	})
	serve(t, e.nc, chatapi.AssignSubject, func(_ context.Context, req rpc.Request[chatapi.AssignArgs]) (chatapi.Summary, error) {
		return summary, nil
	})
	serve(t, e.nc, chatapi.CloseSubject, func(_ context.Context, req rpc.Request[chatapi.ConversationArgs]) (chatapi.Summary, error) {
		return chatapi.Summary{}, rpc.Errorf(rpc.CodeConflict, "conversation is closed")
	})
	serve(t, e.nc, chatapi.RateSubject, func(_ context.Context, req rpc.Request[chatapi.RateArgs]) (chatapi.Summary, error) {
		return chatapi.Summary{}, rpc.Errorf(rpc.CodeForbidden, "only the visitor rates")
	})
	serve(t, e.nc, chatapi.MessagesSubject, func(_ context.Context, req rpc.Request[chatapi.MessagesArgs]) (chatapi.MessagesResult, error) {
		return chatapi.MessagesResult{}, rpc.Errorf(rpc.CodeNotFound, "no such conversation")
	})
	serve(t, e.nc, chatapi.GetSubject, func(_ context.Context, req rpc.Request[chatapi.ConversationArgs]) (chatapi.Summary, error) {
		return chatapi.Summary{}, rpc.Errorf(rpc.CodeGone, "erased")
	})
	visitor := e.token(auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor})
	agent := e.token(auth.Principal{Tenant: "demo", ID: "a1", Role: auth.RoleAgent})

	r := e.do(http.MethodPost, "/v1/conversations/c1/messages", visitor, []byte(`{"text":"hello"}`))
	if r.status != http.StatusCreated {
		t.Fatalf("POST messages = %d, want 201 (body %s)", r.status, r.body)
	}
	var pr chatapi.PostResult
	r.decode(t, &pr)
	if diff := cmp.Diff(chatapi.PostResult{ID: "m1", Seq: 7, At: at}, pr); diff != "" {
		t.Errorf("POST messages result mismatch (-want +got):\n%s", diff)
	}
	wantReq := rpc.Request[chatapi.PostArgs]{
		Principal: auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor},
		Args:      chatapi.PostArgs{Conversation: "c1", Text: "hello"},
	}
	if diff := cmp.Diff(wantReq, <-posted); diff != "" {
		t.Errorf("post request mismatch (-want +got):\n%s", diff)
	}

	r = e.do(http.MethodPost, "/v1/conversations/c1/assign", agent, []byte(`{"agent_id":"a1"}`))
	if r.status != http.StatusOK {
		t.Fatalf("POST assign = %d, want 200 (body %s)", r.status, r.body)
	}
	var conv map[string]any
	r.decode(t, &conv)
	wantConv := map[string]any{"id": "c1", "status": "open", "assignee": "a1", "visitor": "v1", "rating": float64(4),
		"created_at": "2025-03-04T05:06:07Z", "last_message_at": "2025-03-04T05:06:07Z", "closed_at": nil, "first_response_at": nil}
	if diff := cmp.Diff(wantConv, conv); diff != "" {
		t.Errorf("POST assign body mismatch (-want +got):\n%s", diff)
	}

	errTests := []struct {
		name   string
		method string
		path   string
		token  string
		body   string
		want   int
		detail string
	}{
		{"conflict", http.MethodPost, "/v1/conversations/c1/close", agent, "", http.StatusConflict, "conversation is closed"},
		{"forbidden", http.MethodPost, "/v1/conversations/c1/rating", agent, `{"score":5}`, http.StatusForbidden, "only the visitor rates"},
		{"not found", http.MethodGet, "/v1/conversations/c1/messages", agent, "", http.StatusNotFound, "no such conversation"},
		{"no responder", http.MethodPost, "/v1/conversations", visitor, `{"text":"hi"}`, http.StatusServiceUnavailable, ""},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(tt.method, tt.path, tt.token, bodyOf(tt.body))
			checkProblem(t, r, tt.want)
			var p problem
			json.Unmarshal(r.body, &p)
			if tt.detail != "" && p.Detail != tt.detail {
				t.Errorf("detail = %q, want %q", p.Detail, tt.detail)
			}
		})
	}
}

func TestWrongMethodIsNotAllowed(t *testing.T) {
	e := startGateway(t)
	requests := countBus(t, e.nc)
	visitor := e.token(auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor})
	tests := []struct {
		method, path string
		wantAllow    string
	}{
		{http.MethodPut, "/v1/conversations", "GET, HEAD, POST"},
		{http.MethodDelete, "/v1/conversations/c1/messages", "GET, HEAD, POST"},
		{http.MethodGet, "/v1/tenants/demo/visitors", "POST"},
		{http.MethodPost, "/v1/me", "DELETE, GET, HEAD"},
		{http.MethodPatch, "/v1/settings", "GET, HEAD, PUT"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := e.do(tt.method, tt.path, visitor, []byte(`{"text":"hi"}`))
			checkProblem(t, r, http.StatusMethodNotAllowed)
			if got := r.header.Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow = %q, want %q", got, tt.wantAllow)
			}
		})
	}
	if n := requests(); n != 0 {
		t.Errorf("requests with a wrong method sent %d messages on parley.>, want 0", n)
	}
}

func TestRateLimit(t *testing.T) {
	e := startGateway(t)
	op := e.operator()
	for i := range 500 {
		r := e.do(http.MethodGet, "/v1/tenants", op, nil)
		if r.status == http.StatusTooManyRequests {
			checkProblem(t, r, http.StatusTooManyRequests)
			// 50 requests a second: the next one fits in a second at most.
			if got := r.header.Get("Retry-After"); got != "1" {
				t.Errorf("Retry-After = %q, want 1", got)
			}
			// Another principal is not held back.
			other := e.token(auth.Principal{Tenant: auth.OperatorTenant, ID: "op2", Role: auth.RoleOperator})
			if r := e.do(http.MethodGet, "/v1/tenants", other, nil); r.status != http.StatusOK {
				t.Errorf("another operator: GET /v1/tenants = %d, want 200", r.status)
			}
			return
		}
		if r.status != http.StatusOK {
			t.Fatalf("request %d: GET /v1/tenants = %d, want 200 or 429", i, r.status)
		}
	}
	t.Fatal("500 requests in a row were never rate limited")
}
