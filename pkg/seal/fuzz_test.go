package seal_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/parley-chat/parley/pkg/seal"
)

// FuzzOpen checks that Open takes any bytes, of any length, without
// panicking, and opens nothing but what Seal made under the same key and
// associated data.
func FuzzOpen(f *testing.F) {
	key, err := seal.NewKey()
	if err != nil {
		f.Fatal(err)
	}
	ad := seal.AD("demo", "v1", "c1", "e1", "chat.message_posted.v1")
	plaintext := []byte(`{"author":{"role":"visitor","id":"v1"},"text":"hello"}`)
	sealed, err := seal.Seal(key, plaintext, ad)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed, ad)
	f.Add(sealed, seal.AD("demo", "v2", "c1", "e1", "chat.message_posted.v1"))
	f.Add(sealed[:len(sealed)-1], ad)
	f.Add(sealed[:12], ad)
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, ciphertext, ad2 []byte) {
		pt, err := seal.Open(key, ciphertext, ad2)
		if err != nil {
			if !errors.Is(err, seal.ErrOpen) {
				t.Fatalf("Open() = %v, want ErrOpen", err)
			}
			return
		}
		// Forging a tag is beyond a fuzzer: whatever opens is the seed.
		if !bytes.Equal(ciphertext, sealed) || !bytes.Equal(ad2, ad) || !bytes.Equal(pt, plaintext) {
			t.Fatalf("Open(%x, %x) = %q: opened what Seal never made", ciphertext, ad2, pt)
		}
	})
}
