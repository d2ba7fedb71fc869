// Package chtest starts private ClickHouse servers for tests.
package chtest

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/parley-chat/parley/pkg/chserver"
)

// Start runs a ClickHouse server in a new temp dir, stopped when the test
// ends. Without a server binary the test is skipped, except when the CI
// environment variable is set: CI must never pass by skipping.
func Start(t testing.TB) *chserver.Server {
	t.Helper()
	return StartWithUsers(t, "")
}

// StartWithUsers is Start with users as the server's users.xml (see
// chserver.Options.Users); empty is the built-in one.
func StartWithUsers(t testing.TB, users string) *chserver.Server {
	t.Helper()
	s, err := chserver.Start(t.Context(), chserver.Options{Dir: t.TempDir(), Users: users})
	if errors.Is(err, chserver.ErrNotInstalled) {
		msg := "this test needs a ClickHouse server binary (clickhouse-server or clickhouse) on PATH; on Debian: sudo apt-get install clickhouse-server"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// noKeepAlive opens a connection per request: ClickHouse waits for open
// keep-alive connections when it shuts down.
var noKeepAlive = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// QueryAs runs q as user, who has no password, over the HTTP interface at
// addr with GET, the way a read-only user must (a POST is a write), and
// answers the result with its surrounding space trimmed.
func QueryAs(addr, user, q string) (string, error) {
	return LoggedIn(addr, user, "").Query(q)
}

// Query runs q as the default user over the HTTP interface at addr with
// POST, so that it may write, and answers as QueryAs does.
func Query(addr, q string) (string, error) {
	return LoggedIn(addr, "default", "").Exec(q)
}

// Login is a user of the HTTP interface of one server.
type Login struct{ addr, user, password string }

// LoggedIn returns user, with password, of the server whose HTTP interface
// is at addr.
func LoggedIn(addr, user, password string) Login { return Login{addr, user, password} }

// Query runs q with GET and answers as QueryAs does.
func (l Login) Query(q string) (string, error) {
	return l.do(http.MethodGet, "/?query="+url.QueryEscape(q), nil)
}

// Exec runs q with POST, so that it may write, and answers as QueryAs does.
func (l Login) Exec(q string) (string, error) {
	return l.do(http.MethodPost, "/", strings.NewReader(q))
}

func (l Login) do(method, target string, body io.Reader) (string, error) {
	req, err := http.NewRequest(method, "http://"+l.addr+target, body)
	if err != nil {
		return "", err
	}
	req.SetBasicAuth(l.user, l.password)
	return answer(noKeepAlive.Do(req))
}

// answer reads a query's answer: its body trimmed, or an error naming the
// status and the server's message.
func answer(resp *http.Response, err error) (string, error) {
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", errors.New(resp.Status + ": " + string(body))
	}
	return strings.TrimSpace(string(body)), nil
}
