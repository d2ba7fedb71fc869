package main

import (
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/stream"
)

// ephemeralTenant sets the demo tenant's settings and returns once the chat
// service opens conversations under them. The retention, which shows in
// the TTL of every stored event, tells when chat has the settings: the
// erasure delay arrives in the same value.
func ephemeralTenant(t *testing.T, a *allInOne, nc *nats.Conn, chatStream jetstream.Stream, s privacyapi.Settings) {
	t.Helper()
	putSettings(t, nc, "demo", s)
	_, probe := newVisitor(t, a.URL(), "demo")
	want := s.Retention().String()
	natstest.Until(t, 10*time.Second, "chat appending with the retention "+want, func() bool {
		conv := mustCall(t, a.URL(), "POST", "/v1/conversations", probe, map[string]any{"text": "settings probe"}, http.StatusCreated)["id"].(string)
		m, err := chatStream.GetLastMsgForSubject(t.Context(), stream.ChatSubject("demo", conv))
		return err == nil && m.Header.Get(jetstream.MsgTTLHeader) == want
	})
}

// conversationGone reports why the conversation is not erased yet, nil once
// it is: nothing of it in CHAT, 404 for staff, not in the visitor's list.
func conversationGone(t *testing.T, base string, chatStream jetstream.Stream, supervisor, visitor, conv string) error {
	t.Helper()
	if _, err := chatStream.GetLastMsgForSubject(t.Context(), stream.ChatSubject("demo", conv)); !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("CHAT still holds conversation %s: err = %v", conv, err)
	}
	if status, _ := call(t, base, "GET", "/v1/conversations/"+conv+"/messages", supervisor, nil); status != http.StatusNotFound {
		return fmt.Errorf("supervisor GET messages of %s = %d, want 404", conv, status)
	}
	if listed(t, base, supervisor, conv) {
		return fmt.Errorf("conversation %s still in the supervisor's list", conv)
	}
	// The visitor may be erased meanwhile (410), when nothing of theirs
	// is left: one answer tells either.
	if status, list := call(t, base, "GET", "/v1/conversations", visitor, nil); status == http.StatusOK && holds(list, conv) {
		return fmt.Errorf("conversation %s still in the visitor's list", conv)
	}
	return nil
}

// listed reports whether conv is in token's conversation list.
func listed(t *testing.T, base, token, conv string) bool {
	t.Helper()
	return holds(mustCall(t, base, "GET", "/v1/conversations", token, nil, http.StatusOK), conv)
}

// holds reports whether the conversation list answered holds conv.
func holds(list map[string]any, conv string) bool {
	for _, c := range list["conversations"].([]any) {
		if c.(map[string]any)["id"] == conv {
			return true
		}
	}
	return false
}

// eventIDs returns the ids (Nats-Msg-Id) of the conversation's events in
// CHAT, in clear in the store files.
func eventIDs(t *testing.T, chatStream jetstream.Stream, conv string) []string {
	t.Helper()
	var ids []string
	for seq := uint64(1); ; {
		m, err := chatStream.GetMsg(t.Context(), seq, jetstream.WithGetMsgSubject(stream.ChatSubject("demo", conv)))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return ids
		}
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
		seq = m.Sequence + 1
	}
}

// TestConversationsErasedAfterClose shows the erasure of conversations a
// set time after they close, by a message scheduled in the store: the
// conversation goes from CHAT (secure-deleted) and the API, its visitor
// with it when nothing else of theirs is left, and nothing happens to
// conversations not closed, to visitors with another conversation, or
// before a visitor's own longer delay. A restart between the close and the
// erasure does not lose it.
func TestConversationsErasedAfterClose(t *testing.T) {
	dir := t.TempDir()
	a, logs := testAll(t, dir)
	// Each service runs as its own bus user: what the erasure needs must be
	// in pkg/buspolicy.
	checkBus(t, logs)
	base := a.URL()
	nc, js := adminConn(t, a)
	chatStream, err := js.Stream(t.Context(), stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	supervisor := staffToken(t, dir, "demo", "supervisor", "sue")
	auditor := staffToken(t, dir, "demo", "auditor", "otto")
	agent := staffToken(t, dir, "demo", "agent", "alice")

	ephemeralTenant(t, a, nc, chatStream, privacyapi.Settings{RetentionDays: 30, EraseAfterCloseSeconds: 2})
	open := func(token, text string, body map[string]any) string {
		t.Helper()
		if body == nil {
			body = map[string]any{}
		}
		body["text"] = text
		return mustCall(t, base, "POST", "/v1/conversations", token, body, http.StatusCreated)["id"].(string)
	}
	closeConv := func(token, conv string) {
		t.Helper()
		mustCall(t, base, "POST", "/v1/conversations/"+conv+"/close", token, nil, http.StatusOK)
	}

	// alone: one conversation, closed; erased with the visitor.
	aloneID, alone := newVisitor(t, base, "demo")
	aloneConv := open(alone, "please forget this", nil)
	mustCall(t, base, "POST", "/v1/conversations/"+aloneConv+"/messages", agent, map[string]any{"text": "forgotten soon"}, http.StatusCreated)
	aloneIDs := eventIDs(t, chatStream, aloneConv)
	closeConv(alone, aloneConv)
	// busy: two conversations, one closed; only that one is erased.
	_, busy := newVisitor(t, base, "demo")
	busyClosed := open(busy, "first question", nil)
	busyOpen := open(busy, "second question", nil)
	closeConv(busy, busyClosed)
	// patient: chose an hour, which the tenant's default does not shorten.
	_, patient := newVisitor(t, base, "demo")
	patientConv := open(patient, "keep it an hour", map[string]any{"erase_after_close_hours": 1})
	closedAt := time.Now()
	closeConv(patient, patientConv)
	// lingering: never closed, never erased by the delay.
	_, lingering := newVisitor(t, base, "demo")
	lingeringConv := open(lingering, "still here", nil)

	natstest.Eventually(t, 20*time.Second, "the lone and the busy visitors' closed conversations erased", func() error {
		if err := conversationGone(t, base, chatStream, supervisor, alone, aloneConv); err != nil {
			return err
		}
		return conversationGone(t, base, chatStream, supervisor, busy, busyClosed)
	})
	natstest.Until(t, 10*time.Second, "the lone visitor erased", func() bool {
		status, _ := call(t, base, "GET", "/v1/me/export", alone, nil)
		return status == http.StatusGone
	})
	mustCall(t, base, "GET", "/v1/me/export", busy, nil, http.StatusOK)
	for _, c := range []struct{ token, conv string }{{busy, busyOpen}, {patient, patientConv}, {lingering, lingeringConv}} {
		if status, texts := messageTexts(t, base, c.token, c.conv); status != http.StatusOK || len(texts) != 1 {
			t.Errorf("conversation %s reads %d %v, want 200 and its message", c.conv, status, texts)
		}
	}

	// The visitor's hour is in the store, as a schedule.
	schedules, err := js.Stream(t.Context(), stream.Schedules)
	if err != nil {
		t.Fatal(err)
	}
	sched, err := schedules.GetLastMsgForSubject(t.Context(), "schedule.erase-conversation.demo."+patientConv)
	if err != nil {
		t.Fatalf("schedule of %s: %v", patientConv, err)
	}
	at, err := time.Parse(time.RFC3339, strings.TrimPrefix(sched.Header.Get(jetstream.ScheduleHeader), "@at "))
	if err != nil || at.Before(closedAt.Add(time.Hour-time.Second)) || at.After(time.Now().Add(time.Hour+time.Second)) {
		t.Errorf("schedule of %s at %q (%v), want an hour after %v", patientConv, sched.Header.Get(jetstream.ScheduleHeader), err, closedAt)
	}
	if body := string(sched.Data); strings.Contains(body, "keep it an hour") {
		t.Errorf("schedule body %q holds message text", body)
	}

	// Audited, by the system.
	entries := mustCall(t, base, "GET", "/v1/audit", auditor, nil, http.StatusOK)["entries"].([]any)
	var audited []string
	for _, e := range entries {
		e := e.(map[string]any)
		if e["actor"].(map[string]any)["role"] == "system" {
			audited = append(audited, e["action"].(string)+" "+e["target"].(string))
		}
	}
	for _, want := range []string{"conversation.erase conversation:" + aloneConv, "conversation.erase conversation:" + busyClosed, "erase subject:" + aloneID} {
		found := false
		for _, got := range audited {
			found = found || got == want
		}
		if !found {
			t.Errorf("audit trail by the system = %v, want %q", audited, want)
		}
	}

	// A restart between the close and the erasure: the schedule is in the
	// store and fires after.
	ephemeralTenant(t, a, nc, chatStream, privacyapi.Settings{RetentionDays: 31, EraseAfterCloseSeconds: 5})
	_, restarted := newVisitor(t, base, "demo")
	restartedConv := open(restarted, "across a restart", nil)
	restartedClosedAt := time.Now()
	closeConv(restarted, restartedConv)
	natstest.Until(t, 5*time.Second, "the closed conversation's erasure scheduled", func() bool {
		_, err := schedules.GetLastMsgForSubject(t.Context(), "schedule.erase-conversation.demo."+restartedConv)
		return err == nil
	})
	keptIDs := eventIDs(t, chatStream, restartedConv)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	chatDirs, err := filepath.Glob(filepath.Join(dir, "nats", "*", "*", "streams", stream.Chat))
	if err != nil || len(chatDirs) != 1 {
		t.Fatalf("CHAT store directory: %v %v", chatDirs, err)
	}
	// The scan finds the ids of a conversation whose erasure is still to
	// come: the ids it looks for are in the files in clear until erased.
	if hits := storeContains(t, chatDirs[0], keptIDs...); len(hits) != len(keptIDs) {
		t.Fatalf("CHAT store files hold %d of the %d ids of a conversation not erased yet: the scan would not see them", len(hits), len(keptIDs))
	}
	if hits := storeContains(t, chatDirs[0], aloneIDs...); len(hits) > 0 {
		t.Errorf("CHAT store files hold ids of the erased conversation's events: %v", hits)
	}
	a, logs = testAll(t, dir)
	checkBus(t, logs)
	base = a.URL()
	_, js = adminConn(t, a)
	if chatStream, err = js.Stream(t.Context(), stream.Chat); err != nil {
		t.Fatal(err)
	}
	// Unless this machine took the whole delay to stop and start, the
	// erasure is still to come: it must come from the store.
	if time.Since(restartedClosedAt) < 4*time.Second {
		if _, err := chatStream.GetLastMsgForSubject(t.Context(), stream.ChatSubject("demo", restartedConv)); err != nil {
			t.Errorf("conversation %s erased before its time: %v", restartedConv, err)
		}
	}
	natstest.Until(t, 20*time.Second, "the conversation closed before the restart erased", func() bool {
		return conversationGone(t, base, chatStream, supervisor, restarted, restartedConv) == nil
	})
	natstest.Until(t, 10*time.Second, "its visitor erased", func() bool {
		status, _ := call(t, base, "GET", "/v1/me/export", restarted, nil)
		return status == http.StatusGone
	})
	if status, texts := messageTexts(t, base, lingering, lingeringConv); status != http.StatusOK || len(texts) != 1 {
		t.Errorf("after restart the conversation never closed reads %d %v, want 200 and its message", status, texts)
	}
}
