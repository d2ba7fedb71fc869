package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/stream"
)

type liveMessage struct {
	ID     string       `json:"id"`
	Author event.Author `json:"author"`
	Text   string       `json:"text"`
	At     time.Time    `json:"at"`
}

type liveEvent struct {
	Type           string       `json:"type"`
	ConversationID string       `json:"conversation_id"`
	Message        *liveMessage `json:"message"`
}

// dial opens a WebSocket as p, with the token in the header or the query.
func (e *env) dial(p auth.Principal, inQuery bool) *websocket.Conn {
	e.t.Helper()
	tok := e.token(p)
	url := "ws" + strings.TrimPrefix(e.base, "http") + "/v1/stream"
	opts := &websocket.DialOptions{}
	if inQuery {
		url += "?access_token=" + tok
	} else {
		opts.HTTPHeader = http.Header{"Authorization": {"Bearer " + tok}}
	}
	return e.dialURL(p, url, opts)
}

// dialURL opens the WebSocket at url as p, closed when the test ends.
func (e *env) dialURL(p auth.Principal, url string, opts *websocket.DialOptions) *websocket.Conn {
	e.t.Helper()
	c, err := e.tryDialURL(url, opts)
	if err != nil {
		e.t.Fatalf("dial stream as %v: %v", p, err)
	}
	return c
}

// tryDialURL is dialURL returning its error instead of failing the test.
func (e *env) tryDialURL(url string, opts *websocket.DialOptions) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		return nil, err
	}
	e.t.Cleanup(func() { c.CloseNow() })
	return c, nil
}

// ensureChatStream creates the CHAT stream, which the tests that publish
// chat events need and the gateway does not create.
func (e *env) ensureChatStream() {
	e.t.Helper()
	if err := stream.Ensure(e.t.Context(), e.js, stream.Options{}, stream.Chat); err != nil {
		e.t.Fatal(err)
	}
}

// publish appends a chat event to the CHAT stream, sealed under the
// visitor's key as the chat service would.
func (e *env) publish(typ event.Type, tenant, visitor, conv string, payload any) event.Envelope {
	e.t.Helper()
	env, err := event.New(e.keys.get(tenant, visitor).Data, typ, tenant, visitor, conv, time.Now(), payload)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.js.PublishMsg(e.t.Context(), env.Msg(stream.ChatSubject(tenant, conv))); err != nil {
		e.t.Fatal(err)
	}
	return env
}

// stamped returns the stamp the chat service would seal into a payload.
func stamped(st event.Stamp) event.Stamped {
	return event.Stamped{Stamp: &st}
}

func (e *env) liveSessions() string {
	r := e.do(http.MethodGet, "/metrics", "", nil)
	for line := range strings.Lines(string(r.body)) {
		if v, ok := strings.CutPrefix(line, "parley_gateway_live_sessions "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func next(t *testing.T, c *websocket.Conn) liveEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read live event: %v", err)
	}
	var ev liveEvent
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatalf("decode live event %s: %v", b, err)
	}
	return ev
}

// expect reads len(want) events from c and compares them, ignoring times.
func expect(t *testing.T, who string, c *websocket.Conn, want ...liveEvent) {
	t.Helper()
	var got []liveEvent
	for range want {
		got = append(got, next(t, c))
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(liveMessage{}, "At")); diff != "" {
		t.Errorf("%s: live events mismatch (-want +got):\n%s", who, diff)
	}
}

func TestStream(t *testing.T) {
	e := startGateway(t)
	e.ensureChatStream()
	if r := e.do(http.MethodPut, "/v1/tenants/acme", e.operator(), []byte(`{"name":"Acme"}`)); r.status != http.StatusCreated {
		t.Fatalf("PUT /v1/tenants/acme = %d", r.status)
	}

	alice := e.dial(auth.Principal{Tenant: "demo", ID: "alice", Role: auth.RoleVisitor}, true)
	bob := e.dial(auth.Principal{Tenant: "demo", ID: "bob", Role: auth.RoleVisitor}, false)
	agent := e.dial(auth.Principal{Tenant: "demo", ID: "a1", Role: auth.RoleAgent}, false)
	super := e.dial(auth.Principal{Tenant: "demo", ID: "s1", Role: auth.RoleSupervisor}, false)
	acme := e.dial(auth.Principal{Tenant: "acme", ID: "s9", Role: auth.RoleAdmin}, false)
	natstest.Until(t, 5*time.Second, "5 live sessions", func() bool { return e.liveSessions() == "5" })

	start := time.Now()
	opened := e.publish(event.ConversationOpened, "demo", "alice", "c1", event.Opened{Visitor: "alice", Text: "hello, I need help"})
	c1Opened := []liveEvent{
		{Type: "opened", ConversationID: "c1"},
		{Type: "message", ConversationID: "c1", Message: &liveMessage{ID: opened.ID, Author: event.Author{Role: "visitor", ID: "alice"}, Text: "hello, I need help"}},
	}
	expect(t, "alice", alice, c1Opened...)
	if d := time.Since(start); d > time.Second {
		t.Errorf("first live event took %v, want well under 1s", d)
	}
	expect(t, "agent", agent, c1Opened...)
	expect(t, "supervisor", super, c1Opened...)

	// Assigned to another agent: a1 sees the assignment, then no more.
	// Routed by the stamps chat seals into the events, as it would.
	toA2 := stamped(event.Stamp{Assignee: "a2"})
	e.publish(event.ConversationAssigned, "demo", "alice", "c1", event.Assigned{Stamped: toA2, Agent: "a2", By: event.Author{Role: "supervisor", ID: "s1"}})
	posted := e.publish(event.MessagePosted, "demo", "alice", "c1", event.Posted{Stamped: toA2, Author: event.Author{Role: "agent", ID: "a2"}, Text: "how can I help?"})
	c1Posted := liveEvent{Type: "message", ConversationID: "c1", Message: &liveMessage{ID: posted.ID, Author: event.Author{Role: "agent", ID: "a2"}, Text: "how can I help?"}}
	expect(t, "alice", alice, liveEvent{Type: "assigned", ConversationID: "c1"}, c1Posted)
	expect(t, "supervisor", super, liveEvent{Type: "assigned", ConversationID: "c1"}, c1Posted)
	expect(t, "agent", agent, liveEvent{Type: "assigned", ConversationID: "c1"})

	// A message stored before stamps, of a conversation opened before the
	// gateway started: the hub cannot place it, so its visitor sees it and
	// a1 does not, whoever it is assigned to.
	old := e.publish(event.MessagePosted, "demo", "bob", "old", event.Posted{Author: event.Author{Role: "visitor", ID: "bob"}, Text: "still there?"})
	// Bob's new conversation: Bob, a1 (unassigned) and the supervisor see
	// it; Alice does not. Being the next event each of them reads proves
	// nothing else reached them in between.
	bobs := e.publish(event.ConversationOpened, "demo", "bob", "c2", event.Opened{Visitor: "bob", Text: "hi"})
	c2Opened := []liveEvent{
		{Type: "opened", ConversationID: "c2"},
		{Type: "message", ConversationID: "c2", Message: &liveMessage{ID: bobs.ID, Author: event.Author{Role: "visitor", ID: "bob"}, Text: "hi"}},
	}
	expect(t, "agent", agent, c2Opened...)
	bobOld := liveEvent{Type: "message", ConversationID: "old", Message: &liveMessage{ID: old.ID, Author: event.Author{Role: "visitor", ID: "bob"}, Text: "still there?"}}
	expect(t, "bob", bob, append([]liveEvent{bobOld}, c2Opened...)...)

	e.publish(event.ConversationClosed, "demo", "alice", "c1", event.Closed{Stamped: toA2, By: event.Author{Role: "visitor", ID: "alice"}})
	expect(t, "alice", alice, liveEvent{Type: "closed", ConversationID: "c1"})

	// Another tenant's admin saw none of it.
	e.publish(event.ConversationOpened, "acme", "zed", "c3", event.Opened{Visitor: "zed", Text: "acme here"})
	ev := next(t, acme)
	if ev.ConversationID != "c3" {
		t.Errorf("acme admin got an event of %s, want only c3", ev.ConversationID)
	}

	// Erasing Alice closes her session.
	data, _ := json.Marshal(personkey.Erased{Tenant: "demo", Person: "alice"})
	if err := e.nc.Publish(personkey.ErasedSubject, data); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := alice.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusPolicyViolation {
		t.Errorf("alice's session after erasure: read error %v (status %v), want close %v", err, got, websocket.StatusPolicyViolation)
	}
	natstest.Until(t, 5*time.Second, "4 live sessions", func() bool { return e.liveSessions() == "4" })
}

// TestStreamShowsOnlyStoredEvents publishes to a conversation's subject
// what the chat service's bus user can but the CHAT stream does not store:
// an append refused for a stale expected-last-subject-sequence (chat lost a
// race, say a post against a close, and may then reject the command
// altogether) and a retried append the stream drops as a duplicate. A live
// session must see neither: only what the stream stored, once.
func TestStreamShowsOnlyStoredEvents(t *testing.T) {
	e := startGateway(t)
	e.ensureChatStream()
	alice := e.dial(auth.Principal{Tenant: "demo", ID: "alice", Role: auth.RoleVisitor}, false)
	super := e.dial(auth.Principal{Tenant: "demo", ID: "s1", Role: auth.RoleSupervisor}, false)
	natstest.Until(t, 5*time.Second, "2 live sessions", func() bool { return e.liveSessions() == "2" })

	post := func(text string) event.Envelope {
		t.Helper()
		env, err := event.New(e.keys.get("demo", "alice").Data, event.MessagePosted, "demo", "alice", "c1", time.Now(),
			event.Posted{Author: event.Author{Role: "visitor", ID: "alice"}, Text: text})
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	subject := stream.ChatSubject("demo", "c1")
	opened := e.publish(event.ConversationOpened, "demo", "alice", "c1", event.Opened{Visitor: "alice", Text: "hello"})

	// Appended as if the conversation were still empty: refused.
	refused := post("never stored")
	if _, err := e.js.PublishMsg(t.Context(), refused.Msg(subject), jetstream.WithExpectLastSequencePerSubject(0)); err == nil {
		t.Fatal("append with a stale expected-last-subject-sequence was stored, want it refused")
	}
	// Stored once, then retried with the same id: the retry is dropped.
	stored := post("stored once")
	for range 2 {
		if _, err := e.js.PublishMsg(t.Context(), stored.Msg(subject)); err != nil {
			t.Fatal(err)
		}
	}
	last := post("last")
	if _, err := e.js.PublishMsg(t.Context(), last.Msg(subject), jetstream.WithExpectLastSequencePerSubject(2)); err != nil {
		t.Fatal(err)
	}

	message := func(env event.Envelope, text string) liveEvent {
		return liveEvent{Type: "message", ConversationID: "c1", Message: &liveMessage{ID: env.ID, Author: event.Author{Role: "visitor", ID: "alice"}, Text: text}}
	}
	// Events of one conversation arrive in order: the stored ones in
	// sequence, and anything else before the last one.
	want := []liveEvent{
		{Type: "opened", ConversationID: "c1"},
		message(opened, "hello"),
		message(stored, "stored once"),
		message(last, "last"),
	}
	expect(t, "alice", alice, want...)
	expect(t, "supervisor", super, want...)
}
