package ingest

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/pkg/watermilljs"
)

// memStore is a Store in memory: the batches inserted and the pseudonyms
// of each deletion, in order. Erase waits for erasing to be closed, when it
// is set.
type memStore struct {
	mu       sync.Mutex
	batches  [][]analyticsapi.Fact
	erasures [][]string
	erasing  chan struct{}
}

func (s *memStore) Insert(_ context.Context, facts []analyticsapi.Fact) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches = append(s.batches, slices.Clone(facts))
	return nil
}

func (s *memStore) Erase(ctx context.Context, erased []analyticsapi.EraseArgs) ([]int64, error) {
	var pseudonyms []string
	for _, e := range erased {
		pseudonyms = append(pseudonyms, e.Pseudonym)
	}
	s.mu.Lock()
	s.erasures = append(s.erasures, pseudonyms)
	s.mu.Unlock()
	if s.erasing != nil {
		select {
		case <-s.erasing:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return make([]int64, len(erased)), nil
}

func (s *memStore) deletions() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.erasures)
}

func (s *memStore) facts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, b := range s.batches {
		n += len(b)
	}
	return n
}

// publishFacts stores n facts of visitor in ANALYTICS.
func publishFacts(t *testing.T, js jetstream.JetStream, visitor string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		f := analyticsapi.Fact{ID: fmt.Sprintf("f-%d:%s", i, analyticsapi.KindMessage), Tenant: "acme", Kind: analyticsapi.KindMessage, At: time.Now(), Visitor: visitor}
		data, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishAsync(analyticsapi.Subject("acme", analyticsapi.KindMessage), data, jetstream.WithMsgID(f.ID)); err != nil {
			t.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
}

// run runs an ingester into st until the test ends; maxDelay replaces
// MaxDelay when set, and ingested, when not nil, is told what New's is.
func run(t *testing.T, js jetstream.JetStream, st Store, maxDelay time.Duration, ingested func(facts int)) {
	t.Helper()
	in := New(js, slog.New(slog.DiscardHandler), func(context.Context) (Store, error) { return st, nil }, func(context.Context) {}, ingested)
	in.maxDelay = cmp.Or(maxDelay, in.maxDelay)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, 0, func(error) {}) }()
	t.Cleanup(func() {
		cancel()
		if err := natstest.Returns(t, 10*time.Second, "Run", done); err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
	})
}

// ackFloor is the ingester's consumer's acknowledgement floor, 0 when it
// cannot tell.
func ackFloor(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	c, err := js.Consumer(t.Context(), stream.Analytics, Durable)
	if err != nil {
		return 0
	}
	info, err := c.Info(t.Context())
	if err != nil {
		return 0
	}
	return info.AckFloor.Stream
}

// publishErasure stores an erasure request of pseudonym in ANALYTICS.
func publishErasure(t *testing.T, js jetstream.JetStream, pseudonym string) *jetstream.PubAck {
	t.Helper()
	args, err := json.Marshal(analyticsapi.EraseArgs{Tenant: "acme", Pseudonym: pseudonym})
	if err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(t.Context(), analyticsapi.Subject("acme", analyticsapi.KindErasure), args)
	if err != nil {
		t.Fatal(err)
	}
	return ack
}

// analyticsStream starts a server holding the ANALYTICS stream and
// returns a JetStream of it.
func analyticsStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, js := natstest.Connect(t, natstest.Start(t, ""))
	if err := stream.Ensure(t.Context(), js, stream.Options{}, stream.Analytics); err != nil {
		t.Fatal(err)
	}
	return js
}

// TestErasureHoldsAcksNotInserts has an erasure request stored while the
// ingester runs, between facts, with a store whose deletion does not end
// until the test says: the later facts are inserted meanwhile, except the
// erased pseudonym's, and nothing from the erasure request on is acked
// before the deletion is done.
func TestErasureHoldsAcksNotInserts(t *testing.T) {
	js := analyticsStream(t)
	erased, kept := strings.Repeat("e", 64), strings.Repeat("a", 64)
	st := &memStore{erasing: make(chan struct{})}
	run(t, js, st, 0, nil)
	publishFacts(t, js, erased, 0, 50)
	publishFacts(t, js, kept, 50, 50)
	natstest.Until(t, 30*time.Second, "the facts before the erasure inserted", func() bool { return st.facts() == 100 })
	req := publishErasure(t, js, erased)
	publishFacts(t, js, kept, 100, 50)
	publishFacts(t, js, erased, 150, 50)

	// 50 of kept after the request; none of erased after it.
	natstest.Until(t, 30*time.Second, "the facts after the erasure inserted", func() bool { return st.facts() == 150 })
	if got := ackFloor(t, js); got >= req.Sequence {
		t.Errorf("ack floor %d during the deletion, want below the erasure request's %d", got, req.Sequence)
	}
	close(st.erasing)
	natstest.Until(t, 30*time.Second, "every message acked", func() bool { return ackFloor(t, js) == req.Sequence+100 })
	if got := st.facts(); got != 150 {
		t.Errorf("facts inserted = %d, want 150", got)
	}
}

// TestWaitingErasuresKeepFactsOut stores facts and erasure requests before
// the ingester starts: no fact of an erased pseudonym is inserted, not even
// those before its request, each request is still performed in stream
// order, and nothing from the first request on is acked before its
// deletion is done.
func TestWaitingErasuresKeepFactsOut(t *testing.T) {
	js := analyticsStream(t)
	a, b, kept := strings.Repeat("a", 64), strings.Repeat("b", 64), strings.Repeat("k", 64)
	publishFacts(t, js, a, 0, 50)
	publishFacts(t, js, kept, 50, 50)
	req := publishErasure(t, js, a)
	publishFacts(t, js, b, 100, 50)
	publishFacts(t, js, a, 150, 50)
	last := publishErasure(t, js, b)
	publishFacts(t, js, kept, 200, 50)

	st := &memStore{erasing: make(chan struct{})}
	run(t, js, st, 0, nil)
	natstest.Until(t, 30*time.Second, "kept's facts inserted", func() bool { return st.facts() == 100 })
	if got := ackFloor(t, js); got >= req.Sequence {
		t.Errorf("ack floor %d during the deletion, want below the erasure request's %d", got, req.Sequence)
	}
	close(st.erasing)
	natstest.Until(t, 30*time.Second, "every message acked", func() bool { return ackFloor(t, js) == last.Sequence+50 })
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, batch := range st.batches {
		for _, f := range batch {
			if f.Visitor != kept {
				t.Errorf("inserted fact %s of %s, want only %s's", f.ID, f.Visitor[:1], kept[:1])
			}
		}
	}
	if want := [][]string{{a}, {b}}; !slices.EqualFunc(st.erasures, want, slices.Equal) {
		t.Errorf("deletions = %v, want %v", st.erasures, want)
	}
}

// TestErasuresDuringADeletionGoTogether has three erasure requests stored
// while the ingester runs, with a store whose first deletion does not end
// until the test says: the two requests read meanwhile go in one deletion
// after it, and each request's pseudonym is deleted after the facts before
// it went in.
func TestErasuresDuringADeletionGoTogether(t *testing.T) {
	js := analyticsStream(t)
	a, b, c, kept := strings.Repeat("a", 64), strings.Repeat("b", 64), strings.Repeat("c", 64), strings.Repeat("k", 64)
	st := &memStore{erasing: make(chan struct{})}
	run(t, js, st, 0, nil)
	publishFacts(t, js, a, 0, 10)
	publishFacts(t, js, b, 10, 10)
	publishFacts(t, js, c, 20, 10)
	natstest.Until(t, 30*time.Second, "the facts before the requests inserted", func() bool { return st.facts() == 30 })
	publishErasure(t, js, a)
	natstest.Until(t, 30*time.Second, "the first deletion begun", func() bool { return len(st.deletions()) == 1 })
	publishErasure(t, js, b)
	publishErasure(t, js, c)
	publishFacts(t, js, kept, 30, 10)
	// The later requests have been read once the facts after them are in.
	natstest.Until(t, 30*time.Second, "the facts after the requests inserted", func() bool { return st.facts() == 40 })
	close(st.erasing)
	want := [][]string{{a}, {b, c}}
	natstest.Until(t, 30*time.Second, "the deletions done", func() bool { return len(st.deletions()) >= len(want) })
	if got := st.deletions(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("deletions = %v, want %v", got, want)
	}
}

// TestBacklogTailGoesWhenIdle drains a backlog smaller than a batch with a
// batch window of an hour: only the idle flush can insert it.
func TestBacklogTailGoesWhenIdle(t *testing.T) {
	js := analyticsStream(t)
	const backlog = MinIdleBatch + MinIdleBatch/2
	publishFacts(t, js, "", 0, backlog)

	st := &memStore{}
	run(t, js, st, time.Hour, nil)
	natstest.Until(t, 30*time.Second, "the backlog inserted", func() bool { return st.facts() == backlog })
}

// BenchmarkRead measures reading a fact into a batch: its decoding and the
// batch's growth, per fact.
func BenchmarkRead(b *testing.B) {
	msgs := make([]watermilljs.Msg, MaxBatch)
	for i := range msgs {
		v := fmt.Sprintf("%043d", i%50)
		f := analyticsapi.Fact{
			ID: fmt.Sprintf("%s-%d:%s", v[:12], i, analyticsapi.KindMessage), Tenant: "acme", Kind: analyticsapi.KindMessage,
			At: time.Now(), Conversation: v, Visitor: v, Role: "visitor", Length: analyticsapi.Length21to100,
		}
		data, err := json.Marshal(f)
		if err != nil {
			b.Fatal(err)
		}
		msgs[i].Subject = analyticsapi.Subject("acme", analyticsapi.KindMessage)
		msgs[i].Payload = data
	}
	in := New(nil, slog.New(slog.DiscardHandler), nil, nil, nil)
	batch := newBatch()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if in.read(batch, msgs[i%len(msgs)]) != nil {
			b.Fatal("erasure read from a fact")
		}
		if len(batch.facts) == MaxBatch {
			batch.reset()
		}
	}
}

// nopStore is a Store that keeps nothing.
type nopStore struct{}

func (nopStore) Insert(context.Context, []analyticsapi.Fact) error { return nil }
func (nopStore) Erase(_ context.Context, erased []analyticsapi.EraseArgs) ([]int64, error) {
	return make([]int64, len(erased)), nil
}

// BenchmarkFlushErased measures leaving an erased pseudonym's facts out of
// a batch, per fact: once any pseudonym is erased, every fact's visitor
// and agent are looked up.
func BenchmarkFlushErased(b *testing.B) {
	in := New(nil, slog.New(slog.DiscardHandler), nil, nil, nil)
	in.MarkErased("acme", strings.Repeat("e", 64))
	batch := newBatch()
	for i := range MaxBatch {
		v := fmt.Sprintf("%064d", i%50)
		batch.facts = append(batch.facts, analyticsapi.Fact{ID: fmt.Sprint(i), Tenant: "acme", Visitor: v, Agent: v})
	}
	b.ReportAllocs()
	for b.Loop() {
		if !in.flush(b.Context(), nopStore{}, batch) {
			b.Fatal("flush failed")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*MaxBatch), "ns/fact")
}

// TestFactsMessages stores facts as the relay writes them, several to a
// message (analyticsapi.KindFacts), beside one written the way before, a
// message a fact, and messages of facts that must be refused whole: every
// valid fact is inserted, once, every message acked, and what the
// ingester reports ingested is the facts, not the messages.
func TestFactsMessages(t *testing.T) {
	js := analyticsStream(t)
	fact := func(tenant string, i int) analyticsapi.Fact {
		return analyticsapi.Fact{ID: fmt.Sprintf("e-%d:%s", i, analyticsapi.KindMessage), Tenant: tenant, Kind: analyticsapi.KindMessage, At: time.Now(), Visitor: strings.Repeat("a", 64)}
	}
	var last *jetstream.PubAck
	put := func(subject string, v any) {
		t.Helper()
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if last, err = js.Publish(t.Context(), subject, data); err != nil {
			t.Fatal(err)
		}
	}
	facts := analyticsapi.Subject("acme", analyticsapi.KindFacts)
	put(facts, []analyticsapi.Fact{fact("acme", 1), fact("acme", 2), fact("acme", 3)})
	put(facts, []analyticsapi.Fact{fact("acme", 4), fact("other", 5)}) // another tenant's fact: refused whole
	put(facts, fact("acme", 6))                                        // not an array
	put(facts, []any{fact("acme", 7), "not a fact"})
	put(analyticsapi.Subject("acme", analyticsapi.KindMessage), fact("acme", 8))
	put(analyticsapi.Subject("acme", analyticsapi.KindMessage), fact("other", 11)) // one fact of another tenant
	put(facts, []analyticsapi.Fact{fact("acme", 9), fact("acme", 10)})

	st := &memStore{}
	var ingested atomic.Int64
	run(t, js, st, 0, func(n int) { ingested.Add(int64(n)) })
	natstest.Until(t, 30*time.Second, "every message acked", func() bool { return ackFloor(t, js) == last.Sequence })
	var got []string
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, b := range st.batches {
		for _, f := range b {
			got = append(got, f.ID)
		}
	}
	want := []string{"e-1:message_posted", "e-2:message_posted", "e-3:message_posted", "e-8:message_posted", "e-9:message_posted", "e-10:message_posted"}
	if !slices.Equal(got, want) {
		t.Errorf("facts inserted = %v, want %v", got, want)
	}
	if n := ingested.Load(); n != int64(len(want)) {
		t.Errorf("ingested %d facts, want %d", n, len(want))
	}
}
