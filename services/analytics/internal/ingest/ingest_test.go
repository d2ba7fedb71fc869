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
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/pkg/watermilljs"
)

// memStore is a Store in memory: the batches inserted, in order. Erase
// waits for erasing to be closed, when it is set.
type memStore struct {
	mu      sync.Mutex
	batches [][]analyticsapi.Fact
	erasing chan struct{}
}

func (s *memStore) Insert(_ context.Context, facts []analyticsapi.Fact) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches = append(s.batches, slices.Clone(facts))
	return nil
}

func (s *memStore) Erase(ctx context.Context, _, _ string) (int64, error) {
	if s.erasing == nil {
		return 0, nil
	}
	select {
	case <-s.erasing:
		return 0, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
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
// MaxDelay when set.
func run(t *testing.T, js jetstream.JetStream, st Store, maxDelay time.Duration) {
	t.Helper()
	in := New(js, slog.New(slog.DiscardHandler), func(context.Context) (Store, error) { return st, nil }, func(context.Context) {})
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

// TestErasureHoldsAcksNotInserts stores facts, an erasure request and
// more facts, with a store whose deletion does not end until the test
// says: the later facts are inserted meanwhile, except the erased
// pseudonym's, and nothing from the erasure request on is acked before the
// deletion is done.
func TestErasureHoldsAcksNotInserts(t *testing.T) {
	ns := natstest.Start(t, "")
	_, js := natstest.Connect(t, ns)
	if err := stream.Ensure(t.Context(), js, stream.Options{}, stream.Analytics); err != nil {
		t.Fatal(err)
	}
	erased, kept := strings.Repeat("e", 64), strings.Repeat("a", 64)
	publishFacts(t, js, erased, 0, 50)
	publishFacts(t, js, kept, 50, 50)
	args, err := json.Marshal(analyticsapi.EraseArgs{Tenant: "acme", Pseudonym: erased})
	if err != nil {
		t.Fatal(err)
	}
	req, err := js.Publish(t.Context(), analyticsapi.Subject("acme", analyticsapi.KindErasure), args)
	if err != nil {
		t.Fatal(err)
	}
	publishFacts(t, js, kept, 100, 50)
	publishFacts(t, js, erased, 150, 50)

	st := &memStore{erasing: make(chan struct{})}
	run(t, js, st, 0)
	ackFloor := func() uint64 {
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
	// 100 before the request, 50 of kept after it; none of erased after.
	natstest.Until(t, 30*time.Second, "the facts after the erasure inserted", func() bool { return st.facts() == 150 })
	if got := ackFloor(); got >= req.Sequence {
		t.Errorf("ack floor %d during the deletion, want below the erasure request's %d", got, req.Sequence)
	}
	close(st.erasing)
	natstest.Until(t, 30*time.Second, "every message acked", func() bool { return ackFloor() == req.Sequence+100 })
	if got := st.facts(); got != 150 {
		t.Errorf("facts inserted = %d, want 150", got)
	}
}

// TestBacklogTailGoesWhenIdle drains a backlog smaller than a batch with a
// batch window of an hour: only the idle flush can insert it.
func TestBacklogTailGoesWhenIdle(t *testing.T) {
	ns := natstest.Start(t, "")
	_, js := natstest.Connect(t, ns)
	if err := stream.Ensure(t.Context(), js, stream.Options{}, stream.Analytics); err != nil {
		t.Fatal(err)
	}
	const backlog = MinIdleBatch + MinIdleBatch/2
	publishFacts(t, js, "", 0, backlog)

	st := &memStore{}
	run(t, js, st, time.Hour)
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
	in := New(nil, slog.New(slog.DiscardHandler), nil, nil)
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
