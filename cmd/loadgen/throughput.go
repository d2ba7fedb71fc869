package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// throughput compares messages posted through the HTTP API, end to end and
// durable in JetStream, with raw synchronous JetStream publishes of the same
// payload by as many concurrent publishers, on the same server.
type throughput struct {
	RawPerSec    float64
	APIPerSec    float64
	Ratio        float64
	APIP50       time.Duration
	APIP99       time.Duration
	APIErrors    int64
	RawPublished int64
	APIPosted    int64
	// RawOwnCPU and APIOwnCPU are the load generator's own CPU time per
	// publish and per post: what it took from the cores parley runs on.
	RawOwnCPU, APIOwnCPU time.Duration
}

// measureThroughput posts through convs, one worker per conversation,
// each over a connection of its own.
func measureThroughput(ctx context.Context, p *parley, cfg config, convs []conversation) (throughput, error) {
	var t throughput
	var err error
	cpu := ownCPU()
	if t.RawPublished, t.RawPerSec, err = rawPublish(ctx, p, cfg); err != nil {
		return t, err
	}
	t.RawOwnCPU = perOp(cpu, t.RawPublished)
	text := strings.Repeat("m", cfg.Payload)
	body, _ := json.Marshal(map[string]string{"text": text})
	posters, err := messagePosters(p, convs)
	if err != nil {
		return t, err
	}
	var errs atomic.Int64
	latencies := make([][]time.Duration, len(convs))
	cpu = ownCPU()
	count, rate := drive("api: POST messages", cfg, func(ctx context.Context, worker int) bool {
		start := time.Now()
		err := posters[worker].post(ctx, body, http.StatusCreated)
		if err != nil {
			if ctx.Err() == nil {
				errs.Add(1)
			}
			return false
		}
		latencies[worker] = append(latencies[worker], time.Since(start))
		return true
	})
	t.APIPosted, t.APIPerSec, t.APIErrors = count, rate, errs.Load()
	t.APIOwnCPU = perOp(cpu, count)
	fmt.Fprintf(os.Stderr, "%-30s %v a publish, %v a post\n", "loadgen's own CPU", t.RawOwnCPU.Round(100*time.Nanosecond), t.APIOwnCPU.Round(100*time.Nanosecond))
	all := slices.Concat(latencies...)
	t.APIP50, t.APIP99 = percentile(all, 50), percentile(all, 99)
	if t.RawPerSec > 0 {
		t.Ratio = t.APIPerSec / t.RawPerSec
	}
	return t, nil
}

type conversation struct {
	id, token string
}

// openConversations creates n visitors of tenant, each with an open
// conversation. The gateway lets a tenant mint visitorsPerTenant visitors
// at once (a bucket of 200 refilled at 100 a second); spreadConversations
// opens more.
func openConversations(ctx context.Context, client *http.Client, base, tenant string, n int) ([]conversation, error) {
	convs := make([]conversation, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	sem := make(chan struct{}, 16)
	for i := range convs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var v struct{ Token string }
			body := []byte(`{"consent":{"analytics":true,"network_data":false,"ai":false},"notice_version":"bench"}`)
			if errs[i] = post(ctx, client, base+"/v1/tenants/"+tenant+"/visitors", "", body, http.StatusCreated, &v); errs[i] != nil {
				return
			}
			var c struct{ ID string }
			errs[i] = post(ctx, client, base+"/v1/conversations", v.Token, []byte(`{"text":"hello"}`), http.StatusCreated, &c)
			convs[i] = conversation{id: c.ID, token: v.Token}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("open conversations: %w", err)
		}
	}
	return convs, nil
}

func post(ctx context.Context, client *http.Client, url, token string, body []byte, want int, out any) error {
	return call(ctx, client, http.MethodPost, url, token, body, want, out)
}

// call makes one API request and decodes the answer into out (when not
// nil), unless its status is not want.
func call(ctx context.Context, client *http.Client, method, url, token string, body []byte, want int, out any) error {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d %s", method, req.URL.Path, resp.StatusCode, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// rawPublish publishes payload-sized messages synchronously to a stream of
// its own on the same server, one subject per publisher.
func rawPublish(ctx context.Context, p *parley, cfg config) (int64, float64, error) {
	nc, err := p.connectNATS()
	if err != nil {
		return 0, 0, fmt.Errorf("connect raw publisher: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, 0, err
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: rawStream, Subjects: []string{"rawbench.>"}, Storage: jetstream.FileStorage,
	}); err != nil {
		return 0, 0, fmt.Errorf("create raw bench stream: %w", err)
	}
	defer js.DeleteStream(context.Background(), rawStream)
	payload := bytes.Repeat([]byte("m"), cfg.Payload)
	subjects := make([]string, cfg.Concurrency)
	for w := range subjects {
		subjects[w] = "rawbench." + strconv.Itoa(w)
	}
	count, rate := drive("raw: JetStream sync publish", cfg, func(ctx context.Context, worker int) bool {
		// The request jetstream.Publish makes, its ack checked without
		// decoding it: decoding took the load generator as long as the
		// request.
		ack, err := nc.RequestWithContext(ctx, subjects[worker], payload)
		return err == nil && pubAcked(ack.Data, rawStream)
	})
	return count, rate, nil
}

// rawStream is the stream of the raw publishes.
const rawStream = "RAWBENCH"

// pubAcked tells whether a JetStream publish's answer is the ack of a
// message stored in stream. The server writes an ack as
// {"stream":…,"seq":…}, a domain between the two if it has one, and a
// failure as {"error":…}.
func pubAcked(answer []byte, stream string) bool {
	rest, ok := bytes.CutPrefix(answer, []byte(`{"stream":"`))
	if !ok {
		return false
	}
	rest, ok = bytes.CutPrefix(rest, []byte(stream+`",`))
	return ok && bytes.Contains(rest, []byte(`"seq":`))
}

// drive runs op in cfg.Concurrency workers for cfg.Duration, printing a
// progress line every second, and returns the successful operations and
// their rate.
func drive(name string, cfg config, op func(ctx context.Context, worker int) bool) (int64, float64) {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration)
	defer cancel()
	var done atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if op(ctx, w) {
					done.Add(1)
				}
			}
		}()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	for {
		select {
		case <-tick.C:
			el := time.Since(start)
			fmt.Fprintf(os.Stderr, "\r%-30s %5.1fs %9d ok %9.0f/s", name, el.Seconds(), done.Load(), float64(done.Load())/el.Seconds())
		case <-finished:
			el := time.Since(start)
			n := done.Load()
			fmt.Fprintf(os.Stderr, "\r%-30s %5.1fs %9d ok %9.0f/s\n", name, el.Seconds(), n, float64(n)/el.Seconds())
			return n, float64(n) / el.Seconds()
		}
	}
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}
