// Package jetstream is the chat service's event store on the CHAT stream,
// written on nats.go's jetstream package: appends with an expected last
// subject sequence per conversation, reads of one conversation by batched
// direct get (a long one finished through a filtered consumer), and an
// ordered consumer that follows every conversation.
package jetstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/retry"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/chat/internal/app"
)

// Store is the event store. It is safe for concurrent use.
type Store struct {
	js     natsjs.JetStream
	stream natsjs.Stream
	log    *slog.Logger
	// replicated is a stream on several servers, whose replicas answer
	// direct gets with what they have applied (see Read).
	replicated bool
}

// Open creates the CHAT stream with the definition of o when missing and
// returns a Store on it. A stream that exists with another definition is
// used as it is, with a warning: the chat service may not reconfigure it
// (stream.Open).
func Open(ctx context.Context, js natsjs.JetStream, o stream.Options, log *slog.Logger) (*Store, error) {
	st, err := stream.Open(ctx, js, o, log, stream.Chat)
	if err != nil {
		return nil, err
	}
	return &Store{js: js, stream: st, log: log, replicated: st.CachedInfo().Config.Replicas > 1}, nil
}

// Append implements app.EventStore. The event id doubles as Nats-Msg-Id, so
// JetStream drops a retried append as a duplicate. A ttl above 0 becomes the
// message's Nats-TTL: JetStream removes the event that long after storing
// it (whole seconds; less than a second counts as one), and the stream's
// MaxAge still applies when it is shorter.
func (s *Store) Append(ctx context.Context, e event.Envelope, version uint64, ttl time.Duration) (uint64, error) {
	subject := stream.ChatSubject(e.Tenant, e.Aggregate)
	opts := []natsjs.PublishOpt{natsjs.WithExpectLastSequencePerSubject(version), natsjs.WithMsgID(e.ID)}
	if ttl > 0 {
		opts = append(opts, natsjs.WithMsgTTL(max(ttl.Truncate(time.Second), time.Second)))
	}
	ack, err := s.js.PublishMsg(ctx, e.Msg(subject), opts...)
	if err != nil {
		if wrongLastSequence(err) {
			return 0, fmt.Errorf("append to %s after %d: %w", subject, version, app.ErrStale)
		}
		return 0, fmt.Errorf("append to %s: %w", subject, err)
	}
	if ack.Duplicate {
		return s.duplicate(ctx, subject, e, ack.Sequence)
	}
	return ack.Sequence, nil
}

// duplicate tells what an append of e to subject met that JetStream dropped
// as a duplicate of the event at seq, which has e's id: a resend of e
// itself (the same sealed body, whose nonce is random) is stored at seq;
// another event of the id in the conversation, stored by a request that
// repeated e's, means the conversation moved on; one in another
// conversation is app.ErrDuplicateID. A replicated stream checks the id
// before the expected sequence, a single server after it, so either error
// can tell a repeated request. The event at seq is read from the leader,
// which acknowledged it: a replica behind it (one thawed after a freeze,
// say) would answer that it has none, and a request whose own first try
// was stored would be refused as reusing its key.
func (s *Store) duplicate(ctx context.Context, subject string, e event.Envelope, seq uint64) (uint64, error) {
	m, err := stream.Msg(ctx, s.js, stream.Chat, seq)
	if errors.Is(err, natsjs.ErrMsgNotFound) {
		// Removed since (expired, or erased): nothing to answer from.
		return 0, fmt.Errorf("append to %s: duplicate of removed sequence %d: %w", subject, seq, app.ErrDuplicateID)
	}
	if err != nil {
		return 0, fmt.Errorf("append to %s: read duplicate %d: %w", subject, seq, err)
	}
	switch {
	case m.Subject != subject:
		return 0, fmt.Errorf("append to %s: id of sequence %d: %w", subject, seq, app.ErrDuplicateID)
	case !bytes.Equal(m.Data, e.Body):
		return 0, fmt.Errorf("append to %s: id stored at %d: %w", subject, seq, app.ErrStale)
	}
	return seq, nil
}

// wrongLastSequence reports whether err is JetStream refusing an append
// because the subject moved past the expected sequence, or may have.
// Replicated streams answer with a code of their own for the same refusal.
func wrongLastSequence(err error) bool {
	var apiErr *natsjs.APIError
	return stream.WrongLastSequence(err) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrCodeDuplicateInProcess
}

// jsErrCodeDuplicateInProcess is a replicated stream refusing an append
// whose id an append not yet committed has: like a stale version, the
// writer catches up and decides again.
const jsErrCodeDuplicateInProcess natsjs.ErrorCode = 10158

// Last implements app.EventStore with the subject's last message as the
// stream's leader holds it: a replica may not have applied the last append
// yet, nor removed an expired message.
func (s *Store) Last(ctx context.Context, tenant, conversation string) (uint64, error) {
	subject := stream.ChatSubject(tenant, conversation)
	m, err := stream.LastMsg(ctx, s.js, stream.Chat, subject)
	if errors.Is(err, natsjs.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("last of %s: %w", subject, err)
	}
	return m.Sequence, nil
}

// Head implements app.EventStore with the last sequence of the stream's
// state, which its leader answers. The last message of the conversations'
// subjects would spare Next when it was removed, but the server finds it by
// a scan of every subject's state: an inbox page took 0.6 ms more at p50
// with 10,000 open conversations, against 0.1 ms for the state.
func (s *Store) Head(ctx context.Context) (uint64, error) {
	info, err := s.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("head of %s: %w", stream.Chat, err)
	}
	return info.State.LastSeq, nil
}

// Next implements app.EventStore with the next message of the
// conversations' subjects as the stream's leader holds it.
func (s *Store) Next(ctx context.Context, after uint64) (uint64, error) {
	m, err := stream.NextMsg(ctx, s.js, stream.Chat, stream.ChatSubjects, after+1)
	if errors.Is(err, natsjs.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("next of %s after %d: %w", stream.Chat, after, err)
	}
	return m.Sequence, nil
}

// Delete implements app.EventStore with JetStream's secure delete, which
// overwrites the message's bytes in the store files; a plain delete would
// leave them there until the block is compacted.
func (s *Store) Delete(ctx context.Context, seq uint64) error {
	return secureDelete(ctx, s.stream, seq)
}

// secureDelete secure-deletes the message at seq of st; one gone already is
// no error.
func secureDelete(ctx context.Context, st natsjs.Stream, seq uint64) error {
	err := st.SecureDeleteMsg(ctx, seq)
	if err == nil {
		return nil
	}
	// nats.go flattens the server's "not found" into text: whether the
	// message is gone is asked of the stream instead.
	if _, gerr := st.GetMsg(ctx, seq); errors.Is(gerr, natsjs.ErrMsgNotFound) {
		return nil
	}
	return fmt.Errorf("secure-delete %s sequence %d: %w", st.CachedInfo().Config.Name, seq, err)
}

// Load implements app.EventStore.
func (s *Store) Load(ctx context.Context, tenant, conversation string, after uint64) ([]app.Record, error) {
	var out []app.Record
	for {
		rs, more, err := s.Read(ctx, tenant, conversation, after, loadBatch)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
		if !more || len(rs) == 0 {
			return out, nil
		}
		after = rs[len(rs)-1].Seq
	}
}

// loadBatch is how many events Load asks for at a time: a writer that lost
// a race misses one or two, a conversation read whole a few hundred.
const loadBatch = 256

// readMaxBytes bounds what one Read holds, whatever the texts: the server
// stops a batch once it sent this much, so a batch is at most this and one
// event (64 KiB of text, sealed), a Read at most two batches.
const readMaxBytes = 1 << 20

// A Read of more than directBatch+consumerAbove events asks for directBatch
// by direct get and then, when more than consumerAbove are left, takes the
// rest through a consumer, or else by a second direct get. The server
// builds each message of a direct get a set of headers, one header at a
// time, that the client then parses, and a consumer delivers the stored
// ones: each event of a direct get cost about 26 µs of CPU and 10 KB more
// than through a consumer (a 500-event transcript page on `parley all`,
// 9.3 against 7.7 ms with 64 events by direct get or none), and a consumer
// (created, fetched, deleted) costs a fixed step more, one of the meta
// leader's on a cluster, so only long reads take one. directBatch is a
// probe: enough for a short conversation in one round trip, few enough
// that a long one pays little for asking how many are left.
const (
	directBatch   = 8
	consumerAbove = 128
)

// Read implements app.EventStore with one batched direct get filtered to
// the conversation's subject (nats-server 2.11 or later), so a page of a
// transcript is one round trip however many other conversations share the
// stream; a long page asks for a few events first and reads the rest by a
// second direct get or, past consumerAbove, through a consumer filtered to
// the subject. more is the server's count of the events on the subject
// past the last one returned, as of the read.
func (s *Store) Read(ctx context.Context, tenant, conversation string, after uint64, limit int) ([]app.Record, bool, error) {
	subject := stream.ChatSubject(tenant, conversation)
	var pending uint64
	// Sized for the first batch, then for what the rest brings: not
	// doubled record by record through a page of 500.
	first := limit
	if limit > directBatch+consumerAbove {
		first = directBatch
	}
	out := make([]app.Record, 0, first)
	add := func(m *natsjs.RawStreamMsg, left uint64) error {
		r, err := record(m)
		if err != nil {
			return err
		}
		out = append(out, r)
		pending = left
		return nil
	}
	get := func(from uint64, n int) error {
		return stream.GetBatch(ctx, s.js, stream.Chat, stream.BatchRequest{Seq: from, NextFor: subject, Batch: n, MaxBytes: readMaxBytes},
			func(m *natsjs.RawStreamMsg) error {
				left, err := strconv.ParseUint(m.Header.Get(stream.PendingHeader), 10, 64)
				if err != nil {
					return fmt.Errorf("sequence %d: %s: %w", m.Sequence, stream.PendingHeader, err)
				}
				return add(m, left)
			})
	}
	if err := get(after+1, first); err != nil {
		return nil, false, fmt.Errorf("read %s after %d: %w", subject, after, err)
	}
	if len(out) == first && first < limit && pending > 0 {
		n := int(min(pending, uint64(limit-len(out))))
		from := out[len(out)-1].Seq + 1
		read := get
		if pending > consumerAbove {
			read = func(from uint64, n int) error { return s.consume(ctx, subject, from, n, add) }
		}
		out = slices.Grow(out, n)
		if err := read(from, n); err != nil {
			return nil, false, fmt.Errorf("read %s after %d: %w", subject, from-1, err)
		}
	}
	more := pending > 0
	if more || !s.replicated {
		return out, more, nil
	}
	// A replica may answer before it applied an event the leader already
	// acknowledged, to a writer on another instance: the leader's last
	// sequence of the subject tells, and it gives what the replica lacked.
	seen := after
	if len(out) > 0 {
		seen = out[len(out)-1].Seq
	}
	last, err := stream.LastMsg(ctx, s.js, stream.Chat, subject)
	if errors.Is(err, natsjs.ErrMsgNotFound) {
		return out, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s after %d: %w", subject, after, err)
	}
	for seen < last.Sequence && len(out) < limit {
		m, err := stream.NextMsg(ctx, s.js, stream.Chat, subject, seen+1)
		if err != nil {
			return nil, false, fmt.Errorf("read %s after %d: %w", subject, seen, err)
		}
		r, err := record(m)
		if err != nil {
			return nil, false, err
		}
		out = append(out, r)
		seen = m.Sequence
	}
	return out, seen < last.Sequence, nil
}

// consume calls add with up to n events of subject from sequence from on,
// read through an ephemeral consumer made for the call, each with how many
// are left past it. It waits for n events no more than consumeWait: one
// removed since the caller counted them leaves fewer, which is a short read,
// not an error.
func (s *Store) consume(ctx context.Context, subject string, from uint64, n int, add func(*natsjs.RawStreamMsg, uint64) error) error {
	c, done, err := stream.Reader(ctx, s.js, stream.Chat, subject, from, consumeWait+time.Minute)
	if err != nil {
		return fmt.Errorf("create a consumer: %w", err)
	}
	defer func() {
		// Not waited for: a delete the server refuses or loses leaves a
		// consumer it removes once inactive.
		if err := done(); err != nil {
			s.log.Warn("delete a reader's consumer", "err", err)
		}
	}()
	batch, err := c.Fetch(n, natsjs.FetchMaxBytes(readMaxBytes), natsjs.FetchMaxWait(consumeWait))
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	// One message reused for every event: add keeps none of it but what
	// it holds.
	var raw natsjs.RawStreamMsg
	for m := range batch.Messages() {
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("fetch: %w", err)
		}
		raw = natsjs.RawStreamMsg{Subject: m.Subject(), Sequence: md.Sequence.Stream, Header: m.Headers(), Data: m.Data(), Time: md.Timestamp}
		if err := add(&raw, md.NumPending); err != nil {
			return err
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, natsjs.ErrNoMessages) {
		return fmt.Errorf("fetch: %w", err)
	}
	return nil
}

// consumeWait is how long consume waits for events it was told are there.
const consumeWait = time.Second

func record(m *natsjs.RawStreamMsg) (app.Record, error) {
	e, err := event.Parse(m.Subject, m.Header, m.Data)
	if err != nil {
		return app.Record{}, fmt.Errorf("load sequence %d: %w", m.Sequence, err)
	}
	return app.Record{Seq: m.Sequence, Event: e, Expires: expires(m.Header, e.At)}, nil
}

// expires returns when an event written at at, with header h, expires by
// its Nats-TTL, the zero time when it has none. The store counts from when
// it stored the event, a moment after at: counting from at lets the read
// models drop the event no later than the store does, and gives every
// instance, and the writer that applied its own append, the same expiry
// (app.Service.appendEvent). The server reads the header as a Go duration
// or a number of seconds; what it would refuse is never stored.
func expires(h nats.Header, at time.Time) time.Time {
	v := h.Get(natsjs.MsgTTLHeader)
	if v == "" {
		return time.Time{}
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs <= 0 {
			return time.Time{}
		}
		d = time.Duration(secs) * time.Second
	}
	return at.Add(d.Truncate(time.Second))
}

// Follower is what Follow hands the stream's messages to, in stream order,
// from one goroutine; *app.Service is one.
type Follower interface {
	// Project applies one event. An error is transient: the same record is
	// handed over again after a pause.
	Project(context.Context, app.Record) error
	// Skip is told the sequence of a message that is no Parley event.
	Skip(seq uint64)
}

// Follow hands f every chat event from stream sequence from on, in stream
// order, then keeps following new ones until ctx is done, when it returns
// nil. It calls caughtUp once, when it handed over every event stored when
// it started. Records that are not Parley events are logged and skipped.
func (s *Store) Follow(ctx context.Context, from uint64, f Follower, caughtUp func()) error {
	cons, err := s.js.OrderedConsumer(ctx, stream.Chat, natsjs.OrderedConsumerConfig{
		FilterSubjects: []string{stream.ChatSubjects},
		DeliverPolicy:  natsjs.DeliverByStartSequencePolicy,
		OptStartSeq:    max(from, 1),
	})
	if ctx.Err() != nil {
		// Stopped while the consumer was being made: no failure.
		return nil
	}
	if err != nil {
		return fmt.Errorf("follow %s: %w", stream.Chat, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("follow %s: %w", stream.Chat, err)
	}
	defer it.Stop()
	// Next's context does not reach the consumer's recreation, which nats.go
	// retries without end after the server lost it (JetStream stopped, a
	// leader gone): Stop does, so that Run returns.
	defer context.AfterFunc(ctx, it.Stop)()
	// Pending as the consumer was created: events removed meanwhile never
	// come, so nothing waits for one.
	ready := cons.CachedInfo().NumPending == 0
	if ready {
		caughtUp()
	}
	next := []natsjs.NextOpt{natsjs.NextContext(ctx)} // made once, not for every event
	for {
		m, err := it.Next(next...)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("follow %s: %w", stream.Chat, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("follow %s: %w", stream.Chat, err)
		}
		e, err := event.Parse(m.Subject(), m.Headers(), m.Data())
		if err != nil {
			s.log.Warn("skip stored message", "stream_seq", md.Sequence.Stream, "err", err)
			f.Skip(md.Sequence.Stream)
		} else if r := (app.Record{Seq: md.Sequence.Stream, Event: e, Expires: expires(m.Headers(), e.At)}); f.Project(ctx, r) != nil {
			// Tried again at once, logged if it fails again: the retry's
			// machinery, a dozen allocations, only for the event that needs it.
			if err := s.Retry(ctx, "apply event", func(ctx context.Context) error { return f.Project(ctx, r) }, "stream_seq", r.Seq); err != nil {
				return nil // ctx is done
			}
		}
		if !ready && md.NumPending == 0 {
			ready = true
			caughtUp()
		}
	}
}

// Retry runs fn until it succeeds or ctx is done, when it returns ctx's
// error, waiting between tries as pkg/retry says. what names fn in the log,
// with attrs.
func (s *Store) Retry(ctx context.Context, what string, fn func(context.Context) error, attrs ...any) error {
	start := time.Now()
	_, err := retry.Until(ctx, 0, func(err error) {
		if rpc.CodeOf(err) == rpc.CodeUnavailable && time.Since(start) < retry.MaxInterval {
			// Expected for a moment while the privacy service starts beside
			// this one; a warning once it lasts.
			s.log.Info(what+": the key service does not answer yet, retrying", attrs...)
			return
		}
		s.log.Warn(what+", retrying", append(attrs, "err", err)...)
	}, func() (struct{}, error) { return struct{}{}, fn(ctx) })
	return err
}
