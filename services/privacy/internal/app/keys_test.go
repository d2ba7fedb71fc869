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

// TestProbeKeys checks that a probe tells a subject with keys from one
// without and an erased one, unwrapping and caching nothing: keys wrapped
// under another KEK are keys all the same.
func TestProbeKeys(t *testing.T) {
	kek, err := seal.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	other, err := seal.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	ks := memory.NewKeyStore(keyring.Fingerprint(other))
	ctx := t.Context()
	for _, v := range []string{"held", "gone"} {
		_, rec, err := keyring.New(other).NewKeys("demo", v, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := ks.Create(ctx, "demo", v, rec); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ks.Destroy(ctx, "demo", "gone", keyring.Tombstone{ErasureID: "e1", ErasedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	a := app.New(keyring.New(kek), nil, app.Stores{Keys: ks})
	tests := []struct {
		subject string
		want    error
	}{
		{"held", nil},
		{"none", keyring.ErrNotFound},
		{"gone", keyring.ErrErased},
	}
	for _, tt := range tests {
		if err := a.ProbeKeys(ctx, "demo", tt.subject); !errors.Is(err, tt.want) {
			t.Errorf("ProbeKeys(%s) = %v, want %v", tt.subject, err, tt.want)
		}
	}
	if n := app.KeyCacheLen(a); n != 0 {
		t.Errorf("key cache holds %d subjects after probes, want 0", n)
	}
}
