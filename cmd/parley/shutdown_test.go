package main

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
)

// A request in flight when `parley all` is told to stop is answered: the
// gateway stops first and drains it while chat and privacy still serve,
// rather than all of them stopping at once and the request finding chat
// gone (503).
func TestStopAnswersRequestInFlight(t *testing.T) {
	dir := t.TempDir()
	a, logs := testAll(t, dir)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	base := a.URL()
	_, visitor := newVisitor(t, base, "demo")

	body := `{"text":"` + marker(t) + `"}`
	pr, pw := io.Pipe()
	req, err := http.NewRequest("POST", base+"/v1/conversations", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(body))
	req.Header.Set("Authorization", "Bearer "+visitor)
	req.Header.Set("Content-Type", "application/json")
	// The body is sent once the server asks for it (100 Continue), which
	// it does when the handler reads it: the request is then in flight.
	// (One whose headers the server has not read when it begins to stop
	// is dropped, as net/http does.)
	req.Header.Set("Expect", "100-continue")
	// A connection of its own: an idle one from the pool would be closed
	// by the shutdown, as it should.
	client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: time.Minute}}
	status := make(chan int, 1)
	go func() {
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("POST /v1/conversations: %v", err)
			status <- 0
			return
		}
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	if _, err := io.WriteString(pw, body[:5]); err != nil {
		t.Fatal(err)
	}

	closed := make(chan error, 1)
	go func() { closed <- a.Close() }()
	addr := strings.TrimPrefix(base, "http://")
	natstest.Until(t, 10*time.Second, "the gateway stops accepting connections", func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	if _, err := io.WriteString(pw, body[5:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()

	if got := <-status; got != http.StatusCreated {
		t.Errorf("request in flight at shutdown = %d, want %d", got, http.StatusCreated)
	}
	if err := <-closed; err != nil {
		t.Errorf("Close() = %v, want nil", err)
	}
}
