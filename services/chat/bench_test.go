package chat_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"
)

// conversations is how many conversations the benchmarks write to at once.
const conversations = 100

// BenchmarkPost posts through the bus to 100 conversations concurrently;
// compare with BenchmarkRawPublish, the same load as bare synchronous
// JetStream publishes.
func BenchmarkPost(b *testing.B) {
	s := natstest.Start(b, "")
	ks := startKeyService(b, s)
	ks.add(b, tenant, visitor.ID)
	// One visitor holds every conversation, and posts flat out.
	unlimited(b, s, tenant)
	startChat(b, s)
	c := newClient(b, s)
	convs := make([]string, conversations)
	for i := range convs {
		convs[i] = c.open(visitor, "bench")
	}
	b.ResetTimer()
	runSpread(b, func(i, n int) {
		for range n {
			c.post(visitor, convs[i], "a benchmark message of ordinary length")
		}
	})
}

func BenchmarkRawPublish(b *testing.B) {
	s := natstest.Start(b, "")
	_, js := natstest.Connect(b, s)
	if err := stream.Ensure(b.Context(), js, stream.Options{}, stream.Chat); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	runSpread(b, func(i, n int) {
		subject := stream.ChatSubject(tenant, fmt.Sprint("c", i))
		for range n {
			if _, err := js.Publish(b.Context(), subject, make([]byte, 128), jetstream.WithMsgID(event.NewID())); err != nil {
				b.Error(err)
			}
		}
	})
}

// runSpread shares b.N operations among the conversations' goroutines.
func runSpread(b *testing.B, op func(i, n int)) {
	var wg sync.WaitGroup
	for i := range conversations {
		n := b.N / conversations
		if i < b.N%conversations {
			n++
		}
		wg.Go(func() { op(i, n) })
	}
	wg.Wait()
}
