package live

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/personkey"
)

type noKeys struct{}

func (noKeys) Get(context.Context, string, string) (personkey.Keys, error) {
	return personkey.Keys{}, personkey.ErrNotFound
}

// dial serves h on a loopback listener, where every WebSocket session runs
// as p, and connects a client to it.
func dial(t *testing.T, ctx context.Context, h *Hub, p auth.Principal) *websocket.Conn {
	t.Helper()
	return dialWith(t, ctx, h, p, func() {})
}

// dialSince is dial for a client that reconnects after seeing since.
func dialSince(t *testing.T, ctx context.Context, h *Hub, p auth.Principal, since uint64) *websocket.Conn {
	t.Helper()
	return dialAt(t, ctx, h, p, &since, func() {})
}

// dialWith is dial, running during each handshake, once the session is
// registered and before the connection is accepted.
func dialWith(t *testing.T, ctx context.Context, h *Hub, p auth.Principal, during func()) *websocket.Conn {
	t.Helper()
	return dialAt(t, ctx, h, p, nil, during)
}

// dialAt is dialWith for a client that saw since (nil: a new client).
func dialAt(t *testing.T, ctx context.Context, h *Hub, p auth.Principal, since *uint64, during func()) *websocket.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.Start(context.Background(), r.Context(), p, Limits{}, since, func() (*websocket.Conn, error) {
			during()
			return websocket.Accept(w, r, nil)
		})
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c, _, err := websocket.Dial(ctx, "ws://"+ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// TestSlowClientIsDropped checks that a client that stops reading is
// disconnected once its queue is full, and that sending to it never blocks.
func TestSlowClientIsDropped(t *testing.T) {
	h := NewHub(slog.New(slog.DiscardHandler), noKeys{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	deadline, _ := ctx.Deadline()
	dial(t, ctx, h, auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor})
	var s *session
	natstest.Until(t, time.Until(deadline), "the session registered", func() bool {
		h.mu.RLock()
		defer h.mu.RUnlock()
		for x := range h.tenants["demo"].visitorsOrNil("v1") {
			s = x
		}
		return s != nil
	})

	frame := make([]byte, 64<<10)
	start := time.Now()
	for i := 0; i < 4*QueueLen && h.Sessions() > 0; i++ {
		s.send(frame)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("sending to a slow client took %v; send must not block", d)
	}
	natstest.Eventually(t, time.Until(deadline), "the slow client dropped", func() error {
		if n := h.Sessions(); n != 0 {
			return fmt.Errorf("Sessions() = %d after the client stopped reading, want 0", n)
		}
		return nil
	})
}

func (t *tenantSessions) visitorsOrNil(id string) set {
	if t == nil {
		return nil
	}
	return t.visitors[id]
}

// askedKeys records whose keys were asked for.
type askedKeys struct {
	mu    sync.Mutex
	asked []string
}

func (k *askedKeys) Get(_ context.Context, tenant, subject string) (personkey.Keys, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.asked = append(k.asked, tenant+"/"+subject)
	return personkey.Keys{}, nil
}

func (k *askedKeys) list() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.asked)
}

// TestVisitorKeysFetchedOnConnect checks that a visitor's keys are asked for
// as their session starts, before any event of theirs needs them, and that
// other roles' sessions ask for nothing.
func TestVisitorKeysFetchedOnConnect(t *testing.T) {
	keys := &askedKeys{}
	h := NewHub(slog.New(slog.DiscardHandler), keys, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	deadline, _ := ctx.Deadline()
	dial(t, ctx, h, auth.Principal{Tenant: "demo", ID: "a1", Role: auth.RoleAgent})
	dial(t, ctx, h, auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor})
	natstest.Until(t, time.Until(deadline), "the visitor's keys asked for", func() bool { return len(keys.list()) > 0 })
	natstest.Eventually(t, time.Until(deadline), "both sessions registered", func() error {
		if n := h.Sessions(); n != 2 {
			return fmt.Errorf("Sessions() = %d, want 2", n)
		}
		return nil
	})
	if diff := cmp.Diff([]string{"demo/v1"}, keys.list()); diff != "" {
		t.Errorf("keys asked for (-want +got):\n%s", diff)
	}
}

// TestEventDuringHandshakeIsDelivered checks that a session is registered
// before its WebSocket handshake completes: an event the hub hands it
// meanwhile, one stored just as the client sees the handshake, reaches the
// client once it does.
func TestEventDuringHandshakeIsDelivered(t *testing.T) {
	h := NewHub(slog.New(slog.DiscardHandler), noKeys{}, nil)
	p := auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor}
	const early = `{"type":"early"}`
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := dialWith(t, ctx, h, p, func() {
		h.mu.RLock()
		sessions := h.tenants[p.Tenant].visitorsOrNil(p.ID)
		h.mu.RUnlock()
		for s := range sessions {
			s.send([]byte(early))
		}
	})
	_, got, err := c.Read(ctx)
	if err != nil || string(got) != early {
		t.Errorf("first frame = %q, %v; want %s", got, err, early)
	}
}

// send queues b for the client as the hub's deliveries do, with s.mu held.
func (s *session) send(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.enqueue(b)
}
