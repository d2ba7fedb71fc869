package clickhouse_test

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	chstore "github.com/parley-chat/parley/services/analytics/internal/clickhouse"
)

// TestDialBoundsWrites writes to a server that accepts and never reads: a
// write ends at the write timeout, or at an earlier deadline set on the
// connection, rather than waiting for as long as TCP does.
func TestDialBoundsWrites(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	// More than the kernel's buffers on both sides hold.
	big := make([]byte, 64<<20)
	tests := []struct {
		name         string
		writeTimeout time.Duration
		deadline     time.Duration // set on the connection before writing; 0: none
	}{
		{name: "write timeout", writeTimeout: 200 * time.Millisecond},
		{name: "earlier deadline", writeTimeout: time.Hour, deadline: 200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := chstore.Dial(time.Second, nil, tt.writeTimeout)(t.Context(), ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tt.deadline > 0 {
				if err := c.SetDeadline(time.Now().Add(tt.deadline)); err != nil {
					t.Fatal(err)
				}
			}
			done := make(chan error, 1)
			go func() {
				_, err := c.Write(big)
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("Write to a server not reading = %v, want %v", err, os.ErrDeadlineExceeded)
				}
			case <-time.After(time.Minute):
				t.Fatal("Write to a server not reading still blocked after a minute")
			}
		})
	}
}
