package main

import (
	"net/http"
	"testing"
)

// benchCalls runs run on a `parley all` made for benchmarks (benchAll)
// between the timer's reset and stop, reporting the process's CPU time per
// operation (every service included).
func benchCalls(b *testing.B, run func(base string, client *http.Client)) {
	base, client, _ := benchAll(b)
	b.ReportAllocs()
	b.ResetTimer()
	start := processCPU(b)
	run(base, client)
	b.StopTimer()
	b.ReportMetric(float64((processCPU(b)-start).Microseconds())/float64(b.N), "cpu-µs/op")
}

const benchVisitor = `{"consent":{"analytics":false,"network_data":false,"ai":false},"notice_version":"b"}`

// BenchmarkRegisterVisitorHTTP registers visitors one after another: keys,
// consent and session.
func BenchmarkRegisterVisitorHTTP(b *testing.B) {
	benchCalls(b, func(base string, client *http.Client) {
		for range b.N {
			var v struct{ Token string }
			postJSON(b, client, base+"/v1/tenants/demo/visitors", "", benchVisitor, &v)
		}
	})
}

// BenchmarkRefreshSessionHTTP refreshes one visitor's session again and
// again, each time with the token the last refresh answered.
func BenchmarkRefreshSessionHTTP(b *testing.B) {
	benchCalls(b, func(base string, client *http.Client) {
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
