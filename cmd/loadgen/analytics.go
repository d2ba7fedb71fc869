package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The ANALYTICS stream and its ClickHouse consumer, as the analytics
// service names them (pkg/stream.Analytics and its ingest.Durable).
const (
	analyticsStream   = "ANALYTICS"
	analyticsConsumer = "analytics-clickhouse"
	// relayConsumer is the privacy relay's consumer of CHAT, which
	// publishes the facts.
	relayConsumer = "privacy-relay"
)

// analytics is the flow of facts into ClickHouse. Parley runs with
// ClickHouse off while everything else is measured, so the facts of every
// message posted wait in ANALYTICS; restarted on the same data with a local
// ClickHouse, it drains that backlog, which is the rate facts go in. The
// lag is from posting one message to reading it counted in
// GET /v1/metrics/messages.
type analytics struct {
	// NotMeasured says why, when the phase could not run.
	NotMeasured string
	// Restart is from starting parley on the run's data to ready.
	Restart     time.Duration
	Backlog     uint64 // facts drained
	Drain       time.Duration
	FactsPerSec float64
	Lags        []time.Duration
	LagP50      time.Duration
	LagMax      time.Duration
}

// measureAnalytics stops old and starts parley again on its data with a
// local ClickHouse, which it returns; the caller stops it. The backlog is
// watched from the moment the process starts: the consumer may well drain
// it before the whole of parley is ready.
func measureAnalytics(ctx context.Context, old *parley, visitors []conversation, lags int) (*parley, analytics, error) {
	var a analytics
	old.stop()
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	drained := make(chan drain, 1)
	start := time.Now()
	p, err := startParley(ctx, old.bin, startOptions{DataDir: old.dataDir, ClickHouse: "auto", Started: func(p *parley) {
		go func() { drained <- watchDrain(watchCtx, p, start) }()
	}})
	if errors.Is(err, errNotReady) {
		// With --clickhouse auto and no ClickHouse installed, analytics is
		// not ready, and never will be: what was measured before stands.
		a.NotMeasured = "parley with --clickhouse auto was not ready within a minute: is clickhouse-server installed (apt-get install clickhouse-server)?"
		return nil, a, nil
	}
	if err != nil {
		return nil, a, fmt.Errorf("restart with clickhouse: %w", err)
	}
	a.Restart = time.Since(start)
	fmt.Fprintf(os.Stderr, "%-30s %v (ready, with ClickHouse)\n", "analytics: restart", a.Restart.Round(time.Millisecond))
	d := <-drained
	switch {
	case d.err != nil:
		return p, a, d.err
	case d.notMeasured != "":
		a.NotMeasured = d.notMeasured
		return p, a, nil
	}
	a.Backlog, a.Drain = d.facts, d.took
	if d.took > 0 {
		a.FactsPerSec = float64(d.facts) / d.took.Seconds()
	}
	// What else the restarted process did while it drained: facts the
	// relay was still publishing bound the drain's end, and the process's
	// CPU a fact, against the ingest's own (BenchmarkIngest), says how
	// much of it went to other work.
	fmt.Fprintf(os.Stderr, "%-30s %v from the process's start (%.0f facts/s); %d messages of facts published during the drain, %d facts drained (the relay had %d events unacked, %d pending at the first reading, %d at the end); parley's CPU %.1f µs a fact\n",
		"analytics: drain", d.sinceStart.Round(time.Millisecond), float64(d.facts)/max(d.sinceStart.Seconds(), 1e-3), d.published, d.facts, d.relayAckPending, d.relayPending, d.relayPendingEnd, float64(d.cpu.Microseconds())/float64(max(d.facts, 1)))
	tok, err := p.token(ctx, "demo", "analyst", "bench")
	if err != nil {
		return p, a, err
	}
	for i := range lags {
		l, err := factLag(ctx, p, visitors[i%len(visitors)], tok)
		if err != nil {
			return p, a, err
		}
		a.Lags = append(a.Lags, l)
	}
	a.LagP50, a.LagMax = percentile(a.Lags, 50), percentile(a.Lags, 100)
	fmt.Fprintf(os.Stderr, "%-30s p50 %v, max %v over %d messages\n", "analytics: post to queryable", a.LagP50.Round(time.Millisecond), a.LagMax.Round(time.Millisecond), len(a.Lags))
	return p, a, nil
}

// drain is how the analytics consumer went through its backlog.
type drain struct {
	facts       uint64
	took        time.Duration
	notMeasured string
	err         error
	// sinceStart is from the process's start to the drain's end.
	sinceStart time.Duration
	// facts is how many the process stored (factsIngested). published is
	// how many messages ANALYTICS gained from the first reading
	// to the last, relayPending and relayAckPending the relay's events
	// not yet delivered and delivered and unacked at the first reading,
	// relayPendingEnd those not yet delivered at the last; cpu is parley's
	// from the first reading to the last.
	published, relayPending, relayAckPending, relayPendingEnd uint64
	cpu                                                       time.Duration
}

// watchDrain follows the analytics consumer of p, started at start, every
// 50 ms until it has acknowledged every message in ANALYTICS. The drain is
// timed from the last reading before the consumer took its first fact (or,
// if it had taken some by the first reading, from the consumer's creation
// when the restarted process made it, else from start) to the first
// reading with nothing pending. The process's start — NATS, the services,
// ClickHouse's connection and migration before the consumer reads — is
// the restart's time, reported beside, and the drain's time counted from
// start too.
func watchDrain(ctx context.Context, p *parley, start time.Time) drain {
	var (
		nc       *nats.Conn
		js       jetstream.JetStream
		first    *jetstream.ConsumerInfo
		from     = start
		lastIdle time.Time
		d        drain
		last0    uint64
		cpu0     time.Duration
	)
	defer func() {
		if nc != nil {
			nc.Close()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return drain{err: ctx.Err()}
		case <-time.After(50 * time.Millisecond):
		}
		if time.Since(start) > time.Minute {
			return drain{notMeasured: "the analytics service did not drain ANALYTICS within a minute of starting: is clickhouse-server installed?"}
		}
		if js == nil {
			// The server is starting, and the password file may still be
			// the one of the run before.
			var err error
			if nc, err = p.connectNATS(); err != nil {
				continue
			}
			if js, err = jetstream.New(nc); err != nil {
				return drain{err: err}
			}
		}
		now := time.Now()
		info, err := consumerInfo(ctx, js)
		if err != nil {
			// Not created yet, or the server is not answering yet.
			continue
		}
		if first == nil {
			first = info
			if info.Created.After(from) {
				from = info.Created
			}
			last0 = streamLast(ctx, js)
			cpu0, _ = p.cpuTime()
			if r, err := js.Consumer(ctx, "CHAT", relayConsumer); err == nil {
				d.relayPending, d.relayAckPending = r.CachedInfo().NumPending, uint64(r.CachedInfo().NumAckPending)
			}
		}
		if info.Delivered.Stream == first.AckFloor.Stream {
			lastIdle = now
		}
		if !lastIdle.IsZero() {
			from = lastIdle
		}
		done := info.AckFloor.Stream - first.AckFloor.Stream
		el := now.Sub(from)
		fmt.Fprintf(os.Stderr, "\r%-30s %5.1fs %9d messages acked %9.0f/s %9d pending", "analytics: facts into ClickHouse", el.Seconds(), done, float64(done)/max(el.Seconds(), 1e-3), info.NumPending+uint64(info.NumAckPending))
		if info.NumPending == 0 && info.NumAckPending == 0 && done > 0 {
			fmt.Fprintln(os.Stderr)
			cpu, _ := p.cpuTime()
			d.facts, d.took, d.sinceStart, d.published, d.cpu = done, el, now.Sub(start), streamLast(ctx, js)-last0, cpu-cpu0
			// A message may hold many facts: the process counts them.
			if m, err := p.promValues(ctx, factsIngested); err != nil {
				return drain{err: err}
			} else if n, ok := m[factsIngested]; ok {
				d.facts = uint64(n)
			}
			if r, err := js.Consumer(ctx, "CHAT", relayConsumer); err == nil {
				d.relayPendingEnd = r.CachedInfo().NumPending
			}
			return d
		}
	}
}

// factsIngested is parley's count of the facts its analytics service
// stored since it started. A parley without it wrote one fact a message,
// and the messages acked are its facts.
const factsIngested = "parley_analytics_facts_ingested_total"

// streamLast is the last sequence of ANALYTICS, 0 when it cannot tell.
func streamLast(ctx context.Context, js jetstream.JetStream) uint64 {
	s, err := js.Stream(ctx, analyticsStream)
	if err != nil {
		return 0
	}
	return s.CachedInfo().State.LastSeq
}

func consumerInfo(ctx context.Context, js jetstream.JetStream) (*jetstream.ConsumerInfo, error) {
	c, err := js.Consumer(ctx, analyticsStream, analyticsConsumer)
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

// factLag posts one message as v and polls the messages metric until it
// counts one more.
func factLag(ctx context.Context, p *parley, v conversation, analyst string) (time.Duration, error) {
	client := http.DefaultClient
	count := func() (int64, error) {
		// Day buckets: an hour just begun may hold too few visitors to be
		// shown.
		now := time.Now().UTC()
		q := url.Values{
			"from":     {now.Add(-24 * time.Hour).Truncate(24 * time.Hour).Format(time.RFC3339)},
			"to":       {now.Add(48 * time.Hour).Truncate(24 * time.Hour).Format(time.RFC3339)},
			"interval": {"day"},
		}
		var m struct {
			Points []struct {
				Count *int64 `json:"count"`
			} `json:"points"`
		}
		if err := call(ctx, client, http.MethodGet, p.base+"/v1/metrics/messages?"+q.Encode(), analyst, nil, http.StatusOK, &m); err != nil {
			return 0, err
		}
		var n int64
		for _, pt := range m.Points {
			if pt.Count != nil {
				n += *pt.Count
			}
		}
		return n, nil
	}
	before, err := count()
	if err != nil {
		return 0, err
	}
	body, _ := json.Marshal(map[string]string{"text": "how long until this is counted?"})
	start := time.Now()
	if err := post(ctx, client, p.base+"/v1/conversations/"+v.id+"/messages", v.token, body, http.StatusCreated, nil); err != nil {
		return 0, err
	}
	for {
		n, err := count()
		if err != nil {
			return 0, err
		}
		if n > before {
			return time.Since(start), nil
		}
		if time.Since(start) > 30*time.Second {
			return 0, errors.New("a posted message was not counted in /v1/metrics/messages within 30 s")
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
