package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"
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

// TestPresenceAndCapacity assigns by agents' presence and capacity, as
// they and their supervisor set them, through `parley all`.
func TestPresenceAndCapacity(t *testing.T) {
	dir := t.TempDir()
	a, logs := testAll(t, dir)
	checkBus(t, logs)
	base := a.URL()
	agent := staffToken(t, dir, "demo", "agent", "alice")
	bob := staffToken(t, dir, "demo", "agent", "bob")
	supervisor := staffToken(t, dir, "demo", "supervisor", "sue")
	open := func() string {
		t.Helper()
		_, visitor := newVisitor(t, base, "demo")
		return mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": "hello"}, http.StatusCreated)["id"].(string)
	}
	assign := func(conv, token string, override bool, want int) map[string]any {
		t.Helper()
		return mustCall(t, base, "POST", "/v1/conversations/"+conv+"/assign", token, map[string]any{"agent_id": "alice", "override": override}, want)
	}

	// Never set: online, no bound.
	got := mustCall(t, base, "GET", "/v1/agents/alice", supervisor, nil, http.StatusOK)
	if got["status"] != "online" || got["max_open"] != nil || got["open"] != float64(0) || got["status_at"] != nil {
		t.Errorf("GET /v1/agents/alice before anything was set = %v, want online, unbounded, 0 open", got)
	}
	first := open()
	assign(first, supervisor, false, http.StatusOK)

	got = mustCall(t, base, "PUT", "/v1/me/presence", agent, map[string]any{"status": "away"}, http.StatusOK)
	if got["agent_id"] != "alice" || got["status"] != "away" || got["open"] != float64(1) || got["status_at"] == nil {
		t.Errorf("PUT /v1/me/presence away = %v, want alice away with 1 open", got)
	}
	second := open()
	problem := assign(second, supervisor, false, http.StatusConflict)
	if !strings.Contains(problem["detail"].(string), "away") {
		t.Errorf("assigning to an away agent: %v, want a problem saying so", problem)
	}
	assign(second, agent, true, http.StatusForbidden) // an agent cannot override
	assign(second, agent, false, http.StatusOK)       // taking it themself shows they are there
	assign(second, supervisor, false, http.StatusOK)  // already hers: nothing changes

	mustCall(t, base, "PUT", "/v1/me/presence", agent, map[string]any{"status": "online"}, http.StatusOK)
	mustCall(t, base, "PUT", "/v1/agents/alice/capacity", agent, map[string]any{"max_open": 2}, http.StatusForbidden)
	mustCall(t, base, "PUT", "/v1/agents/alice/capacity", supervisor, map[string]any{"max_open": -1}, http.StatusUnprocessableEntity)
	got = mustCall(t, base, "PUT", "/v1/agents/alice/capacity", supervisor, map[string]any{"max_open": 2}, http.StatusOK)
	if got["max_open"] != float64(2) || got["open"] != float64(2) || got["status"] != "online" {
		t.Errorf("PUT capacity 2 = %v, want online, 2 of 2 open", got)
	}
	third := open()
	if problem := assign(third, supervisor, false, http.StatusConflict); !strings.Contains(problem["detail"].(string), "capacity") {
		t.Errorf("assigning past capacity: %v, want a problem saying so", problem)
	}
	// Answering an unassigned conversation takes it, within capacity too.
	mustCall(t, base, "POST", "/v1/conversations/"+third+"/messages", agent, map[string]any{"text": "mine?"}, http.StatusConflict)
	mustCall(t, base, "POST", "/v1/conversations/"+third+"/messages", bob, map[string]any{"text": "bob here"}, http.StatusCreated)
	fourth := open()
	assign(fourth, supervisor, true, http.StatusOK)
	if got := mustCall(t, base, "GET", "/v1/agents/alice", agent, nil, http.StatusOK); got["open"] != float64(3) {
		t.Errorf("alice's availability after an override = %v, want 3 open", got)
	}
	// Closing one makes room again only below the bound: 2 of 2.
	mustCall(t, base, "POST", "/v1/conversations/"+first+"/close", agent, nil, http.StatusOK)
	assign(open(), supervisor, false, http.StatusConflict)
	mustCall(t, base, "POST", "/v1/conversations/"+second+"/close", agent, nil, http.StatusOK)
	assign(open(), supervisor, false, http.StatusOK)

	mustCall(t, base, "GET", "/v1/agents/alice", bob, nil, http.StatusForbidden)
	mustCall(t, base, "PUT", "/v1/me/presence", supervisor, map[string]any{"status": "away"}, http.StatusForbidden)
	mustCall(t, base, "PUT", "/v1/me/presence", agent, map[string]any{"status": "busy"}, http.StatusUnprocessableEntity)
	mustCall(t, base, "PUT", "/v1/agents/alice/capacity", supervisor, map[string]any{"max_open": nil}, http.StatusOK)
	assign(open(), supervisor, false, http.StatusOK)
}

// TestPresenceIsStaffDataOnly attacks what docs/privacy.md says of presence
// and capacity: they are written to AGENTS only, one revision each, with
// nothing of any visitor; no audit entry, no event in CHAT (so nothing for
// the relay to pass to analytics), no fact.
func TestPresenceIsStaffDataOnly(t *testing.T) {
	dir := t.TempDir()
	a, _ := testAll(t, dir)
	base := a.URL()
	_, js := adminConn(t, a)
	agent := staffToken(t, dir, "demo", "agent", "alice")
	supervisor := staffToken(t, dir, "demo", "supervisor", "sue")
	visitorID, visitor := newVisitor(t, base, "demo")
	conv := mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": "hello"}, http.StatusCreated)["id"].(string)
	mustCall(t, base, "POST", "/v1/conversations/"+conv+"/assign", supervisor, map[string]any{"agent_id": "alice"}, http.StatusOK)

	lastSeq := func(name string) uint64 {
		t.Helper()
		s, err := js.Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().State.LastSeq
	}
	// The relay has passed on the facts of the events so far: each
	// durable consumer of CHAT has acked up to its last event.
	last := lastSeq(stream.Chat)
	natstest.Until(t, 10*time.Second, "CHAT's durable consumers caught up", func() bool {
		chat, err := js.Stream(t.Context(), stream.Chat)
		if err != nil {
			return false
		}
		durables := 0
		for info := range chat.ListConsumers(t.Context()).Info() {
			if info.Config.Durable == "" {
				continue
			}
			durables++
			if info.AckFloor.Stream < last {
				return false
			}
		}
		return durables > 0
	})
	streams := []string{stream.Chat, stream.Audit, stream.Analytics}
	before := map[string]uint64{}
	for _, name := range streams {
		before[name] = lastSeq(name)
	}
	mustCall(t, base, "PUT", "/v1/me/presence", agent, map[string]any{"status": "away"}, http.StatusOK)
	mustCall(t, base, "PUT", "/v1/agents/alice/capacity", supervisor, map[string]any{"max_open": 3}, http.StatusOK)
	mustCall(t, base, "PUT", "/v1/me/presence", agent, map[string]any{"status": "online"}, http.StatusOK)
	for _, name := range streams {
		if after := lastSeq(name); after != before[name] {
			t.Errorf("%s went from sequence %d to %d while only presence and capacity changed, want no message", name, before[name], after)
		}
	}

	// What AGENTS holds: the agent's own, written (so the scan reads the
	// writes), and nothing of the visitor whose conversation she holds.
	kv, err := js.KeyValue(t.Context(), stream.AgentsBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var entries int
	for key := range keys.Keys() {
		hist, err := kv.History(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range hist {
			entries++
			if strings.Contains(key, visitorID) || strings.Contains(string(e.Value()), visitorID) || strings.Contains(string(e.Value()), conv) {
				t.Errorf("AGENTS entry %s holds the visitor or their conversation: %s", key, e.Value())
			}
		}
	}
	if entries < 2 {
		t.Errorf("AGENTS holds %d entries after presence and capacity were set, want them there", entries)
	}
}
