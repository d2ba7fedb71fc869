// Command parley runs Parley: every service and an embedded JetStream in one
// process (`parley all`, the local default), or one service against an
// external NATS cluster (`parley gateway|chat|privacy|analytics`), and issues
// staff tokens (`parley token`) and seeds a running one for a try-out
// (`parley demo`).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitStatus(err, os.Stderr))
}

// exitStatus prints err for the user, unless it is nil or a request for
// help (status 0), and returns the exit status: 2 for a usage error, 1 for
// any other.
func exitStatus(err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintln(stderr, "parley:", err)
		return 2
	}
	fmt.Fprintln(stderr, "parley:", err)
	return 1
}

const usage = `Usage: parley <command> [flags]

Commands:
  all          every service and an embedded JetStream in one process
  gateway      the HTTP and WebSocket API, against an external NATS
  chat         the conversation service, against an external NATS
  privacy      keys, consent and erasure, against an external NATS
  analytics    pseudonymized metrics in ClickHouse, against an external NATS
  token        print a signed staff token
  demo         seed a running Parley's demo tenant with consenting visitors' chats, for the pages
  nats-config  print nats.conf's authorization block: a NATS user per service
  keys         keys rotate: re-wrap every subject's keys under a new key-encryption key
  audit        audit verify: check a tenant's audit trail is whole and unchanged
  streams      streams apply: create or update every stream and bucket, as admin

Every flag may also be set as an environment variable PARLEY_<FLAG>, e.g.
--data-dir as PARLEY_DATA_DIR. Run 'parley <command> -h' for its flags.
`

// usageError is a mistake in the command line or configuration.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"no command given"}
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "all":
		return runAll(ctx, args, stdout, stderr)
	case "gateway", "chat", "privacy", "analytics":
		return runService(ctx, cmd, args, stdout, stderr)
	case "token":
		return runToken(args, stdout, stderr)
	case "demo":
		return runDemo(ctx, args, stdout, stderr)
	case "nats-config":
		return runNATSConfig(args, stdout, stderr)
	case "keys":
		return runKeys(ctx, args, stdout, stderr)
	case "audit":
		return runAudit(ctx, args, stdout, stderr)
	case "streams":
		return runStreams(ctx, args, stdout, stderr)
	}
	if isHelp(cmd) {
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}

// isHelp reports whether arg, in the place of a command or subcommand, asks
// for help.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

// noSubcommand answers a command whose one subcommand (keys rotate, audit
// verify, streams apply) args do not start with: the subcommand's usage on
// stdout when args ask for help, on stderr with a usage error otherwise.
func noSubcommand(cmd string, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && isHelp(args[0]) {
		fs.SetOutput(stdout)
		fs.Usage()
		return flag.ErrHelp
	}
	fs.SetOutput(stderr)
	fs.Usage()
	if len(args) == 0 {
		return usageError{cmd + ": no subcommand given"}
	}
	return usageError{fmt.Sprintf("%s: unknown subcommand %q", cmd, args[0])}
}

// newLogger builds the process logger: JSON for machines, text for people.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Sprintf("--log-level %q: want debug, info, warn or error", level)}
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, usageError{fmt.Sprintf("--log-format %q: want json or text", format)}
}
