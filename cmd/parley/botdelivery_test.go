package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/webhook"
)

// TestBotEndToEnd follows a bot registered through `parley all` with a
// webhook on loopback, which verifies every delivery with the shipped
// verifier and a replay cache: assigned to a conversation whose visitor
// has no ai consent, it receives nothing; once the visitor consents it
// receives their next message redacted, stamped by chat with the bot as
// assignee; it refreshes its session and answers, labelled bot in the
// transcript; after a withdrawal it receives nothing, after consenting
// again the visitor's hand-off; at the visitor's erasure a verified
// notice, which the erasure's report lists acknowledged. A forged and a
// replayed delivery are refused.
func TestBotEndToEnd(t *testing.T) {
	dir := t.TempDir()
	a, logs := testAllWith(t, dir, localWebhooks)
	base := a.URL()
	admin := staffToken(t, dir, "demo", "admin", "ada")
	sue := staffToken(t, dir, "demo", "supervisor", "sue")
	h := &hook{}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	hookURL := srv.URL + "/faq"

	created := mustCall(t, base, "PUT", "/v1/bots/faq", admin, map[string]any{"name": "FAQ", "webhook_url": hookURL}, http.StatusCreated)
	secret, _ := created["secret"].(string)
	session, _ := created["session"].(map[string]any)
	if secret == "" || session == nil {
		t.Fatalf("PUT /v1/bots/faq = %v, want a secret and a session", created)
	}
	h.mu.Lock()
	h.verifier = &webhook.Verifier{Secrets: [][]byte{[]byte(secret)}, Seen: webhook.NewReplayCache(1000)}
	h.mu.Unlock()
	// A supervisor, who assigns, sees no more of the bot than that.
	for who, wantURL := range map[string]any{sue: nil, admin: hookURL} {
		bots := mustCall(t, base, "GET", "/v1/bots", who, nil, http.StatusOK)["bots"].([]any)
		if len(bots) != 1 || bots[0].(map[string]any)["id"] != "faq" || bots[0].(map[string]any)["webhook_url"] != wantURL {
			t.Errorf("GET /v1/bots = %v, want faq with webhook_url %v", bots, wantURL)
		}
	}

	v := visitorWith(t, base, false)
	visitorID, visitor := v["visitor_id"].(string), v["token"].(string)
	const pii = "write to jane.doe@example.com, card 4111 1111 1111 1111"
	identifiers := []string{"jane.doe@example.com", "4111 1111 1111 1111"}
	conv := mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": "opening " + pii}, http.StatusCreated)["id"].(string)
	path := "/v1/conversations/" + conv
	if got := mustCall(t, base, "POST", path+"/assign", sue, map[string]any{"bot_id": "faq"}, http.StatusOK); got["assignee"] != "bot:faq" {
		t.Fatalf("assign to the bot: assignee %v, want bot:faq", got["assignee"])
	}

	// Consented, the next message arrives redacted; deliveries keep their
	// order, so nothing came before it (the opening, the assignment).
	allowAssistant(t, base, visitor, true)
	mustCall(t, base, "POST", path+"/messages", visitor, map[string]any{"text": "again " + pii}, http.StatusCreated)
	const redacted = "again write to [email], card [card]"
	natstest.Until(t, 20*time.Second, "the redacted message delivered to the bot", func() bool { _, ok := h.received(hasText(redacted)); return ok })
	bodies, _ := h.received(anyBody)
	if len(bodies) != 1 {
		t.Fatalf("the bot received %v, want only the message written with consent", bodies)
	}
	if b := bodies[0]; b["type"] != "chat.message_posted.v1" || b["conversation_id"] != conv || b["visitor_id"] != visitorID ||
		b["author"].(map[string]any)["role"] != "visitor" || b["seq"].(float64) <= 0 {
		t.Errorf("the delivered message = %v, want the visitor's in %s with its seq", b, conv)
	}

	// The bot refreshes its session from the registration and answers.
	access, _ := refreshed(t, base, session["refresh_token"].(string))
	answer := marker(t)
	mustCall(t, base, "POST", path+"/messages", access, map[string]any{"text": answer}, http.StatusCreated)
	msgs := mustCall(t, base, "GET", path+"/messages", visitor, nil, http.StatusOK)["messages"].([]any)
	last := msgs[len(msgs)-1].(map[string]any)
	if author, _ := last["author"].(map[string]any); last["text"] != answer || author["role"] != "bot" || author["id"] != "faq" {
		t.Errorf("the transcript's last message = %v, want %q by role bot", last, answer)
	}

	// Withdrawn: the next message is not delivered. Consented again, the
	// hand-off is, and arrives after what came before it.
	allowAssistant(t, base, visitor, false)
	withdrawn := marker(t)
	mustCall(t, base, "POST", path+"/messages", visitor, map[string]any{"text": withdrawn}, http.StatusCreated)
	allowAssistant(t, base, visitor, true)
	mustCall(t, base, "POST", path+"/handoff", visitor, nil, http.StatusOK)
	isHandOff := func(b map[string]any) bool { return b["type"] == "chat.handed_off.v1" && b["conversation_id"] == conv }
	natstest.Until(t, 20*time.Second, "the hand-off delivered to the bot", func() bool { _, ok := h.received(isHandOff); return ok })
	bodies, _ = h.received(anyBody)
	if slices.ContainsFunc(bodies, hasText(withdrawn)) {
		t.Error("a message written while the ai consent was withdrawn reached the bot")
	}
	if i := slices.IndexFunc(bodies, isHandOff); bodies[i]["assignee"] != "" || bodies[i]["author"].(map[string]any)["role"] != "visitor" {
		t.Errorf("the hand-off delivered = %v, want the visitor's, assignee \"\"", bodies[i])
	}

	// Erased: the bot is told, and the report says it acknowledged.
	erasureID, report := eraseMe(t, base, visitor, admin)
	ints, _ := report["integrations"].([]any)
	if len(ints) != 1 || ints[0].(map[string]any)["id"] != "faq" || ints[0].(map[string]any)["kind"] != "bot" || ints[0].(map[string]any)["acknowledged"] != true {
		t.Errorf("erasure report = %v, want the bot faq acknowledged", report)
	}
	natstest.Until(t, 20*time.Second, "the erasure delivered to the bot", func() bool {
		_, ok := h.received(func(b map[string]any) bool {
			return b["type"] == "subject.erased.v1" && b["visitor_id"] == visitorID && b["erasure_id"] == erasureID
		})
		return ok
	})

	// A captured delivery sent again, or altered, is refused.
	h.mu.Lock()
	raw, sig, refused := h.raw[0], h.sigs[0], h.refused
	for _, r := range h.raw {
		for _, s := range append(identifiers, withdrawn) {
			if bytes.Contains(r, []byte(s)) {
				t.Errorf("a delivery holds %q: %s", s, r)
			}
		}
	}
	h.mu.Unlock()
	forged := bytes.Replace(raw, []byte("[email]"), []byte("[mail]"), 1)
	for name, body := range map[string][]byte{"replayed": raw, "forged": forged} {
		req, err := http.NewRequest(http.MethodPost, hookURL, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(webhook.SignatureHeader, sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("a %s delivery: %d, want 401", name, resp.StatusCode)
		}
	}
	h.mu.Lock()
	if got := h.refused - refused; got != 2 {
		t.Errorf("the verifier refused %d of the forged and replayed deliveries, want 2", got)
	}
	h.mu.Unlock()
	for _, s := range append(identifiers, secret, answer, withdrawn) {
		if strings.Contains(logs.String(), s) {
			t.Errorf("the logs hold %q", s)
		}
	}
}
