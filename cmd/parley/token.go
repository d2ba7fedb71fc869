package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/parley-chat/parley/pkg/auth"
)

func runToken(args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("parley token", flag.ContinueOnError)
	dataDir := flags.String("data-dir", "./data", "data directory holding signing-key.pem")
	keyFile := flags.String("signing-key-file", "", "signing key file (overrides --data-dir)")
	tenant := flags.String("tenant", "", `tenant of the principal ("*" for the operator)`)
	role := flags.String("role", "", "agent, supervisor, admin, analyst, auditor or operator")
	id := flags.String("id", "", "principal id, 1-64 of [A-Za-z0-9_-]")
	ttl := flags.Duration("ttl", 24*time.Hour, "how long the token is valid")
	if err := parseFlags(flags, args, stderr); err != nil {
		return err
	}
	p := auth.Principal{Tenant: *tenant, ID: *id, Role: auth.Role(*role)}
	if p.Role == auth.RoleVisitor {
		return usageError{"visitor tokens come from POST /v1/tenants/{tenant}/visitors"}
	}
	if err := p.Validate(); err != nil {
		return usageError{err.Error()}
	}
	if *ttl <= 0 {
		return usageError{"--ttl must be positive"}
	}
	path := *keyFile
	if path == "" {
		path = filepath.Join(*dataDir, auth.SigningKeyFile)
	}
	key, err := auth.ReadKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		return usageError{fmt.Sprintf("no signing key at %s: start `parley all --data-dir %s` once, or pass --signing-key-file", path, *dataDir)}
	}
	if err != nil {
		return err
	}
	tok, err := auth.NewSigner(key).Issue(p, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
