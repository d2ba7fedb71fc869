package httpapi

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestClientAddr(t *testing.T) {
	tests := []struct {
		name   string
		remote string
		header string // X-Forwarded-For, "" for none
		trust  bool
		want   string // "" for none
	}{
		{"peer IPv4", "192.0.2.7:1234", "", false, "192.0.2.7"},
		{"peer IPv4-mapped", "[::ffff:192.0.2.7]:1234", "", false, "192.0.2.7"},
		{"peer IPv6 cut to its /64", "[2001:db8:1:2:3:4:5:6]:1234", "", false, "2001:db8:1:2::"},
		{"header not trusted", "192.0.2.7:1234", "198.51.100.1", false, "192.0.2.7"},
		{"trusted header, last hop", "192.0.2.7:1234", "10.0.0.1, 198.51.100.1", true, "198.51.100.1"},
		{"trusted header absent", "192.0.2.7:1234", "", true, "192.0.2.7"},
		{"trusted header garbage", "192.0.2.7:1234", "not-an-ip", true, ""},
		{"no peer address", "@", "", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tt.remote, Header: http.Header{}}
			if tt.header != "" {
				r.Header.Set("X-Forwarded-For", tt.header)
			}
			name := ""
			if tt.trust {
				name = "X-Forwarded-For"
			}
			got, ok := clientAddr(r, name)
			if want, wantOK := netip.MustParseAddr(orZero(tt.want)), tt.want != ""; ok != wantOK || (ok && got != want) {
				t.Errorf("clientAddr(%q, %q) = %v, %v; want %v, %v", tt.remote, tt.header, got, ok, tt.want, wantOK)
			}
		})
	}
}

func orZero(s string) string {
	if s == "" {
		return "0.0.0.0"
	}
	return s
}

func TestAddressKeysHideTheAddress(t *testing.T) {
	var k addressKeys
	a, b := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("192.0.2.8")
	ka := k.of("acme", a)
	switch {
	case ka != k.of("acme", a):
		t.Error("one address gave two keys within a key period")
	case ka == k.of("acme", b) || ka == k.of("demo", a):
		t.Error("two addresses or two tenants share a key")
	case strings.Contains(ka, a.String()) || strings.Contains(ka, string(a.AsSlice())):
		t.Errorf("key %q holds the address", ka)
	}
	// A new key period: the same address gives another key.
	k.made = k.made.Add(-2 * addressKeyLifetime)
	if k.of("acme", a) == ka {
		t.Error("the key did not change with the period")
	}
}

// TestLimiterForgetsQuietKeys fills a limiter with keys, then checks that
// those quiet for idleAfter are dropped and a returning key starts afresh.
func TestLimiterForgetsQuietKeys(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiter(1, 1)
	l.now = func() time.Time { return now }
	l.lastSweep = now
	const n = 1000
	for i := range n {
		if err := l.take(fmt.Sprintf("k%d", i)); err != nil {
			t.Fatalf("take(k%d) = %v, want nil", i, err)
		}
	}
	if err := l.take("k0"); err == nil {
		t.Fatal("take(k0) a second time = nil, want rate limited")
	}
	if got := len(l.buckets); got != n {
		t.Fatalf("limiter holds %d buckets, want %d", got, n)
	}
	now = now.Add(idleAfter + time.Second)
	if err := l.take("k0"); err != nil {
		t.Errorf("take(k0) after idleAfter = %v, want nil", err)
	}
	if got := len(l.buckets); got != 1 {
		t.Errorf("limiter holds %d buckets after idleAfter, want 1", got)
	}
}
