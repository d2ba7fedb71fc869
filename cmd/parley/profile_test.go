package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"
)

// TestProfileEndToEnd attacks the rectification guarantee: the name and
// e-mail a visitor gives themself are shown to the agent of their
// conversation, in the inbox, the summary and the transcript, and in their
// export; once changed, the old values are in no store file; once removed,
// neither are the new; and none of it ever reaches analytics.
func TestProfileEndToEnd(t *testing.T) {
	sc := startVisitorScene(t)

	mustCall(t, sc.base, "GET", "/v1/me/profile", sc.visitor, nil, http.StatusNotFound)
	for _, body := range []map[string]any{
		{},
		{"name": strings.Repeat("x", 101)},
		{"email": "not an address"},
		{"email": "Ada <ada@example.com>"},
	} {
		if p := mustCall(t, sc.base, "PUT", "/v1/me/profile", sc.visitor, body, http.StatusUnprocessableEntity); p["detail"] == "" {
			t.Errorf("PUT /v1/me/profile %v = %v, want a problem naming the field", body, p)
		}
	}
	mustCall(t, sc.base, "PUT", "/v1/me/profile", sc.alice, map[string]any{"name": "Alice"}, http.StatusForbidden)
	mustCall(t, sc.base, "PUT", "/v1/me/profile", sc.visitor, []byte(`{"name":`), http.StatusBadRequest)

	profiles, err := sc.js.Stream(t.Context(), stream.Profiles)
	if err != nil {
		t.Fatal(err)
	}
	// sealed returns the profile as stored: sealed, so a grep for its
	// plaintext proves little; its sealed bytes must go too, since the key
	// that opens them lives on.
	sealed := func() string {
		t.Helper()
		m, err := profiles.GetLastMsgForSubject(t.Context(), stream.ProfileSubject("demo", sc.visitorID))
		if err != nil {
			t.Fatal(err)
		}
		if hits := storeContains(t, sc.dir, string(m.Data)); len(hits) == 0 {
			t.Fatal("the sealed profile is in no store file: the test would prove nothing")
		}
		return string(m.Data)
	}

	oldName, oldMail := marker(t), strings.ToLower(marker(t))+"@example.com"
	mustCall(t, sc.base, "PUT", "/v1/me/profile", sc.visitor, map[string]any{"name": oldName, "email": oldMail}, http.StatusOK)
	oldSealed := sealed()
	conv := mustCall(t, sc.base, "POST", "/v1/conversations", sc.visitor, map[string]any{"text": "hello"}, http.StatusCreated)["id"].(string)
	mustCall(t, sc.base, "POST", "/v1/conversations/"+conv+"/messages", sc.alice, map[string]any{"text": "hi"}, http.StatusCreated)
	shown := func(token, name string) {
		t.Helper()
		var inbox map[string]any
		for _, c := range mustCall(t, sc.base, "GET", "/v1/conversations", token, nil, http.StatusOK)["conversations"].([]any) {
			if c.(map[string]any)["id"] == conv {
				inbox = c.(map[string]any)
			}
		}
		transcript := mustCall(t, sc.base, "GET", "/v1/conversations/"+conv+"/messages", token, nil, http.StatusOK)
		for what, got := range map[string]any{"inbox": inbox["visitor_profile"], "transcript": transcript["visitor_profile"]} {
			switch p, _ := got.(map[string]any); {
			case name == "" && got != nil:
				t.Errorf("%s shows the profile %v after its removal", what, got)
			case name != "" && (p == nil || p["name"] != name):
				t.Errorf("%s shows the profile %v, want the name %s", what, got, name)
			}
		}
	}
	shown(sc.alice, oldName)

	newName := marker(t)
	changed := mustCall(t, sc.base, "PUT", "/v1/me/profile", sc.visitor, map[string]any{"name": newName}, http.StatusOK)
	newSealed := sealed()
	if changed["name"] != newName || changed["email"] != nil {
		t.Errorf("PUT /v1/me/profile = %v, want the new name and no e-mail", changed)
	}
	shown(sc.alice, newName)
	if got := mustCall(t, sc.base, "GET", "/v1/me/profile", sc.visitor, nil, http.StatusOK); got["name"] != newName {
		t.Errorf("GET /v1/me/profile = %v, want %s", got, newName)
	}
	doc := mustCall(t, sc.base, "GET", "/v1/me/export", sc.visitor, nil, http.StatusOK)
	if p, _ := doc["profile"].(map[string]any); p == nil || p["name"] != newName {
		t.Errorf("export profile = %v, want the name %s", doc["profile"], newName)
	}
	if hits := storeContains(t, sc.dir, oldSealed, oldName, oldMail); len(hits) > 0 {
		t.Errorf("the changed profile's old version is still stored: %v", hits)
	}

	// The relay never sees a profile: once it wrote the conversation's
	// facts, ANALYTICS, which holds them in the clear, holds no word of the
	// profile in force (nor does any other store file: it is sealed).
	natstest.Until(t, liveWithin, "3 facts on ANALYTICS", func() bool { return len(readAnalytics(t, sc.js)) >= 3 })
	if hits := storeContains(t, sc.dir, newName); len(hits) > 0 {
		t.Errorf("the profile is stored in the clear: %v", hits)
	}

	mustCall(t, sc.base, "DELETE", "/v1/me/profile", sc.visitor, nil, http.StatusNoContent)
	mustCall(t, sc.base, "DELETE", "/v1/me/profile", sc.visitor, nil, http.StatusNoContent)
	mustCall(t, sc.base, "GET", "/v1/me/profile", sc.visitor, nil, http.StatusNotFound)
	shown(sc.alice, "")
	if doc := mustCall(t, sc.base, "GET", "/v1/me/export", sc.visitor, nil, http.StatusOK); doc["profile"] != nil {
		t.Errorf("export profile after removal = %v, want null", doc["profile"])
	}
	if hits := storeContains(t, sc.dir, newSealed, oldName, oldMail, newName); len(hits) > 0 {
		t.Errorf("the removed profile is still stored: %v", hits)
	}

	// Erasure: the key is shredded and the profile deleted with it.
	mustCall(t, sc.base, "PUT", "/v1/me/profile", sc.visitor, map[string]any{"name": newName}, http.StatusOK)
	erasedSealed := sealed()
	mustCall(t, sc.base, "DELETE", "/v1/me", sc.visitor, nil, http.StatusAccepted)
	natstest.Until(t, liveWithin, "the erased visitor's profile deleted", func() bool {
		_, err := profiles.GetMsg(t.Context(), 1, jetstream.WithGetMsgSubject(stream.ProfileSubject("demo", sc.visitorID)))
		return err != nil
	})
	mustCall(t, sc.base, "GET", "/v1/me/profile", sc.visitor, nil, http.StatusGone)
	if hits := storeContains(t, sc.dir, erasedSealed, newName); len(hits) > 0 {
		t.Errorf("an erased visitor's profile is still stored: %v", hits)
	}
	if strings.Contains(sc.logs.String(), newName) || strings.Contains(sc.logs.String(), oldMail) {
		t.Error("the logs hold a profile value")
	}
}
