package main

import (
	"context"
	"log/slog"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time, user and system, the process used so far.
func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchAll starts `parley all` for a benchmark, with registration limits
// out of the way, and calls run between the timer's reset and stop,
// reporting the process's CPU time per operation (every service included).
func benchAll(b *testing.B, run func(base string, client *http.Client)) {
	dir := b.TempDir()
	a, err := startAll(context.Background(), allConfig{HTTPAddr: "127.0.0.1:0", DataDir: dir, ClickHouse: "off"}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	base := a.URL()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	putJSON(b, client, base+"/v1/tenants/demo", staffToken(b, dir, "*", "operator", "ops"),
		`{"name":"Demo","limits":{"registrations_per_address_per_minute":1000000,"registrations_per_minute":1000000}}`)
	b.ReportAllocs()
	b.ResetTimer()
	start := cpuTime(b)
	run(base, client)
	b.StopTimer()
	b.ReportMetric(float64((cpuTime(b)-start).Microseconds())/float64(b.N), "cpu-µs/op")
}

const benchVisitor = `{"consent":{"analytics":false,"network_data":false,"ai":false},"notice_version":"b"}`

// BenchmarkRegisterVisitorHTTP registers visitors one after another: keys,
// consent and session.
func BenchmarkRegisterVisitorHTTP(b *testing.B) {
	benchAll(b, func(base string, client *http.Client) {
		for range b.N {
			var v struct{ Token string }
			postJSON(b, client, base+"/v1/tenants/demo/visitors", "", benchVisitor, &v)
		}
	})
}

// BenchmarkRefreshSessionHTTP refreshes one visitor's session again and
// again, each time with the token the last refresh answered.
func BenchmarkRefreshSessionHTTP(b *testing.B) {
	benchAll(b, func(base string, client *http.Client) {
		b.StopTimer()
		var s struct {
			RefreshToken string `json:"refresh_token"`
		}
		postJSON(b, client, base+"/v1/tenants/demo/visitors", "", benchVisitor, &s)
		b.StartTimer()
		for range b.N {
			postJSON(b, client, base+"/v1/sessions/refresh", "", `{"refresh_token":"`+s.RefreshToken+`"}`, &s)
		}
	})
}
