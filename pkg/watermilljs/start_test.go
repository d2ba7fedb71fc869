package watermilljs_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/natsembed"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/watermilljs"
)

// readiness is a service's readiness fed by a Subscriber's Health, as
// services wire it (pkg/rpc Health), counting the reports that a topic
// works and keeping those that it fails.
type readiness struct {
	rpc.Health

	mu    sync.Mutex
	wells int
	fails []error
}

func (r *readiness) set(topic string, err error) {
	r.mu.Lock()
	if err == nil {
		r.wells++
	} else {
		r.fails = append(r.fails, err)
	}
	r.mu.Unlock()
	r.Set(topic, err)
}

func (r *readiness) failures() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.fails)
}

func (r *readiness) workedYet() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.wells > 0
}

func createTestStream(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name:     testStream,
		Subjects: []string{"wmtest.>"},
	}); err != nil {
		t.Fatal(err)
	}
}

// TestSubscribeBeforeConsumerCanBeMade subscribes while JetStream cannot
// make the consumer, as a service starting beside its bus may: the stream
// not there yet, or JetStream away. Subscribe and SubscribeBatches
// succeed; readiness says the topic fails from before they return until
// the consumer is made; once JetStream can make it, the messages are
// delivered.
func TestSubscribeBeforeConsumerCanBeMade(t *testing.T) {
	tests := []struct {
		name string
		// away makes JetStream unable to make the consumer; back, which
		// it returns, makes it able again.
		away    func(t *testing.T, s *natsembed.Server, js jetstream.JetStream) (back func())
		batches bool
	}{
		{name: "no stream yet", away: noStreamYet},
		{name: "no stream yet, batches", away: noStreamYet, batches: true},
		{name: "jetstream away", away: jetStreamAway},
		{name: "jetstream away, batches", away: jetStreamAway, batches: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := natstest.Start(t, "")
			_, js := natstest.Connect(t, s)
			back := tt.away(t, s, js)
			ready := &readiness{}
			sub, err := watermilljs.NewSubscriber(js, watermilljs.SubscriberConfig{
				Stream:  testStream,
				Durable: durable("late"),
				Log:     slog.New(slog.NewTextHandler(t.Output(), nil)),
				Health:  ready.set,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sub.Close() })

			next := subscribe(t, sub, "wmtest.late", tt.batches)
			if err := ready.Err(); err == nil || !strings.Contains(err.Error(), "wmtest.late") {
				t.Errorf("readiness once subscribed = %v, want the topic failing", err)
			}
			if ready.workedYet() {
				t.Fatal("Health told the topic works before JetStream could make its consumer")
			}

			back()
			pub := watermilljs.NewPublisher(js)
			natstest.Eventually(t, 30*time.Second, "publish once JetStream is back", func() error {
				return pub.Publish("wmtest.late", message.NewMessage("m-1", []byte("after")))
			})
			natstest.Eventually(t, 30*time.Second, "ready once the consumer is made", ready.Err)
			if got := next(); got != "after" {
				t.Errorf("delivered %q, want %q", got, "after")
			}
		})
	}
}

// subscribe follows topic with sub, by SubscribeBatches when batches, and
// returns next, which returns the payload of the next message delivered,
// once acknowledged. Subscribing does not wait for the consumer: one that
// cannot be made yet is made in the background.
func subscribe(t *testing.T, sub *watermilljs.Subscriber, topic string, batches bool) (next func() string) {
	t.Helper()
	if batches {
		b, err := sub.SubscribeBatches(t.Context(), topic)
		if err != nil {
			t.Fatalf("SubscribeBatches(%s) = %v, want nil", topic, err)
		}
		return func() string {
			t.Helper()
			m := receive(t, b, 1)[0]
			b.Ack(m)
			return string(m.Payload)
		}
	}
	msgs, err := sub.Subscribe(t.Context(), topic)
	if err != nil {
		t.Fatalf("Subscribe(%s) = %v, want nil", topic, err)
	}
	return func() string {
		t.Helper()
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatal("subscription ended")
			}
			m.Ack()
			return string(m.Payload)
		case <-time.After(30 * time.Second):
			t.Fatal("no message delivered")
			return ""
		}
	}
}

// noStreamYet leaves the stream out until back.
func noStreamYet(t *testing.T, _ *natsembed.Server, js jetstream.JetStream) func() {
	return func() { createTestStream(t, js) }
}

// jetStreamAway turns JetStream off on s; back starts the server again on
// its port and store, as after a restart, since turning JetStream on again
// while calls are in flight races inside nats-server.
func jetStreamAway(t *testing.T, s *natsembed.Server, js jetstream.JetStream) func() {
	t.Helper()
	createTestStream(t, js)
	dir := s.StoreDir()
	if err := s.DisableJetStream(); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		port := s.Addr().(*net.TCPAddr).Port
		s.Close()
		again, err := natsembed.Start(natsembed.Options{Port: port, StoreDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(again.Close)
	}
}

// TestSubscribeGivesUpBeforeConsumerCanBeMade shows a consumer that can
// never be made ending its subscription after GiveUp, as a lost one does:
// the channel closes, and Failed and Err tell why.
func TestSubscribeGivesUpBeforeConsumerCanBeMade(t *testing.T) {
	for _, batches := range []bool{false, true} {
		t.Run(fmt.Sprintf("batches_%t", batches), func(t *testing.T) {
			s := natstest.Start(t, "")
			_, js := natstest.Connect(t, s)
			sub, err := watermilljs.NewSubscriber(js, watermilljs.SubscriberConfig{Stream: testStream, Durable: durable("never"), GiveUp: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sub.Close() })
			// ended is closed with the subscription's channel.
			ended := make(chan struct{})
			if batches {
				b, err := sub.SubscribeBatches(t.Context(), "wmtest.never")
				if err != nil {
					t.Fatalf("SubscribeBatches() = %v, want nil", err)
				}
				go func() {
					defer close(ended)
					for range b.C() {
						t.Error("messages delivered without a stream")
					}
				}()
			} else {
				msgs, err := sub.Subscribe(t.Context(), "wmtest.never")
				if err != nil {
					t.Fatalf("Subscribe() = %v, want nil", err)
				}
				go func() {
					defer close(ended)
					for m := range msgs {
						t.Errorf("message %s delivered without a stream", m.UUID)
					}
				}()
			}
			select {
			case <-ended:
			case <-time.After(30 * time.Second):
				t.Fatal("subscription still open 30s after a GiveUp of 300ms")
			}
			select {
			case <-sub.Failed():
			default:
				t.Error("Failed() not closed after the subscription gave up")
			}
			if err := sub.Err(); !errors.Is(err, jetstream.ErrStreamNotFound) || !strings.Contains(err.Error(), "gave up") {
				t.Errorf("Err() = %v, want one that gave up on %v", err, jetstream.ErrStreamNotFound)
			}
		})
	}
}
