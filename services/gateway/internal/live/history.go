package live

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/stream"
)

// replayBatch bounds the events one pull of a replay asks for.
const replayBatch = 64

// JetStreamHistory is a History on the CHAT stream: an ephemeral consumer
// filtered to the tenant's conversations, in memory, without acks, started
// after the client's sequence and deleted when done. The number of events
// to read is the consumer's pending count at its creation: what was stored
// until then. Events stored later come live.
func JetStreamHistory(js jetstream.JetStream) History {
	return func(ctx context.Context, tenant string, after uint64, max int, fn func(uint64, event.Envelope) error) error {
		cons, done, err := stream.Reader(ctx, js, stream.Chat, stream.ChatSubject(tenant, "*"), after+1, time.Minute)
		if err != nil {
			return fmt.Errorf("replay %s after %d: %w", tenant, after, err)
		}
		// Best effort: the server removes it once idle otherwise.
		defer done()
		info := cons.CachedInfo()
		pending := info.NumPending
		if pending > uint64(max) {
			return ErrTooFarBehind
		}
		for pending > 0 {
			batch, err := cons.Fetch(int(min(pending, replayBatch)), jetstream.FetchMaxWait(2*time.Second))
			if err != nil {
				return fmt.Errorf("replay %s after %d: %w", tenant, after, err)
			}
			n := 0
			for m := range batch.Messages() {
				n++
				pending--
				md, err := m.Metadata()
				if err != nil {
					return fmt.Errorf("replay %s after %d: %w", tenant, after, err)
				}
				env, err := event.Parse(m.Subject(), m.Headers(), m.Data())
				if err != nil {
					continue // not a Parley event: live skips it too
				}
				if err := fn(md.Sequence.Stream, env); err != nil {
					return err
				}
			}
			if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
				return fmt.Errorf("replay %s after %d: %w", tenant, after, err)
			}
			if n == 0 {
				return nil // the rest expired or was erased meanwhile
			}
		}
		return nil
	}
}
