package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

// parley is a `parley all` process under measurement.
type parley struct {
	bin     string
	cmd     *exec.Cmd
	dataDir string
	base    string
	natsURL string
	exited  chan error
	stopped sync.Once
	// readyIn is from the process's start to /readyz answering 200.
	readyIn time.Duration
}

// startOptions choose how parley starts.
type startOptions struct {
	// DataDir is the data dir to use; "" makes a new temporary one.
	DataDir string
	// ClickHouse is passed as --clickhouse; "" means off.
	ClickHouse string
	// Started, when set, is called once the process has started, before
	// it is ready.
	Started func(*parley)
	// ReadyWithin is how long it may take to be ready; 0 is a minute.
	ReadyWithin time.Duration
}

// startParley starts `parley all` on free loopback ports and waits until it
// is ready. The caller stops it with stop and removes its data with remove.
func startParley(ctx context.Context, bin string, o startOptions) (*parley, error) {
	dir := o.DataDir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "parley-bench-"); err != nil {
			return nil, fmt.Errorf("bench data dir: %w", err)
		}
	}
	if o.ClickHouse == "" {
		o.ClickHouse = "off"
	}
	httpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	natsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	p := &parley{
		bin:     bin,
		dataDir: dir,
		base:    "http://127.0.0.1:" + strconv.Itoa(httpPort),
		natsURL: "nats://127.0.0.1:" + strconv.Itoa(natsPort),
		exited:  make(chan error, 1),
	}
	p.cmd = exec.Command(bin, "all",
		"--http-addr", "127.0.0.1:"+strconv.Itoa(httpPort),
		"--nats-addr", "127.0.0.1:"+strconv.Itoa(natsPort),
		"--data-dir", dir, "--clickhouse", o.ClickHouse, "--log-level", "warn",
		// 100 conversations posting flat out is no human load: lift the per-principal limit;
		// thousands of idle sessions from a few addresses are the memory probe, not an attack.
		"--rate-limit", "-1", "--max-conns-per-addr", "0")
	p.cmd.Stderr = os.Stderr
	started := time.Now()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	fmt.Fprintf(os.Stderr, "started %s all (pid %d), waiting until ready…\n", bin, p.cmd.Process.Pid)
	if o.Started != nil {
		o.Started(p)
	}
	if o.ReadyWithin == 0 {
		o.ReadyWithin = time.Minute
	}
	if err := p.waitReady(ctx, o.ReadyWithin); err != nil {
		p.stop()
		if o.DataDir == "" {
			p.remove()
		}
		return nil, err
	}
	p.readyIn = time.Since(started)
	if err := p.putTenant(ctx, &http.Client{}, "demo", "Demo", http.StatusOK); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// putTenant creates or replaces the tenant id, answered with status want,
// with its limits as high as they go: every visitor registers from this
// host, one visitor holds every idle session, and every conversation posts
// flat out, which no tenant's limits are meant for.
func (p *parley) putTenant(ctx context.Context, client *http.Client, id, name string, want int) error {
	op, err := p.token(ctx, "*", "operator", "bench")
	if err != nil {
		return err
	}
	tenant, _ := json.Marshal(map[string]any{"name": name, "limits": map[string]int{
		"sessions_per_principal": 1_000_000, "sessions": 1_000_000,
		"registrations_per_minute": 1_000_000, "registrations_per_address_per_minute": 1_000_000,
	}})
	if err := call(ctx, client, http.MethodPut, p.base+"/v1/tenants/"+id, op, tenant, want, nil); err != nil {
		return fmt.Errorf("put tenant %s: %w", id, err)
	}
	admin, err := p.token(ctx, id, "admin", "bench")
	if err != nil {
		return err
	}
	settings := []byte(`{"retention_days":365,"collect_network_data":false,` +
		`"open_conversations_per_visitor":10000,"messages_per_conversation_per_minute":100000}`)
	if err := call(ctx, client, http.MethodPut, p.base+"/v1/settings", admin, settings, http.StatusOK, nil); err != nil {
		return fmt.Errorf("lift conversation limits of %s: %w", id, err)
	}
	return nil
}

// natsAdminPasswordFile is where `parley all` writes the password of its
// embedded NATS server's admin user, under its data dir, at every start.
const natsAdminPasswordFile = "nats-admin.password"

// connectNATS connects to the embedded NATS server of p as its admin user:
// every other user is a Parley service, allowed its own subjects only.
func (p *parley) connectNATS() (*nats.Conn, error) {
	pw, err := os.ReadFile(filepath.Join(p.dataDir, natsAdminPasswordFile))
	if err != nil {
		return nil, fmt.Errorf("read nats admin password: %w", err)
	}
	return nats.Connect(p.natsURL, nats.UserInfo("admin", strings.TrimSpace(string(pw))))
}

func (p *parley) waitReady(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.exited:
			p.exited <- err // for stop
			return fmt.Errorf("parley exited before it was ready: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond): // the start to ready is a figure
		}
		resp, err := http.Get(p.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return fmt.Errorf("parley not ready within %v: %w", within, errNotReady)
}

// errNotReady means parley ran but never answered /readyz with 200.
var errNotReady = errors.New("not ready")

// rss is the resident set size of the parley process in bytes.
func (p *parley) rss() (int64, error) { return p.procStatus("VmRSS") }

// stop stops parley, keeping its data dir.
func (p *parley) stop() {
	p.stopped.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
}

// remove deletes parley's data dir.
func (p *parley) remove() { _ = os.RemoveAll(p.dataDir) }

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
