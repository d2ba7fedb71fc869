package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/webhook"
)

// hook is an integration's endpoint on loopback: it keeps what it
// verified with the shipped verifier and refuses anything else.
type hook struct {
	mu       sync.Mutex
	verifier *webhook.Verifier
	bodies   []map[string]any
	raw      [][]byte
	sigs     []string // the signature header of each of raw
	refused  int
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sig := r.Header.Get(webhook.SignatureHeader)
	body, err := h.verifier.VerifyRequest(r, 1<<20)
	if err != nil {
		h.refused++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var b map[string]any
	if err := json.Unmarshal(body, &b); err != nil {
		http.Error(w, "not JSON", http.StatusBadRequest)
		return
	}
	h.bodies, h.raw, h.sigs = append(h.bodies, b), append(h.raw, body), append(h.sigs, sig)
	w.WriteHeader(http.StatusNoContent)
}

// received returns the bodies received so far, and whether one satisfies
// ok.
func (h *hook) received(ok func(map[string]any) bool) ([]map[string]any, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.bodies), slices.ContainsFunc(h.bodies, ok)
}

func anyBody(map[string]any) bool { return true }

// eraseMe erases the visitor of token visitor, and returns the erasure's
// id and its report, read by admin once it completed.
func eraseMe(t *testing.T, base, visitor, admin string) (string, map[string]any) {
	t.Helper()
	erasureID := mustCall(t, base, "DELETE", "/v1/me", visitor, nil, http.StatusAccepted)["erasure_id"].(string)
	var status map[string]any
	natstest.Until(t, 10*time.Second, "the erasure completed", func() bool {
		status = mustCall(t, base, "GET", "/v1/erasures/"+erasureID, admin, nil, http.StatusOK)
		return status["status"] == "completed"
	})
	report, _ := status["report"].(map[string]any)
	return erasureID, report
}

func hasText(text string) func(map[string]any) bool {
	return func(b map[string]any) bool { return b["text"] == text }
}

// TestDeliveriesEndToEnd registers an integration through `parley all`
// and follows a consenting visitor's conversation out to its endpoint on
// loopback: only consented events arrive, redacted and signed, while the
// transcript keeps the original; a withdrawal stops delivery at the next
// event; the delivery log, read through the API, holds no content; the
// visitor's erasure notifies the integration and the report says it
// acknowledged.
func TestDeliveriesEndToEnd(t *testing.T) {
	dir := t.TempDir()
	a, logs := testAllWith(t, dir, localWebhooks)
	// Deliveries, their log, recipients and notices take nothing outside
	// privacy's bus permissions.
	checkBus(t, logs)
	base := a.URL()
	admin := staffToken(t, dir, "demo", "admin", "ada")
	agent := staffToken(t, dir, "demo", "agent", "alice")
	h := &hook{}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	created := mustCall(t, base, "PUT", "/v1/integrations/crm", admin, map[string]any{"name": "CRM", "webhook_url": srv.URL + "/parley"}, http.StatusCreated)
	secret, _ := created["secret"].(string)
	h.mu.Lock()
	h.verifier = &webhook.Verifier{Secrets: [][]byte{[]byte(secret)}, Seen: webhook.NewReplayCache(1000)}
	h.mu.Unlock()

	withAI := func(ai bool) (string, string) {
		out := register(t, base, "demo", map[string]bool{"analytics": false, "network_data": false, "ai": ai})
		return out["visitor_id"].(string), out["token"].(string)
	}
	visitorID, visitor := withAI(true)
	_, refusing := withAI(false)
	secretOfRefusing := marker(t)
	mustCall(t, base, "POST", "/v1/conversations", refusing, map[string]any{"text": secretOfRefusing}, http.StatusCreated)

	const pii = "mail jane.doe@example.com, card 4111 1111 1111 1111, iban DE89 3704 0044 0532 0130 00, call +44 20 7946 0958 from 192.168.10.77"
	identifiers := []string{"jane.doe@example.com", "4111 1111 1111 1111", "DE89 3704 0044 0532 0130 00", "+44 20 7946 0958", "192.168.10.77"}
	conv := mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": pii}, http.StatusCreated)["id"].(string)
	redacted := "mail [email], card [card], iban [iban], call [phone] from [ip]"
	natstest.Until(t, 20*time.Second, "the redacted message delivered", func() bool { _, ok := h.received(hasText(redacted)); return ok })

	// Withdrawn, the next message is not delivered; given again, the one
	// after is, and deliveries keep the order they were stored in.
	withdrawn, again := marker(t), marker(t)
	allowAssistant(t, base, visitor, false)
	mustCall(t, base, "POST", "/v1/conversations/"+conv+"/messages", visitor, map[string]any{"text": withdrawn}, http.StatusCreated)
	allowAssistant(t, base, visitor, true)
	mustCall(t, base, "POST", "/v1/conversations/"+conv+"/messages", visitor, map[string]any{"text": again}, http.StatusCreated)
	natstest.Until(t, 20*time.Second, "the message after consent given again delivered", func() bool { _, ok := h.received(hasText(again)); return ok })

	bodies, _ := h.received(anyBody)
	var got []string
	for _, b := range bodies {
		if b["visitor_id"] != visitorID || b["conversation_id"] != conv {
			t.Errorf("delivered %v, want only the consenting visitor's conversation", b)
		}
		got = append(got, b["text"].(string))
	}
	if want := []string{redacted, again}; !slices.Equal(got, want) {
		t.Errorf("texts delivered = %q, want %q", got, want)
	}
	h.mu.Lock()
	for _, raw := range h.raw {
		for _, s := range append(identifiers, secretOfRefusing, withdrawn) {
			if strings.Contains(string(raw), s) {
				t.Errorf("a delivery holds %q: %s", s, raw)
			}
		}
	}
	h.mu.Unlock()
	// Staff still read the original.
	msgs := mustCall(t, base, "GET", "/v1/conversations/"+conv+"/messages", admin, nil, http.StatusOK)["messages"]
	if tx := texts(t, msgs); len(tx) == 0 || tx[0] != pii {
		t.Errorf("transcript = %q, want the original text first", tx)
	}

	// The delivery log: admin only, no content. An attempt is logged once
	// its answer is back, after the endpoint took the delivery.
	var (
		log     map[string]any
		entries []any
	)
	natstest.Until(t, 20*time.Second, "both deliveries logged", func() bool {
		log = mustCall(t, base, "GET", "/v1/integrations/crm/deliveries", admin, nil, http.StatusOK)
		entries, _ = log["deliveries"].([]any)
		return len(entries) >= 2
	})
	if len(entries) != 2 {
		t.Errorf("delivery log = %v, want two deliveries", log)
	}
	for _, e := range entries {
		if e.(map[string]any)["outcome"] != "delivered" {
			t.Errorf("log entry %v, want delivered", e)
		}
	}
	mustCall(t, base, "GET", "/v1/integrations/crm/deliveries", agent, nil, http.StatusForbidden)
	mustCall(t, base, "GET", "/v1/bots/crm/deliveries", admin, nil, http.StatusNotFound)
	mustCall(t, base, "GET", "/v1/integrations/crm/deliveries?since=yesterday", admin, nil, http.StatusUnprocessableEntity)

	// Erasure follows the events out.
	erasureID, report := eraseMe(t, base, visitor, admin)
	ints, _ := report["integrations"].([]any)
	if len(ints) != 1 || ints[0].(map[string]any)["id"] != "crm" || ints[0].(map[string]any)["kind"] != "integration" || ints[0].(map[string]any)["acknowledged"] != true {
		t.Errorf("erasure report = %v, want crm acknowledged", report)
	}
	_, ok := h.received(func(b map[string]any) bool {
		return b["type"] == "subject.erased.v1" && b["visitor_id"] == visitorID && b["erasure_id"] == erasureID
	})
	if !ok {
		t.Error("the integration got no subject.erased.v1 notice")
	}
	h.mu.Lock()
	if h.refused != 0 {
		t.Errorf("the endpoint refused %d deliveries as unsigned", h.refused)
	}
	h.mu.Unlock()
	for _, s := range append(identifiers, secret, withdrawn, again) {
		if strings.Contains(logs.String(), s) {
			t.Errorf("the logs hold %q", s)
		}
	}
}
