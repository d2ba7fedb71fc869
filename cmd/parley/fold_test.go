package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata")

// received returns how many events lc received.
func (lc *liveClient) received() int {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return len(lc.events)
}

func (lc *liveClient) isClosed() bool {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.closed != ""
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
// posting, a reassignment, a message withdrawn, closed, rated — and the
// erasure of its visitor, and compares which session got which live event
// and which facts the relay wrote with testdata/fold-golden.json, recorded
// from the version that folded conversations in the gateway and the relay
// and extended, deliberately, with the withdrawal: it reaches whoever saw
// the message, and the relay writes no fact of it. Run with -update to
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
	sessions := map[string]*liveClient{
		"visitor":   openStream(t, base, visitor),
		"bystander": openStream(t, base, bystander),
		"alice":     openStream(t, base, alice),
		"bob":       openStream(t, base, bob),
		"carol":     openStream(t, base, staffToken(t, dir, "demo", "agent", "carol")),
		"sue":       openStream(t, base, sue),
		"ada":       openStream(t, base, staffToken(t, dir, "demo", "admin", "ada")),
		"anna":      openStream(t, base, staffToken(t, dir, "demo", "analyst", "anna")),
	}
	// Each step waits until the supervisor, who sees every event, received
	// seen events in all: the live events of one step are then routed
	// before the next is stored.
	step := func(token, method, path string, body map[string]any, want, seen int) map[string]any {
		t.Helper()
		out := mustCall(t, base, method, path, token, body, want)
		natstest.Until(t, liveWithin, fmt.Sprintf("sue seeing %d events", seen), func() bool { return sessions["sue"].received() >= seen })
		return out
	}
	conv := step(visitor, "POST", "/v1/conversations", map[string]any{"text": "hello, I need help"}, http.StatusCreated, 2)["id"].(string)
	msgs := "/v1/conversations/" + conv + "/messages"
	step(visitor, "POST", msgs, map[string]any{"text": "are you there?"}, http.StatusCreated, 3)
	step(alice, "POST", msgs, map[string]any{"text": "alice here, taking it"}, http.StatusCreated, 5)
	step(sue, "POST", "/v1/conversations/"+conv+"/assign", map[string]any{"agent_id": "bob"}, http.StatusOK, 6)
	step(bob, "POST", msgs, map[string]any{"text": "bob now, " + strings.Repeat("long answer ", 30)}, http.StatusCreated, 7)
	oops := step(visitor, "POST", msgs, map[string]any{"text": "oops, wrong window"}, http.StatusCreated, 8)["id"].(string)
	// The message's fact is stored before it is withdrawn, so that the
	// relay's facts do not depend on which came first: a withdrawal leaves
	// a counted message counted, and is no fact itself.
	natstest.Until(t, liveWithin, "7 facts on ANALYTICS", func() bool { return len(readAnalytics(t, js)) >= 7 })
	mustCall(t, base, "DELETE", msgs+"/"+oops, visitor, nil, http.StatusNoContent)
	natstest.Until(t, liveWithin, "sue seeing 9 events", func() bool { return sessions["sue"].received() >= 9 })
	step(visitor, "POST", msgs, map[string]any{"text": "thanks"}, http.StatusCreated, 10)
	step(bob, "POST", "/v1/conversations/"+conv+"/close", map[string]any{}, http.StatusOK, 11)
	step(visitor, "POST", "/v1/conversations/"+conv+"/rating", map[string]any{"score": 4}, http.StatusOK, 12)

	// Every fact of the conversation is stored before its visitor goes:
	// opened, six messages, first_response, closed and rated.
	natstest.Until(t, liveWithin, "10 facts on ANALYTICS", func() bool { return len(readAnalytics(t, js)) >= 10 })
	mustCall(t, base, "DELETE", "/v1/me", visitor, nil, http.StatusAccepted)
	natstest.Until(t, liveWithin, "the visitor's session closed", func() bool { return sessions["visitor"].isClosed() })
	// A last conversation, which every session but the visitor's and the
	// analyst's sees, ends what the others are sent.
	end := mustCall(t, base, "POST", "/v1/conversations", bystander, map[string]any{"text": "the end"}, http.StatusCreated)["id"].(string)
	for _, who := range []string{"bystander", "alice", "bob", "carol", "sue", "ada"} {
		natstest.Until(t, liveWithin, who+" seeing the last conversation", func() bool { return sessions[who].has("the end") })
	}
	natstest.Until(t, liveWithin, "13 facts on ANALYTICS", func() bool { return len(readAnalytics(t, js)) >= 13 })

	names := map[string]string{visitorID: "visitor", bystanderID: "bystander", conv: "C1", end: "C2"}
	got := golden{Deliveries: make(map[string][]string), Closed: make(map[string]string)}
	for who, lc := range sessions {
		lc.mu.Lock()
		for _, e := range lc.events {
			got.Deliveries[who] = append(got.Deliveries[who], describeEvent(t, e, names))
		}
		got.Closed[who] = lc.closed
		lc.mu.Unlock()
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

// describeEvent writes a live event with its ids as names has them.
func describeEvent(t *testing.T, e liveEvent, names map[string]string) string {
	t.Helper()
	if e.Type == "erased" {
		// A notice to staff, not a stored event: it has no seq.
		return "erased visitor " + names[e.Visitor]
	}
	if e.Seq == 0 {
		t.Errorf("live event %+v has no seq", e)
	}
	s := e.Type + " " + names[e.ConversationID]
	if e.Type == "message" || e.Type == "withdrawn" {
		m := e.Message
		who := m.Author.ID
		if n, ok := names[who]; ok {
			who = n
		}
		s += fmt.Sprintf(" %s/%s: %.20s", m.Author.Role, who, m.Text)
	}
	return s
}

// analyticsRecord is a fact on ANALYTICS, or an erasure request.
type analyticsRecord struct {
	kind string
	fact analyticsapi.Fact
}

// readAnalytics returns what ANALYTICS holds, in stream order: the facts,
// each once, and the erasure requests.
func readAnalytics(t *testing.T, js jetstream.JetStream) []analyticsRecord {
	t.Helper()
	var out []analyticsRecord
	seen := make(map[string]analyticsapi.Fact)
	for _, m := range streamMsgs(t, js, stream.Analytics) {
		var fs []analyticsapi.Fact
		var err error
		switch {
		case strings.HasSuffix(m.Subject, "."+analyticsapi.KindErasure):
			out = append(out, analyticsRecord{kind: analyticsapi.KindErasure})
			continue
		case strings.HasSuffix(m.Subject, "."+analyticsapi.KindFacts):
			err = json.Unmarshal(m.Data, &fs)
		default: // one fact a message, as older versions wrote them
			fs = make([]analyticsapi.Fact, 1)
			err = json.Unmarshal(m.Data, &fs[0])
		}
		if err != nil {
			t.Fatalf("facts on %s: %v", m.Subject, err)
		}
		for _, f := range fs {
			// A batch relayed again in another grouping stores its facts
			// again (docs/analytics.md): the same fact, counted once.
			if first, ok := seen[f.ID]; ok {
				if !reflect.DeepEqual(first, f) {
					t.Errorf("fact %s stored twice, differently: %+v and %+v", f.ID, first, f)
				}
				continue
			}
			seen[f.ID] = f
			out = append(out, analyticsRecord{kind: f.Kind, fact: f})
		}
	}
	return out
}

// streamMsgs returns every message the stream name holds, in order. It
// reads by sequence: a cluster's admin may read messages, not make
// consumers.
func streamMsgs(t *testing.T, js jetstream.JetStream, name string) []*jetstream.RawStreamMsg {
	t.Helper()
	s, err := js.Stream(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	st := s.CachedInfo().State
	var out []*jetstream.RawStreamMsg
	for seq := st.FirstSeq; st.Msgs > 0 && seq <= st.LastSeq; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("read %s: %v", name, err)
		}
		out = append(out, m)
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
