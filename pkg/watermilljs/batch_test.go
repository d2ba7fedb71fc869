package watermilljs_test

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/watermilljs"
)

const batchTopic = "wmtest.batch.*"

// publishN stores n messages on wmtest.batch.<kind>, alternating two kinds.
func publishN(t *testing.T, js jetstream.JetStream, n int) {
	t.Helper()
	pub := watermilljs.NewPublisher(js)
	for i := range n {
		if err := pub.Publish(fmt.Sprintf("wmtest.batch.k%d", i%2), message.NewMessage(watermill(i), []byte("x"))); err != nil {
			t.Fatal(err)
		}
	}
}

func watermill(i int) string { return fmt.Sprintf("m-%d-%d", i, time.Now().UnixNano()) }

func batchSubscriber(t *testing.T, js jetstream.JetStream) *watermilljs.Subscriber {
	t.Helper()
	sub, err := watermilljs.NewSubscriber(js, watermilljs.SubscriberConfig{
		Stream:  testStream,
		Durable: func(string) string { return "batches" },
		// An hour: whatever comes back within the test comes back by the
		// reset of a new session, not by JetStream's ack wait.
		AckWait: time.Hour,
		Log:     slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	return sub
}

// receive returns the next n messages b delivers.
func receive(t *testing.T, b *watermilljs.Batches, n int) []watermilljs.Msg {
	t.Helper()
	var got []watermilljs.Msg
	deadline := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case msgs, ok := <-b.C():
			if !ok {
				t.Fatalf("subscription ended after %d messages, want %d", len(got), n)
			}
			got = append(got, msgs...)
		case <-deadline:
			t.Fatalf("received %d messages, want %d", len(got), n)
		}
	}
	if len(got) > n {
		t.Fatalf("received %d messages, want %d", len(got), n)
	}
	return got
}

func subscribeBatches(t *testing.T, sub *watermilljs.Subscriber) *watermilljs.Batches {
	t.Helper()
	b, err := sub.SubscribeBatches(t.Context(), batchTopic)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantSeqs checks that msgs are the stream's messages from to to, in
// order.
func wantSeqs(t *testing.T, what string, msgs []watermilljs.Msg, from, to uint64) {
	t.Helper()
	var got, want []uint64
	for _, m := range msgs {
		got = append(got, m.Sequence)
	}
	for s := from; s <= to; s++ {
		want = append(want, s)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", what, diff)
	}
}

func consumerInfo(t *testing.T, js jetstream.JetStream) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := js.Consumer(t.Context(), testStream, "batches")
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// ackedThrough waits for the consumer's acknowledgement floor to reach seq
// with pending messages delivered and not acknowledged (-1: any number).
func ackedThrough(t *testing.T, js jetstream.JetStream, seq uint64, pending int) {
	t.Helper()
	natstest.Eventually(t, 10*time.Second, fmt.Sprintf("acked through %d, %d pending", seq, pending), func() error {
		info := consumerInfo(t, js)
		if info.AckFloor.Stream != seq || pending >= 0 && info.NumAckPending != pending {
			return fmt.Errorf("ack floor %d, %d pending", info.AckFloor.Stream, info.NumAckPending)
		}
		return nil
	})
}

// steal makes a pull of its own on the consumer, as a reader's stale
// request or one whose answer is lost in a reconnect does, and returns the
// stream sequence of the one message it takes, never acked; the channel
// closes once the pull ends.
func steal(t *testing.T, js jetstream.JetStream) <-chan uint64 {
	t.Helper()
	cons, err := js.Consumer(t.Context(), testStream, "batches")
	if err != nil {
		t.Fatal(err)
	}
	stolen := make(chan uint64, 1)
	go func() {
		defer close(stolen)
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(30*time.Second))
		if err != nil {
			return
		}
		for m := range batch.Messages() {
			md, _ := m.Metadata()
			stolen <- md.Sequence.Stream
		}
	}()
	return stolen
}

// deliveredAgain waits for b to deliver message seq, which another pull
// took.
func deliveredAgain(t *testing.T, b *watermilljs.Batches, seq uint64) {
	t.Helper()
	natstest.Until(t, 30*time.Second, fmt.Sprintf("message %d, taken by another pull, delivered to the reader", seq), func() bool {
		select {
		case msgs := <-b.C():
			for _, m := range msgs {
				if m.Sequence == seq {
					return true
				}
			}
		case <-time.After(100 * time.Millisecond):
		}
		return false
	})
}

// TestBatches is the batch mode's suite: what it delivers, in which order,
// what one Ack answers, and what comes back after a reader stops, crashes
// or loses its consumer.
func TestBatches(t *testing.T) {
	t.Run("in stream order, one ack for all", func(t *testing.T) {
		js := setup(t)
		publishN(t, js, 100)
		sub := batchSubscriber(t, js)
		b := subscribeBatches(t, sub)
		got := receive(t, b, 100)
		wantSeqs(t, "delivered sequences", got, 1, 100)
		want := watermilljs.Delivery{Subject: "wmtest.batch.k1", Stream: testStream, Sequence: 100, NumDelivered: 1}
		if diff := cmp.Diff(want, got[99].Delivery); diff != "" {
			t.Errorf("last delivery (-want +got):\n%s", diff)
		}
		b.Ack(got[99])
		ackedThrough(t, js, 100, 0)
		if err := sub.Close(); err != nil {
			t.Fatal(err)
		}
		publishN(t, js, 10)
		next := subscribeBatches(t, batchSubscriber(t, js))
		wantSeqs(t, "delivered to the next subscriber", receive(t, next, 10), 101, 110)
	})

	t.Run("what was not acked comes back first, at once", func(t *testing.T) {
		js := setup(t)
		publishN(t, js, 50)
		sub := batchSubscriber(t, js)
		b := subscribeBatches(t, sub)
		got := receive(t, b, 50)
		b.Ack(got[19])
		ackedThrough(t, js, 20, 30)
		// Nacking nothing: closing leaves 21..50 delivered and unanswered.
		if err := sub.Close(); err != nil {
			t.Fatal(err)
		}
		publishN(t, js, 10)
		next := subscribeBatches(t, batchSubscriber(t, js))
		again := receive(t, next, 40)
		wantSeqs(t, "delivered after the restart", again, 21, 60)
		next.Ack(again[39])
		ackedThrough(t, js, 60, 0)
	})

	t.Run("a reader gone without a word loses nothing", func(t *testing.T) {
		ns := natstest.Start(t, "")
		_, js := natstest.Connect(t, ns)
		if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: testStream, Subjects: []string{"wmtest.>"}, Storage: jetstream.MemoryStorage}); err != nil {
			t.Fatal(err)
		}
		publishN(t, js, 30)
		// The first reader's process dies: its connection drops with 11..30
		// delivered and unanswered.
		nc2, js2 := natstest.Connect(t, ns)
		b := subscribeBatches(t, batchSubscriber(t, js2))
		first := receive(t, b, 30)
		b.Ack(first[9])
		ackedThrough(t, js, 10, 20)
		nc2.Close()
		publishN(t, js, 10)

		next := subscribeBatches(t, batchSubscriber(t, js))
		got := receive(t, next, 30)
		wantSeqs(t, "delivered to the next reader", got, 11, 40)
		next.Ack(got[29])
		ackedThrough(t, js, 40, 0)
	})

	t.Run("a delivery that never arrives ends the session and comes again", func(t *testing.T) {
		js := setup(t)
		b := subscribeBatches(t, batchSubscriber(t, js))
		publishN(t, js, 10)
		receive(t, b, 10)
		// A pull that is not the reader's takes a delivery, as one whose
		// answer is lost in a reconnect does, and never acks it: acking
		// what came after it would acknowledge it unread.
		stolen := steal(t, js)
		natstest.Until(t, 10*time.Second, "the other pull waiting", func() bool { return consumerInfo(t, js).NumWaiting >= 2 })
		publishN(t, js, 30)
		var seq uint64
		select {
		case seq = <-stolen:
		case <-time.After(10 * time.Second):
			t.Fatal("the other pull took no message")
		}
		deliveredAgain(t, b, seq)
	})

	t.Run("the last deliveries, taken by another pull, come again", func(t *testing.T) {
		js := setup(t)
		b := subscribeBatches(t, batchSubscriber(t, js))
		publishN(t, js, 5)
		got := receive(t, b, 5)
		b.Ack(got[4])
		ackedThrough(t, js, 5, 0)
		// A stale pull request takes the stream's last message: one of a
		// reader whose session just ended, which the server serves until
		// it learns the subscription is gone. No delivery comes after it
		// to show the reader it missed one.
		stolen := steal(t, js)
		natstest.Until(t, 10*time.Second, "the other pull waiting", func() bool { return consumerInfo(t, js).NumWaiting >= 2 })
		var seq uint64
		for published := uint64(5); seq == 0; {
			publishN(t, js, 1)
			published++
			select {
			case seq = <-stolen:
				if seq != published {
					t.Fatalf("the other pull took message %d, want %d, the last", seq, published)
				}
			case msgs := <-b.C():
				wantSeqs(t, "delivered to the reader", msgs, published, published)
			case <-time.After(10 * time.Second):
				t.Fatalf("message %d delivered to no pull", published)
			}
		}
		deliveredAgain(t, b, seq)
	})

	t.Run("an ack of a reader whose session ended is not sent", func(t *testing.T) {
		ns := natstest.Start(t, "")
		_, js := natstest.Connect(t, ns)
		if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: testStream, Subjects: []string{"wmtest.>"}, Storage: jetstream.MemoryStorage}); err != nil {
			t.Fatal(err)
		}
		publishN(t, js, 10)
		_, js1 := natstest.Connect(t, ns)
		first := batchSubscriber(t, js1)
		a := subscribeBatches(t, first)
		old := receive(t, a, 10)
		a.Ack(old[4])
		ackedThrough(t, js, 5, 5)
		// The first reader's session ends while its process goes on, its
		// reader still holding 6..10; the next reader resets the consumer
		// and is delivered them again, as deliveries 1..5.
		if err := first.Close(); err != nil {
			t.Fatal(err)
		}
		b := subscribeBatches(t, batchSubscriber(t, js))
		again := receive(t, b, 5)
		wantSeqs(t, "delivered to the next reader", again, 6, 10)
		// Sent, the old delivery 8's ack would move the floor past the new
		// reader's deliveries, and the server would drop its acks.
		a.Ack(old[7])
		b.Ack(again[4])
		ackedThrough(t, js, 10, 0)
		if d := consumerInfo(t, js).Delivered.Consumer; d != 5 {
			t.Errorf("last delivery %d, want 5: acked by a session after the next reader's first", d)
		}
	})

	t.Run("acks the server ignores end the session", func(t *testing.T) {
		js := setup(t)
		// The consumer, made by a reader that stopped before anything was
		// stored.
		first := batchSubscriber(t, js)
		subscribeBatches(t, first)
		if err := first.Close(); err != nil {
			t.Fatal(err)
		}
		publishN(t, js, 10)
		// Another reader holds 1..10, acks 5, and acks 8 after the reset
		// the next session begins with.
		cons, err := js.Consumer(t.Context(), testStream, "batches")
		if err != nil {
			t.Fatal(err)
		}
		fetched, err := cons.Fetch(10, jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var stale []jetstream.Msg
		for m := range fetched.Messages() {
			stale = append(stale, m)
		}
		if len(stale) != 10 {
			t.Fatalf("fetched %d messages, want 10", len(stale))
		}
		if err := stale[4].Ack(); err != nil {
			t.Fatal(err)
		}
		ackedThrough(t, js, 5, 5)
		b := subscribeBatches(t, batchSubscriber(t, js))
		again := receive(t, b, 5)
		wantSeqs(t, "delivered to the next reader", again, 6, 10)
		if err := stale[7].Ack(); err != nil {
			t.Fatal(err)
		}
		natstest.Until(t, 10*time.Second, "the stale ack taken", func() bool { return consumerInfo(t, js).AckFloor.Stream == 8 })
		// The reader's ack of 10 is dropped; its session ends, and the next
		// one delivers 9 and 10 again, whose ack is heard.
		b.Ack(again[4])
		natstest.Eventually(t, 30*time.Second, "acked through 10", func() error {
			select {
			case msgs := <-b.C():
				b.Ack(msgs[len(msgs)-1])
			case <-time.After(100 * time.Millisecond):
			}
			if info := consumerInfo(t, js); info.AckFloor.Stream != 10 || info.NumAckPending != 0 {
				return fmt.Errorf("ack floor %d, %d pending", info.AckFloor.Stream, info.NumAckPending)
			}
			return nil
		})
	})

	t.Run("a consumer acking each message is taken over from its floor", func(t *testing.T) {
		js := setup(t)
		publishN(t, js, 30)
		sub := batchSubscriber(t, js)
		msgs, err := sub.Subscribe(t.Context(), batchTopic)
		if err != nil {
			t.Fatal(err)
		}
		for range 10 {
			select {
			case m := <-msgs:
				m.Ack()
			case <-time.After(10 * time.Second):
				t.Fatal("no message delivered")
			}
		}
		ackedThrough(t, js, 10, -1)
		if err := sub.Close(); err != nil {
			t.Fatal(err)
		}
		b := subscribeBatches(t, batchSubscriber(t, js))
		got := receive(t, b, 20)
		wantSeqs(t, "delivered after the change", got, 11, 30)
		if p := consumerInfo(t, js).Config.AckPolicy; p != jetstream.AckAllPolicy {
			t.Errorf("consumer's ack policy = %v, want %v", p, jetstream.AckAllPolicy)
		}
		b.Ack(got[19])
		ackedThrough(t, js, 30, 0)
	})

	t.Run("a second reader waits for the first to stop", func(t *testing.T) {
		js := setup(t)
		publishN(t, js, 20)
		first := batchSubscriber(t, js)
		b := subscribeBatches(t, first)
		got := receive(t, b, 20)
		b.Ack(got[9])
		ackedThrough(t, js, 10, 10)
		second := subscribeBatches(t, batchSubscriber(t, js))
		publishN(t, js, 10)
		receive(t, b, 10)
		select {
		case msgs := <-second.C():
			t.Fatalf("%d messages delivered to a second reader while the first pulls", len(msgs))
		case <-time.After(500 * time.Millisecond):
		}
		if err := first.Close(); err != nil {
			t.Fatal(err)
		}
		// What the first had not acked, then the rest.
		deadline := time.After(30 * time.Second)
		var again []watermilljs.Msg
		for len(again) < 20 {
			select {
			case msgs := <-second.C():
				again = append(again, msgs...)
			case <-deadline:
				t.Fatalf("received %d messages after the first reader stopped, want 20", len(again))
			}
		}
		wantSeqs(t, "delivered to the second reader", again, 11, 30)
	})

	t.Run("caught up once the reader has the last delivered", func(t *testing.T) {
		js := setup(t)
		publishN(t, js, 10)
		b := subscribeBatches(t, batchSubscriber(t, js))
		first := receive(t, b, 10)
		caughtUp := func(last watermilljs.Msg) bool {
			t.Helper()
			ok, err := b.CaughtUp(t.Context(), last)
			if err != nil {
				t.Fatal(err)
			}
			return ok
		}
		if !caughtUp(first[9]) {
			t.Errorf("CaughtUp(message 10) = false with 10 stored and received, want true")
		}
		// Delivered to this process, nothing left in the stream, not
		// received yet: the tail of a backlog the reader has not had.
		publishN(t, js, 10)
		natstest.Until(t, 10*time.Second, "message 20 delivered", func() bool {
			info := consumerInfo(t, js)
			return info.NumPending == 0 && info.Delivered.Stream == 20
		})
		if caughtUp(first[9]) {
			t.Errorf("CaughtUp(message 10) = true with 11..20 delivered and not received, want false")
		}
		rest := receive(t, b, 10)
		if !caughtUp(rest[9]) {
			t.Errorf("CaughtUp(message 20) = false with 20 stored and received, want true")
		}
	})

	t.Run("a lost consumer is made again", func(t *testing.T) {
		js := setup(t)
		publishN(t, js, 10)
		b := subscribeBatches(t, batchSubscriber(t, js))
		got := receive(t, b, 10)
		b.Ack(got[9])
		ackedThrough(t, js, 10, 0)
		if err := js.DeleteConsumer(t.Context(), testStream, "batches"); err != nil {
			t.Fatal(err)
		}
		publishN(t, js, 10)
		// Made again, the consumer starts over: the stream's every message.
		natstest.Until(t, 30*time.Second, "message 20 delivered", func() bool {
			for {
				select {
				case msgs := <-b.C():
					for _, m := range msgs {
						if m.Sequence == 20 {
							return true
						}
					}
				default:
					return false
				}
			}
		})
	})
}

// TestBatchesBoundedByBytes stores messages of 1 KiB and subscribes with
// PrefetchBytes of 32 KiB and a reader that does not read: what is
// delivered and waits stays within about five times PrefetchBytes
// (without the bound, the pull takes every one), and once the reader
// reads it gets all of them, in order.
func TestBatchesBoundedByBytes(t *testing.T) {
	js := setup(t)
	const n, size = 2000, 1 << 10
	pub := watermilljs.NewPublisher(js)
	for i := range n {
		if err := pub.Publish("wmtest.batch.k0", message.NewMessage(watermill(i), make([]byte, size))); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := watermilljs.NewSubscriber(js, watermilljs.SubscriberConfig{
		Stream:        testStream,
		Durable:       func(string) string { return "batches" },
		AckWait:       time.Hour,
		PrefetchBytes: 32 * size,
		MaxInFlight:   n,
		Log:           slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	b := subscribeBatches(t, sub)
	natstest.Until(t, 10*time.Second, "deliveries", func() bool { return consumerInfo(t, js).NumAckPending > 0 })
	// Whatever the pull would take, it takes within this; on a slow
	// machine it may take less, which only makes the check weaker.
	time.Sleep(time.Second)
	// Twice PrefetchBytes waiting and twice handed over, one message in
	// take and PrefetchBytes asked of the server: 161 messages of 1 KiB
	// and their headers; 200 for how the client rounds its asks.
	if got := consumerInfo(t, js).NumAckPending; got > 200 {
		t.Errorf("%d messages delivered while the reader read none, want at most 200", got)
	}
	wantSeqs(t, "delivered once read", receive(t, b, n), 1, n)
}
