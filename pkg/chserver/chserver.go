// Package chserver runs a private ClickHouse server process: the analytics
// store of `parley all` and of every test that needs a real ClickHouse.
//
// The server runs from a small config of its own written into a directory
// (data, temporary files and logs all live there), listens on free loopback
// ports only, and has two users without a password, accepted from 127.0.0.1
// only: "default", and "analyst", for analysts' own tools (Grafana,
// Metabase) on the same machine, who may only read (readonly = 1), and only
// database "analyst", where the analytics service keeps the daily figures
// of groups of at least the minimum size (never the facts). It works with
// Debian's clickhouse-server 18.16 as well as with current releases, and as
// root.
//
// The package starts and stops the process; it does not talk the native
// protocol, so it does not depend on a ClickHouse driver.
package chserver

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNotInstalled is returned by Start when no ClickHouse server binary is
// found. On Debian: apt-get install clickhouse-server.
var ErrNotInstalled = errors.New("clickhouse server not installed (on Debian: apt-get install clickhouse-server)")

// Options configure Start.
type Options struct {
	// Dir holds the server's config, data and logs; it is created when
	// missing and kept after Close, so a server started again on the same Dir
	// finds its tables. Required.
	Dir string
	// Binary is the server executable. Empty looks up clickhouse-server, then
	// clickhouse (run as "clickhouse server") on PATH, then in /usr/sbin and
	// /usr/bin, where distributions install them but a non-root PATH may not
	// reach.
	Binary string
	// Log receives start and stop events; nil discards them.
	Log *slog.Logger
	// TCPPort and HTTPPort, when not 0, are the loopback ports to listen
	// on, so a server started again on the same Dir can be found where the
	// last one was (a client's DSN stays valid). 0 picks a free port.
	TCPPort, HTTPPort int
	// Users, when not empty, is the users.xml the server runs with instead
	// of the built-in one, so that a deployment's own users and grants can
	// be tried; its "default" user must accept 127.0.0.1 without a password,
	// which Start's readiness probe uses.
	Users string
}

const (
	// readyTimeout bounds how long Start waits for the ports to answer; a cold
	// 18.16 start takes about a second, a loaded CI machine much longer.
	readyTimeout = 60 * time.Second
	// stopTimeout is how long Close waits after SIGTERM before SIGKILL.
	stopTimeout = 15 * time.Second
	// startAttempts bounds retries when a picked port was taken by someone
	// else between picking and binding.
	startAttempts = 3
)

// Server is a running ClickHouse server process. Its methods are safe for
// concurrent use.
type Server struct {
	dir      string
	tcpPort  int
	httpPort int
	log      *slog.Logger
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the process has exited
	waitErr  error         // the process's exit status, set before exited closes
	stopOnce sync.Once
	stopErr  error
}

// Start starts a server in o.Dir and returns once it answers on both ports:
// the native TCP port accepts connections and "SELECT 1" over HTTP returns 1.
// It returns ErrNotInstalled when no binary is found, and an error holding the
// tail of the server's log when the process dies or is not ready within a
// minute (or before ctx ends). The process is killed if Start fails.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.Dir == "" {
		return nil, errors.New("start clickhouse: no dir")
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bin, args, err := findBinary(o.Binary)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("start clickhouse: %w", err)
	}
	for _, sub := range []string{"data", "tmp", "user_files", "format_schemas", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o750); err != nil {
			return nil, fmt.Errorf("start clickhouse: %w", err)
		}
	}
	for attempt := 1; ; attempt++ {
		s, err := start(ctx, log, bin, args, dir, o)
		if err == nil {
			return s, nil
		}
		fixed := o.TCPPort != 0 || o.HTTPPort != 0
		if !errors.Is(err, errPortTaken) || attempt == startAttempts || fixed {
			return nil, err
		}
		log.Warn("clickhouse port taken, retrying with other ports", "attempt", attempt)
	}
}

// errPortTaken marks a start that failed because a port was bound by another
// process after we picked it.
var errPortTaken = errors.New("port taken")

func start(ctx context.Context, log *slog.Logger, bin string, args []string, dir string, o Options) (*Server, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, fmt.Errorf("start clickhouse: %w", err)
	}
	if o.TCPPort != 0 {
		ports[0] = o.TCPPort
	}
	if o.HTTPPort != 0 {
		ports[1] = o.HTTPPort
	}
	s := &Server{dir: dir, tcpPort: ports[0], httpPort: ports[1], log: log, exited: make(chan struct{})}
	users := o.Users
	if users == "" {
		users = usersConfig
	}
	if err := s.writeConfig(users); err != nil {
		return nil, fmt.Errorf("start clickhouse: %w", err)
	}
	// The server writes startup failures that happen before its logger is
	// configured (a bad config, say) to stderr: keep them with the logs.
	out, err := os.Create(filepath.Join(dir, "log", "stderr.log"))
	if err != nil {
		return nil, fmt.Errorf("start clickhouse: %w", err)
	}
	defer out.Close()
	cmd := exec.Command(bin, append(args, "--config-file="+filepath.Join(dir, "config.xml"))...)
	cmd.Dir = dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start clickhouse: %w", err)
	}
	s.cmd = cmd
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	log.Debug("clickhouse starting", "pid", cmd.Process.Pid, "tcp_port", s.tcpPort, "http_port", s.httpPort)
	if err := s.waitReady(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	log.Info("clickhouse started", "pid", cmd.Process.Pid, "tcp_port", s.tcpPort, "http_port", s.httpPort)
	return s, nil
}

// findBinary resolves the executable and the arguments that precede the
// config flag.
func findBinary(name string) (string, []string, error) {
	if name != "" {
		p, err := exec.LookPath(name)
		if err != nil {
			return "", nil, fmt.Errorf("%w: %w", ErrNotInstalled, err)
		}
		if filepath.Base(p) == "clickhouse" {
			return p, []string{"server"}, nil
		}
		return p, nil, nil
	}
	for _, c := range []struct {
		name string
		args []string
	}{{"clickhouse-server", nil}, {"clickhouse", []string{"server"}}} {
		if p, err := exec.LookPath(c.name); err == nil {
			return p, c.args, nil
		}
		for _, d := range []string{"/usr/sbin", "/usr/bin"} {
			p := filepath.Join(d, c.name)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return p, c.args, nil
			}
		}
	}
	return "", nil, ErrNotInstalled
}

// freePorts returns n distinct loopback ports that were free a moment ago.
// All listeners stay open until every port is picked, so the ports differ.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (s *Server) writeConfig(users string) error {
	p := func(sub string) string { return xmlEscape(filepath.Join(s.dir, sub) + "/") }
	config := fmt.Sprintf(configTemplate,
		xmlEscape(filepath.Join(s.dir, "log", "server.log")),
		xmlEscape(filepath.Join(s.dir, "log", "server.err.log")),
		s.tcpPort, s.httpPort,
		p("data"), p("tmp"), p("user_files"), p("format_schemas"),
		xmlEscape(filepath.Join(s.dir, "users.xml")),
	)
	if err := os.WriteFile(filepath.Join(s.dir, "config.xml"), []byte(config), 0o640); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.dir, "users.xml"), []byte(users), 0o640)
}

func xmlEscape(v string) string {
	var b strings.Builder
	// Writing to a strings.Builder never fails.
	_ = xml.EscapeText(&b, []byte(v))
	return b.String()
}

// configTemplate is the smallest server config 18.16 starts from, plus the
// settings that keep a private test server small: no query log or other
// system log tables (the server has none unless configured), modest caches,
// UTC so that dates do not depend on the machine.
// The root element is <yandex>, which current releases still accept.
const configTemplate = `<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>%s</log>
        <errorlog>%s</errorlog>
        <size>10M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>%d</tcp_port>
    <http_port>%d</http_port>
    <path>%s</path>
    <tmp_path>%s</tmp_path>
    <user_files_path>%s</user_files_path>
    <format_schema_path>%s</format_schema_path>
    <users_config>%s</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>Etc/UTC</timezone>
    <max_concurrent_queries>100</max_concurrent_queries>
    <keep_alive_timeout>3</keep_alive_timeout>
    <mark_cache_size>268435456</mark_cache_size>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mlock_executable>false</mlock_executable>
</yandex>
`

// usersConfig holds the users, "default" and the read-only "analyst" of
// database "analyst": no password, loopback only.
// Its profile is also the server's default profile, whose poll_interval is
// how often an idle native connection notices a shutdown: 1s instead of 10s
// keeps Close fast while a client is connected.
const usersConfig = `<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>2000000000</max_memory_usage>
            <poll_interval>1</poll_interval>
        </default>
        <readonly>
            <max_memory_usage>2000000000</max_memory_usage>
            <poll_interval>1</poll_interval>
            <readonly>1</readonly>
        </readonly>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
        <analyst>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>readonly</profile>
            <quota>default</quota>
            <allow_databases>
                <database>analyst</database>
            </allow_databases>
        </analyst>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
`

func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	// No keep-alive: the server waits for open HTTP connections when it
	// shuts down.
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = s.probe(ctx, client); last == nil {
			return nil
		}
		select {
		case <-s.exited:
			tail := s.logTail()
			if strings.Contains(tail, "Address already in use") {
				return fmt.Errorf("start clickhouse: %w: %s", errPortTaken, tail)
			}
			return fmt.Errorf("start clickhouse: server exited (%v); its log ends:\n%s", s.waitErr, tail)
		case <-ctx.Done():
			return fmt.Errorf("start clickhouse: not ready (%w, last probe: %v); its log ends:\n%s", ctx.Err(), last, s.logTail())
		case <-tick.C:
		}
	}
}

// probe checks both ports once.
func (s *Server) probe(ctx context.Context, client *http.Client) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.tcpPort)))
	if err != nil {
		return err
	}
	c.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		"http://"+s.HTTPAddr()+"/?query="+url.QueryEscape("SELECT 1"), nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "1" {
		return fmt.Errorf("SELECT 1 over HTTP: status %d: %q", resp.StatusCode, body)
	}
	return nil
}

// logTail returns the last lines the server wrote to stderr and to its error
// log, which is where the reason for a failed start ends up.
func (s *Server) logTail() string {
	const max = 3000
	var b bytes.Buffer
	for _, name := range []string{"stderr.log", "server.err.log"} {
		data, err := os.ReadFile(filepath.Join(s.dir, "log", name))
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		if len(data) > max {
			data = data[len(data)-max:]
		}
		fmt.Fprintf(&b, "--- %s ---\n%s\n", name, bytes.TrimSpace(data))
	}
	if b.Len() == 0 {
		return "(empty)"
	}
	return b.String()
}

// DSN returns the native-protocol address of the server's default database,
// as clickhouse-go's ParseDSN reads it.
func (s *Server) DSN() string {
	return "clickhouse://127.0.0.1:" + strconv.Itoa(s.tcpPort) + "/default"
}

// TCPPort returns the server's native-protocol port.
func (s *Server) TCPPort() int { return s.tcpPort }

// HTTPPort returns the server's HTTP port.
func (s *Server) HTTPPort() int { return s.httpPort }

// HTTPAddr returns the host:port of the server's HTTP interface.
func (s *Server) HTTPAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.httpPort))
}

// Pid returns the server's process id: benchmarks read the CPU time it
// spends, which shares the machine with the process inserting.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Dir returns the directory holding the server's config, data and logs.
func (s *Server) Dir() string { return s.dir }

// Close stops the server: SIGTERM, then SIGKILL if it has not exited after
// 15 seconds. It waits for the process to exit and returns an error only if
// the process could not be stopped; calling it again returns the same result.
func (s *Server) Close() error {
	s.stopOnce.Do(func() { s.stopErr = s.stop() })
	return s.stopErr
}

func (s *Server) stop() error {
	select {
	case <-s.exited:
		return nil
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop clickhouse: %w", err)
	}
	select {
	case <-s.exited:
		s.log.Info("clickhouse stopped", "pid", s.cmd.Process.Pid)
		return nil
	case <-time.After(stopTimeout):
	}
	s.log.Warn("clickhouse did not stop on SIGTERM, killing it", "pid", s.cmd.Process.Pid, "waited", stopTimeout)
	if err := s.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop clickhouse: %w", err)
	}
	<-s.exited
	return nil
}
