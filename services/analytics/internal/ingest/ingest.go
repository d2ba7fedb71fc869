// Package ingest moves facts from the ANALYTICS stream into the store, in
// batches of up to MaxBatch facts or MaxDelay, whichever comes first; a
// batch of MinIdleBatch facts or more goes sooner when no fact has come for
// IdleDelay, it holds the last fact the stream has for the consumer (none
// pending in the stream, none delivered and not read yet) and nothing
// waits to be inserted: at the end of a backlog.
//
// It reads ANALYTICS through the batch mode of the Watermill subscriber
// (pkg/watermilljs), with no message of its own for each fact and one
// acknowledgement for each batch: a fact is acked only after the batch
// holding it, and every batch before, was inserted. While the store fails,
// the batch is held and retried, and nothing more is inserted until the
// store answers again, so facts wait in the stream (within its MaxAge) and
// none is lost. What was read and not acked when the ingester stops is
// delivered again to the next; redelivered facts are inserted again and
// counted once by the store (one row per fact id). The consumer has one
// reader: Parley runs one analytics instance.
//
// Erasure requests stored in the stream (analyticsapi.KindErasure) keep
// stream order: the batch before one is inserted first, no later one
// inserts the pseudonym's facts, and nothing after it is acked before its
// rows are deleted. The requests already waiting when the ingester starts
// refuse their pseudonyms from the start: none of their facts in the
// backlog, before the request or after, is inserted (should reading them
// fail, each is performed as any other when reached).
package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	json "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/pkg/watermilljs"
)

// Durable is the name of the consumer of ANALYTICS. It never changes.
const Durable = "analytics-clickhouse"

// Batching limits.
const (
	// MaxBatch is a batch's most facts, one insert. ClickHouse spends CPU
	// on each insert (a part written, merged later) on the same cores as
	// Parley in a small deployment: inserts of 20,000 took 5.1–5.6 µs of
	// its CPU a fact, of 10,000 6.9–8.7 µs, in a drain of 200,000. The
	// three batches held (read, queued, inserting) take about 400 bytes a
	// fact, 24 MB.
	MaxBatch = 20_000
	MaxDelay = time.Second
	// IdleDelay and MinIdleBatch make the last batch of a backlog go at
	// once rather than after MaxDelay (a second of a drain of a few
	// seconds), while a trickle of facts, never IdleDelay apart, or a few
	// now and then still make one insert a MaxDelay: ClickHouse wants few
	// inserts of many rows.
	IdleDelay    = 20 * time.Millisecond
	MinIdleBatch = 1000
)

const ackWait = time.Minute

// maxUnacked is how many messages may be delivered and not acked, in
// facts at least as many: a deletion of ClickHouse 18.16 took 0.3–2.5 s
// in a drain, 30,000–250,000 facts at 100,000 a second, and with the
// three batches of the ingester alone (then 30,000) the drain stood still
// until it ended.
const maxUnacked = 200_000

// prefetchBytes is how much the stream delivers ahead of the reader, in
// bytes: a message holds one fact or up to analyticsapi.MaxFactsPerMsg, so
// no count of messages bounds the memory held. 4 MiB is about 8,000 facts,
// enough to keep the reader busy while the client pulls more; what waits
// for the reader is at most about twice that (watermilljs's
// PrefetchBytes), and the pull waits meanwhile, however long the store
// holds the reader back.
const prefetchBytes = 4 << 20

// Store is where facts go.
type Store interface {
	// Insert stores facts in one batch; inserting a fact twice counts it
	// once. It does not keep facts, which are reused, after it returns.
	Insert(ctx context.Context, facts []analyticsapi.Fact) error
	// Erase deletes the rows of erased pseudonyms, all at once, and
	// returns how many facts it deleted for each, in the order given.
	Erase(ctx context.Context, erased []analyticsapi.EraseArgs) ([]int64, error)
}

// Ingester runs the consumer. Erase may be called concurrently with Run.
type Ingester struct {
	js  jetstream.JetStream
	log *slog.Logger
	// store returns the store once it is usable, waiting for it; it
	// fails only when ctx ends.
	store func(ctx context.Context) (Store, error)
	// recover is called after the store failed, before it is used again.
	recover func(ctx context.Context)
	// maxDelay is MaxDelay; a test makes it longer than itself to see
	// the idle flush alone.
	maxDelay time.Duration
	// ingested is told how many facts each batch stored held, those of
	// erased pseudonyms left out included.
	ingested func(facts int)

	// mu orders inserts and erasures: an erasure marks its pseudonym under
	// mu, so a batch inserted after that has the pseudonym's facts removed,
	// and one inserted before is deleted by the erasure.
	mu     sync.Mutex
	erased map[pseudonymKey]bool

	// eraseMu serializes erasures, and deleted counts the facts each
	// pseudonym's erasures deleted: an erasure arrives twice (stored in the
	// stream, and called over the bus), and whichever runs second finds
	// nothing left but must report the same count.
	eraseMu sync.Mutex
	deleted map[pseudonymKey]int64
}

// New returns an ingester reading through js. store waits for a usable
// store; recover is called after the store failed and returns once it
// answers again (or ctx ends); ingested, when not nil, is told how many
// facts each batch stored held, those of erased pseudonyms left out
// included.
func New(js jetstream.JetStream, log *slog.Logger, store func(context.Context) (Store, error), recover func(context.Context), ingested func(facts int)) *Ingester {
	if ingested == nil {
		ingested = func(int) {}
	}
	return &Ingester{js: js, log: log, store: store, recover: recover, maxDelay: MaxDelay, ingested: ingested, erased: make(map[pseudonymKey]bool), deleted: make(map[pseudonymKey]int64)}
}

// MarkErased refuses the pseudonym's facts from now on: a fact whose
// visitor or agent it is never reaches the store.
func (in *Ingester) MarkErased(tenant, pseudonym string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.erased[pseudonymKey{tenant, pseudonym}] = true
}

// pseudonymKey is a tenant's pseudonym: a struct, not the two joined, so
// that looking up each fact's visitor and agent allocates nothing.
type pseudonymKey struct{ tenant, pseudonym string }

// Erase refuses the pseudonym's facts from now on, then deletes its rows.
// It returns every fact deleted for the pseudonym since this process
// started, whichever of its erasures deleted them.
func (in *Ingester) Erase(ctx context.Context, st Store, tenant, pseudonym string) (int64, error) {
	in.MarkErased(tenant, pseudonym)
	n, err := in.erase(ctx, st, []analyticsapi.EraseArgs{{Tenant: tenant, Pseudonym: pseudonym}})
	if err != nil {
		return 0, err
	}
	return n[0], nil
}

// erase deletes the rows of pseudonyms already marked erased in one
// deletion of the store, and returns for each every fact deleted for it
// since this process started.
func (in *Ingester) erase(ctx context.Context, st Store, erased []analyticsapi.EraseArgs) ([]int64, error) {
	in.eraseMu.Lock()
	defer in.eraseMu.Unlock()
	n, err := st.Erase(ctx, erased)
	if err != nil {
		return nil, err
	}
	for i, e := range erased {
		k := pseudonymKey{e.Tenant, e.Pseudonym}
		in.deleted[k] += n[i]
		n[i] = in.deleted[k]
	}
	return n, nil
}

// Run consumes until ctx is done, then returns nil. health hears of each
// failure of the consumer (the ANALYTICS stream missing, the consumer lost
// and not made again yet) and nil once it works; Run returns the error
// once the consumer has kept failing for giveUp (0: never gives up). A
// failing store is no failure of the consumer: Run holds the batch and
// waits for it.
//
// One goroutine reads and decodes facts into batches while another inserts
// the batch before, in order, so that decoding and ClickHouse's work
// overlap.
func (in *Ingester) Run(ctx context.Context, giveUp time.Duration, health func(error)) error {
	// Nothing is read before there is a store to write to (none at all
	// when Parley runs without ClickHouse): facts read and held would come
	// back only after the ack wait, behind later ones.
	if _, err := in.store(ctx); err != nil {
		return nil
	}
	sub, err := watermilljs.NewSubscriber(in.js, watermilljs.SubscriberConfig{
		Stream:        stream.Analytics,
		Durable:       func(string) string { return Durable },
		AckWait:       ackWait,
		PrefetchBytes: prefetchBytes,
		// What the consumer may have delivered and not acknowledged, in
		// messages: acks wait for an erasure's deletion while later
		// batches go in (see write), so this bounds how far the drain
		// goes on meanwhile. Unacked messages cost the server a pending
		// entry each, not this process any memory: their batches are
		// reused once inserted, and prefetchBytes bounds what waits.
		MaxInFlight: maxUnacked,
		Log:         in.log,
		Health:      func(_ string, err error) { health(err) },
		GiveUp:      giveUp,
	})
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	defer sub.Close()
	// The stream (owned by the privacy service) may not be there yet: the
	// subscription waits for it, its health told, for giveUp at most.
	batches, err := sub.SubscribeBatches(ctx, analyticsapi.Subject("*", "*"))
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	in.log.Info("ingesting facts", "consumer", Durable)
	// The erasure requests waiting are looked for while the first batch
	// is read (the server walks the backlog to find them: 0.46 s for
	// 153,000 facts on a loaded machine), and found before it is inserted.
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		start := time.Now()
		n, err := in.markWaitingErasures(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			in.log.Warn("read the erasure requests waiting in the backlog; each is performed when reached", "err", err)
		case n > 0:
			in.log.Info("erasure requests waiting in the backlog", "requests", n, "took", time.Since(start))
		}
	}()
	jobs := make(chan job, 1)
	// free holds the batches inserted, to be filled again: the batch being
	// read, the one queued and the one being inserted.
	free := make(chan *batch, 3)
	written := make(chan struct{})
	go func() {
		defer close(written)
		<-scanned
		in.write(ctx, batches, jobs, free)
	}()
	defer func() {
		close(jobs)
		<-written
	}()
	b := newBatch()
	// due fires when the batch's oldest fact has waited MaxDelay; idle
	// when no fact has come for IdleDelay.
	due := time.NewTimer(in.maxDelay)
	due.Stop()
	idle := time.NewTimer(IdleDelay)
	idle.Stop()
	// next is an empty batch: one inserted, or a new one.
	next := func() *batch {
		select {
		case nb := <-free:
			return nb
		default:
			return newBatch()
		}
	}
	// send queues a job, handing the batch over first when it holds
	// messages.
	send := func(j job) bool {
		if b.read > 0 {
			due.Stop()
			select {
			case jobs <- job{batch: b}:
			case <-ctx.Done():
				return false
			}
			b = next()
		}
		if j.erase == nil {
			return true
		}
		select {
		case jobs <- j:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case msgs, open := <-batches.C():
			if !open {
				// The subscription gave up, or ctx ended.
				if err := sub.Err(); err != nil {
					return fmt.Errorf("ingest: %w", err)
				}
				return nil
			}
			for _, msg := range msgs {
				if erase := in.read(b, msg); erase != nil {
					// A copy of its own: the loop's variable, taken by
					// address, would be one allocation for every fact.
					req := msg
					if !send(job{erase: &req, args: *erase}) {
						return nil
					}
				}
				if b.read == 1 {
					due.Reset(in.maxDelay)
				}
				if len(b.facts) >= MaxBatch && !send(job{}) {
					return nil
				}
			}
			if len(b.facts) >= MinIdleBatch {
				idle.Reset(IdleDelay)
			}
		case <-due.C:
			if !send(job{}) {
				return nil
			}
		case <-idle.C:
			// Only into an empty queue: with a batch waiting, the store
			// is what holds the facts back, and this one may as well fill
			// meanwhile; it is looked at again after IdleDelay. Only once
			// the stream has no more: a pause in the delivery of a backlog
			// (a loaded machine's scheduler) would split its batches.
			if len(b.facts) < MinIdleBatch {
				continue
			}
			if !caughtUp(ctx, batches, b.last) {
				// The stream has more, or this process has and it is on its
				// way here, which comes and rearms this, or the server could
				// not tell (a loaded machine): look again, or the tail
				// would wait for MaxDelay.
				idle.Reset(IdleDelay)
				continue
			}
			select {
			case jobs <- job{batch: b}:
				due.Stop()
				b = next()
			default:
				idle.Reset(IdleDelay)
			}
		}
	}
}

// markWaitingErasures refuses at once the pseudonyms of the erasure
// requests stored after the consumer's acknowledgement floor: the facts
// of a backlog that come before a pseudonym's request are then left out
// of the inserts too, rather than inserted and deleted again by the
// request's deletion (a ClickHouse 18.16 mutation rewrites the table's
// parts, and held a drain's end for seconds; with no row of the pseudonym
// in the table the erasure deletes nothing). The requests are still
// performed in stream order, when the reader reaches each. Requests stored
// later are found there, as before. It returns how many requests it read.
func (in *Ingester) markWaitingErasures(ctx context.Context) (int, error) {
	var (
		from uint64
		read int
	)
	switch cons, err := in.js.Consumer(ctx, stream.Analytics, Durable); {
	case err == nil:
		from = cons.CachedInfo().AckFloor.Stream
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return read, fmt.Errorf("consumer %s: %w", Durable, err)
	}
	scan, done, err := stream.Reader(ctx, in.js, stream.Analytics, analyticsapi.Subject("*", analyticsapi.KindErasure), from+1, time.Minute)
	if err != nil {
		return read, fmt.Errorf("erasure requests after %d: %w", from, err)
	}
	// Best effort: the server removes it once idle otherwise.
	defer done()
	for pending := scan.CachedInfo().NumPending; pending > 0; {
		fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		batch, err := scan.Fetch(int(min(pending, 256)), jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			return read, fmt.Errorf("erasure requests after %d: %w", from, err)
		}
		before := read
		for m := range batch.Messages() {
			read++
			pending--
			if args, ok := parseErasure(m.Data()); ok {
				in.MarkErased(args.Tenant, args.Pseudonym)
			}
		}
		cancel()
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return read, fmt.Errorf("erasure requests after %d: %w", from, err)
		}
		if read == before {
			return read, nil // the rest expired meanwhile
		}
	}
	return read, nil
}

// caughtUp reports whether last, the latest message read, is the last
// the stream has for the consumer, asking the server; false when it cannot
// tell. The server's pending count alone is not enough: the facts it has
// delivered and not yet read (Prefetch, the next pull's) would be left for
// a batch of their own, below MinIdleBatch, waiting MaxDelay.
func caughtUp(ctx context.Context, batches *watermilljs.Batches, last watermilljs.Msg) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	ok, err := batches.CaughtUp(ctx, last)
	return err == nil && ok
}

// job is a batch to insert or an erasure request to perform.
type job struct {
	batch *batch
	erase *watermilljs.Msg
	args  analyticsapi.EraseArgs
}

// write performs jobs in order until jobs is closed or ctx ends, and
// hands each batch inserted to free. A batch the store fails is retried,
// once the store answers again, before any later one: the reader meanwhile
// fills the queue and stops, so nothing more is read, and the batch's
// facts stay unanswered rather than redelivered over and over. An erasure
// request marks its pseudonym erased at once, so that no later batch
// inserts its facts, and deletes the rows already inserted in the
// background while later batches go in: a deletion is a ClickHouse
// mutation, which can take longer than inserting a whole batch, and a
// drain's erasures had held its inserts back for as long. The requests
// read while a deletion runs wait and then go together, in one deletion:
// a mutation rewrites the table whatever it deletes, so a backlog's N
// requests cost one or two mutations, not N in turn. Acks keep stream
// order: nothing after an erasure request is acked before its deletion is
// done. What is left unanswered when ctx ends the stream delivers again to
// the next reader.
func (in *Ingester) write(ctx context.Context, batches *watermilljs.Batches, jobs <-chan job, free chan<- *batch) {
	var (
		erasing <-chan struct{}          // the deletion running, if any
		waiting []analyticsapi.EraseArgs // requests read since it began
		done    watermilljs.Msg          // the last message done
		owed    bool                     // done is not acked yet
	)
	defer func() {
		if erasing != nil {
			<-erasing // ends with ctx
		}
	}()
	ack := func() {
		if owed && erasing == nil {
			batches.Ack(done)
			owed = false
		}
	}
	// startErasing begins the deletion of what waits, when none runs.
	startErasing := func() {
		if erasing == nil && len(waiting) > 0 {
			erasing = in.eraseInBackground(ctx, waiting)
			waiting = nil
		}
	}
	for {
		select {
		case <-erasing:
			erasing = nil
			startErasing()
			ack()
		case j, open := <-jobs:
			if !open {
				return
			}
			if j.erase != nil {
				in.MarkErased(j.args.Tenant, j.args.Pseudonym)
				waiting = append(waiting, j.args)
				startErasing()
				done, owed = *j.erase, true
				continue
			}
			if !in.insert(ctx, j.batch) {
				return
			}
			done, owed = j.batch.last, true
			ack()
			j.batch.reset()
			select {
			case free <- j.batch:
			default:
			}
		}
	}
}

// insert inserts b, retrying once the store answers again; false means ctx
// ended first.
func (in *Ingester) insert(ctx context.Context, b *batch) bool {
	for ctx.Err() == nil {
		st, err := in.store(ctx)
		if err == nil && in.flush(ctx, st, b) {
			in.ingested(len(b.facts))
			return true
		}
		if ctx.Err() == nil {
			in.recover(ctx)
		}
	}
	return false
}

// eraseInBackground deletes the pseudonyms' rows, retrying once the store
// answers again, until it succeeds or ctx ends; the channel is closed then.
func (in *Ingester) eraseInBackground(ctx context.Context, erased []analyticsapi.EraseArgs) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			st, err := in.store(ctx)
			if err == nil {
				if _, err = in.erase(ctx, st, erased); err == nil {
					return
				}
				if ctx.Err() == nil {
					in.log.Warn("erase pseudonyms' rows, will retry", "pseudonyms", len(erased), "err", err)
				}
			}
			if ctx.Err() == nil {
				in.recover(ctx)
			}
		}
	}()
	return done
}

// batch is the facts read and not yet inserted. Its slices are reused
// from batch to batch.
type batch struct {
	facts []analyticsapi.Fact
	// read counts the messages read into the batch, malformed ones
	// included, and last is the last of them: its ack answers them all.
	read int
	last watermilljs.Msg
	// kept is facts without those of erased pseudonyms, when there are.
	kept []analyticsapi.Fact
	// rd and dec read KindFacts messages, reused.
	rd  bytes.Reader
	dec *jsontext.Decoder
}

func newBatch() *batch {
	// A batch goes once it holds MaxBatch facts: the message that fills it
	// may bring up to MaxFactsPerMsg more.
	b := &batch{facts: make([]analyticsapi.Fact, 0, MaxBatch+analyticsapi.MaxFactsPerMsg)}
	b.dec = jsontext.NewDecoder(&b.rd)
	return b
}

func (b *batch) reset() {
	clear(b.facts) // drop the strings of the facts inserted
	b.facts, b.read, b.last = b.facts[:0], 0, watermilljs.Msg{}
}

// parseErasure decodes an erasure request; false means it is malformed.
func parseErasure(payload []byte) (analyticsapi.EraseArgs, bool) {
	var args analyticsapi.EraseArgs
	err := json.Unmarshal(payload, &args)
	return args, err == nil && analyticsapi.ValidPseudonym(args.Pseudonym)
}

// read takes msg's fact into b, or returns the erasure msg requests. A
// malformed message is logged and left out; the batch's ack answers it.
func (in *Ingester) read(b *batch, msg watermilljs.Msg) *analyticsapi.EraseArgs {
	tenant, kind, _ := analyticsapi.ParseSubject(msg.Subject)
	if kind == analyticsapi.KindErasure {
		args, ok := parseErasure(msg.Payload)
		if !ok {
			in.log.Warn("drop malformed erasure request", "stream_seq", msg.Sequence)
			b.read++
			b.last = msg
			return nil
		}
		return &args
	}
	b.read++
	b.last = msg
	n := len(b.facts)
	var err error
	if kind == analyticsapi.KindFacts {
		err = b.readFacts(msg.Payload, tenant)
	} else {
		err = b.readFact(msg.Payload, tenant)
	}
	if err != nil {
		in.log.Warn("drop malformed facts", "kind", kind, "stream_seq", msg.Sequence, "err", err)
		clear(b.facts[n:])
		b.facts = b.facts[:n]
	}
	return nil
}

// readFacts appends the facts of a KindFacts message of tenant to b, or
// fails.
func (b *batch) readFacts(payload []byte, tenant string) error {
	b.rd.Reset(payload)
	b.dec.Reset(&b.rd)
	if tok, err := b.dec.ReadToken(); err != nil || tok.Kind() != '[' {
		return errors.New("not an array")
	}
	for b.dec.PeekKind() != ']' {
		if err := b.readFactFrom(tenant, func(f *analyticsapi.Fact) error { return json.UnmarshalDecode(b.dec, f) }); err != nil {
			return err
		}
	}
	_, err := b.dec.ReadToken()
	return err
}

// readFact appends the one fact of a message of tenant to b, or fails:
// how facts were written before KindFacts.
func (b *batch) readFact(payload []byte, tenant string) error {
	return b.readFactFrom(tenant, func(f *analyticsapi.Fact) error { return json.Unmarshal(payload, f) })
}

// readFactFrom appends a fact that decode fills to b, and checks it is a
// fact of tenant.
//
// go-json-experiment, the future encoding/json/v2, decodes a fact in a
// quarter of encoding/json's time: it was most of the ingest's CPU.
func (b *batch) readFactFrom(tenant string, decode func(*analyticsapi.Fact) error) error {
	b.facts = append(b.facts, analyticsapi.Fact{})
	f := &b.facts[len(b.facts)-1]
	if err := decode(f); err != nil {
		return err
	}
	if f.ID == "" || f.Tenant != tenant {
		return errors.New("a fact without an id, or of another tenant")
	}
	return nil
}

// flush inserts the batch, without the facts of erased pseudonyms; false
// means the insert failed and the batch is left as it is.
func (in *Ingester) flush(ctx context.Context, st Store, b *batch) bool {
	in.mu.Lock()
	facts := b.facts
	if len(in.erased) > 0 {
		b.kept = b.kept[:0]
		for _, f := range b.facts {
			if !in.erased[pseudonymKey{f.Tenant, f.Visitor}] && !in.erased[pseudonymKey{f.Tenant, f.Agent}] {
				b.kept = append(b.kept, f)
			}
		}
		facts = b.kept
	}
	err := st.Insert(ctx, facts)
	in.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			in.log.Warn("insert facts, will retry", "facts", len(facts), "err", err)
		}
		return false
	}
	return true
}
