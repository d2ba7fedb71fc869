package chat_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/natsembed"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/stream"
)

// visitorFields are the JSON fields of a conversation's state that come from
// what its events seal under the visitor's key: none may be in a view entry
// in the clear.
var visitorFields = []string{`"score"`, `"opening_withdrawn"`, `"erase_after_close_ns"`}

// rawView returns the bytes CHAT_VIEW holds under key.
func rawView(t *testing.T, s *natsembed.Server, key string) ([]byte, error) {
	t.Helper()
	_, js := natstest.Connect(t, s)
	kv, err := js.KeyValue(t.Context(), stream.ChatViewBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(t.Context(), key)
	if err != nil {
		return nil, fmt.Errorf("view key %s: %w", key, err)
	}
	return e.Value(), nil
}

// clearVisitorData returns an error naming the first of visitorFields raw
// holds.
func clearVisitorData(raw []byte) error {
	for _, f := range visitorFields {
		if bytes.Contains(raw, []byte(f)) {
			return fmt.Errorf("view entry holds %s in the clear: %s", f, raw)
		}
	}
	return nil
}

// closedKey is the view key of the visitor's closed conversation.
func closedKey(tenant, visitor, conv string) string {
	return tenant + ".closed." + visitor + "." + conv
}

// TestViewSealsVisitorData rates a closed conversation whose visitor chose
// when it is erased and withdrew its opening message: its view entry holds
// none of the three in the clear, and an instance that reads it from the
// view shows them all the same.
func TestViewSealsVisitorData(t *testing.T) {
	s, _ := startKeyed(t, visitor.ID)
	first := startChat(t, s)
	c := newClient(t, s)
	_, js := natstest.Connect(t, s)

	var opened chatapi.OpenResult
	c.must(visitor, chatapi.OpenSubject, chatapi.OpenArgs{Text: "withdraw me", EraseAfterCloseHours: ptr(48)}, &opened)
	conv := opened.ID
	c.post(agent, conv, "assigned")
	opening := c.messages(visitor, conv)[0].ID
	c.must(visitor, chatapi.WithdrawSubject, chatapi.WithdrawArgs{Conversation: conv, Message: opening}, nil)
	c.must(visitor, chatapi.CloseSubject, chatapi.ConversationArgs{Conversation: conv}, nil)
	c.must(visitor, chatapi.RateSubject, chatapi.RateArgs{Conversation: conv, Score: 4}, nil)
	viewSettled(t, s, js, conv)

	raw, err := rawView(t, s, closedKey(tenant, visitor.ID, conv))
	if err != nil {
		t.Fatal(err)
	}
	if err := clearVisitorData(raw); err != nil {
		t.Error(err)
	}
	if err := first.stop(); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}

	// Read from the view: a new instance holds no closed conversation.
	startChat(t, s)
	var got chatapi.Summary
	c.must(supervisor, chatapi.GetSubject, chatapi.ConversationArgs{Conversation: conv}, &got)
	if got.Rating == nil || *got.Rating != 4 || got.Assignee == nil || *got.Assignee != agent.ID {
		t.Errorf("Get() from the view = rating %v, assignee %v; want 4, %s", got.Rating, got.Assignee, agent.ID)
	}
	if m := c.messages(visitor, conv); !m[0].Withdrawn {
		t.Errorf("Messages()[0] from the view = %+v, want withdrawn", m[0])
	}
}

// TestErasureReachesEntriesNotHeld erases a visitor while the instance
// running holds none of their conversations, as after a restart or an
// eviction: their closed, rated entry is rewritten erased, with nothing
// sealed under their key and no score, while another visitor's stays
// readable.
func TestErasureReachesEntriesNotHeld(t *testing.T) {
	s, ks := startKeyed(t, visitor.ID, visitor2.ID)
	first := startChat(t, s)
	c := newClient(t, s)
	_, js := natstest.Connect(t, s)

	conv := c.open(visitor, "rate me, then erase me")
	c.post(agent, conv, "assigned")
	kept := c.open(visitor2, "keep me")
	for _, cv := range []struct {
		conv  string
		score int
	}{{conv, 5}, {kept, 3}} {
		p := visitor
		if cv.conv == kept {
			p = visitor2
		}
		c.must(p, chatapi.CloseSubject, chatapi.ConversationArgs{Conversation: cv.conv}, nil)
		c.must(p, chatapi.RateSubject, chatapi.RateArgs{Conversation: cv.conv, Score: cv.score}, nil)
	}
	viewSettled(t, s, js, conv, kept)
	if err := first.stop(); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}

	in := startChat(t, s)
	ks.erase(tenant, visitor.ID)
	in.keys.Evict(personkey.Erased{Tenant: tenant, Person: visitor.ID})
	natstest.Eventually(t, 10*time.Second, "the erased visitor's entry rewritten", func() error {
		raw, err := rawView(t, s, closedKey(tenant, visitor.ID, conv))
		if err != nil {
			return err
		}
		var e struct {
			Sealed   []byte `json:"sealed"`
			Assignee []byte `json:"assignee"`
			State    struct {
				Conv struct {
					Erased bool `json:"erased"`
				} `json:"conv"`
			} `json:"state"`
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatal(err)
		}
		if e.Sealed != nil || e.Assignee != nil || !e.State.Conv.Erased {
			return fmt.Errorf("view entry of the erased visitor = %s, want erased, nothing sealed", raw)
		}
		return clearVisitorData(raw)
	})
	ratedAs(t, c, kept, 3, "Get(another visitor's) after the erasure")
}

// TestViewOldFormatRewrittenAtStart starts the chat service on a view an
// older version wrote, the rating's score in the clear: the start rewrites
// the entry with the score sealed, and the conversation still reads rated.
func TestViewOldFormatRewrittenAtStart(t *testing.T) {
	s, _ := startKeyed(t, visitor.ID)
	first := startChat(t, s)
	c := newClient(t, s)
	_, js := natstest.Connect(t, s)
	conv := c.open(visitor, "rate me")
	c.must(visitor, chatapi.CloseSubject, chatapi.ConversationArgs{Conversation: conv}, nil)
	c.must(visitor, chatapi.RateSubject, chatapi.RateArgs{Conversation: conv, Score: 4}, nil)
	viewSettled(t, s, js, conv)
	if err := first.stop(); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}

	// The entry as layout 2 wrote it: the state whole in the clear.
	kv, err := js.KeyValue(t.Context(), stream.ChatViewBucket)
	if err != nil {
		t.Fatal(err)
	}
	key := closedKey(tenant, visitor.ID, conv)
	raw, err := rawView(t, s, key)
	if err != nil {
		t.Fatal(err)
	}
	var e map[string]any
	if err := json.Unmarshal(raw, &e); err != nil {
		t.Fatal(err)
	}
	delete(e, "sealed")
	st := e["state"].(map[string]any)["conv"].(map[string]any)
	st["rated"], st["score"] = true, 4
	old, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string][]byte{key: old, "layout": []byte("2")} {
		if _, err := kv.Put(t.Context(), k, v); err != nil {
			t.Fatal(err)
		}
	}

	startChat(t, s)
	natstest.Eventually(t, 10*time.Second, "the old entry rewritten sealed", func() error {
		raw, err := rawView(t, s, key)
		if err != nil {
			return err
		}
		if !bytes.Contains(raw, []byte(`"sealed"`)) {
			return fmt.Errorf("view entry %s holds no sealed part", raw)
		}
		return clearVisitorData(raw)
	})
	ratedAs(t, c, conv, 4, "Get() after the upgrade")
}

// ratedAs checks, as a supervisor reads it, that conversation conv is
// rated want; what names the read in the error.
func ratedAs(t *testing.T, c client, conv string, want int, what string) {
	t.Helper()
	var got chatapi.Summary
	c.must(supervisor, chatapi.GetSubject, chatapi.ConversationArgs{Conversation: conv}, &got)
	if got.Rating == nil || *got.Rating != want {
		t.Errorf("%s = rating %v, want %d", what, got.Rating, want)
	}
}
