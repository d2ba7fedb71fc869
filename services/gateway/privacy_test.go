package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/gateway"
)

func TestPrivacyCallsRefuseWrongRolesAndBadInput(t *testing.T) {
	e := startGateway(t)
	requests := countBus(t, e.nc)
	visitor := e.token(auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor})
	agent := e.token(auth.Principal{Tenant: "demo", ID: "a1", Role: auth.RoleAgent})
	admin := e.token(auth.Principal{Tenant: "demo", ID: "ad1", Role: auth.RoleAdmin})
	auditor := e.token(auth.Principal{Tenant: "demo", ID: "au1", Role: auth.RoleAuditor})
	op := e.operator()

	tests := []struct {
		name   string
		method string
		path   string
		token  string
		body   string
		want   int
	}{
		{"visitor erases a subject", http.MethodPost, "/v1/subjects/x/erase", visitor, "", http.StatusForbidden},
		{"visitor exports a subject", http.MethodGet, "/v1/subjects/x/export", visitor, "", http.StatusForbidden},
		{"agent erases a subject", http.MethodPost, "/v1/subjects/x/erase", agent, "", http.StatusForbidden},
		{"admin erases itself", http.MethodDelete, "/v1/me", admin, "", http.StatusForbidden},
		{"admin exports itself", http.MethodGet, "/v1/me/export", admin, "", http.StatusForbidden},
		{"agent sets consent", http.MethodPut, "/v1/me/consent", agent, `{"analytics":true,"network_data":false,"ai":false}`, http.StatusForbidden},
		{"operator reads the audit trail", http.MethodGet, "/v1/audit", op, "", http.StatusForbidden},
		{"no token", http.MethodDelete, "/v1/me", "", "", http.StatusUnauthorized},
		{"since not a time", http.MethodGet, "/v1/audit?since=yesterday", auditor, "", http.StatusUnprocessableEntity},
		{"no collect_network_data", http.MethodPut, "/v1/settings", admin, `{"retention_days":30}`, http.StatusUnprocessableEntity},
		{"settings unknown field", http.MethodPut, "/v1/settings", admin, `{"retention_days":30,"collect_network_data":false,"ip":"1.2.3.4"}`, http.StatusBadRequest},
		{"settings not a number", http.MethodPut, "/v1/settings", admin, `{"retention_days":"30","collect_network_data":false}`, http.StatusBadRequest},
		{"partial consent", http.MethodPut, "/v1/me/consent", visitor, `{"analytics":true}`, http.StatusUnprocessableEntity},
		{"consent malformed", http.MethodPut, "/v1/me/consent", visitor, `{"analytics":`, http.StatusBadRequest},
		{"bad subject id", http.MethodPost, "/v1/subjects/a.b/erase", admin, "", http.StatusNotFound},
		{"erase with junk", http.MethodPost, "/v1/subjects/x/erase", admin, `{"why":1}`, http.StatusBadRequest},
		{"bad erasure id", http.MethodGet, "/v1/erasures/" + strings.Repeat("e", 65), admin, "", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkProblem(t, e.do(tt.method, tt.path, tt.token, bodyOf(tt.body)), tt.want)
		})
	}
	if n := requests(); n != 0 {
		t.Errorf("refused requests sent %d messages on parley.>, want 0", n)
	}
}

// TestNetworkDataIsForwardedOnlyWhenAllowed registers visitors under every
// combination of the tenant setting and the visitor's consent, and checks
// what the gateway sends to the privacy service.
func TestNetworkDataIsForwardedOnlyWhenAllowed(t *testing.T) {
	e := startGateway(t)
	got := make(chan privacyapi.RegisterVisitorArgs, 1)
	serve(t, e.nc, privacyapi.RegisterVisitorSubject, func(_ context.Context, req rpc.Request[privacyapi.RegisterVisitorArgs]) (privacyapi.RegisterVisitorResult, error) {
		got <- req.Args
		return registered("v1"), nil
	})
	kv, err := e.js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: privacyapi.SettingsBucket})
	if err != nil {
		t.Fatal(err)
	}
	const firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
	tests := []struct {
		name    string
		collect bool
		consent bool
		want    *privacyapi.NetworkData
	}{
		{"setting off, consent off", false, false, nil},
		{"setting off, consent on", false, true, nil},
		{"setting on, consent off", true, false, nil},
		{"setting on, consent on", true, true, &privacyapi.NetworkData{IPPrefix: "127.0.0.0/24", Browser: privacyapi.BrowserFirefox}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(privacyapi.Settings{RetentionDays: 30, CollectNetworkData: tt.collect})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := kv.Put(t.Context(), "demo", b); err != nil {
				t.Fatal(err)
			}
			body := `{"consent":{"analytics":false,"network_data":` + map[bool]string{true: "true", false: "false"}[tt.consent] + `,"ai":false},"notice_version":"n1"}`
			// The gateway reads settings from its mirror of the bucket, which
			// the watch brings the change to a moment later.
			natstest.Eventually(t, 10*time.Second, "network data forwarded as allowed", func() error {
				req, err := http.NewRequest(http.MethodPost, e.base+"/v1/tenants/demo/visitors", strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("User-Agent", firefox)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					t.Fatalf("POST visitors = %d, want 201", resp.StatusCode)
				}
				if diff := cmp.Diff(tt.want, (<-got).NetworkData); diff != "" {
					return fmt.Errorf("forwarded network data mismatch (-want +got):\n%s", diff)
				}
				return nil
			})
		})
	}
	// The listener's own address is logged at start; the client's network
	// and browser never are.
	for _, s := range []string{"127.0.0.0/24", "Firefox", "Gecko"} {
		if strings.Contains(e.logs.String(), s) {
			t.Errorf("logs hold %q", s)
		}
	}
}

func TestPutSettingsForwardsEveryField(t *testing.T) {
	e := startGateway(t)
	got := make(chan rpc.Request[privacyapi.PutSettingsArgs], 1)
	serve(t, e.nc, privacyapi.PutSettingsSubject, func(_ context.Context, req rpc.Request[privacyapi.PutSettingsArgs]) (privacyapi.Settings, error) {
		got <- req
		return req.Args.Settings, nil
	})
	admin := auth.Principal{Tenant: "demo", ID: "ad1", Role: auth.RoleAdmin}
	r := e.do(http.MethodPut, "/v1/settings", e.token(admin), []byte(`{"retention_days":30,"collect_network_data":true,"erase_after_close_hours":2,"retention_seconds":5,"open_conversations_per_visitor":3,"messages_per_conversation_per_minute":30}`))
	if r.status != http.StatusOK {
		t.Fatalf("PUT /v1/settings = %d, want 200 (body %s)", r.status, r.body)
	}
	want := rpc.Request[privacyapi.PutSettingsArgs]{Principal: admin, Args: privacyapi.PutSettingsArgs{
		Tenant:   "demo",
		Settings: privacyapi.Settings{RetentionDays: 30, CollectNetworkData: true, EraseAfterCloseHours: 2, RetentionSeconds: 5, OpenConversationsPerVisitor: 3, MessagesPerConversationPerMinute: 30},
	}}
	if diff := cmp.Diff(want, <-got); diff != "" {
		t.Errorf("PutSettings request mismatch (-want +got):\n%s", diff)
	}
}

// TestNoticeWaitsForTheSettings starts the gateway while its mirror of the
// SETTINGS bucket cannot load it (the bucket's stream is not yet a
// bucket): the notice endpoint answers 503, not the default notice a
// visitor would consent under, though the tenant has one; once the bucket
// can be read, the tenant's own.
func TestNoticeWaitsForTheSettings(t *testing.T) {
	name := stream.BucketStream(privacyapi.SettingsBucket)
	unreadable := jetstream.StreamConfig{Name: name, Subjects: []string{"$KV." + privacyapi.SettingsBucket + ".>"}}
	e := startGatewayWith(t, func(d *gateway.Deps) {
		// Before the gateway starts, on its own connection: the mirror's
		// first watch must find the stream. No MaxMsgsPerSubject: no bucket.
		js, err := jetstream.New(d.NC)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.CreateStream(t.Context(), unreadable); err != nil {
			t.Fatal(err)
		}
		// The wait below asks more often than a client may.
		d.RateLimit = -1
	})
	want := noticeView{Version: "2026-12", Text: "We keep your messages for 30 days."}
	b, err := json.Marshal(privacyapi.Settings{RetentionDays: 30, NoticeText: want.Text, NoticeVersion: want.Version})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.Publish(t.Context(), "$KV."+privacyapi.SettingsBucket+".demo", b); err != nil {
		t.Fatal(err)
	}
	checkProblem(t, e.do(http.MethodGet, "/v1/tenants/demo/notice", "", nil), http.StatusServiceUnavailable)
	// Nor are metrics answered under a minimum group size not read yet.
	analyst := e.token(auth.Principal{Tenant: "demo", ID: "ann", Role: auth.RoleAnalyst})
	checkProblem(t, e.do(http.MethodGet, "/v1/metrics/conversations?from=2026-12-01T00:00:00Z&to=2026-12-02T00:00:00Z&interval=day", analyst, nil), http.StatusServiceUnavailable)

	readable := unreadable
	readable.MaxMsgsPerSubject = 1
	if _, err := e.js.UpdateStream(t.Context(), readable); err != nil {
		t.Fatal(err)
	}
	// The mirror tries again within pkg/retry's longest wait.
	var got noticeView
	natstest.Until(t, 15*time.Second, "the notice once the settings are read", func() bool {
		r := e.do(http.MethodGet, "/v1/tenants/demo/notice", "", nil)
		if r.status == http.StatusServiceUnavailable {
			return false
		}
		if r.status != http.StatusOK {
			t.Fatalf("GET notice = %d, want 200 (body %s)", r.status, r.body)
		}
		r.decode(t, &got)
		return true
	})
	if got != want {
		t.Errorf("GET notice = %+v, want %+v", got, want)
	}
}

// noticeView is GET /v1/tenants/{tenant}/notice's answer.
type noticeView struct {
	Version string `json:"version"`
	Text    string `json:"text"`
}
