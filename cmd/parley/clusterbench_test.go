package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
)

// clusterBenchWriters are the numbers of concurrent writers of
// BenchmarkClusterPosts, each on a conversation of its own.
var clusterBenchWriters = []int{8, 32}

// clusterBenchText is a post's text, as long as loadgen's (BENCHMARKS.md).
var clusterBenchText = strings.Repeat("m", 512)

// BenchmarkClusterPosts measures, with no faults, the production topology
// of TestFaults (three NATS server processes on loopback, every stream on
// all three, every write synced before it is acknowledged; two gateways,
// two chat and two privacy instances): 512-byte posts through the HTTP API
// of both gateways in turn (api), and, for comparison, synchronous
// JetStream publishes of the same size to an R3 stream of their own on the
// same servers (raw), as loadgen's raw baseline does on one server. Each
// runs with every count of clusterBenchWriters concurrent writers, an
// operation a post or publish; it reports posts (or publishes) a second
// and the p50 and p99 of their latency.
func BenchmarkClusterPosts(b *testing.B) {
	r := startFaultRig(b, slices.Max(clusterBenchWriters))
	// As TestFaults does before its first fault: a cluster just started
	// answers 503 for a while (consumers created, leaders elected).
	for w, c := range r.convs {
		for g := range r.gateways {
			natstest.Eventually(b, faultWithin, fmt.Sprintf("conversation %d posting through gateway-%d", w, g), func() error {
				return r.post(c, g)
			})
		}
	}
	for _, n := range clusterBenchWriters {
		b.Run("api/writers="+strconv.Itoa(n), func(b *testing.B) { r.benchPosts(b, n) })
	}
	for _, n := range clusterBenchWriters {
		b.Run("raw/writers="+strconv.Itoa(n), func(b *testing.B) { r.benchRaw(b, n) })
	}
}

// benchPosts posts b.N messages from writers writers, writer i on the
// rig's conversation i as its visitor, through the gateways in turn.
func (r *faultRig) benchPosts(b *testing.B, writers int) {
	benchWriters(b, writers, func(w, k int) error {
		return r.post(r.convs[w], (w+k)%len(r.gateways))
	})
}

// errRefused is a post answered 503: counted by benchWriters, not a
// failure (a request's deadline may pass on a loaded machine).
var errRefused = errors.New("post refused with 503")

// post posts a benchmark message to c as its visitor through gateway g.
func (r *faultRig) post(c *faultConversation, g int) error {
	key := http.Header{"Idempotency-Key": {rand.Text()}}
	status, err := r.gateways[g].doWith(http.MethodPost, "/v1/conversations/"+c.id+"/messages", c.visitor, key, map[string]string{"text": clusterBenchText}, nil)
	switch {
	case err != nil:
		return err
	case status == http.StatusServiceUnavailable:
		return errRefused
	case status != http.StatusCreated:
		return fmt.Errorf("post through gateway-%d: status %d", g, status)
	}
	return nil
}

// benchRaw publishes b.N messages of a post's size from writers
// goroutines on the admin's connection, to a stream on every node, file
// storage, each writer on a subject of its own.
func (r *faultRig) benchRaw(b *testing.B, writers int) {
	const name = "RAWBENCH"
	var s jetstream.Stream
	natstest.Eventually(b, faultWithin, "stream "+name+" created, R3", func() error {
		var err error
		s, err = r.admin.CreateOrUpdateStream(b.Context(), jetstream.StreamConfig{
			Name: name, Subjects: []string{"rawbench.>"}, Storage: jetstream.FileStorage, Replicas: natstest.ClusterSize,
		})
		return err
	})
	b.Cleanup(func() {
		if err := r.admin.DeleteStream(context.Background(), name); err != nil {
			b.Errorf("delete stream %s: %v", name, err)
		}
	})
	payload := bytes.Repeat([]byte("m"), len(clusterBenchText))
	benchWriters(b, writers, func(w, _ int) error {
		_, err := r.admin.Publish(b.Context(), "rawbench."+strconv.Itoa(w), payload)
		return err
	})
	if info, err := s.Info(b.Context()); err != nil || info.Config.Replicas != natstest.ClusterSize {
		b.Fatalf("stream %s: %v, want %d replicas", name, err, natstest.ClusterSize)
	}
}

// benchWriters runs b.N calls of op, op(w, k) being writer w's k-th, from
// writers goroutines each making its calls one after the other, and
// reports their rate and latency, and the calls refused (errRefused),
// which count in neither. It stops at the first other error.
func benchWriters(b *testing.B, writers int, op func(w, k int) error) {
	var (
		next    atomic.Int64
		refused atomic.Int64
		wg      sync.WaitGroup
		took    = make([][]time.Duration, writers)
		start   = time.Now()
	)
	b.ResetTimer()
	for w := range writers {
		wg.Go(func() {
			for k := 0; next.Add(1) <= int64(b.N); k++ {
				t0 := time.Now()
				err := op(w, k)
				if errors.Is(err, errRefused) {
					refused.Add(1)
					continue
				}
				if err != nil {
					b.Error(err)
					next.Store(int64(b.N)) // the others stop too
					return
				}
				took[w] = append(took[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Sorted(slices.Values(slices.Concat(took...)))
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "posts/s")
	b.ReportMetric(ms(all[len(all)/2]), "p50-ms")
	b.ReportMetric(ms(all[len(all)*99/100]), "p99-ms")
	b.ReportMetric(float64(refused.Load()), "refused")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
