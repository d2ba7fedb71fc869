package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// exportMemory is parley's resident memory while concurrent exports of
// one large history run: an export must be streamed a page at a time, its
// memory bounded by a page, not by the history.
type exportMemory struct {
	Messages     int
	HistoryBytes int64 // of message text
	Exports      int   // run at once
	ExportBytes  int64 // of one export document
	Elapsed      time.Duration
	// RSSBefore is VmRSS once the history is posted and parley has
	// settled, just before the exports.
	RSSBefore int64
	// PeakRSS is VmHWM after the exports, the high-water mark having been
	// reset to the resident size before them (clear_refs); when the
	// kernel refused the reset, the largest VmRSS sampled.
	PeakRSS int64
	// SampledPeak is the largest VmRSS sampled every 10 ms meanwhile.
	SampledPeak int64
	HWMReset    bool
	// HeapBefore is parley's Go heap just before the exports, HeapPeak the
	// most of each of its figures sampled meanwhile (every 50 ms): the
	// resident growth split into the Go heap's and the rest's. The embedded
	// NATS server's caches of the stream's blocks are in the Go heap too.
	HeapBefore, HeapPeak goHeap
}

// goHeap is parley's Go heap as its /metrics tell.
type goHeap struct {
	InUse int64 // spans holding objects, live or garbage not yet swept
	// Resident is what the heap holds from the OS and has not returned to
	// it (heap_sys - heap_released): the most of it that can be resident.
	Resident int64
	Goal     int64 // the heap size at which the next collection ends
	GCs      int64 // collections since parley started
}

// Series of parley's /metrics that goHeap reads.
const (
	metricHeapInUse    = "go_memstats_heap_inuse_bytes"
	metricHeapSys      = "go_memstats_heap_sys_bytes"
	metricHeapReleased = "go_memstats_heap_released_bytes"
	metricHeapGoal     = "go_memstats_next_gc_bytes"
	metricGCs          = "go_gc_duration_seconds_count"
)

// goHeap samples parley's Go heap.
func (p *parley) goHeap(ctx context.Context) (goHeap, error) {
	v, err := p.promValues(ctx, metricHeapInUse, metricHeapSys, metricHeapReleased, metricHeapGoal, metricGCs)
	if err != nil {
		return goHeap{}, err
	}
	return goHeap{
		InUse:    int64(v[metricHeapInUse]),
		Resident: int64(v[metricHeapSys] - v[metricHeapReleased]),
		Goal:     int64(v[metricHeapGoal]),
		GCs:      int64(v[metricGCs]),
	}, nil
}

// most returns the most of each of h's and o's figures.
func (h goHeap) most(o goHeap) goHeap {
	return goHeap{InUse: max(h.InUse, o.InUse), Resident: max(h.Resident, o.Resident), Goal: max(h.Goal, o.Goal), GCs: max(h.GCs, o.GCs)}
}

// exportMessage is the size of a message of the exported history: large
// enough that the history is tens of MiB in a few thousand posts.
const exportMessage = 16 << 10

// measureExportMemory posts a history of about historyBytes as one
// visitor, then runs exports of it at once, each read to its end and
// checked whole, while parley's resident memory is sampled.
func measureExportMemory(ctx context.Context, p *parley, cfg config, historyBytes int64, exports int) (exportMemory, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * historyConversations}}
	n := int(historyBytes / exportMessage)
	tok, err := visitorWithHistory(ctx, client, p.base, n, exportMessage)
	if err != nil {
		return exportMemory{}, err
	}
	if err := p.settle(ctx, cfg.Settle); err != nil {
		return exportMemory{}, err
	}
	m := exportMemory{Messages: n, HistoryBytes: int64(n) * exportMessage, Exports: exports}
	if m.HeapBefore, err = p.goHeap(ctx); err != nil {
		return m, err
	}
	if m.RSSBefore, err = p.rss(); err != nil {
		return m, err
	}
	// Writing 5 to clear_refs resets the high-water mark to the resident
	// size now (Linux 4.0 on), so that VmHWM after is the exports' peak.
	m.HWMReset = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.cmd.Process.Pid), []byte("5"), 0) == nil

	sampled := make(chan int64, 1)
	stop := make(chan struct{})
	m.HeapPeak = m.HeapBefore
	go func() {
		peak, heapAt := m.RSSBefore, time.Now()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				sampled <- peak
				return
			case now := <-tick.C:
				if rss, err := p.rss(); err == nil {
					peak = max(peak, rss)
				}
				// /metrics less often: reading it costs parley some CPU.
				if now.Sub(heapAt) < 50*time.Millisecond {
					continue
				}
				heapAt = now
				if h, err := p.goHeap(ctx); err == nil {
					m.HeapPeak = m.HeapPeak.most(h)
				}
			}
		}
	}()
	start := time.Now()
	sizes := make([]int64, exports)
	errs := make([]error, exports)
	var wg sync.WaitGroup
	for i := range exports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sizes[i], errs[i] = readExport(ctx, client, p.base, tok, n)
		}()
	}
	wg.Wait()
	m.Elapsed = time.Since(start)
	close(stop)
	m.SampledPeak = <-sampled // and m.HeapPeak written
	if err := errors.Join(errs...); err != nil {
		return m, err
	}
	m.ExportBytes = sizes[0]
	m.PeakRSS = m.SampledPeak
	if m.HWMReset {
		if m.PeakRSS, err = p.procStatus("VmHWM"); err != nil {
			return m, err
		}
	}
	fmt.Fprintf(os.Stderr, "%-30s %d × %.1f MiB in %v: parley resident %.1f MiB before, peak %.1f MiB; %s\n", "export: memory",
		exports, mib(m.ExportBytes), m.Elapsed.Round(time.Millisecond), mib(m.RSSBefore), mib(m.PeakRSS), m.heapSummary())
	return m, nil
}

// readExport reads GET /v1/me/export to its end as a stream of JSON
// tokens, so that the load generator holds no more of it than parley
// should, and checks that it is one valid document holding the want
// messages. It returns the document's size.
func readExport(ctx context.Context, client *http.Client, base, token string, want int) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/me/export", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("export: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return 0, fmt.Errorf("export: %d %s", resp.StatusCode, b)
	}
	body := &countingReader{r: resp.Body}
	dec := json.NewDecoder(body)
	messages := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return body.n, fmt.Errorf("export after %d bytes: %w", body.n, err)
		}
		// Every message, and nothing else in an export, has a "seq".
		if tok == "seq" {
			messages++
		}
	}
	if messages != want {
		return body.n, fmt.Errorf("export holds %d messages, want %d", messages, want)
	}
	return body.n, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

// procStatus reads a size field of /proc/PID/status of parley, in bytes.
func (p *parley) procStatus(field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("read status: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		v, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s: %w", field, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, p.cmd.Process.Pid)
}
