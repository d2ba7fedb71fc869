package privacy_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/stream"
)

func TestSettings(t *testing.T) {
	nc, js := startOne(t)
	get := func(p auth.Principal) (privacyapi.Settings, error) {
		return call[privacyapi.Settings](t, nc, privacyapi.GetSettingsSubject, p, privacyapi.TenantArgs{Tenant: tenant})
	}
	put := func(p auth.Principal, st privacyapi.Settings) (privacyapi.Settings, error) {
		return call[privacyapi.Settings](t, nc, privacyapi.PutSettingsSubject, p, privacyapi.PutSettingsArgs{Tenant: tenant, Settings: st})
	}

	got, err := get(admin)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(privacyapi.Settings{RetentionDays: 365, NoticeVersion: "1"}, got); diff != "" {
		t.Errorf("GetSettings(never set) mismatch (-want +got):\n%s", diff)
	}

	valid := privacyapi.Settings{RetentionDays: 30, CollectNetworkData: true, EraseAfterCloseHours: 48, NoticeVersion: "1"}
	refusals := []struct {
		name string
		as   auth.Principal
		give privacyapi.Settings
		want rpc.Code
	}{
		{"retention 0", admin, privacyapi.Settings{RetentionDays: 0}, rpc.CodeInvalid},
		{"retention 3651", admin, privacyapi.Settings{RetentionDays: 3651}, rpc.CodeInvalid},
		{"negative erase after close", admin, privacyapi.Settings{RetentionDays: 30, EraseAfterCloseHours: -1}, rpc.CodeInvalid},
		{"erase after close over a year", admin, privacyapi.Settings{RetentionDays: 30, EraseAfterCloseHours: 24*365 + 1}, rpc.CodeInvalid},
		{"negative open conversations", admin, privacyapi.Settings{RetentionDays: 30, OpenConversationsPerVisitor: -1}, rpc.CodeInvalid},
		{"open conversations over the ceiling", admin, privacyapi.Settings{RetentionDays: 30, OpenConversationsPerVisitor: privacyapi.MaxOpenConversationsPerVisitor + 1}, rpc.CodeInvalid},
		{"negative messages per minute", admin, privacyapi.Settings{RetentionDays: 30, MessagesPerConversationPerMinute: -1}, rpc.CodeInvalid},
		{"messages per minute over the ceiling", admin, privacyapi.Settings{RetentionDays: 30, MessagesPerConversationPerMinute: privacyapi.MaxMessagesPerConversationPerMinute + 1}, rpc.CodeInvalid},
		{"notice text too long", admin, privacyapi.Settings{RetentionDays: 30, NoticeText: strings.Repeat("é", privacyapi.MaxNoticeText+1)}, rpc.CodeInvalid},
		{"notice version too long", admin, privacyapi.Settings{RetentionDays: 30, NoticeVersion: strings.Repeat("v", privacyapi.MaxNoticeVersion+1)}, rpc.CodeInvalid},
		{"supervisor", auth.Principal{Tenant: tenant, ID: "s", Role: auth.RoleSupervisor}, valid, rpc.CodeForbidden},
		{"auditor", auditor, valid, rpc.CodeForbidden},
		{"admin of another tenant", auth.Principal{Tenant: "acme", ID: "a", Role: auth.RoleAdmin}, valid, rpc.CodeForbidden},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := put(tt.as, tt.give); rpc.CodeOf(err) != tt.want {
				t.Errorf("PutSettings(%+v) error = %v, want code %s", tt.give, err, tt.want)
			}
		})
	}
	if st := streamState(t, js, stream.Audit); st.Msgs != 0 {
		t.Errorf("AUDIT holds %d entries after refused changes, want 0", st.Msgs)
	}
	if _, err := get(agent); rpc.CodeOf(err) != rpc.CodeForbidden {
		t.Errorf("GetSettings(as agent) error = %v, want code %s", err, rpc.CodeForbidden)
	}

	notice := privacyapi.Settings{RetentionDays: 3650, NoticeText: strings.Repeat("é", privacyapi.MaxNoticeText), NoticeVersion: strings.Repeat("v", privacyapi.MaxNoticeVersion)}
	for _, want := range []privacyapi.Settings{valid, notice, {RetentionDays: 3650, NoticeVersion: "1"}} {
		if _, err := put(admin, want); err != nil {
			t.Fatalf("PutSettings(%+v) error = %v", want, err)
		}
		got, err := get(admin)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("GetSettings() after put mismatch (-want +got):\n%s", diff)
		}
	}
	res, err := listAudit(t, nc, auditor, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var changes []string
	for _, e := range res.Entries {
		if e.Action == audit.ActionSettingsChange && e.Actor == (audit.Actor{Role: auth.RoleAdmin, ID: admin.ID}) {
			changes = append(changes, e.Target)
		}
	}
	want := []string{
		"settings retention_days=30 collect_network_data=true erase_after_close_hours=48",
		fmt.Sprintf("settings retention_days=3650 collect_network_data=false erase_after_close_hours=0 notice_version=%q notice_characters=4000", notice.NoticeVersion),
		"settings retention_days=3650 collect_network_data=false erase_after_close_hours=0",
	}
	if diff := cmp.Diff(want, changes); diff != "" {
		t.Errorf("audited settings changes mismatch (-want +got):\n%s", diff)
	}
}
