package stream_test

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"
)

// TestPublish checks that Publish answers as jetstream.PublishMsg does: the
// acknowledgement, a duplicate marked, the stream's refusal as its
// *jetstream.APIError, no stream as jetstream.ErrNoStreamResponse, and an
// answer that is no acknowledgement as jetstream.ErrInvalidJSAck.
func TestPublish(t *testing.T) {
	nc, js := natstest.Connect(t, natstest.Start(t, ""))
	ctx := t.Context()
	if err := stream.Create(ctx, js, stream.Options{}, stream.Chat); err != nil {
		t.Fatal(err)
	}
	subject := stream.ChatSubject("demo", "c1")
	// msg is an append of id to subject, expecting the subject's last
	// sequence to be after, if given.
	msg := func(subject, id string, after ...uint64) *nats.Msg {
		m := nats.NewMsg(subject)
		m.Header.Set(jetstream.MsgIDHeader, id)
		for _, a := range after {
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(a, 10))
		}
		m.Data = []byte(id)
		return m
	}
	tests := []struct {
		name    string
		give    *nats.Msg
		want    jetstream.PubAck
		wantErr func(error) bool
	}{
		{name: "stored", give: msg(subject, "e1", 0), want: jetstream.PubAck{Stream: stream.Chat, Sequence: 1}},
		{name: "duplicate", give: msg(subject, "e1"), want: jetstream.PubAck{Stream: stream.Chat, Sequence: 1, Duplicate: true}},
		{name: "wrong last sequence", give: msg(subject, "e2", 0), wantErr: stream.WrongLastSequence},
		{name: "next", give: msg(subject, "e3", 1), want: jetstream.PubAck{Stream: stream.Chat, Sequence: 2}},
		{name: "no stream", give: msg("nowhere.c1", "e4"), wantErr: func(err error) bool {
			return errors.Is(err, jetstream.ErrNoStreamResponse)
		}},
		{name: "no acknowledgement", give: msg("not.a.stream", "e5"), wantErr: func(err error) bool {
			return errors.Is(err, jetstream.ErrInvalidJSAck)
		}},
	}
	// A plain responder answers what is no acknowledgement.
	sub, err := nc.Subscribe("not.a.stream", func(m *nats.Msg) { _ = m.Respond([]byte(`{"hello":1}`)) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := stream.Publish(ctx, js, tt.give)
			if tt.wantErr != nil {
				if err == nil || !tt.wantErr(err) {
					t.Errorf("Publish() = %+v, %v; want the error of %s", got, err, tt.name)
				}
				return
			}
			if err != nil {
				t.Fatalf("Publish() = %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Publish() (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("context done", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := stream.Publish(ctx, js, msg(subject, "e6", 2)); !errors.Is(err, context.Canceled) {
			t.Errorf("Publish(cancelled) = %v, want context.Canceled", err)
		}
	})
}
