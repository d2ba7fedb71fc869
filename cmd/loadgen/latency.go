package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// latency is WebSocket delivery at one offered rate: messages are posted on
// a schedule (open loop: a slow answer does not hold back the next post)
// and each is timed from just before its POST to its arrival on the
// visitor's live stream.
type latency struct {
	Rate      float64 // offered, messages per second
	Visitors  int     // conversations posted to, each with a live stream
	Achieved  float64 // posts answered 201 per second of the phase
	Posted    int64
	Delivered int64
	Shed      int64 // posts never sent: their conversation was convQueue behind
	Errors    int64
	P50, P90  time.Duration
	P99, Max  time.Duration
	// PostP50 and PostP99 are of the POSTs' answers, for comparison.
	PostP50, PostP99 time.Duration
}

// convQueue bounds the posts waiting for their conversation's post before
// them; past it the system is not keeping up and further posts are shed,
// and counted, rather than queued without end in the load generator.
const convQueue = 4

// measureLatency creates visitors visitors, each with a conversation and
// a live stream, and posts at each rate for cfg.Duration, spreading the
// posts over the conversations. As many conversations as visitors on a
// site at once, rather than a few posting flat out, keep appends to one
// conversation (serialised, as they must be) from racing each other.
func measureLatency(ctx context.Context, p *parley, cfg config, visitors int, rates []float64) ([]latency, error) {
	setup := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	convs, err := spreadConversations(ctx, p, setup, visitors)
	if err != nil {
		return nil, err
	}
	// A client and kept-alive connection of each visitor's own, as their
	// browser would hold: one pool shared by all of them would have every
	// post take its lock, a wait no visitor has.
	clients := make([]*http.Client, len(convs))
	for i := range clients {
		clients[i] = &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
	}
	rec := newReceiver()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wsURL := "ws" + strings.TrimPrefix(p.base, "http") + "/v1/stream"
	for _, c := range convs {
		conn, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{
			HTTPHeader: http.Header{"Authorization": {"Bearer " + c.token}},
		})
		if err != nil {
			return nil, fmt.Errorf("open live stream: %w", err)
		}
		conn.SetReadLimit(1 << 20)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.CloseNow()
			rec.read(ctx, conn)
		}()
	}
	var out []latency
	for i, rate := range rates {
		// A warm-up at the rate opens the pool's connections and fills
		// the caches of keys before anything is timed. The phase in each
		// nonce keeps a late arrival from the phase before out of this
		// one's figures.
		if err := p.settle(ctx, cfg.Settle); err != nil {
			return nil, err
		}
		if _, err := pacedPosts(ctx, p, cfg, clients, convs, rec, 2*i, rate, cfg.WarmUp, "warm-up"); err != nil {
			return nil, err
		}
		l, err := pacedPosts(ctx, p, cfg, clients, convs, rec, 2*i+1, rate, cfg.Duration, "")
		if err != nil {
			return nil, err
		}
		l.Visitors = len(convs)
		out = append(out, l)
	}
	return out, nil
}

// visitorsPerTenant is how many visitors a phase mints in one tenant at
// once, within the gateway's burst.
const visitorsPerTenant = 150

// spreadConversations opens n conversations of as many visitors, over new
// tenants (bench-1, bench-2, …) of visitorsPerTenant visitors each.
func spreadConversations(ctx context.Context, p *parley, client *http.Client, n int) ([]conversation, error) {
	var out []conversation
	for t := 1; len(out) < n; t++ {
		id := "bench-" + strconv.Itoa(t)
		if err := p.putTenant(ctx, client, id, "Load generator "+strconv.Itoa(t), http.StatusCreated); err != nil {
			return nil, err
		}
		convs, err := openConversations(ctx, client, p.base, id, min(visitorsPerTenant, n-len(out)))
		if err != nil {
			return nil, err
		}
		out = append(out, convs...)
	}
	return out, nil
}

// pacedPosts posts rate messages a second for d, then waits a moment for
// the last deliveries. Each conversation sends its posts one after the
// other, as a chat client does to keep them in order; a post due while
// its conversation has convQueue posts waiting already is shed.
func pacedPosts(ctx context.Context, p *parley, cfg config, clients []*http.Client, convs []conversation, rec *receiver, phase int, rate float64, d time.Duration, label string) (latency, error) {
	l := latency{Rate: rate}
	rec.begin(phase)
	var posted, errs, shed atomic.Int64
	var wg sync.WaitGroup
	pad := strings.Repeat("m", max(0, cfg.Payload-40))
	queues := make([]chan struct{}, len(convs))
	answered := make([][]time.Duration, len(convs))
	for i, c := range convs {
		queues[i] = make(chan struct{}, convQueue)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range queues[i] {
				sent := time.Now()
				body, _ := json.Marshal(map[string]string{"text": nonce(phase, sent) + pad})
				if err := post(ctx, clients[i], p.base+"/v1/conversations/"+c.id+"/messages", c.token, body, http.StatusCreated, nil); err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
					}
					continue
				}
				answered[i] = append(answered[i], time.Since(sent))
				posted.Add(1)
			}
		}()
	}
	name := strings.TrimSpace(fmt.Sprintf("ws: latency at %.0f/s %s", rate, label))
	start := time.Now()
	progress := time.NewTicker(time.Second)
	defer progress.Stop()
	pace(ctx, rate, d, func(i int) {
		select {
		case <-progress.C:
			el := time.Since(start)
			fmt.Fprintf(os.Stderr, "\r%-30s %5.1fs %9d ok %9.0f/s %7d delivered", name, el.Seconds(), posted.Load(), float64(posted.Load())/el.Seconds(), rec.count())
		default:
		}
		select {
		case queues[i%len(queues)] <- struct{}{}:
		default:
			shed.Add(1)
		}
	})
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
	el := time.Since(start)
	// Deliveries trail their answers by a little; give the last ones
	// their chance, and call the rest lost.
	deadline := time.Now().Add(3 * time.Second)
	for rec.count() < posted.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	lat := rec.end()
	l.Posted, l.Errors, l.Shed = posted.Load(), errs.Load(), shed.Load()
	l.Achieved = float64(l.Posted) / el.Seconds()
	l.Delivered = int64(len(lat))
	l.P50, l.P90, l.P99, l.Max = percentile(lat, 50), percentile(lat, 90), percentile(lat, 99), percentile(lat, 100)
	all := slices.Concat(answered...)
	l.PostP50, l.PostP99 = percentile(all, 50), percentile(all, 99)
	fmt.Fprintf(os.Stderr, "\r%-30s %5.1fs %9d ok %9.0f/s %7d delivered, p50 %v p99 %v\n", name, el.Seconds(), l.Posted, l.Achieved, l.Delivered, fmtDur(l.P50), fmtDur(l.P99))
	return l, ctx.Err()
}

// pace calls fire(0), fire(1), … at rate calls a second for d, on a
// schedule of its own: the calls are due at start + i/rate whatever fire
// did with the ones before. fire must not block. It returns the number of
// calls made.
func pace(ctx context.Context, rate float64, d time.Duration, fire func(i int)) int {
	total := int(rate * d.Seconds())
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	fired := 0
	for fired < total {
		select {
		case <-ctx.Done():
			return fired
		case now := <-tick.C:
			for due := min(total, int(now.Sub(start).Seconds()*rate)+1); fired < due; fired++ {
				fire(fired)
			}
		}
	}
	return fired
}

// nonce is how a timed message begins: the phase and the time it was
// sent, so the receiver times it without asking anyone.
func nonce(phase int, sent time.Time) string {
	return "lat " + strconv.Itoa(phase) + " " + strconv.FormatInt(sent.UnixNano(), 10) + " "
}

// parseNonce returns the phase and send time of a timed message's text.
func parseNonce(text string) (phase int, sent time.Time, ok bool) {
	f := strings.SplitN(text, " ", 4)
	if len(f) < 4 || f[0] != "lat" {
		return 0, time.Time{}, false
	}
	phase, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, time.Time{}, false
	}
	ns, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return 0, time.Time{}, false
	}
	return phase, time.Unix(0, ns), true
}

// receiver collects the delivery latencies of the current phase from
// every live stream.
type receiver struct {
	mu    sync.Mutex
	phase int
	lat   []time.Duration
	n     atomic.Int64
}

func newReceiver() *receiver { return &receiver{phase: -1} }

func (r *receiver) begin(phase int) {
	r.mu.Lock()
	r.phase, r.lat = phase, nil
	r.n.Store(0)
	r.mu.Unlock()
}

func (r *receiver) end() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.phase = -1
	return r.lat
}

func (r *receiver) count() int64 { return r.n.Load() }

// read records the timed messages arriving on conn until it fails.
func (r *receiver) read(ctx context.Context, conn *websocket.Conn) {
	var ev struct {
		Type    string `json:"type"`
		Message struct {
			Text string `json:"text"`
		} `json:"message"`
	}
	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			return
		}
		now := time.Now()
		ev.Type, ev.Message.Text = "", ""
		if json.Unmarshal(data, &ev) != nil || ev.Type != "message" {
			continue
		}
		phase, sent, ok := parseNonce(ev.Message.Text)
		if !ok {
			continue
		}
		r.mu.Lock()
		if phase == r.phase {
			r.lat = append(r.lat, now.Sub(sent))
			r.n.Add(1)
		}
		r.mu.Unlock()
	}
}
