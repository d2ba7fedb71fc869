package natstest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley/pkg/natsembed"
)

// ClusterSize is the number of nodes of StartCluster's cluster: the
// smallest that keeps a quorum of a replicated stream when one node fails.
const ClusterSize = 3

// clusterReady bounds the wait for a cluster's meta leader, generous for a
// loaded machine.
const clusterReady = 30 * time.Second

// Cluster is a JetStream cluster of embedded servers on loopback, each
// with its own store.
type Cluster struct {
	// Nodes are the cluster's servers, all JetStream-ready once
	// StartCluster returns.
	Nodes []*natsembed.Server
}

// StartCluster runs a JetStream cluster of ClusterSize embedded servers
// on random loopback ports, each storing under its own t.TempDir(), with
// users allowed to connect to every node (nil: anyone, with every right):
// pass buspolicy.Users to have services connect as themselves. It returns
// once the cluster has a meta leader that counts every node a peer and
// every node is current with it, and shuts the nodes down when the test
// ends.
func StartCluster(t testing.TB, users []*server.User) *Cluster {
	t.Helper()
	return StartClusterWith(t, ClusterOptions{Users: users})
}

// ClusterOptions configure StartClusterWith's cluster.
type ClusterOptions struct {
	// Users are as StartCluster's.
	Users []*server.User
	// TLS, when set, is every node's TLS configuration for its clients and
	// its routes alike (natsembed.Options.TLS and natsembed.Cluster.TLS),
	// such as PKI.ServerTLS gives: the cluster then forms over TLS only.
	TLS *tls.Config
}

// StartClusterWith is StartCluster with options.
func StartClusterWith(t testing.TB, o ClusterOptions) *Cluster {
	t.Helper()
	c := &Cluster{}
	t.Cleanup(c.shutdown)
	// The route ports are picked before the nodes start, since each must
	// know the others' (natsembed.Cluster); another process may take one
	// meanwhile, rarely, and then the cluster starts again on new ones.
	var err error
	for range startTries {
		if err = c.start(t, o); err == nil {
			break
		}
		c.shutdown()
	}
	if err != nil {
		t.Fatalf("start a JetStream cluster: %v", err)
	}
	Eventually(t, clusterReady, "JetStream cluster ready", c.ready)
	return c
}

// startTries bounds StartCluster's tries to find free route ports.
const startTries = 3

// start starts the nodes, each in a new store.
func (c *Cluster) start(t testing.TB, o ClusterOptions) error {
	c.Nodes = nil
	ports, err := FreePorts(ClusterSize)
	if err != nil {
		return err
	}
	routes := make([]*url.URL, len(ports))
	for i, p := range ports {
		routes[i] = &url.URL{Scheme: "nats-route", Host: net.JoinHostPort(loopback, strconv.Itoa(p))}
	}
	for i, p := range ports {
		s, err := natsembed.Start(natsembed.Options{
			Host:     loopback,
			StoreDir: t.TempDir(),
			Users:    o.Users,
			Name:     fmt.Sprintf("node-%d", i),
			Cluster:  &natsembed.Cluster{Port: p, Routes: routes, TLS: o.TLS},
			TLS:      o.TLS,
		})
		if err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
		c.Nodes = append(c.Nodes, s)
	}
	return nil
}

const loopback = "127.0.0.1"

// FreePorts returns n distinct loopback ports that were free a moment ago:
// for servers that must know each other's ports before they start.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		// Closed once all are picked, so that none is picked twice.
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// ready returns nil once one node is the meta leader with every node a
// peer, and every node is current.
func (c *Cluster) ready() error {
	var leader *natsembed.Server
	for _, s := range c.Nodes {
		if !s.JetStreamEnabled() {
			return fmt.Errorf("%s: JetStream not enabled", s.Name())
		}
		if !s.JetStreamIsCurrent() {
			return fmt.Errorf("%s: not current with the meta leader", s.Name())
		}
		if s.JetStreamIsLeader() {
			leader = s
		}
	}
	if leader == nil {
		return errors.New("no meta leader")
	}
	if peers := leader.JetStreamClusterPeers(); len(peers) != len(c.Nodes) {
		return fmt.Errorf("meta leader %s sees peers %v, want %d", leader.Name(), peers, len(c.Nodes))
	}
	return nil
}

// ServerList is the client URLs of every node, comma separated, node's
// first: a connection made with it and nats.DontRandomize connects to
// node, and reconnects to the others when node goes.
func (c *Cluster) ServerList(node int) string {
	urls := make([]string, 0, len(c.Nodes))
	for i := range c.Nodes {
		urls = append(urls, c.Nodes[(node+i)%len(c.Nodes)].ClientURL())
	}
	return strings.Join(urls, ",")
}

// Connect opens a client connection to node, reconnecting to the other
// nodes when it goes, with opts (nats.UserInfo for a cluster with users),
// closed when the test ends.
func (c *Cluster) Connect(t testing.TB, node int, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(c.ServerList(node), append([]nats.Option{nats.DontRandomize()}, opts...)...)
	if err != nil {
		t.Fatalf("connect to node %d: %v", node, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// shutdown stops every node at once, so that none spends the shutdown
// electing leaders among the others, and waits for them.
func (c *Cluster) shutdown() {
	var wg sync.WaitGroup
	for _, s := range c.Nodes {
		wg.Go(s.Close)
	}
	wg.Wait()
}
