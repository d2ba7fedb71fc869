package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/stream"
)

// registerIntegration stores rec in the INTEGRATIONS bucket, as the
// privacy service's registration does, creating the bucket when missing.
func registerIntegration(t *testing.T, js jetstream.JetStream, rec privacyapi.Integration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := stream.OpenBucket(ctx, js, stream.Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)), privacyapi.IntegrationsBucket)
	if err != nil {
		t.Fatal(err)
	}
	rec.CreatedAt, rec.UpdatedAt = time.Now().UTC(), time.Now().UTC()
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, privacyapi.IntegrationKey(rec.Tenant, rec.ID), b); err != nil {
		t.Fatal(err)
	}
}

// allowAssistant gives or withdraws the visitor's ai consent, giving
// neither analytics nor network data.
func allowAssistant(t *testing.T, base, visitor string, ai bool) {
	t.Helper()
	mustCall(t, base, "PUT", "/v1/me/consent", visitor, map[string]bool{"analytics": false, "network_data": false, "ai": ai}, http.StatusOK)
}

// of returns the events of lc so far of type typ in conv.
func (lc *liveClient) of(typ, conv string) []liveEvent {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	var out []liveEvent
	for _, e := range lc.events {
		if e.Type == typ && e.ConversationID == conv {
			out = append(out, e)
		}
	}
	return out
}

// TestBotParticipantEndToEnd assigns a conversation to a registered bot
// through `parley all`: the bot answers with its token, its message reads
// author role bot in the transcript, on the visitor's live stream and in
// their export; it reads the transcript (the question asked before it was
// assigned) only once the visitor allowed the assistant, every identifier
// redacted, while the visitor still reads them; it is refused everywhere
// else; the visitor asks for a person, which leaves the conversation to the
// agents, one of whom takes it, and stays in the transcript and the export.
func TestBotParticipantEndToEnd(t *testing.T) {
	sc := startVisitorScene(t)
	checkBus(t, sc.logs)
	base := sc.base
	sue := staffToken(t, sc.dir, "demo", "supervisor", "sue")
	ada := staffToken(t, sc.dir, "demo", "admin", "ada")
	bot := staffToken(t, sc.dir, "demo", "bot", "faq")
	_, other := newVisitor(t, base, "demo")

	visitorLive := openStream(t, base, sc.visitor)
	aliceLive := openStream(t, base, sc.alice)
	conv := mustCall(t, base, "POST", "/v1/conversations", sc.visitor, map[string]any{"text": botQuestion}, http.StatusCreated)["id"].(string)
	path := "/v1/conversations/" + conv
	otherConv := mustCall(t, base, "POST", "/v1/conversations", other, map[string]any{"text": "me too"}, http.StatusCreated)["id"].(string)

	// No bot is registered yet: with the bucket missing (privacy creates
	// it; an older privacy has none), an assignment to a bot is refused,
	// naming the field.
	if got := mustCall(t, base, "POST", path+"/assign", sue, map[string]any{"bot_id": "faq"}, http.StatusUnprocessableEntity); !strings.Contains(got["detail"].(string), "bot_id") {
		t.Errorf("assign to a bot before any is registered: detail %q, want it to name bot_id", got["detail"])
	}
	registerIntegration(t, sc.js, privacyapi.Integration{Tenant: "demo", ID: "faq", Kind: privacyapi.KindBot, Name: "FAQ", WebhookURL: "http://127.0.0.1:9/hook", SealedSecret: []byte("sealed")})
	registerIntegration(t, sc.js, privacyapi.Integration{Tenant: "demo", ID: "crm", Kind: privacyapi.KindIntegration, Name: "CRM", WebhookURL: "http://127.0.0.1:9/crm", SealedSecret: []byte("sealed")})
	registerIntegration(t, sc.js, privacyapi.Integration{Tenant: "acme", ID: "sales", Kind: privacyapi.KindBot, Name: "Sales", WebhookURL: "http://127.0.0.1:9/sales", SealedSecret: []byte("sealed")})
	for _, id := range []string{"nobody", "crm", "sales"} {
		got := mustCall(t, base, "POST", path+"/assign", sue, map[string]any{"bot_id": id}, http.StatusUnprocessableEntity)
		if !strings.Contains(got["detail"].(string), "bot_id") {
			t.Errorf("assign to bot %q: detail %q, want it to name bot_id", id, got["detail"])
		}
	}
	mustCall(t, base, "POST", path+"/assign", sc.alice, map[string]any{"bot_id": "faq"}, http.StatusForbidden)

	got := mustCall(t, base, "POST", path+"/assign", sue, map[string]any{"bot_id": "faq"}, http.StatusOK)
	if got["assignee"] != "bot:faq" {
		t.Fatalf("assign to bot faq: assignee %v, want bot:faq", got["assignee"])
	}
	natstest.Until(t, liveWithin, "the visitor seeing the assignment to bot:faq", func() bool {
		as := visitorLive.of("assigned", conv)
		return len(as) == 1 && as[0].Assignee == "bot:faq"
	})
	// Agents no longer see it: it is the bot's.
	for _, c := range mustCall(t, base, "GET", "/v1/conversations", sc.alice, nil, http.StatusOK)["conversations"].([]any) {
		if c.(map[string]any)["id"] == conv {
			t.Errorf("alice's inbox lists %s, assigned to a bot", conv)
		}
	}
	mustCall(t, base, "POST", path+"/messages", sc.alice, map[string]any{"text": "mine?"}, http.StatusForbidden)

	answer := marker(t)
	mustCall(t, base, "POST", path+"/messages", bot, map[string]any{"text": answer}, http.StatusCreated)
	visitorLive.waitMessage(t, answer, liveWithin)
	for _, e := range visitorLive.of("message", conv) {
		if e.Message.Text == answer && (e.Message.Author.Role != "bot" || e.Message.Author.ID != "faq") {
			t.Errorf("the bot's message live: author %+v, want role bot, id faq", e.Message.Author)
		}
	}
	msgs := mustCall(t, base, "GET", path+"/messages", sc.visitor, nil, http.StatusOK)["messages"].([]any)
	last := msgs[len(msgs)-1].(map[string]any)
	if author, _ := last["author"].(map[string]any); last["text"] != answer || author["role"] != "bot" || author["id"] != "faq" {
		t.Errorf("the transcript's last message = %v, want %q by role bot, id faq", last, answer)
	}
	if msgs[0].(map[string]any)["text"] != botQuestion {
		t.Errorf("the visitor's transcript opens with %v, want their question in clear", msgs[0])
	}
	botReadsTranscript(t, sc, bot, path, answer)
	mustCall(t, base, "GET", "/v1/conversations/"+otherConv+"/messages", bot, nil, http.StatusForbidden)
	mustCall(t, base, "GET", "/v1/conversations/nosuch/messages", bot, nil, http.StatusNotFound)
	if got := mustCall(t, base, "GET", path, sc.visitor, nil, http.StatusOK); got["first_response_at"] != nil {
		t.Errorf("first_response_at = %v after the bot's answer, want null: a bot is no first response", got["first_response_at"])
	}

	// Everything else is refused to the bot.
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/v1/conversations/" + otherConv + "/messages", map[string]any{"text": "hello"}},
		{"POST", "/v1/conversations/" + otherConv + "/handoff", nil},
		{"GET", "/v1/conversations", nil},
		{"GET", path, nil},
		{"POST", path + "/close", nil},
		{"POST", path + "/assign", map[string]any{"agent_id": "alice"}},
		{"DELETE", path + "/messages/" + conv, nil},
		{"POST", "/v1/conversations", map[string]any{"text": "hello"}},
		{"GET", "/v1/me/export", nil},
		{"GET", "/v1/settings", nil},
		{"GET", "/v1/audit", nil},
		{"GET", "/v1/agents/alice", nil},
		{"PUT", "/v1/me/presence", map[string]any{"status": "away"}},
		{"DELETE", "/v1/me/sessions", nil},
	} {
		if status, body := call(t, base, c.method, c.path, bot, c.body); status != http.StatusForbidden {
			t.Errorf("the bot's %s %s = %d %v, want 403", c.method, c.path, status, body)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(base, "http") + "/v1/stream"
	conn, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + bot}}})
	if err == nil {
		conn.CloseNow()
		t.Error("the bot opened a live stream, want 403")
	} else if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("the bot's live stream: %v, want 403", err)
	}

	// The visitor asks for a person: the conversation goes to the agents.
	asked := time.Now().Truncate(time.Second)
	got = mustCall(t, base, "POST", path+"/handoff", sc.visitor, nil, http.StatusOK)
	if got["assignee"] != nil {
		t.Errorf("after the hand-off: assignee %v, want null", got["assignee"])
	}
	for name, lc := range map[string]*liveClient{"visitor": visitorLive, "alice": aliceLive} {
		natstest.Until(t, liveWithin, name+" seeing the visitor's hand-off", func() bool {
			h := lc.of("handed_off", conv)
			return len(h) == 1 && h[0].Author.Role == "visitor"
		})
		// The server's time of the hand-off, which pages show for it.
		if at := lc.of("handed_off", conv)[0].At; at.Before(asked) || at.After(time.Now()) {
			t.Errorf("%s's hand-off frame: at %v, want the time it was asked for (after %v)", name, at, asked)
		}
		t.Logf("%s saw the hand-off", name)
	}
	listed := false
	for _, c := range mustCall(t, base, "GET", "/v1/conversations", sc.alice, nil, http.StatusOK)["conversations"].([]any) {
		listed = listed || c.(map[string]any)["id"] == conv
	}
	if !listed {
		t.Errorf("alice's inbox does not list %s after the hand-off", conv)
	}
	transcript, _ := pages(t, base, path+"/messages", sc.visitor, "messages", 2)
	handOffs(t, "the transcript", transcript, "visitor")
	// Asking again changes nothing; the bot is out of it, and reads nothing.
	mustCall(t, base, "POST", path+"/handoff", sc.visitor, nil, http.StatusOK)
	mustCall(t, base, "GET", path+"/messages", bot, nil, http.StatusForbidden)
	mustCall(t, base, "POST", path+"/messages", bot, map[string]any{"text": "still here"}, http.StatusForbidden)
	mustCall(t, base, "POST", path+"/handoff", bot, nil, http.StatusForbidden)

	mustCall(t, base, "POST", path+"/messages", sc.alice, map[string]any{"text": "a person here"}, http.StatusCreated)
	got = mustCall(t, base, "GET", path, sc.visitor, nil, http.StatusOK)
	if got["assignee"] != "alice" || got["first_response_at"] == nil {
		t.Errorf("after alice answered: %v, want assigned to alice, first response set", got)
	}

	// The bot, assigned again, hands off itself; a supervisor sees it.
	mustCall(t, base, "POST", path+"/assign", ada, map[string]any{"bot_id": "faq"}, http.StatusOK)
	got = mustCall(t, base, "POST", path+"/handoff", bot, nil, http.StatusOK)
	if got["assignee"] != nil || got["visitor_profile"] != nil {
		t.Errorf("the bot's hand-off answered %v, want unassigned, no visitor profile", got)
	}

	export := send(t, base, "GET", "/v1/me/export", sc.visitor, nil)
	defer export.Body.Close()
	var doc struct {
		Conversations []struct {
			ID       string           `json:"id"`
			Messages []map[string]any `json:"messages"`
		} `json:"conversations"`
	}
	if err := json.NewDecoder(export.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	labelled := false
	for _, c := range doc.Conversations {
		for _, m := range c.Messages {
			author, _ := m["author"].(map[string]any)
			labelled = labelled || m["text"] == answer && author["role"] == "bot" && author["id"] == "faq"
		}
		if c.ID == conv {
			handOffs(t, "the export", c.Messages, "visitor", "bot")
		}
	}
	if !labelled {
		t.Errorf("the visitor's export does not hold the bot's message by role bot: %+v", doc)
	}
}

// botQuestion is a visitor's question holding one identifier of each kind
// pkg/redact replaces; botQuestionRedacted is what a bot reads of it.
const (
	botQuestion         = "is anyone there? mail ada.lovelace@example.com, card 4111 1111 1111 1111, iban GB82 WEST 1234 5698 7654 32, phone +44 20 7946 0958, ip 203.0.113.7"
	botQuestionRedacted = "is anyone there? mail [email], card [card], iban [iban], phone [phone], ip [ip]"
)

// botReadsTranscript has the bot read the transcript of the conversation at
// path, assigned to it and opened with botQuestion: refused until the
// visitor allows the assistant, then the question redacted, its own answer
// as written, no profile; refused again once the visitor stops it.
func botReadsTranscript(t *testing.T, sc visitorScene, bot, path, answer string) {
	t.Helper()
	base := sc.base
	mustCall(t, base, "PUT", "/v1/me/profile", sc.visitor, map[string]any{"name": "Ada Lovelace"}, http.StatusOK)
	refused := func(when string) {
		t.Helper()
		got := mustCall(t, base, "GET", path+"/messages", bot, nil, http.StatusForbidden)
		if detail, _ := got["detail"].(string); !strings.Contains(detail, "has not allowed the assistant") {
			t.Errorf("the bot's transcript %s: detail %q, want it to say the visitor has not allowed the assistant", when, detail)
		}
	}
	refused("without ai consent")
	allowAssistant(t, base, sc.visitor, true)
	status, body := call(t, base, "GET", path+"/messages", bot, nil)
	raw, _ := json.Marshal(body)
	if status != http.StatusOK {
		t.Fatalf("the bot's transcript with ai consent = %d %s, want 200", status, raw)
	}
	for _, id := range []string{"ada.lovelace@example.com", "4111 1111 1111 1111", "GB82 WEST", "7946 0958", "203.0.113.7", "Ada Lovelace"} {
		if strings.Contains(string(raw), id) {
			t.Errorf("the bot's transcript holds %q: %s", id, raw)
		}
	}
	msgs := body["messages"].([]any)
	if first := msgs[0].(map[string]any); first["text"] != botQuestionRedacted {
		t.Errorf("the bot reads the question as %v, want %q", first["text"], botQuestionRedacted)
	}
	if last := msgs[len(msgs)-1].(map[string]any); last["text"] != answer {
		t.Errorf("the bot reads its own answer as %v, want %q", last["text"], answer)
	}
	if body["visitor_profile"] != nil {
		t.Errorf("the bot's transcript holds the visitor's profile %v", body["visitor_profile"])
	}
	allowAssistant(t, base, sc.visitor, false)
	refused("after the visitor stopped the assistant")
	allowAssistant(t, base, sc.visitor, true)
}

// handOffs checks that msgs hold the hand-off lines asked by roles, in
// order: handed_off, its author, its time, no text.
func handOffs(t *testing.T, where string, msgs []map[string]any, roles ...string) {
	t.Helper()
	var got []string
	for _, m := range msgs {
		if m["handed_off"] != true {
			continue
		}
		author, _ := m["author"].(map[string]any)
		role, _ := author["role"].(string)
		got = append(got, role)
		if at, _ := m["at"].(string); m["text"] != nil || at == "" {
			t.Errorf("%s: a hand-off line %v, want its time and no text", where, m)
		}
	}
	if strings.Join(got, ",") != strings.Join(roles, ",") {
		t.Errorf("%s: hand-offs by %v, want by %v", where, got, roles)
	}
}
