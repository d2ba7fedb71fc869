package main

import (
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"
)

// typed sends a typing signal for conv on lc's WebSocket.
func (lc *liveClient) typed(t *testing.T, conv string) {
	t.Helper()
	b, err := json.Marshal(map[string]string{"type": "typing", "conversation_id": conv})
	if err != nil {
		t.Fatal(err)
	}
	if err := lc.conn.Write(t.Context(), websocket.MessageText, b); err != nil {
		t.Fatalf("send typing: %v", err)
	}
}

// typing counts the typing events lc received for conv from the author
// of role and id.
func (lc *liveClient) typing(conv, role, id string) int {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	n := 0
	for _, e := range lc.events {
		if e.Type == "typing" && e.ConversationID == conv && e.Author.Role == role && e.Author.ID == id {
			n++
		}
	}
	return n
}

// streamHoldings returns, for every stream, how many messages it holds and
// its last sequence, and fails t when any stream holds a message on a
// typing subject.
func streamHoldings(t *testing.T, js jetstream.JetStream) map[string][2]uint64 {
	t.Helper()
	out := map[string][2]uint64{}
	names := js.StreamNames(t.Context())
	for name := range names.Name() {
		st, err := js.Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(t.Context(), jetstream.WithSubjectFilter(chatapi.TypingSignals))
		if err != nil {
			t.Fatal(err)
		}
		if len(info.State.Subjects) > 0 {
			t.Errorf("stream %s holds typing signals: %v", name, info.State.Subjects)
		}
		out[name] = [2]uint64{info.State.Msgs, info.State.LastSeq}
	}
	if err := names.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		t.Fatal(err)
	}
	return out
}

// TestTypingReachesTheOtherSideAndIsNotStored types on real WebSockets
// through `parley all`: each side's typing reaches the other side of the
// conversation — its visitor, the agents who see its messages, supervisors
// — and not the typist's own sessions nor anyone else, within the session's
// rate limit; a typist who may not post there is not relayed. Afterwards
// no stream holds anything of it: no stream has a typing subject, no
// stream gained a message while only typing happened, and the typist's id,
// used nowhere else, is in no file of the store.
func TestTypingReachesTheOtherSideAndIsNotStored(t *testing.T) {
	dir := t.TempDir()
	a, logs := testAll(t, dir)
	checkBus(t, logs)
	base := a.URL()
	_, js := adminConn(t, a)
	visitorID, visitor := newVisitor(t, base, "demo")
	_, stranger := newVisitor(t, base, "demo")
	// The typist's id is a marker: it opens its live stream, which the
	// audit trail records, and types, nothing else, so it would be in the
	// store outside AUDIT only if a typing signal were.
	typistID := strings.TrimPrefix(strings.ToLower(marker(t)), "marker-")
	typist := staffToken(t, dir, "demo", "agent", typistID)
	alice := staffToken(t, dir, "demo", "agent", "alice")
	supervisor := staffToken(t, dir, "demo", "supervisor", "sue")

	conv := mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": "hello"}, http.StatusCreated)["id"].(string)
	visitorLive, visitorTab := openStream(t, base, visitor), openStream(t, base, visitor)
	typistLive := openStream(t, base, typist)
	aliceLive := openStream(t, base, alice)
	supervisorLive := openStream(t, base, supervisor)
	strangerLive := openStream(t, base, stranger)

	// Let what the opening wrote settle — its fact relayed to ANALYTICS,
	// the chat view flushed (a second after) — so that what follows is
	// typing alone.
	var before map[string][2]uint64
	natstest.Until(t, 30*time.Second, "the opening's writes settled", func() bool {
		prev := before
		before = streamHoldings(t, js)
		settled := before[stream.Analytics][0] > 0 && before[stream.BucketStream(stream.ChatViewBucket)][0] > 0
		if !settled || !maps.Equal(prev, before) {
			time.Sleep(1500 * time.Millisecond) // past the view's flush interval
			return false
		}
		return true
	})

	// Unassigned: any agent may answer, so the typist's typing is relayed to
	// the visitor (both tabs) and supervisors; the visitor's to every agent.
	typistLive.typed(t, conv)
	visitorLive.typed(t, conv)
	natstest.Until(t, liveWithin, "the first typing signals relayed", func() bool {
		return visitorLive.typing(conv, "agent", typistID) == 1 && visitorTab.typing(conv, "agent", typistID) == 1 &&
			supervisorLive.typing(conv, "agent", typistID) == 1 && aliceLive.typing(conv, "agent", typistID) == 1 &&
			typistLive.typing(conv, "visitor", visitorID) == 1 && aliceLive.typing(conv, "visitor", visitorID) == 1 &&
			supervisorLive.typing(conv, "visitor", visitorID) == 1 && visitorTab.typing(conv, "visitor", visitorID) == 0
	})
	if n := typistLive.typing(conv, "agent", typistID) + visitorLive.typing(conv, "visitor", visitorID); n != 0 {
		t.Errorf("the typists' own sessions got %d of their typing signals, want 0", n)
	}
	strangerLive.mu.Lock()
	if n := len(strangerLive.events); n != 0 {
		t.Errorf("another visitor got %d events, want 0", n)
	}
	strangerLive.mu.Unlock()

	// A burst beyond the session's limit (5, the first signal included,
	// then one a second) is cut.
	start := time.Now()
	for range 20 {
		visitorLive.typed(t, conv)
	}
	natstest.Until(t, liveWithin, "5 signals of the visitor's burst at the typist", func() bool { return typistLive.typing(conv, "visitor", visitorID) >= 5 })
	// Signals sent after the burst reach the typist in order: one that
	// passes the limit a while later shows every earlier one arrived.
	natstest.Until(t, liveWithin, "a signal past the limit at the typist", func() bool {
		visitorLive.typed(t, conv)
		time.Sleep(200 * time.Millisecond) // paces the signals, five a second, past the limit: load, not synchronisation
		return typistLive.typing(conv, "visitor", visitorID) > 5
	})
	if got, most := typistLive.typing(conv, "visitor", visitorID), 5+int(time.Since(start)/time.Second)+1; got > most {
		t.Errorf("typist got %d typing signals of a burst of 20 and some more over %v, want at most %d", got, time.Since(start), most)
	}

	if after := streamHoldings(t, js); !maps.Equal(before, after) {
		t.Errorf("streams changed while only typing happened:\nbefore %v\nafter  %v", before, after)
	}

	// Once alice answers, the conversation is hers: the typist, now a
	// bystander, may no longer type there, and sees no typing of it.
	mustCall(t, base, "POST", "/v1/conversations/"+conv+"/messages", alice, map[string]any{"text": "alice here"}, http.StatusCreated)
	// The assignment is the last event the typist sees of it.
	natstest.Until(t, liveWithin, "the assignment at the typist", func() bool {
		typistLive.mu.Lock()
		defer typistLive.mu.Unlock()
		return slices.ContainsFunc(typistLive.events, func(e liveEvent) bool { return e.Type == "assigned" && e.ConversationID == conv })
	})
	seen := typistLive.typing(conv, "visitor", visitorID)
	typistLive.typed(t, conv)
	aliceLive.typed(t, conv)
	visitorTab.typed(t, conv) // the other tab spent its allowance above
	natstest.Until(t, liveWithin, "alice's and the visitor's typing relayed", func() bool {
		return visitorLive.typing(conv, "agent", "alice") == 1 && aliceLive.typing(conv, "visitor", visitorID) >= 1 &&
			supervisorLive.typing(conv, "agent", "alice") == 1
	})
	if n := visitorLive.typing(conv, "agent", typistID); n != 1 {
		t.Errorf("visitor got %d typing signals of an agent the conversation is no longer open to, want the 1 from before", n)
	}
	if n := typistLive.typing(conv, "visitor", visitorID); n != seen {
		t.Errorf("a bystander agent got %d typing signals of the visitor, want the %d from before the conversation was taken", n, seen)
	}

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	inAudit := func(hit string) bool {
		return strings.Contains(hit, string(filepath.Separator)+stream.Audit+string(filepath.Separator))
	}
	if hits := slices.DeleteFunc(storeContains(t, dir, typistID), inAudit); len(hits) > 0 {
		t.Errorf("the store holds the typist's id, which only typing signals carried: %v", hits)
	}
	if strings.Contains(logs.String(), typistID) {
		t.Error("the logs hold the typist's id")
	}
}
