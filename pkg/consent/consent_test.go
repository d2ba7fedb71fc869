package consent_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley/pkg/consent"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/subjectkey"
)

// consentService answers GetConsent on the bus the way the privacy
// service does, from a fixed table, and counts the requests.
type consentService struct {
	asked atomic.Int64
}

func startConsentService(t *testing.T, nc *nats.Conn, answers map[string]privacyapi.ConsentResult) *consentService {
	t.Helper()
	cs := &consentService{}
	_, err := rpc.Serve(t.Context(), nc, slog.New(slog.DiscardHandler), privacyapi.GetConsentSubject, "privacy",
		rpc.Handle(func(_ context.Context, req privacyapi.SubjectArgs) (privacyapi.ConsentResult, error) {
			cs.asked.Add(1)
			switch req.Subject {
			case "erased":
				return privacyapi.ConsentResult{}, rpc.Errorf(rpc.CodeGone, "subject erased")
			}
			res, ok := answers[req.Subject]
			if !ok {
				return privacyapi.ConsentResult{}, rpc.Errorf(rpc.CodeNotFound, "not found")
			}
			return res, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return cs
}

func publish(t *testing.T, nc *nats.Conn, subject string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish(subject, b); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 1s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncChanges returns once the cache has handled every change published
// before: it publishes one more, for a subject the service does not know,
// and waits for the cache to hold it. One subscription handles its messages
// in order.
func syncChanges(t *testing.T, svc *nats.Conn, get func(string) (event.Consent, error), subject string) {
	t.Helper()
	marker := event.Consent{NoticeVersion: subject}
	publish(t, svc, privacyapi.ConsentChangedSubject, privacyapi.ConsentChanged{Tenant: "demo", Subject: subject, Result: privacyapi.ConsentResult{Consent: marker, Seq: 1}})
	eventually(t, "changes handled", func() bool { got, err := get(subject); return err == nil && got == marker })
}

func TestCache(t *testing.T) {
	s := natstest.Start(t, "")
	svc, _ := natstest.Connect(t, s)
	given := event.Consent{Analytics: true, NoticeVersion: "n1"}
	withdrawn := event.Consent{NoticeVersion: "n2"}
	cs := startConsentService(t, svc, map[string]privacyapi.ConsentResult{"v1": {Consent: given, Seq: 5}})
	nc, _ := natstest.Connect(t, s)
	c, err := consent.NewCache(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	get := func(subject string) (event.Consent, error) { return c.Get(t.Context(), "demo", subject) }

	for range 3 {
		if got, err := get("v1"); err != nil || got != given {
			t.Fatalf("Get(v1) = %+v, %v; want %+v", got, err, given)
		}
	}
	if n := cs.asked.Load(); n != 1 {
		t.Errorf("service asked %d times for three Gets, want 1", n)
	}

	// A change replaces the cached consent without asking; an older one,
	// arriving late, does not.
	publish(t, svc, privacyapi.ConsentChangedSubject, privacyapi.ConsentChanged{Tenant: "demo", Subject: "v1", Result: privacyapi.ConsentResult{Consent: withdrawn, Seq: 7}})
	eventually(t, "Get(v1) follows the change", func() bool { got, _ := get("v1"); return got == withdrawn })
	publish(t, svc, privacyapi.ConsentChangedSubject, privacyapi.ConsentChanged{Tenant: "demo", Subject: "v1", Result: privacyapi.ConsentResult{Consent: given, Seq: 6}})
	syncChanges(t, svc, get, "sync1")
	if got, err := get("v1"); err != nil || got != withdrawn {
		t.Errorf("Get(v1) after a stale change = %+v, %v; want %+v", got, err, withdrawn)
	}

	// An erasure is final.
	publish(t, svc, subjectkey.ErasedSubject, subjectkey.Erased{Tenant: "demo", Subject: "v1"})
	eventually(t, "Get(v1) erased", func() bool { _, err := get("v1"); return errors.Is(err, consent.ErrErased) })
	publish(t, svc, privacyapi.ConsentChangedSubject, privacyapi.ConsentChanged{Tenant: "demo", Subject: "v1", Result: privacyapi.ConsentResult{Consent: given, Seq: 9}})
	syncChanges(t, svc, get, "sync2")
	if _, err := get("v1"); !errors.Is(err, consent.ErrErased) {
		t.Errorf("Get(v1) after a change following its erasure error = %v, want %v", err, consent.ErrErased)
	}

	// Unknown is asked again each time (the first consent may come any
	// moment); gone is remembered.
	before := cs.asked.Load()
	for range 2 {
		if _, err := get("nobody"); !errors.Is(err, consent.ErrNotFound) {
			t.Errorf("Get(nobody) error = %v, want %v", err, consent.ErrNotFound)
		}
		if _, err := get("erased"); !errors.Is(err, consent.ErrErased) {
			t.Errorf("Get(erased) error = %v, want %v", err, consent.ErrErased)
		}
	}
	if n := cs.asked.Load() - before; n != 3 {
		t.Errorf("service asked %d times, want 3 (nobody twice, erased once)", n)
	}
}
