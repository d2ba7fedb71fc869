package watermilljs_test

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/watermilljs"
)

// testStream holds every topic of the tests, "wmtest.<id>".
const testStream = "WMTEST"

func setup(t *testing.T) jetstream.JetStream {
	t.Helper()
	s := natstest.Start(t, "")
	_, js := natstest.Connect(t, s)
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name:     testStream,
		Subjects: []string{"wmtest.>"},
		Storage:  jetstream.MemoryStorage,
	}); err != nil {
		t.Fatal(err)
	}
	return js
}

// durable names a topic's consumer in group; a topic's dots may not be in
// a consumer name.
func durable(group string) func(string) string {
	return func(topic string) string {
		return group + "_" + strings.NewReplacer(".", "_", "*", "any", ">", "rest").Replace(topic)
	}
}

// TestPubSub runs Watermill's shared suite, with one message in flight at
// a time and with many. The features are what the adapter promises:
// subscribers of a name share a durable consumer (consumer groups, and
// persistence across subscribers), so a new subscriber does not get
// messages another acknowledged; delivery is at least once; a Nacked
// message comes back after later ones, so order holds only while nothing
// is Nacked.
func TestPubSub(t *testing.T) {
	for _, inFlight := range []int{1, 64} {
		t.Run(fmt.Sprintf("in_flight_%d", inFlight), func(t *testing.T) {
			testPubSub(t, inFlight)
		})
	}
}

func testPubSub(t *testing.T, inFlight int) {
	js := setup(t)
	newSub := func(t *testing.T, group string) message.Subscriber {
		sub, err := watermilljs.NewSubscriber(js, watermilljs.SubscriberConfig{
			Stream:      testStream,
			Durable:     durable(group),
			AckWait:     5 * time.Second,
			MaxInFlight: inFlight,
			// What goes wrong in the background shows beside a failure.
			Log: slog.New(slog.NewTextHandler(t.Output(), nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		return sub
	}
	tests.TestPubSub(t,
		tests.Features{
			ConsumerGroups:                   true,
			ExactlyOnceDelivery:              false,
			GuaranteedOrder:                  false,
			Persistent:                       true,
			NewSubscriberReceivesOldMessages: false,
			// Small counts: the suite runs in CI on shared two-core
			// machines, under -race.
			ForceShort: true,
			GenerateTopicFunc: func(tctx tests.TestContext) string {
				return "wmtest." + string(tctx.TestID)
			},
		},
		func(t *testing.T) (message.Publisher, message.Subscriber) {
			return watermilljs.NewPublisher(js), newSub(t, "wm")
		},
		func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
			return watermilljs.NewPublisher(js), newSub(t, group)
		},
	)
}

// TestMetadata shows metadata travelling as headers, a multi-line value
// kept on one line, JetStream's own headers left out of what a subscriber
// delivers, and Publish refusing them.
func TestMetadata(t *testing.T) {
	js := setup(t)
	pub := watermilljs.NewPublisher(js)
	sub, err := watermilljs.NewSubscriber(js, watermilljs.SubscriberConfig{Stream: testStream, Durable: durable("meta")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })

	reserved := message.NewMessage("reserved", []byte("x"))
	reserved.Metadata.Set("Nats-Expected-Last-Sequence", "7")
	if err := pub.Publish("wmtest.meta", reserved); !errors.Is(err, watermilljs.ErrReservedMetadata) {
		t.Errorf("Publish(Nats- metadata) = %v, want %v", err, watermilljs.ErrReservedMetadata)
	}
	msg := message.NewMessage("id-1", []byte("body"))
	msg.Metadata.Set("reason", "first\nsecond")
	if err := pub.Publish("wmtest.meta", msg); err != nil {
		t.Fatal(err)
	}
	msgs, err := sub.Subscribe(t.Context(), "wmtest.*")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-msgs:
		got.Ack()
		d, ok := watermilljs.DeliveryOf(got)
		gotAll := map[string]any{"uuid": got.UUID, "payload": string(got.Payload), "metadata": map[string]string(got.Metadata), "delivery": d, "ok": ok}
		want := map[string]any{"uuid": "id-1", "payload": "body", "metadata": map[string]string{"reason": "first second"},
			"delivery": watermilljs.Delivery{Subject: "wmtest.meta", Stream: testStream, Sequence: 1, NumDelivered: 1}, "ok": true}
		if diff := cmp.Diff(want, gotAll); diff != "" {
			t.Errorf("delivered message (-want +got):\n%s", diff)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message delivered")
	}
}

// TestInFlight shows a reader holding MaxInFlight messages unanswered, to
// store them in one batch, say: no more is delivered until it answers,
// Nacked ones come back, and Acked ones never do.
func TestInFlight(t *testing.T) {
	js := setup(t)
	pub := watermilljs.NewPublisher(js)
	const window, total = 20, 50
	for i := range total {
		if err := pub.Publish("wmtest.batch", message.NewMessage(fmt.Sprint(i), []byte("x"))); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := watermilljs.NewSubscriber(js, watermilljs.SubscriberConfig{Stream: testStream, Durable: durable("batch"), MaxInFlight: window})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	msgs, err := sub.Subscribe(t.Context(), "wmtest.batch")
	if err != nil {
		t.Fatal(err)
	}
	// receive returns the next n messages, acking each at once when ack.
	receive := func(n int, ack bool) []*message.Message {
		t.Helper()
		var got []*message.Message
		for len(got) < n {
			select {
			case m := <-msgs:
				if ack {
					m.Ack()
				}
				got = append(got, m)
			case <-time.After(10 * time.Second):
				t.Fatalf("received %d messages, want %d", len(got), n)
			}
		}
		return got
	}
	uuids := func(ms []*message.Message) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.UUID)
		}
		return out
	}

	first := receive(window, false)
	select {
	case m := <-msgs:
		t.Fatalf("message %s delivered beyond the window of %d unanswered", m.UUID, window)
	case <-time.After(300 * time.Millisecond):
	}
	for _, m := range first[:10] {
		m.Nack()
	}
	for _, m := range first[10:] {
		m.Ack()
	}
	rest := receive(total-window+10, true)
	got := append(uuids(first[10:]), uuids(rest)...)
	slices.Sort(got)
	var want []string
	for i := range total {
		want = append(want, fmt.Sprint(i))
	}
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("messages acked (-want +got):\n%s", diff)
	}
	select {
	case m := <-msgs:
		t.Errorf("message %s delivered again after its Ack", m.UUID)
	case <-time.After(300 * time.Millisecond):
	}
}
