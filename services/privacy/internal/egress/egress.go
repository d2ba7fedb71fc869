// Package egress decides where the privacy service may send what a tenant
// asks it to send: a bot's or integration's webhook goes where that
// tenant's admin says, so, unless the operator allows private addresses,
// only to public ones. Otherwise an admin could have Parley post to
// services that trust its network — ClickHouse's HTTP port beside
// `parley all`, say, whose default user has every right — or map that
// network through the delivery log's statuses and timings.
package egress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// sharedSpace is the carrier-grade NAT range (RFC 6598), which
// netip.Addr.IsPrivate does not count and which no public host has.
var sharedSpace = netip.MustParsePrefix("100.64.0.0/10")

// Public reports whether ip is an address of the public Internet: not this
// host's (loopback), not a private network's (RFC 1918, RFC 4193, RFC
// 6598), not link-local (where cloud metadata services answer),
// unspecified or multicast. An IPv4 address mapped into IPv6 is judged as
// itself.
func Public(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsValid() && !ip.IsLoopback() && !ip.IsPrivate() && !sharedSpace.Contains(ip) &&
		!ip.IsLinkLocalUnicast() && !ip.IsLinkLocalMulticast() && !ip.IsInterfaceLocalMulticast() &&
		!ip.IsMulticast() && !ip.IsUnspecified()
}

// ErrNotPublic is why a connection to an address that is not Public was
// refused.
var ErrNotPublic = errors.New("not a public address")

// PublicOnly is a net.Dialer's Control that refuses a connection to an
// address that is not Public. It runs once the name is resolved, on the
// address actually dialled, so no DNS answer gets around it.
func PublicOnly(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("dial %s: %w", address, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("dial %s: %w", address, err)
	}
	if !Public(ip) {
		return fmt.Errorf("dial %s: %w", ip, ErrNotPublic)
	}
	return nil
}
