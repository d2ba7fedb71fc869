package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley/pkg/buspolicy"
)

// natsAdminPasswordFile, under the data dir of `parley all`, holds the
// password of the embedded NATS server's admin user, for tools (the load
// generator, `parley keys rotate`). It changes at every start.
const natsAdminPasswordFile = "nats-admin.password"

// The failover settings of every service's connection (busOptions). nats.go's
// defaults suit a client that may wait: a ping every 2 minutes, so a frozen
// server held a service for minutes, and 8 MB of messages kept while
// reconnecting and sent once connected, so a request its caller had given
// up on could still be acted on. Here a frozen or unreachable server is
// left within busPingInterval × (busMaxPingsOut+1), a stalled write within
// busWriteTimeout, and nothing is kept for later.
const (
	busPingInterval = time.Second
	busMaxPingsOut  = 3
	busWriteTimeout = 2 * time.Second
	// busReconnectWait is the pause before a server is tried again; a
	// random jitter up to busReconnectJitter (TLS: twice that, its
	// handshakes cost more) keeps the clients of a restarted server from
	// coming back all at once.
	busReconnectWait   = time.Second
	busReconnectJitter = 500 * time.Millisecond
)

// busOptions are the connection options of service name: its own reply
// inbox, which its bus user may read and no other, a log line for every
// error the server reports asynchronously, permissions violations first of
// all, which would otherwise go unseen, and the failover settings above:
// reconnecting without end, and no reconnect buffer, so that a publish or
// request made while the connection is down fails at once (the caller
// answers 503) instead of being delivered late.
func busOptions(name string, log *slog.Logger) []nats.Option {
	return []nats.Option{
		nats.Name("parley-" + name),
		nats.MaxReconnects(-1),
		nats.PingInterval(busPingInterval),
		nats.MaxPingsOutstanding(busMaxPingsOut),
		nats.FlusherTimeout(busWriteTimeout),
		nats.ReconnectOnFlusherError(),
		nats.ReconnectWait(busReconnectWait),
		nats.ReconnectJitter(busReconnectJitter, 2*busReconnectJitter),
		nats.ReconnectBufSize(-1),
		nats.CustomInboxPrefix(buspolicy.InboxPrefix(name)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Error("nats", "service", name, "err", err)
		}),
	}
}

// busPasswords makes a new password for every bus user of the embedded
// server. The services' stay in memory; the admin's is written to
// natsAdminPasswordFile, readable by the owner only.
func (a *allInOne) busPasswords() (map[string]string, error) {
	passwords := map[string]string{}
	for _, u := range append(buspolicy.Services(), buspolicy.Admin) {
		passwords[u] = rand.Text()
	}
	path := filepath.Join(a.cfg.DataDir, natsAdminPasswordFile)
	if err := writePrivate(path, []byte(passwords[buspolicy.Admin]+"\n")); err != nil {
		return nil, fmt.Errorf("write nats admin password: %w", err)
	}
	return passwords, nil
}

// writePrivate replaces the file at path with data, mode 0600, so that a
// reader never sees a partial file.
func writePrivate(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	err = errors.Join(err, f.Close())
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}

// runNATSConfig prints the authorization block of nats.conf for a NATS
// cluster, from the same definition the embedded server uses.
func runNATSConfig(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("parley nats-config", flag.ContinueOnError)
	users := fs.String("users", strings.Join(buspolicy.Services(), ","), "bus users to configure, comma separated; add admin for operator tools")
	envPrefix := fs.String("env-prefix", buspolicy.DefaultEnvPrefix, "passwords are read by nats-server from the environment variables <prefix><USER>")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: parley nats-config [flags] > authorization.conf\n\n"+
			"Prints nats.conf's authorization block: one NATS user per service with the\n"+
			"permissions of pkg/buspolicy. Passwords are never printed: nats-server reads\n"+
			"each from its environment, e.g. $%sGATEWAY.\n\n", buspolicy.DefaultEnvPrefix)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	var conf bytes.Buffer
	if err := buspolicy.WriteAuthorization(&conf, strings.Split(*users, ","), *envPrefix); err != nil {
		return usageError{err.Error()}
	}
	_, err := stdout.Write(conf.Bytes())
	return err
}
