package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
)

// keyed sends a JSON body with an Idempotency-Key and returns the status,
// the decoded body and the Retry-After header.
func keyed(t *testing.T, base, path, token, key string, body any) (int, map[string]any, string) {
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("POST %s: body is not JSON: %q", path, b)
	}
	if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("POST %s = %d with %s, want a problem document", path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, out, resp.Header.Get("Retry-After")
}

// seqFrame is a live event as a resuming client reads it.
type seqFrame struct {
	Type    string `json:"type"`
	Seq     uint64 `json:"seq"`
	Message *struct {
		Text string `json:"text"`
	} `json:"message"`
}

// dialSince opens /v1/stream with the token in the query, resuming after
// since when it is not empty.
func dialSince(t *testing.T, base, token, since string) *websocket.Conn {
	t.Helper()
	url := "ws" + strings.TrimPrefix(base, "http") + "/v1/stream?access_token=" + token
	if since != "" {
		url += "&since=" + since
	}
	ctx, cancel := context.WithTimeout(context.Background(), liveWithin)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial stream: %v", err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	return conn
}

// readMessages reads live events until it has n messages, and returns
// "seq text" of each.
func readMessages(t *testing.T, conn *websocket.Conn, n int) []string {
	t.Helper()
	var out []string
	for len(out) < n {
		ctx, cancel := context.WithTimeout(context.Background(), liveWithin)
		_, b, err := conn.Read(ctx)
		cancel()
		if err != nil {
			t.Fatalf("read live event after %q: %v", out, err)
		}
		var f seqFrame
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatal(err)
		}
		if f.Type == "message" {
			out = append(out, fmt.Sprintf("%d %s", f.Seq, f.Message.Text))
		}
	}
	return out
}

// TestRetriesAndResumesEndToEnd retries openings and posts with an
// Idempotency-Key and resumes a live stream after a disconnect, against
// `parley all` with every service as its own bus user.
func TestRetriesAndResumesEndToEnd(t *testing.T) {
	dir := t.TempDir()
	a, logs := testAll(t, dir)
	checkBus(t, logs)
	// The concurrent posts below may leave the client a connection it
	// dialled but never used, which the gateway's graceful shutdown would
	// wait for (net/http waits 5s for a connection that sent nothing).
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	base := a.URL()
	_, visitor := newVisitor(t, base, "demo")

	// An opening retried: one conversation.
	status, first, _ := keyed(t, base, "/v1/conversations", visitor, "open-7f3a", map[string]any{"text": "hello"})
	if status != http.StatusCreated {
		t.Fatalf("POST /v1/conversations = %d %v", status, first)
	}
	conv := first["id"].(string)
	status, again, _ := keyed(t, base, "/v1/conversations", visitor, "open-7f3a", map[string]any{"text": "hello"})
	if status != http.StatusCreated || again["id"] != conv {
		t.Errorf("POST /v1/conversations again = %d %v, want 201 %s", status, again, conv)
	}
	if n := len(mustCall(t, base, "GET", "/v1/conversations", visitor, nil, http.StatusOK)["conversations"].([]any)); n != 1 {
		t.Errorf("%d conversations after a retried opening, want 1", n)
	}

	// A post retried after its success, and ten at once with one key.
	path := "/v1/conversations/" + conv + "/messages"
	_, posted, _ := keyed(t, base, path, visitor, "post-1", map[string]any{"text": "once"})
	for range 2 {
		status, again, _ := keyed(t, base, path, visitor, "post-1", map[string]any{"text": "once"})
		if status != http.StatusCreated || fmt.Sprint(again) != fmt.Sprint(posted) {
			t.Errorf("POST %s again = %d %v, want 201 %v", path, status, again, posted)
		}
	}
	var wg sync.WaitGroup
	results := make([]string, 10)
	for i := range results {
		wg.Go(func() {
			status, out, _ := keyed(t, base, path, visitor, "post-2", map[string]any{"text": "at once"})
			results[i] = fmt.Sprint(status, out)
		})
	}
	wg.Wait()
	for i, r := range results {
		if r != results[0] || !strings.HasPrefix(r, "201 ") {
			t.Errorf("concurrent POST #%d = %s, want %s (201)", i, r, results[0])
		}
	}

	// Refusals: a key reused with another text, a malformed key.
	if status, out, _ := keyed(t, base, path, visitor, "post-1", map[string]any{"text": "other"}); status != http.StatusUnprocessableEntity {
		t.Errorf("POST with a reused key = %d %v, want 422", status, out)
	}
	if status, out, _ := keyed(t, base, path, visitor, strings.Repeat("k", 129), map[string]any{"text": "x"}); status != http.StatusBadRequest {
		t.Errorf("POST with a 129-character key = %d %v, want 400", status, out)
	}
	msgs := mustCall(t, base, "GET", path, visitor, nil, http.StatusOK)["messages"].([]any)
	if len(msgs) != 3 {
		t.Errorf("%d messages stored, want 3: %v", len(msgs), msgs)
	}

	// The live stream: seen, disconnected, missed, resumed.
	conn := dialSince(t, base, visitor, "")
	natstest.Until(t, liveWithin, "a message posted with its seq", func() bool {
		_, out, _ := keyed(t, base, path, visitor, "", map[string]any{"text": "seen"})
		return out["seq"] != nil
	})
	seen := readMessages(t, conn, 1)[0]
	conn.Close(websocket.StatusNormalClosure, "")
	var missed []string
	for i := range 3 {
		_, out, _ := keyed(t, base, path, visitor, "", map[string]any{"text": fmt.Sprintf("missed %d", i)})
		missed = append(missed, fmt.Sprintf("%d missed %d", uint64(out["seq"].(float64)), i))
	}
	since, _, _ := strings.Cut(seen, " ")
	resumed := dialSince(t, base, visitor, since)
	if got := readMessages(t, resumed, 3); fmt.Sprint(got) != fmt.Sprint(missed) {
		t.Errorf("resumed after %s: %v, want %v", since, got, missed)
	}
	_, out, _ := keyed(t, base, path, visitor, "", map[string]any{"text": "live again"})
	want := fmt.Sprintf("%d live again", uint64(out["seq"].(float64)))
	if got := readMessages(t, resumed, 1); got[0] != want {
		t.Errorf("after the replay: %v, want %s and nothing twice", got, want)
	}
	if _, err := strconv.ParseUint(since, 10, 64); err != nil {
		t.Errorf("live event seq %q is not a number", since)
	}
}

// TestBusUnavailableAnswers503 takes JetStream away from `parley all`, as a
// stream electing a leader does for a while: a post answers 503 with
// Retry-After, never 500.
func TestBusUnavailableAnswers503(t *testing.T) {
	dir := t.TempDir()
	a, _ := testAll(t, dir)
	base := a.URL()
	_, visitor := newVisitor(t, base, "demo")
	conv := mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": "hello"}, http.StatusCreated)["id"].(string)

	// JetStream stays off to the end: turning it on again while the
	// services' calls are in flight races inside nats-server.
	if err := a.nats.DisableJetStream(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	status, out, retry := keyed(t, base, "/v1/conversations/"+conv+"/messages", visitor, "k-503", map[string]any{"text": "while away"})
	if status != http.StatusServiceUnavailable || retry == "" {
		t.Errorf("POST without JetStream = %d %v, Retry-After %q (after %v); want 503 with Retry-After", status, out, retry, time.Since(start))
	}
}

// TestConcurrentErasuresEndToEnd erases one visitor by twelve requests at
// once, as the visitor and as an admin: every one is answered 202 with the
// same erasure.
func TestConcurrentErasuresEndToEnd(t *testing.T) {
	dir := t.TempDir()
	a, _ := testAll(t, dir)
	t.Cleanup(http.DefaultClient.CloseIdleConnections) // see TestRetriesAndResumesEndToEnd
	base := a.URL()
	admin := staffToken(t, dir, "demo", "admin", "ada")
	id, visitor := newVisitor(t, base, "demo")
	mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": "erase me"}, http.StatusCreated)

	results := make([]string, 12)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			method, path, token := "DELETE", "/v1/me", visitor
			if i%2 == 1 {
				method, path, token = "POST", "/v1/subjects/"+id+"/erase", admin
			}
			status, out := call(t, base, method, path, token, nil)
			results[i] = fmt.Sprint(status, " ", out["erasure_id"])
		})
	}
	wg.Wait()
	for i, r := range results {
		if r != results[0] || !strings.HasPrefix(r, "202 ") {
			t.Errorf("erasure #%d = %s, want 202 and the erasure of #0 (%s)", i, r, results[0])
		}
	}
}
