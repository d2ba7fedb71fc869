package main

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/services/privacy"
)

const auditUsage = `Usage: parley audit verify --tenant T [--checkpoint FILE] [--public-key KEY] [--data-dir D | --nats-url URL ...]

Reads the tenant's whole audit trail from the AUDIT stream and checks its
hash chain: every entry must carry its own hash and the hash of the entry
before it. Prints the number of entries when the chain is intact, and the
first entry where it breaks otherwise (exit status 1): an entry that was
changed, or the entry after one that was removed.

Then it checks the trail against signed checkpoints of the chain: the
auditor's own copy (--checkpoint FILE, the answer of GET
/v1/audit/checkpoint saved as it came), and the latest checkpoint Parley
keeps on its AUDIT_CHECKPOINTS stream. The trail fails (exit status 1) when
it is shorter than a checkpoint counts, deleted included, or its entry at a
checkpoint's count has another hash; and a checkpoint whose signature does
not verify is refused (exit status 1). The public key is --public-key (as
the endpoint answers it, base64), else the one saved in FILE, else the
public half of --audit-key-file (with --data-dir, DATA_DIR/audit-key.pem).

With --data-dir (the default), parley must be stopped: the tool opens the
store itself, and refuses a data dir that a running process owns. With
--nats-url it reads from a running server.

`

// errChainBroken is returned when the trail verified is not intact; main
// exits with status 1 after the report is printed.
var errChainBroken = errors.New("audit trail is not intact")

// errBadCheckpoint is returned when a checkpoint's signature does not
// verify: the trail could not be checked against it.
var errBadCheckpoint = errors.New("audit checkpoint refused")

func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var store storeFlags
	fs := flag.NewFlagSet("parley audit verify", flag.ContinueOnError)
	store.register(fs)
	tenant := fs.String("tenant", "", "tenant whose trail to verify (required)")
	checkpointFile := fs.String("checkpoint", "", "the auditor's saved answer of GET /v1/audit/checkpoint")
	publicKey := fs.String("public-key", "", "public key of the audit key, base64, as GET /v1/audit/checkpoint answers it")
	auditKeyFile := fs.String("audit-key-file", "", "the audit key, whose public half checks the checkpoints (with --data-dir, default DATA_DIR/"+privacy.AuditKeyFile+")")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), auditUsage)
		fs.PrintDefaults()
	}
	if len(args) == 0 || args[0] != "verify" {
		return noSubcommand("audit", fs, args, stdout, stderr)
	}
	if err := parseFlags(fs, args[1:], stdout, stderr); err != nil {
		return err
	}
	if !auth.ValidTenantID(*tenant) {
		return usageError{fmt.Sprintf("--tenant %q: want a tenant id, 1-63 of [a-z0-9-]", *tenant)}
	}
	var saved *privacyapi.AuditCheckpointResult
	if *checkpointFile != "" {
		r, err := readSavedCheckpoint(*checkpointFile)
		if err != nil {
			return err
		}
		saved = &r
	}
	pub, err := checkpointKey(*publicKey, saved, &store, *auditKeyFile)
	if err != nil {
		return err
	}
	nc, closeStore, err := store.open("audit")
	if err != nil {
		return err
	}
	defer closeStore()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	entries, err := privacy.AuditTrail(ctx, js, *tenant)
	if err != nil {
		return err
	}
	var checkpoints []namedCheckpoint
	if saved != nil && saved.Checkpoint != nil {
		checkpoints = append(checkpoints, namedCheckpoint{"checkpoint in " + *checkpointFile, *saved.Checkpoint})
	}
	switch kept, found, err := privacy.AuditCheckpoint(ctx, js, *tenant); {
	case err != nil:
		return err
	case found:
		checkpoints = append(checkpoints, namedCheckpoint{"Parley's checkpoint", kept})
	}
	if len(checkpoints) == 0 {
		fmt.Fprintln(stderr, noCheckpointWarning)
	}
	if len(entries) == 0 && len(checkpoints) == 0 {
		// An empty trail is intact, but "0 entries, chain intact" would
		// pass a mistyped tenant off as a checked one.
		msg := "no entries, nothing to verify"
		if tenantMissing(ctx, js, *tenant) {
			msg += "; there is no tenant " + *tenant
		}
		fmt.Fprintf(stdout, "audit trail of %s: %s\n", *tenant, msg)
		return nil
	}
	var broken *audit.ChainError
	switch err := audit.Verify(entries); {
	case errors.As(err, &broken):
		fmt.Fprintf(stdout, "audit trail of %s: %d entries, chain BROKEN at entry %d of %d\n  %s\n",
			*tenant, len(entries), broken.Index+1, len(entries), broken)
		return errChainBroken
	case err != nil:
		return err
	}
	if len(checkpoints) > 0 && pub == nil {
		return usageError{"there is a checkpoint to check and no public key: pass --public-key"}
	}
	var report strings.Builder
	var failed error
	for _, c := range checkpoints {
		switch err := checkCheckpoint(entries, c.cp, *tenant, pub); {
		case errors.Is(err, errBadCheckpoint):
			fmt.Fprintf(&report, "  %s: REFUSED: %v\n", c.name, err)
			failed = cmp.Or(failed, err)
		case err != nil:
			fmt.Fprintf(&report, "  %s: ENTRIES MISSING: %v\n", c.name, err)
			failed = errChainBroken
		default:
			fmt.Fprintf(&report, "  %s (%d entries, %s): held\n", c.name, c.cp.Count, c.cp.At.UTC().Format(time.RFC3339))
		}
	}
	state := "chain intact"
	switch {
	case errors.Is(failed, errChainBroken):
		state = "chain intact up to its end, but entries a checkpoint counts are MISSING"
	case failed != nil:
		state = "chain intact, but a checkpoint is REFUSED"
	}
	fmt.Fprintf(stdout, "audit trail of %s: %d entries, %s\n%s", *tenant, len(entries), state, report.String())
	return failed
}

// noCheckpointWarning is printed when there is no checkpoint to check the
// trail against: an intact chain then proves nothing about its end.
const noCheckpointWarning = "warning: no checkpoint, neither Parley's nor --checkpoint: a trail deleted whole, or cut off at its end, cannot be detected without one; save GET /v1/audit/checkpoint and pass it with --checkpoint"

// namedCheckpoint is a checkpoint and where it came from, for the report.
type namedCheckpoint struct {
	name string
	cp   audit.Checkpoint
}

// checkCheckpoint checks that cp is the tenant's, signed with pub, and
// that entries hold what it counts. A checkpoint that does not verify
// gives errBadCheckpoint: it says nothing about the trail.
func checkCheckpoint(entries []audit.Entry, cp audit.Checkpoint, tenant string, pub ed25519.PublicKey) error {
	if err := cp.Verify(pub); err != nil {
		return fmt.Errorf("%w: %w", errBadCheckpoint, err)
	}
	if cp.Tenant != tenant {
		return fmt.Errorf("%w: it is of tenant %s", errBadCheckpoint, cp.Tenant)
	}
	return audit.CheckCheckpoint(entries, cp)
}

// readSavedCheckpoint reads an auditor's saved answer of GET
// /v1/audit/checkpoint.
func readSavedCheckpoint(path string) (privacyapi.AuditCheckpointResult, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return privacyapi.AuditCheckpointResult{}, usageError{fmt.Sprintf("--checkpoint: %v", err)}
	}
	var r privacyapi.AuditCheckpointResult
	if err := json.Unmarshal(data, &r); err != nil {
		return privacyapi.AuditCheckpointResult{}, usageError{fmt.Sprintf("--checkpoint %s: not an answer of GET /v1/audit/checkpoint: %v", path, err)}
	}
	return r, nil
}

// checkpointKey returns the public key that checks the checkpoints: the
// one given, else the one saved with the auditor's checkpoint, else the
// public half of the audit key in keyFile (with --data-dir, by default the
// one there); nil when there is none.
func checkpointKey(given string, saved *privacyapi.AuditCheckpointResult, store *storeFlags, keyFile string) (ed25519.PublicKey, error) {
	switch {
	case given != "":
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(given))
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, usageError{fmt.Sprintf("--public-key: want the %d bytes of an Ed25519 public key in base64", ed25519.PublicKeySize)}
		}
		return b, nil
	case saved != nil && saved.PublicKey != nil:
		return saved.PublicKey, nil
	case keyFile == "" && store.bus.url != "":
		return nil, nil
	case keyFile == "":
		keyFile = filepath.Join(store.dataDir, privacy.AuditKeyFile)
		if _, err := os.Stat(keyFile); errors.Is(err, iofs.ErrNotExist) {
			return nil, nil
		}
	}
	key, err := privacy.ReadAuditKey(keyFile)
	if err != nil {
		return nil, err
	}
	return key.Public().(ed25519.PublicKey), nil
}

// tenantMissing reports whether the tenants bucket says tenant does not
// exist. A bucket the tool's NATS user may not read says nothing.
func tenantMissing(ctx context.Context, js jetstream.JetStream, tenant string) bool {
	kv, err := js.KeyValue(ctx, stream.TenantsBucket)
	if err != nil {
		return errors.Is(err, jetstream.ErrBucketNotFound)
	}
	_, err = kv.Get(ctx, tenant)
	return errors.Is(err, jetstream.ErrKeyNotFound)
}
