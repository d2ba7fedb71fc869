package main

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestMeasureReconnects measures what the clients of a gateway that stops
// cost the one they come back to: PARLEY_MEASURE_RECONNECTS visitors of
// one tenant, each with a conversation, open their live stream on a
// parley all of their own (bin/parley, built first) all at once, new
// (no since) and resuming 1 and 200 of the tenant's events behind, and
// parley's CPU for each round is printed (BENCHMARKS.md, "Sessions of a
// stopping gateway"). A measurement, not a test: skipped unless asked.
func TestMeasureReconnects(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("PARLEY_MEASURE_RECONNECTS"))
	if n <= 0 {
		t.Skip("set PARLEY_MEASURE_RECONNECTS to measure (see BENCHMARKS.md)")
	}
	ctx := context.Background()
	p, err := startParley(ctx, "../../bin/parley", startOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		p.stop()
		p.remove()
	}()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	convs, err := openConversations(ctx, client, p.base, "demo", n)
	if err != nil {
		t.Fatal(err)
	}
	// The last event: the n openings came before it.
	var last struct{ Seq uint64 }
	if err := post(ctx, client, p.base+"/v1/conversations/"+convs[0].id+"/messages", convs[0].token, []byte(`{"text":"last"}`), http.StatusCreated, &last); err != nil {
		t.Fatal(err)
	}
	if err := p.settle(ctx, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, behind := range []int{0, 1, 200, 0, 1, 200} {
		query := ""
		if behind > 0 {
			query = "?since=" + strconv.FormatUint(last.Seq-uint64(behind), 10)
		}
		before, err := p.cpuTime()
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		conns := reconnectAll(ctx, t, client, "ws"+p.base[len("http"):]+"/v1/stream"+query, convs)
		took := time.Since(start)
		if err := p.settle(ctx, 3*time.Second); err != nil {
			t.Fatal(err)
		}
		after, err := p.cpuTime()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d streams, %3d events behind (0: new): open in %v; parley's CPU %v, %v a stream (load %s)",
			n, behind, took.Round(time.Millisecond), after-before, (after-before)/time.Duration(n), loadAverage())
		for _, c := range conns {
			c.CloseNow()
		}
		if err := p.settle(ctx, 3*time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

// reconnectAll opens the live stream of every conversation's visitor at
// url, 32 at a time, and returns the connections.
func reconnectAll(ctx context.Context, t *testing.T, client *http.Client, url string, convs []conversation) []*websocket.Conn {
	conns := make([]*websocket.Conn, len(convs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i, c := range convs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: client, HTTPHeader: http.Header{"Authorization": {"Bearer " + c.token}}})
			if err != nil {
				t.Error(err)
				return
			}
			conns[i] = conn
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return conns
}
