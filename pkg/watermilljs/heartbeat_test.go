package watermilljs_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/watermilljs"
)

// TestLateHeartbeat stalls what a subscriber's connection hears, until its
// pull misses heartbeats, as on a machine too busy to read them in time,
// and lets it hear again once the subscriber asks JetStream about its
// consumer. The consumer still exists, so the subscription goes on with
// it: nothing failed, the consumer is made only once, and a message
// published after is delivered.
func TestLateHeartbeat(t *testing.T) {
	for _, batches := range []bool{false, true} {
		t.Run(fmt.Sprintf("batches_%t", batches), func(t *testing.T) {
			s := natstest.Start(t, "")
			_, js := natstest.Connect(t, s)
			createTestStream(t, js)
			link := newStallDialer()
			_, subJS := natstest.Connect(t, s, nats.SetCustomDialer(link))
			t.Cleanup(link.resume)
			ready := &readiness{}
			sub, err := watermilljs.NewSubscriber(subJS, watermilljs.SubscriberConfig{
				Stream:  testStream,
				Durable: durable("hb"),
				Log:     slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
				Health:  ready.set,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sub.Close() })
			next := subscribe(t, sub, "wmtest.hb", batches)
			pub := watermilljs.NewPublisher(js)
			if err := pub.Publish("wmtest.hb", message.NewMessage("m-1", []byte("before"))); err != nil {
				t.Fatal(err)
			}
			if got := next(); got != "before" {
				t.Fatalf("delivered %q, want %q", got, "before")
			}
			// The Ack through before the stall, or it would time out in it.
			natstest.Until(t, 10*time.Second, "the first message acknowledged", func() bool {
				c, err := js.Consumer(t.Context(), testStream, durable("hb")("wmtest.hb"))
				return err == nil && c.CachedInfo().AckFloor.Stream == 1
			})

			link.stall()
			// Two heartbeats missed take 2 × 2.5 s (half the pull expiry).
			natstest.Until(t, 30*time.Second, "the subscriber asking about its consumer after missed heartbeats", func() bool {
				return !link.stalled()
			})
			if err := pub.Publish("wmtest.hb", message.NewMessage("m-2", []byte("after"))); err != nil {
				t.Fatal(err)
			}
			if got := next(); got != "after" {
				t.Errorf("delivered %q after the heartbeats came late, want %q", got, "after")
			}
			if n := link.creates.Load(); n != 1 {
				t.Errorf("consumer made %d times, want 1: a heartbeat late while the consumer exists loses nothing", n)
			}
			if fails := ready.failures(); len(fails) > 0 {
				t.Errorf("Health told failures %v, want none", fails)
			}
		})
	}
}

// stallDialer dials connections whose reads a test can stall, so that a
// client hears nothing from its server, heartbeats included, while what it
// sends still goes out. A stall ends once the client sends a request about
// a consumer (its info, or making it), which a subscriber sends only after
// its pull missed heartbeats; the dialer counts the requests making one.
type stallDialer struct {
	creates atomic.Int64

	mu sync.Mutex
	// open is closed while reads flow.
	open chan struct{}
}

var (
	createRequest = []byte("$JS.API.CONSUMER.CREATE.")
	infoRequest   = []byte("$JS.API.CONSUMER.INFO.")
)

func newStallDialer() *stallDialer {
	d := &stallDialer{open: make(chan struct{})}
	close(d.open)
	return d
}

func (d *stallDialer) Dial(network, address string) (net.Conn, error) {
	c, err := net.Dial(network, address)
	if err != nil {
		return nil, err
	}
	return &stallConn{Conn: c, d: d, closed: make(chan struct{})}, nil
}

func (d *stallDialer) stall() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.open = make(chan struct{})
}

func (d *stallDialer) resume() {
	d.mu.Lock()
	defer d.mu.Unlock()
	select {
	case <-d.open:
	default:
		close(d.open)
	}
}

func (d *stallDialer) stalled() bool {
	select {
	case <-d.gate():
		return false
	default:
		return true
	}
}

// gate is closed while reads flow.
func (d *stallDialer) gate() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.open
}

// sent watches what the client sends. A request is written whole, in one
// Write, since nats.go flushes its buffer of a few small commands at once.
func (d *stallDialer) sent(p []byte) {
	d.creates.Add(int64(bytes.Count(p, createRequest)))
	if bytes.Contains(p, createRequest) || bytes.Contains(p, infoRequest) {
		d.resume()
	}
}

type stallConn struct {
	net.Conn
	d         *stallDialer
	closeOnce sync.Once
	closed    chan struct{}
}

func (c *stallConn) Read(p []byte) (int, error) {
	select {
	case <-c.d.gate():
	case <-c.closed:
		return 0, net.ErrClosed
	}
	return c.Conn.Read(p)
}

func (c *stallConn) Write(p []byte) (int, error) {
	c.d.sent(p)
	return c.Conn.Write(p)
}

func (c *stallConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}
