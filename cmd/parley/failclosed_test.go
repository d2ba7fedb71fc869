package main

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/stream"
)

// TestAuditedActsFailClosed attacks guarantee 6 for the acts the privacy
// service audits: while the AUDIT stream refuses every write, an admin's
// export of a visitor, erasure of them and settings change each answer 503
// and do nothing: the export's answer holds nothing of the visitor, and
// once the trail takes writes again the settings are as they were, the
// visitor's keys are there (they and a supervisor read the conversation, and
// the visitor exports it) and the trail names none of the three acts.
// AUDIT is filled to its limit rather than deleted, as
// TestAuditTrailRefusalLoggedOnce does: the trail's history must be there
// again for the last check, and a full trail fails at the write, where a
// missing one fails before it.
func TestAuditedActsFailClosed(t *testing.T) {
	sc := startVisitorScene(t)
	admin := staffToken(t, sc.dir, "demo", "admin", "ada")
	auditor := staffToken(t, sc.dir, "demo", "auditor", "aud")
	supervisor := staffToken(t, sc.dir, "demo", "supervisor", "sue")
	hello := marker(t)
	conv := mustCall(t, sc.base, "POST", "/v1/conversations", sc.visitor, map[string]any{"text": hello}, http.StatusCreated)["id"].(string)
	mustCall(t, sc.base, "PUT", "/v1/settings", admin, map[string]any{"retention_days": 30, "collect_network_data": false}, http.StatusOK)
	settings := mustCall(t, sc.base, "GET", "/v1/settings", admin, nil, http.StatusOK)
	before := auditActions(t, sc.base, auditor)

	restore := refuseAuditWrites(t, sc.js)
	for _, tc := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/v1/subjects/" + sc.visitorID + "/export", nil},
		{"POST", "/v1/subjects/" + sc.visitorID + "/erase", nil},
		{"PUT", "/v1/settings", map[string]any{"retention_days": 1, "collect_network_data": true, "notice_text": "changed", "notice_version": "2"}},
	} {
		status, out := call(t, sc.base, tc.method, tc.path, admin, tc.body)
		got := fmt.Sprint(out)
		if status != http.StatusServiceUnavailable {
			t.Errorf("%s %s with the audit trail refusing writes = %d %s, want 503", tc.method, tc.path, status, got)
		}
		if strings.Contains(got, hello) || strings.Contains(got, conv) {
			t.Errorf("%s %s with the audit trail refusing writes answered the visitor's data: %s", tc.method, tc.path, got)
		}
	}
	restore()

	if diff := cmp.Diff(settings, mustCall(t, sc.base, "GET", "/v1/settings", admin, nil, http.StatusOK)); diff != "" {
		t.Errorf("settings after the refused change mismatch (-want +got):\n%s", diff)
	}
	for _, token := range []string{sc.visitor, supervisor} {
		msgs := mustCall(t, sc.base, "GET", "/v1/conversations/"+conv+"/messages", token, nil, http.StatusOK)["messages"]
		if got := texts(t, msgs); !slices.Equal(got, []string{hello}) {
			t.Errorf("transcript after the refused erasure = %v, want [%s]", got, hello)
		}
	}
	mustCall(t, sc.base, "GET", "/v1/me/export", sc.visitor, nil, http.StatusOK)
	after := auditActions(t, sc.base, auditor)
	for _, e := range after[len(before):] {
		if strings.HasPrefix(e, "export ") || strings.HasPrefix(e, "erase ") || strings.HasPrefix(e, "settings.change ") {
			t.Errorf("audit entry %q of an act that answered 503", e)
		}
	}
}

// refuseAuditWrites makes the AUDIT stream refuse every new entry, as a
// full or failing store would, and returns what takes writes again.
func refuseAuditWrites(t *testing.T, js jetstream.JetStream) (restore func()) {
	t.Helper()
	str, err := js.Stream(t.Context(), stream.Audit)
	if err != nil {
		t.Fatal(err)
	}
	info := str.CachedInfo()
	full := info.Config
	full.MaxMsgs, full.Discard = int64(info.State.Msgs), jetstream.DiscardNew
	if _, err := js.UpdateStream(t.Context(), full); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if _, err := js.UpdateStream(t.Context(), info.Config); err != nil {
			t.Fatal(err)
		}
	}
}
