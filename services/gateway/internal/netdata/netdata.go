// Package netdata is the gateway's data minimisation at the edge: what may
// be kept of a visitor's network and browser, and whether it may be kept at
// all.
//
// By default nothing is: the gateway reads no address, user agent,
// language or location. Only when a tenant's settings collect network data
// (privacyapi.Settings.CollectNetworkData) and the visitor consents to
// "network_data" does the gateway take the client address truncated to its
// network (IPv4 /24, IPv6 /48) and the browser family, and hand them to the
// privacy service, which stores them sealed under the visitor's key. The
// whole address and the user agent never leave this package.
package netdata

import (
	"net/netip"
	"strings"

	"github.com/parley-chat/parley/pkg/privacyapi"
)

// Prefix lengths kept of a client address.
const (
	IPv4Bits = 24
	IPv6Bits = 48
)

// Of returns the coarse network data of a client at addr whose browser
// sent userAgent: addr truncated to its network, and the browser family.
// addr is the one the gateway trusts (the peer's, or the one a trusted
// reverse proxy writes), never a header any client could set.
func Of(addr netip.Addr, userAgent string) *privacyapi.NetworkData {
	prefix, ok := Truncate(addr)
	if !ok {
		return nil
	}
	return &privacyapi.NetworkData{IPPrefix: prefix, Browser: Browser(userAgent)}
}

// Truncate returns the network of addr in CIDR notation: a /24 for IPv4
// (IPv4-mapped IPv6 addresses included), a /48 for IPv6, without zone. ok
// is false for the zero Addr.
func Truncate(addr netip.Addr) (prefix string, ok bool) {
	if !addr.IsValid() {
		return "", false
	}
	addr = addr.Unmap().WithZone("")
	bits := IPv6Bits
	if addr.Is4() {
		bits = IPv4Bits
	}
	p, err := addr.Prefix(bits)
	if err != nil {
		return "", false
	}
	return p.String(), true
}

// Browser returns the family of the browser that sent userAgent, one of the
// privacyapi.Browser* names. Browsers built on another's engine announce
// that engine too, so the more specific names are tested first; anything
// not clearly one of the four is Other.
func Browser(userAgent string) string {
	has := func(tokens ...string) bool {
		for _, t := range tokens {
			if strings.Contains(userAgent, t) {
				return true
			}
		}
		return false
	}
	switch {
	case has("Edg/", "EdgA/", "EdgiOS/", "Edge/"):
		return privacyapi.BrowserEdge
	case has("OPR/", "Opera", "SamsungBrowser/", "YaBrowser/", "Vivaldi/"):
		return privacyapi.BrowserOther
	case has("Firefox/", "FxiOS/"):
		return privacyapi.BrowserFirefox
	case has("Chrome/", "CriOS/", "Chromium/"):
		return privacyapi.BrowserChrome
	case has("Safari/") && has("Version/"):
		return privacyapi.BrowserSafari
	}
	return privacyapi.BrowserOther
}
