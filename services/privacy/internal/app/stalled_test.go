package app_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/services/privacy/internal/app"
	"github.com/parley-chat/parley/services/privacy/internal/keyring"
	"github.com/parley-chat/parley/services/privacy/internal/memory"
)

// failingDestroy is a key store whose Destroy fails while fail is set: an
// erasure then stops between its request and its end, as one whose
// instance stopped there does.
type failingDestroy struct {
	*memory.KeyStore
	fail bool
}

func (k *failingDestroy) Destroy(ctx context.Context, tenant, subject string, tomb keyring.Tombstone) (keyring.Tombstone, error) {
	if k.fail {
		return keyring.Tombstone{}, errors.New("stopped")
	}
	return k.KeyStore.Destroy(ctx, tenant, subject, tomb)
}

// TestStalledErasureIsFinished: an erasure cut short after its request is
// broadcast at once, so the services' key caches drop the subject though
// the keys still exist; FinishStalled leaves it to its caller until
// StalledAfter, then finishes it unasked: keys destroyed, completed.
func TestStalledErasureIsFinished(t *testing.T) {
	c := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	bus := new(memory.Bus)
	var keys *failingDestroy
	a := newMemoryAppWith(t, c, bus, func(s *app.Stores) {
		keys = &failingDestroy{KeyStore: s.Keys.(*memory.KeyStore)}
		s.Keys = keys
	})
	ctx := t.Context()
	if _, err := a.GetKeys(ctx, "demo", "v1", true); err != nil {
		t.Fatal(err)
	}
	keys.fail = true
	if _, err := a.Erase(ctx, auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor}, "demo", "v1"); err == nil {
		t.Fatal("Erase with the keys' destruction failing = nil, want its error")
	}
	erased := func() int {
		n := 0
		for _, b := range bus.Sent() {
			if e, ok := b.Value.(personkey.Erased); ok && b.Subject == personkey.ErasedSubject && e == (personkey.Erased{Tenant: "demo", Person: "v1"}) {
				n++
			}
		}
		return n
	}
	if erased() == 0 {
		t.Error("an erasure cut short after its request was not broadcast: the services' caches keep the keys")
	}
	keys.fail = false

	if n, err := a.FinishStalled(ctx); n != 0 || err != nil {
		t.Errorf("FinishStalled before StalledAfter = %d, %v; want 0, nil (its caller may still be at it)", n, err)
	}
	c.advance(app.StalledAfter + time.Second)
	if n, err := a.FinishStalled(ctx); n != 1 || err != nil {
		t.Fatalf("FinishStalled after StalledAfter = %d, %v; want 1, nil", n, err)
	}
	if _, err := keys.Load(ctx, "demo", "v1"); !errors.Is(err, keyring.ErrErased) {
		t.Errorf("the subject's keys after the stalled erasure finished: %v, want ErrErased", err)
	}
	if n, err := a.FinishStalled(ctx); n != 0 || err != nil {
		t.Errorf("FinishStalled once all are finished = %d, %v; want 0, nil", n, err)
	}
	res, err := a.Erase(ctx, auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor}, "demo", "v1")
	if err != nil || res.Status != privacyapi.StatusCompleted {
		t.Errorf("the erasure asked again = %+v, %v; want it completed", res, err)
	}
}
