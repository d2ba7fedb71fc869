package app_test

import (
	"context"
	"sync"
	"testing"

	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/seal"

	"github.com/parley-chat/parley/services/privacy/internal/app"
	"github.com/parley-chat/parley/services/privacy/internal/keyring"
	"github.com/parley-chat/parley/services/privacy/internal/memory"
)

// TestGetKeysRace races two instances, each with an empty cache, to create
// the same subject's keys in one key store. The store's side of the race
// (one record wins) is the conformance suite's (internal/storetest);
// this is the use case's: every loser serves the winner's keys.
func TestGetKeysRace(t *testing.T) {
	kek, err := seal.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	ks := memory.NewKeyStore(keyring.Fingerprint(kek))
	var apps []*app.App
	for range 2 {
		apps = append(apps, app.New(keyring.New(kek), nil, app.Stores{Keys: ks}))
	}

	const perApp = 8
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		got   []personkey.Keys
		begin = make(chan struct{})
	)
	for _, a := range apps {
		for range perApp {
			wg.Go(func() {
				<-begin
				k, err := a.GetKeys(context.Background(), "demo", "v1", true)
				if err != nil {
					t.Errorf("GetKeys() error = %v", err)
					return
				}
				mu.Lock()
				got = append(got, k)
				mu.Unlock()
			})
		}
	}
	close(begin)
	wg.Wait()

	if len(got) != len(apps)*perApp {
		t.Fatalf("%d callers got keys, want %d", len(got), len(apps)*perApp)
	}
	for _, k := range got[1:] {
		if k != got[0] {
			t.Fatal("callers got different keys")
		}
	}
	rec, err := ks.Load(t.Context(), "demo", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if stored, err := keyring.New(kek).Unwrap("demo", "v1", rec); err != nil || stored != got[0] {
		t.Errorf("the store holds other keys than the callers got (unwrap error %v)", err)
	}
}
