package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Key-value buckets. A bucket B is the stream KV_B.
const (
	// TenantsBucket is the gateway's tenant registry.
	TenantsBucket = "TENANTS"
	// SettingsBucket is the tenants' privacy settings, owned by privacy; it
	// is privacyapi.SettingsBucket.
	SettingsBucket = "SETTINGS"
	// ChatViewBucket is the chat service's materialised view of CHAT: each
	// conversation's state, the assignee sealed under the visitor's key.
	ChatViewBucket = "CHAT_VIEW"
	// AgentsBucket is each agent's presence and capacity, owned by chat,
	// which assigns conversations by them.
	AgentsBucket = "AGENTS"
	// SessionsBucket is the key-value bucket of sessions, owned, read and
	// written by the privacy service only. It holds refresh-token hashes
	// and who each session is for, never a token; each entry expires with
	// its session.
	SessionsBucket = "SESSIONS"
	// SignInBucket is the gateway's pending sign-ins (state, nonce, PKCE
	// verifier), each kept SignInTTL.
	SignInBucket = "SIGN_IN"
	// IdentityProvidersBucket is the gateway's tenants' identity provider
	// settings, client secrets included.
	IdentityProvidersBucket = "IDENTITY_PROVIDERS"
	// IntegrationsBucket is the bots and integrations registered per
	// tenant, owned by privacy (privacyapi.IntegrationsBucket).
	IntegrationsBucket = "INTEGRATIONS"
	// ErasuresBucket is the erasures by id, owned, read and written by the
	// privacy service only: what PRIVACY, which holds them by data
	// subject, cannot find by id.
	ErasuresBucket = "ERASURES"
)

// Buckets lists every key-value bucket of Parley.
func Buckets() []string {
	return []string{TenantsBucket, SettingsBucket, ChatViewBucket, AgentsBucket, SessionsBucket, SignInBucket, IdentityProvidersBucket, IntegrationsBucket, ErasuresBucket}
}

// SignInTTL is how long a sign-in may take, from its start at the gateway
// to the provider's answer.
const SignInTTL = 10 * time.Minute

// SessionsMarkerTTL is how long the SESSIONS bucket keeps the marker of an
// entry that expired.
const SessionsMarkerTTL = time.Minute

// ErasuresMarkerTTL is how long the ERASURES bucket keeps the marker of a
// pending erasure's entry once it completed.
const ErasuresMarkerTTL = time.Minute

// ViewMarkerTTL is how long CHAT_VIEW keeps the marker of a conversation
// removed from it (erased or expired), so that the bucket does not grow
// with every conversation it ever held.
const ViewMarkerTTL = 24 * time.Hour

// BucketStream is the name of the stream that holds bucket.
func BucketStream(bucket string) string { return "KV_" + bucket }

// KeySubject is the subject of key in bucket's stream.
func KeySubject(bucket, key string) string { return "$KV." + bucket + "." + key }

// KVOperation is the header with which a bucket marks a removal (DEL,
// PURGE); a write has none.
const KVOperation = "KV-Operation"

// BucketConfig returns the definition of the named key-value bucket.
func BucketConfig(bucket string, o Options) (jetstream.KeyValueConfig, error) {
	cfg := jetstream.KeyValueConfig{
		Bucket:   bucket,
		Storage:  jetstream.FileStorage,
		Replicas: max(o.Replicas, 1),
	}
	switch bucket {
	case TenantsBucket:
		cfg.Description = "Parley tenants, owned by the gateway"
		cfg.History = 1
	case SettingsBucket:
		cfg.Description = "tenant privacy settings; no personal data"
	case ChatViewBucket:
		cfg.Description = "the chat service's view of CHAT, rebuilt from it at will; assignees sealed under the visitor's key"
		cfg.History = 1
		cfg.LimitMarkerTTL = ViewMarkerTTL
	case AgentsBucket:
		cfg.Description = "agents' presence and capacity, owned by chat; staff ids, nothing of visitors"
		cfg.History = 1
		// Two small values per agent who set one: bounded so that no
		// tenant can grow the server's store without end.
		cfg.MaxValueSize = 256
		cfg.MaxBytes = 64 << 20
	case SessionsBucket:
		cfg.Description = "sessions: refresh-token hashes and who each session is for, each entry expiring with its session; no token"
		cfg.History = 1
		cfg.LimitMarkerTTL = SessionsMarkerTTL
	case SignInBucket:
		cfg.Description = "pending sign-ins: state, nonce and PKCE verifier, each used once"
		cfg.History = 1
		cfg.TTL = SignInTTL
	case IdentityProvidersBucket:
		cfg.Description = "each tenant's identity provider: issuer, client id and secret, role mapping; the gateway's only"
		cfg.History = 1
	case IntegrationsBucket:
		cfg.Description = "bots and integrations per tenant: where to deliver, the signing secret sealed under the KEK; no personal data"
		cfg.History = 1
	case ErasuresBucket:
		cfg.Description = "erasures by id: the tenant and data subject id of each, who asked and when, and which are pending; nothing else of the subject"
		cfg.History = 1
		cfg.LimitMarkerTTL = ErasuresMarkerTTL
	default:
		return jetstream.KeyValueConfig{}, fmt.Errorf("unknown bucket %q", bucket)
	}
	return cfg, nil
}

// ErrDrift is wrapped by the errors of Create and CreateBuckets when a
// stream or bucket exists with another configuration than this version's
// definition. They leave it as it is, since services may not reconfigure
// streams; the caller decides whether it can run on the old configuration,
// and an operator applies the new one with Apply (`parley streams apply`).
var ErrDrift = errors.New("exists with a configuration that differs from this version's definition; an operator applies it with `parley streams apply` (`parley all` does at start)")

// ErrCopies is returned by Create and CreateBuckets when a stream or bucket
// that exists sources or mirrors another stream. No definition of Parley's
// does: whoever created it so meant to copy another stream's messages, keys
// perhaps, to where they could read them. It does not wrap ErrDrift, so
// that a caller that runs on with a drifted configuration stops for this.
var ErrCopies = errors.New("sources or mirrors another stream, which no Parley definition does: remove it and apply the definitions with `parley streams apply`")

// Create creates those of the named streams that do not exist yet; a stream
// that exists with this version's definition is left alone. It needs only
// the right to create each stream ($JS.API.STREAM.CREATE.<name>) and to read
// its info, never to update it: the server refuses a create that would
// change an existing stream.
//
// A stream that exists with another definition is left as it is, and Create
// goes on with the others, then returns an error wrapping ErrDrift that
// names each of them. It stops at once with ErrCopies for a stream that
// sources or mirrors another.
func Create(ctx context.Context, js jetstream.JetStream, o Options, names ...string) error {
	var drifted []error
	for _, name := range names {
		cfg, err := Config(name, o)
		if err != nil {
			return err
		}
		_, err = js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			if err := checkCopies(ctx, js, name); err != nil {
				return err
			}
			drifted = append(drifted, fmt.Errorf("stream %s %w", name, ErrDrift))
			continue
		}
		if err != nil {
			return fmt.Errorf("create stream %s: %w", name, err)
		}
	}
	return errors.Join(drifted...)
}

// CreateBuckets is Create for key-value buckets: it creates those of the
// named buckets that do not exist yet, with the same errors.
func CreateBuckets(ctx context.Context, js jetstream.JetStream, o Options, buckets ...string) error {
	var drifted []error
	for _, bucket := range buckets {
		cfg, err := BucketConfig(bucket, o)
		if err != nil {
			return err
		}
		_, err = js.CreateKeyValue(ctx, cfg)
		if errors.Is(err, jetstream.ErrBucketExists) {
			if err := checkCopies(ctx, js, BucketStream(bucket)); err != nil {
				return err
			}
			drifted = append(drifted, fmt.Errorf("bucket %s %w", bucket, ErrDrift))
			continue
		}
		if err != nil {
			return fmt.Errorf("create bucket %s: %w", bucket, err)
		}
	}
	return errors.Join(drifted...)
}

// CreateMissing creates those of the named streams that do not exist yet,
// as Create does, for a service: a stream that exists with another
// definition is used as it is, with a warning logged naming it, since a
// service may not reconfigure it. It fails as Create does otherwise, for a
// stream that copies another (ErrCopies) among others.
func CreateMissing(ctx context.Context, js jetstream.JetStream, o Options, log *slog.Logger, names ...string) error {
	return runOnDrift(log, Create(ctx, js, o, names...))
}

// Open creates the named stream when missing, as CreateMissing does, and
// opens it.
func Open(ctx context.Context, js jetstream.JetStream, o Options, log *slog.Logger, name string) (jetstream.Stream, error) {
	if err := CreateMissing(ctx, js, o, log, name); err != nil {
		return nil, err
	}
	st, err := js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", name, err)
	}
	return st, nil
}

// OpenBucket creates the bucket with the definition of o when missing and
// opens it. A bucket that exists with another definition is used as it is,
// with a warning to log: a service may not reconfigure it (CreateBuckets).
func OpenBucket(ctx context.Context, js jetstream.JetStream, o Options, log *slog.Logger, bucket string) (jetstream.KeyValue, error) {
	if err := runOnDrift(log, CreateBuckets(ctx, js, o, bucket)); err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", bucket, err)
	}
	return kv, nil
}

// runOnDrift is err of Create or CreateBuckets, but nil, with a warning
// logged, when it is drift only (ErrDrift): the service runs on the
// configuration it found.
func runOnDrift(log *slog.Logger, err error) error {
	if errors.Is(err, ErrDrift) {
		log.Warn("used as it is: an operator applies this version's definition", "err", err)
		return nil
	}
	return err
}

// checkCopies returns ErrCopies when the existing stream name sources or
// mirrors another stream.
func checkCopies(ctx context.Context, js jetstream.JetStream, name string) error {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return fmt.Errorf("stream %s: %w", name, err)
	}
	if cfg := s.CachedInfo().Config; cfg.Mirror != nil || len(cfg.Sources) > 0 {
		return fmt.Errorf("stream %s %w", name, ErrCopies)
	}
	return nil
}

// Action is what Apply did to one stream or bucket.
type Action string

// The actions of Apply.
const (
	Created   Action = "created"
	Updated   Action = "updated"
	Unchanged Action = "unchanged"
)

// Applied is the outcome of Apply for one stream or bucket.
type Applied struct {
	// Name is the stream's name, or the bucket's with Bucket set.
	Name   string
	Bucket bool
	Action Action
}

// Apply creates or updates every stream and key-value bucket of Parley to
// this version's definitions, and reports what it did to each, streams
// first. It needs the right to update streams, which only the admin user
// holds. It stops at the first error, having applied the ones before.
func Apply(ctx context.Context, js jetstream.JetStream, o Options) ([]Applied, error) {
	var done []Applied
	for _, name := range Names() {
		cfg, err := Config(name, o)
		if err != nil {
			return done, err
		}
		action, err := apply(ctx, js, name,
			func() error { _, err := js.CreateStream(ctx, cfg); return err },
			func() error { _, err := js.UpdateStream(ctx, cfg); return err })
		if err != nil {
			return done, fmt.Errorf("apply stream %s: %w", name, err)
		}
		done = append(done, Applied{Name: name, Action: action})
	}
	for _, bucket := range Buckets() {
		cfg, err := BucketConfig(bucket, o)
		if err != nil {
			return done, err
		}
		action, err := apply(ctx, js, BucketStream(bucket),
			func() error { _, err := js.CreateKeyValue(ctx, cfg); return err },
			func() error { _, err := js.UpdateKeyValue(ctx, cfg); return err })
		if err != nil {
			return done, fmt.Errorf("apply bucket %s: %w", bucket, err)
		}
		done = append(done, Applied{Name: bucket, Bucket: true, Action: action})
	}
	return done, nil
}

// apply creates the stream name, or updates it when the server refuses the
// create because the stream exists with another configuration: the
// server's own comparison decides what changed.
func apply(ctx context.Context, js jetstream.JetStream, name string, create, update func() error) (Action, error) {
	_, err := js.Stream(ctx, name)
	missing := errors.Is(err, jetstream.ErrStreamNotFound)
	if err != nil && !missing {
		return "", err
	}
	err = create()
	switch {
	case err == nil && missing:
		return Created, nil
	case err == nil:
		return Unchanged, nil
	case errors.Is(err, jetstream.ErrStreamNameAlreadyInUse):
		if err := update(); err != nil {
			return "", err
		}
		return Updated, nil
	}
	return "", err
}
