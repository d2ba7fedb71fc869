package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/stream"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata")

// frameLog is a /v1/stream session recording every frame it receives, and
// how the server closed it.
type frameLog struct {
	mu     sync.Mutex
	frames []json.RawMessage
	closed string
}

func record(t *testing.T, base, token string) *frameLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/v1/stream", &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + token}},
	})
	if err != nil {
		cancel()
		t.Fatalf("dial stream: %v", err)
	}
	fl := &frameLog{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			_, data, err := conn.Read(ctx)
			fl.mu.Lock()
			if err != nil {
				fl.closed = fmt.Sprintf("%d %s", websocket.CloseStatus(err), closeReason(err))
				fl.mu.Unlock()
				return
			}
			fl.frames = append(fl.frames, data)
			fl.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		conn.CloseNow()
		<-done
	})
	return fl
}

func closeReason(err error) string {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Reason
	}
	return ""
}

// has reports whether a frame holds s.
func (fl *frameLog) has(s string) bool {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	for _, f := range fl.frames {
		if strings.Contains(string(f), s) {
			return true
		}
	}
	return false
}

func (fl *frameLog) isClosed() bool {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fl.closed != ""
}

// aliases names ids in the order they are first met, so that a golden file
// holds no random id and still tells which facts share one.
type aliases struct {
	prefix string
	names  map[string]string
}

func (a *aliases) of(id string) string {
	if id == "" {
		return ""
	}
	if a.names == nil {
		a.names = make(map[string]string)
	}
	if n, ok := a.names[id]; ok {
		return n
	}
	n := fmt.Sprintf("%s%d", a.prefix, len(a.names)+1)
	a.names[id] = n
	return n
}

// TestDeliveriesAndFactsGolden runs a conversation through every chat event
// type — opened, a visitor's and an agent's message, an assignment taken by
// posting, a reassignment, closed, rated — and the erasure of its visitor,
// and compares which session got which live event and which facts the relay
// wrote with testdata/fold-golden.json, recorded from the version that
// folded conversations in the gateway and the relay. Run with -update to
// rewrite it.
func TestDeliveriesAndFactsGolden(t *testing.T) {
	dir := t.TempDir()
	a, _ := testAll(t, dir)
	base := a.URL()
	_, js := adminConn(t, a)

	visitorID, visitor := newVisitor(t, base, "demo")
	bystanderID, bystander := newVisitor(t, base, "demo")
	alice := staffToken(t, dir, "demo", "agent", "alice")
	bob := staffToken(t, dir, "demo", "agent", "bob")
	sue := staffToken(t, dir, "demo", "supervisor", "sue")
	sessions := map[string]*frameLog{
		"visitor":   record(t, base, visitor),
		"bystander": record(t, base, bystander),
		"alice":     record(t, base, alice),
		"bob":       record(t, base, bob),
		"carol":     record(t, base, staffToken(t, dir, "demo", "agent", "carol")),
		"sue":       record(t, base, sue),
		"ada":       record(t, base, staffToken(t, dir, "demo", "admin", "ada")),
		"anna":      record(t, base, staffToken(t, dir, "demo", "analyst", "anna")),
	}
	// Each step waits until the supervisor, who sees every event, saw it:
	// the live events of one step are then routed before the next is stored.
	step := func(token, method, path string, body map[string]any, want int, seen string) map[string]any {
		t.Helper()
		out := mustCall(t, base, method, path, token, body, want)
		eventually(t, liveWithin, func() bool { return sessions["sue"].has(seen) })
		return out
	}
	conv := step(visitor, "POST", "/v1/conversations", map[string]any{"text": "hello, I need help"}, http.StatusCreated, "hello, I need help")["id"].(string)
	msgs := "/v1/conversations/" + conv + "/messages"
	step(visitor, "POST", msgs, map[string]any{"text": "are you there?"}, http.StatusCreated, "are you there?")
	step(alice, "POST", msgs, map[string]any{"text": "alice here, taking it"}, http.StatusCreated, "alice here, taking it")
	step(sue, "POST", "/v1/conversations/"+conv+"/assign", map[string]any{"agent_id": "bob"}, http.StatusOK, `"type":"assigned"`)
	step(bob, "POST", msgs, map[string]any{"text": "bob now, " + strings.Repeat("long answer ", 30)}, http.StatusCreated, "bob now")
	step(visitor, "POST", msgs, map[string]any{"text": "thanks"}, http.StatusCreated, "thanks")
	step(bob, "POST", "/v1/conversations/"+conv+"/close", map[string]any{}, http.StatusOK, `"type":"closed"`)
	step(visitor, "POST", "/v1/conversations/"+conv+"/rating", map[string]any{"score": 4}, http.StatusOK, `"type":"rated"`)

	// Every fact of the conversation is stored before its visitor goes:
	// opened, five messages, first_response, closed and rated.
	eventually(t, liveWithin, func() bool { return len(readAnalytics(t, js)) >= 9 })
	mustCall(t, base, "DELETE", "/v1/me", visitor, nil, http.StatusAccepted)
	eventually(t, liveWithin, func() bool { return sessions["visitor"].isClosed() })
	// A last conversation, which every session but the visitor's and the
	// analyst's sees, ends what the others are sent.
	end := mustCall(t, base, "POST", "/v1/conversations", bystander, map[string]any{"text": "the end"}, http.StatusCreated)["id"].(string)
	for _, who := range []string{"bystander", "alice", "bob", "carol", "sue", "ada"} {
		eventually(t, liveWithin, func() bool { return sessions[who].has("the end") })
	}
	eventually(t, liveWithin, func() bool { return len(readAnalytics(t, js)) >= 12 })

	names := map[string]string{visitorID: "visitor", bystanderID: "bystander", conv: "C1", end: "C2"}
	got := golden{Deliveries: make(map[string][]string), Closed: make(map[string]string)}
	for who, fl := range sessions {
		fl.mu.Lock()
		for _, f := range fl.frames {
			got.Deliveries[who] = append(got.Deliveries[who], describeFrame(t, f, names))
		}
		got.Closed[who] = fl.closed
		fl.mu.Unlock()
	}
	got.Facts = describeFacts(readAnalytics(t, js))

	path := filepath.Join("testdata", "fold-golden.json")
	if *updateGolden {
		b, err := json.MarshalIndent(got, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want golden
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("deliveries and facts differ from %s (-want +got):\n%s", path, diff)
	}
}

// golden is what TestDeliveriesAndFactsGolden compares: each session's
// live events, how the server closed each session ("" when it did not),
// and the relay's facts in the order of ANALYTICS.
type golden struct {
	Deliveries map[string][]string `json:"deliveries"`
	Closed     map[string]string   `json:"closed"`
	Facts      []string            `json:"facts"`
}

// describeFrame writes a live event with its ids as names has them.
func describeFrame(t *testing.T, f json.RawMessage, names map[string]string) string {
	t.Helper()
	var ev struct {
		Type           string `json:"type"`
		Seq            uint64 `json:"seq"`
		ConversationID string `json:"conversation_id"`
		Message        *struct {
			Author struct{ Role, ID string } `json:"author"`
			Text   string                    `json:"text"`
		} `json:"message"`
	}
	if err := json.Unmarshal(f, &ev); err != nil {
		t.Fatalf("decode live event %s: %v", f, err)
	}
	if ev.Seq == 0 {
		t.Errorf("live event %s has no seq", f)
	}
	s := ev.Type + " " + names[ev.ConversationID]
	if m := ev.Message; m != nil {
		who := m.Author.ID
		if n, ok := names[who]; ok {
			who = n
		}
		s += fmt.Sprintf(" %s/%s: %.20s", m.Author.Role, who, m.Text)
	}
	return s
}

// analyticsRecord is one message on ANALYTICS: a fact, or an erasure.
type analyticsRecord struct {
	kind string
	fact analyticsapi.Fact
}

func readAnalytics(t *testing.T, js jetstream.JetStream) []analyticsRecord {
	t.Helper()
	s, err := js.Stream(t.Context(), stream.Analytics)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(t.Context(), stream.Analytics, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []analyticsRecord
	for range info.State.Msgs {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(m.Subject(), "."+analyticsapi.KindErasure) {
			out = append(out, analyticsRecord{kind: analyticsapi.KindErasure})
			continue
		}
		var f analyticsapi.Fact
		if err := json.Unmarshal(m.Data(), &f); err != nil {
			t.Fatal(err)
		}
		out = append(out, analyticsRecord{kind: f.Kind, fact: f})
	}
	return out
}

// describeFacts writes each fact with its pseudonyms as aliases, and a
// duration as "since opened" when it is the time from its conversation's
// opened fact to it, as it should be.
func describeFacts(rs []analyticsRecord) []string {
	convs, visitors, agents := &aliases{prefix: "C"}, &aliases{prefix: "V"}, &aliases{prefix: "A"}
	opened := make(map[string]time.Time)
	var out []string
	for _, r := range rs {
		if r.kind == analyticsapi.KindErasure {
			out = append(out, r.kind)
			continue
		}
		f := r.fact
		if f.Kind == analyticsapi.KindOpened {
			opened[f.Conversation] = f.At
		}
		s := fmt.Sprintf("%s %s %s", f.Kind, convs.of(f.Conversation), visitors.of(f.Visitor))
		if f.Agent != "" {
			s += " agent=" + agents.of(f.Agent)
		}
		if f.Role != "" {
			s += " role=" + f.Role
		}
		if f.Length != "" {
			s += " length=" + f.Length
		}
		switch {
		case f.Value == 0:
		case (f.Kind == analyticsapi.KindFirstResponse || f.Kind == analyticsapi.KindClosed) &&
			math.Abs(f.Value-f.At.Sub(opened[f.Conversation]).Seconds()) < 1e-6:
			s += " value=since-opened"
		default:
			s += fmt.Sprintf(" value=%g", f.Value)
		}
		out = append(out, s)
	}
	return out
}
