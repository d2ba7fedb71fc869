// Package seal is Parley's envelope encryption: AES-256-GCM under a data
// subject's key, with associated data that binds a ciphertext to the one event
// (or key record) it was written for, so it cannot be replayed elsewhere.
//
// Every function is safe for concurrent use. The ciphers of keys used lately
// are kept prepared (see Forget).
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// KeySize is the length of a Key in bytes (AES-256).
const KeySize = 32

// Key is a 256-bit symmetric key. Its String and LogValue never print the
// key material.
type Key [KeySize]byte

// ErrOpen is returned by Open when a ciphertext does not authenticate: a
// wrong key, tampered bytes, or associated data of another event.
var ErrOpen = errors.New("seal: message authentication failed")

// NewKey returns a fresh random key.
func NewKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return Key{}, fmt.Errorf("new key: %w", err)
	}
	return k, nil
}

// KeyFromBytes copies b into a Key; b must be exactly KeySize bytes.
func KeyFromBytes(b []byte) (Key, error) {
	var k Key
	if len(b) != KeySize {
		return Key{}, fmt.Errorf("key is %d bytes, want %d", len(b), KeySize)
	}
	copy(k[:], b)
	return k, nil
}

// String redacts the key so that it never reaches a log by accident.
func (Key) String() string { return "seal.Key(redacted)" }

// AD builds associated data from parts. Each part is length-prefixed, so
// ("ab","c") and ("a","bc") give different associated data.
func AD(parts ...string) []byte {
	n := 0
	for _, p := range parts {
		n += 4 + len(p)
	}
	b := make([]byte, 0, n)
	for _, p := range parts {
		b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	return b
}

// Seal encrypts plaintext under k, authenticating ad. The result is the
// random 12-byte nonce followed by the ciphertext and tag.
func Seal(k Key, plaintext, ad []byte) ([]byte, error) {
	aead, err := prepared.get(k)
	if err != nil {
		return nil, err
	}
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("seal nonce: %w", err)
	}
	return aead.Seal(out, out, plaintext, ad), nil
}

// Open decrypts a ciphertext made by Seal with the same key and associated
// data. It returns ErrOpen when authentication fails.
func Open(k Key, ciphertext, ad []byte) ([]byte, error) {
	aead, err := prepared.get(k)
	if err != nil {
		return nil, err
	}
	if len(ciphertext) < aead.NonceSize()+aead.Overhead() {
		return nil, ErrOpen
	}
	nonce, body := ciphertext[:aead.NonceSize()], ciphertext[aead.NonceSize():]
	pt, err := aead.Open(nil, nonce, body, ad)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

func newGCM(k Key) (cipher.AEAD, error) {
	block, err := aes.NewCipher(k[:])
	if err != nil {
		return nil, fmt.Errorf("aes cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	return aead, nil
}

// Forget drops k's prepared cipher, which holds what the key is derived to,
// so that it does not outlive the key: the key caches call it when a person
// is erased. A key not forgotten leaves once aeadsCached others were used
// after it.
func Forget(k Key) {
	prepared.forget(k)
}

// aeadsCached bounds the prepared ciphers kept, about 1 KiB each.
const aeadsCached = 4096

// prepared holds the ciphers of keys used lately: preparing one (the AES
// key schedule and the GCM tables) costs more than sealing a short message,
// and most of its allocations. Package-wide, as the API takes keys by value.
var prepared aeadCache

// aeadCache keeps ciphers in two generations: a key found in the previous
// one moves to the current, and once the current holds half of
// aeadsCached it becomes the previous, the oldest dropped whole. An
// AES-GCM cipher holds no state between calls, so one serves every caller.
type aeadCache struct {
	mu        sync.RWMutex
	cur, prev map[Key]cipher.AEAD
}

func (c *aeadCache) get(k Key) (cipher.AEAD, error) {
	c.mu.RLock()
	a, ok := c.cur[k]
	c.mu.RUnlock()
	if ok {
		return a, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if a, ok := c.cur[k]; ok {
		return a, nil
	}
	a, ok = c.prev[k]
	if !ok {
		var err error
		if a, err = newGCM(k); err != nil {
			return nil, err
		}
	}
	if len(c.cur) >= aeadsCached/2 || c.cur == nil {
		c.prev, c.cur = c.cur, make(map[Key]cipher.AEAD, aeadsCached/2)
	}
	c.cur[k] = a
	return a, nil
}

func (c *aeadCache) forget(k Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.cur, k)
	delete(c.prev, k)
}
