package main

import (
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley/pkg/natsembed"
)

// storeFlags choose the JetStream store an operator tool works on: the
// files of a stopped `parley all` under --data-dir, opened with an embedded
// server of the tool's own, or a running NATS server at --nats-url.
type storeFlags struct {
	dataDir string
	// bus is the running server's, with an admin user (for a running
	// parley all: admin, its password in DATA_DIR/nats-admin.password).
	bus busFlags
}

func (f *storeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.dataDir, "data-dir", "./data", "data directory of a STOPPED parley all; its store is opened by an embedded server on a random port")
	f.bus.register(fs, "a running NATS server instead of --data-dir, connected to as an admin user")
}

// open connects to the store and returns the connection and the function
// that closes it (and stops the embedded server, when there is one). With
// --data-dir it first takes the data dir's lock (see lockDataDir), held
// until that function is called, and refuses when a process owns the dir.
func (f *storeFlags) open(name string) (*nats.Conn, func(), error) {
	opts := []nats.Option{nats.Name("parley-" + name)}
	if f.bus.url != "" {
		warnSecretInURLs(slog.Default(), "--nats-url", f.bus.url, true, "--nats-user with --nats-password-file or "+natsPasswordEnv+", or --nats-creds")
		busOpts, err := f.bus.options()
		if err != nil {
			return nil, nil, err
		}
		nc, err := nats.Connect(f.bus.url, append(opts, busOpts...)...)
		if err != nil {
			return nil, nil, fmt.Errorf("connect to nats: %w", err)
		}
		return nc, nc.Close, nil
	}

	dir := filepath.Join(f.dataDir, "nats")
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil, usageError{fmt.Sprintf("no store at %s: pass the --data-dir of `parley all`, or --nats-url", dir)}
	}
	// Exclusive even to read: the embedded server writes to the store it
	// opens, and a running parley all must not share it.
	lock, err := lockDataDir(f.dataDir)
	if err != nil {
		return nil, nil, err
	}
	// A user of its own, with a password that lives as long as the
	// process, so that nothing else on the machine uses the store meanwhile.
	user := &server.User{Username: "tool", Password: rand.Text()}
	s, err := natsembed.Start(natsembed.Options{StoreDir: dir, Users: []*server.User{user}})
	if err != nil {
		lock.Close()
		return nil, nil, err
	}
	nc, err := nats.Connect(s.ClientURL(), append(opts, nats.UserInfo(user.Username, user.Password))...)
	if err != nil {
		s.Close()
		lock.Close()
		return nil, nil, fmt.Errorf("connect to the embedded nats: %w", err)
	}
	return nc, func() { nc.Close(); s.Close(); lock.Close() }, nil
}
