package app_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/seal"

	"github.com/parley-chat/parley/services/privacy/internal/app"
	"github.com/parley-chat/parley/services/privacy/internal/keyring"
	"github.com/parley-chat/parley/services/privacy/internal/memory"
)

// TestKeyCacheBound fills the key cache past its size: it keeps at most its
// size, a subject that left is read from the key store again with the same
// keys, and an erased subject is never served from it.
func TestKeyCacheBound(t *testing.T) {
	const size = 4
	kek, err := seal.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	ks := memory.NewKeyStore(keyring.Fingerprint(kek))
	a := app.New(keyring.New(kek), nil, app.Stores{Keys: ks, KeyCacheSize: size})
	ctx := t.Context()

	first, err := a.GetKeys(ctx, "demo", "v0", true)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 5*size; i++ {
		if _, err := a.GetKeys(ctx, "demo", fmt.Sprintf("v%d", i), true); err != nil {
			t.Fatal(err)
		}
		if n := app.KeyCacheLen(a); n > size {
			t.Fatalf("key cache holds %d subjects after %d, want at most %d", n, i+1, size)
		}
	}
	again, err := a.GetKeys(ctx, "demo", "v0", false)
	if err != nil {
		t.Fatalf("GetKeys(v0) after eviction: %v", err)
	}
	if again != first {
		t.Error("GetKeys(v0) after eviction returned other keys")
	}

	// v0 is cached now; its tombstone takes the place of its record and the
	// erasure broadcast makes the instance forget it.
	if _, err := ks.Destroy(ctx, "demo", "v0", keyring.Tombstone{ErasureID: "e1", ErasedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	a.Forget("demo", "v0")
	for _, create := range []bool{false, true} {
		if _, err := a.GetKeys(ctx, "demo", "v0", create); !errors.Is(err, keyring.ErrErased) {
			t.Errorf("GetKeys(v0, create=%v) after erasure = %v, want ErrErased", create, err)
		}
	}
}
