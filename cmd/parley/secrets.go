package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley/pkg/seal"
	"github.com/parley-chat/parley/services/privacy"
)

// Secrets never come from a flag's value: a process's arguments are
// readable by every user of its machine (/proc/PID/cmdline) and end up in
// manifests, shell histories and `ps` listings. They come from a file, from
// the environment, or (the KEK) from a command's output.

// busFlags say how a command connects to a running NATS: its URL, a
// credentials file or a user name with a password from a file or from
// PARLEY_NATS_PASSWORD, and, where the server requires TLS, the CA that
// signed the server's certificate and the client certificate to present.
type busFlags struct {
	url          string
	creds        string
	user         string
	passwordFile string
	tls          tlsFiles
}

// tlsFiles name a TLS certificate, its key and a CA, PEM files in the
// layout of a cert-manager Secret (tls.crt, tls.key, ca.crt).
type tlsFiles struct {
	ca, cert, key string
}

// natsPasswordEnv holds a NATS user's password when no file is given.
const natsPasswordEnv = "PARLEY_NATS_PASSWORD"

func (f *busFlags) register(fs *flag.FlagSet, urlUsage string) {
	fs.StringVar(&f.url, "nats-url", "", urlUsage)
	fs.StringVar(&f.creds, "nats-creds", "", "NATS credentials file of the user to connect as")
	fs.StringVar(&f.user, "nats-user", "", "NATS user name, its password from --nats-password-file or "+natsPasswordEnv)
	fs.StringVar(&f.passwordFile, "nats-password-file", "", "file holding the password of --nats-user (or "+natsPasswordEnv+" holds the password itself)")
	fs.StringVar(&f.tls.ca, "nats-ca-file", "", "CA certificate(s), PEM, that the NATS server's certificate must be signed by: the connection is then TLS only (e.g. ca.crt of a cert-manager Secret)")
	fs.StringVar(&f.tls.cert, "nats-cert-file", "", "client certificate, PEM, presented to a NATS server that requires one (mutual TLS; e.g. tls.crt); needs --nats-key-file")
	fs.StringVar(&f.tls.key, "nats-key-file", "", "key of --nats-cert-file, PEM (e.g. tls.key)")
}

// options returns the connection options for the user the flags name.
func (f *busFlags) options() ([]nats.Option, error) {
	var opts []nats.Option
	if f.creds != "" {
		opts = append(opts, nats.UserCredentials(f.creds))
	}
	password, err := readSecret("--nats-password-file", f.passwordFile, natsPasswordEnv)
	if err != nil {
		return nil, err
	}
	switch {
	case f.user != "" && password == "":
		return nil, usageError{"--nats-user needs --nats-password-file or " + natsPasswordEnv}
	case f.user == "" && password != "":
		return nil, usageError{"a NATS password needs --nats-user"}
	case f.user != "":
		opts = append(opts, nats.UserInfo(f.user, password))
	}
	tlsOpts, err := f.tls.clientOptions()
	if err != nil {
		return nil, err
	}
	return append(opts, tlsOpts...), nil
}

// clientOptions returns the options of a TLS client that verifies the
// server against the CA and presents the certificate, when the files are
// given. nats.go reads the files again at every (re)connection, so a
// certificate cert-manager renewed is presented without a restart.
func (t tlsFiles) clientOptions() ([]nats.Option, error) {
	var opts []nats.Option
	if t.ca != "" {
		opts = append(opts, nats.RootCAs(t.ca))
	}
	switch {
	case (t.cert == "") != (t.key == ""):
		return nil, usageError{"--nats-cert-file and --nats-key-file go together"}
	case t.cert != "":
		opts = append(opts, nats.ClientCert(t.cert, t.key))
	}
	return opts, nil
}

// readSecret returns the contents of file, white space around them
// trimmed, when file is given, else the value of the environment variable
// env; "" when neither is set. flagName names file in errors.
func readSecret(flagName, file, env string) (string, error) {
	if file == "" {
		return os.Getenv(env), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flagName, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// warnSecretInURLs logs, once, that flagName's value holds a secret when
// one of its comma-separated URLs carries a password (or, with token,
// a user part alone, which NATS takes as a token): arguments are readable
// by every user of the machine. It names the flag and instead, never the
// value.
func warnSecretInURLs(log *slog.Logger, flagName, urls string, token bool, instead string) {
	for _, raw := range strings.Split(urls, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || u.User == nil {
			continue
		}
		if _, hasPassword := u.User.Password(); hasPassword || token {
			log.Warn("a secret in a command-line argument is readable by every user of the machine (/proc/PID/cmdline); move it out of the argument",
				"flag", flagName, "instead", instead)
			return
		}
	}
}

// clickHousePasswordEnv holds the password of the user the ClickHouse DSN
// names, when no --clickhouse-password-file is given.
const clickHousePasswordEnv = "PARLEY_CLICKHOUSE_PASSWORD"

// clickHouseDSN returns dsn with the password from file or
// clickHousePasswordEnv, when one is set, as the password of dsn's user.
func clickHouseDSN(dsn, file string) (string, error) {
	password, err := readSecret("--clickhouse-password-file", file, clickHousePasswordEnv)
	if err != nil {
		return "", err
	}
	if password == "" {
		return dsn, nil
	}
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil || u.User.Username() == "" {
		// The parse error would repeat the DSN.
		return "", usageError{"--clickhouse: a ClickHouse password is set, so the DSN must name its user, clickhouse://USER@host:9000/db"}
	}
	u.User = url.UserPassword(u.User.Username(), password)
	return u.String(), nil
}

// kekFlags say where the privacy service's key-encryption key comes from:
// PARLEY_KEK (the key itself), a file, or the output of a command such as
// a KMS or Vault client.
type kekFlags struct {
	file    string
	command string
	timeout time.Duration
	// env names the variables, besides PATH, HOME and those of
	// kekCommandEnvPrefixes, that the command is given.
	env string
}

func (k *kekFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&k.file, "kek-file", "", "key-encryption key file (or PARLEY_KEK holds the key itself)")
	fs.StringVar(&k.command, "kek-command", "", `command printing the key-encryption key, 64 hex digits, on its standard output, e.g. "vault kv get -field=kek secret/parley"; split at white space and run without a shell`)
	fs.DurationVar(&k.timeout, "kek-command-timeout", 30*time.Second, "how long --kek-command may take")
	fs.StringVar(&k.env, "kek-command-env", "", "comma-separated names of further environment variables --kek-command is given; it always gets PATH, HOME and the variables prefixed "+strings.Join(kekCommandEnvPrefixes, ", ")+", and no other (never "+natsPasswordEnv+")")
}

// load returns the KEK from the one source the flags and PARLEY_KEK give.
// The command's errors go to stderr.
func (k *kekFlags) load(ctx context.Context, stderr io.Writer) (seal.Key, error) {
	_, fromEnv := os.LookupEnv("PARLEY_KEK")
	switch {
	case k.command == "" && k.file == "" && !fromEnv:
		return seal.Key{}, usageError{"no key-encryption key: set PARLEY_KEK, --kek-file or --kek-command"}
	case k.command == "":
		if err := oneKEKSource(k.file); err != nil {
			return seal.Key{}, err
		}
		return loadKEK(k.file, false)
	case fromEnv || k.file != "":
		return seal.Key{}, usageError{"--kek-command: give the key-encryption key one way, not also by PARLEY_KEK or --kek-file"}
	}
	return kekFromCommand(ctx, k.command, kekCommandEnv(os.Environ(), k.env), k.timeout, stderr)
}

// oneKEKSource refuses a KEK file given while PARLEY_KEK is set: one would
// silently win over the other.
func oneKEKSource(file string) error {
	if _, fromEnv := os.LookupEnv("PARLEY_KEK"); fromEnv && file != "" {
		return usageError{"--kek-file: give the key-encryption key one way, not also by PARLEY_KEK"}
	}
	return nil
}

// kekCommandEnvPrefixes are the prefixes of the variables KMS and Vault
// clients read their address and credentials from.
var kekCommandEnvPrefixes = []string{"VAULT_", "AWS_", "GOOGLE_", "AZURE_"}

// kekCommandEnv returns the variables of environ a KEK command is given:
// PATH, HOME, those of kekCommandEnvPrefixes and those named in allow
// (comma separated). The rest, such as the bus password, stay with the
// process: the helper is a program of another vendor.
func kekCommandEnv(environ []string, allow string) []string {
	names := map[string]bool{"PATH": true, "HOME": true}
	for _, n := range strings.Split(allow, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names[n] = true
		}
	}
	var env []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if names[name] || slices.ContainsFunc(kekCommandEnvPrefixes, func(p string) bool { return strings.HasPrefix(name, p) }) {
			env = append(env, kv)
		}
	}
	return env
}

// kekOutputLimit bounds what a KEK command may print: a key with a line
// break, and room for more white space.
const kekOutputLimit = 1 << 10

// kekFromCommand runs command, its fields split at white space, without a
// shell, and parses its standard output as a KEK. Errors name the
// program only, never its arguments or output; its own errors go to
// stderr. It runs with the environment env and is killed when timeout
// passes.
func kekFromCommand(ctx context.Context, command string, env []string, timeout time.Duration, stderr io.Writer) (seal.Key, error) {
	args := strings.Fields(command)
	if len(args) == 0 {
		return seal.Key{}, usageError{"--kek-command is empty"}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	out := &limitedBuffer{max: kekOutputLimit}
	cmd.Stdout, cmd.Stderr = out, stderr
	// Not nil: exec would give a nil Env the whole of the process's.
	cmd.Env = append([]string{}, env...)
	// A helper that left a child holding its output open is not waited
	// for past its own end.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	defer clear(out.buf.Bytes())
	switch {
	case ctx.Err() != nil:
		return seal.Key{}, fmt.Errorf("--kek-command %s: no key within %s", args[0], timeout)
	case err != nil:
		return seal.Key{}, fmt.Errorf("--kek-command %s: %w", args[0], err)
	case out.over:
		return seal.Key{}, fmt.Errorf("--kek-command %s: printed more than %d bytes, want a key of 64 hex digits", args[0], kekOutputLimit)
	}
	key, err := privacy.ParseKEK(out.buf.String())
	if err != nil {
		// ParseKEK's error may quote a byte of the output.
		return seal.Key{}, fmt.Errorf("--kek-command %s: its output is not a key of 64 hex digits", args[0])
	}
	return key, nil
}

// limitedBuffer keeps the first max bytes written to it and notes whether
// more came.
type limitedBuffer struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if room := b.max - b.buf.Len(); n > room {
		b.over = true
		p = p[:max(room, 0)]
	}
	b.buf.Write(p)
	return n, nil
}
