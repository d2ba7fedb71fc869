package chat_test

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"
)

// measureMessages reads PARLEY_MEASURE_MESSAGES, the retained messages the
// measurements of BENCHMARKS.md run with; the measurements are skipped
// without it.
func measureMessages(t *testing.T) int {
	t.Helper()
	v := os.Getenv("PARLEY_MEASURE_MESSAGES")
	if v == "" {
		t.Skip("set PARLEY_MEASURE_MESSAGES to measure (see BENCHMARKS.md)")
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("PARLEY_MEASURE_MESSAGES = %q, want a count", v)
	}
	return n
}

// seed stores messages of 64 bytes spread over conversations, each of its
// own visitor, as the chat service stores them (sealed, with the default
// retention's TTL and the event id as Nats-Msg-Id), straight into CHAT, and
// a fact of each into ANALYTICS, a message each as the relay wrote them
// before it wrote a batch's facts in one (the heavier backlog): far faster
// than through the services, and the same to a restart.
func seed(t *testing.T, s *natsembed.Server, ks *keyService, prefix string, conversations, messages int) []string {
	t.Helper()
	_, js := natstest.Connect(t, s)
	if err := stream.Ensure(t.Context(), js, stream.Options{}, stream.Chat, stream.Analytics); err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("x", 64)
	convs := make([]string, conversations)
	visitors := make([]string, conversations)
	for i := range convs {
		convs[i], visitors[i] = event.NewID(), fmt.Sprint(prefix, i)
		ks.add(t, tenant, visitors[i])
	}
	at := time.Now().UTC()
	pending := 0
	publish := func(i int, typ event.Type, payload any) {
		ks.mu.Lock()
		k := ks.keys[[2]string{tenant, visitors[i]}]
		ks.mu.Unlock()
		env, err := event.New(k.Data, typ, tenant, visitors[i], convs[i], at, payload)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsgAsync(env.Msg(stream.ChatSubject(tenant, convs[i])), jetstream.WithMsgTTL(365*24*time.Hour)); err != nil {
			t.Fatal(err)
		}
		// The relay derives a fact of each event into ANALYTICS, where
		// they wait with no ClickHouse to take them, as in the bench.
		if _, err := js.PublishMsgAsync(factMsg(env)); err != nil {
			t.Fatal(err)
		}
		if pending++; pending%2000 == 0 {
			<-js.PublishAsyncComplete()
		}
	}
	for i := range convs {
		publish(i, event.ConversationOpened, &event.Opened{Visitor: visitors[i], Text: text})
	}
	for m := conversations; m < messages; m++ {
		i := m % conversations
		publish(i, event.MessagePosted, &event.Posted{Author: event.Author{Role: string(auth.RoleVisitor), ID: visitors[i]}, Text: text})
	}
	<-js.PublishAsyncComplete()
	return convs
}

// factMsg returns a fact as the relay derives it from e, in a message of
// its own as the relay wrote them before analyticsapi.KindFacts: its
// Nats-Msg-Id is the fact id, its body of the size of a real one.
func factMsg(e event.Envelope) *nats.Msg {
	f := analyticsapi.Fact{
		ID: analyticsapi.FactID(e.ID, analyticsapi.KindMessage), Tenant: e.Tenant, Kind: analyticsapi.KindMessage, At: e.At,
		Conversation: strings.Repeat("c", 64), Visitor: strings.Repeat("v", 64), Role: string(auth.RoleVisitor), Length: analyticsapi.Length21to100,
	}
	data, _ := json.Marshal(f)
	m := nats.NewMsg(analyticsapi.Subject(f.Tenant, f.Kind))
	m.Header.Set(jetstream.MsgIDHeader, f.ID)
	m.Data = data
	return m
}

// measureServer starts what every measurement runs against: a NATS server
// holding PARLEY_MEASURE_MESSAGES retained messages over 1,000
// conversations (fewer when there are fewer messages), the key service and
// the settings bucket. It returns the message count with them.
func measureServer(t *testing.T) (int, *natsembed.Server, *keyService) {
	t.Helper()
	n := measureMessages(t)
	s := natstest.Start(t, t.TempDir())
	ks := startKeyService(t, s)
	settingsBucket(t, s)
	if n > 0 {
		seed(t, s, ks, "v", min(n, 1000), n)
	}
	return n, s, ks
}

// heap returns the bytes of live heap after a collection, and the resident
// set of the process.
func heap(t *testing.T) (live, rss uint64) {
	t.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			rss = kb << 10
		}
	}
	return ms.HeapAlloc, rss
}

// profile writes a heap profile named name into PARLEY_MEASURE_PROFILES,
// when set.
func profile(t *testing.T, name string) {
	t.Helper()
	dir := os.Getenv("PARLEY_MEASURE_PROFILES")
	if dir == "" {
		return
	}
	f, err := os.Create(filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".pprof"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		t.Fatal(err)
	}
}

// TestMeasureStart measures the chat service's start to ready and the heap
// it holds once ready, with PARLEY_MEASURE_MESSAGES retained messages over
// 1,000 conversations (fewer when there are fewer messages): a first start
// and a restart. The embedded NATS server shares the process; its block
// cache, which the reads fill, expires after a few seconds of quiet, so the
// heap is measured again after 10 seconds. With PARLEY_MEASURE_PROFILES
// set to a directory, a heap profile is written there at each point.
func TestMeasureStart(t *testing.T) {
	n, s, _ := measureServer(t)
	for _, run := range []string{"first start", "restart"} {
		base, baseRSS := heap(t)
		start := time.Now()
		in := startChat(t, s)
		ready := time.Since(start)
		live, rss := heap(t)
		profile(t, run+" ready")
		time.Sleep(10 * time.Second) // let the server's block cache expire; a measurement, not a test
		settled, settledRSS := heap(t)
		profile(t, run+" settled")
		t.Logf("%d messages, %s: ready in %v; heap +%d MiB at ready, +%d MiB 10 s later; RSS %d MiB → %d MiB → %d MiB",
			n, run, ready.Round(time.Millisecond), (int64(live)-int64(base))>>20, (int64(settled)-int64(base))>>20, baseRSS>>20, rss>>20, settledRSS>>20)
		if err := in.stop(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMeasureTranscript measures reading a transcript of 500 messages, one
// page of 500, among PARLEY_MEASURE_MESSAGES others: p50 and p99 of 300
// reads.
func TestMeasureTranscript(t *testing.T) {
	n, s, ks := measureServer(t)
	convs := seed(t, s, ks, "reader", 1, 500)
	startChat(t, s)
	c := newClient(t, s)
	p := principal(tenant, auth.RoleVisitor, "reader0")
	args := chatapi.MessagesArgs{Conversation: convs[0], Page: chatapi.Page[uint64]{Limit: chatapi.PageItems}}
	var (
		took []time.Duration
		gc   []bool // whether a collection ended during the read
	)
	cycles := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	for range 300 {
		var res chatapi.MessagesResult
		metrics.Read(cycles)
		before := cycles[0].Value.Uint64()
		start := time.Now()
		c.must(p, chatapi.MessagesSubject, args, &res)
		took = append(took, time.Since(start))
		metrics.Read(cycles)
		gc = append(gc, cycles[0].Value.Uint64() != before)
		if len(res.Messages) != 500 {
			t.Fatalf("read %d messages, want 500", len(res.Messages))
		}
	}
	// Where the tail comes from: the first reads after the start, or reads
	// during a collection.
	order := make([]int, len(took))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(took[b], took[a]) })
	var slow []string
	for _, i := range order[:8] {
		slow = append(slow, fmt.Sprintf("#%d %v (gc %t)", i, took[i].Round(10*time.Microsecond), gc[i]))
	}
	t.Logf("%d of %d reads saw a collection end; first reads %v %v %v; slowest %s", countTrue(gc), len(gc),
		took[0].Round(10*time.Microsecond), took[1].Round(10*time.Microsecond), took[2].Round(10*time.Microsecond), strings.Join(slow, ", "))
	slices.Sort(took)
	t.Logf("%d messages retained: transcript of 500, p50 %v, p99 %v", n, took[len(took)/2].Round(10*time.Microsecond), took[len(took)*99/100].Round(10*time.Microsecond))
}

func countTrue(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// TestMeasureClosed measures the heap the chat service holds once ready
// with PARLEY_MEASURE_CLOSED closed conversations of two messages each, and
// 100 open ones: a first start, which folds CHAT, and a restart from the
// view. What it holds grows with the open conversations, not the closed.
// The embedded NATS server shares the process: the heap is measured again
// after 10 seconds, once its block cache expired.
func TestMeasureClosed(t *testing.T) {
	v := os.Getenv("PARLEY_MEASURE_CLOSED")
	if v == "" {
		t.Skip("set PARLEY_MEASURE_CLOSED to measure")
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("PARLEY_MEASURE_CLOSED = %q, want a count", v)
	}
	s := natstest.Start(t, t.TempDir())
	ks := startKeyService(t, s)
	settingsBucket(t, s)
	convs := seed(t, s, ks, "v", n, 2*n)
	closeAll(t, s, ks, "v", convs)
	seed(t, s, ks, "open", 100, 100)
	for _, run := range []string{"first start", "restart"} {
		base, _ := heap(t)
		start := time.Now()
		in := startChat(t, s)
		ready := time.Since(start)
		live, _ := heap(t)
		time.Sleep(10 * time.Second) // let the server's block cache expire; a measurement, not a test
		settled, _ := heap(t)
		grown := func(b uint64) string {
			d := float64(int64(b) - int64(base))
			return fmt.Sprintf("+%.1f MiB (%.0f B a closed conversation)", d/(1<<20), d/float64(n))
		}
		t.Logf("%d closed conversations, %s: ready in %v; heap %s at ready, %s 10 s later",
			n, run, ready.Round(time.Millisecond), grown(live), grown(settled))
		t.Logf("%d closed conversations, %s: inbox pages of 100, %s", n, run, pageTimes(t, newClient(t, s), 20))
		if err := in.stop(); err != nil {
			t.Fatal(err)
		}
	}
}

// closeAll stores the closing of each of convs, seeded by seed with prefix.
func closeAll(t *testing.T, s *natsembed.Server, ks *keyService, prefix string, convs []string) {
	t.Helper()
	_, js := natstest.Connect(t, s)
	at := time.Now().UTC()
	for i, conv := range convs {
		visitor := fmt.Sprint(prefix, i)
		ks.mu.Lock()
		k := ks.keys[[2]string{tenant, visitor}]
		ks.mu.Unlock()
		env, err := event.New(k.Data, event.ConversationClosed, tenant, visitor, conv, at, &event.Closed{By: event.Author{Role: string(auth.RoleVisitor), ID: visitor}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsgAsync(env.Msg(stream.ChatSubject(tenant, conv)), jetstream.WithMsgTTL(365*24*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if i%2000 == 1999 {
			<-js.PublishAsyncComplete()
		}
	}
	<-js.PublishAsyncComplete()
}

// TestMeasureInbox measures listing an inbox of PARLEY_MEASURE_OPEN open
// conversations (10,000 unless set) through the bus, a page of 100 at a
// time: p50 and p99 of the pages of three walks through it.
func TestMeasureInbox(t *testing.T) {
	v := os.Getenv("PARLEY_MEASURE_OPEN")
	if v == "" {
		t.Skip("set PARLEY_MEASURE_OPEN to measure")
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("PARLEY_MEASURE_OPEN = %q, want a count", v)
	}
	s := natstest.Start(t, t.TempDir())
	ks := startKeyService(t, s)
	settingsBucket(t, s)
	seed(t, s, ks, "v", n, n)
	startChat(t, s)
	t.Logf("%d open conversations: inbox pages of 100, %s", n, pageTimes(t, newClient(t, s), 3*n/100))
}

// pageTimes lists the inbox as a supervisor, pages pages of 100 from the
// first, starting again at the last, and tells their p50 and p99.
func pageTimes(t *testing.T, c client, pages int) string {
	t.Helper()
	var (
		took  []time.Duration
		after string
	)
	for range pages {
		var res chatapi.ListResult
		start := time.Now()
		c.must(supervisor, chatapi.ListSubject, chatapi.ListArgs{Page: chatapi.Page[string]{After: after, Limit: 100}}, &res)
		took = append(took, time.Since(start))
		after = ""
		if res.Next != nil {
			after = *res.Next
		}
	}
	slices.Sort(took)
	return fmt.Sprintf("p50 %v, p99 %v", took[len(took)/2].Round(10*time.Microsecond), took[len(took)*99/100].Round(10*time.Microsecond))
}
