package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/services/gateway/internal/live"
)

// seqEvent is a live event as a resuming client keeps it.
type seqEvent struct {
	Type           string       `json:"type"`
	Seq            uint64       `json:"seq"`
	ConversationID string       `json:"conversation_id"`
	Message        *liveMessage `json:"message"`
}

func (e seqEvent) String() string {
	s := fmt.Sprintf("%d %s %s", e.Seq, e.Type, e.ConversationID)
	if e.Message != nil {
		s += " " + e.Message.Text
	}
	return s
}

// dialSince opens a WebSocket as p resuming after since ("": not resuming).
func (e *env) dialSince(p auth.Principal, since string) *websocket.Conn {
	e.t.Helper()
	return e.dialURL(p, e.streamURL(p, since), nil)
}

// streamURL is the URL of p's live stream, with the token in the query,
// resuming after since ("": not resuming).
func (e *env) streamURL(p auth.Principal, since string) string {
	url := "ws" + strings.TrimPrefix(e.base, "http") + "/v1/stream?access_token=" + e.token(p)
	if since != "" {
		url += "&since=" + since
	}
	return url
}

// read reads n events from c.
func read(t *testing.T, c *websocket.Conn, n int) []string {
	t.Helper()
	var out []string
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, b, err := c.Read(ctx)
		cancel()
		if err != nil {
			t.Fatalf("read live event %d of %d: %v", len(out)+1, n, err)
		}
		var ev seqEvent
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev.String())
	}
	return out
}

// quiet checks that c receives nothing more for a moment: what a resume
// must not send twice would arrive right after what it sent.
func quiet(t *testing.T, who string, c *websocket.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, b, err := c.Read(ctx); err == nil {
		t.Errorf("%s: unexpected event %s", who, b)
	}
}

func TestStreamResumesAfterADisconnect(t *testing.T) {
	e := startGateway(t)
	e.ensureChatStream()
	// c2 is assigned to a2 before anyone connects; the others are not, as
	// the stamps of their events say.
	assignees := map[string]string{"c2": "a2"}
	alice := auth.Principal{Tenant: "demo", ID: "alice", Role: auth.RoleVisitor}
	agent := auth.Principal{Tenant: "demo", ID: "a1", Role: auth.RoleAgent}
	super := auth.Principal{Tenant: "demo", ID: "s1", Role: auth.RoleSupervisor}
	post := func(visitor, conv, text string) {
		e.publish(event.MessagePosted, "demo", visitor, conv, event.Posted{Stamped: stamped(event.Stamp{Assignee: assignees[conv]}), Author: event.Author{Role: "visitor", ID: visitor}, Text: text})
	}

	// The hub may still be handling an event stored before a session
	// came, and then delivers it live: a supervisor's session there from
	// the start (registered once its dial returns) tells when the hub is
	// done with seq 1 and 2.
	probe := e.dialSince(auth.Principal{Tenant: "demo", ID: "s0", Role: auth.RoleSupervisor}, "")
	e.publish(event.ConversationOpened, "demo", "alice", "c1", event.Opened{Visitor: "alice", Text: "hello"})                              // seq 1
	e.publish(event.ConversationAssigned, "demo", "bob", "c2", event.Assigned{Stamped: stamped(event.Stamp{Assignee: "a2"}), Agent: "a2"}) // seq 2
	for seq := ""; seq != "2"; {
		seq = strings.Fields(read(t, probe, 1)[0])[0]
	}
	probe.Close(websocket.StatusNormalClosure, "")
	natstest.Until(t, 5*time.Second, "the probe gone", func() bool { return e.liveSessions() == "0" })
	conns := map[string]*websocket.Conn{"alice": e.dialSince(alice, ""), "agent": e.dialSince(agent, ""), "super": e.dialSince(super, "")}
	natstest.Until(t, 5*time.Second, "3 live sessions", func() bool { return e.liveSessions() == "3" })
	post("alice", "c1", "before")                                                                                       // seq 3
	e.publish(event.ConversationOpened, "demo", "zed", "acme-side", event.Opened{Visitor: "zed", Text: "other tenant"}) // seq 4, demo's too
	last := map[string]string{}
	for who, c := range conns {
		want := map[string]int{"alice": 1, "agent": 3, "super": 3}[who]
		got := read(t, c, want)
		last[who] = strings.Fields(got[len(got)-1])[0]
		c.Close(websocket.StatusNormalClosure, "")
	}
	natstest.Until(t, 5*time.Second, "no live sessions", func() bool { return e.liveSessions() == "0" })

	// Missed while away: Alice's, Bob's in c2 (a2's) and another tenant's.
	post("alice", "c1", "missed 1") // seq 5
	post("bob", "c2", "not for a1") // seq 6
	e.publish(event.ConversationOpened, "acme", "zed", "x1", event.Opened{Visitor: "zed", Text: "acme"})
	post("alice", "c1", "missed 2") // seq 8

	want := map[string][]string{
		"alice": {"5 message c1 missed 1", "8 message c1 missed 2", "9 message c1 live"},
		"agent": {"5 message c1 missed 1", "8 message c1 missed 2", "9 message c1 live"},
		"super": {"5 message c1 missed 1", "6 message c2 not for a1", "8 message c1 missed 2", "9 message c1 live"},
	}
	for who, p := range map[string]auth.Principal{"alice": alice, "agent": agent, "super": super} {
		conns[who] = e.dialSince(p, last[who])
	}
	post("alice", "c1", "live") // seq 9, during or after the replays
	for who, c := range conns {
		if diff := cmp.Diff(want[who], read(t, c, len(want[who]))); diff != "" {
			t.Errorf("%s resuming after %s (-want +got):\n%s", who, last[who], diff)
		}
		quiet(t, who, c)
	}
}

func TestStreamTooFarBehindResyncs(t *testing.T) {
	e := startGateway(t)
	e.ensureChatStream()
	for i := range live.MaxReplay + 1 {
		e.publish(event.ConversationClosed, "demo", "alice", fmt.Sprintf("c%d", i), event.Closed{})
	}
	c := e.dialSince(auth.Principal{Tenant: "demo", ID: "s1", Role: auth.RoleSupervisor}, "0")
	if diff := cmp.Diff([]string{"0 resync "}, read(t, c, 1)); diff != "" {
		t.Errorf("resuming too far behind (-want +got):\n%s", diff)
	}
	e.publish(event.ConversationClosed, "demo", "alice", "c0", event.Closed{})
	// Events stored before the session came may still be on their way
	// through the hub: they come live, after the resync, before the new one.
	want := fmt.Sprintf("%d closed c0", live.MaxReplay+2)
	for {
		got := read(t, c, 1)[0]
		if got == want {
			break
		}
		var seq int
		if _, err := fmt.Sscan(got, &seq); err != nil || seq > live.MaxReplay+1 {
			t.Fatalf("live after the resync: %q, want events stored before it, then %q", got, want)
		}
	}

	for _, since := range []string{"-1", "x", "1.5"} {
		r := e.do(http.MethodGet, "/v1/stream?since="+since, e.token(auth.Principal{Tenant: "demo", ID: "s1", Role: auth.RoleSupervisor}), nil)
		if r.status != http.StatusBadRequest || r.contentType != "application/problem+json" {
			t.Errorf("GET /v1/stream?since=%s = %d %s, want 400 problem", since, r.status, r.contentType)
		}
	}
}
