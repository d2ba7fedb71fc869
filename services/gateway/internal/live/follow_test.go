package live

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"
)

// TestOnlyConnectedTenantsAreFollowed checks that the hub is sent the
// events of a tenant only while a session of the tenant is connected to
// it, and that a session is sent its tenant's events from its handshake
// on.
func TestOnlyConnectedTenantsAreFollowed(t *testing.T) {
	s := natstest.Start(t, t.TempDir())
	nc, _ := natstest.Connect(t, s)
	pub, _ := natstest.Connect(t, s)
	h := NewHub(slog.New(slog.DiscardHandler), noKeys{}, nil)
	h.Follow(nc)
	seq := uint64(0)
	// publish stands in for the CHAT stream's republish of a stored
	// closing of tenant's conversation c1 of visitor v1: shown, unplaced,
	// even when its payload cannot be read.
	publish := func(tenant string) {
		t.Helper()
		seq++
		e := event.Envelope{ID: "e" + strconv.FormatUint(seq, 10), Type: event.ConversationClosed, Tenant: tenant, Person: "v1", Aggregate: "c1", At: time.Now(), Body: []byte("sealed")}
		m := e.Msg(stream.LiveChatSubject(tenant, "c1"))
		m.Header.Set(jetstream.SequenceHeader, strconv.FormatUint(seq, 10))
		if err := pub.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
		// Once the publisher's flush returns the server has routed the
		// event; once the hub's returns the hub's connection has read
		// whatever it was sent before the answer.
		if err := pub.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	received := func() uint64 { return nc.Stats().InMsgs }

	publish("demo")
	if got := received(); got != 0 {
		t.Fatalf("hub with no session received %d events, want 0", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := dial(t, ctx, h, auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor})
	publish("other")
	publish("demo")
	if got := received(); got != 1 {
		t.Errorf("hub with a session of demo received %d events, want demo's one", got)
	}
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	if e.Type != TypeClosed || e.ConversationID != "c1" || e.Seq != seq {
		t.Errorf("visitor's frame = %+v, want c1 closed at seq %d", e, seq)
	}

	c.CloseNow()
	natstest.Until(t, 10*time.Second, "the session ended", func() bool { return h.Sessions() == 0 })
	publish("demo")
	if got := received(); got != 1 {
		t.Errorf("hub whose last session of demo ended received %d events, want 1", got)
	}
}
