package app_test

import (
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/chatapi"
)

// BenchmarkInboxPage lists an inbox of 10,000 open conversations as a
// supervisor, a page of 100 per operation, walking the pages from the first
// to the last and again; it reports the pages' p99.
func BenchmarkInboxPage(b *testing.B) {
	w := newWorld()
	in := w.start(b)
	for i := range 10_000 {
		in.open(b, visitorN(i), "hi")
	}
	in.follow(b)
	var (
		after string
		took  = make([]time.Duration, 0, b.N)
	)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		res, err := in.List(b.Context(), supervisor, chatapi.ListArgs{Page: chatapi.Page[string]{After: after, Limit: 100}})
		took = append(took, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
		after = deref(res.Next)
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms/page")
}
