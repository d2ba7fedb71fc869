package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"
)

// rejections returns parley_gateway_limit_rejections_total of limit, as
// /metrics shows it.
func rejections(t *testing.T, base, limit string) string {
	t.Helper()
	resp := send(t, base, "GET", "/metrics", "", nil)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("parley_gateway_limit_rejections_total{limit=%q} ", limit)
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			return strings.TrimSpace(v)
		}
	}
	return "0"
}

// wantLimited fails unless a call answered a 429 problem with Retry-After,
// counted under limit as the count-th.
func wantLimited(t *testing.T, base, what string, resp *http.Response, limit, count string) {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Content-Type") != "application/problem+json" || resp.Header.Get("Retry-After") == "" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s = %d %s %q (Retry-After %q), want a 429 problem with Retry-After", what, resp.StatusCode, resp.Header.Get("Content-Type"), b, resp.Header.Get("Retry-After"))
	}
	if got := rejections(t, base, limit); got != count {
		t.Errorf("after %s: rejections{limit=%q} = %s, want %s", what, limit, got, count)
	}
}

func post(t *testing.T, base, path, token, body string) *http.Response {
	t.Helper()
	return send(t, base, "POST", path, token, strings.NewReader(body))
}

// TestLimitsEndToEnd hits every per-tenant limit of `parley all` in one
// tenant and shows another tenant, and the health endpoint, unaffected.
func TestLimitsEndToEnd(t *testing.T) {
	dir := t.TempDir()
	a, _ := testAll(t, dir)
	base := a.URL()
	operator := staffToken(t, dir, "*", "operator", "ops")
	mustCall(t, base, "PUT", "/v1/tenants/demo", operator, map[string]any{"name": "Demo", "limits": map[string]int{
		"sessions_per_principal": 1, "registrations_per_address_per_minute": 3,
	}}, http.StatusOK)
	mustCall(t, base, "PUT", "/v1/tenants/acme", operator, map[string]any{"name": "Acme"}, http.StatusCreated)
	admin := staffToken(t, dir, "demo", "admin", "ada")
	mustCall(t, base, "PUT", "/v1/settings", admin, map[string]any{
		"retention_days": 365, "collect_network_data": false,
		"open_conversations_per_visitor": 2, "messages_per_conversation_per_minute": 3,
	}, http.StatusOK)

	// Registrations per address: three, then 429.
	_, visitor := newVisitor(t, base, "demo")
	newVisitor(t, base, "demo")
	newVisitor(t, base, "demo")
	wantLimited(t, base, "a fourth registration", post(t, base, "/v1/tenants/demo/visitors", "",
		`{"consent":{"analytics":false,"network_data":false,"ai":false},"notice_version":"1"}`), "registrations_per_address", "1")

	// Open conversations per visitor: two, then 429 until one is closed.
	first := mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": "one"}, http.StatusCreated)["id"].(string)
	mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": "two"}, http.StatusCreated)
	wantLimited(t, base, "a third open conversation", post(t, base, "/v1/conversations", visitor, `{"text":"three"}`), "open_conversations_per_visitor", "1")
	mustCall(t, base, "POST", "/v1/conversations/"+first+"/close", visitor, nil, http.StatusOK)
	conv := mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": "three"}, http.StatusCreated)["id"].(string)

	// Messages per conversation: the opening one and two more in a minute.
	mustCall(t, base, "POST", "/v1/conversations/"+conv+"/messages", visitor, map[string]any{"text": "a"}, http.StatusCreated)
	mustCall(t, base, "POST", "/v1/conversations/"+conv+"/messages", visitor, map[string]any{"text": "b"}, http.StatusCreated)
	wantLimited(t, base, "a fourth message in a minute", post(t, base, "/v1/conversations/"+conv+"/messages", visitor, `{"text":"c"}`), "messages_per_conversation_per_minute", "1")

	// Sessions per principal: one, then 429 at the handshake.
	openStream(t, base, visitor)
	ctx, cancel := context.WithTimeout(context.Background(), liveWithin)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/v1/stream", &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + visitor}},
	})
	if err == nil || resp == nil {
		t.Fatalf("a second session of one visitor: %v, want refused", err)
	}
	wantLimited(t, base, "a second session", resp, "sessions_per_principal", "1")

	// Another tenant is unaffected: its own visitors, conversations,
	// messages and sessions, from the same address.
	_, other := newVisitor(t, base, "acme")
	for range 3 {
		mustCall(t, base, "POST", "/v1/conversations", other, map[string]any{"text": "hi"}, http.StatusCreated)
	}
	openStream(t, base, other)
	openStream(t, base, other)
	mustCall(t, base, "GET", "/healthz", "", nil, http.StatusOK)
}

// TestErasedVisitorEndToEnd erases a visitor with a live session: the
// session is closed, and their token opens no new one and makes no call,
// also after a restart of `parley all`, which learns it from the key
// service.
func TestErasedVisitorEndToEnd(t *testing.T) {
	dir := t.TempDir()
	a, _ := testAll(t, dir)
	base := a.URL()
	_, visitor := newVisitor(t, base, "demo")
	mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": "hello"}, http.StatusCreated)
	ctx, cancel := context.WithTimeout(context.Background(), liveWithin)
	defer cancel()
	url := "ws" + strings.TrimPrefix(base, "http") + "/v1/stream"
	opts := &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + visitor}}}
	conn, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()

	erasure := mustCall(t, base, "DELETE", "/v1/me", visitor, nil, http.StatusAccepted)
	_, _, err = conn.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "subject erased" {
		t.Fatalf("open session after the erasure: %v, want closed 1008 subject erased", err)
	}
	shutOut := func(base string) {
		t.Helper()
		_, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/v1/stream", opts)
		if err == nil || resp == nil || resp.StatusCode != http.StatusGone {
			t.Errorf("new session of the erased visitor: %v, want 410", err)
		}
		mustCall(t, base, "GET", "/v1/conversations", visitor, nil, http.StatusGone)
		// How the erasure went stays readable.
		mustCall(t, base, "GET", "/v1/erasures/"+erasure["erasure_id"].(string), visitor, nil, http.StatusOK)
	}
	shutOut(base)

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := testAll(t, dir)
	shutOut(b.URL())
}
