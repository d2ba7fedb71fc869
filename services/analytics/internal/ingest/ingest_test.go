package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/pkg/watermilljs"
)

// memStore is a Store in memory: the batches inserted, in order.
type memStore struct {
	mu      sync.Mutex
	batches [][]analyticsapi.Fact
}

func (s *memStore) Insert(_ context.Context, facts []analyticsapi.Fact) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches = append(s.batches, slices.Clone(facts))
	return nil
}

func (s *memStore) Erase(context.Context, string, string) (int64, error) { return 0, nil }

func (s *memStore) facts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, b := range s.batches {
		n += len(b)
	}
	return n
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
	for i := range backlog {
		f := analyticsapi.Fact{ID: fmt.Sprintf("f-%d:%s", i, analyticsapi.KindMessage), Tenant: "acme", Kind: analyticsapi.KindMessage, At: time.Now()}
		data, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishAsync(analyticsapi.Subject("acme", analyticsapi.KindMessage), data, jetstream.WithMsgID(f.ID)); err != nil {
			t.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()

	st := &memStore{}
	in := New(js, slog.New(slog.DiscardHandler), func(context.Context) (Store, error) { return st, nil }, func(context.Context) {})
	in.maxDelay = time.Hour
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, 0, func(error) {}) }()
	t.Cleanup(func() {
		cancel()
		if err := natstest.Returns(t, 10*time.Second, "Run", done); err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
	})
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
