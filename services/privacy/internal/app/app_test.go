package app_test

import (
	"context"
	"sync"
	"testing"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/seal"
	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/pkg/subjectkey"

	"github.com/parley-chat/parley/services/privacy/internal/app"
	"github.com/parley-chat/parley/services/privacy/internal/jetstream"
	"github.com/parley-chat/parley/services/privacy/internal/keyring"
)

// TestGetKeysRace races two instances, each on its own connection with an
// empty cache, to create the same subject's keys.
func TestGetKeysRace(t *testing.T) {
	s := natstest.Start(t, "")
	kek, err := seal.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	var apps []*app.App
	for range 2 {
		_, js := natstest.Connect(t, s)
		if err := stream.Ensure(t.Context(), js, stream.Options{}, stream.Privacy, stream.Keys); err != nil {
			t.Fatal(err)
		}
		ks, err := jetstream.NewKeyStore(t.Context(), js, keyring.Fingerprint(kek))
		if err != nil {
			t.Fatal(err)
		}
		apps = append(apps, app.New(keyring.New(kek), nil, app.Stores{Keys: ks, Events: jetstream.NewEventLog(js)}))
	}

	const perApp = 8
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		got   []subjectkey.Keys
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
	_, js := natstest.Connect(t, s)
	ks, err := js.Stream(t.Context(), stream.Keys)
	if err != nil {
		t.Fatal(err)
	}
	// The KEK state, claimed by the first store, and one record.
	if st := ks.CachedInfo().State; st.Msgs != 2 || st.LastSeq != 2 {
		t.Errorf("KEYS holds %d messages, last sequence %d; want 2 and 2", st.Msgs, st.LastSeq)
	}
}
