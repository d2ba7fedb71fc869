package gateway_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/services/gateway"
)

// rawConn is a keep-alive HTTP connection from a local address of the
// test's choosing.
type rawConn struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func (e *env) rawConn(ip string) *rawConn {
	e.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	conn, err := d.Dial("tcp", strings.TrimPrefix(e.base, "http://"))
	if err != nil {
		e.t.Fatalf("connect from %s: %v", ip, err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return &rawConn{t: e.t, conn: conn, br: bufio.NewReader(conn)}
}

// healthz asks for /healthz on c and returns the status, or the error that
// ended the connection.
func (c *rawConn) healthz() (int, error) {
	code, _, err := c.get("/healthz")
	return code, err
}

func (c *rawConn) get(path string) (int, string, error) {
	c.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.conn, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func (c *rawConn) wantHealthy(what string) {
	c.t.Helper()
	if code, err := c.healthz(); code != http.StatusOK {
		c.t.Fatalf("%s: GET /healthz = %d, %v; want 200", what, code, err)
	}
}

// wantClosed fails unless the gateway closed c without an answer.
func (c *rawConn) wantClosed(what string) {
	c.t.Helper()
	code, err := c.healthz()
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		c.t.Fatalf("%s: GET /healthz = %d, %v; want the connection closed", what, code, err)
	}
}

// atLeastOne fails unless a counter's value is 1 or more.
func atLeastOne(t *testing.T, what, v string) {
	t.Helper()
	if n, err := strconv.ParseFloat(v, 64); err != nil || n < 1 {
		t.Errorf("%s = %s, want at least 1", what, v)
	}
}

func TestConnectionsPerAddress(t *testing.T) {
	e := startGatewayWith(t, func(d *gateway.Deps) { d.MaxConnsPerAddr = 3 })
	var held []*rawConn
	for range 3 {
		c := e.rawConn("127.0.0.2")
		c.wantHealthy("a connection under the limit")
		held = append(held, c)
	}
	e.rawConn("127.0.0.2").wantClosed("a fourth connection from 127.0.0.2")
	e.rawConn("127.0.0.3").wantHealthy("a connection from another address")
	if got := e.rejections("connections_per_address"); got != "1" {
		t.Errorf("rejections{limit=connections_per_address} = %s, want 1", got)
	}
	// A connection that ends makes room again.
	held[0].conn.Close()
	natstest.Until(t, 5*time.Second, "a connection from 127.0.0.2 admitted", func() bool {
		code, _ := e.rawConn("127.0.0.2").healthz()
		return code == http.StatusOK
	})
	if strings.Contains(e.logs.String(), "127.0.0.2") {
		t.Error("the logs hold the address 127.0.0.2")
	}
}

// TestConnectionsPerProcess fills the process's connections: idle
// keep-alive connections make way for new ones, WebSocket sessions do not.
func TestConnectionsPerProcess(t *testing.T) {
	e := startGatewayWith(t, func(d *gateway.Deps) { d.MaxConns = 3 })
	// healthyConn opens a connection and asks for /healthz on it until it
	// is admitted: a connection that has just answered is not idle yet.
	healthyConn := func(ip string) *rawConn {
		var c *rawConn
		natstest.Until(t, 5*time.Second, "a connection admitted", func() bool {
			c = e.rawConn(ip)
			code, _ := c.healthz()
			return code == http.StatusOK
		})
		return c
	}
	idle := []*rawConn{healthyConn("127.0.0.2"), healthyConn("127.0.0.2"), healthyConn("127.0.0.2")}
	healthyConn("127.0.0.3")
	// The one idle the longest made way: one of these, or another the
	// test's HTTP client left idle; which one depends on when the server
	// saw each answer out.
	closed := 0
	for _, c := range idle {
		if _, err := c.healthz(); err != nil {
			closed++
		}
	}
	if closed == 0 {
		t.Error("after a fourth connection, none of the three idle ones was closed, want the one idle the longest")
	}

	// Each session makes an idle connection close, asking until admitted:
	// those that have just answered /healthz above are not idle yet.
	var sessions []*websocket.Conn
	for _, id := range []string{"v1", "v2", "v3"} {
		url := e.streamURL(auth.Principal{Tenant: "demo", ID: id, Role: auth.RoleVisitor}, "")
		natstest.Eventually(t, 5*time.Second, "a session admitted", func() error {
			c, err := e.tryDialURL(url, nil)
			if err == nil {
				sessions = append(sessions, c)
			}
			return err
		})
	}
	e.rawConn("127.0.0.3").wantClosed("a connection while none is idle")

	sessions[0].Close(websocket.StatusNormalClosure, "")
	c := healthyConn("127.0.0.3")
	// On a connection of the test's own: an HTTP client's idle ones may
	// have been closed to make way.
	_, metrics, err := c.get("/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	const prefix = `parley_gateway_limit_rejections_total{limit="connections_per_process"} `
	n := "0"
	for line := range strings.Lines(metrics) {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			n = strings.TrimSpace(v)
		}
	}
	atLeastOne(t, "rejections{limit=connections_per_process}", n)
}
