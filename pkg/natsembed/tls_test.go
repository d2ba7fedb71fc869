package natsembed_test

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/buspolicy"
	"github.com/parley-chat/parley/pkg/natsembed"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
)

// A cluster of three servers with TLS on their client ports and routes,
// verified both ways: the cluster forms over TLS; a service presenting a
// certificate of the cluster's CA connects with its password, publishes,
// and a stream replicated on all three servers works; a client or a node
// without a certificate, with one from another CA, or speaking plain text
// is refused, on the client port and on the route port alike.
func TestTLSCluster(t *testing.T) {
	pki := natstest.NewPKI(t, "parley-nats-ca")
	passwords := map[string]string{buspolicy.Admin: rand.Text()}
	for _, s := range buspolicy.Services() {
		passwords[s] = rand.Text()
	}
	users, err := buspolicy.Users(passwords)
	if err != nil {
		t.Fatal(err)
	}
	// StartClusterWith returns once every node is a peer of the meta
	// leader: the routes, TLS only, are up.
	c := natstest.StartClusterWith(t, natstest.ClusterOptions{Users: users, TLS: pki.ServerTLS(pki.Issue("nats"))})

	service := pki.Issue("admin")
	connect := func(node int) *nats.Conn {
		return c.Connect(t, node, nats.UserInfo(buspolicy.Admin, passwords[buspolicy.Admin]),
			nats.RootCAs(pki.CAFile), nats.ClientCert(service.CertFile, service.KeyFile), nats.Timeout(10*time.Second))
	}
	nc := connect(0)
	state, err := nc.TLSConnectionState()
	if err != nil || !state.HandshakeComplete {
		t.Fatalf("TLSConnectionState() = %v, %v, want a completed handshake", state.HandshakeComplete, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "TLS", Subjects: []string{"tls.>"}, Replicas: natstest.ClusterSize, AllowDirect: true}); err != nil {
		t.Fatalf("create an R3 stream: %v", err)
	}
	ack, err := js.Publish(ctx, "tls.hello", []byte("over TLS"))
	if err != nil {
		t.Fatalf("publish to the R3 stream: %v", err)
	}
	// Read back through another node: the message crossed a TLS route.
	js2, err := jetstream.New(connect(2))
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "message read on node 2", func() error {
		s, err := js2.Stream(ctx, "TLS")
		if err != nil {
			return err
		}
		m, err := s.GetMsg(ctx, ack.Sequence)
		if err != nil {
			return err
		}
		if string(m.Data) != "over TLS" {
			return fmt.Errorf("message %d = %q, want %q", ack.Sequence, m.Data, "over TLS")
		}
		if n := len(s.CachedInfo().Cluster.Replicas); n != natstest.ClusterSize-1 {
			return fmt.Errorf("stream has %d replicas besides its leader, want %d", n, natstest.ClusterSize-1)
		}
		return nil
	})

	other := natstest.NewPKI(t, "another-ca").Issue("admin")
	// The certificate, if any, is presented whatever CAs the server
	// names: Go's client would otherwise withhold another CA's.
	verified := func(cert *tls.Certificate) *tls.Config {
		return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pki.Pool, ServerName: "127.0.0.1",
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if cert == nil {
					return &tls.Certificate{}, nil
				}
				return cert, nil
			}}
	}
	node := c.Nodes[1]
	client, route := node.Addr().String(), node.ClusterAddr().String()
	tests := []struct {
		name  string
		addr  string
		route bool
		tls   *tls.Config // nil: plain text
		want  bool        // accepted
	}{
		{name: "client with the CA's certificate", addr: client, tls: verified(&service.TLS), want: true},
		{name: "client without a certificate", addr: client, tls: verified(nil)},
		{name: "client with another CA's certificate", addr: client, tls: verified(&other.TLS)},
		{name: "client in plain text", addr: client},
		{name: "route with the CA's certificate", addr: route, route: true, tls: verified(&service.TLS), want: true},
		{name: "route without a certificate", addr: route, route: true, tls: verified(nil)},
		{name: "route with another CA's certificate", addr: route, route: true, tls: verified(&other.TLS)},
		{name: "route in plain text", addr: route, route: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ping(tt.addr, tt.route, tt.tls, passwords[buspolicy.Admin])
			if got := err == nil; got != tt.want {
				t.Errorf("ping(%s) = %v, want accepted %v", tt.addr, err, tt.want)
			}
		})
	}
}

// ping speaks NATS to addr by hand, so that what is refused is refused by
// the server and not by a client library, over TLS with cfg, or in plain
// text when cfg is nil. On a client port the server's INFO comes first,
// then the handshake; ping sends CONNECT as the admin with password and a
// PING, and returns nil when the server answers PONG. On a route port the
// handshake comes first; ping returns nil when the server's INFO follows
// it. Else it returns why not: a connection the server closed, or an -ERR.
func ping(addr string, route bool, cfg *tls.Config, password string) error {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	// Generous for a loaded machine; the server closes a refused
	// connection long before.
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return err
	}
	if !route {
		info, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			return fmt.Errorf("read INFO: %w", err)
		}
		if !strings.Contains(info, `"tls_required":true`) {
			return fmt.Errorf("INFO without tls_required: %s", info)
		}
	}
	var rw net.Conn = conn
	if cfg != nil {
		tc := tls.Client(conn, cfg)
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("handshake: %w", err)
		}
		rw = tc
	}
	connect, err := json.Marshal(map[string]any{"verbose": false, "user": buspolicy.Admin, "pass": password})
	if err != nil {
		return err
	}
	// A route waits for a TLS handshake: plain text ends it at once.
	if !route || cfg == nil {
		if _, err := fmt.Fprintf(rw, "CONNECT %s\r\nPING\r\n", connect); err != nil {
			return fmt.Errorf("send CONNECT: %w", err)
		}
	}
	r := bufio.NewReader(rw)
	for {
		line, err := r.ReadString('\n')
		switch {
		case err != nil:
			return fmt.Errorf("read: %w", err)
		case route && strings.HasPrefix(line, "INFO"), strings.HasPrefix(line, "PONG"):
			return nil
		case strings.HasPrefix(line, "-ERR"):
			return errors.New(strings.TrimSpace(line))
		}
	}
}

// MutualTLS refuses what would leave a server unverified or unusable.
func TestMutualTLSNeedsEveryFile(t *testing.T) {
	pki := natstest.NewPKI(t, "parley-nats-ca")
	c := pki.Issue("nats")
	tests := []struct {
		name                   string
		cert, key, ca, wantErr string
	}{
		{name: "no CA", cert: c.CertFile, key: c.KeyFile, wantErr: "CA file"},
		{name: "no key", cert: c.CertFile, ca: pki.CAFile, wantErr: "both required"},
		{name: "no certificate", key: c.KeyFile, ca: pki.CAFile, wantErr: "both required"},
		{name: "missing CA", cert: c.CertFile, key: c.KeyFile, ca: pki.CAFile + ".missing", wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := natsembed.MutualTLS(tt.cert, tt.key, tt.ca)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("MutualTLS() = %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
	cfg, err := natsembed.MutualTLS(c.CertFile, c.KeyFile, pki.CAFile)
	if err != nil {
		t.Fatalf("MutualTLS() = %v", err)
	}
	if cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.RootCAs == nil || cfg.ClientCAs == nil {
		t.Errorf("MutualTLS() = ClientAuth %v, RootCAs %v, ClientCAs %v: want peers verified both ways", cfg.ClientAuth, cfg.RootCAs != nil, cfg.ClientCAs != nil)
	}
}
