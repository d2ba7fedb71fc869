package main

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/stream"
)

// TestStaffStreamsAreAudited proves guarantee 6 for the live stream: a
// supervisor replaying the tenant's messages from the start, and an agent
// following theirs, are in the audit trail as they open the stream; a
// visitor reading their own is not.
func TestStaffStreamsAreAudited(t *testing.T) {
	sc := startVisitorScene(t)
	base, visitor := sc.base, sc.visitor
	supervisor := staffToken(t, sc.dir, "demo", "supervisor", "sue")
	auditor := staffToken(t, sc.dir, "demo", "auditor", "aud")
	since := time.Now().Add(-time.Second).UTC().Format(time.RFC3339)

	hello := marker(t)
	conv := mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": hello}, http.StatusCreated)["id"].(string)
	mustCall(t, base, "POST", "/v1/conversations/"+conv+"/messages", visitor, map[string]any{"text": marker(t)}, http.StatusCreated)

	// The replay shows the text the audit entry is about.
	openStreamWith(t, base, supervisor, "since=0").waitMessage(t, hello, liveWithin)
	openStream(t, base, sc.alice)
	openStream(t, base, visitor)

	acts := auditActs(t, base, auditor, since)
	want := []string{
		"supervisor/sue stream.open stream:tenant since:0",
		"agent/alice stream.open stream:assigned",
	}
	if diff := cmp.Diff(want, acts); diff != "" {
		t.Errorf("audit entries (-want +got):\n%s", diff)
	}
}

// TestStreamRefusedWithoutAuditTrail: with the AUDIT stream deleted under
// a running parley all, a supervisor's stream, which would replay the
// tenant's messages, is refused with 503 before the upgrade: no frame is
// sent.
func TestStreamRefusedWithoutAuditTrail(t *testing.T) {
	sc := startVisitorScene(t)
	base := sc.base
	supervisor := staffToken(t, sc.dir, "demo", "supervisor", "sue")
	mustCall(t, base, "POST", "/v1/conversations", sc.visitor, map[string]any{"text": marker(t)}, http.StatusCreated)
	if err := sc.js.DeleteStream(t.Context(), stream.Audit); err != nil {
		t.Fatal(err)
	}

	c, resp, err := dialStream(t, base, supervisor, "since=0")
	if err == nil {
		_, data, rerr := c.Read(t.Context())
		t.Fatalf("supervisor's stream opened without an audit trail; first frame %q (%v), want 503", data, rerr)
	}
	if resp == nil {
		t.Fatalf("supervisor's stream without an audit trail: %v, want a 503 answer", err)
	}
	defer resp.Body.Close()
	var problem map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&problem); err != nil {
		t.Fatalf("the refusal's body: %v", err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || problem["type"] != "https://parley.dev/problems/unavailable" {
		t.Errorf("supervisor's stream without an audit trail = %d %v, want 503 unavailable", resp.StatusCode, problem)
	}
}
