package main

import (
	"bytes"
	"context"
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
	// OwnCPU is the load generator's own CPU time per post, its frame
	// read and timed included.
	OwnCPU time.Duration
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
	// A kept-alive connection of each visitor's own, as their browser
	// would hold: one pool shared by all of them would have every post
	// take its lock, a wait no visitor has.
	posters, err := messagePosters(p, convs)
	if err != nil {
		return nil, err
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
		// Closed once when the phase ends, rather than a context handed to
		// every read, which would register with it and unregister again
		// on every frame.
		stop := context.AfterFunc(ctx, func() { conn.CloseNow() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer stop()
			defer conn.CloseNow()
			rec.read(conn)
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
		if _, err := pacedPosts(ctx, cfg, posters, rec, 2*i, rate, cfg.WarmUp, "warm-up"); err != nil {
			return nil, err
		}
		l, err := pacedPosts(ctx, cfg, posters, rec, 2*i+1, rate, cfg.Duration, "")
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
func pacedPosts(ctx context.Context, cfg config, posters []*poster, rec *receiver, phase int, rate float64, d time.Duration, label string) (latency, error) {
	l := latency{Rate: rate}
	rec.begin(phase)
	var posted, errs, shed atomic.Int64
	var wg sync.WaitGroup
	pad := strings.Repeat("m", max(0, cfg.Payload-40))
	queues := make([]chan struct{}, len(posters))
	answered := make([][]time.Duration, len(posters))
	for i := range posters {
		queues[i] = make(chan struct{}, convQueue)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var body []byte
			for range queues[i] {
				sent := time.Now()
				body = appendMessage(body[:0], phase, sent, pad)
				if err := posters[i].post(ctx, body, http.StatusCreated); err != nil {
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
	start, cpu := time.Now(), ownCPU()
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
	l.OwnCPU = perOp(cpu, l.Posted)
	l.Achieved = float64(l.Posted) / el.Seconds()
	l.Delivered = int64(len(lat))
	l.P50, l.P90, l.P99, l.Max = percentile(lat, 50), percentile(lat, 90), percentile(lat, 99), percentile(lat, 100)
	all := slices.Concat(answered...)
	l.PostP50, l.PostP99 = percentile(all, 50), percentile(all, 99)
	fmt.Fprintf(os.Stderr, "\r%-30s %5.1fs %9d ok %9.0f/s %7d delivered, p50 %v p99 %v; loadgen's CPU %v a post\n", name, el.Seconds(), l.Posted, l.Achieved, l.Delivered, fmtDur(l.P50), fmtDur(l.P99), l.OwnCPU.Round(100*time.Nanosecond))
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

// appendMessage appends the JSON body of a timed message to b: its nonce,
// then pad. Neither needs escaping in JSON, so both are written as they
// are, the bytes json.Marshal would write.
func appendMessage(b []byte, phase int, sent time.Time, pad string) []byte {
	b = append(b, `{"text":"`...)
	b = appendNonce(b, phase, sent)
	b = append(b, pad...)
	return append(b, `"}`...)
}

// appendNonce appends how a timed message begins: the phase and the time
// it was sent, so the receiver times it without asking anyone.
func appendNonce(b []byte, phase int, sent time.Time) []byte {
	b = append(b, "lat "...)
	b = strconv.AppendInt(b, int64(phase), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, sent.UnixNano(), 10)
	return append(b, ' ')
}

// parseNonce returns the phase and send time of a timed message's text,
// which may run on past it.
func parseNonce(text []byte) (phase int, sent time.Time, ok bool) {
	rest, ok := bytes.CutPrefix(text, []byte("lat "))
	if !ok {
		return 0, time.Time{}, false
	}
	p, rest, ok := leadingNumber(rest)
	if !ok {
		return 0, time.Time{}, false
	}
	ns, _, ok := leadingNumber(rest)
	if !ok {
		return 0, time.Time{}, false
	}
	return int(p), time.Unix(0, ns), true
}

// leadingNumber parses the decimal digits of b up to its first space, and
// returns what follows the space.
func leadingNumber(b []byte) (n int64, rest []byte, ok bool) {
	i := bytes.IndexByte(b, ' ')
	if i < 1 || i > 19 { // the digits of an int64 at most
		return 0, nil, false
	}
	for _, c := range b[:i] {
		if c < '0' || c > '9' {
			return 0, nil, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, b[i+1:], true
}

// Where a frame of the live stream says what it is and where its message's
// text begins: JSON escapes every quote inside a string, so neither can
// turn up inside a value, and a nonce needs no escaping.
var (
	messageType = []byte(`"type":"message"`)
	textField   = []byte(`"text":"`)
)

// timedFrame returns the phase and send time of a live stream's frame
// that shows a timed message. Only these bytes are looked at: decoding
// the whole frame would cost the load generator more than reading it.
func timedFrame(frame []byte) (phase int, sent time.Time, ok bool) {
	if !bytes.Contains(frame, messageType) {
		return 0, time.Time{}, false
	}
	_, text, ok := bytes.Cut(frame, textField)
	if !ok {
		return 0, time.Time{}, false
	}
	return parseNonce(text)
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

// read records the timed messages arriving on conn until it fails. Each
// frame is read into the same buffer.
func (r *receiver) read(conn *websocket.Conn) {
	var frame bytes.Buffer
	for {
		_, msg, err := conn.Reader(context.Background())
		if err != nil {
			return
		}
		frame.Reset()
		if _, err := frame.ReadFrom(msg); err != nil {
			return
		}
		now := time.Now()
		phase, sent, ok := timedFrame(frame.Bytes())
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
