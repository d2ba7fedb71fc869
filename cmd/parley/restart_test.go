package main

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRestartKeepsConversations(t *testing.T) {
	dir := t.TempDir()
	a, _ := testAll(t, dir)
	base := a.URL()
	_, visitor := newVisitor(t, base, "demo")
	supervisor := staffToken(t, dir, "demo", "supervisor", "sue")
	agent := staffToken(t, dir, "demo", "agent", "alice")
	for i := range 3 {
		conv := mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": "question"}, http.StatusCreated)["id"].(string)
		mustCall(t, base, "POST", "/v1/conversations/"+conv+"/messages", agent, map[string]any{"text": "answer"}, http.StatusCreated)
		if i == 0 {
			mustCall(t, base, "POST", "/v1/conversations/"+conv+"/close", supervisor, nil, http.StatusOK)
		}
	}
	before := snapshot(t, base, supervisor)
	if len(before) != 3 {
		t.Fatalf("before restart: %d conversations, want 3", len(before))
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	b, _ := testAll(t, dir)
	after := snapshot(t, b.URL(), supervisor)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("after restart (-before +after):\n%s", diff)
	}
	// The visitor's token still works, and the conversation still takes posts.
	conv := after[0]["conversation"].(map[string]any)
	if conv["status"] == "open" {
		mustCall(t, b.URL(), "POST", "/v1/conversations/"+conv["id"].(string)+"/messages", visitor, map[string]any{"text": "still here"}, http.StatusCreated)
	}
}

// snapshot lists every conversation of tenant demo with its transcript.
func snapshot(t *testing.T, base, token string) []map[string]any {
	t.Helper()
	var out []map[string]any
	list := mustCall(t, base, "GET", "/v1/conversations", token, nil, http.StatusOK)["conversations"].([]any)
	for _, c := range list {
		id := c.(map[string]any)["id"].(string)
		msgs := mustCall(t, base, "GET", "/v1/conversations/"+id+"/messages", token, nil, http.StatusOK)["messages"]
		out = append(out, map[string]any{"conversation": c, "messages": msgs})
	}
	return out
}
