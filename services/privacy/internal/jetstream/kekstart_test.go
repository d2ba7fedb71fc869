package jetstream_test

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/privacy/internal/jetstream"
)

// kekStartRounds is how many fresh KEYS streams TestKeyStoresStartTogether
// has instances race to claim: the loser reads the winner's claim from a
// replica that has not applied it yet only some of the time.
const kekStartRounds = 10

// TestKeyStoresStartTogether starts a key store on each node of a
// three-node cluster at once, all holding the same KEK, on a KEYS stream
// replicated on every node that has no KEK state yet: one claims the
// stream for the KEK, and every other must find that claim, the KEK it
// holds, and start too.
func TestKeyStoresStartTogether(t *testing.T) {
	cluster := natstest.StartCluster(t, nil)
	var jss []natsjs.JetStream
	for node := range natstest.ClusterSize {
		js, err := natsjs.New(cluster.Connect(t, node))
		if err != nil {
			t.Fatal(err)
		}
		jss = append(jss, js)
	}
	ctx := t.Context()
	for round := range kekStartRounds {
		if err := stream.Create(ctx, jss[0], stream.Options{Replicas: natstest.ClusterSize}, stream.Keys); err != nil {
			t.Fatal(err)
		}
		errs := make([]error, len(jss))
		var wg sync.WaitGroup
		for i, js := range jss {
			wg.Go(func() {
				_, errs[i] = jetstream.NewKeyStore(ctx, js, "kek-of-every-instance")
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d: NewKeyStore() on node %d = %v, want it started with the KEK all hold", round, i, err)
			}
		}
		if err := jss[0].DeleteStream(ctx, stream.Keys); err != nil {
			t.Fatal(err)
		}
		// A node removes a deleted stream's files after the delete is
		// answered; KEYS created again before that may find them there.
		natstest.Until(t, 10*time.Second, "KEYS's files removed from every node", func() bool {
			for _, n := range cluster.Nodes {
				if dirs, _ := filepath.Glob(filepath.Join(n.StoreDir(), "*", "streams", stream.Keys)); len(dirs) > 0 {
					return false
				}
			}
			return true
		})
	}
}
