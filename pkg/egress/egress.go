// Package egress decides which addresses Parley may call on a tenant's
// behalf. What a tenant's admin configures — a bot's or integration's
// webhook, an identity provider — is called from inside Parley's network,
// so a connection is checked where it is made, on the address dialled:
// otherwise an admin could have Parley post to services that trust that
// network (ClickHouse's HTTP port beside `parley all`, whose default user
// has every right, a cloud's metadata service) or map it through the
// statuses and timings Parley reports.
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

// ErrNotPublic is why PublicOnly refused a connection.
var ErrNotPublic = errors.New("not a public address")

// PublicOnly is a net.Dialer's Control that refuses a connection to an
// address that is not Public.
var PublicOnly = Control(Public, ErrNotPublic)

// Control returns a net.Dialer's Control that refuses, with an error
// wrapping refused, a connection to an address allow does not allow (an
// IPv4 address mapped into IPv6 judged as itself). It runs once the name
// is resolved, on the address actually dialled, so no DNS answer gets
// around it.
func Control(allow func(netip.Addr) bool, refused error) func(network, address string, c syscall.RawConn) error {
	return func(_, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return fmt.Errorf("dial %s: %w", address, err)
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return fmt.Errorf("dial %s: %w", address, err)
		}
		if ip = ip.Unmap(); !allow(ip) {
			return fmt.Errorf("dial %s: %w", ip, refused)
		}
		return nil
	}
}
