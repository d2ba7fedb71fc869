package kvmirror_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/kvmirror"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
)

const within = 10 * time.Second

type value struct {
	N int `json:"n"`
}

func contents(m *kvmirror.Mirror[value]) map[string]value {
	got := make(map[string]value)
	m.Range(func(k string, v value) bool {
		got[k] = v
		return true
	})
	return got
}

// equals polls until m holds exactly want.
func equals(t *testing.T, m *kvmirror.Mirror[value], want map[string]value) {
	t.Helper()
	natstest.Eventually(t, within, "mirror holds the bucket", func() error {
		if d := cmp.Diff(want, contents(m)); d != "" {
			return fmt.Errorf("mirror differs (-want +got):\n%s", d)
		}
		return nil
	})
}

func put(t *testing.T, kv jetstream.KeyValue, key, val string) uint64 {
	t.Helper()
	rev, err := kv.PutString(t.Context(), key, val)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// TestMirrorFollowsBucket checks that a mirror is ready with every value
// stored before it started, then follows puts and deletes, keeps a key's
// last readable value past an unreadable one, and shows its owner's own
// write at once.
func TestMirrorFollowsBucket(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Start(t, ""))
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "B"})
	if err != nil {
		t.Fatal(err)
	}
	put(t, kv, "a", `{"n":1}`)
	put(t, kv, "b", `{"n":2}`)
	put(t, kv, "a", `{"n":3}`)

	m := kvmirror.Start(t.Context(), js, kvmirror.Config[value]{Bucket: "B"})
	t.Cleanup(func() { _ = m.Close() })
	if err := m.Wait(t.Context()); err != nil {
		t.Fatalf("Wait() = %v", err)
	}
	if got, want := contents(m), map[string]value{"a": {3}, "b": {2}}; !cmp.Equal(got, want) {
		t.Fatalf("ready mirror holds %v, want %v", got, want)
	}

	put(t, kv, "c", `{"n":4}`)
	if err := kv.Delete(t.Context(), "b"); err != nil {
		t.Fatal(err)
	}
	put(t, kv, "a", `not json`)
	equals(t, m, map[string]value{"a": {3}, "c": {4}})

	rev := put(t, kv, "d", `{"n":5}`)
	m.Set("d", value{5}, rev)
	if v, ok := m.Get("d"); !ok || v.N != 5 {
		t.Errorf("Get(d) right after Set = %v, %v; want {5}, true", v, ok)
	}
	// An older revision never overwrites a newer one.
	m.Set("d", value{0}, rev-1)
	if v, _ := m.Get("d"); v.N != 5 {
		t.Errorf("Get(d) after a stale Set = %v, want {5}", v)
	}
}

// TestMirrorWaitsForBucket starts a mirror of a bucket another service
// has yet to create: it is not ready, reports the wait to health, and is
// ready with the bucket's values once it exists.
func TestMirrorWaitsForBucket(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Start(t, ""))
	var (
		mu     sync.Mutex
		health []error
	)
	m := kvmirror.Start(t.Context(), js, kvmirror.Config[value]{Bucket: "LATE", Health: func(err error) {
		mu.Lock()
		defer mu.Unlock()
		health = append(health, err)
	}})
	t.Cleanup(func() { _ = m.Close() })
	natstest.Until(t, within, "health hears the missing bucket", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(health) > 0 && errors.Is(health[0], jetstream.ErrBucketNotFound)
	})
	if m.Ready() {
		t.Fatal("mirror of a missing bucket is ready")
	}
	if err := m.Health(); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Errorf("Health() of a mirror waiting for its bucket = %v, want ErrBucketNotFound", err)
	}

	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "LATE"})
	if err != nil {
		t.Fatal(err)
	}
	put(t, kv, "a", `{"n":1}`)
	if err := m.Wait(t.Context()); err != nil {
		t.Fatalf("Wait() = %v", err)
	}
	equals(t, m, map[string]value{"a": {1}})
	mu.Lock()
	last := health[len(health)-1]
	mu.Unlock()
	if last != nil || m.Health() != nil {
		t.Errorf("health after the mirror is ready = %v, Health() = %v; want nil", last, m.Health())
	}
}

// TestMirrorReportsLostWatch closes the connection under a ready mirror:
// its watch ends, which the mirror reports to health rather than going
// quiet, and, failing to watch again, it gives up and says why.
func TestMirrorReportsLostWatch(t *testing.T) {
	s := natstest.Start(t, "")
	_, js := natstest.Connect(t, s)
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "B"})
	if err != nil {
		t.Fatal(err)
	}
	put(t, kv, "a", `{"n":1}`)
	nc, mjs := natstest.Connect(t, s)
	var (
		mu     sync.Mutex
		health []error
	)
	m := kvmirror.Start(t.Context(), mjs, kvmirror.Config[value]{Bucket: "B", GiveUp: time.Second, Health: func(err error) {
		mu.Lock()
		defer mu.Unlock()
		health = append(health, err)
	}})
	if err := m.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}

	nc.Close()
	select {
	case <-m.Done():
	case <-time.After(within):
		t.Fatal("mirror still running on a closed connection")
	}
	if m.Err() == nil || m.Health() == nil {
		t.Errorf("Err() = %v, Health() = %v after giving up; want errors", m.Err(), m.Health())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(health) < 2 || health[0] != nil || health[1] == nil {
		t.Errorf("health heard %v, want nil (ready) then the lost watch", health)
	}
	// What was loaded stays readable.
	if v, ok := m.Get("a"); !ok || v.N != 1 {
		t.Errorf("Get(a) after the mirror stopped = %v, %v; want {1}, true", v, ok)
	}
}

// TestMirrorGivesUp checks that a mirror failing for longer than GiveUp
// stops: Done closes, Err and Wait say why.
func TestMirrorGivesUp(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Start(t, ""))
	m := kvmirror.Start(t.Context(), js, kvmirror.Config[value]{Bucket: "NEVER", GiveUp: 300 * time.Millisecond})
	select {
	case <-m.Done():
	case <-time.After(within):
		t.Fatal("mirror still running after it should have given up")
	}
	if err := m.Err(); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Errorf("Err() = %v, want ErrBucketNotFound", err)
	}
	if err := m.Wait(t.Context()); !errors.Is(err, kvmirror.ErrNotReady) {
		t.Errorf("Wait() = %v, want ErrNotReady", err)
	}
	if got := contents(m); len(got) != 0 {
		t.Errorf("mirror of a missing bucket holds %v", got)
	}
}
