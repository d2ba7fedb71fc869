package personkey_test

import (
	"testing"

	"github.com/parley-chat/parley/pkg/personkey"
)

// TestLRU checks the two promises of the LRU: it never holds more than its
// size, and a value read before a Forget or Replace is not cached after it.
func TestLRU(t *testing.T) {
	c := personkey.NewLRU[int, string](2)
	for i := range 5 {
		_, _, stamp := c.Get(i)
		c.Add(i, "v", stamp)
	}
	if n := c.Len(); n != 2 {
		t.Errorf("Len() after 5 adds to an LRU of 2 = %d, want 2", n)
	}

	tests := []struct {
		name    string
		between func()
		want    string
		wantOK  bool
	}{
		{"nothing between", func() {}, "read", true},
		{"Forget between", func() { c.Forget(10) }, "", false},
		{"Replace between", func() { c.Replace(10, "erased") }, "erased", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.Forget(10)
			_, _, stamp := c.Get(10)
			tt.between()
			c.Add(10, "read", stamp)
			if got, ok, _ := c.Get(10); got != tt.want || ok != tt.wantOK {
				t.Errorf("Get(10) = %q, %v; want %q, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
