package main

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/chatapi"
)

// pages reads a paged call from path with ?limit=, following next_cursor
// until it is null, and returns the items of field in the order the pages
// gave them, and the number of pages.
func pages(t *testing.T, base, path, token, field string, limit int) ([]map[string]any, int) {
	t.Helper()
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	var items []map[string]any
	for n := 1; ; n++ {
		pg := mustCall(t, base, "GET", path+"?"+q.Encode(), token, nil, http.StatusOK)
		for _, it := range pg[field].([]any) {
			items = append(items, it.(map[string]any))
		}
		next, ok := pg["next_cursor"]
		if !ok {
			t.Fatalf("GET %s: no next_cursor in the page", path)
		}
		if next == nil {
			return items, n
		}
		q.Set("cursor", next.(string))
	}
}

// TestPagedReadsEndToEnd reads, through the HTTP API of the whole product, a
// transcript far larger than a NATS message (1 MiB) and a supervisor's inbox
// of more conversations than a page holds, a page at a time: each comes
// whole, in order, once, a staff member's read of each page audited; a
// cursor reads nothing but the list it came from; and the export of the
// transcript, in many pages on the bus, is one valid document.
func TestPagedReadsEndToEnd(t *testing.T) {
	dir := t.TempDir()
	a, _ := testAll(t, dir)
	base := a.URL()
	_, visitor := newVisitor(t, base, "demo")
	agent := staffToken(t, dir, "demo", "agent", "alice")
	supervisor := staffToken(t, dir, "demo", "supervisor", "sue")
	auditor := staffToken(t, dir, "demo", "auditor", "aud")
	operator := staffToken(t, dir, "*", "operator", "ops")
	mustCall(t, base, "PUT", "/v1/tenants/acme", operator, map[string]any{"name": "Acme"}, http.StatusCreated)
	foreigner := staffToken(t, dir, "acme", "supervisor", "mallory")

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
	staffPages := 0
	for _, tok := range []string{visitor, supervisor} {
		// 8 a page at most; the page's 256 KiB bound makes them smaller.
		msgs, n := pages(t, base, "/v1/conversations/"+conv+"/messages", tok, "messages", 8)
		if tok == supervisor {
			staffPages = n
		}
		var got []string
		for _, m := range msgs {
			text, _ := m["text"].(string)
			got = append(got, text)
			if m["erased"] != false || m["id"] == nil || m["at"] == nil || m["author"] == nil {
				t.Errorf("message %v lacks a field or reads erased", m["id"])
			}
		}
		if n < 3 || !slices.Equal(got, want) {
			t.Errorf("transcript read in %d pages has %d messages, want the %d posted, in order, whole, in more than 2 pages", n, len(got), len(want))
		}
	}
	// Each page the supervisor read is audited.
	entries := mustCall(t, base, "GET", "/v1/audit", auditor, nil, http.StatusOK)["entries"].([]any)
	var reads []string
	for _, e := range entries {
		e := e.(map[string]any)
		if e["action"] == audit.ActionTranscriptRead {
			reads = append(reads, e["actor"].(map[string]any)["id"].(string)+" "+e["target"].(string))
		}
	}
	if diff := cmp.Diff(slices.Repeat([]string{"sue conversation:" + conv}, staffPages), reads); diff != "" {
		t.Errorf("transcript reads audited mismatch (-want +got):\n%s", diff)
	}

	// The export of the same history, many pages on the bus, is one
	// document holding all of it.
	doc := mustCall(t, base, "GET", "/v1/me/export", visitor, nil, http.StatusOK)
	convs := doc["conversations"].([]any)
	if len(convs) != 1 || convs[0].(map[string]any)["id"] != conv {
		t.Fatalf("exported conversations = %d, want only %s", len(convs), conv)
	}
	var exported []string
	for _, m := range convs[0].(map[string]any)["messages"].([]any) {
		exported = append(exported, m.(map[string]any)["text"].(string))
	}
	if !slices.Equal(exported, want) {
		t.Errorf("export holds %d messages, want the %d posted, in order and whole", len(exported), len(want))
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
	listed, n := pages(t, base, "/v1/conversations", supervisor, "conversations", 200)
	var gotIDs []string
	for _, c := range listed {
		gotIDs = append(gotIDs, c["id"].(string))
	}
	// Newest conversation first: ids are time-ordered.
	slices.Sort(ids)
	slices.Reverse(ids)
	if diff := cmp.Diff(ids, gotIDs); n != 3 || diff != "" {
		t.Errorf("supervisor's conversations in %d pages, want 3; mismatch (-want +got):\n%s", n, diff)
	}

	// A cursor continues only the list it came from.
	first := mustCall(t, base, "GET", "/v1/conversations/"+conv+"/messages?limit=1", supervisor, nil, http.StatusOK)
	cursor := first["next_cursor"].(string)
	for _, c := range []struct {
		name, path, token string
	}{
		{"another conversation", "/v1/conversations/" + ids[0] + "/messages?cursor=" + cursor, supervisor},
		{"another tenant", "/v1/conversations/" + conv + "/messages?cursor=" + cursor, foreigner},
		{"the list", "/v1/conversations?cursor=" + cursor, supervisor},
	} {
		if status, body := call(t, base, "GET", c.path, c.token, nil); status != http.StatusBadRequest {
			t.Errorf("transcript cursor on %s = %d %v, want 400", c.name, status, body)
		}
	}
	mustCall(t, base, "GET", "/v1/conversations/"+conv+"/messages", foreigner, nil, http.StatusNotFound)
	if list := mustCall(t, base, "GET", "/v1/conversations", foreigner, nil, http.StatusOK)["conversations"].([]any); len(list) != 0 {
		t.Errorf("another tenant lists %d conversations, want none", len(list))
	}
}
