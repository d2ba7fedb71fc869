package seal_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/parley-chat/parley/pkg/seal"
)

func TestSealOpen(t *testing.T) {
	k, err := seal.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	other, err := seal.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	ad := seal.AD("demo", "visitor-1", "event-1", "chat.message_posted.v1")
	ct, err := seal.Seal(k, []byte("hello"), ad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ct, []byte("hello")) {
		t.Fatalf("ciphertext holds the plaintext")
	}
	tampered := bytes.Clone(ct)
	tampered[len(tampered)-1] ^= 1

	tests := []struct {
		name    string
		key     seal.Key
		ct      []byte
		ad      []byte
		want    string
		wantErr error
	}{
		{name: "same key and data", key: k, ct: ct, ad: ad, want: "hello"},
		{name: "other key", key: other, ct: ct, ad: ad, wantErr: seal.ErrOpen},
		{name: "moved to another event", key: k, ct: ct, ad: seal.AD("demo", "visitor-1", "event-2", "chat.message_posted.v1"), wantErr: seal.ErrOpen},
		{name: "moved to another tenant", key: k, ct: ct, ad: seal.AD("acme", "visitor-1", "event-1", "chat.message_posted.v1"), wantErr: seal.ErrOpen},
		{name: "parts shifted", key: k, ct: ct, ad: seal.AD("demov", "isitor-1", "event-1", "chat.message_posted.v1"), wantErr: seal.ErrOpen},
		{name: "tampered", key: k, ct: tampered, ad: ad, wantErr: seal.ErrOpen},
		{name: "truncated", key: k, ct: ct[:5], ad: ad, wantErr: seal.ErrOpen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := seal.Open(tt.key, tt.ct, tt.ad)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Open() error = %v, want %v", err, tt.wantErr)
			}
			if string(got) != tt.want {
				t.Errorf("Open() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestKeyNeverPrints(t *testing.T) {
	k, err := seal.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v", k), k.String()} {
		if s != "seal.Key(redacted)" {
			t.Errorf("printed key = %q, want redacted", s)
		}
	}
}

func BenchmarkSeal512(b *testing.B) {
	k, _ := seal.NewKey()
	msg := bytes.Repeat([]byte("x"), 512)
	ad := seal.AD("demo", "visitor-1", "event-1", "chat.message_posted.v1")
	b.SetBytes(512)
	for b.Loop() {
		if _, err := seal.Seal(k, msg, ad); err != nil {
			b.Fatal(err)
		}
	}
}
