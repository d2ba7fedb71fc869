package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
)

// Tests of the privacy guarantees (docs/privacy.md) through the public API, on
// the whole system.

// visitorWith registers a visitor of demo consenting to network_data or
// nothing, and returns the answer (register).
func visitorWith(t *testing.T, base string, networkData bool) map[string]any {
	t.Helper()
	return register(t, base, "demo", map[string]bool{"analytics": false, "network_data": networkData, "ai": false})
}

// texts returns the text of each message of a transcript or export, "<nil>"
// for an erased one.
func texts(t *testing.T, msgs any) []string {
	t.Helper()
	var out []string
	for _, m := range msgs.([]any) {
		switch text := m.(map[string]any)["text"].(type) {
		case string:
			out = append(out, text)
		case nil:
			out = append(out, "<nil>")
		default:
			t.Fatalf("message text = %v, want a string or null", text)
		}
	}
	return out
}

func TestConsentAndExport(t *testing.T) {
	dir := t.TempDir()
	a, _ := testAll(t, dir)
	base := a.URL()
	id, visitor := newVisitor(t, base, "demo")
	agent := staffToken(t, dir, "demo", "agent", "alice")
	admin := staffToken(t, dir, "demo", "admin", "ada")
	auditor := staffToken(t, dir, "demo", "auditor", "aud")

	got := mustCall(t, base, "PUT", "/v1/me/consent", visitor, map[string]bool{"analytics": false, "network_data": false, "ai": true}, http.StatusOK)
	delete(got, "at")
	want := map[string]any{"analytics": false, "network_data": false, "ai": true, "notice_version": "2026-01"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("PUT /v1/me/consent mismatch (-want +got):\n%s", diff)
	}
	mustCall(t, base, "PUT", "/v1/me/consent", visitor, map[string]any{"analytics": true, "network_data": false, "ai": true, "notice_version": "2026-02"}, http.StatusOK)

	question, answer := marker(t), marker(t)
	conv := mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": question}, http.StatusCreated)["id"].(string)
	mustCall(t, base, "POST", "/v1/conversations/"+conv+"/messages", agent, map[string]any{"text": answer}, http.StatusCreated)
	_, other := newVisitor(t, base, "demo")
	mustCall(t, base, "POST", "/v1/conversations", other, map[string]any{"text": "not yours"}, http.StatusCreated)

	since := time.Now().Add(-time.Second).UTC().Format(time.RFC3339)
	for _, tc := range []struct {
		name, path, token string
	}{
		{"the visitor", "/v1/me/export", visitor},
		{"an admin", "/v1/subjects/" + id + "/export", admin},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := mustCall(t, base, "GET", tc.path, tc.token, nil, http.StatusOK)
			if s := doc["subject"].(map[string]any); s["id"] != id || s["tenant"] != "demo" {
				t.Errorf("export subject = %v, want demo/%s", s, id)
			}
			var consents []string
			for _, c := range doc["consents"].([]any) {
				c := c.(map[string]any)
				consents = append(consents, fmt.Sprintf("%s analytics=%v network_data=%v ai=%v", c["notice_version"], c["analytics"], c["network_data"], c["ai"]))
			}
			wantConsents := []string{
				"2026-01 analytics=true network_data=false ai=false",
				"2026-01 analytics=false network_data=false ai=true",
				"2026-02 analytics=true network_data=false ai=true",
			}
			if diff := cmp.Diff(wantConsents, consents); diff != "" {
				t.Errorf("exported consent history mismatch (-want +got):\n%s", diff)
			}
			convs := doc["conversations"].([]any)
			if len(convs) != 1 || convs[0].(map[string]any)["id"] != conv {
				t.Fatalf("exported conversations = %v, want only %s", convs, conv)
			}
			if diff := cmp.Diff([]string{question, answer}, texts(t, convs[0].(map[string]any)["messages"])); diff != "" {
				t.Errorf("exported messages mismatch (-want +got):\n%s", diff)
			}
			if nd := doc["network_data"].([]any); len(nd) != 0 {
				t.Errorf("exported network data = %v, want none (not consented, not collected)", nd)
			}
			if reqs := doc["requests"].([]any); len(reqs) == 0 || reqs[len(reqs)-1].(map[string]any)["kind"] != "export" {
				t.Errorf("exported requests = %v, want this export last", reqs)
			}
		})
	}

	// Guarantee 6: the staff export is in the audit trail, the visitor's own is not.
	if diff := cmp.Diff([]string{"admin/ada export subject:" + id}, auditActs(t, base, auditor, since)); diff != "" {
		t.Errorf("audit entries mismatch (-want +got):\n%s", diff)
	}
	mustCall(t, base, "GET", "/v1/subjects/nobody/export", admin, nil, http.StatusNotFound)
}

// TestNetworkDataNeedsSettingAndConsent proves guarantee 5: by default
// nothing of a visitor's network or browser is stored; with the tenant's
// setting and the visitor's consent, only the /24 and the browser family
// are, sealed, and shown in the export.
func TestNetworkDataNeedsSettingAndConsent(t *testing.T) {
	dir := t.TempDir()
	a, _ := testAll(t, dir)
	base := a.URL()
	admin := staffToken(t, dir, "demo", "admin", "ada")
	exportedNetworkData := func(token string) []any {
		t.Helper()
		return mustCall(t, base, "GET", "/v1/me/export", token, nil, http.StatusOK)["network_data"].([]any)
	}

	// Collection off (the default): a consenting visitor is not recorded.
	consenting := visitorWith(t, base, true)["token"].(string)
	if nd := exportedNetworkData(consenting); len(nd) != 0 {
		t.Errorf("network data with the setting off = %v, want none", nd)
	}
	mustCall(t, base, "PUT", "/v1/settings", admin, map[string]any{"retention_days": 30, "collect_network_data": true}, http.StatusOK)
	want := map[string]any{"retention_days": float64(30), "collect_network_data": true, "erase_after_close_hours": float64(0), "notice_text": "", "notice_version": "1"}
	if diff := cmp.Diff(want, mustCall(t, base, "GET", "/v1/settings", admin, nil, http.StatusOK)); diff != "" {
		t.Errorf("GET /v1/settings mismatch (-want +got):\n%s", diff)
	}
	// Collection on, no consent: not recorded.
	refusing := visitorWith(t, base, false)["token"].(string)
	if nd := exportedNetworkData(refusing); len(nd) != 0 {
		t.Errorf("network data without consent = %v, want none", nd)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	for _, needle := range []string{"127.0.0.0/24", "127.0.0.1", "Go-http-client"} {
		if hits := storeContains(t, filepath.Join(dir, "nats"), needle); len(hits) > 0 {
			t.Errorf("with no collection allowed, the store holds %q: %v", needle, hits)
		}
	}

	// Collection on and consent: the network and the browser family only.
	a, logs := testAll(t, dir)
	base = a.URL()
	v := visitorWith(t, base, true)
	id, collected := v["visitor_id"].(string), v["token"].(string)
	nd := exportedNetworkData(collected)
	if len(nd) != 1 {
		t.Fatalf("network data with setting and consent = %v, want one entry", nd)
	}
	entry := nd[0].(map[string]any)
	if entry["ip_prefix"] != "127.0.0.0/24" || entry["browser"] != "Other" || entry["at"] == nil {
		t.Errorf("network data = %v, want ip_prefix 127.0.0.0/24, browser Other (Go's client), at", entry)
	}
	mustCall(t, base, "DELETE", "/v1/me", collected, nil, http.StatusAccepted)
	mustCall(t, base, "GET", "/v1/subjects/"+id+"/export", admin, nil, http.StatusGone)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// Stored sealed under the visitor's key, now destroyed.
	for _, needle := range []string{"127.0.0.0/24", "127.0.0.1", "Go-http-client"} {
		if hits := storeContains(t, filepath.Join(dir, "nats"), needle); len(hits) > 0 {
			t.Errorf("the store holds %q in the clear: %v", needle, hits)
		}
	}
	for _, needle := range []string{"127.0.0.0", "Go-http-client"} {
		if strings.Contains(logs.String(), needle) {
			t.Errorf("logs hold %q", needle)
		}
	}
}

// TestTenantNotice follows a tenant's privacy notice from the settings an
// admin puts to the anonymous endpoint the widget reads it from, and to the
// consent of a visitor who registers under its version.
func TestTenantNotice(t *testing.T) {
	dir := t.TempDir()
	a, _ := testAll(t, dir)
	base := a.URL()
	admin := staffToken(t, dir, "demo", "admin", "ada")
	notice := func() (int, map[string]any, http.Header) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, base+"/v1/tenants/demo/notice", nil)
		if err != nil {
			t.Fatal(err)
		}
		// A host page's script asks from the host's origin.
		req.Header.Set("Origin", "https://shop.example")
		resp, err := contractClient(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, out, resp.Header
	}

	status, got, h := notice()
	if status != http.StatusOK || !cmp.Equal(got, map[string]any{"version": "1", "text": ""}) {
		t.Errorf("notice never set = %d %v, want 200 version 1 and no text", status, got)
	}
	if cc, origin := h.Get("Cache-Control"), h.Get("Access-Control-Allow-Origin"); cc != "public, max-age=60" || origin != "*" {
		t.Errorf("Cache-Control %q, Access-Control-Allow-Origin %q; want public, max-age=60 and *", cc, origin)
	}
	text := "We keep your messages for 30 days.\nNothing else."
	mustCall(t, base, "PUT", "/v1/settings", admin, map[string]any{
		"retention_days": 30, "collect_network_data": false, "notice_text": text, "notice_version": "2026-12",
	}, http.StatusOK)
	set := mustCall(t, base, "GET", "/v1/settings", admin, nil, http.StatusOK)
	if set["notice_text"] != text || set["notice_version"] != "2026-12" {
		t.Errorf("GET /v1/settings = %v, want the notice put", set)
	}
	// The gateway answers from its copy of the settings, a moment behind.
	natstest.Until(t, 10*time.Second, "the gateway's notice at version 2026-12", func() bool {
		_, got, _ = notice()
		return cmp.Equal(got, map[string]any{"version": "2026-12", "text": text})
	})
	mustCall(t, base, "GET", "/v1/tenants/ghost/notice", "", nil, http.StatusNotFound)
	mustCall(t, base, "GET", "/v1/tenants/Bad_Id/notice", "", nil, http.StatusNotFound)

	// The widget registers the visitor under the version it showed.
	visitor := mustCall(t, base, "POST", "/v1/tenants/demo/visitors", "", map[string]any{
		"consent":        map[string]bool{"analytics": false, "network_data": false, "ai": false},
		"notice_version": got["version"],
	}, http.StatusCreated)["access_token"].(string)
	consents := mustCall(t, base, "GET", "/v1/me/export", visitor, nil, http.StatusOK)["consents"].([]any)
	if v := consents[0].(map[string]any)["notice_version"]; v != "2026-12" {
		t.Errorf("the consent records notice version %v, want 2026-12", v)
	}
}

func TestStaffTranscriptReadsAreAudited(t *testing.T) {
	dir := t.TempDir()
	a, _ := testAll(t, dir)
	base := a.URL()
	_, visitor := newVisitor(t, base, "demo")
	supervisor := staffToken(t, dir, "demo", "supervisor", "sue")
	auditor := staffToken(t, dir, "demo", "auditor", "aud")
	admin := staffToken(t, dir, "demo", "admin", "ada")
	since := time.Now().Add(-time.Second).UTC().Format(time.RFC3339)

	conv := mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": "hello"}, http.StatusCreated)["id"].(string)
	mustCall(t, base, "GET", "/v1/conversations/"+conv+"/messages", visitor, nil, http.StatusOK)
	mustCall(t, base, "GET", "/v1/conversations/"+conv+"/messages", supervisor, nil, http.StatusOK)
	mustCall(t, base, "PUT", "/v1/settings", admin, map[string]any{"retention_days": 90, "collect_network_data": false}, http.StatusOK)

	for _, token := range []string{auditor, admin} {
		entries := mustCall(t, base, "GET", "/v1/audit?since="+since, token, nil, http.StatusOK)["entries"].([]any)
		var acts []string
		prev := ""
		for i, e := range entries {
			e := e.(map[string]any)
			actor := e["actor"].(map[string]any)
			acts = append(acts, fmt.Sprintf("%s/%s %s %s", actor["role"], actor["id"], e["action"], e["target"]))
			if e["hash"] == "" || (i > 0 && e["prev_hash"] != prev) {
				t.Errorf("entry %d: prev_hash %v, hash %v; want linked to %v", i, e["prev_hash"], e["hash"], prev)
			}
			prev, _ = e["hash"].(string)
		}
		want := []string{
			"supervisor/sue transcript.read conversation:" + conv,
			"admin/ada settings.change settings retention_days=90 collect_network_data=false erase_after_close_hours=0",
		}
		if diff := cmp.Diff(want, acts); diff != "" {
			t.Errorf("audit entries mismatch (-want +got):\n%s", diff)
		}
	}
	later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if entries := mustCall(t, base, "GET", "/v1/audit?since="+later, auditor, nil, http.StatusOK)["entries"].([]any); len(entries) != 0 {
		t.Errorf("entries since an hour from now = %v, want none", entries)
	}

	// A visitor token reaches no staff path, and bad input changes nothing.
	for _, tc := range []struct {
		method, path string
		token        string
		body         any
		want         int
	}{
		{"GET", "/v1/audit", visitor, nil, http.StatusForbidden},
		{"GET", "/v1/settings", visitor, nil, http.StatusForbidden},
		{"PUT", "/v1/settings", visitor, map[string]any{"retention_days": 1, "collect_network_data": true}, http.StatusForbidden},
		{"POST", "/v1/subjects/x/erase", visitor, nil, http.StatusForbidden},
		{"GET", "/v1/subjects/x/export", visitor, nil, http.StatusForbidden},
		{"GET", "/v1/audit", supervisor, nil, http.StatusForbidden},
		{"PUT", "/v1/settings", admin, map[string]any{"retention_days": 0, "collect_network_data": true}, http.StatusUnprocessableEntity},
		{"PUT", "/v1/settings", admin, []byte(`{"retention_days":`), http.StatusBadRequest},
		{"GET", "/v1/audit?since=noon", auditor, nil, http.StatusUnprocessableEntity},
	} {
		if status, body := call(t, base, tc.method, tc.path, tc.token, tc.body); status != tc.want {
			t.Errorf("%s %s = %d %v, want %d", tc.method, tc.path, status, body, tc.want)
		}
	}
	want := map[string]any{"retention_days": float64(90), "collect_network_data": false, "erase_after_close_hours": float64(0), "notice_text": "", "notice_version": "1"}
	if diff := cmp.Diff(want, mustCall(t, base, "GET", "/v1/settings", admin, nil, http.StatusOK)); diff != "" {
		t.Errorf("settings after refused changes mismatch (-want +got):\n%s", diff)
	}
}

// TestErasureEndToEnd proves guarantee 2 through the API: the erased
// visitor's messages read as erased for everyone, for good, their export is
// gone, their live session is closed, and nothing of them is on disk.
func TestErasureEndToEnd(t *testing.T) {
	dir := t.TempDir()
	a, _ := testAll(t, dir)
	base := a.URL()
	id, visitor := newVisitor(t, base, "demo")
	agent := staffToken(t, dir, "demo", "agent", "alice")
	supervisor := staffToken(t, dir, "demo", "supervisor", "sue")
	admin := staffToken(t, dir, "demo", "admin", "ada")

	hello, reply := marker(t), marker(t)
	conv := mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": hello}, http.StatusCreated)["id"].(string)
	mustCall(t, base, "POST", "/v1/conversations/"+conv+"/messages", agent, map[string]any{"text": reply}, http.StatusCreated)
	closed := watchClose(t, base, visitor)

	erasureID, _ := mustCall(t, base, "DELETE", "/v1/me", visitor, nil, http.StatusAccepted)["erasure_id"].(string)
	if erasureID == "" {
		t.Fatal("DELETE /v1/me answered no erasure_id")
	}
	var status map[string]any
	natstest.Until(t, 5*time.Second, "the erasure completed", func() bool {
		status = mustCall(t, base, "GET", "/v1/erasures/"+erasureID, visitor, nil, http.StatusOK)
		return status["status"] == "completed"
	})
	report, _ := status["report"].(map[string]any)
	if status["completed_at"] == nil || report == nil || report["keys_destroyed"] != true {
		t.Errorf("completed erasure = %v, want completed_at and a report with keys_destroyed", status)
	}
	select {
	case code := <-closed:
		if code != websocket.StatusPolicyViolation {
			t.Errorf("visitor's live session closed with %v, want %v", code, websocket.StatusPolicyViolation)
		}
	case <-time.After(2 * time.Second):
		t.Error("visitor's live session still open 2s after the erasure")
	}

	checkErased := func(base string) {
		t.Helper()
		msgs := mustCall(t, base, "GET", "/v1/conversations/"+conv+"/messages", supervisor, nil, http.StatusOK)["messages"].([]any)
		if len(msgs) != 2 {
			t.Fatalf("transcript after erasure holds %d messages, want 2", len(msgs))
		}
		for _, m := range msgs {
			m := m.(map[string]any)
			if v, ok := m["text"]; !ok || v != nil || m["erased"] != true || m["author"] != nil {
				t.Errorf("message after erasure = %v, want \"author\":null,\"text\":null,\"erased\":true", m)
			}
		}
		// Nothing more can happen in it: it is closed, and whom it was
		// assigned to was sealed under the visitor's key.
		convs := mustCall(t, base, "GET", "/v1/conversations", supervisor, nil, http.StatusOK)["conversations"].([]any)
		i := slices.IndexFunc(convs, func(c any) bool { return c.(map[string]any)["id"] == conv })
		if i < 0 {
			t.Fatalf("conversation %s not listed after erasure", conv)
		}
		if c := convs[i].(map[string]any); c["status"] != "closed" || c["assignee"] != nil {
			t.Errorf("conversation after erasure = %v, want closed, with no assignee", c)
		}
	}
	checkErased(base)
	mustCall(t, base, "GET", "/v1/me/export", visitor, nil, http.StatusGone)
	mustCall(t, base, "GET", "/v1/subjects/"+id+"/export", admin, nil, http.StatusGone)

	// Erasing again answers the same erasure; an unknown subject is 404.
	for _, again := range []map[string]any{
		mustCall(t, base, "POST", "/v1/subjects/"+id+"/erase", admin, nil, http.StatusAccepted),
		mustCall(t, base, "DELETE", "/v1/me", visitor, nil, http.StatusAccepted),
	} {
		if again["erasure_id"] != erasureID {
			t.Errorf("erasing again = %v, want erasure_id %s", again, erasureID)
		}
	}
	mustCall(t, base, "POST", "/v1/subjects/nobody/erase", admin, nil, http.StatusNotFound)
	_, stranger := newVisitor(t, base, "demo")
	mustCall(t, base, "GET", "/v1/erasures/"+erasureID, stranger, nil, http.StatusNotFound)

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if hits := storeContains(t, filepath.Join(dir, "nats"), hello, reply); len(hits) > 0 {
		t.Errorf("raw JetStream files hold message text: %v", hits)
	}

	// A restart brings nothing back.
	b, _ := testAll(t, dir)
	checkErased(b.URL())
	mustCall(t, b.URL(), "GET", "/v1/me/export", visitor, nil, http.StatusGone)
	after := mustCall(t, b.URL(), "GET", "/v1/erasures/"+erasureID, admin, nil, http.StatusOK)
	if after["status"] != "completed" {
		t.Errorf("erasure after restart = %v, want completed", after)
	}
}

// watchClose opens a live session with token and reports the status it is
// closed with.
func watchClose(t *testing.T, base, token string) <-chan websocket.StatusCode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	url := "ws" + strings.TrimPrefix(base, "http") + "/v1/stream"
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
	if err != nil {
		cancel()
		t.Fatalf("dial %s: %v", url, err)
	}
	closed := make(chan websocket.StatusCode, 1)
	go func() {
		for {
			if _, _, err := conn.Read(ctx); err != nil {
				closed <- websocket.CloseStatus(err)
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		conn.CloseNow()
	})
	return closed
}
