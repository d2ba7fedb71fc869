package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley/pkg/stream"
)

// BenchmarkPacedPosts posts b.N messages of 512 bytes on a schedule, 250
// or 1,000 a second over 1,000 conversations (open loop, as loadgen's latency phase
// does), through the HTTP API of an in-process `parley all`, and reports
// the POSTs' answer times: overall, and for the posts sent in the first
// 100 ms of a round of the chat service's writes to its view (as seen on
// the bus) against the others; how many posts were in flight while a write
// to the view was stored; and how long a round of writes lasts. Run it
// with a fixed count: -benchtime=10000x.
func BenchmarkPacedPosts(b *testing.B) {
	// 250 a second shows the same on a machine too busy to keep up with
	// 1,000.
	for _, rate := range []int{250, 1000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) { pacedPosts(b, rate) })
	}
}

func pacedPosts(b *testing.B, rate int) {
	const convs = 1000
	a, client, _ := benchParley(b)
	base := a.URL()
	// Each visitor with a connection of its own, as their browser holds:
	// one pool for a thousand clients made them queue on its lock.
	type conv struct {
		id, token string
		client    *http.Client
	}
	cs := make([]conv, convs)
	for i := range cs {
		var v struct{ Token string }
		postJSON(b, client, base+"/v1/tenants/demo/visitors", "", benchVisitor, &v)
		var c struct{ ID string }
		postJSON(b, client, base+"/v1/conversations", v.Token, `{"text":"hello"}`, &c)
		cs[i] = conv{c.ID, v.Token, &http.Client{Transport: &http.Transport{}}}
	}
	writes := viewWrites(b, a)
	body, _ := json.Marshal(map[string]string{"text": strings.Repeat("m", 512)})
	post := func(c conv) time.Duration {
		req, _ := http.NewRequest("POST", base+"/v1/conversations/"+c.id+"/messages", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+c.token)
		start := time.Now()
		resp, err := c.client.Do(req)
		if err != nil {
			b.Error(err)
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			b.Errorf("status %d", resp.StatusCode)
		}
		return time.Since(start)
	}
	// Every conversation once, untimed: connections open, keys cached.
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() { post(c) })
	}
	wg.Wait()

	type timed struct {
		sent time.Time
		took time.Duration
	}
	var (
		mu  sync.Mutex
		got []timed
	)
	queues := make([]chan struct{}, convs)
	for i, c := range cs {
		queues[i] = make(chan struct{}, 4)
		wg.Go(func() {
			for range queues[i] {
				sent := time.Now()
				took := post(c)
				mu.Lock()
				got = append(got, timed{sent, took})
				mu.Unlock()
			}
		})
	}
	shed := 0
	cpu0 := processCPU(b)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate)))) // the load's pace, not synchronisation
		select {
		case queues[i%convs] <- struct{}{}:
		default:
			shed++
		}
	}
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
	b.StopTimer()
	ws := writes()

	// A round of the view's writes starts with a write after a pause of
	// 100 ms: once a second, whether its writes come in a burst or spread
	// over the interval.
	var (
		rounds []time.Time
		spans  []time.Duration // from a round's first write to its last
	)
	for i, w := range ws {
		if i == 0 || w.Sub(ws[i-1]) > 100*time.Millisecond {
			if i > 0 {
				spans = append(spans, ws[i-1].Sub(rounds[len(rounds)-1]))
			}
			rounds = append(rounds, w)
		}
	}
	var all, first, rest []time.Duration
	during := 0 // posts in flight while a write to the view was stored
	for _, p := range got {
		all = append(all, p.took)
		if w, _ := slices.BinarySearchFunc(ws, p.sent, time.Time.Compare); w < len(ws) && ws[w].Before(p.sent.Add(p.took)) {
			during++
		}
		i, _ := slices.BinarySearchFunc(rounds, p.sent, time.Time.Compare)
		if i > 0 && p.sent.Sub(rounds[i-1]) < 100*time.Millisecond {
			first = append(first, p.took)
		} else {
			rest = append(rest, p.took)
		}
	}
	elapsed := time.Since(start).Seconds()
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(quantile(all, 0.50), "p50-ms")
	b.ReportMetric(quantile(all, 0.99), "p99-ms")
	b.ReportMetric(quantile(first, 0.99), "p99-round-start-ms")
	b.ReportMetric(quantile(rest, 0.99), "p99-rest-ms")
	b.ReportMetric(100*float64(during)/float64(max(1, len(got))), "%-during-view")
	b.ReportMetric(float64(len(rounds))/elapsed, "rounds/s")
	b.ReportMetric(quantile(spans, 0.5), "round-ms")
	b.ReportMetric(float64(len(ws))/elapsed, "view-writes/s")
	b.ReportMetric(float64(shed), "shed")
}

// viewWrites records when each write to the chat service's view is stored,
// from a subscription to its bucket's subjects, and returns a function
// giving their times since it was called.
func viewWrites(b *testing.B, a *allInOne) func() []time.Time {
	b.Helper()
	nc, _ := adminConn(b, a)
	var (
		mu sync.Mutex
		at []time.Time
	)
	_, err := nc.Subscribe("$KV."+stream.ChatViewBucket+".>", func(*nats.Msg) {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		b.Fatal(err)
	}
	return func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(at)
	}
}

// quantile returns the q quantile of ds in milliseconds.
func quantile(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return float64(ds[int(q*float64(len(ds)-1))].Microseconds()) / 1000
}
