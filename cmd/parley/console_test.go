package main

import (
	"net/http"
	"testing"
)

// TestConversationSummary reads GET /v1/conversations/{id} through its life
// as each party may, and the rating in the summary and the inbox of staff.
func TestConversationSummary(t *testing.T) {
	dir := t.TempDir()
	a, _ := testAll(t, dir)
	base := a.URL()
	visitorID, visitor := newVisitor(t, base, "demo")
	_, otherVisitor := newVisitor(t, base, "demo")
	agent := staffToken(t, dir, "demo", "agent", "alice")
	otherAgent := staffToken(t, dir, "demo", "agent", "bob")
	supervisor := staffToken(t, dir, "demo", "supervisor", "sue")
	foreigner := staffToken(t, dir, "acme", "supervisor", "sue")

	conv := mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": "hello"}, http.StatusCreated)["id"].(string)
	path := "/v1/conversations/" + conv
	got := mustCall(t, base, "GET", path, otherAgent, nil, http.StatusOK)
	if got["status"] != "open" || got["assignee"] != nil || got["rating"] != nil || got["closed_at"] != nil ||
		got["first_response_at"] != nil || got["visitor"] != visitorID || got["created_at"] == nil {
		t.Errorf("GET %s (unassigned) = %v, want open, unassigned, unrated, unanswered, of %s", path, got, visitorID)
	}

	mustCall(t, base, "POST", path+"/messages", agent, map[string]any{"text": "hi"}, http.StatusCreated)
	got = mustCall(t, base, "GET", path, agent, nil, http.StatusOK)
	if got["assignee"] != "alice" || got["first_response_at"] == nil {
		t.Errorf("GET %s after alice answered = %v, want assigned to alice, first response set", path, got)
	}
	mustCall(t, base, "POST", path+"/close", agent, nil, http.StatusOK)
	mustCall(t, base, "POST", path+"/rating", visitor, map[string]any{"score": 4}, http.StatusOK)

	for _, tt := range []struct {
		name  string
		token string
		want  int
	}{
		{"visitor", visitor, http.StatusOK},
		{"assigned agent", agent, http.StatusOK},
		{"supervisor", supervisor, http.StatusOK},
		{"another agent", otherAgent, http.StatusForbidden},
		{"another visitor", otherVisitor, http.StatusForbidden},
		{"another tenant", foreigner, http.StatusNotFound},
		{"nobody", "", http.StatusUnauthorized},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := mustCall(t, base, "GET", path, tt.token, nil, tt.want)
			if tt.want != http.StatusOK {
				return
			}
			if got["status"] != "closed" || got["rating"] != float64(4) || got["closed_at"] == nil {
				t.Errorf("GET %s = %v, want closed, rated 4, closed_at set", path, got)
			}
		})
	}
	mustCall(t, base, "GET", "/v1/conversations/not.an.id", supervisor, nil, http.StatusNotFound)

	list := mustCall(t, base, "GET", "/v1/conversations", supervisor, nil, http.StatusOK)["conversations"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["rating"] != float64(4) {
		t.Errorf("supervisor's inbox = %v, want the conversation rated 4", list)
	}
}
