package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/stream"
)

const streamsUsage = `Usage: parley streams apply --nats-url URL [--nats-user admin --nats-password-file F | --nats-creds F] [--replicas N]
       parley streams apply --data-dir D

Creates or updates every JetStream stream and key-value bucket of Parley to
this version's definitions, and prints what it did to each.

The services only create what is missing: their NATS users may not update a
stream, as one that could would reconfigure it to copy another, KEYS say,
where it can read it (privacy guarantee 4). A changed definition is applied
by this command, run as the admin user before or while the new version rolls
out (in Kubernetes, the privacy Deployment's init container); until then,
services log that a stream differs from their definition and run on it.
parley all applies the definitions itself at every start.

--replicas must be the services' --replicas: a stream whose replica count
differs is a changed definition too.

With --data-dir, parley must be stopped: the tool opens the store itself,
and refuses a data dir that a running process owns.

`

func runStreams(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var store storeFlags
	fs := flag.NewFlagSet("parley streams apply", flag.ContinueOnError)
	store.register(fs)
	replicas := fs.Int("replicas", 0, "JetStream replicas of every stream and bucket (default 3 with --nats-url, as the services' default, 1 with --data-dir)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), streamsUsage)
		fs.PrintDefaults()
	}
	if len(args) == 0 || args[0] != "apply" {
		return noSubcommand("streams", fs, args, stdout, stderr)
	}
	if err := parseFlags(fs, args[1:], stdout, stderr); err != nil {
		return err
	}
	o := stream.Options{Replicas: *replicas}
	switch {
	case *replicas < 0:
		return usageError{fmt.Sprintf("--replicas %d: want 1 or more", *replicas)}
	case *replicas == 0 && store.bus.url != "":
		o.Replicas = 3
	case *replicas == 0:
		o.Replicas = 1
	}
	nc, closeStore, err := store.open("streams")
	if err != nil {
		return err
	}
	defer closeStore()
	applied, err := applyStreams(ctx, nc, o)
	for _, a := range applied {
		fmt.Fprintf(stdout, "%s %s: %s\n", kindOf(a), a.Name, a.Action)
	}
	return err
}

func kindOf(a stream.Applied) string {
	if a.Bucket {
		return "bucket"
	}
	return "stream"
}

// applyStreams applies every stream and bucket definition over nc, which
// must be the admin user's connection, and returns what it did.
func applyStreams(ctx context.Context, nc *nats.Conn, o stream.Options) ([]stream.Applied, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("streams apply: %w", err)
	}
	applied, err := stream.Apply(ctx, js, o)
	if err != nil {
		return applied, fmt.Errorf("streams apply: %w", err)
	}
	return applied, nil
}
