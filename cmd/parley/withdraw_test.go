package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/parley-chat/parley/pkg/stream"
)

// TestWithdrawEndToEnd attacks the withdrawal guarantee: a visitor
// withdraws a message; both sides are told live, the transcript and the
// export read it withdrawn, and neither its text nor its sealed envelope is
// left in any store file. Staff may not withdraw it; withdrawing again
// answers the same. The opening message is withdrawn alike, its event kept
// (the conversation is folded from it), and reads withdrawn also after a
// restart.
func TestWithdrawEndToEnd(t *testing.T) {
	dir := t.TempDir()
	a, logs := testAll(t, dir)
	base := a.URL()
	_, js := adminConn(t, a)
	visitorID, visitor := newVisitor(t, base, "demo")
	alice := staffToken(t, dir, "demo", "agent", "alice")
	sessions := []*liveClient{openStream(t, base, visitor), openStream(t, base, alice)}

	secret := marker(t)
	conv := mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": "hello"}, http.StatusCreated)["id"].(string)
	msgs := "/v1/conversations/" + conv + "/messages"
	posted := mustCall(t, base, "POST", msgs, visitor, map[string]any{"text": secret}, http.StatusCreated)
	reply := mustCall(t, base, "POST", msgs, alice, map[string]any{"text": "noted"}, http.StatusCreated)
	id := posted["id"].(string)

	chat, err := js.Stream(t.Context(), stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := chat.GetMsg(t.Context(), uint64(posted["seq"].(float64)))
	if err != nil {
		t.Fatal(err)
	}
	sealed := string(stored.Data)
	if hits := storeContains(t, dir, sealed); len(hits) == 0 {
		t.Fatal("the posting's sealed envelope is in no store file before its withdrawal: the test would prove nothing")
	}

	opening := mustCall(t, base, "GET", msgs, visitor, nil, http.StatusOK)["messages"].([]any)[0].(map[string]any)["id"].(string)
	mustCall(t, base, "DELETE", msgs+"/"+id, alice, nil, http.StatusForbidden)
	mustCall(t, base, "DELETE", msgs+"/"+reply["id"].(string), visitor, nil, http.StatusForbidden)
	mustCall(t, base, "DELETE", msgs+"/no-such-message", visitor, nil, http.StatusNotFound)
	for range 2 {
		mustCall(t, base, "DELETE", msgs+"/"+id, visitor, nil, http.StatusNoContent)
		mustCall(t, base, "DELETE", msgs+"/"+opening, visitor, nil, http.StatusNoContent)
	}

	for _, lc := range sessions {
		eventually(t, liveWithin, func() bool { return lc.withdrawn(id) && lc.withdrawn(opening) })
	}
	readsWithdrawn := func(base string) {
		t.Helper()
		for _, token := range []string{visitor, alice} {
			lines := mustCall(t, base, "GET", msgs, token, nil, http.StatusOK)["messages"].([]any)
			if len(lines) != 3 {
				t.Fatalf("transcript = %v, want the opening, the reply and the withdrawn line", lines)
			}
			for _, l := range []struct {
				at int
				id string
			}{{0, opening}, {2, id}} {
				w := lines[l.at].(map[string]any)
				if w["id"] != l.id || w["withdrawn"] != true || w["text"] != nil || w["author"].(map[string]any)["id"] != visitorID {
					t.Errorf("withdrawn line = %v, want message %s by %s withdrawn, text null", w, l.id, visitorID)
				}
			}
		}
		doc := mustCall(t, base, "GET", "/v1/me/export", visitor, nil, http.StatusOK)
		if got := texts(t, doc["conversations"].([]any)[0].(map[string]any)["messages"]); len(got) != 3 || got[0] != "<nil>" || got[2] != "<nil>" {
			t.Errorf("exported texts = %v, want the withdrawn ones null", got)
		}
	}
	readsWithdrawn(base)
	if hits := storeContains(t, dir, secret, sealed); len(hits) > 0 {
		t.Errorf("the withdrawn message is still stored: %v", hits)
	}
	if strings.Contains(logs.String(), secret) {
		t.Error("the withdrawn text is in the logs")
	}

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := testAll(t, dir)
	readsWithdrawn(b.URL())
}

// withdrawn reports whether lc was told live that message id was withdrawn.
func (lc *liveClient) withdrawn(id string) bool {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for _, e := range lc.events {
		if e.Type == "withdrawn" && e.Message.ID == id {
			return true
		}
	}
	return false
}
