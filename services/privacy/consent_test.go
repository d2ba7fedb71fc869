package privacy_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/stream"
)

func TestConsentChangesReachCaches(t *testing.T) {
	s := natstest.Start(t, "")
	kek := newKEK(t)
	first := start(t, s, kek)
	start(t, s, kek)
	nc, _ := natstest.Connect(t, s)
	visitor := mustRegister(t, nc)

	other, _ := natstest.Connect(t, s)
	registered := event.Consent{Analytics: true, NoticeVersion: "n1"}
	if got, err := getConsent(t, other, tenant, visitor); err != nil || got != registered {
		t.Fatalf("Get() = %+v, %v; want %+v", got, err, registered)
	}

	changes := []event.Consent{
		{NetworkData: true, AI: true, NoticeVersion: "n2"},
		{NoticeVersion: "n2"},
		{Analytics: true, NoticeVersion: "n3"},
	}
	for _, c := range changes {
		res, err := call[privacyapi.ConsentResult](t, nc, privacyapi.SetConsentSubject, visitorOf(visitor), privacyapi.SetConsentArgs{Tenant: tenant, Consent: c})
		if err != nil {
			t.Fatalf("SetConsent(%+v) error = %v", c, err)
		}
		if res.Consent != c || res.Seq == 0 {
			t.Errorf("SetConsent(%+v) = %+v, want that consent at a sequence", c, res)
		}
		natstest.Until(t, time.Second, "every instance answers the change", func() bool {
			got, err := getConsent(t, other, tenant, visitor)
			return err == nil && got == c
		})
	}

	// The history survives a restart of both instances: it is rebuilt from
	// PRIVACY.
	first.stop()
	start(t, s, kek)
	hist, err := call[privacyapi.ConsentHistoryResult](t, nc, privacyapi.ConsentHistorySubject, admin, privacyapi.PersonArgs{Tenant: tenant, Person: visitor})
	if err != nil {
		t.Fatal(err)
	}
	var got []event.Consent
	for i, e := range hist.Entries {
		if e.At.IsZero() || i > 0 && e.At.Before(hist.Entries[i-1].At) {
			t.Errorf("history entry %d at %v, want a time not before the one before", i, e.At)
		}
		got = append(got, e.Consent)
	}
	if diff := cmp.Diff(append([]event.Consent{registered}, changes...), got); diff != "" {
		t.Errorf("ConsentHistory() mismatch (-want +got):\n%s", diff)
	}
	// Either instance may answer, both alike.
	want := changes[len(changes)-1]
	for range 4 {
		if c, err := getConsent(t, other, tenant, visitor); err != nil || c != want {
			t.Errorf("GetConsent() after restart = %+v, %v; want %+v", c, err, want)
		}
	}
}

// TestConsentKeepsTheNoticeInForce sets a visitor's consent many times at
// once on two instances, half of the calls with a new notice version and
// half keeping the one in force: each kept one is the version of the
// consent recorded just before it, never one another call replaced
// meanwhile.
func TestConsentKeepsTheNoticeInForce(t *testing.T) {
	s := natstest.Start(t, "")
	kek := newKEK(t)
	start(t, s, kek)
	start(t, s, kek)
	nc, _ := natstest.Connect(t, s)
	visitor := mustRegister(t, nc)

	const calls = 16
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for i := range calls {
		wg.Go(func() {
			args := privacyapi.SetConsentArgs{Tenant: tenant, SameNotice: true}
			if i%2 == 0 {
				args = privacyapi.SetConsentArgs{Tenant: tenant, Consent: event.Consent{Analytics: true, NoticeVersion: fmt.Sprint("n", i+2)}}
			}
			res, err := call[privacyapi.ConsentResult](t, nc, privacyapi.SetConsentSubject, visitorOf(visitor), args)
			if err == nil && res.Consent.NoticeVersion == "" {
				err = fmt.Errorf("SetConsent(%+v) = %+v, want a notice version", args, res)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	hist, err := call[privacyapi.ConsentHistoryResult](t, nc, privacyapi.ConsentHistorySubject, admin, privacyapi.PersonArgs{Tenant: tenant, Person: visitor})
	if err != nil {
		t.Fatal(err)
	}
	if len(hist.Entries) != calls+1 {
		t.Fatalf("ConsentHistory() holds %d entries, want %d", len(hist.Entries), calls+1)
	}
	for i, e := range hist.Entries[1:] {
		before := hist.Entries[i].Consent
		if !e.Consent.Analytics && e.Consent.NoticeVersion != before.NoticeVersion {
			t.Errorf("entry %d kept notice version %q, want %q of the consent before it", i+1, e.Consent.NoticeVersion, before.NoticeVersion)
		}
	}
}

func TestConsentRefusals(t *testing.T) {
	nc, js := startOne(t)
	visitor, erased := mustRegister(t, nc), mustRegister(t, nc)
	if _, err := erase(t, nc, visitorOf(erased), erased); err != nil {
		t.Fatal(err)
	}
	before := streamState(t, js, stream.Privacy).LastSeq
	valid := event.Consent{Analytics: true, NoticeVersion: "n2"}

	sets := []struct {
		name string
		as   auth.Principal
		give privacyapi.SetConsentArgs
		want rpc.Code
	}{
		{"agent", agent, privacyapi.SetConsentArgs{Tenant: tenant, Consent: valid}, rpc.CodeForbidden},
		{"admin", admin, privacyapi.SetConsentArgs{Tenant: tenant, Consent: valid}, rpc.CodeForbidden},
		{"other tenant", visitorOf(visitor), privacyapi.SetConsentArgs{Tenant: "acme", Consent: valid}, rpc.CodeForbidden},
		{"no notice version", visitorOf(visitor), privacyapi.SetConsentArgs{Tenant: tenant, Consent: event.Consent{Analytics: true}}, rpc.CodeInvalid},
		{"long notice version", visitorOf(visitor), privacyapi.SetConsentArgs{Tenant: tenant, Consent: event.Consent{NoticeVersion: strings.Repeat("v", 65)}}, rpc.CodeInvalid},
		{"notice version and the same notice", visitorOf(visitor), privacyapi.SetConsentArgs{Tenant: tenant, Consent: valid, SameNotice: true}, rpc.CodeInvalid},
		{"same notice, erased", visitorOf(erased), privacyapi.SetConsentArgs{Tenant: tenant, SameNotice: true}, rpc.CodeGone},
		{"never registered", visitorOf("ghost"), privacyapi.SetConsentArgs{Tenant: tenant, Consent: valid}, rpc.CodeNotFound},
		{"erased", visitorOf(erased), privacyapi.SetConsentArgs{Tenant: tenant, Consent: valid}, rpc.CodeGone},
	}
	for _, tt := range sets {
		t.Run("set/"+tt.name, func(t *testing.T) {
			if _, err := call[privacyapi.ConsentResult](t, nc, privacyapi.SetConsentSubject, tt.as, tt.give); rpc.CodeOf(err) != tt.want {
				t.Errorf("SetConsent(%+v) error = %v, want code %s", tt.give, err, tt.want)
			}
		})
	}
	if st := streamState(t, js, stream.Privacy); st.LastSeq != before {
		t.Errorf("PRIVACY last sequence %d after refused consents, want %d", st.LastSeq, before)
	}

	histories := []struct {
		name    string
		as      auth.Principal
		subject string
		want    rpc.Code
	}{
		{"another visitor", visitorOf(visitor), erased, rpc.CodeForbidden},
		{"agent", agent, visitor, rpc.CodeForbidden},
		{"auditor", auditor, visitor, rpc.CodeForbidden},
		{"erased", admin, erased, rpc.CodeGone},
		{"unknown", admin, "nobody", rpc.CodeNotFound},
	}
	for _, tt := range histories {
		t.Run("history/"+tt.name, func(t *testing.T) {
			_, err := call[privacyapi.ConsentHistoryResult](t, nc, privacyapi.ConsentHistorySubject, tt.as, privacyapi.PersonArgs{Tenant: tenant, Person: tt.subject})
			if rpc.CodeOf(err) != tt.want {
				t.Errorf("ConsentHistory(%s) error = %v, want code %s", tt.subject, err, tt.want)
			}
		})
	}

	gets := []struct {
		subject string
		want    rpc.Code
	}{
		{"nobody", rpc.CodeNotFound},
		{erased, rpc.CodeGone},
	}
	for _, tt := range gets {
		if _, err := getConsent(t, nc, tenant, tt.subject); rpc.CodeOf(err) != tt.want {
			t.Errorf("GetConsent(%s) error = %v, want code %s", tt.subject, err, tt.want)
		}
	}
	if _, err := getConsent(t, nc, "de.mo", visitor); rpc.CodeOf(err) != rpc.CodeInvalid {
		t.Errorf("Get(bad tenant) error = %v, want code %s", err, rpc.CodeInvalid)
	}
}

// getConsent asks the privacy service for a data subject's consent in
// force, as any service may.
func getConsent(t *testing.T, nc *nats.Conn, tenant, subject string) (event.Consent, error) {
	t.Helper()
	var res privacyapi.ConsentResult
	err := rpc.Call(t.Context(), nc, privacyapi.GetConsentSubject, privacyapi.PersonArgs{Tenant: tenant, Person: subject}, &res)
	return res.Consent, err
}
