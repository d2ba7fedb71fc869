package privacy

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/seal"
	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/pkg/subjectkey"

	pkgrpc "github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/services/privacy/internal/app"
	"github.com/parley-chat/parley/services/privacy/internal/bus"
	"github.com/parley-chat/parley/services/privacy/internal/ephemeral"
	"github.com/parley-chat/parley/services/privacy/internal/jetstream"
	"github.com/parley-chat/parley/services/privacy/internal/keyring"
	"github.com/parley-chat/parley/services/privacy/internal/relay"
	"github.com/parley-chat/parley/services/privacy/internal/rpc"
)

// Deps is what the privacy service runs on.
type Deps struct {
	// NC is the connection to NATS; required. Run does not close it.
	NC *nats.Conn
	// Log receives the service's logs; required.
	Log *slog.Logger
	// KEK is the key-encryption key that wraps every subject's keys; it must
	// not be the zero key. See LoadOrCreateKEK and ParseKEK.
	KEK seal.Key
	// AuditKey signs the checkpoints of the audit trail (pkg/audit
	// Checkpoint); required. Every instance holds the same key, and the
	// bus never does: see LoadOrCreateAuditKey.
	AuditKey ed25519.PrivateKey
	// Streams tune the definitions of the streams the service ensures.
	Streams stream.Options
}

// Run creates the streams PRIVACY, KEYS, AUDIT, AUDIT_CHECKPOINTS, ANALYTICS and SCHEDULES and
// the SETTINGS bucket when missing, rebuilds its view of PRIVACY (consents, erasures) from
// the stream's first event, then serves the privacy service until ctx is
// done. It returns nil on a clean shutdown, and an error when the
// dependencies are missing or the service cannot start.
func Run(ctx context.Context, d Deps) error {
	switch {
	case d.NC == nil:
		return errors.New("privacy: no NATS connection")
	case d.Log == nil:
		return errors.New("privacy: no logger")
	case d.KEK == seal.Key{}:
		return errors.New("privacy: no key-encryption key")
	case len(d.AuditKey) != ed25519.PrivateKeySize:
		return errors.New("privacy: no audit key")
	}
	js, err := natsjs.New(d.NC)
	if err != nil {
		return fmt.Errorf("privacy: jetstream: %w", err)
	}
	// Create, never update: the privacy user may not reconfigure streams
	// (pkg/buspolicy); an operator applies a changed definition.
	switch err := stream.Create(ctx, js, d.Streams, stream.Privacy, stream.Keys, stream.Audit, stream.AuditCheckpoints, stream.Analytics, stream.Schedules); {
	case errors.Is(err, stream.ErrDrift):
		d.Log.Warn("streams differ from this version's definitions", "err", err)
	case err != nil:
		return fmt.Errorf("privacy: %w", err)
	}
	ring := keyring.New(d.KEK)
	keys, err := jetstream.NewKeyStore(ctx, js, ring.KEKID())
	switch {
	case errors.Is(err, keyring.ErrRotating):
		return fmt.Errorf("privacy: %w; start the service again with the new KEK once the rotation completed", err)
	case errors.Is(err, keyring.ErrKEKRetired):
		return fmt.Errorf("privacy: %w; start the service with the KEK in force (the one `parley keys rotate` made last)", err)
	case err != nil:
		return fmt.Errorf("privacy: %w", err)
	}
	auditLog, err := jetstream.NewAuditLog(ctx, js)
	if err != nil {
		return fmt.Errorf("privacy: %w", err)
	}
	checkpoints, err := jetstream.NewCheckpoints(ctx, js)
	if err != nil {
		return fmt.Errorf("privacy: %w", err)
	}
	settings, err := jetstream.NewSettingsStore(ctx, js, d.Streams, d.Log)
	if err != nil {
		return fmt.Errorf("privacy: %w", err)
	}
	events := jetstream.NewEventLog(js)
	a := app.New(ring, d.AuditKey, app.Stores{Keys: keys, Events: events, Audit: auditLog, Checkpoints: checkpoints, Settings: settings, Bus: bus.NewBroadcaster(d.NC),
		Analytics: relay.NewCleaner(d.NC, js), Log: d.Log})

	follow, err := events.Follow(ctx, a.Apply)
	if err != nil {
		return fmt.Errorf("privacy: %w", err)
	}
	defer follow.Stop()
	if err := a.CatchUp(ctx); err != nil {
		return fmt.Errorf("privacy: rebuild from %s: %w", stream.Privacy, err)
	}
	// Other instances' erasures: drop the keys this one holds.
	erased, err := d.NC.Subscribe(subjectkey.ErasedSubject, func(m *nats.Msg) {
		var e subjectkey.Erased
		if json.Unmarshal(m.Data, &e) == nil {
			a.Forget(e.Tenant, e.Subject)
		}
	})
	if err != nil {
		return fmt.Errorf("privacy: subscribe %s: %w", subjectkey.ErasedSubject, err)
	}
	defer erased.Unsubscribe()
	subs, err := rpc.Serve(ctx, d.NC, d.Log, a)
	if err != nil {
		return fmt.Errorf("privacy: %w", err)
	}
	// The relay to analytics, after the consent history is rebuilt.
	relayDone := make(chan struct{})
	go func() {
		defer close(relayDone)
		_ = relay.New(js, a, d.Log).Run(ctx)
	}()
	defer func() { <-relayDone }()
	// The erasures of conversations after they close, as their schedules
	// fire.
	eraserDone := make(chan struct{})
	go func() {
		defer close(eraserDone)
		if err := ephemeral.NewEraser(d.NC, js, a, d.Log).Run(ctx); err != nil {
			d.Log.Error("erase after close stopped", "err", err)
		}
	}()
	defer func() { <-eraserDone }()
	d.Log.Info("privacy service running", "kek_id", ring.KEKID())
	<-ctx.Done()
	pkgrpc.Stop(subs...)
	return nil
}

// LoadOrCreateKEK reads the KEK from the file at path: the 64 hex digits of
// its 32 bytes, surrounding white space ignored. When the file does not
// exist it generates a KEK and creates the file with mode 0600, for
// development under --data-dir. Concurrent callers get the same KEK.
func LoadOrCreateKEK(path string) (seal.Key, error) {
	return keyring.LoadOrCreateKEK(path)
}

// LoadKEK reads the KEK from the file at path, as LoadOrCreateKEK does, but
// never creates one: production keys are provisioned, not generated.
func LoadKEK(path string) (seal.Key, error) {
	return keyring.LoadKEK(path)
}

// ParseKEK reads a KEK given as text, such as the PARLEY_KEK variable: the
// 64 hex digits of its 32 bytes, surrounding white space ignored.
func ParseKEK(s string) (seal.Key, error) {
	return keyring.ParseKEK(s)
}

// AuditKeyFile is the name of the audit key under a data directory.
const AuditKeyFile = "audit-key.pem"

// LoadOrCreateAuditKey reads the audit key, a PEM (PKCS #8) Ed25519 key,
// from the file at path, and creates the file with a new key and mode 0600
// when it does not exist, for development under --data-dir. In production
// the key is provisioned (ReadAuditKey), to the privacy service only: an
// administrator of the bus must not hold it, or they could sign a
// checkpoint that hides the entries they removed.
func LoadOrCreateAuditKey(path string) (ed25519.PrivateKey, error) {
	k, err := auth.LoadOrCreateKey(path)
	if err != nil {
		return nil, fmt.Errorf("audit key: %w", err)
	}
	return k, nil
}

// ReadAuditKey reads the audit key from the file at path, as
// LoadOrCreateAuditKey does, but never creates one.
func ReadAuditKey(path string) (ed25519.PrivateKey, error) {
	k, err := auth.ReadKey(path)
	if err != nil {
		return nil, fmt.Errorf("audit key: %w", err)
	}
	return k, nil
}
