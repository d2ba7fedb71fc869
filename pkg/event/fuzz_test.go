package event_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/seal"
)

// FuzzParse checks that Parse takes any stored message without panicking,
// and that what it accepts is a whole envelope that stores and parses back
// unchanged.
func FuzzParse(f *testing.F) {
	key, err := seal.NewKey()
	if err != nil {
		f.Fatal(err)
	}
	e, err := event.New(key, event.MessagePosted, "demo", "v1", "c1", time.Now(), event.Posted{Text: "hello"})
	if err != nil {
		f.Fatal(err)
	}
	m := e.Msg("chat.demo.c1")
	h := m.Header
	f.Add(m.Subject, h.Get(event.HeaderID), h.Get(event.HeaderType), h.Get(event.HeaderTenant), h.Get(event.HeaderSubject), h.Get(event.HeaderAt), m.Data)
	f.Add("privacy.demo.v1", event.NewID(), string(event.ConsentRecorded), "demo", "v1", "2026-01-02T15:04:05+01:00", []byte(`{"analytics":true}`))
	f.Add("chat", "", "", "", "", "", []byte{})
	f.Add("chat.demo.", "id", "t", "demo", "v1", "2026-13-40T99:99:99Z", []byte("x"))
	f.Fuzz(func(t *testing.T, subject, id, typ, tenant, dataSubject, at string, body []byte) {
		h := nats.Header{}
		h.Set(event.HeaderID, id)
		h.Set(event.HeaderType, typ)
		h.Set(event.HeaderTenant, tenant)
		h.Set(event.HeaderSubject, dataSubject)
		h.Set(event.HeaderAt, at)
		e, err := event.Parse(subject, h, body)
		if err != nil {
			if !errors.Is(err, event.ErrMalformed) {
				t.Fatalf("Parse() = %v, want ErrMalformed", err)
			}
			return
		}
		if e.ID == "" || e.Type == "" || e.Tenant == "" || e.Person == "" || e.Aggregate == "" {
			t.Fatalf("Parse() = %+v, a partial envelope", e)
		}
		m := e.Msg(subject)
		again, err := event.Parse(m.Subject, m.Header, m.Data)
		if err != nil {
			t.Fatalf("Parse(Msg(%+v)) = %v", e, err)
		}
		if !again.At.Equal(e.At) {
			t.Fatalf("At = %v after a round trip, want %v", again.At, e.At)
		}
		again.At = e.At
		if diff := cmp.Diff(e, again); diff != "" {
			t.Fatalf("Parse(Msg()) mismatch (-want +got):\n%s", diff)
		}
	})
}

// FuzzOpen checks that a stored body of any bytes, sealed or clear, opens
// or decodes into each payload without panicking, and that a sealed body
// opens only as it was sealed.
func FuzzOpen(f *testing.F) {
	key, err := seal.NewKey()
	if err != nil {
		f.Fatal(err)
	}
	for _, b := range []string{
		`{"visitor":"v1","text":"hello","erase_after_close_hours":24}`,
		`{"author":{"role":"agent","id":"a1"},"text":"hi"}`,
		`{"agent":"a1","by":{"role":"supervisor","id":"s1"}}`,
		`{"score":5}`,
		`{"analytics":true,"network_data":false,"ai":false,"notice_version":"v1"}`,
		`{"erase_after_close_seconds":-1,"erase_after_close_hours":9223372036854775807}`,
		`null`, `[]`, `{"text":"\ud800"}`, "",
	} {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		payloads := func() []any {
			return []any{&event.Opened{}, &event.Posted{}, &event.Assigned{}, &event.Closed{}, &event.Rated{}, &event.Consent{}}
		}
		clear := event.Envelope{ID: "e1", Type: event.ConsentRecorded, Tenant: "demo", Person: "v1", Aggregate: "v1", Body: body}
		for _, v := range payloads() {
			clear.Decode(v)
		}
		sealed, err := event.New(key, event.MessagePosted, "demo", "v1", "c1", time.Now(), rawJSON(body))
		if err != nil {
			// Not JSON: it cannot be sealed as a payload, only stored as a
			// forged body.
			sealed = event.Envelope{ID: "e1", Type: event.MessagePosted, Tenant: "demo", Person: "v1", Aggregate: "c1", Body: body}
			for _, v := range payloads() {
				if err := sealed.Open(key, v); !errors.Is(err, seal.ErrOpen) {
					t.Fatalf("Open(forged body %q) = %v, want ErrOpen", body, err)
				}
			}
			return
		}
		for _, v := range payloads() {
			sealed.Open(key, v)
		}
		if o := new(event.Opened); sealed.Open(key, o) == nil {
			o.EraseAfterClose()
		}
	})
}

// rawJSON marshals as itself, so that a fuzzed body is sealed as it is.
type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) { return r, nil }
