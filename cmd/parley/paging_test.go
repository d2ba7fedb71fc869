package main

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/chatapi"
)

// TestPagedReadsEndToEnd reads, through the HTTP API of the whole product, a
// transcript far larger than a NATS message (1 MiB) and a supervisor's inbox
// of more conversations than a page holds: the chat service answers both
// over the bus in pages, and the gateway joins them into one response, as
// if there were none.
func TestPagedReadsEndToEnd(t *testing.T) {
	dir := t.TempDir()
	a, _ := testAll(t, dir)
	base := a.URL()
	_, visitor := newVisitor(t, base, "demo")
	agent := staffToken(t, dir, "demo", "agent", "alice")
	supervisor := staffToken(t, dir, "demo", "supervisor", "sue")
	auditor := staffToken(t, dir, "demo", "auditor", "aud")

	// 20 messages of 60 KiB, the visitor's and the agent's in turn, every
	// fourth one markup, whose '<', '>' and '&' JSON sends as six bytes
	// each: about 1.8 MiB of transcript on the wire.
	var conv string
	var want []string
	for i := range 20 {
		filler := "plain text "
		if i%4 == 1 {
			filler = "<p>a&b</p> "
		}
		text := marker(t) + " " + strings.Repeat(filler, 60<<10/len(filler))
		text = text[:60<<10]
		want = append(want, text)
		switch {
		case i == 0:
			conv = mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": text}, http.StatusCreated)["id"].(string)
		case i%2 == 1:
			mustCall(t, base, "POST", "/v1/conversations/"+conv+"/messages", agent, map[string]any{"text": text}, http.StatusCreated)
		default:
			mustCall(t, base, "POST", "/v1/conversations/"+conv+"/messages", visitor, map[string]any{"text": text}, http.StatusCreated)
		}
	}
	for _, tok := range []string{visitor, supervisor} {
		msgs := mustCall(t, base, "GET", "/v1/conversations/"+conv+"/messages", tok, nil, http.StatusOK)["messages"].([]any)
		var got []string
		for _, m := range msgs {
			m := m.(map[string]any)
			text, _ := m["text"].(string)
			got = append(got, text)
			if m["erased"] != false || m["id"] == nil || m["at"] == nil || m["author"] == nil {
				t.Errorf("message %v lacks a field or reads erased", m["id"])
			}
		}
		if len(got) != len(want) || !slices.Equal(got, want) {
			t.Errorf("transcript has %d messages, want the %d posted, in order and whole", len(got), len(want))
		}
	}
	// However many pages it took, the supervisor's read is audited once.
	entries := mustCall(t, base, "GET", "/v1/audit", auditor, nil, http.StatusOK)["entries"].([]any)
	var reads []string
	for _, e := range entries {
		e := e.(map[string]any)
		if e["action"] == audit.ActionTranscriptRead {
			reads = append(reads, e["actor"].(map[string]any)["id"].(string)+" "+e["target"].(string))
		}
	}
	if diff := cmp.Diff([]string{"sue conversation:" + conv}, reads); diff != "" {
		t.Errorf("transcript reads audited mismatch (-want +got):\n%s", diff)
	}

	// More conversations than a page holds, opened by several visitors so
	// that none of them runs into the rate limit, under a tenant that lets
	// a visitor keep 90 open.
	admin := staffToken(t, dir, "demo", "admin", "ada")
	mustCall(t, base, "PUT", "/v1/settings", admin, map[string]any{
		"retention_days": 365, "collect_network_data": false, "open_conversations_per_visitor": 90,
	}, http.StatusOK)
	ids := []string{conv}
	for len(ids) <= chatapi.PageItems+10 {
		_, v := newVisitor(t, base, "demo")
		for range 90 {
			ids = append(ids, mustCall(t, base, "POST", "/v1/conversations", v, map[string]any{"text": "hello"}, http.StatusCreated)["id"].(string))
		}
	}
	convs := mustCall(t, base, "GET", "/v1/conversations", supervisor, nil, http.StatusOK)["conversations"].([]any)
	type listed struct {
		id   string
		last time.Time
	}
	var got []listed
	for _, c := range convs {
		c := c.(map[string]any)
		last, err := time.Parse(time.RFC3339Nano, c["last_message_at"].(string))
		if err != nil {
			t.Fatalf("last_message_at of %v: %v", c["id"], err)
		}
		got = append(got, listed{c["id"].(string), last})
	}
	gotIDs := make([]string, len(got))
	for i, c := range got {
		gotIDs[i] = c.id
	}
	if diff := cmp.Diff(ids, gotIDs, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("supervisor's conversations mismatch (-want +got):\n%s", diff)
	}
	newestFirst := slices.IsSortedFunc(got, func(a, b listed) int {
		if c := b.last.Compare(a.last); c != 0 {
			return c
		}
		return strings.Compare(b.id, a.id)
	})
	if !newestFirst {
		t.Error("supervisor's conversations are not newest activity first")
	}
}
