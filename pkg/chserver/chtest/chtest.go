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
	s, err := chserver.Start(t.Context(), chserver.Options{Dir: t.TempDir()})
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

// QueryAs runs q as user over the HTTP interface at addr with GET, the way
// a read-only user must (a POST is a write), and answers the result with
// its surrounding space trimmed.
func QueryAs(addr, user, q string) (string, error) {
	return answer(noKeepAlive.Get("http://" + addr + "/?user=" + url.QueryEscape(user) + "&query=" + url.QueryEscape(q)))
}

// Query runs q as the default user over the HTTP interface at addr with
// POST, so that it may write, and answers as QueryAs does.
func Query(addr, q string) (string, error) {
	return answer(noKeepAlive.Post("http://"+addr+"/", "text/plain", strings.NewReader(q)))
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
