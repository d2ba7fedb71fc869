package live

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/stream"
)

// newHub returns a hub decrypting with keys and its own connection to s,
// closed when the test ends.
func newHub(t *testing.T, s *natsembed.Server, keys Keys) (*Hub, *nats.Conn) {
	t.Helper()
	nc, _ := natstest.Connect(t, s)
	h := NewHub(slog.New(slog.DiscardHandler), keys, nil)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Close(ctx); err != nil {
			t.Errorf("Close = %v", err)
		}
	})
	return h, nc
}

// republisher stands in for the CHAT stream's republish of stored events.
type republisher struct {
	t       *testing.T
	pub, nc *nats.Conn // nc: the hub's
	seq     uint64
}

// publish republishes a stored closing of tenant's conversation c1 of
// visitor v1, shown, unplaced, even when its payload cannot be read, and
// returns its sequence once the hub's connection has read it.
func (r *republisher) publish(tenant string) uint64 {
	r.t.Helper()
	return r.publishOf(tenant, "v1", "c1")
}

// publishOf is publish for visitor's conversation.
func (r *republisher) publishOf(tenant, visitor, conversation string) uint64 {
	r.t.Helper()
	r.seq++
	e := event.Envelope{ID: "e" + strconv.FormatUint(r.seq, 10), Type: event.ConversationClosed, Tenant: tenant, Person: visitor, Aggregate: conversation, At: time.Now(), Body: []byte("sealed")}
	m := e.Msg(stream.LiveChatSubject(tenant, conversation))
	m.Header.Set(jetstream.SequenceHeader, strconv.FormatUint(r.seq, 10))
	if err := r.pub.PublishMsg(m); err != nil {
		r.t.Fatal(err)
	}
	// Once the publisher's flush returns the server has routed the event;
	// once the hub's returns the hub's connection has read whatever it was
	// sent before the answer.
	if err := r.pub.Flush(); err != nil {
		r.t.Fatal(err)
	}
	if err := r.nc.Flush(); err != nil {
		r.t.Fatal(err)
	}
	return r.seq
}

// followed returns a hub following s with keys and a republisher to it.
func followed(t *testing.T, keys Keys) (*Hub, *republisher) {
	t.Helper()
	s := natstest.Start(t, t.TempDir())
	h, nc := newHub(t, s, keys)
	h.Follow(nc)
	pub, _ := natstest.Connect(t, s)
	return h, &republisher{t: t, pub: pub, nc: nc}
}

// readEvent reads the next frame of c.
func readEvent(t *testing.T, ctx context.Context, c *websocket.Conn) Event {
	t.Helper()
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestOnlyConnectedTenantsAreFollowed checks that the hub is sent the
// events of a tenant only while a session of the tenant is connected to
// it, and that a session is sent its tenant's events from its handshake
// on.
func TestOnlyConnectedTenantsAreFollowed(t *testing.T) {
	h, r := followed(t, noKeys{})
	received := func() uint64 { return r.nc.Stats().InMsgs }

	r.publish("demo")
	if got := received(); got != 0 {
		t.Fatalf("hub with no session received %d events, want 0", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := dial(t, ctx, h, auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor})
	r.publish("other")
	seq := r.publish("demo")
	if got := received(); got != 1 {
		t.Errorf("hub with a session of demo received %d events, want demo's one", got)
	}
	if e := readEvent(t, ctx, c); e.Type != TypeClosed || e.ConversationID != "c1" || e.Seq != seq {
		t.Errorf("visitor's frame = %+v, want c1 closed at seq %d", e, seq)
	}

	c.CloseNow()
	natstest.Until(t, 10*time.Second, "the session ended", func() bool { return h.Sessions() == 0 })
	r.publish("demo")
	if got := received(); got != 1 {
		t.Errorf("hub whose last session of demo ended received %d events, want 1", got)
	}
}

// TestCloseEndsSubscriptions checks that Close ends every subscription to
// events at once, even one held by a session that has not ended yet.
func TestCloseEndsSubscriptions(t *testing.T) {
	h, r := followed(t, noKeys{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	subs := make(chan int, 1)
	dialWith(t, ctx, h, auth.Principal{Tenant: "demo", ID: "s1", Role: auth.RoleSupervisor}, func() {
		// The session is registered and holds its tenant's subscription;
		// a Close that does not wait for it must still end it.
		expired, cancel := context.WithCancel(ctx)
		cancel()
		_ = h.Close(expired)
		subs <- r.nc.NumSubscriptions()
	})
	if n := <-subs; n != 0 {
		t.Errorf("closed hub holds %d subscriptions, want 0", n)
	}
}

// TestStartWithoutBus checks that a session the bus cannot subscribe for
// is refused with ErrUnavailable before its handshake, and that a session
// refused by the limits is refused for them without asking the bus.
func TestStartWithoutBus(t *testing.T) {
	h, r := followed(t, noKeys{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := auth.Principal{Tenant: "demo", ID: "s1", Role: auth.RoleSupervisor}
	dial(t, ctx, h, p)
	r.nc.Close()

	tests := []struct {
		name string
		give auth.Principal
		want error
	}{
		{"over the limits", p, ErrPrincipalSessions},
		{"bus closed", auth.Principal{Tenant: "other", ID: "s2", Role: auth.RoleSupervisor}, ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			accepted := false
			err := h.Start(ctx, ctx, tt.give, Limits{Principal: 1}, nil, func() (*websocket.Conn, error) {
				accepted = true
				return nil, errors.New("no client")
			})
			if !errors.Is(err, tt.want) || accepted {
				t.Errorf("Start(%v) = %v, accepted %t; want %v, not accepted", tt.give, err, accepted, tt.want)
			}
			if n := h.Sessions(); n != 1 {
				t.Errorf("Sessions() = %d, want 1", n)
			}
		})
	}
}

// stalledKeys holds the first lookup until release is closed, as a key
// service that does not answer holds the pipeline; every lookup finds no
// key.
type stalledKeys struct {
	entered chan struct{}
	release chan struct{}
}

func (k stalledKeys) Get(context.Context, string, string) (personkey.Keys, error) {
	select {
	case k.entered <- struct{}{}:
	default:
	}
	<-k.release
	return personkey.Keys{}, personkey.ErrNotFound
}

// TestPipelineIsBoundAcrossTenants checks that what waits for a stalled
// pipeline is bounded once for all the tenants followed, by events and by
// bytes, that what exceeds it is dropped, and that what waited is then
// delivered in order.
func TestPipelineIsBoundAcrossTenants(t *testing.T) {
	size := int64(len("sealed")) // what a republished closing carries
	tests := []struct {
		name   string
		events int
		bytes  int64
		want   int // events that wait
	}{
		{"by events", 4, 100 * size, 4},
		{"by bytes", 100, 2 * size, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys := stalledKeys{entered: make(chan struct{}, 1), release: make(chan struct{})}
			h, r := followed(t, keys)
			h.events, h.maxWaiting = make(chan queued, tt.events), tt.bytes
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conns := map[string]*websocket.Conn{}
			for _, tenant := range []string{"a", "b"} {
				conns[tenant] = dial(t, ctx, h, auth.Principal{Tenant: tenant, ID: "s1", Role: auth.RoleSupervisor})
			}
			r.publish("a")
			select {
			case <-keys.entered:
			case <-ctx.Done():
				t.Fatal("the pipeline never asked for a key")
			}
			const sent = 6
			for i := range sent {
				r.publish([]string{"a", "b"}[i%2])
			}
			natstest.Until(t, 10*time.Second, "every event waits or is dropped", func() bool {
				return int64(len(h.events))+h.dropped.Load() == sent
			})
			if got := len(h.events); got != tt.want {
				t.Errorf("%d events wait, want %d", got, tt.want)
			}
			close(keys.release)
			// The last events must find room: published while the
			// pipeline still held what waited, they could be dropped too.
			natstest.Until(t, 10*time.Second, "what waited taken by the pipeline", func() bool {
				return len(h.events) == 0 && h.waiting.Load() == 0
			})
			last := map[string]uint64{"a": r.publish("a"), "b": r.publish("b")}
			got := 0
			for tenant, c := range conns {
				var prev uint64
				for {
					e := readEvent(t, ctx, c)
					if e.Type == TypeResync {
						continue // TestDroppedEventsResync
					}
					if e.Seq <= prev {
						t.Errorf("tenant %s: seq %d after %d", tenant, e.Seq, prev)
					}
					prev = e.Seq
					if e.Seq == last[tenant] {
						break
					}
					got++
				}
			}
			if want := 1 + tt.want; got != want {
				t.Errorf("sessions were sent %d events before the last ones, want %d (the stalled one and those that waited)", got, want)
			}
		})
	}
}

// TestDroppedEventsResync checks that every session of a tenant whose
// events the pipeline dropped is sent one resync, after the events it was
// sent and before the next, a session replaying after its replay, whether
// events of the tenant waited in the pipeline or not, and that the
// sessions of a tenant none of whose events were dropped are sent none.
func TestDroppedEventsResync(t *testing.T) {
	keys := stalledKeys{entered: make(chan struct{}, 1), release: make(chan struct{})}
	h, r := followed(t, keys)
	const room = 3
	h.events = make(chan queued, room)
	replaying := make(chan struct{})
	endReplay := sync.OnceFunc(func() { close(replaying) })
	t.Cleanup(endReplay)
	h.history = func(ctx context.Context, _ string, _ uint64, _ int, _ func(uint64, event.Envelope) error) error {
		select {
		case <-replaying:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := []auth.Principal{
		{Tenant: "a", ID: "s1", Role: auth.RoleSupervisor},
		{Tenant: "a", ID: "v1", Role: auth.RoleVisitor}, // the events' visitor
		{Tenant: "a", ID: "v2", Role: auth.RoleVisitor}, // shown none of them
		{Tenant: "a", ID: "a1", Role: auth.RoleAgent},   // shown none: unplaced
		{Tenant: "a", ID: "s2", Role: auth.RoleSupervisor},
	}
	b := auth.Principal{Tenant: "b", ID: "s1", Role: auth.RoleSupervisor}
	c := auth.Principal{Tenant: "c", ID: "s1", Role: auth.RoleSupervisor}
	conns := map[auth.Principal]*websocket.Conn{}
	for _, p := range append(a[:4], b, c) {
		conns[p] = dial(t, ctx, h, p)
	}
	conns[a[4]] = dialSince(t, ctx, h, a[4], 0) // replays until endReplay

	// The pipeline takes a's first event and stalls on its key; b's and
	// two more of a's wait, the next two of a's and c's are dropped.
	// counts reads tenant's events accepted and handled by the pipeline,
	// which writes them as it goes.
	counts := func(tenant string) (accepted, handled uint64) {
		h.mu.RLock()
		t := h.tenants[tenant]
		h.mu.RUnlock()
		t.loss.mu.Lock()
		defer t.loss.mu.Unlock()
		return t.accepted, t.handled
	}
	took := func(tenant string, n uint64, waiting int) func() bool {
		return func() bool {
			accepted, _ := counts(tenant)
			return accepted == n && len(h.events) == waiting
		}
	}
	first := r.publish("a")
	natstest.Until(t, 10*time.Second, "the pipeline took a's first event", took("a", 1, 0))
	fromB := r.publish("b")
	natstest.Until(t, 10*time.Second, "b's event waits", took("b", 1, 1))
	waited := []uint64{r.publish("a"), r.publish("a")}
	r.publish("a")
	r.publish("a")
	natstest.Until(t, 10*time.Second, "a's last two events dropped", func() bool { return h.dropped.Load() == 2 })
	r.publish("c")
	natstest.Until(t, 10*time.Second, "c's event dropped", func() bool { return h.dropped.Load() == 3 })
	close(keys.release)
	natstest.Until(t, 10*time.Second, "the replaying session told", func() bool {
		h.mu.RLock()
		defer h.mu.RUnlock()
		for s := range h.tenants["a"].overseers {
			if s.p == a[4] {
				s.mu.Lock()
				defer s.mu.Unlock()
				return s.overflow
			}
		}
		return false
	})
	endReplay()
	last := map[string]uint64{"a": r.publish("a"), "b": r.publish("b"), "c": r.publish("c")}
	// v2 and a1 are shown none of a's events: each is sent a later one of
	// its own, after which a second resync would have come before, v2 an
	// event of its conversation, a1 an erased frame, once the pipeline
	// has told a's sessions (it has handled the v2 event, which came after).
	ofV2 := r.publishOf("a", "v2", "c2")
	natstest.Until(t, 10*time.Second, "the pipeline handled v2's event", func() bool {
		_, handled := counts("a")
		return handled == 5
	})
	h.Erased("a", "v9")

	// frames reads c's frames up to the one at seq or an erased one, or 10
	// of them.
	frames := func(c *websocket.Conn, seq uint64) []string {
		var got []string
		for len(got) < 10 {
			e := readEvent(t, ctx, c)
			if e.Type == TypeResync || e.Type == TypeErased {
				got = append(got, e.Type)
				if e.Type == TypeErased {
					break
				}
				continue
			}
			got = append(got, strconv.FormatUint(e.Seq, 10))
			if e.Seq == seq {
				break
			}
		}
		return got
	}
	seqs := func(xs ...uint64) []string {
		var out []string
		for _, x := range xs {
			out = append(out, strconv.FormatUint(x, 10))
		}
		return out
	}
	shown := append(seqs(first, waited[0], waited[1]), TypeResync, strconv.FormatUint(last["a"], 10))
	tests := []struct {
		give  auth.Principal
		until uint64 // the last frame's seq
		want  []string
	}{
		{a[0], last["a"], shown},
		{a[1], last["a"], shown},
		{a[2], ofV2, append([]string{TypeResync}, seqs(ofV2)...)},
		{a[3], 0, []string{TypeResync, TypeErased}},
		// Told during its replay: a resync after it, then what was held.
		{a[4], last["a"], append([]string{TypeResync}, seqs(first, waited[0], waited[1], last["a"])...)},
		{b, last["b"], seqs(fromB, last["b"])},
		// Nothing of c's waited: told as soon as the pipeline moved on.
		{c, last["c"], append([]string{TypeResync}, seqs(last["c"])...)},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, frames(conns[tt.give], tt.until)); diff != "" {
			t.Errorf("frames of %v (-want +got):\n%s", tt.give, diff)
		}
	}
}

// stallingDialer dials the server, and holds the second dial, a
// reconnection's, until release is closed: nats.go holds its connection's
// lock while it reconnects, so a Subscribe or an Unsubscribe waits
// meanwhile, as it does for a write stuck on a full socket.
type stallingDialer struct {
	first   net.Conn      // the connection first dialled
	stalled chan struct{} // closed once the reconnection waits
	release chan struct{}
	dials   atomic.Int32
}

func (d *stallingDialer) Dial(network, address string) (net.Conn, error) {
	n := d.dials.Add(1)
	if n == 2 {
		close(d.stalled)
		<-d.release
	}
	c, err := net.Dial(network, address)
	if n == 1 {
		d.first = c
	}
	return c, err
}

// TestStalledBusHoldsUpNoSession checks that a tenant's subscription or
// unsubscription waiting on the bus holds up neither the hub's count of
// sessions nor the start and end of other sessions, and that the session
// waiting for its tenant's subscription gets its answer once the bus is
// back.
func TestStalledBusHoldsUpNoSession(t *testing.T) {
	s := natstest.Start(t, t.TempDir())
	d := &stallingDialer{stalled: make(chan struct{}), release: make(chan struct{})}
	nc, err := nats.Connect(s.ClientURL(), nats.SetCustomDialer(d), nats.ReconnectWait(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	h := NewHub(slog.New(slog.DiscardHandler), noKeys{}, nil)
	h.Follow(nc)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Close(ctx); err != nil {
			t.Errorf("Close = %v", err)
		}
	})
	release := sync.OnceFunc(func() { close(d.release) })
	t.Cleanup(release) // before Close: the hub's calls to the bus wait
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := dial(t, ctx, h, auth.Principal{Tenant: "a", ID: "s1", Role: auth.RoleSupervisor})

	d.first.Close()
	select {
	case <-d.stalled:
	case <-ctx.Done():
		t.Fatal("the connection never reconnected")
	}
	// sessions is h.Sessions(), or -1 while it does not answer.
	sessions := func() int {
		n := make(chan int, 1)
		go func() { n <- h.Sessions() }()
		select {
		case got := <-n:
			return got
		case <-time.After(time.Second):
			return -1
		}
	}
	started := make(chan error, 1)
	go func() {
		started <- h.Start(ctx, ctx, auth.Principal{Tenant: "b", ID: "s1", Role: auth.RoleSupervisor}, Limits{}, nil, func() (*websocket.Conn, error) {
			return nil, errors.New("no client")
		})
	}()
	natstest.Until(t, 10*time.Second, "b's first session registered, its subscription waiting", func() bool { return sessions() == 2 })
	a.CloseNow()
	natstest.Until(t, 10*time.Second, "a's last session ended, its unsubscription waiting", func() bool { return sessions() == 1 })
	release()
	if err := natstest.Returns(t, 10*time.Second, "the bus came back", started); err != nil {
		t.Errorf("Start(b) = %v, want nil (its accept failed)", err)
	}
	natstest.Until(t, 10*time.Second, "no session left", func() bool { return h.Sessions() == 0 })
	if n := nc.NumSubscriptions(); n != 0 {
		t.Errorf("hub without a session holds %d subscriptions, want 0", n)
	}
}
