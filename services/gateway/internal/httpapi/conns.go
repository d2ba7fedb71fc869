package httpapi

import (
	"container/list"
	"net"
	"net/http"
	"net/netip"
	"sync"
)

// conns bounds the connections the API is served on, per client address
// and per process, before any request is read: each one holds a file and a
// goroutine whatever it sends. A connection over a bound is closed at once.
// At the process's bound, a new connection first closes the keep-alive
// connection idle the longest, which a client reopens when it needs it
// (HTTP clients retry a request on a connection closed while idle): idle
// connections cannot keep /healthz or a new visitor out. Addresses are
// counted under addressKeys, as long as they have a connection open, and
// never stored. It is safe for concurrent use.
type conns struct {
	max, perAddr int
	keys         *addressKeys
	rejected     func(limit string)

	mu     sync.Mutex
	open   int
	ofAddr map[string]int
	// idle holds the *limitedConns idle between requests, the longest idle
	// first.
	idle list.List
	// fresh holds the connections on which no request has begun; once
	// closingFresh is set (CloseNew), such a connection is closed at once.
	fresh        map[*limitedConn]struct{}
	closingFresh bool
}

// limitedConn is a connection counted by conns.
type limitedConn struct {
	net.Conn
	c   *conns
	key string // "" when not counted per address
	// idle is its place in c.idle while it is idle; released is set once
	// it no longer counts. Both are guarded by c.mu.
	idle     *list.Element
	released bool
}

func (lc *limitedConn) Close() error {
	lc.c.release(lc)
	return lc.Conn.Close()
}

// CloseWrite lets net/http half-close a connection it refuses a request on
// (431, 400), so that the client reads the answer before the close: a
// close with the request unread would reset the connection and lose it.
func (lc *limitedConn) CloseWrite() error {
	if cw, ok := lc.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// admit counts conn, or returns the name of the limit that refuses it;
// victim is an idle connection to close to make room for conn, or nil.
func (c *conns) admit(conn net.Conn) (lc *limitedConn, victim *limitedConn, limit string) {
	lc = &limitedConn{Conn: conn, c: c}
	if c.perAddr > 0 {
		// A peer that is not TCP (a test's pipe) counts as one address.
		ap, _ := netip.ParseAddrPort(conn.RemoteAddr().String())
		lc.key = c.keys.of("", client(ap.Addr()))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.perAddr > 0 && c.ofAddr[lc.key] >= c.perAddr {
		return nil, nil, limitConnsOfAddress
	}
	if c.max > 0 && c.open >= c.max {
		front := c.idle.Front()
		if front == nil {
			return nil, nil, limitConnsProcess
		}
		victim = front.Value.(*limitedConn)
		c.releaseLocked(victim)
	}
	c.open++
	if lc.key != "" {
		c.ofAddr[lc.key]++
	}
	return lc, victim, ""
}

func (c *conns) release(lc *limitedConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.releaseLocked(lc)
}

func (c *conns) releaseLocked(lc *limitedConn) {
	if lc.released {
		return
	}
	lc.released = true
	c.open--
	if lc.key != "" {
		if c.ofAddr[lc.key]--; c.ofAddr[lc.key] == 0 {
			delete(c.ofAddr, lc.key)
		}
	}
	if lc.idle != nil {
		c.idle.Remove(lc.idle)
		lc.idle = nil
	}
	delete(c.fresh, lc)
}

// count returns the connections open.
func (c *conns) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open
}

// ConnState is the http.Server.ConnState of a server that serves the API
// on Listener: it tells which connections are idle.
func (a *API) ConnState(conn net.Conn, s http.ConnState) {
	lc, ok := conn.(*limitedConn)
	if !ok {
		return
	}
	c := lc.c
	c.mu.Lock()
	if s == http.StateNew && !lc.released && c.closingFresh {
		c.mu.Unlock()
		// Closed without the lock: Close releases it under c.mu. (A
		// deferred Close ran before a deferred Unlock, and deadlocked.)
		_ = lc.Close()
		return
	}
	defer c.mu.Unlock()
	if s == http.StateNew && !lc.released {
		if c.fresh == nil {
			c.fresh = make(map[*limitedConn]struct{})
		}
		c.fresh[lc] = struct{}{}
	} else {
		delete(c.fresh, lc)
	}
	switch {
	case lc.released:
	case s == http.StateIdle && lc.idle == nil:
		lc.idle = c.idle.PushBack(lc)
	case s != http.StateIdle && lc.idle != nil:
		c.idle.Remove(lc.idle)
		lc.idle = nil
	}
}

// CloseNew closes the connections on which no request has begun, and every
// one accepted from now on. A graceful shutdown (http.Server.Shutdown) waits
// up to five seconds for such a connection to count as idle — one an HTTP
// client opened to keep in its pool, say — longer than the gateway's whole
// shutdown may take; it holds no request, so closing it loses nothing.
func (a *API) CloseNew() {
	c := a.conns
	c.mu.Lock()
	c.closingFresh = true
	fresh := make([]*limitedConn, 0, len(c.fresh))
	for lc := range c.fresh {
		fresh = append(fresh, lc)
	}
	c.mu.Unlock()
	for _, lc := range fresh {
		_ = lc.Close()
	}
}

// Listener returns ln bounded by the connection limits of the API's Config
// (MaxConns, MaxConnsPerAddr). Serve the API on it with ConnState as the
// server's ConnState hook.
func (a *API) Listener(ln net.Listener) net.Listener {
	return &limitedListener{Listener: ln, a: a}
}

type limitedListener struct {
	net.Listener
	a *API
}

func (l *limitedListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		lc, victim, limit := l.a.conns.admit(conn)
		if victim != nil {
			victim.Conn.Close()
		}
		if lc != nil {
			return lc, nil
		}
		l.a.rejected(limit)
		conn.Close()
	}
}
