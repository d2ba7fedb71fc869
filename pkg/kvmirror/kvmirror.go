// Package kvmirror keeps a JetStream key-value bucket mirrored in memory:
// the one way Parley reads a bucket that is read far more often than it is
// written (tenants, tenant settings), so that a read never touches the bus.
//
// A Mirror watches every key of its bucket, decodes each value and keeps
// the latest one per key. It is ready once it holds every value stored
// when its watch began. A bucket that does not exist yet (one another
// service creates) and a watch that fails are tried again with pkg/retry's
// backoff, each failure reported to Config.Health; a watch made again
// replaces the whole map with what the bucket holds then, so a key
// deleted meanwhile does not linger. A mirror that keeps failing for
// Config.GiveUp stops, and Done and Err say why, so that its service can
// stop rather than serve stale values for ever.
package kvmirror

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/retry"
)

// ErrNotReady is returned by Wait when the mirror stopped before it was
// ready, and wrapped by callers that cannot answer from a mirror that is
// not ready yet.
var ErrNotReady = errors.New("mirror of the bucket not loaded yet")

// Config says which bucket a Mirror follows and how to read its values.
// Only Bucket is required.
type Config[V any] struct {
	// Bucket is the name of the key-value bucket.
	Bucket string
	// Decode reads a stored value; nil means encoding/json. A value it
	// refuses is logged and skipped, and the key keeps the value it had:
	// it comes from a foreign writer, as the owners validate what they
	// store.
	Decode func(b []byte) (V, error)
	// Log hears of waits and unreadable values; nil discards them.
	Log *slog.Logger
	// Health, when set, hears each failure of the watch and nil once the
	// mirror is ready again.
	Health func(error)
	// GiveUp is how long the mirror may keep failing before it stops; 0
	// means retry.GiveUp, a negative value never.
	GiveUp time.Duration
}

type item[V any] struct {
	value    V
	revision uint64
}

// Mirror is the in-memory copy of one bucket. It is safe for concurrent
// use.
type Mirror[V any] struct {
	js  jetstream.JetStream
	cfg Config[V]

	stop  context.CancelFunc
	ready chan struct{}
	done  chan struct{}
	err   error // why the mirror stopped by itself; set before done closes

	readyOnce sync.Once
	tried     chan struct{}
	triedOnce sync.Once
	// health holds the watch's last failure, nil while it works.
	health atomic.Pointer[error]
	// waitLogged is touched by the watching goroutine only.
	waitLogged bool

	mu    sync.RWMutex
	items map[string]item[V]
}

// Start mirrors cfg.Bucket through js in the background until ctx ends or
// Close is called, and returns at once; Wait waits for the initial values.
func Start[V any](ctx context.Context, js jetstream.JetStream, cfg Config[V]) *Mirror[V] {
	if cfg.Decode == nil {
		cfg.Decode = func(b []byte) (V, error) {
			var v V
			err := json.Unmarshal(b, &v)
			return v, err
		}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.GiveUp == 0:
		cfg.GiveUp = retry.GiveUp
	case cfg.GiveUp < 0:
		cfg.GiveUp = 0
	}
	ctx, stop := context.WithCancel(ctx)
	m := &Mirror[V]{
		js: js, cfg: cfg, stop: stop,
		ready: make(chan struct{}), tried: make(chan struct{}), done: make(chan struct{}),
		items: make(map[string]item[V]),
	}
	m.health.Store(&ErrNotReady)
	health := func(err error) {
		m.health.Store(&err)
		m.triedOnce.Do(func() { close(m.tried) })
		if cfg.Health != nil {
			cfg.Health(err)
		}
	}
	go func() {
		defer close(m.done)
		m.err = retry.Keep(ctx, cfg.GiveUp, health, m.watch)
		if m.err != nil {
			m.err = fmt.Errorf("mirror bucket %s: %w", cfg.Bucket, m.err)
		}
	}()
	return m
}

// Wait returns nil once the mirror holds every value stored when it first
// watched the bucket; ctx's error when ctx ends first, and an error
// wrapping ErrNotReady when the mirror stopped first.
func (m *Mirror[V]) Wait(ctx context.Context) error {
	select {
	case <-m.ready:
		return nil
	case <-m.done:
		return fmt.Errorf("mirror bucket %s: %w: %w", m.cfg.Bucket, ErrNotReady, m.Err())
	case <-ctx.Done():
		return fmt.Errorf("load bucket %s: %w", m.cfg.Bucket, ctx.Err())
	}
}

// Tried is closed once the mirror's first watch of the bucket has loaded
// it or failed, so that Health tells something: for a caller that can do
// without the bucket while it is missing.
func (m *Mirror[V]) Tried() <-chan struct{} { return m.tried }

// Ready reports whether the mirror has loaded the bucket's values once.
func (m *Mirror[V]) Ready() bool {
	select {
	case <-m.ready:
		return true
	default:
		return false
	}
}

// Health returns nil while the mirror follows its bucket, and otherwise
// why not: ErrNotReady before it first loaded, the last failure of its
// watch while it tries again, and Err once it stopped. A service counts
// it in its readiness.
func (m *Mirror[V]) Health() error {
	if err := m.Err(); err != nil {
		return err
	}
	return *m.health.Load()
}

// Done is closed when the mirror has stopped: by Close, by the end of
// Start's context, or by giving up; Err then says which.
func (m *Mirror[V]) Done() <-chan struct{} { return m.done }

// Err returns why the mirror stopped by itself, having failed for longer
// than Config.GiveUp; nil while it runs and after Close.
func (m *Mirror[V]) Err() error {
	select {
	case <-m.done:
		return m.err
	default:
		return nil
	}
}

// Close stops the mirror and waits until it has; the values stay readable.
// It returns Err.
func (m *Mirror[V]) Close() error {
	m.stop()
	<-m.done
	return m.err
}

// Get returns the value of key, and false when the bucket holds none (or
// the mirror is not ready yet). A nil Mirror holds nothing.
func (m *Mirror[V]) Get(key string) (V, bool) {
	if m == nil {
		var zero V
		return zero, false
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	it, ok := m.items[key]
	return it.value, ok
}

// Range calls fn for each key and value, in no order, until fn returns
// false. fn must not call the mirror's other methods.
func (m *Mirror[V]) Range(fn func(key string, v V) bool) {
	if m == nil {
		return
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	for k, it := range m.items {
		if !fn(k, it.value) {
			return
		}
	}
}

// Set records a value the caller has just stored under key at revision, so
// that its own reads see the write at once rather than when the watch
// delivers it. A value the mirror holds at that revision or a later one
// wins.
func (m *Mirror[V]) Set(key string, v V, revision uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.items[key]; !ok || cur.revision < revision {
		m.items[key] = item[V]{value: v, revision: revision}
	}
}

// watch runs one watch of the bucket until ctx ends or the watch fails.
// Its initial values replace the map whole, once all are in.
func (m *Mirror[V]) watch(ctx context.Context, working func()) error {
	kv, err := m.js.KeyValue(ctx, m.cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) && !m.waitLogged {
		m.waitLogged = true
		m.cfg.Log.Info("waiting for the bucket to be created", "bucket", m.cfg.Bucket)
	}
	if err != nil {
		return fmt.Errorf("open bucket %s: %w", m.cfg.Bucket, err)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch bucket %s: %w", m.cfg.Bucket, err)
	}
	defer func() { _ = w.Stop() }()
	// The watch sends every stored value, then nil, then each change.
	initial := make(map[string]item[V])
	var top uint64
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return fmt.Errorf("watch bucket %s: watcher stopped", m.cfg.Bucket)
			case e == nil:
				m.replace(initial, top)
				initial = nil
				// Healthy before ready, so that no one who waited for
				// ready reads the failure that came before.
				working()
				m.readyOnce.Do(func() { close(m.ready) })
			case initial != nil:
				top = max(top, e.Revision())
				m.apply(initial, e)
			default:
				m.mu.Lock()
				m.apply(m.items, e)
				m.mu.Unlock()
			}
		}
	}
}

// replace makes loaded, the values a watch began with, the map. Of what it
// held, only the caller's own writes (Set) stored after the watch began,
// past top, the latest revision loaded, are kept.
func (m *Mirror[V]) replace(loaded map[string]item[V], top uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, it := range m.items {
		if it.revision > top {
			loaded[k] = it
		}
	}
	m.items = loaded
}

func (m *Mirror[V]) apply(into map[string]item[V], e jetstream.KeyValueEntry) {
	if cur, ok := into[e.Key()]; ok && cur.revision >= e.Revision() {
		// The caller's own write got here before the watch did.
		return
	}
	if e.Operation() != jetstream.KeyValuePut {
		delete(into, e.Key())
		return
	}
	v, err := m.cfg.Decode(e.Value())
	if err != nil {
		m.cfg.Log.Warn("skip an unreadable value", "bucket", m.cfg.Bucket, "key", e.Key(), "revision", e.Revision(), "err", err)
		return
	}
	into[e.Key()] = item[V]{value: v, revision: e.Revision()}
}
