package seal

import "testing"

// TestPreparedBoundedAndForgotten checks that the prepared ciphers stay
// within aeadsCached however many keys are used, and that Forget drops a
// key's cipher from both generations while the key still seals and opens.
func TestPreparedBoundedAndForgotten(t *testing.T) {
	c := &prepared
	held := func(k Key) bool {
		c.mu.RLock()
		defer c.mu.RUnlock()
		_, cur := c.cur[k]
		_, prev := c.prev[k]
		return cur || prev
	}
	first, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := Seal(first, []byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for range aeadsCached / 2 {
		k, err := NewKey()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Seal(k, []byte("x"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if !held(first) {
		t.Fatal("first key's cipher gone after aeadsCached/2 others, want it in the previous generation")
	}
	Forget(first)
	if held(first) {
		t.Error("first key's cipher held after Forget")
	}
	if _, err := Open(first, sealed, nil); err != nil {
		t.Errorf("Open() after Forget = %v", err)
	}
	for range aeadsCached {
		k, err := NewKey()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Seal(k, []byte("x"), nil); err != nil {
			t.Fatal(err)
		}
	}
	c.mu.RLock()
	n := len(c.cur) + len(c.prev)
	c.mu.RUnlock()
	if n > aeadsCached {
		t.Errorf("%d ciphers held, want at most %d", n, aeadsCached)
	}
}
