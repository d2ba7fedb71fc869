package keyring_test

import (
	"errors"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/seal"

	"github.com/parley-chat/parley/services/privacy/internal/keyring"
)

func newRing(t *testing.T) *keyring.Ring {
	t.Helper()
	kek, err := seal.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return keyring.New(kek)
}

func TestUnwrap(t *testing.T) {
	ring := newRing(t)
	keys, rec, err := ring.NewKeys("demo", "v1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if keys.Data == keys.Pseudonym {
		t.Fatal("NewKeys() data key equals pseudonym key")
	}
	other := newRing(t)
	swapped := rec
	swapped.Data, swapped.Pseudonym = rec.Pseudonym, rec.Data
	// A record claiming the ring's KEK but wrapped under another.
	forged := rec
	_, forged2, err := other.NewKeys("demo", "v1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	forged.Data, forged.Pseudonym = forged2.Data, forged2.Pseudonym

	tests := []struct {
		name            string
		ring            *keyring.Ring
		tenant, subject string
		rec             keyring.Record
		wantErr         error
	}{
		{"own record", ring, "demo", "v1", rec, nil},
		{"another KEK", other, "demo", "v1", rec, keyring.ErrUnknownKEK},
		{"another subject", ring, "demo", "v2", rec, seal.ErrOpen},
		{"another tenant", ring, "acme", "v1", rec, seal.ErrOpen},
		{"keys swapped", ring, "demo", "v1", swapped, seal.ErrOpen},
		{"forged KEK id", ring, "demo", "v1", forged, seal.ErrOpen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.ring.Unwrap(tt.tenant, tt.subject, tt.rec)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Unwrap(%s/%s) error = %v, want %v", tt.tenant, tt.subject, err, tt.wantErr)
			}
			if tt.wantErr == nil && got != keys {
				t.Error("Unwrap() returned other keys than NewKeys()")
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	a, b := newRing(t), newRing(t)
	if len(a.KEKID()) != 16 {
		t.Errorf("KEKID() = %q, want 16 hex digits", a.KEKID())
	}
	if a.KEKID() == b.KEKID() {
		t.Error("two KEKs have the same KEKID()")
	}
}
