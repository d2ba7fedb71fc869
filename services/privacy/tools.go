package privacy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/privacyapi"
	pkgrpc "github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/seal"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/privacy/internal/jetstream"
	"github.com/parley-chat/parley/services/privacy/internal/keyring"
)

// The operator tools of `parley keys` and `parley audit`: they work on the
// store directly, as an admin connection, not through the service.

// RotationReport says what RotateKEK did.
type RotationReport struct {
	// OldKEKID and NewKEKID are the fingerprints of the two KEKs (see
	// KEKID), never the keys.
	OldKEKID string `json:"old_kek_id"`
	NewKEKID string `json:"new_kek_id"`
	// Rewrapped records moved from the old KEK to the new one.
	Rewrapped int `json:"rewrapped"`
	// AlreadyRewrapped records were under the new KEK already, from an
	// earlier run that stopped half way.
	AlreadyRewrapped int `json:"already_rewrapped"`
	// Tombstones are erased subjects, which hold no key and are skipped.
	Tombstones int `json:"tombstones"`
	// ResealedSecrets are bots' and integrations' signing secrets sealed
	// again under the new KEK; AlreadyResealed were under it already.
	ResealedSecrets int `json:"resealed_secrets"`
	AlreadyResealed int `json:"already_resealed"`
}

// ErrForeignKEK is returned by RotateKEK for a key record wrapped under
// neither of its KEKs: nothing more is moved, and the old KEK must be kept.
var ErrForeignKEK = jetstream.ErrForeignKEK

// ErrServing is returned by RotateKEK while a privacy service is serving.
var ErrServing = errors.New("a privacy service is serving: stop every instance before rotating the key-encryption key")

// RotateKEK re-wraps every subject's keys in the KEYS stream from oldKEK to
// newKEK, seals every bot's and integration's secret again under newKEK,
// and calls progress (when not nil) after each record with how many
// are done out of how many there were. Erased subjects' tombstones are
// skipped. Each old record is secure-deleted once its replacement is
// stored, so its bytes are overwritten in the store files and no key is
// lost if the rotation stops half way; run it again with the same two KEKs
// to resume.
//
// It refuses with ErrServing while any privacy service answers on the bus,
// as one holding oldKEK could not read the keys once moved. From its start
// until it returns nil no key is wrapped, by any instance, and no instance
// starts (both answer that a rotation is under way); once it returned nil,
// only instances holding newKEK start. Only then may oldKEK be destroyed;
// until it is, copies of the store made before (backups, snapshots, Raft
// logs) still give up the keys they hold to whoever has it.
func RotateKEK(ctx context.Context, js natsjs.JetStream, oldKEK, newKEK seal.Key, progress func(done, total int)) (RotationReport, error) {
	from, to := keyring.New(oldKEK), keyring.New(newKEK)
	rep := RotationReport{OldKEKID: from.KEKID(), NewKEKID: to.KEKID()}
	if oldKEK == newKEK {
		return rep, errors.New("rotate: the new key-encryption key is the old one")
	}
	idle := func(ctx context.Context) error { return NoneServing(ctx, js.Conn()) }
	r, err := jetstream.Rotate(ctx, js, from, to, idle, progress)
	rep.Rewrapped, rep.AlreadyRewrapped, rep.Tombstones = r.Rewrapped, r.Current, r.Tombstones
	rep.ResealedSecrets, rep.AlreadyResealed = r.Resealed, r.CurrentSecrets
	return rep, err
}

// NoneServing returns nil when no privacy service answers on the bus, and
// ErrServing when one does. RotateKEK checks it itself, at its start and
// as it goes; a tool calls it first to refuse before it prepares anything.
func NoneServing(ctx context.Context, nc *nats.Conn) error {
	for _, subj := range []string{personkey.GetSubject, privacyapi.RegisterVisitorSubject} {
		err := pkgrpc.Ping(ctx, nc, subj)
		switch {
		case err == nil, errors.As(err, new(*pkgrpc.Error)):
			// An instance answering that it is not ready still serves.
			return ErrServing
		case !errors.Is(err, nats.ErrNoResponders):
			return fmt.Errorf("rotate: tell whether a privacy service is serving: %w", err)
		}
	}
	return nil
}

// KEKID returns the fingerprint of kek that key records carry: safe to
// print, it does not reveal the key.
func KEKID(kek seal.Key) string { return keyring.Fingerprint(kek) }

// OverwriteKEK writes kek into the existing KEK file at path, over the
// bytes of the key it held, and syncs the file; see RotateKEK for when the
// old key may go.
func OverwriteKEK(path string, kek seal.Key) error {
	return keyring.OverwriteKEK(path, kek)
}

// AuditTrail returns the tenant's whole audit chain from the AUDIT stream,
// oldest entry first, for audit.Verify. A tenant without entries has an
// empty chain.
func AuditTrail(ctx context.Context, js natsjs.JetStream, tenant string) ([]audit.Entry, error) {
	if !stream.ValidToken(tenant) {
		return nil, fmt.Errorf("audit trail: tenant %q is not a valid id", tenant)
	}
	l, err := jetstream.NewAuditLog(ctx, js)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit trail: %w", err)
	}
	// List pages; a limit past any chain's length reads it whole.
	entries, _, err := l.List(ctx, tenant, time.Time{}, int(^uint(0)>>1))
	if err != nil {
		return nil, fmt.Errorf("audit trail: %w", err)
	}
	return entries, nil
}

// AuditCheckpoint returns the tenant's latest audit checkpoint as the
// AUDIT_CHECKPOINTS stream holds it, its signature unchecked; found is
// false when there is none, or no such stream.
func AuditCheckpoint(ctx context.Context, js natsjs.JetStream, tenant string) (cp audit.Checkpoint, found bool, err error) {
	if !stream.ValidToken(tenant) {
		return audit.Checkpoint{}, false, fmt.Errorf("audit checkpoint: tenant %q is not a valid id", tenant)
	}
	c, err := jetstream.NewCheckpoints(ctx, js)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		return audit.Checkpoint{}, false, nil
	}
	if err != nil {
		return audit.Checkpoint{}, false, fmt.Errorf("audit checkpoint: %w", err)
	}
	cp, _, found, err = c.Latest(ctx, tenant)
	if err != nil {
		return audit.Checkpoint{}, false, fmt.Errorf("audit checkpoint: %w", err)
	}
	return cp, found, nil
}
