// Package storetest holds the conformance suites of the privacy service's
// ports (app.KeyStore, app.EventLog): every adapter, in memory or on
// JetStream, runs them, so that the use cases may rely on one behaviour
// whichever they run on, the way Watermill's Pub/Sub suite serves every
// adapter.
package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/seal"
	"github.com/parley-chat/parley/services/privacy/internal/app"
	"github.com/parley-chat/parley/services/privacy/internal/keyring"
)

// OpenKeyStore returns an empty store, of its own, for records wrapped
// under the KEK named kekID.
type OpenKeyStore func(t *testing.T, kekID string) app.KeyStore

// KeyStore runs the key store's suite against the stores open makes.
func KeyStore(t *testing.T, open OpenKeyStore) {
	tests := []struct {
		name string
		run  func(t *testing.T, ks app.KeyStore, ring *keyring.Ring)
	}{
		{"LoadMissing", loadMissing},
		{"CreateThenLoad", createThenLoad},
		{"CreateOnce", createOnce},
		{"RacingCreatorsGetOneRecord", racingCreators},
		{"DestroyLeavesTombstone", destroyLeavesTombstone},
		{"DestroyWithoutRecord", destroyWithoutRecord},
		{"DestroyTwiceKeepsFirstTombstone", destroyTwice},
		{"RefusesOtherKEK", refusesOtherKEK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kek, err := seal.NewKey()
			if err != nil {
				t.Fatal(err)
			}
			ring := keyring.New(kek)
			tt.run(t, open(t, ring.KEKID()), ring)
		})
	}
}

func newRecord(t *testing.T, ring *keyring.Ring, tenant, subject string) keyring.Record {
	t.Helper()
	_, rec, err := ring.NewKeys(tenant, subject, time.Unix(1_700_000_000, 0).UTC())
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func mustCreate(t *testing.T, ks app.KeyStore, ring *keyring.Ring, tenant, subject string) keyring.Record {
	t.Helper()
	rec := newRecord(t, ring, tenant, subject)
	if err := ks.Create(t.Context(), tenant, subject, rec); err != nil {
		t.Fatalf("Create(%s/%s) = %v", tenant, subject, err)
	}
	return rec
}

func wantLoad(t *testing.T, ks app.KeyStore, tenant, subject string, want error) {
	t.Helper()
	if _, err := ks.Load(t.Context(), tenant, subject); !errors.Is(err, want) {
		t.Errorf("Load(%s/%s) = %v, want %v", tenant, subject, err, want)
	}
}

func loadMissing(t *testing.T, ks app.KeyStore, ring *keyring.Ring) {
	wantLoad(t, ks, "demo", "nobody", keyring.ErrNotFound)
	// A subject of the same id in another tenant is another subject.
	mustCreate(t, ks, ring, "demo", "v1")
	wantLoad(t, ks, "other", "v1", keyring.ErrNotFound)
}

func createThenLoad(t *testing.T, ks app.KeyStore, ring *keyring.Ring) {
	rec := mustCreate(t, ks, ring, "demo", "v1")
	got, err := ks.Load(t.Context(), "demo", "v1")
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	if d := cmp.Diff(rec, got); d != "" {
		t.Errorf("Load() differs from what was created (-want +got):\n%s", d)
	}
	if _, err := ring.Unwrap("demo", "v1", got); err != nil {
		t.Errorf("Unwrap(loaded) = %v", err)
	}
}

func createOnce(t *testing.T, ks app.KeyStore, ring *keyring.Ring) {
	first := mustCreate(t, ks, ring, "demo", "v1")
	second := newRecord(t, ring, "demo", "v1")
	if err := ks.Create(t.Context(), "demo", "v1", second); !errors.Is(err, keyring.ErrExists) {
		t.Fatalf("second Create() = %v, want ErrExists", err)
	}
	got, err := ks.Load(t.Context(), "demo", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(first, got) {
		t.Error("Load() after a refused second Create returns the second record, want the first")
	}
}

func racingCreators(t *testing.T, ks app.KeyStore, ring *keyring.Ring) {
	const creators = 8
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		won     []keyring.Record
		begin   = make(chan struct{})
		ctx     = context.WithoutCancel(t.Context())
		records = make([]keyring.Record, creators)
	)
	for i := range records {
		records[i] = newRecord(t, ring, "demo", "v1")
	}
	for _, rec := range records {
		wg.Go(func() {
			<-begin
			err := ks.Create(ctx, "demo", "v1", rec)
			switch {
			case err == nil:
				mu.Lock()
				won = append(won, rec)
				mu.Unlock()
			case !errors.Is(err, keyring.ErrExists):
				t.Errorf("racing Create() = %v, want nil or ErrExists", err)
			}
		})
	}
	close(begin)
	wg.Wait()
	if len(won) != 1 {
		t.Fatalf("%d of %d racing creators stored a record, want 1", len(won), creators)
	}
	got, err := ks.Load(t.Context(), "demo", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(won[0], got) {
		t.Error("Load() after the race returns another record than the winner's")
	}
}

func destroyLeavesTombstone(t *testing.T, ks app.KeyStore, ring *keyring.Ring) {
	mustCreate(t, ks, ring, "demo", "v1")
	mustCreate(t, ks, ring, "demo", "v2")
	at := time.Unix(1_700_000_100, 0).UTC()
	tomb, err := ks.Destroy(t.Context(), "demo", "v1", keyring.Tombstone{ErasureID: "e1", ErasedAt: at})
	if err != nil {
		t.Fatalf("Destroy() = %v", err)
	}
	if want := (keyring.Tombstone{ErasureID: "e1", ErasedAt: at, KeysDestroyed: true}); !cmp.Equal(tomb, want) {
		t.Errorf("Destroy() = %+v, want %+v", tomb, want)
	}
	wantLoad(t, ks, "demo", "v1", keyring.ErrErased)
	// Never created again.
	if err := ks.Create(t.Context(), "demo", "v1", newRecord(t, ring, "demo", "v1")); !errors.Is(err, keyring.ErrExists) {
		t.Errorf("Create() after Destroy = %v, want ErrExists", err)
	}
	wantLoad(t, ks, "demo", "v1", keyring.ErrErased)
	// Another subject keeps its keys.
	if _, err := ks.Load(t.Context(), "demo", "v2"); err != nil {
		t.Errorf("Load(v2) after v1's erasure = %v", err)
	}
}

func destroyWithoutRecord(t *testing.T, ks app.KeyStore, _ *keyring.Ring) {
	tomb, err := ks.Destroy(t.Context(), "demo", "never", keyring.Tombstone{ErasureID: "e1"})
	if err != nil {
		t.Fatalf("Destroy() = %v", err)
	}
	if tomb.KeysDestroyed {
		t.Error("Destroy() of a subject without keys says keys were destroyed")
	}
	wantLoad(t, ks, "demo", "never", keyring.ErrErased)
}

func destroyTwice(t *testing.T, ks app.KeyStore, ring *keyring.Ring) {
	mustCreate(t, ks, ring, "demo", "v1")
	first, err := ks.Destroy(t.Context(), "demo", "v1", keyring.Tombstone{ErasureID: "e1"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := ks.Destroy(t.Context(), "demo", "v1", keyring.Tombstone{ErasureID: "e2"})
	if err != nil {
		t.Fatalf("second Destroy() = %v", err)
	}
	if !cmp.Equal(first, again) {
		t.Errorf("second Destroy() = %+v, want the first tombstone %+v", again, first)
	}
}

func refusesOtherKEK(t *testing.T, ks app.KeyStore, _ *keyring.Ring) {
	kek, err := seal.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	other := keyring.New(kek)
	err = ks.Create(t.Context(), "demo", "v1", newRecord(t, other, "demo", "v1"))
	if !errors.Is(err, keyring.ErrKEKRetired) {
		t.Fatalf("Create() of a record under another KEK = %v, want ErrKEKRetired", err)
	}
	wantLoad(t, ks, "demo", "v1", keyring.ErrNotFound)
}
