package personkey_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/seal"
)

// keyService answers GetSubject on the bus as the privacy service does:
// keys made on demand, "gone" for an erased subject whatever Create says.
type keyService struct {
	mu     sync.Mutex
	keys   map[string]personkey.Keys
	erased map[string]bool
	calls  int
}

func (ks *keyService) get(_ context.Context, r personkey.Request) (personkey.Keys, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.calls++
	id := r.Tenant + "/" + r.Person
	if ks.erased[id] {
		return personkey.Keys{}, rpc.Errorf(rpc.CodeGone, "erased")
	}
	if k, ok := ks.keys[id]; ok {
		return k, nil
	}
	if !r.Create {
		return personkey.Keys{}, rpc.Errorf(rpc.CodeNotFound, "no keys")
	}
	data, err := seal.NewKey()
	if err != nil {
		return personkey.Keys{}, err
	}
	k := personkey.Keys{Data: data}
	ks.keys[id] = k
	return k, nil
}

func (ks *keyService) erase(tenant, subject string) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	delete(ks.keys, tenant+"/"+subject)
	ks.erased[tenant+"/"+subject] = true
}

func (ks *keyService) callCount() int {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.calls
}

func newCache(t *testing.T, size int) (*personkey.Cache, *keyService, func(personkey.Erased)) {
	t.Helper()
	srv := natstest.Start(t, "")
	nc, _ := natstest.Connect(t, srv)
	ks := &keyService{keys: make(map[string]personkey.Keys), erased: make(map[string]bool)}
	served, err := rpc.Serve(t.Context(), nc, slog.New(slog.DiscardHandler), rpc.Service{Name: "fake-keys",
		Groups: []rpc.Group{{Routes: []rpc.Route{{Subject: personkey.GetSubject, Handler: rpc.Handle(ks.get)}}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(served.Stop)
	c, err := personkey.NewCacheSize(nc, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	broadcast := func(e personkey.Erased) {
		t.Helper()
		data, _ := json.Marshal(e)
		if err := nc.Publish(personkey.ErasedSubject, data); err != nil {
			t.Fatal(err)
		}
	}
	return c, ks, broadcast
}

func TestCacheHoldsAtMostItsSize(t *testing.T) {
	const size = 8
	c, ks, _ := newCache(t, size)
	ctx := t.Context()
	first, err := c.GetOrCreate(ctx, "acme", "s0")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 5*size; i++ {
		if _, err := c.GetOrCreate(ctx, "acme", fmt.Sprintf("s%d", i)); err != nil {
			t.Fatal(err)
		}
		if n := c.Len(); n > size {
			t.Fatalf("Len() = %d after %d subjects, want at most %d", n, i+1, size)
		}
	}
	// s0 left the cache long ago: it is asked of the key service again,
	// which gives the same keys.
	calls := ks.callCount()
	again, err := c.Get(ctx, "acme", "s0")
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Errorf("Get(s0) after eviction returned other keys")
	}
	if got := ks.callCount(); got != calls+1 {
		t.Errorf("key service calls = %d, want %d: an evicted subject is fetched again", got, calls+1)
	}
	// A subject used recently stays cached.
	calls = ks.callCount()
	if _, err := c.Get(ctx, "acme", "s0"); err != nil {
		t.Fatal(err)
	}
	if got := ks.callCount(); got != calls {
		t.Errorf("key service calls = %d, want %d: a cached subject is not fetched", got, calls)
	}
}

// TestErasedCachesNothing checks that Erased tells an erased person from
// one without keys, and asks without leaving keys or answers in the cache.
func TestErasedCachesNothing(t *testing.T) {
	c, ks, _ := newCache(t, 8)
	ctx := t.Context()
	if _, err := c.GetOrCreate(ctx, "acme", "cached"); err != nil {
		t.Fatal(err)
	}
	ks.mu.Lock()
	ks.keys["acme/live"] = personkey.Keys{}
	ks.erased["acme/gone"] = true
	ks.mu.Unlock()
	tests := []struct {
		person    string
		want      bool
		wantCalls int
	}{
		{"cached", false, 0},
		{"live", false, 1},
		{"none", false, 1},
		{"gone", true, 1},
	}
	for _, tt := range tests {
		calls := ks.callCount()
		got, err := c.Erased(ctx, "acme", tt.person)
		if err != nil || got != tt.want {
			t.Errorf("Erased(%s) = %v, %v; want %v, nil", tt.person, got, err, tt.want)
		}
		if n := ks.callCount() - calls; n != tt.wantCalls {
			t.Errorf("Erased(%s) asked the key service %d times, want %d", tt.person, n, tt.wantCalls)
		}
	}
	if n := c.Len(); n != 1 {
		t.Errorf("Len() after Erased of 3 people not cached = %d, want 1 (only the one cached before)", n)
	}
}

func TestCacheNeverServesErasedSubject(t *testing.T) {
	const size = 4
	c, ks, broadcast := newCache(t, size)
	ctx := t.Context()
	if _, err := c.GetOrCreate(ctx, "acme", "gone"); err != nil {
		t.Fatal(err)
	}
	ks.erase("acme", "gone")
	broadcast(personkey.Erased{Tenant: "acme", Person: "gone"})
	natstest.Eventually(t, 10*time.Second, "erasure evicts the keys", func() error {
		_, err := c.Get(ctx, "acme", "gone")
		if !errors.Is(err, personkey.ErrErased) {
			return fmt.Errorf("Get(gone) = %v, want ErrErased", err)
		}
		return nil
	})
	// Push the tombstone out of the cache: the key service still says
	// erased, and nothing is created for the subject.
	for i := range 3 * size {
		if _, err := c.GetOrCreate(ctx, "acme", fmt.Sprintf("s%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		get  func(context.Context, string, string) (personkey.Keys, error)
	}{
		{"Get", c.Get},
		{"GetOrCreate", c.GetOrCreate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.get(ctx, "acme", "gone")
			if !errors.Is(err, personkey.ErrErased) || !errors.Is(err, personkey.ErrNotFound) {
				t.Errorf("%s(gone) after eviction = %v, want ErrErased and ErrNotFound", tt.name, err)
			}
		})
	}
}

// TestOnEraseRemove checks that a callback removed no longer runs, and the
// others still do.
func TestOnEraseRemove(t *testing.T) {
	c, _, _ := newCache(t, 8)
	var ran []string
	removeA := c.OnErase(func(personkey.Erased) { ran = append(ran, "a") })
	c.OnErase(func(personkey.Erased) { ran = append(ran, "b") })
	removeA()
	removeA() // twice is no harm
	c.Evict(personkey.Erased{Tenant: "acme", Person: "gone"})
	if want := []string{"b"}; !slices.Equal(ran, want) {
		t.Errorf("callbacks run after removing a = %v, want %v", ran, want)
	}
}
