package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// token issues a token for a member of staff (or the operator, of tenant
// "*") the way an operator does, with `parley token` reading the signing
// key from the data dir: the running server is not asked.
func (p *parley) token(ctx context.Context, tenant, role, id string) (string, error) {
	out, err := exec.CommandContext(ctx, p.bin, "token", "--data-dir", p.dataDir,
		"--tenant", tenant, "--role", role, "--id", id).Output()
	if err != nil {
		return "", fmt.Errorf("parley token --role %s: %w", role, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// promValues reads the named unlabelled series from parley's Prometheus
// endpoint. A name it does not serve is missing from the result.
func (p *parley) promValues(ctx context.Context, names ...string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return parseProm(resp.Body, names)
}

// parseProm picks the samples of names out of the Prometheus text format.
func parseProm(r io.Reader, names []string) (map[string]float64, error) {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	got := make(map[string]float64, len(names))
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || !want[name] {
			continue
		}
		// A sample may carry a timestamp after its value.
		value, _, _ = strings.Cut(value, " ")
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fmt.Errorf("metric %s: %w", name, err)
		}
		got[name] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read /metrics: %w", err)
	}
	return got, nil
}

// openFileLimit is the soft limit on open files of process pid.
func openFileLimit(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0, fmt.Errorf("read limits: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			if f[0] == "unlimited" {
				return 1 << 30, nil
			}
			return strconv.Atoi(f[0])
		}
	}
	return 0, fmt.Errorf("no open file limit in /proc/%d/limits", pid)
}

// clockTicks is the unit of the CPU times in /proc/PID/stat: USER_HZ,
// which Linux fixes at 100 on every architecture Go runs on.
const clockTicks = 100

// cpuTime is the CPU time parley has used, user and system.
func (p *parley) cpuTime() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("read stat: %w", err)
	}
	// The command name, in parentheses, may hold spaces: fields are
	// counted after its closing parenthesis, from field 3 (state).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("parse stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("parse stat: too few fields")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("parse stat: %w", err)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// settle waits until parley has caught up with what the last phase left
// it to do in the background (relaying facts, say): until it uses less
// than a tenth of a core over a third of a second, or within at most.
// It says how long it waited.
func (p *parley) settle(ctx context.Context, within time.Duration) error {
	const window = 300 * time.Millisecond
	start := time.Now()
	prev, err := p.cpuTime()
	if err != nil {
		return err
	}
	for time.Since(start) < within {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(window):
		}
		now, err := p.cpuTime()
		if err != nil {
			return err
		}
		if now-prev < window/10 {
			if waited := time.Since(start); waited > time.Second {
				fmt.Fprintf(os.Stderr, "%-30s %v\n", "parley settled after", waited.Round(100*time.Millisecond))
			}
			return nil
		}
		prev = now
	}
	fmt.Fprintf(os.Stderr, "%-30s %v: measuring anyway\n", "parley still busy after", within)
	return nil
}

// ownCPU is the CPU time the load generator itself has used, user and
// system: what it takes from the cores it shares with parley.
func ownCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// perOp is the CPU used since from, divided among n operations.
func perOp(from time.Duration, n int64) time.Duration {
	if n <= 0 {
		return 0
	}
	return (ownCPU() - from) / time.Duration(n)
}
