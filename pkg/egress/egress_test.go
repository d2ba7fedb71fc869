package egress

import (
	"errors"
	"net/netip"
	"testing"
)

func TestPublic(t *testing.T) {
	for _, c := range []struct {
		ip     string
		public bool
	}{
		{"93.184.215.14", true},
		{"2606:2800:21f:cb07:6820:80da:af6b:8b2c", true},
		{"100.63.255.255", true},
		{"100.128.0.0", true},
		{"127.0.0.1", false},
		{"127.8.9.10", false},
		{"::1", false},
		{"10.1.2.3", false},
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"192.168.1.1", false},
		{"100.64.0.1", false},
		{"100.127.255.255", false},
		{"169.254.169.254", false},
		{"fe80::1", false},
		{"fc00::1", false},
		{"fd12:3456::1", false},
		{"0.0.0.0", false},
		{"::", false},
		{"224.0.0.1", false},
		{"ff02::1", false},
		{"::ffff:127.0.0.1", false},
		{"::ffff:10.0.0.1", false},
		{"::ffff:93.184.215.14", true},
	} {
		if got := Public(netip.MustParseAddr(c.ip)); got != c.public {
			t.Errorf("Public(%s) = %v, want %v", c.ip, got, c.public)
		}
	}
}

func TestPublicOnly(t *testing.T) {
	if err := PublicOnly("tcp", "93.184.215.14:443", nil); err != nil {
		t.Errorf("PublicOnly(a public address) = %v, want nil", err)
	}
	for _, a := range []string{"127.0.0.1:8123", "[::1]:443", "10.0.0.5:443", "169.254.169.254:80", "[::ffff:192.168.0.1]:443"} {
		if err := PublicOnly("tcp", a, nil); !errors.Is(err, ErrNotPublic) {
			t.Errorf("PublicOnly(%s) = %v, want ErrNotPublic", a, err)
		}
	}
	if err := PublicOnly("tcp", "no port", nil); err == nil {
		t.Error("PublicOnly(an address without a port) = nil, want an error")
	}
}
