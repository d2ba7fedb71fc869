// Package natstest starts embedded JetStream servers for tests.
package natstest

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/natsembed"
)

// Start runs an embedded JetStream server on a random loopback port with its
// store in dir (a new temp dir when empty), stopped when the test ends.
func Start(t testing.TB, dir string) *natsembed.Server {
	t.Helper()
	return StartWith(t, natsembed.Options{StoreDir: dir})
}

// StartWith is Start for a server with options of its own (users, a payload
// limit): o.StoreDir is a new temp dir when empty.
func StartWith(t testing.TB, o natsembed.Options) *natsembed.Server {
	t.Helper()
	if o.StoreDir == "" {
		o.StoreDir = t.TempDir()
	}
	s, err := natsembed.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Connect opens a client connection to s with opts (a user's credentials),
// closed when the test ends.
func Connect(t testing.TB, s *natsembed.Server, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// Eventually polls cond every 10 ms until it returns nil, and fails the
// test with cond's last error when within has passed: the way tests wait
// for what happens in the background, with a deadline generous enough for
// a loaded machine rather than a sleep.
func Eventually(t testing.TB, within time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v after %v", what, err, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Until is Eventually for a condition that holds or not.
func Until(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	Eventually(t, within, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

var errNotYet = errors.New("not yet")

// Returns waits for what a service's Run, started on its own goroutine,
// sends on done when it returns, and returns it; it fails the test when
// within passes first, what naming why Run should have returned. Tests of a
// service giving up read its end this way rather than each with a select.
func Returns(t testing.TB, within time.Duration, what string, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(within):
		t.Fatalf("Run() still running %v after %s", within, what)
		return nil
	}
}
