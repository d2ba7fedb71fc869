package jetstream

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/chat/internal/app"
)

// View is app.View on the key-value bucket CHAT_VIEW. A conversation's key
// is <tenant>.open.<visitor>.<conversation> while it is open and
// <tenant>.closed.<visitor>.<conversation> once closed, so that a start
// loads the open ones with one filtered watch, and the closed ones of a
// tenant or of one visitor are listed by a filter on the keys; appliedKey,
// layoutKey and expiringKey have no dot, so no conversation's key is the
// same. It is safe for concurrent use; instances sharing the bucket never
// move an entry back, as every write names the revision it replaces.
//
// An entry written with an expiry (app.ViewEntry.Expires) carries a
// Nats-TTL, so that the bucket drops it then by itself, leaving a marker
// for stream.ViewMarkerTTL; a rewrite carries its own, replacing the
// last. The bucket's definition allows them (its LimitMarkerTTL does)
// since the bucket was first defined; one that does not is written
// without, with a warning at open: its open entries are removed once
// expired by the instances (app.Service.ExpireOpen, Restore), its closed
// ones are left until the definition is applied and expiringKey deleted,
// when the next start gives them their TTL (app.Service.MigrateExpiry).
type View struct {
	kv natsjs.KeyValue
	js natsjs.JetStream
	// noTTL is set when the bucket refuses per-message TTLs.
	noTTL bool
}

const (
	// appliedKey holds the sequence up to which every event is in the view.
	appliedKey = "applied"
	// layoutKey names the layout the bucket is written in, layout: 2 for
	// the key per status, 3 once entries seal the visitor's data whole
	// (app.ViewEntry.Sealed).
	layoutKey = "layout"
	layout    = "3"
	// expiringKey, once written, records that every closed entry written
	// with no TTL, as versions before entries expired by themselves wrote
	// them, was given one or removed (app.Service.MigrateExpiry). Its own
	// key, not a layout: an instance of such a version, which may run
	// beside this one while chat rolls, empties a bucket of another layout.
	expiringKey = "expiring"
)

// OpenView creates the bucket with the definition of o when missing and
// returns a View on it; a bucket with another definition is used as it is,
// with a warning (see stream.CreateBuckets). A bucket in an older layout is
// emptied of the entries that layout wrote, to be rebuilt from CHAT: those
// of the first layout, one key per conversation, and those of the second,
// which hold the visitor's rating and more in the clear.
func OpenView(ctx context.Context, js natsjs.JetStream, o stream.Options, log *slog.Logger) (*View, error) {
	kv, err := stream.OpenBucket(ctx, js, o, log, stream.ChatViewBucket)
	if err != nil {
		return nil, err
	}
	v := &View{kv: kv, js: js}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", stream.ChatViewBucket, err)
	}
	if bs, ok := st.(*natsjs.KeyValueBucketStatus); ok && !bs.StreamInfo().Config.AllowMsgTTL {
		v.noTTL = true
		log.Warn("entries are written without a TTL, and those of expired closed conversations left in the bucket, as it allows no per-message TTL: an operator applies this version's definition with `parley streams apply`, then deletes the key "+expiringKey+" so that the next start gives every entry its TTL",
			"bucket", stream.ChatViewBucket)
	}
	if err := v.upgrade(ctx, log); err != nil {
		return nil, err
	}
	return v, nil
}

// upgrade empties a bucket written in an older layout of that layout's
// entries and marks it written in this one. Instances that start together
// may both do it: neither removes the other's entries in this layout, and
// a removed applied costs the next start a rebuild, nothing more.
func (v *View) upgrade(ctx context.Context, log *slog.Logger) error {
	cur, err := v.kv.Get(ctx, layoutKey)
	if err == nil && string(cur.Value()) == layout {
		return nil
	}
	if err != nil && !errors.Is(err, natsjs.ErrKeyNotFound) {
		return fmt.Errorf("layout of %s: %w", stream.ChatViewBucket, err)
	}
	// The first layout's keys, <tenant>.<conversation>, applied, and the
	// second's entries with no sealed part: an instance that upgraded a
	// moment before may be writing this layout's. The rebuild writes each
	// conversation again, sealed.
	keys, err := v.kv.ListKeysFiltered(ctx, "*.*", viewKey("*", "*", "*", true), viewKey("*", "*", "*", false), appliedKey)
	if err != nil {
		return fmt.Errorf("upgrade %s: %w", stream.ChatViewBucket, err)
	}
	defer func() { _ = keys.Stop() }()
	removed := 0
	for k := range keys.Keys() {
		if strings.Count(k, ".") == 3 {
			old, err := v.older(ctx, k)
			if err != nil {
				return err
			}
			if !old {
				continue
			}
		}
		if err := v.kv.Purge(ctx, k, natsjs.PurgeTTL(stream.ViewMarkerTTL)); err != nil {
			return fmt.Errorf("upgrade %s: %w", stream.ChatViewBucket, err)
		}
		removed++
	}
	// A new bucket has nothing to rebuild: said on every first start, it
	// would read as an upgrade that did not happen.
	if removed > 0 {
		log.Info("emptied the view of an older layout: it is rebuilt from the events", "bucket", stream.ChatViewBucket, "layout", layout, "removed", removed)
	}
	if _, err := v.kv.Put(ctx, layoutKey, []byte(layout)); err != nil {
		return fmt.Errorf("upgrade %s: %w", stream.ChatViewBucket, err)
	}
	return nil
}

// older reports whether the entry under key was written before this
// layout: it has no sealed part. An erased visitor's entry of this layout
// has none either, and is rebuilt with the rest.
func (v *View) older(ctx context.Context, key string) (bool, error) {
	kve, err := v.kv.Get(ctx, key)
	if errors.Is(err, natsjs.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("upgrade %s: %w", stream.ChatViewBucket, err)
	}
	var e struct {
		Sealed []byte `json:"sealed"`
	}
	if err := json.Unmarshal(kve.Value(), &e); err != nil {
		// Unreadable as any layout's: rebuilt.
		return true, nil
	}
	return e.Sealed == nil, nil
}

// status is the key token of an entry's status.
func status(open bool) string {
	if open {
		return "open"
	}
	return "closed"
}

func viewKey(tenant, visitor, id string, open bool) string {
	return tenant + "." + status(open) + "." + visitor + "." + id
}

// Load implements app.View, reading the open entries with one watch.
func (v *View) Load(ctx context.Context, fn func(app.ViewEntry) error) (uint64, error) {
	var applied uint64
	cur, err := v.kv.Get(ctx, appliedKey)
	switch {
	case errors.Is(err, natsjs.ErrKeyNotFound):
	case err != nil:
		return 0, fmt.Errorf("load %s: %w", stream.ChatViewBucket, err)
	default:
		if applied, err = strconv.ParseUint(string(cur.Value()), 10, 64); err != nil {
			return 0, fmt.Errorf("load %s: %s: %w", stream.ChatViewBucket, appliedKey, err)
		}
	}
	w, err := v.kv.Watch(ctx, "*.open.*.*", natsjs.IgnoreDeletes())
	if err != nil {
		return 0, fmt.Errorf("load %s: %w", stream.ChatViewBucket, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		var kve natsjs.KeyValueEntry
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case kve = <-w.Updates():
		}
		if kve == nil { // all values read
			return applied, nil
		}
		e, err := decodeEntry(kve)
		if err != nil {
			return 0, err
		}
		if err := fn(e); err != nil {
			return 0, err
		}
	}
}

func decodeEntry(kve natsjs.KeyValueEntry) (app.ViewEntry, error) {
	return decode(kve.Key(), kve.Value(), kve.Revision())
}

// decode returns the entry value holds, written under key at revision rev.
func decode(key string, value []byte, rev uint64) (app.ViewEntry, error) {
	var e app.ViewEntry
	if err := json.Unmarshal(value, &e); err != nil {
		return app.ViewEntry{}, fmt.Errorf("load %s: entry %d: %w", stream.ChatViewBucket, rev, err)
	}
	switch key {
	case viewKey(e.Tenant, e.Visitor, e.ID, true):
		e.Open = true
	case viewKey(e.Tenant, e.Visitor, e.ID, false):
	default:
		return app.ViewEntry{}, fmt.Errorf("load %s: entry %d is not its key's", stream.ChatViewBucket, rev)
	}
	e.Rev = rev
	return e, nil
}

// Get implements app.View: the closed entry, or else the open one.
func (v *View) Get(ctx context.Context, tenant, visitor, id string) (app.ViewEntry, bool, error) {
	for _, open := range []bool{false, true} {
		kve, err := v.kv.Get(ctx, viewKey(tenant, visitor, id, open))
		if errors.Is(err, natsjs.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return app.ViewEntry{}, false, fmt.Errorf("get %s from %s: %w", id, stream.ChatViewBucket, err)
		}
		e, err := decodeEntry(kve)
		return e, err == nil, err
	}
	return app.ViewEntry{}, false, nil
}

// Closed implements app.View with a listing of the keys filtered to the
// tenant and visitor.
func (v *View) Closed(ctx context.Context, tenant, visitor string, fn func(app.ClosedKey) error) error {
	filter := viewKey(cmp.Or(tenant, "*"), cmp.Or(visitor, "*"), "*", false)
	keys, err := v.kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return fmt.Errorf("list %s: %w", filter, err)
	}
	defer func() { _ = keys.Stop() }()
	for k := range keys.Keys() {
		t := strings.Split(k, ".")
		if len(t) != 4 {
			continue
		}
		if err := fn(app.ClosedKey{Tenant: t[0], Visitor: t[2], ID: t[3]}); err != nil {
			return err
		}
	}
	return nil
}

// Untimed implements app.View with one read of the closed keys' last
// writes (an ordered consumer of the bucket's stream, the last message of
// each subject), whose Nats-TTL header tells whether they carry an expiry;
// the entries with none are decoded.
func (v *View) Untimed(ctx context.Context, fn func(app.ViewEntry) error) error {
	filter := keySubject(viewKey("*", "*", "*", false))
	cons, err := v.js.OrderedConsumer(ctx, stream.BucketStream(stream.ChatViewBucket), natsjs.OrderedConsumerConfig{
		FilterSubjects: []string{filter},
		DeliverPolicy:  natsjs.DeliverLastPerSubjectPolicy,
	})
	if err != nil {
		return fmt.Errorf("list %s: %w", filter, err)
	}
	for pending := cons.CachedInfo().NumPending; pending > 0; {
		batch, err := cons.Fetch(int(min(pending, 256)), natsjs.FetchMaxWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("list %s: %w", filter, err)
		}
		read := 0
		for m := range batch.Messages() {
			read++
			pending--
			h := m.Headers()
			// A removal's marker, or a write with an expiry.
			if h.Get(stream.KVOperation) != "" || h.Get(natsjs.MsgTTLHeader) != "" {
				continue
			}
			md, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("list %s: %w", filter, err)
			}
			e, err := decode(strings.TrimPrefix(m.Subject(), keySubject("")), m.Data(), md.Sequence.Stream)
			if err != nil {
				return err
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("list %s: %w", filter, err)
		}
		if read == 0 {
			return nil // the rest expired meanwhile
		}
	}
	return nil
}

// keySubject is the bucket's subject of key.
func keySubject(key string) string { return stream.KeySubject(stream.ChatViewBucket, key) }

// Expiring implements app.View, reading expiringKey.
func (v *View) Expiring(ctx context.Context) (bool, error) {
	return stream.Marked(ctx, v.kv, expiringKey)
}

// SetExpiring implements app.View, writing expiringKey.
func (v *View) SetExpiring(ctx context.Context) error {
	return stream.Mark(ctx, v.kv, expiringKey)
}

// Put implements app.View with compare-and-set writes: a write over a
// revision that is no longer the last reads the entry there and stops when
// it is as new as e, or writes over it. A closed entry written afresh
// removes the open one.
func (v *View) Put(ctx context.Context, e app.ViewEntry) (uint64, error) {
	rev, err := v.put(ctx, e)
	if err != nil || e.Open || e.Rev != 0 {
		return rev, err
	}
	open := viewKey(e.Tenant, e.Visitor, e.ID, true)
	switch _, err := v.kv.Get(ctx, open); {
	case errors.Is(err, natsjs.ErrKeyNotFound):
		return rev, nil
	case err != nil:
		return 0, fmt.Errorf("put %s in %s: %w", e.ID, stream.ChatViewBucket, err)
	}
	if err := v.kv.Purge(ctx, open, natsjs.PurgeTTL(stream.ViewMarkerTTL)); err != nil {
		return 0, fmt.Errorf("put %s in %s: %w", e.ID, stream.ChatViewBucket, err)
	}
	return rev, nil
}

func (v *View) put(ctx context.Context, e app.ViewEntry) (uint64, error) {
	key := viewKey(e.Tenant, e.Visitor, e.ID, e.Open)
	b, err := json.Marshal(e)
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	rev := e.Rev
	for {
		var err error
		// Taken anew for every try: a TTL counts from the write.
		ttl := v.ttl(e.Expires)
		if rev == 0 {
			rev, err = v.kv.Create(ctx, key, b, natsjs.KeyTTL(ttl))
		} else {
			rev, err = v.update(ctx, key, b, rev, ttl)
		}
		if err == nil {
			return rev, nil
		}
		if !errors.Is(err, natsjs.ErrKeyExists) && !errors.Is(err, natsjs.ErrKeyRevisionMismatch) {
			return 0, fmt.Errorf("put %s in %s: %w", key, stream.ChatViewBucket, err)
		}
		cur, err := v.kv.Get(ctx, key)
		if errors.Is(err, natsjs.ErrKeyNotFound) {
			rev = 0 // removed meanwhile
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("put %s in %s: %w", key, stream.ChatViewBucket, err)
		}
		held, err := decodeEntry(cur)
		if err != nil {
			return 0, err
		}
		if held.Version >= e.Version {
			return held.Rev, nil
		}
		rev = held.Rev
	}
}

// ttl returns the Nats-TTL that has the bucket drop an entry at expires:
// whole seconds, as the server counts them, rounded up, so that it goes no
// earlier, and at least one; 0, none, for the zero time or a bucket that
// refuses them.
func (v *View) ttl(expires time.Time) time.Duration {
	if expires.IsZero() || v.noTTL {
		return 0
	}
	return max((time.Until(expires) + time.Second - 1).Truncate(time.Second), time.Second)
}

// update is KeyValue.Update with a TTL, which it takes none of: the same
// publish to the key's subject expecting the revision as the subject's
// last sequence, with a Nats-TTL when ttl is above 0. It returns an error
// wrapping natsjs.ErrKeyRevisionMismatch when the key is at another
// revision.
func (v *View) update(ctx context.Context, key string, value []byte, rev uint64, ttl time.Duration) (uint64, error) {
	opts := []natsjs.PublishOpt{natsjs.WithExpectLastSequencePerSubject(rev)}
	if ttl > 0 {
		opts = append(opts, natsjs.WithMsgTTL(ttl))
	}
	ack, err := v.js.PublishMsg(ctx, &nats.Msg{Subject: keySubject(key), Data: value}, opts...)
	if stream.WrongLastSequence(err) {
		return 0, fmt.Errorf("%w: %w", err, natsjs.ErrKeyRevisionMismatch)
	}
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// Remove implements app.View, finding the conversation's keys by a filter.
// The markers it leaves go after stream.ViewMarkerTTL.
func (v *View) Remove(ctx context.Context, tenant, id string) error {
	filter := tenant + ".*.*." + id
	keys, err := v.kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return fmt.Errorf("remove %s from %s: %w", filter, stream.ChatViewBucket, err)
	}
	defer func() { _ = keys.Stop() }()
	for k := range keys.Keys() {
		if err := v.kv.Purge(ctx, k, natsjs.PurgeTTL(stream.ViewMarkerTTL)); err != nil {
			return fmt.Errorf("remove %s from %s: %w", k, stream.ChatViewBucket, err)
		}
	}
	return nil
}

// Applied implements app.View.
func (v *View) Applied(ctx context.Context, seq uint64) error {
	if _, err := v.kv.Put(ctx, appliedKey, []byte(strconv.FormatUint(seq, 10))); err != nil {
		return fmt.Errorf("put %s in %s: %w", appliedKey, stream.ChatViewBucket, err)
	}
	return nil
}
