package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
)

// BenchmarkTranscriptPageHTTP reads a transcript of 500 messages of 64
// bytes in one page, GET /v1/conversations/{id}/messages?limit=500, as its
// visitor, through the HTTP API of an in-process `parley all`. Besides
// ns/op and allocs/op (of the whole process: client, gateway, chat and
// NATS server) it reports the CPU time of the process per read and the
// reads' p99.
func BenchmarkTranscriptPageHTTP(b *testing.B) {
	base, client, _ := benchAll(b)
	var v struct{ Token string }
	postJSON(b, client, base+"/v1/tenants/demo/visitors", "", benchVisitor, &v)
	var c struct{ ID string }
	text := strings.Repeat("m", 64)
	postJSON(b, client, base+"/v1/conversations", v.Token, `{"text":"`+text+`"}`, &c)
	for range 499 {
		postJSON(b, client, base+"/v1/conversations/"+c.ID+"/messages", v.Token, `{"text":"`+text+`"}`, &struct{}{})
	}
	readBench(b, client, v.Token, func(string) string {
		return base + "/v1/conversations/" + c.ID + "/messages?limit=500"
	}, func(body []byte) (string, error) {
		// Counted, not decoded: the reader's work is not the server's.
		if n := bytes.Count(body, []byte(`{"id":`)); n != 500 {
			return "", fmt.Errorf("read %d messages, want 500", n)
		}
		return "", nil
	})
}

// BenchmarkInboxPageHTTP lists an inbox of 10,000 open conversations as an
// agent, GET /v1/conversations?limit=100, a page per operation, walking
// from the first page to the last and again, through the HTTP API of an
// in-process `parley all`; it reports what BenchmarkTranscriptPageHTTP
// does.
func BenchmarkInboxPageHTTP(b *testing.B) {
	base, client, dir := benchAll(b)
	var v struct{ Token string }
	postJSON(b, client, base+"/v1/tenants/demo/visitors", "", benchVisitor, &v)
	g, _ := errgroup.WithContext(b.Context())
	g.SetLimit(16)
	for range 10_000 {
		g.Go(func() error {
			req, _ := http.NewRequest("POST", base+"/v1/conversations", strings.NewReader(`{"text":"hello"}`))
			req.Header.Set("Authorization", "Bearer "+v.Token)
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				return fmt.Errorf("open a conversation: status %d", resp.StatusCode)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	agent := staffToken(b, dir, "demo", "agent", "bench")
	readBench(b, client, agent, func(cursor string) string {
		u := base + "/v1/conversations?limit=100"
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		return u
	}, func(body []byte) (string, error) {
		var page struct {
			Conversations []json.RawMessage `json:"conversations"`
			NextCursor    *string           `json:"next_cursor"`
		}
		if err := json.Unmarshal(body, &page); err != nil || page.NextCursor != nil && len(page.Conversations) != 100 {
			return "", fmt.Errorf("listed %d conversations (%v), want 100", len(page.Conversations), err)
		}
		if page.NextCursor == nil {
			return "", nil
		}
		return *page.NextCursor, nil
	})
}

// benchAll starts `parley all` for a read benchmark, with no limit on a
// principal's requests and a tenant whose limits let a benchmark open and
// post as fast as it can, and returns its
// URL, a client and its data dir.
func benchAll(b *testing.B) (string, *http.Client, string) {
	b.Helper()
	a, client, dir := benchParley(b)
	return a.URL(), client, dir
}

// benchParley is benchAll returning the `parley all` itself.
func benchParley(b *testing.B) (*allInOne, *http.Client, string) {
	b.Helper()
	dir := b.TempDir()
	a, err := startAll(context.Background(), allConfig{HTTPAddr: "127.0.0.1:0", DataDir: dir, ClickHouse: "off", RateLimit: -1},
		slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a.Close() })
	base := a.URL()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	putJSON(b, client, base+"/v1/tenants/demo", staffToken(b, dir, "*", "operator", "ops"),
		`{"name":"Demo","limits":{"registrations_per_address_per_minute":1000000,"registrations_per_minute":1000000}}`)
	putJSON(b, client, base+"/v1/settings", staffToken(b, dir, "demo", "admin", "bench"),
		`{"retention_days":365,"collect_network_data":false,"open_conversations_per_visitor":10000,"messages_per_conversation_per_minute":100000}`)
	return a, client, dir
}

// readBench GETs the URL page makes of a cursor with token, one read an
// operation, and checks each answer with check, which returns the next
// cursor ("" for the first page again). It reports the CPU time of the
// whole process per read (cpu-ms/op) and the reads' p99 (p99-ms).
func readBench(b *testing.B, client *http.Client, token string, page func(cursor string) string, check func([]byte) (string, error)) {
	b.Helper()
	b.ReportAllocs()
	var (
		cursor string
		took   []time.Duration
	)
	cpu0 := processCPU(b)
	for b.Loop() {
		req, _ := http.NewRequest("GET", page(cursor), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		took = append(took, time.Since(start))
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("GET: status %d, %v", resp.StatusCode, err)
		}
		if cursor, err = check(body); err != nil {
			b.Fatal(err)
		}
	}
	cpu := processCPU(b) - cpu0
	slices.Sort(took)
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(len(took)), "cpu-ms/op")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkExportsHTTP runs four exports at once (GET /v1/me/export) of
// one visitor's history of 16 MiB of text (1,024 messages of 16 KiB over
// 32 conversations), each read to its end, through the HTTP API of an
// in-process `parley all`: an operation is the four. Besides what
// readBench reports it gives the most the heap held above its size before
// the exports, live and garbage (heap-MiB), and the most the collector
// found live (live-MiB): the pages in flight, which issue 9's bound on
// the memory of concurrent exports is about.
func BenchmarkExportsHTTP(b *testing.B) {
	const (
		exports       = 4
		conversations = 32
		perConv       = 32
	)
	base, client, _ := benchAll(b)
	var v struct{ Token string }
	postJSON(b, client, base+"/v1/tenants/demo/visitors", "", benchVisitor, &v)
	body := `{"text":"` + strings.Repeat("e", 16<<10) + `"}`
	g, _ := errgroup.WithContext(b.Context())
	g.SetLimit(8)
	for range conversations {
		g.Go(func() error {
			var c struct{ ID string }
			if err := postBody(client, base+"/v1/conversations", v.Token, body, http.StatusCreated, &c); err != nil {
				return err
			}
			for range perConv - 1 {
				if err := postBody(client, base+"/v1/conversations/"+c.ID+"/messages", v.Token, body, http.StatusCreated, nil); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	export := func() error {
		req, _ := http.NewRequest("GET", base+"/v1/me/export", nil)
		req.Header.Set("Authorization", "Bearer "+v.Token)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("export: status %d", resp.StatusCode)
		}
		// Counted as it streams, not held: the reader's memory is not the
		// server's.
		n, err := countIn(resp.Body, []byte(`{"id":`))
		if err != nil {
			return err
		}
		if want := conversations * (perConv + 1); n != want {
			return fmt.Errorf("export: %d ids, want %d", n, want)
		}
		return nil
	}
	b.ReportAllocs()
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
	runtime.GC()
	metrics.Read(samples)
	heap0, live0 := samples[0].Value.Uint64(), samples[1].Value.Uint64()
	var heapMax, liveMax uint64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		s := slices.Clone(samples)
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			metrics.Read(s)
			heapMax, liveMax = max(heapMax, s[0].Value.Uint64()), max(liveMax, s[1].Value.Uint64())
		}
	}()
	cpu0 := processCPU(b)
	n := 0
	for b.Loop() {
		g, _ := errgroup.WithContext(b.Context())
		for range exports {
			g.Go(export)
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
		n++
	}
	cpu := processCPU(b) - cpu0
	close(done)
	<-sampled
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(n), "cpu-ms/op")
	b.ReportMetric(float64(heapMax-min(heapMax, heap0))/(1<<20), "heap-MiB")
	b.ReportMetric(float64(liveMax-min(liveMax, live0))/(1<<20), "live-MiB")
}

// postBody POSTs body with token and decodes the answer into out (nil:
// discarded), which must have status want.
func postBody(client *http.Client, url, token, body string, want int, out any) error {
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("POST %s: status %d, want %d", url, resp.StatusCode, want)
	}
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// countIn counts the occurrences of sep in r, read a buffer at a time.
func countIn(r io.Reader, sep []byte) (int, error) {
	var (
		n    int
		buf  = make([]byte, 64<<10)
		keep int
	)
	for {
		m, err := r.Read(buf[keep:])
		chunk := buf[:keep+m]
		n += bytes.Count(chunk, sep)
		// The last len(sep)-1 bytes may begin an occurrence the next read
		// completes, and cannot hold a whole one.
		keep = min(len(sep)-1, len(chunk))
		copy(buf, chunk[len(chunk)-keep:])
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
