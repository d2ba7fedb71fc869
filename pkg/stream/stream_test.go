package stream_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"
)

// TestLiveChatCarriesStoredEventsOnly checks what live delivery relies on:
// the CHAT stream republishes what it stores, once, and nothing it refuses
// or drops as a duplicate. The stream is first created as a version before
// the republish defined it, and Apply brings the republish to it.
func TestLiveChatCarriesStoredEventsOnly(t *testing.T) {
	nc, js := natstest.Connect(t, natstest.Start(t, ""))
	ctx := t.Context()
	old, err := stream.Config(stream.Chat, stream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	old.RePublish = nil
	if _, err := js.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Apply(ctx, js, stream.Options{}); err != nil {
		t.Fatal(err)
	}

	sub, err := nc.SubscribeSync(stream.LiveChatSubjects)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	subject := stream.ChatSubject("demo", "c1")
	publish := func(id, body string, opts ...jetstream.PublishOpt) error {
		m := nats.NewMsg(subject)
		m.Header.Set(jetstream.MsgIDHeader, id)
		m.Data = []byte(body)
		_, err := js.PublishMsg(ctx, m, opts...)
		return err
	}
	if err := publish("e1", "stored"); err != nil {
		t.Fatal(err)
	}
	if err := publish("e2", "refused", jetstream.WithExpectLastSequencePerSubject(0)); err == nil {
		t.Fatal("append with a stale expected-last-subject-sequence was stored, want it refused")
	}
	if err := publish("e1", "stored"); err != nil {
		t.Fatalf("retried append: %v, want it acknowledged as a duplicate", err)
	}
	if err := publish("e3", "last", jetstream.WithExpectLastSequencePerSubject(1)); err != nil {
		t.Fatal(err)
	}

	type live struct {
		Subject, ID, Sequence, Body string
	}
	var got []live
	for len(got) == 0 || got[len(got)-1].Body != "last" {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, live{m.Subject, m.Header.Get(jetstream.MsgIDHeader), m.Header.Get(jetstream.SequenceHeader), string(m.Data)})
	}
	want := []live{
		{stream.LiveChatSubject("demo", "c1"), "e1", "1", "stored"},
		{stream.LiveChatSubject("demo", "c1"), "e3", "2", "last"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("republished on %s (-want +got):\n%s", stream.LiveChatSubjects, diff)
	}
}

func TestValidToken(t *testing.T) {
	tests := []struct {
		give string
		want bool
	}{
		{give: "demo", want: true},
		{give: "a-Z_09", want: true},
		{give: strings.Repeat("x", 64), want: true},
		{give: "", want: false},
		{give: strings.Repeat("x", 65), want: false},
		{give: "a.b", want: false},
		{give: "a*", want: false},
		{give: "a>", want: false},
		{give: "a b", want: false},
		{give: "é", want: false},
		{give: "a\n", want: false},
	}
	for _, tt := range tests {
		if got := stream.ValidToken(tt.give); got != tt.want {
			t.Errorf("ValidToken(%q) = %v, want %v", tt.give, got, tt.want)
		}
	}
}
