package ephemeral

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"
)

// TestExpiryScheduleSupersedes shows the server's side of a visitor's
// expiry: a newer schedule of the visitor replaces the older one, which
// never fires; the newer fires once, at its time, on the visitor's target.
func TestExpiryScheduleSupersedes(t *testing.T) {
	s := natstest.Start(t, "")
	_, js := natstest.Connect(t, s)
	if err := stream.Ensure(t.Context(), js, stream.Options{}, stream.Schedules); err != nil {
		t.Fatal(err)
	}
	fired, err := js.OrderedConsumer(t.Context(), stream.Schedules, jetstream.OrderedConsumerConfig{FilterSubjects: []string{expireFiredFilter}})
	if err != nil {
		t.Fatal(err)
	}
	x := Expiry{Tenant: "demo", Visitor: "v-1"}
	now := time.Now()
	for _, at := range []time.Time{now.Add(time.Second), now.Add(3 * time.Second)} {
		m, err := ExpirySchedule(x, at)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	later := now.Add(3 * time.Second).Truncate(time.Second)

	m, err := fired.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatalf("no expiry fired: %v", err)
	}
	md, err := m.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	if md.Timestamp.Before(later) {
		t.Errorf("expiry fired at %v, before the newer schedule's %v", md.Timestamp, later)
	}
	if want := expireFiredSubject(x.Tenant, x.Visitor); m.Subject() != want {
		t.Errorf("fired on %q, want %q", m.Subject(), want)
	}
	if m, err := fired.Next(jetstream.FetchMaxWait(2 * time.Second)); err == nil {
		t.Errorf("a second expiry fired on %s", m.Subject())
	}
}
