package auth_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
)

func TestIssueVerify(t *testing.T) {
	key, err := auth.LoadOrCreateKey(filepath.Join(t.TempDir(), auth.SigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, other := auth.NewSigner(key), auth.NewSigner(otherKey)
	v := auth.NewVerifier(key.Public().(ed25519.PublicKey))
	agent := auth.Principal{Tenant: "demo", ID: "alice", Role: auth.RoleAgent}

	valid, err := signer.Issue(agent, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	expired, err := signer.Issue(agent, -time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := other.Issue(agent, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		give    string
		want    auth.Principal
		wantErr error
	}{
		{name: "valid", give: valid, want: agent},
		{name: "expired", give: expired, wantErr: auth.ErrExpiredToken},
		{name: "forged", give: forged, wantErr: auth.ErrInvalidToken},
		{name: "tampered", give: valid[:len(valid)-2] + "xx", wantErr: auth.ErrInvalidToken},
		{name: "garbage", give: "not-a-token", wantErr: auth.ErrInvalidToken},
		{name: "empty", give: "", wantErr: auth.ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.Verify(tt.give)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify() error = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Verify() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIssueRejectsBadPrincipals(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := auth.NewSigner(key)
	tests := []struct {
		name string
		give auth.Principal
	}{
		{name: "unknown role", give: auth.Principal{Tenant: "demo", ID: "a", Role: "root"}},
		{name: "operator of a tenant", give: auth.Principal{Tenant: "demo", ID: "a", Role: auth.RoleOperator}},
		{name: "star tenant for staff", give: auth.Principal{Tenant: "*", ID: "a", Role: auth.RoleAdmin}},
		{name: "id with a dot", give: auth.Principal{Tenant: "demo", ID: "a.b", Role: auth.RoleAgent}},
		// Verify checks a token the same way: no token speaks for a service.
		{name: "the system principal", give: auth.System("demo", "parley-privacy")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Issue(tt.give, time.Hour); err == nil {
				t.Errorf("Issue(%+v) succeeded, want an error", tt.give)
			}
		})
	}
}

func TestLoadOrCreateKeyIsStable(t *testing.T) {
	path := filepath.Join(t.TempDir(), auth.SigningKeyFile)
	first, err := auth.LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	second, err := auth.LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Equal(second) {
		t.Error("LoadOrCreateKey() made a new key over an existing one")
	}
}

func TestVerifyRemembersOnlyValidTokensUntilTheyExpire(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, v := auth.NewSigner(key), auth.NewVerifier(key.Public().(ed25519.PublicKey))
	clock := natstest.NewClock()
	s.Now, v.Now = clock.Now, clock.Now
	p := auth.Principal{Tenant: "demo", ID: "alice", Role: auth.RoleAgent}
	const ttl = 1500 * time.Millisecond
	short, err := s.Issue(p, ttl)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if got, err := v.Verify(short); err != nil || got != p {
			t.Fatalf("Verify() = %v, %v; want %v", got, err, p)
		}
		if _, err := v.Verify(short + "x"); !errors.Is(err, auth.ErrInvalidToken) {
			t.Fatalf("Verify(altered) error = %v, want %v", err, auth.ErrInvalidToken)
		}
	}
	// Past expiry plus the parser's leeway (5s), the remembered token is
	// refused too.
	clock.Advance(ttl + 5*time.Second)
	if _, err := v.Verify(short); !errors.Is(err, auth.ErrExpiredToken) {
		t.Fatalf("Verify() of an expired remembered token = %v, want %v", err, auth.ErrExpiredToken)
	}
}

// BenchmarkVerify shows what the verified-token memory saves a request:
// a signature check against a map lookup.
func BenchmarkVerify(b *testing.B) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	s := auth.NewSigner(key)
	p := auth.Principal{Tenant: "demo", ID: "alice", Role: auth.RoleAgent}
	tok, err := s.Issue(p, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("first sight", func(b *testing.B) {
		for b.Loop() {
			// A new verifier each round, so no token is remembered.
			v := auth.NewVerifier(key.Public().(ed25519.PublicKey))
			if _, err := v.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("remembered", func(b *testing.B) {
		v := auth.NewVerifier(key.Public().(ed25519.PublicKey))
		for b.Loop() {
			if _, err := v.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}
