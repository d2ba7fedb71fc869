// Package natsembed runs an embedded NATS server with JetStream: the bus of
// `parley all` and of every integration test.
package natsembed

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configure the embedded server. The zero value listens on a random
// loopback port; StoreDir is required.
type Options struct {
	// Host to listen on; empty means 127.0.0.1.
	Host string
	// Port to listen on; 0 picks a free one.
	Port int
	// StoreDir holds the JetStream files.
	StoreDir string
	// SyncAlways fsyncs every write before acknowledging it. Off, JetStream
	// acknowledges after the write reaches the OS and syncs periodically.
	SyncAlways bool
	// Users may connect, each with their own password and permissions;
	// none means any client may connect and do anything.
	Users []*server.User
	// Name is the server's name, unique in a cluster; empty means "parley".
	Name string
	// Cluster, when set, makes the server a node of a JetStream cluster.
	Cluster *Cluster
	// TLS, when set, makes every client connect over TLS: its Certificates
	// are the server's. With ClientAuth tls.RequireAndVerifyClientCert a
	// client must also present a certificate that ClientCAs verify (mutual
	// TLS), or it is refused before it may authenticate. MutualTLS builds
	// one from files.
	TLS *tls.Config
	// MaxPayload is the largest message the server accepts, in bytes; 0
	// means 1 MiB. A bus may be configured with less.
	MaxPayload int32
}

// Cluster joins a server to a JetStream cluster. The nodes of a cluster
// share its Name, their Routes and Options.Users.
type Cluster struct {
	// Name is the cluster's name; empty means "parley".
	Name string
	// Port is where the server listens for routes from other nodes, on its
	// Host; required.
	Port int
	// Routes are the nodes' route URLs (nats-route://host:port), this
	// server's own included, which it skips: JetStream requires a node to
	// know of routes when it starts, and sizes its first meta group from
	// their number.
	Routes []*url.URL
	// TLS, when set, makes every route a TLS connection, verified both
	// ways: a node presents its Certificates whether it dials or is dialled,
	// verifies the node it dials with RootCAs (and the host name of the
	// route's URL) and the node dialling in with ClientCAs, which
	// ClientAuth must require. MutualTLS builds one from files.
	TLS *tls.Config
}

// tlsTimeout bounds a TLS handshake, clients' and routes', in seconds:
// nats-server's default of 2 s is short for a loaded machine.
const tlsTimeout = 5

// MutualTLS returns the TLS configuration of a server that presents the
// certificate in certFile (PEM, with its key in keyFile) and accepts only
// peers presenting a certificate signed by a CA in caFile, which also
// verifies the servers it dials: for Options.TLS and Cluster.TLS. The files
// are read once; a renewed certificate takes a restart.
func MutualTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	switch {
	case certFile == "" || keyFile == "":
		return nil, errors.New("nats tls: a certificate and its key are both required")
	case caFile == "":
		return nil, errors.New("nats tls: a CA file is required to verify peers' certificates")
	}
	c, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: certFile, KeyFile: keyFile, CaFile: caFile, Verify: true})
	if err != nil {
		return nil, fmt.Errorf("nats tls: %w", err)
	}
	// GenTLSConfig reads the CA into ClientCAs only; a route also dials.
	c.RootCAs = c.ClientCAs
	return c, nil
}

// The pings on a cluster's routes, as in the production configuration
// (deploy/k8s/overlays/production/topology.conf). nats-server pings a
// route every 30 seconds at most and gives up after two pings unanswered:
// for a minute and more, the other servers then go on routing requests to
// the queue subscriptions a frozen server held, which its clients have
// long taken elsewhere, and those requests are lost. With these a frozen
// server's routes close within seconds. A route's writes get
// nats-server's default deadline, not the clients' short one, which the
// server would otherwise apply to routes too: a peer catching up on a
// stream is sent large writes, and the pings already close a frozen
// server's routes.
const (
	RoutePingInterval  = time.Second
	RouteMaxPingsOut   = 3
	RouteWriteDeadline = 10 * time.Second
)

// The server's side of its client connections, as in the production
// configuration (deploy/k8s/base/nats/nats.conf). nats-server pings a
// client every 2 minutes and gives up after two pings unanswered, and
// waits 10 seconds on a write: a service instance on a frozen node keeps
// its share of a queue group's requests, which are lost, for minutes.
// With these its connection closes within about 6 seconds.
const (
	ClientPingInterval  = 2 * time.Second
	ClientMaxPingsOut   = 2
	ClientWriteDeadline = 2 * time.Second
)

// Server is a running embedded NATS server.
type Server struct {
	*server.Server
}

// Start starts a server and waits until it accepts connections.
func Start(o Options) (*Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("start nats: no store dir")
	}
	if o.Cluster != nil && o.Cluster.Port == 0 {
		return nil, errors.New("start nats: no cluster port")
	}
	host := o.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port := o.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	name := o.Name
	if name == "" {
		name = "parley"
	}
	opts := &server.Options{
		ServerName: name,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		SyncAlways: o.SyncAlways,
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: cmp.Or(o.MaxPayload, 1<<20),
		Users:      o.Users,

		PingInterval:  ClientPingInterval,
		MaxPingsOut:   ClientMaxPingsOut,
		WriteDeadline: ClientWriteDeadline,
	}
	if o.TLS != nil {
		opts.TLSConfig, opts.TLSTimeout = o.TLS, tlsTimeout
	}
	if c := o.Cluster; c != nil {
		opts.Cluster = server.ClusterOpts{Name: c.Name, Host: host, Port: c.Port,
			PingInterval: RoutePingInterval, MaxPingsOut: RouteMaxPingsOut, WriteDeadline: RouteWriteDeadline}
		if opts.Cluster.Name == "" {
			opts.Cluster.Name = "parley"
		}
		opts.Routes = c.Routes
		if c.TLS != nil {
			opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = c.TLS, tlsTimeout
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start nats: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("start nats: not ready after 10s")
	}
	return &Server{Server: s}, nil
}

// Close shuts the server down and waits for it to finish.
func (s *Server) Close() {
	s.Shutdown()
	s.WaitForShutdown()
}
