package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/stream"
)

// TestLiveAfterUpgrade starts `parley all` on a data dir whose CHAT stream
// a version before live delivery followed the republished events defined:
// without the republish, which parley all applies at start, no live
// session would get anything. Each message comes once.
func TestLiveAfterUpgrade(t *testing.T) {
	dir := t.TempDir()
	inStore(t, dir, func(js jetstream.JetStream) {
		old, err := stream.Config(stream.Chat, stream.Options{})
		if err != nil {
			t.Fatal(err)
		}
		old.RePublish = nil
		if _, err := js.CreateStream(t.Context(), old); err != nil {
			t.Fatal(err)
		}
	})

	a, logs := testAll(t, dir)
	if !strings.Contains(logs.String(), `"msg":"applied this version's definition","kind":"stream","name":"CHAT"`) {
		t.Errorf("parley all did not log the update of CHAT; logs:\n%s", logs.String())
	}
	base := a.URL()
	_, visitor := newVisitor(t, base, "demo")
	agent := openStream(t, base, staffToken(t, dir, "demo", "agent", "alice"))
	hello, again := marker(t), marker(t)
	conv := mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": hello}, http.StatusCreated)["id"].(string)
	mustCall(t, base, "POST", "/v1/conversations/"+conv+"/messages", visitor, map[string]any{"text": again}, http.StatusCreated)
	agent.waitMessage(t, again, liveWithin)
	if n := agent.count(hello); n != 1 {
		t.Errorf("the agent's live session got the first message %d times, want 1", n)
	}
}

// count returns how many live message events with text lc received.
func (lc *liveClient) count(text string) int {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	n := 0
	for _, e := range lc.events {
		if e.Type == "message" && e.Message.Text == text {
			n++
		}
	}
	return n
}
