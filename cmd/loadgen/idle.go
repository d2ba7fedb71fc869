package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// idleMemory is what idle WebSocket sessions cost parley: resident memory
// and Go's own accounting, sampled as a separate client process opens them
// step by step.
type idleMemory struct {
	Target  int // connections asked for
	Held    int // connections the client holds at the end
	Failed  int // connections the client could not open
	Sources int // client source addresses used
	// Points are parley's samples: the first with no idle connection, then
	// one after each step.
	Points []memPoint
	// PerConnRSS and PerConnGo are the growth from the first point to the
	// last, per connection held, in bytes.
	PerConnRSS float64
	PerConnGo  float64
	// GoroutinesPerConn is the growth in goroutines per connection.
	GoroutinesPerConn float64
}

// memPoint is parley with some idle connections.
type memPoint struct {
	Conns      int
	RSS        int64
	GoBytes    float64 // heap and goroutine stacks in use
	Goroutines float64
}

const (
	// tokenEnv passes the visitor token to hold-ws: not in its arguments,
	// which anyone on the machine can read.
	tokenEnv = "PARLEY_BENCH_TOKEN"
	// connsPerSource keeps each source address's ports few.
	connsPerSource = 2000
	// fdHeadroom is what parley needs open besides the idle connections.
	fdHeadroom = 512
)

// Series of parley's /metrics the memory phase reads.
const (
	metricHeap       = "go_memstats_heap_inuse_bytes"
	metricStacks     = "go_memstats_stack_inuse_bytes"
	metricGoroutines = "go_goroutines"
	metricSessions   = "parley_gateway_live_sessions"
	// metricSessionsMax is how many sessions parley admits in all.
	metricSessionsMax = "parley_gateway_live_sessions_max"
)

// measureIdle has a child process (`loadgen hold-ws`) open conns idle live
// streams to p in steps, and samples parley's memory after each step has
// settled.
func measureIdle(ctx context.Context, p *parley, conns, steps int) (idleMemory, error) {
	m := idleMemory{Target: conns}
	limit, err := openFileLimit(p.cmd.Process.Pid)
	if err != nil {
		return m, err
	}
	if conns > limit-fdHeadroom {
		conns = limit - fdHeadroom
		fmt.Fprintf(os.Stderr, "parley may open %d files: holding %d idle connections, not %d\n", limit, conns, m.Target)
	}
	// parley keeps files for other requests than sessions.
	caps, err := p.promValues(ctx, metricSessionsMax)
	if err != nil {
		return m, err
	}
	if most := int(caps[metricSessionsMax]); most > 0 && conns > most {
		conns = most
		fmt.Fprintf(os.Stderr, "parley admits %d sessions: holding %d idle connections, not %d\n", most, conns, m.Target)
	}
	m.Sources = (conns + connsPerSource - 1) / connsPerSource
	client := &http.Client{}
	var v struct{ Token string }
	body := []byte(`{"consent":{"analytics":false,"network_data":false,"ai":false},"notice_version":"bench"}`)
	if err := post(ctx, client, p.base+"/v1/tenants/demo/visitors", "", body, http.StatusCreated, &v); err != nil {
		return m, fmt.Errorf("idle visitor: %w", err)
	}
	if err := p.settle(ctx, 15*time.Second); err != nil {
		return m, err
	}
	base, err := settledSample(ctx, p, -1, 0)
	if err != nil {
		return m, err
	}
	sessions0 := base.sessions
	m.Points = append(m.Points, base.memPoint)

	self, err := os.Executable()
	if err != nil {
		return m, fmt.Errorf("find own executable: %w", err)
	}
	child := exec.CommandContext(ctx, self, "hold-ws",
		"--url", "ws"+strings.TrimPrefix(p.base, "http")+"/v1/stream",
		"--n", fmt.Sprint(conns), "--steps", fmt.Sprint(steps), "--sources", fmt.Sprint(m.Sources))
	child.Env = append(os.Environ(), tokenEnv+"="+v.Token)
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		return m, err
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		return m, err
	}
	if err := child.Start(); err != nil {
		return m, fmt.Errorf("start hold-ws: %w", err)
	}
	defer func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { child.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			child.Process.Kill()
			<-done
		}
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	for step := range steps {
		var line string
		var ok bool
		select {
		case line, ok = <-lines:
		case <-time.After(2 * time.Minute):
		case <-ctx.Done():
			return m, ctx.Err()
		}
		if !ok {
			return m, errors.New("hold-ws ended before holding its connections")
		}
		if _, err := fmt.Sscanf(line, "held %d failed %d", &m.Held, &m.Failed); err != nil {
			return m, fmt.Errorf("hold-ws said %q: %w", line, err)
		}
		s, err := settledSample(ctx, p, sessions0+m.Held, m.Held)
		if err != nil {
			return m, err
		}
		m.Points = append(m.Points, s.memPoint)
		if step < steps-1 {
			if _, err := io.WriteString(stdin, "next\n"); err != nil {
				return m, fmt.Errorf("tell hold-ws: %w", err)
			}
		}
	}
	last := m.Points[len(m.Points)-1]
	if m.Held > 0 {
		n := float64(m.Held)
		m.PerConnRSS = float64(last.RSS-base.RSS) / n
		m.PerConnGo = (last.GoBytes - base.GoBytes) / n
		m.GoroutinesPerConn = (last.Goroutines - base.Goroutines) / n
	}
	return m, nil
}

type sample struct {
	memPoint
	sessions int
}

// settledSample samples parley once it counts wantSessions live sessions
// (any number when negative) and its resident size has stopped moving.
// Nothing can make another process collect its garbage: the sample is
// taken when two readings a quarter of a second apart agree within 1%.
func settledSample(ctx context.Context, p *parley, wantSessions, conns int) (sample, error) {
	var prev int64
	deadline := time.Now().Add(10 * time.Second)
	for {
		rss, err := p.rss()
		if err != nil {
			return sample{}, err
		}
		v, err := p.promValues(ctx, metricHeap, metricStacks, metricGoroutines, metricSessions)
		if err != nil {
			return sample{}, err
		}
		s := sample{
			memPoint: memPoint{Conns: conns, RSS: rss, GoBytes: v[metricHeap] + v[metricStacks], Goroutines: v[metricGoroutines]},
			sessions: int(v[metricSessions]),
		}
		sessionsOK := wantSessions < 0 || s.sessions == wantSessions
		if sessionsOK && prev > 0 && math.Abs(float64(rss-prev)) < 0.01*float64(prev) {
			return s, nil
		}
		if time.Now().After(deadline) {
			if !sessionsOK {
				return s, fmt.Errorf("parley counts %d live sessions, want %d", s.sessions, wantSessions)
			}
			return s, nil
		}
		prev = rss
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// holdWS is the hidden subcommand `loadgen hold-ws`: it opens --n idle live
// streams in --steps steps from --sources loopback addresses (127.0.0.2 and
// on), says "held N failed F" on stdout after each step and waits for a
// line on stdin before the next; at the end of stdin it closes them all.
// The token comes from the environment (tokenEnv).
func holdWS(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("loadgen hold-ws", flag.ContinueOnError)
	url := fs.String("url", "", "the live stream, ws://…/v1/stream")
	n := fs.Int("n", 1000, "connections to hold")
	steps := fs.Int("steps", 1, "open them in this many steps")
	sources := fs.Int("sources", 1, "source addresses to spread them over (at most 250)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	token := os.Getenv(tokenEnv)
	switch {
	case *url == "" || token == "":
		return fmt.Errorf("hold-ws needs --url and %s", tokenEnv)
	case *n < 1 || *steps < 1 || *sources < 1 || *sources > 250:
		return errors.New("hold-ws: --n and --steps must be positive, --sources 1 to 250")
	}
	if limit := raiseFileLimit(); limit < uint64(*n)+64 {
		return fmt.Errorf("hold-ws may open %d files, too few for %d connections", limit, *n)
	}
	clients := make([]*http.Client, *sources)
	for i := range clients {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i))}}
		clients[i] = &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	}
	hdr := http.Header{"Authorization": {"Bearer " + token}}

	var (
		mu      sync.Mutex
		conns   []*websocket.Conn
		failed  atomic.Int64
		lastErr atomic.Value
	)
	defer func() {
		for _, c := range conns {
			c.CloseNow()
		}
	}()
	in := bufio.NewScanner(stdin)
	opened := 0
	for step := 1; step <= *steps; step++ {
		target := *n * step / *steps
		next := make(chan int)
		var wg sync.WaitGroup
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					c, _, err := websocket.Dial(ctx, *url, &websocket.DialOptions{HTTPClient: clients[i%len(clients)], HTTPHeader: hdr})
					if err != nil {
						failed.Add(1)
						lastErr.Store(err.Error())
						continue
					}
					// Answer pings and close frames; an idle stream
					// gets nothing else.
					c.CloseRead(context.Background())
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
				}
			}()
		}
		for ; opened < target && ctx.Err() == nil; opened++ {
			next <- opened
			if opened%500 == 0 {
				fmt.Fprintf(os.Stderr, "\r%-30s %9d of %d", "ws: idle connections", opened, *n)
			}
		}
		close(next)
		wg.Wait()
		mu.Lock()
		held := len(conns)
		mu.Unlock()
		fmt.Fprintf(os.Stderr, "\r%-30s %9d of %d held, %d failed\n", "ws: idle connections", held, *n, failed.Load())
		if e, ok := lastErr.Load().(string); ok {
			fmt.Fprintf(os.Stderr, "hold-ws: last failure: %s\n", e)
		}
		fmt.Fprintf(stdout, "held %d failed %d\n", held, failed.Load())
		if ctx.Err() != nil || !in.Scan() {
			break
		}
	}
	// Hold until the parent is done with us.
	for in.Scan() {
	}
	return ctx.Err()
}

// raiseFileLimit raises this process's soft limit on open files to its
// hard limit, where allowed, and returns the soft limit in force.
func raiseFileLimit() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0
	}
	if l.Cur < l.Max {
		want := l
		want.Cur = l.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) == nil {
			l = want
		}
	}
	return l.Cur
}
