package natstest_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
)

// TestStartCluster checks that the cluster replicates a stream over every
// node, that each connection lands on the node asked for, and that the
// stream keeps taking writes on the server list when that node goes.
func TestStartCluster(t *testing.T) {
	users := []*server.User{{Username: "u", Password: "p"}}
	c := natstest.StartCluster(t, users)
	if len(c.Nodes) != natstest.ClusterSize {
		t.Fatalf("StartCluster() has %d nodes, want %d", len(c.Nodes), natstest.ClusterSize)
	}
	js := make([]jetstream.JetStream, len(c.Nodes))
	for i, s := range c.Nodes {
		nc := c.Connect(t, i, nats.UserInfo("u", "p"), nats.MaxReconnects(-1), nats.ReconnectWait(10*time.Millisecond))
		if got, want := nc.ConnectedServerName(), s.Name(); got != want {
			t.Errorf("Connect(%d) is on %s, want %s", i, got, want)
		}
		var err error
		if js[i], err = jetstream.New(nc); err != nil {
			t.Fatal(err)
		}
	}
	ctx := t.Context()
	if _, err := js[0].CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s"}, Replicas: natstest.ClusterSize}); err != nil {
		t.Fatalf("CreateStream(R%d) error = %v", natstest.ClusterSize, err)
	}
	if _, err := js[2].Publish(ctx, "s", []byte("one")); err != nil {
		t.Fatalf("Publish() on node 2 error = %v", err)
	}
	c.Nodes[2].Close()
	// The connection moves on to another node, where a leader of S is
	// elected among the two left if node 2 led it.
	natstest.Eventually(t, 30*time.Second, "publish after node 2 stopped", func() error {
		_, err := js[2].Publish(ctx, "s", []byte("two"))
		return err
	})
	s, err := js[1].Stream(ctx, "S")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().State.Msgs; got != 2 {
		t.Errorf("stream S holds %d messages, want 2", got)
	}
}
