package auth_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/auth"
)

// FuzzVerify checks that no string, however malformed, makes the verifier
// panic, verify a token the key never signed, or answer with an error other
// than ErrInvalidToken and ErrExpiredToken.
func FuzzVerify(f *testing.F) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	signer := auth.NewSigner(key)
	agent := auth.Principal{Tenant: "demo", ID: "alice", Role: auth.RoleAgent}
	issued := map[string]auth.Principal{}
	for _, p := range []auth.Principal{agent, {Tenant: "demo", ID: "v1", Role: auth.RoleVisitor}, {Tenant: auth.OperatorTenant, ID: "ops", Role: auth.RoleOperator}} {
		tok, err := signer.Issue(p, time.Hour)
		if err != nil {
			f.Fatal(err)
		}
		issued[tok] = p
		f.Add(tok)
		// The same claims with a signature of another token.
		f.Add(tok[:strings.LastIndexByte(tok, '.')] + ".AAAA")
	}
	expired, err := signer.Issue(agent, -time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	forged, err := auth.NewSigner(otherKey).Issue(agent, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(expired)
	f.Add(forged)
	// An unsigned token ("alg":"none") and an HMAC one.
	f.Add("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJpc3MiOiJwYXJsZXkiLCJzdWIiOiJhbGljZSIsInRlbmFudCI6ImRlbW8iLCJyb2xlIjoiYWdlbnQiLCJleHAiOjQxMDI0NDQ4MDB9.")
	f.Add("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJwYXJsZXkiLCJzdWIiOiJhbGljZSIsInRlbmFudCI6ImRlbW8iLCJyb2xlIjoiYWdlbnQiLCJleHAiOjQxMDI0NDQ4MDB9.c2ln")
	f.Add("")
	f.Add("..")
	f.Add("abc.def.ghi")

	v := auth.NewVerifier(key.Public().(ed25519.PublicKey))
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := v.Verify(tok)
		if err != nil {
			if !errors.Is(err, auth.ErrInvalidToken) && !errors.Is(err, auth.ErrExpiredToken) {
				t.Fatalf("Verify(%q) = %v, want ErrInvalidToken or ErrExpiredToken", tok, err)
			}
			return
		}
		want, ok := issued[tok]
		if !ok {
			// A JWT may be written in more than one way (base64 padding,
			// trailing bits); its principal must still be one issued.
			for _, w := range issued {
				if p == w {
					want, ok = w, true
				}
			}
		}
		if !ok || p != want {
			t.Fatalf("Verify(%q) = %+v, a principal never issued", tok, p)
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("Verify(%q) = %+v, invalid: %v", tok, p, err)
		}
	})
}
