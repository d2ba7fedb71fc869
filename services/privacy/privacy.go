package privacy

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/retry"
	"github.com/parley-chat/parley/pkg/seal"
	"github.com/parley-chat/parley/pkg/stream"

	pkgrpc "github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/services/privacy/internal/app"
	"github.com/parley-chat/parley/services/privacy/internal/bus"
	"github.com/parley-chat/parley/services/privacy/internal/chat"
	"github.com/parley-chat/parley/services/privacy/internal/delivery"
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
	// GiveUp is how long a background consumer (the relay, the erasures
	// after close) may keep failing before Run stops and returns its
	// error; 0 means retry.GiveUp.
	GiveUp time.Duration
	// RelayPinTTL is how long the relay's consumer stays with an instance
	// that stopped pulling (it died, or lost the bus) before another
	// instance relays; 0 means relay.DefaultPinTTL (30 s). The same on
	// every instance.
	RelayPinTTL time.Duration
	// KeyCacheSize bounds how many subjects' unwrapped keys an instance
	// keeps in memory, the least recently used leaving first; 0 means
	// 100,000.
	KeyCacheSize int
	// StaffSessionTTL is how long a member of staff's session lasts from
	// sign-in, refreshed or not; 0 means DefaultStaffSessionTTL.
	StaffSessionTTL time.Duration
	// DeliveryBackoff is the waits between the attempts at a delivery to
	// a bot or integration, len+1 attempts in all; nil means
	// delivery.DefaultBackoff. Tests shorten it.
	DeliveryBackoff []time.Duration
	// DeliveryTimeout bounds one attempt at a delivery; 0 means
	// delivery.DefaultTimeout (10 s).
	DeliveryTimeout time.Duration
	// PrivateWebhooks lets bots and integrations be registered, and
	// delivered to, at this host's and private networks' addresses (a bot
	// beside Parley in development); otherwise webhooks go to public
	// addresses only (internal/egress).
	PrivateWebhooks bool
	// Now is the clock of audit entries, keys and sessions; nil means
	// time.Now. Tests set their own.
	Now func() time.Time
	// Health, when set, is where Run says whether this instance is ready:
	// not before its view of PRIVACY is rebuilt and the relay's consumer
	// exists, nor while a background consumer fails, for the process's
	// /readyz. Its pings answer it too. Nil means Run keeps its own.
	Health *pkgrpc.Health
}

// partRelay names the relay's part of the service's health, not ready
// (errStarting) until its consumer is made.
const partRelay = "relay"

// partIntegrations and partNotices name the mirror of the INTEGRATIONS
// bucket and the consumer of pending erasure notices in the health.
const (
	partIntegrations = "integrations"
	partNotices      = "erasure notices"
)

var errStarting = errors.New("starting")

// Run creates the streams PRIVACY, KEYS, AUDIT, AUDIT_CHECKPOINTS, ANALYTICS, SCHEDULES,
// DELIVERIES, RECIPIENTS and NOTICES and the SETTINGS, SESSIONS and INTEGRATIONS buckets when missing, rebuilds its view of PRIVACY (consents, erasures) from
// the stream's first event, then serves the privacy service until ctx is
// done. While a background consumer fails, the service's pings answer that
// it is not ready, naming it (pkg/rpc Health). Run returns nil on a clean
// shutdown, after every request received was answered, and an error when
// the dependencies are missing, the service cannot start, or a background
// consumer has kept failing for Deps.GiveUp.
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
	health := d.Health
	if health == nil {
		health = new(pkgrpc.Health)
	}
	health.Set(partRelay, errStarting)
	js, err := natsjs.New(d.NC, natsjs.WithPublishAsyncTimeout(relay.PublishTimeout))
	if err != nil {
		return fmt.Errorf("privacy: jetstream: %w", err)
	}
	// Create, never update: the privacy user may not reconfigure streams
	// (pkg/buspolicy); an operator applies a changed definition.
	if err := stream.CreateMissing(ctx, js, d.Streams, d.Log, stream.Privacy, stream.Keys, stream.Audit, stream.AuditCheckpoints, stream.Analytics, stream.Schedules,
		stream.Deliveries, stream.Recipients, stream.Notices); err != nil {
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
	sessions, err := jetstream.NewSessionStore(ctx, js, d.Streams, d.Log)
	if err != nil {
		return fmt.Errorf("privacy: %w", err)
	}
	integrations, err := jetstream.NewIntegrationStore(ctx, js, d.Streams, d.Log)
	if err != nil {
		return fmt.Errorf("privacy: %w", err)
	}
	events := jetstream.NewEventLog(js)
	erasures, err := jetstream.NewErasureRecords(ctx, js, d.Streams, d.Log)
	if err != nil {
		return fmt.Errorf("privacy: %w", err)
	}
	giveUp := d.GiveUp
	if giveUp == 0 {
		giveUp = retry.GiveUp
	}
	// Bots and integrations: the registered ones mirrored for deliveries
	// and erasure notices.
	registered := delivery.WatchIntegrations(ctx, js, d.Log, giveUp, health.Of(partIntegrations))
	defer registered.Close()
	// a is made below; no delivery is sent before Run starts them.
	var a *app.App
	secret := func(rec privacyapi.Integration) ([]byte, error) { return a.IntegrationSecret(rec) }
	deliveryConfig := delivery.Config{Backoff: d.DeliveryBackoff, Timeout: d.DeliveryTimeout, PrivateAddresses: d.PrivateWebhooks}
	notifier := delivery.NewNotifier(d.NC, js, registered, secret, d.Log, deliveryConfig)
	a = app.New(ring, d.AuditKey, app.Stores{Keys: keys, Events: events, Audit: auditLog, Checkpoints: checkpoints, Settings: settings, Bus: bus.NewBroadcaster(d.NC), Expiries: jetstream.NewExpirySchedules(js),
		Analytics: relay.NewCleaner(d.NC, js), Chat: chat.New(d.NC), ChatLog: jetstream.NewChatLog(js), Log: d.Log, KeyCacheSize: d.KeyCacheSize,
		Sessions: sessions, Integrations: integrations, StaffSessionTTL: d.StaffSessionTTL, Now: d.Now,
		Deliveries: delivery.NewLog(js), Notices: notifier, PrivateWebhooks: d.PrivateWebhooks, Erasures: erasures})

	from, err := a.Start(ctx)
	if err != nil {
		return fmt.Errorf("privacy: %w", err)
	}
	follow, err := events.Follow(ctx, from, a.Apply)
	if err != nil {
		return fmt.Errorf("privacy: %w", err)
	}
	defer follow.Stop()
	if err := a.CatchUp(ctx); err != nil {
		return fmt.Errorf("privacy: catch up with %s: %w", stream.Privacy, err)
	}
	// Other instances' erasures: drop the keys this one holds.
	erased, err := d.NC.Subscribe(personkey.ErasedSubject, func(m *nats.Msg) {
		var e personkey.Erased
		if json.Unmarshal(m.Data, &e) == nil {
			a.Forget(e.Tenant, e.Person)
		}
	})
	if err != nil {
		return fmt.Errorf("privacy: subscribe %s: %w", personkey.ErasedSubject, err)
	}
	defer erased.Unsubscribe()
	g, gctx := errgroup.WithContext(ctx)
	// Requests in flight when ctx ends run to completion: Stop drains the
	// subscriptions, and each request is bounded by its own deadline.
	served, err := rpc.Serve(context.WithoutCancel(ctx), d.NC, d.Log, health, a)
	if err != nil {
		return fmt.Errorf("privacy: %w", err)
	}
	// The relay to analytics, after the consent history is rebuilt.
	g.Go(func() error {
		if err := relay.New(js, a, d.Log, d.RelayPinTTL).Run(gctx, giveUp, health.Of(partRelay)); err != nil {
			return fmt.Errorf("relay: %w", err)
		}
		return nil
	})
	// The erasures of conversations after they close, as their schedules
	// fire.
	g.Go(func() error {
		return ephemeral.NewEraser(d.NC, js, a, d.Log).Run(gctx, giveUp, func(part string, err error) {
			health.Set("erase after close ("+part+")", err)
		})
	})
	// Deliveries to bots and integrations, and the erasure notices they
	// did not acknowledge in time.
	g.Go(func() error {
		if err := delivery.New(d.NC, js, a, registered, secret, d.Log, deliveryConfig).Run(gctx, giveUp, health.Set); err != nil {
			return fmt.Errorf("deliveries: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := notifier.Run(gctx, giveUp, health.Of(partNotices)); err != nil {
			return fmt.Errorf("erasure notices: %w", err)
		}
		return nil
	})
	// Erasures whose instance stopped, or failed, before their end are
	// finished by whichever instance runs.
	g.Go(func() error {
		t := time.NewTicker(stalledEvery)
		defer t.Stop()
		for {
			switch n, err := a.FinishStalled(gctx); {
			case err != nil && gctx.Err() == nil:
				d.Log.Warn("finish stalled erasures", "finished", n, "err", err)
			case n > 0:
				d.Log.Info("finished stalled erasures", "finished", n)
			}
			select {
			case <-gctx.Done():
				return nil
			case <-t.C:
			}
		}
	})
	d.Log.Info("privacy service running", "kek_id", ring.KEKID())
	<-gctx.Done()
	served.Stop()
	if err := g.Wait(); err != nil {
		return fmt.Errorf("privacy: %w", err)
	}
	return nil
}

// stalledEvery is how often an instance looks for stalled erasures
// (app.FinishStalled).
const stalledEvery = time.Minute

// DefaultStaffSessionTTL is how long a member of staff's session lasts
// from sign-in by default: a working day.
const DefaultStaffSessionTTL = app.DefaultStaffSessionTTL

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
