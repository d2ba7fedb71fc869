package analytics_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/chserver/chtest"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/services/analytics"
	"github.com/parley-chat/parley/services/analytics/internal/ingest"
)

// benchFacts returns n facts of 50 visitors, as the relay writes them:
// fact i is of visitors[i%50].
func benchFacts(b *testing.B, n int, at time.Time) ([][]byte, []string) {
	b.Helper()
	visitors := make([]string, 50)
	for i := range visitors {
		visitors[i] = pseudonym(b, "v"+strconv.Itoa(i))
	}
	out := make([][]byte, n)
	for i := range out {
		v := visitors[i%len(visitors)]
		f := analyticsapi.Fact{
			ID: fmt.Sprintf("%s-%d:%s", v[:12], i, analyticsapi.KindMessage), Tenant: "acme", Kind: analyticsapi.KindMessage,
			At: at, Conversation: v, Visitor: v, Role: "visitor", Length: analyticsapi.Length21to100,
		}
		data, err := json.Marshal(f)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = data
	}
	return out, visitors
}

// publishAsync stores facts, perMsg a message as the relay groups them
// (analyticsapi.KindFacts), or one a message as it wrote them before when
// perMsg is 1, the first message with message id from.
func publishAsync(b *testing.B, js jetstream.JetStream, facts [][]byte, from, perMsg int) {
	b.Helper()
	for i := 0; i < len(facts); i += perMsg {
		m := nats.NewMsg(analyticsapi.Subject("acme", analyticsapi.KindMessage))
		m.Data = facts[i]
		if perMsg > 1 {
			m.Subject = analyticsapi.Subject("acme", analyticsapi.KindFacts)
			m.Data = slices.Concat([]byte("["), bytes.Join(facts[i:min(i+perMsg, len(facts))], []byte(",")), []byte("]"))
		}
		m.Header.Set(jetstream.MsgIDHeader, strconv.Itoa(from+i))
		if _, err := js.PublishMsgAsync(m); err != nil {
			b.Fatal(err)
		}
		if i/perMsg%2000 == 1999 {
			// Stay below the client's limit of outstanding publishes.
			<-js.PublishAsyncComplete()
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publish did not complete")
	}
}

// factsPerOp is the facts one iteration of BenchmarkIngest stores: one
// full batch.
const factsPerOp = 10_000

// BenchmarkIngest measures facts per second from ANALYTICS into ClickHouse:
// 10,000 facts per iteration are stored in the stream first, then the
// clock runs from the service's start until ClickHouse holds them all
// (connecting and migrating included).
// A message holds one fact, as the relay wrote them before, or eight, about
// what it groups in a batch when posts come as in `make bench` (seven on
// average in its drain).
func BenchmarkIngest(b *testing.B) {
	for _, perMsg := range []int{1, 8} {
		b.Run(fmt.Sprintf("facts-per-message=%d", perMsg), func(b *testing.B) { benchIngest(b, 0, perMsg) })
	}
}

// BenchmarkIngestWithErasures is BenchmarkIngest with three erasure
// requests in the backlog, at a quarter, a half and three quarters of it,
// each of another visitor (2% of the facts each), as `make bench`'s
// erasures leave them when ClickHouse was off: the clock runs until every
// message is acked, the erasures' deletions included.
func BenchmarkIngestWithErasures(b *testing.B) { benchIngest(b, 3, 8) }

func benchIngest(b *testing.B, erasures, perMsg int) {
	nc, js := analyticsStream(b)
	ch := chtest.Start(b)
	n := b.N * factsPerOp
	facts, visitors := benchFacts(b, n, time.Now())
	rows := n
	for e := range erasures + 1 {
		from, to := e*n/(erasures+1), (e+1)*n/(erasures+1)
		publishAsync(b, js, facts[from:to], from, perMsg)
		if e == erasures {
			break
		}
		// Visitor e's facts, before the request and after, are not kept.
		rows -= (n - e + len(visitors) - 1) / len(visitors)
		args, err := json.Marshal(analyticsapi.EraseArgs{Tenant: "acme", Pseudonym: visitors[e]})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := js.Publish(b.Context(), analyticsapi.Subject("acme", analyticsapi.KindErasure), args); err != nil {
			b.Fatal(err)
		}
	}
	p := &pipeline{ch: ch, js: js}

	cpu, chCPU := processCPU(b), clickHouseCPU(b, ch.Pid())
	b.ResetTimer()
	s := analytics.New(analytics.Deps{NC: nc, ClickHouseDSN: ch.DSN()})
	go s.Run(b.Context())
	natstest.Eventually(b, time.Minute, "every fact ingested", func() error {
		got, err := p.query(b, "SELECT count() FROM facts")
		if err != nil {
			return err
		}
		if got != strconv.Itoa(rows) {
			return fmt.Errorf("%s rows, want %d", got, rows)
		}
		if erasures > 0 && !p.allAcked(b) {
			return errors.New("erasures not all acked")
		}
		return nil
	})
	b.StopTimer()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "facts/s")
	// The CPU this process (the service and the NATS server) spent on
	// each fact moves less with the machine's load than the rate does;
	// ClickHouse's own is not in it.
	b.ReportMetric(float64((processCPU(b)-cpu).Microseconds())/float64(n), "cpu-µs/fact")
	// ClickHouse's own, which `parley all` shares the same cores with.
	b.ReportMetric(float64((clickHouseCPU(b, ch.Pid())-chCPU).Microseconds())/float64(n), "ch-cpu-µs/fact")
}

// clickHouseCPU is the user and system CPU time the ClickHouse server of
// process pid has used, to the kernel's clock tick (10 ms).
func clickHouseCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	// The fields after the command, which is in parentheses: utime and
	// stime are the 12th and 13th, in ticks of 1/100 s.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		b.Fatal(err)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// allAcked reports whether the ingester's consumer has acked everything in
// ANALYTICS.
func (p *pipeline) allAcked(b *testing.B) bool {
	c, err := p.js.Consumer(b.Context(), stream.Analytics, ingest.Durable)
	if err != nil {
		return false
	}
	info, err := c.Info(b.Context())
	return err == nil && info.NumPending == 0 && info.NumAckPending == 0
}

// processCPU is the user and system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLag measures the lag from a fact's publication to its row being
// queryable at about 1,000 facts per second, for five seconds per b.N.
func BenchmarkLag(b *testing.B) {
	nc, js := analyticsStream(b)
	ch := chtest.Start(b)
	s := analytics.New(analytics.Deps{NC: nc, ClickHouseDSN: ch.DSN()})
	go s.Run(b.Context())
	p := &pipeline{ch: ch}
	natstest.Eventually(b, 30*time.Second, "schema", func() error { _, err := p.query(b, "SELECT count() FROM facts"); return err })

	const rate, tick = 1000, 10 * time.Millisecond
	n := b.N * 5 * rate
	facts, _ := benchFacts(b, n, time.Now())
	published := make([]atomic.Int64, n) // unix nanoseconds
	b.ResetTimer()
	go func() {
		t := time.NewTicker(tick)
		defer t.Stop()
		perTick := rate * int(tick) / int(time.Second)
		for i := 0; i < n; i += perTick {
			<-t.C
			for j := i; j < min(i+perTick, n); j++ {
				m := nats.NewMsg(analyticsapi.Subject("acme", analyticsapi.KindMessage))
				m.Header.Set(jetstream.MsgIDHeader, strconv.Itoa(j))
				m.Data = facts[j]
				published[j].Store(time.Now().UnixNano())
				if _, err := js.PublishMsgAsync(m); err != nil {
					panic(err)
				}
			}
		}
	}()
	// The consumer inserts in stream order, so a count of c means facts
	// 0..c-1 are queryable.
	lags := make([]time.Duration, 0, n)
	for len(lags) < n {
		got, err := p.query(b, "SELECT count() FROM facts")
		if err != nil {
			b.Fatal(err)
		}
		c, _ := strconv.Atoi(got)
		now := time.Now()
		for i := len(lags); i < c; i++ {
			lags = append(lags, now.Sub(time.Unix(0, published[i].Load())))
		}
		time.Sleep(20 * time.Millisecond) // the lag's sampling period: a measurement, not synchronisation
	}
	b.StopTimer()
	slices.Sort(lags)
	b.ReportMetric(float64(lags[len(lags)*50/100].Milliseconds()), "p50_ms")
	b.ReportMetric(float64(lags[len(lags)*99/100].Milliseconds()), "p99_ms")
	b.ReportMetric(float64(lags[len(lags)-1].Milliseconds()), "max_ms")
}
