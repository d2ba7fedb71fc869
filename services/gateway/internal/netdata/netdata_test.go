package netdata_test

import (
	"net/netip"
	"testing"

	"github.com/parley-chat/parley/services/gateway/internal/netdata"
)

func TestTruncate(t *testing.T) {
	tests := []struct {
		give   string
		want   string
		wantOK bool
	}{
		{"203.0.113.77:52100", "203.0.113.0/24", true},
		{"127.0.0.1:80", "127.0.0.0/24", true},
		{"203.0.113.77", "203.0.113.0/24", true},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1::/48", true},
		{"[fe80::1%eth0]:443", "fe80::/48", true},
		{"[::ffff:198.51.100.9]:8080", "198.51.100.0/24", true},
		{"2001:db8:abcd:12::1", "2001:db8:abcd::/48", true},
		{"", "", false},
		{"example.com:80", "", false},
		{"@", "", false},
	}
	for _, tt := range tests {
		got, ok := netdata.Truncate(addrOf(tt.give))
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("Truncate(%q) = %q, %t; want %q, %t", tt.give, got, ok, tt.want, tt.wantOK)
		}
	}
}

// addrOf reads an address as the gateway does (an IP, or a peer's
// host:port), the zero Addr when there is none.
func addrOf(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr()
	}
	a, _ := netip.ParseAddr(s)
	return a
}

func TestBrowser(t *testing.T) {
	tests := []struct {
		name string
		give string
		want string
	}{
		{"chrome", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36", "Chrome"},
		{"chrome on iOS", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1", "Chrome"},
		{"edge", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67", "Edge"},
		{"firefox", "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", "Firefox"},
		{"firefox on iOS", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/125.0 Mobile/15E148 Safari/605.1.15", "Firefox"},
		{"safari", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15", "Safari"},
		{"opera", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 OPR/109.0.0.0", "Other"},
		{"curl", "curl/8.5.0", "Other"},
		{"go", "Go-http-client/1.1", "Other"},
		{"empty", "", "Other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := netdata.Browser(tt.give); got != tt.want {
				t.Errorf("Browser(%q) = %q, want %q", tt.give, got, tt.want)
			}
		})
	}
}
