package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/stream"
)

// BenchmarkPostMessageHTTP posts 512-byte messages through the HTTP API of
// an in-process `parley all`, from as many conversations as -cpu × 50.
func BenchmarkPostMessageHTTP(b *testing.B) {
	dir := b.TempDir()
	a, err := startAll(context.Background(), allConfig{HTTPAddr: "127.0.0.1:0", DataDir: dir, ClickHouse: "off", RateLimit: -1},
		slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	base := a.URL()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	// Every visitor registers from this host, and every conversation posts
	// flat out: no tenant's limits are meant for that.
	putJSON(b, client, base+"/v1/tenants/demo", staffToken(b, dir, "*", "operator", "ops"),
		`{"name":"Demo","limits":{"registrations_per_address_per_minute":1000000,"registrations_per_minute":1000000}}`)
	putJSON(b, client, base+"/v1/settings", staffToken(b, dir, "demo", "admin", "bench"),
		`{"retention_days":365,"collect_network_data":false,"messages_per_conversation_per_minute":100000}`)
	const convs = 100
	type conv struct{ id, token string }
	cs := make([]conv, convs)
	for i := range cs {
		var v struct{ Token string }
		postJSON(b, client, base+"/v1/tenants/demo/visitors", "", `{"consent":{"analytics":false,"network_data":false,"ai":false},"notice_version":"b"}`, &v)
		var c struct{ ID string }
		postJSON(b, client, base+"/v1/conversations", v.Token, `{"text":"hello"}`, &c)
		cs[i] = conv{c.ID, v.Token}
	}
	body, _ := json.Marshal(map[string]string{"text": strings.Repeat("m", 512)})
	var next atomic.Int64
	b.SetParallelism(convs / max(1, b.N%1+2))
	viewWrites := viewWriteCounter(b, a)
	cpu0 := processCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := cs[next.Add(1)%convs]
		for pb.Next() {
			req, _ := http.NewRequest("POST", base+"/v1/conversations/"+c.id+"/messages", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+c.token)
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.StopTimer()
	// CPU time, unlike wall time, moves little with what else the machine
	// runs; it counts the client's share of HTTP too.
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(viewWrites())/float64(b.N), "view-writes/op")
}

// viewWriteCounter returns a function counting the writes to the chat
// service's view since it was called: a second JetStream write a post may
// cost.
func viewWriteCounter(b *testing.B, a *allInOne) func() uint64 {
	b.Helper()
	_, js := adminConn(b, a)
	last := func() uint64 {
		s, err := js.Stream(b.Context(), "KV_"+stream.ChatViewBucket)
		if err != nil {
			b.Fatal(err)
		}
		return s.CachedInfo().State.LastSeq
	}
	from := last()
	return func() uint64 { return last() - from }
}

// processCPU returns the user and system time the process has used.
func processCPU(b *testing.B) time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		b.Fatal(err)
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

func putJSON(b *testing.B, client *http.Client, url, token, body string) {
	b.Helper()
	req, _ := http.NewRequest("PUT", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("PUT %s = %d, want 200", url, resp.StatusCode)
	}
}

func postJSON(b *testing.B, client *http.Client, url, token, body string, out any) {
	b.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		b.Fatal(err)
	}
}
