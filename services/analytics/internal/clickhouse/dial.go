package clickhouse

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// WriteTimeout bounds each write to the server. Insert sends a batch in
// blocks, and the driver watches the insert's context only while it sends
// the last (Send), not the others (Flush): a server that stops reading in
// the middle of an insert — stopped, or behind a network that drops every
// packet — would hold the write, and the service's shutdown with it, for
// as long as TCP keeps trying. A server that reads takes a block (a few
// hundred kilobytes) in milliseconds.
const WriteTimeout = 30 * time.Second

// Dial returns a dialer for clickhouse-go's Options.DialContext, dialing
// as the driver does by itself (TCP within timeout, TLS when tlsConfig is
// set), whose connections end each write within writeTimeout, or by the
// write deadline the driver set, whichever comes first.
func Dial(timeout time.Duration, tlsConfig *tls.Config, writeTimeout time.Duration) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		d := &net.Dialer{Timeout: timeout}
		var (
			c   net.Conn
			err error
		)
		if tlsConfig != nil {
			c, err = (&tls.Dialer{NetDialer: d, Config: tlsConfig}).DialContext(ctx, "tcp", addr)
		} else {
			c, err = d.DialContext(ctx, "tcp", addr)
		}
		if err != nil {
			return nil, err
		}
		return &boundedWrites{Conn: c, timeout: writeTimeout}, nil
	}
}

// boundedWrites is a connection whose writes each end within timeout, or
// by the write deadline set on it, whichever comes first.
type boundedWrites struct {
	net.Conn
	timeout time.Duration
	// deadline is the write deadline set, in Unix nanoseconds; 0 is none.
	// The driver sets it from another goroutine than the one writing.
	deadline atomic.Int64
}

func (c *boundedWrites) SetDeadline(t time.Time) error {
	c.keep(t)
	return c.Conn.SetDeadline(t)
}

func (c *boundedWrites) SetWriteDeadline(t time.Time) error {
	c.keep(t)
	return c.Conn.SetWriteDeadline(t)
}

func (c *boundedWrites) keep(t time.Time) {
	if t.IsZero() {
		c.deadline.Store(0)
		return
	}
	c.deadline.Store(t.UnixNano())
}

func (c *boundedWrites) Write(b []byte) (int, error) {
	t := time.Now().Add(c.timeout)
	if d := c.deadline.Load(); d != 0 && d < t.UnixNano() {
		t = time.Unix(0, d)
	}
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

// SyscallConn is the TCP connection's, under TLS if any: the driver reads
// from it to find a pooled connection the server closed before using it
// again.
func (c *boundedWrites) SyscallConn() (syscall.RawConn, error) {
	conn := c.Conn
	if t, ok := conn.(*tls.Conn); ok {
		conn = t.NetConn()
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}
