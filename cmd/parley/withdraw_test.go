package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
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
	sc := startVisitorScene(t)
	sessions := []*liveClient{openStream(t, sc.base, sc.visitor), openStream(t, sc.base, sc.alice)}

	secret := marker(t)
	conv := mustCall(t, sc.base, "POST", "/v1/conversations", sc.visitor, map[string]any{"text": "hello"}, http.StatusCreated)["id"].(string)
	msgs := "/v1/conversations/" + conv + "/messages"
	posted := mustCall(t, sc.base, "POST", msgs, sc.visitor, map[string]any{"text": secret}, http.StatusCreated)
	reply := mustCall(t, sc.base, "POST", msgs, sc.alice, map[string]any{"text": "noted"}, http.StatusCreated)
	id := posted["id"].(string)

	chat, err := sc.js.Stream(t.Context(), stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := chat.GetMsg(t.Context(), uint64(posted["seq"].(float64)))
	if err != nil {
		t.Fatal(err)
	}
	sealed := string(stored.Data)
	if hits := storeContains(t, sc.dir, sealed); len(hits) == 0 {
		t.Fatal("the posting's sealed envelope is in no store file before its withdrawal: the test would prove nothing")
	}

	opening := mustCall(t, sc.base, "GET", msgs, sc.visitor, nil, http.StatusOK)["messages"].([]any)[0].(map[string]any)["id"].(string)
	mustCall(t, sc.base, "DELETE", msgs+"/"+id, sc.alice, nil, http.StatusForbidden)
	mustCall(t, sc.base, "DELETE", msgs+"/"+reply["id"].(string), sc.visitor, nil, http.StatusForbidden)
	mustCall(t, sc.base, "DELETE", msgs+"/no-such-message", sc.visitor, nil, http.StatusNotFound)
	for range 2 {
		mustCall(t, sc.base, "DELETE", msgs+"/"+id, sc.visitor, nil, http.StatusNoContent)
		mustCall(t, sc.base, "DELETE", msgs+"/"+opening, sc.visitor, nil, http.StatusNoContent)
	}

	for _, lc := range sessions {
		natstest.Until(t, liveWithin, "the withdrawals at every session", func() bool { return lc.withdrawn(id) && lc.withdrawn(opening) })
	}
	readsWithdrawn := func(at string) {
		t.Helper()
		for _, token := range []string{sc.visitor, sc.alice} {
			lines := mustCall(t, at, "GET", msgs, token, nil, http.StatusOK)["messages"].([]any)
			if len(lines) != 3 {
				t.Fatalf("transcript = %v, want the opening, the reply and the withdrawn line", lines)
			}
			for _, l := range []struct {
				at int
				id string
			}{{0, opening}, {2, id}} {
				w := lines[l.at].(map[string]any)
				if w["id"] != l.id || w["withdrawn"] != true || w["text"] != nil || w["author"].(map[string]any)["id"] != sc.visitorID {
					t.Errorf("withdrawn line = %v, want message %s by %s withdrawn, text null", w, l.id, sc.visitorID)
				}
			}
		}
		doc := mustCall(t, at, "GET", "/v1/me/export", sc.visitor, nil, http.StatusOK)
		if got := texts(t, doc["conversations"].([]any)[0].(map[string]any)["messages"]); len(got) != 3 || got[0] != "<nil>" || got[2] != "<nil>" {
			t.Errorf("exported texts = %v, want the withdrawn ones null", got)
		}
	}
	readsWithdrawn(sc.base)
	if hits := storeContains(t, sc.dir, secret, sealed); len(hits) > 0 {
		t.Errorf("the withdrawn message is still stored: %v", hits)
	}
	if strings.Contains(sc.logs.String(), secret) {
		t.Error("the withdrawn text is in the logs")
	}

	if err := sc.all.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := testAll(t, sc.dir)
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
