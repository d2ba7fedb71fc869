package live

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
)

// TestCloseEndsEverySession checks that Close sends "going away" to the
// sessions of every role, those shown nothing (analysts, auditors)
// included, and returns once they ended, well before its deadline.
func TestCloseEndsEverySession(t *testing.T) {
	h := NewHub(slog.New(slog.DiscardHandler), noKeys{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	roles := []auth.Role{auth.RoleVisitor, auth.RoleAgent, auth.RoleSupervisor, auth.RoleAnalyst, auth.RoleAuditor}
	var conns []*websocket.Conn
	for _, r := range roles {
		conns = append(conns, dial(t, ctx, h, auth.Principal{Tenant: "demo", ID: "p-" + string(r), Role: r}))
	}
	natstest.Until(t, 5*time.Second, "every session registered", func() bool { return h.Sessions() == len(roles) })

	// Each client reads, as a browser does, so that it answers the
	// close handshake.
	ended := make([]chan error, len(conns))
	for i, c := range conns {
		ended[i] = make(chan error, 1)
		go func() {
			_, _, err := c.Read(ctx)
			ended[i] <- err
		}()
	}
	closing, stop := context.WithTimeout(context.Background(), 3*time.Second)
	defer stop()
	if err := h.Close(closing); err != nil {
		t.Fatalf("Close = %v, want nil: a session was left open until the deadline", err)
	}
	for i := range conns {
		if err := <-ended[i]; websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Errorf("%s's session ended with %v, want going away", roles[i], err)
		}
	}
}

// TestCloseSpreadsTheSessions checks that Close ends many sessions over a
// while, at about closeRate, rather than all at once: their clients come
// back to the other instances spread out. Only a lower bound on the spread
// is checked, which a slow machine cannot break.
func TestCloseSpreadsTheSessions(t *testing.T) {
	h := NewHub(slog.New(slog.DiscardHandler), noKeys{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 200 // closeRate a second: about 200 ms
	ended := make(chan time.Time, n)
	for i := range n {
		c := dial(t, ctx, h, auth.Principal{Tenant: "demo", ID: fmt.Sprintf("v%d", i), Role: auth.RoleVisitor})
		go func() {
			_, _, err := c.Read(ctx)
			if websocket.CloseStatus(err) != websocket.StatusGoingAway {
				t.Errorf("a session ended with %v, want going away", err)
			}
			ended <- time.Now()
		}()
	}
	natstest.Until(t, 10*time.Second, "every session registered", func() bool { return h.Sessions() == n })

	closing, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	if err := h.Close(closing); err != nil {
		t.Fatalf("Close = %v", err)
	}
	var first, last time.Time
	for range n {
		at := <-ended
		if first.IsZero() || at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	if want := time.Duration(n) * time.Second / closeRate / 2; last.Sub(first) < want {
		t.Errorf("the %d sessions ended within %v of each other, want at least %v", n, last.Sub(first), want)
	}
}
