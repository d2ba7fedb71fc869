package httpapi

import (
	"net"
	"net/http"
	"testing"
	"time"
)

// TestConnAfterCloseNewIsClosed accepts a connection once a shutdown has
// begun (CloseNew): ConnState closes it and returns, its count given back,
// rather than waiting forever on the lock it holds.
func TestConnAfterCloseNewIsClosed(t *testing.T) {
	a := &API{conns: &conns{ofAddr: make(map[string]int)}}
	a.CloseNew()
	server, client := net.Pipe()
	defer client.Close()
	lc, _, limit := a.conns.admit(server)
	if lc == nil {
		t.Fatalf("admit() refused the connection: %s", limit)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.ConnState(lc, http.StateNew)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("ConnState(StateNew) after CloseNew still running after 30s")
	}
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Error("the connection accepted after CloseNew is still open")
	}
	if n := a.conns.count(); n != 0 {
		t.Errorf("connections counted after the close = %d, want 0", n)
	}
}
