package privacy_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
)

func export(t *testing.T, nc *nats.Conn, p auth.Principal, subject string) (privacyapi.ExportResult, error) {
	t.Helper()
	return call[privacyapi.ExportResult](t, nc, privacyapi.ExportSubject, p, privacyapi.PersonArgs{Tenant: tenant, Person: subject})
}

// TestNetworkDataNeedsSettingAndConsent registers visitors with network data
// under every combination of the tenant setting and the visitor's consent:
// it is stored, sealed, only when both are on, and exported decrypted.
func TestNetworkDataNeedsSettingAndConsent(t *testing.T) {
	dir := t.TempDir()
	s := natstest.Start(t, dir)
	start(t, s, newKEK(t))
	nc, _ := natstest.Connect(t, s)
	nd := &privacyapi.NetworkData{IPPrefix: "198.51.100.0/24", Browser: privacyapi.BrowserFirefox}

	tests := []struct {
		name    string
		collect bool
		consent bool
		want    []privacyapi.NetworkData
	}{
		{"setting off, consent off", false, false, nil},
		{"setting off, consent on", false, true, nil},
		{"setting on, consent off", true, false, nil},
		{"setting on, consent on", true, true, []privacyapi.NetworkData{*nd}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := call[privacyapi.Settings](t, nc, privacyapi.PutSettingsSubject, admin, privacyapi.PutSettingsArgs{
				Tenant: tenant, Settings: privacyapi.Settings{RetentionDays: 30, CollectNetworkData: tt.collect},
			}); err != nil {
				t.Fatal(err)
			}
			id, err := register(t.Context(), nc, privacyapi.RegisterVisitorArgs{
				Tenant: tenant, Consent: event.Consent{NetworkData: tt.consent, NoticeVersion: "n1"}, NetworkData: nd,
			})
			if err != nil {
				t.Fatal(err)
			}
			res, err := export(t, nc, visitorOf(id), id)
			if err != nil {
				t.Fatal(err)
			}
			var got []privacyapi.NetworkData
			for _, e := range res.NetworkData {
				if e.At.IsZero() {
					t.Errorf("network data entry without a time: %+v", e)
				}
				got = append(got, e.NetworkData)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("exported network data mismatch (-want +got):\n%s", diff)
			}
		})
	}
	// Stored sealed: the prefix is in the export, never in the store files.
	if storeHolds(t, dir, []byte("198.51.100")) {
		t.Error("store files hold the IP prefix in the clear")
	}
}

func TestRegisterVisitorRejectsFineNetworkData(t *testing.T) {
	nc, js := startOne(t)
	tests := []struct {
		name string
		give privacyapi.NetworkData
	}{
		{"whole IPv4 address", privacyapi.NetworkData{IPPrefix: "198.51.100.7/32", Browser: privacyapi.BrowserChrome}},
		{"IPv4 host bits", privacyapi.NetworkData{IPPrefix: "198.51.100.7/24", Browser: privacyapi.BrowserChrome}},
		{"IPv4 /16", privacyapi.NetworkData{IPPrefix: "198.51.0.0/16", Browser: privacyapi.BrowserChrome}},
		{"bare address", privacyapi.NetworkData{IPPrefix: "198.51.100.7", Browser: privacyapi.BrowserChrome}},
		{"IPv6 /64", privacyapi.NetworkData{IPPrefix: "2001:db8:1:2::/64", Browser: privacyapi.BrowserChrome}},
		{"user agent", privacyapi.NetworkData{IPPrefix: "198.51.100.0/24", Browser: "Mozilla/5.0 (X11; Linux x86_64)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := register(t.Context(), nc, privacyapi.RegisterVisitorArgs{
				Tenant: tenant, Consent: event.Consent{NetworkData: true, NoticeVersion: "n1"}, NetworkData: &tt.give,
			})
			if rpc.CodeOf(err) != rpc.CodeInvalid {
				t.Errorf("RegisterVisitor(%+v) error = %v, want code %s", tt.give, err, rpc.CodeInvalid)
			}
		})
	}
	nothingStored(t, js)
}

func TestExport(t *testing.T) {
	nc, _ := startOne(t)
	visitor, other := mustRegister(t, nc), mustRegister(t, nc)
	if _, err := call[privacyapi.ConsentResult](t, nc, privacyapi.SetConsentSubject, visitorOf(visitor), privacyapi.SetConsentArgs{
		Tenant: tenant, Consent: event.Consent{AI: true, NoticeVersion: "n2"},
	}); err != nil {
		t.Fatal(err)
	}

	res, err := export(t, nc, visitorOf(visitor), visitor)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := export(t, nc, admin, visitor); err != nil {
		t.Fatal(err)
	}
	res2, err := export(t, nc, visitorOf(visitor), visitor)
	if err != nil {
		t.Fatal(err)
	}
	ignoreAt := cmpopts.IgnoreFields(privacyapi.ConsentEntry{}, "At")
	wantConsents := []privacyapi.ConsentEntry{
		{Consent: event.Consent{Analytics: true, NoticeVersion: "n1"}},
		{Consent: event.Consent{AI: true, NoticeVersion: "n2"}},
	}
	if diff := cmp.Diff(wantConsents, res.Consents, ignoreAt); diff != "" {
		t.Errorf("exported consents mismatch (-want +got):\n%s", diff)
	}
	if res.NetworkData == nil || len(res.NetworkData) != 0 {
		t.Errorf("exported network data = %#v, want an empty list", res.NetworkData)
	}
	var requests []string
	for _, r := range res2.Requests {
		requests = append(requests, r.Kind+" by "+string(r.By.Role))
	}
	if diff := cmp.Diff([]string{"export by visitor", "export by admin", "export by visitor"}, requests); diff != "" {
		t.Errorf("exported requests mismatch (-want +got):\n%s", diff)
	}

	audited, err := call[privacyapi.ListAuditResult](t, nc, privacyapi.ListAuditSubject, auditor, privacyapi.ListAuditArgs{Tenant: tenant})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range audited.Entries {
		got = append(got, string(e.Actor.Role)+"/"+e.Actor.ID+" "+e.Action+" "+e.Target)
	}
	if diff := cmp.Diff([]string{"admin/admin-1 export subject:" + visitor}, got); diff != "" {
		t.Errorf("audit entries mismatch (-want +got):\n%s", diff)
	}
	if err := audit.Verify(audited.Entries); err != nil {
		t.Errorf("Verify() = %v", err)
	}

	refusals := []struct {
		name    string
		as      auth.Principal
		subject string
		want    rpc.Code
	}{
		{"another visitor", visitorOf(other), visitor, rpc.CodeForbidden},
		{"an agent", agent, visitor, rpc.CodeForbidden},
		{"an auditor", auditor, visitor, rpc.CodeForbidden},
		{"an admin of another tenant", auth.Principal{Tenant: "other", ID: "admin-1", Role: auth.RoleAdmin}, visitor, rpc.CodeForbidden},
		{"a malformed subject", admin, "a.b", rpc.CodeInvalid},
		{"a subject that never existed", admin, "nobody", rpc.CodeNotFound},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := export(t, nc, tt.as, tt.subject); rpc.CodeOf(err) != tt.want {
				t.Errorf("Export(%s) error = %v, want code %s", tt.subject, err, tt.want)
			}
		})
	}

	if _, err := erase(t, nc, visitorOf(visitor), visitor); err != nil {
		t.Fatal(err)
	}
	for _, p := range []auth.Principal{visitorOf(visitor), admin} {
		if _, err := export(t, nc, p, visitor); rpc.CodeOf(err) != rpc.CodeGone {
			t.Errorf("Export(erased) as %s error = %v, want code %s", p.Role, err, rpc.CodeGone)
		}
	}
}

// TestExportPagesComeFromChatUnderAnExport reads an export's conversations
// from a stand-in chat service: a page is read from chat on behalf of the
// principal who started the export, and only for them, only under an export
// recorded, and not once the subject is erased.
func TestExportPagesComeFromChatUnderAnExport(t *testing.T) {
	s := natstest.Start(t, "")
	start(t, s, newKEK(t))
	nc, _ := natstest.Connect(t, s)
	visitor := mustRegister(t, nc)

	type asked struct {
		As   auth.Principal
		Args chatapi.ExportArgs
	}
	var (
		mu  sync.Mutex
		got []asked
	)
	page := chatapi.ExportResult{Conversations: []chatapi.ExportedConversation{{Summary: chatapi.Summary{ID: "c1"}, Messages: []chatapi.Message{}}}}
	chatNC, _ := natstest.Connect(t, s)
	h := rpc.Handle(func(_ context.Context, req rpc.Request[chatapi.ExportArgs]) (chatapi.ExportResult, error) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, asked{req.Principal, req.Args})
		return page, nil
	})
	served, err := rpc.Serve(t.Context(), chatNC, slog.New(slog.DiscardHandler), rpc.Service{Name: "fake-chat", Queue: "chat",
		Groups: []rpc.Group{{Routes: []rpc.Route{{Subject: chatapi.ExportSubject, Handler: h}}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(served.Stop)
	if err := chatNC.Flush(); err != nil {
		t.Fatal(err)
	}
	readPage := func(p auth.Principal, exportID string, after *chatapi.ExportCursor) (chatapi.ExportResult, error) {
		return call[chatapi.ExportResult](t, nc, privacyapi.ExportPageSubject, p, privacyapi.ExportPageArgs{Tenant: tenant, Person: visitor, ExportID: exportID, After: after})
	}

	if _, err := readPage(visitorOf(visitor), "never-started", nil); rpc.CodeOf(err) != rpc.CodeNotFound {
		t.Errorf("ExportPage(an export never started) error = %v, want code %s", err, rpc.CodeNotFound)
	}
	mine, err := export(t, nc, visitorOf(visitor), visitor)
	if err != nil || mine.ExportID == "" || mine.At.IsZero() {
		t.Fatalf("Export() = %+v, %v; want an export id and time", mine, err)
	}
	after := &chatapi.ExportCursor{Conversation: "c0", Seq: 7}
	if res, err := readPage(visitorOf(visitor), mine.ExportID, after); err != nil || !cmp.Equal(page, res) {
		t.Errorf("ExportPage(own export) = %+v, %v; want chat's page %+v", res, err, page)
	}
	if _, err := readPage(admin, mine.ExportID, nil); rpc.CodeOf(err) != rpc.CodeNotFound {
		t.Errorf("ExportPage(the visitor's export, as an admin) error = %v, want code %s", err, rpc.CodeNotFound)
	}
	theirs, err := export(t, nc, admin, visitor)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readPage(admin, theirs.ExportID, nil); err != nil {
		t.Errorf("ExportPage(admin's export) error = %v", err)
	}
	mu.Lock()
	want := []asked{{visitorOf(visitor), chatapi.ExportArgs{Visitor: visitor, After: after}}, {admin, chatapi.ExportArgs{Visitor: visitor}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pages asked of chat mismatch (-want +got):\n%s", diff)
	}
	mu.Unlock()

	if _, err := erase(t, nc, visitorOf(visitor), visitor); err != nil {
		t.Fatal(err)
	}
	if _, err := readPage(admin, theirs.ExportID, nil); rpc.CodeOf(err) != rpc.CodeGone {
		t.Errorf("ExportPage(erased subject) error = %v, want code %s", err, rpc.CodeGone)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) {
		t.Errorf("chat asked %d times, want %d: refused pages ask nothing", len(got), len(want))
	}
}
