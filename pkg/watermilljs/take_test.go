package watermilljs

import (
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
)

// A session reset while nothing was acknowledged knows its next delivery
// is 1: one numbered 3 means 1 and 2 went to another reader, and taking it
// would let its cumulative ack cover them unread.
func TestTakeFromAFloorOfZero(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Start(t, ""))
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateConsumer(ctx, "T", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckAllPolicy})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := js.Publish(ctx, "t.x", []byte("m")); err != nil {
			t.Fatal(err)
		}
	}
	// Deliveries 1 and 2, to the other reader.
	other, err := cons.Fetch(2)
	if err != nil {
		t.Fatal(err)
	}
	for range other.Messages() {
	}
	batch, err := cons.Fetch(1)
	if err != nil {
		t.Fatal(err)
	}
	third := <-batch.Messages()
	if md, err := third.Metadata(); err != nil || md.Sequence.Consumer != 3 {
		t.Fatalf("third delivery's metadata %+v, %v; want delivery 3", md, err)
	}

	b := &Batches{
		s:       &Subscriber{cfg: SubscriberConfig{Stream: "T", Log: slog.New(slog.DiscardHandler)}},
		session: 1, known: true, // as a reset at a floor of 0 leaves it
		ready: make(chan struct{}, 1), taken: make(chan struct{}, 1), forwarding: make(chan struct{}),
	}
	if b.take(1, third) {
		t.Error("delivery 3 taken as a session's first, after a reset at 0: 1 and 2 would be acked unread")
	}
}
