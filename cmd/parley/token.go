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
	"github.com/parley-chat/parley/pkg/stream"
)

func runToken(args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("parley token", flag.ContinueOnError)
	dataDir := flags.String("data-dir", "./data", "data directory holding signing-key.pem")
	keyFile := flags.String("signing-key-file", "", "signing key file (overrides --data-dir)")
	tenant := flags.String("tenant", "", `tenant of the principal, 1-63 of [a-z0-9-] ("*" for the operator)`)
	role := flags.String("role", "", tokenRoles)
	id := flags.String("id", "", "principal id, 1-64 of [A-Za-z0-9_-]")
	ttl := flags.Duration("ttl", 24*time.Hour, "how long the token is valid")
	if err := parseFlags(flags, args, stdout, stderr); err != nil {
		return err
	}
	p := auth.Principal{Tenant: *tenant, ID: *id, Role: auth.Role(*role)}
	if err := validateStaff(p); err != nil {
		return err
	}
	if *ttl <= 0 {
		return usageError{"--ttl must be positive"}
	}
	signer, err := readSigner(*dataDir, *keyFile)
	if err != nil {
		return err
	}
	tok, err := signer.Issue(p, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// readSigner reads the signing key of keyFile, or else the one under
// dataDir. No lock on the data dir: the key is only read, parley all writes
// it once, at its first start, and never changes it; and issuing tokens for
// a running parley all is what its callers are for, which even a shared
// lock would refuse.
func readSigner(dataDir, keyFile string) (*auth.Signer, error) {
	path := keyFile
	if path == "" {
		path = filepath.Join(dataDir, auth.SigningKeyFile)
	}
	key, err := auth.ReadKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, usageError{fmt.Sprintf("no signing key at %s: start `parley all --data-dir %s` once, or pass --signing-key-file", path, dataDir)}
	}
	if err != nil {
		return nil, err
	}
	return auth.NewSigner(key), nil
}

const tokenRoles = "agent, supervisor, admin, analyst, auditor, bot or operator"

// validateStaff checks the principal of a staff token; its error names the
// flag at fault. The tenant must be an id a tenant can have, not merely one
// a token accepts: a token for any other would be refused on every call.
func validateStaff(p auth.Principal) error {
	switch {
	case p.Role == "":
		return usageError{"--role is required: " + tokenRoles}
	case p.Role == auth.RoleVisitor:
		return usageError{"visitor tokens come from POST /v1/tenants/{tenant}/visitors"}
	case !p.Role.Valid():
		return usageError{fmt.Sprintf("--role %q: want %s", p.Role, tokenRoles)}
	case p.Tenant == "":
		return usageError{`--tenant is required: a tenant id, or "*" for the operator`}
	case p.Role == auth.RoleOperator && p.Tenant != auth.OperatorTenant:
		return usageError{fmt.Sprintf("--tenant %q: the operator's tenant is %q", p.Tenant, auth.OperatorTenant)}
	case p.Role != auth.RoleOperator && !auth.ValidTenantID(p.Tenant):
		return usageError{fmt.Sprintf("--tenant %q: want a tenant id, 1-63 of [a-z0-9-]", p.Tenant)}
	case p.ID == "":
		return usageError{"--id is required: 1-64 of [A-Za-z0-9_-]"}
	case !stream.ValidToken(p.ID):
		return usageError{fmt.Sprintf("--id %q: want 1-64 of [A-Za-z0-9_-]", p.ID)}
	}
	// Whatever else the token format demands.
	if err := p.Validate(); err != nil {
		return usageError{err.Error()}
	}
	return nil
}
