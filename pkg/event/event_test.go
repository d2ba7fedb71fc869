package event_test

import (
	"bytes"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/seal"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	key, err := seal.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	give := event.Posted{Author: event.Author{Role: "visitor", ID: "v1"}, Text: "secret marker"}
	e, err := event.New(key, event.MessagePosted, "demo", "v1", "c1", time.Now(), give)
	if err != nil {
		t.Fatal(err)
	}
	e.Idempotency = "4f1c"
	m := e.Msg("chat.demo.c1")
	if bytes.Contains(m.Data, []byte("secret marker")) {
		t.Fatal("message body holds the plaintext")
	}
	for k, v := range m.Header {
		if bytes.Contains([]byte(k+v[0]), []byte("secret")) {
			t.Fatalf("header %s holds the plaintext", k)
		}
	}
	parsed, err := event.Parse(m.Subject, m.Header, m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(e, parsed); diff != "" {
		t.Fatalf("Parse() mismatch (-want +got):\n%s", diff)
	}
	var got event.Posted
	if err := parsed.Open(key, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(give, got); diff != "" {
		t.Errorf("Open() mismatch (-want +got):\n%s", diff)
	}

	// The sealed body is bound to where it is stored: moved to another
	// tenant, data subject, conversation, event id or type, it opens to
	// nothing, even under the right key.
	tests := []struct {
		name        string
		natsSubject string
		header      string
		value       string
	}{
		{name: "another tenant", header: event.HeaderTenant, value: "other"},
		{name: "another data subject", header: event.HeaderSubject, value: "v2"},
		{name: "another conversation", natsSubject: "chat.demo.c2"},
		{name: "another event id", header: event.HeaderID, value: e.ID + "0"},
		{name: "another type", header: event.HeaderType, value: string(event.ConversationOpened)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			natsSubject, h := m.Subject, maps.Clone(m.Header)
			if tt.natsSubject != "" {
				natsSubject = tt.natsSubject
			}
			if tt.header != "" {
				h.Set(tt.header, tt.value)
			}
			moved, err := event.Parse(natsSubject, h, m.Data)
			if err != nil {
				t.Fatal(err)
			}
			if err := moved.Open(key, &got); !errors.Is(err, seal.ErrOpen) {
				t.Errorf("Open() of an event moved to %s: error = %v, want %v", tt.name, err, seal.ErrOpen)
			}
		})
	}
}

func TestParseRejectsForeignMessages(t *testing.T) {
	if _, err := event.Parse("chat.demo.c1", nil, []byte("x")); !errors.Is(err, event.ErrMalformed) {
		t.Errorf("Parse(no headers) error = %v, want %v", err, event.ErrMalformed)
	}
}
