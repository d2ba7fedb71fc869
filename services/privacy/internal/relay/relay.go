// Package relay is the privacy service's consent-gated, pseudonymizing relay
// from the CHAT stream to the ANALYTICS stream.
//
// It follows CHAT with a durable pull consumer (Durable) and turns each
// conversation event into content-free facts (analyticsapi.Fact): no text,
// no raw id, no network data; every id is an HMAC under the pseudonym key of
// the visitor (or, for an agent, of the agent). A fact is written only when
// the visitor's analytics consent held at the time of its event, as the
// privacy service's consent history tells. An erased visitor's events cannot
// be opened any more and yield nothing.
//
// The consumer is a JetStream pull consumer with explicit acks. The relay
// works in batches: it takes every event delivered so far, publishes every
// fact asynchronously, waits for the stream's acks, then acks the events.
// One long-lived pull subscription (Consume) keeps up to a batch of events
// requested ahead, so no pull request, inbox or subscription is made per
// batch, which matters when events come one at a time. Should the
// subscription end (its consumer deleted) or its heartbeats stop (a server
// came back without the consumer), the relay naks what it pulled ahead,
// creates the consumer again and follows it. An event is acked only after
// its facts are stored; a transient failure naks it for redelivery, and
// so does the relay's stop while it waits for the store. The
// facts of a batch go out together, a message (analyticsapi.KindFacts) for
// each tenant's MaxFactsPerMsg, or fewer within the bus's payload limit,
// whose Nats-Msg-Id is derived from their fact ids (event id and kind): a
// batch relayed again as it was is dropped by ANALYTICS as a duplicate,
// and a fact relayed again in another batch is counted once by the
// analytics store (one row per fact id).
//
// Several instances of the service share the consumer, and exactly one
// relays at a time: the consumer is a pinned-client priority group
// (PriorityPolicyPinned, group Group), so JetStream delivers to one pull
// subscription only, and hands the pin to another instance's once the
// pinned one has sent no pull for the pin TTL (it died, or lost the
// server), or at once when it stops and unpins itself. A relay that
// stops also has the server drop the pulls it left waiting, pinned or
// not: else the next event could pin one of them, which no instance
// receives, and facts would wait for the pin TTL. Every event
// delivered under a pin carries the pin's id (header Nats-Pin-Id): when
// it differs from the last one the relay saw, the relay may have missed
// events another instance relayed meanwhile, so it forgets the expiries it
// scheduled (below). A fact is a function of its event alone, whichever
// instance derives it, and a repeat has the same fact id.
//
// The relay also schedules the erasure of conversations erased after they
// close (see internal/ephemeral): when it relays the event that closes one,
// it stores the schedule in SCHEDULES, acked with the event's facts, and
// whatever the visitor's consent, since the erasure is no analytics. The
// delay comes from the conversation's opening event.
//
// And the relay keeps the keys of visitors with nothing left from
// outliving their data (see ephemeral.Expiry): every event stored with a
// Nats-TTL pushes the expiry of its visitor's keys out to when it expires,
// plus a grace, by a schedule in SCHEDULES that replaces the visitor's one
// before. Not at every event: each schedule is one grace later than
// needed, and an event that expires before the last schedule the relay
// remembers storing fires needs none, so a visitor writing fast costs one
// schedule per grace.
//
// What a fact needs beyond its event — how long after the opening came the
// first answer by staff or the closing, who is assigned, when a closed
// conversation is erased — the chat service derived with its one fold of
// the conversation and stamped into the event's sealed payload
// (event.Stamp): the relay keeps no state of conversations and folds
// nothing. An event stored by a chat service of before stamps has none;
// for it the relay derives what it can from the event and, for a closing,
// from the conversation's opening, read by one direct get (the erasure
// schedule and the closed fact's seconds). What needs the whole history is
// lost for such events: a first_response fact for a first answer by
// staff, and the agent of closed and rated facts.
package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/retry"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/privacy/internal/app"
	"github.com/parley-chat/parley/services/privacy/internal/ephemeral"
	"github.com/parley-chat/parley/services/privacy/internal/keyring"
)

// Durable is the name of the relay's consumer of CHAT. It never changes: a
// new name would start over from the first event. A consumer made by a
// version without the priority group is updated in place, keeping where
// it stands: a version's pull without a group is served only while no
// instance holds the pin.
const Durable = "privacy-relay"

// Group is the consumer's one priority group.
const Group = "relay"

// PublishTimeout bounds the wait for the acknowledgement of a relayed
// message: the JetStream context given to New must fail an asynchronous
// publish after it (jetstream.WithPublishAsyncTimeout). Without, an ack
// lost while a server fails (one frozen and thawed, say) holds the relay
// for good, and every event it was handed stays unacknowledged. Below
// ackWait, so that the event is nak'd before it would come again.
const PublishTimeout = 10 * time.Second

// DefaultPinTTL is how long the consumer stays pinned to an instance that
// sends no pull before another instance takes over.
const DefaultPinTTL = 30 * time.Second

// pinHeader carries the pin's id on every event delivered to the pinned
// pull subscription.
const pinHeader = "Nats-Pin-Id"

const (
	// batchSize bounds the events handled between two rounds of acks, and
	// the events pulled ahead of them.
	batchSize = 500
	// ackWait is how long JetStream waits for an ack before redelivering.
	ackWait = 30 * time.Second
	// maxPullExpiry bounds how long one pull request waits on the
	// server; it is shorter with a short pin TTL (see pullExpiry).
	maxPullExpiry = 10 * time.Second
	// leaveTimeout bounds the handing over of the consumer at shutdown.
	leaveTimeout = 2 * time.Second
	// retryDelay is how long a nak'd event waits before it comes back.
	retryDelay = time.Second
	// catchUpMargin covers the time between a consent being stamped and
	// being stored, and clock differences between instances: events newer
	// than the last catch-up with PRIVACY minus this make the relay catch
	// up again before deciding.
	catchUpMargin = time.Second
	// maxExpiries bounds the visitors whose last scheduled expiry is
	// kept; beyond it some are dropped, and scheduled again at their next
	// event.
	maxExpiries = 100_000
)

// App is what the relay needs of the privacy service.
type App interface {
	// GetKeys returns a subject's keys (see app.App.GetKeys).
	GetKeys(ctx context.Context, tenant, subject string, create bool) (personkey.Keys, error)
	// AnalyticsConsentAt reports whether the subject consented to
	// analytics at that time.
	AnalyticsConsentAt(ctx context.Context, tenant, subject string, at time.Time) (bool, error)
	// CatchUp returns once every PRIVACY event stored before the call is
	// in the consent history.
	CatchUp(ctx context.Context) error
}

// Relay is the relay. Run it once.
type Relay struct {
	js  jetstream.JetStream
	app App
	log *slog.Logger
	now func() time.Time
	// pinTTL is the consumer's PinnedTTL.
	pinTTL time.Duration

	chat jetstream.Stream
	// pin is the pin id of the last event delivered, "" before any.
	pin string
	// pending, futures and batchFacts are reused from batch to batch.
	pending    []pending
	futures    []jetstream.PubAckFuture
	batchFacts []analyticsapi.Fact
	// expiries holds when the last expiry stored for a visitor fires.
	expiries map[visitorKey]time.Time
	// caughtUp is when the last catch-up with PRIVACY started: every
	// consent stored before it is known.
	caughtUp time.Time
}

type visitorKey struct{ tenant, visitor string }

// pending is an event of the batch in hand.
type pending struct {
	msg jetstream.Msg
	// futures[from:to] of the relay are the acks of its messages.
	from, to int
	failed   bool
	// facts is whether the event yielded facts: it waits for the batch's
	// messages of facts too.
	facts bool
	// expiry is the visitor whose expiry the event schedules, if any.
	expiry *visitorKey
}

// New returns a relay reading CHAT and writing ANALYTICS through js, whose
// asynchronous publishes time out after PublishTimeout. pinTTL
// is how long an instance that stopped pulling keeps the consumer before
// another takes over (0: DefaultPinTTL); every instance must use the same,
// or each start reconfigures the consumer.
func New(js jetstream.JetStream, app App, log *slog.Logger, pinTTL time.Duration) *Relay {
	if pinTTL <= 0 {
		pinTTL = DefaultPinTTL
	}
	return &Relay{js: js, app: app, log: log.With("component", "relay"), now: time.Now, pinTTL: pinTTL,
		expiries: make(map[visitorKey]time.Time)}
}

// pullExpiry is how long one pull request waits on the server: a third of
// the pin TTL at most, since an idle pinned subscription pulls again only
// when its request expires, and the pin lapses after pinTTL without one.
func (r *Relay) pullExpiry() time.Duration {
	return max(min(maxPullExpiry, r.pinTTL/3), time.Second)
}

// Run relays events until ctx is done, then returns nil. health hears of
// each failure of the consumer and nil once it works again; Run makes the
// consumer again after each failure, with backoff, waiting for the CHAT
// stream (owned by the chat service) to exist, and returns the error once
// it has kept failing for giveUp (0: never gives up).
func (r *Relay) Run(ctx context.Context, giveUp time.Duration, health func(error)) error {
	return retry.Keep(ctx, giveUp, health, func(ctx context.Context, working func()) error {
		cons, err := r.consumer(ctx)
		if err != nil {
			if !errors.Is(err, jetstream.ErrStreamNotFound) && ctx.Err() == nil {
				r.log.Warn("create relay consumer", "err", err)
			}
			return err
		}
		working()
		r.log.Info("relay running", "consumer", Durable)
		err = r.consume(ctx, cons)
		if ctx.Err() == nil {
			r.log.Warn("consume chat events, will retry", "err", err)
		}
		return err
	})
}

// errConsumeStopped is returned by consume when the pull subscription
// ends by itself: its consumer was deleted, or the connection closed.
var errConsumeStopped = errors.New("pull subscription stopped")

// consume relays the events of cons until ctx is done or the subscription
// ends. Each batch is every event
// delivered and not yet handled, up to batchSize, taken in delivery order
// once at least one is there.
func (r *Relay) consume(ctx context.Context, cons jetstream.Consumer) error {
	in := make(chan jetstream.Msg, batchSize)
	// lost carries a missed heartbeat: the pull subscription retries on
	// its own, forever, even when its consumer is gone (a server restarted
	// without it answers no pull), so the relay makes the consumer again.
	lost := make(chan error, 1)
	cc, err := cons.Consume(func(m jetstream.Msg) { in <- m },
		jetstream.PullPriorityGroup(Group),
		jetstream.PullMaxMessages(batchSize),
		// A heartbeat every pullExpiry/2: a lost consumer is noticed
		// within pullExpiry.
		jetstream.PullExpiry(r.pullExpiry()),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			switch {
			case errors.Is(err, jetstream.ErrNoHeartbeat):
				select {
				case lost <- err:
				default:
				}
			case errors.Is(err, jetstream.ErrPinIDMismatch):
				// The pin went to another instance; the subscription pulls
				// on without one, and waits for the pin to come back.
				r.log.Info("relay unpinned: another instance relays")
			default:
				r.log.Warn("pull chat events", "err", err)
			}
		}))
	if err != nil {
		return err
	}
	stopped := cc.Closed()
	defer func() {
		handBack(cc, in, stopped)
		r.leave(ctx)
	}()
	batch := make([]jetstream.Msg, 0, batchSize)
	for {
		select {
		case m := <-in:
			batch = append(batch, m)
		case <-stopped:
			return errConsumeStopped
		case err := <-lost:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	more:
		for len(batch) < batchSize {
			select {
			case m := <-in:
				batch = append(batch, m)
			default:
				break more
			}
		}
		r.process(ctx, batch)
		clear(batch)
		batch = batch[:0]
	}
}

// handBack ends the pull subscription and naks the events it pulled ahead,
// so that they come again at once rather than after ackWait. It drains the
// subscription rather than stopping it, so no event is delivered to it
// afterwards and lost until ackWait.
func handBack(cc jetstream.ConsumeContext, in <-chan jetstream.Msg, stopped <-chan struct{}) {
	// The drain ends once the server confirms the unsubscribe, or the
	// client's own flush timeout passes.
	cc.Drain()
	for {
		select {
		case m := <-in:
			_ = m.Nak()
		case <-stopped:
			for {
				select {
				case m := <-in:
					_ = m.Nak()
				default:
					return
				}
			}
		}
	}
}

// leave hands the consumer over to the next instance at once, once the
// pull subscription has drained.
//
// Its pulls may still wait on the server, and when no instance holds the
// pin the server pins the next event's pull before it checks that anyone
// receives it: pinned to this stopped subscription, the consumer would
// deliver to no instance for the pin TTL. Reading the consumer's info
// makes the server drop the waiting pulls nobody receives, as it counts
// them (NumWaiting). Then, when this instance holds the pin, it unpins, so
// that another relays without waiting for the pin TTL. A failure only
// leaves the pin to lapse.
func (r *Relay) leave(ctx context.Context) {
	if r.chat == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaveTimeout)
	defer cancel()
	cons, err := r.chat.Consumer(ctx, Durable)
	if err != nil || r.pin == "" {
		return
	}
	for _, g := range cons.CachedInfo().PriorityGroups {
		// Only its own pin: another instance's would be taken from it for
		// nothing.
		if g.Group == Group && g.PinnedClientID == r.pin {
			if err := r.chat.UnpinConsumer(ctx, Durable, Group); err != nil {
				r.log.Warn("unpin relay consumer", "err", err)
			}
		}
	}
}

// follow notes the pin under which m was delivered. A new pin means other
// instances may have relayed events since this one last did: the expiries
// it remembers scheduling may have been replaced, so they are forgotten.
func (r *Relay) follow(m jetstream.Msg) {
	pin := m.Headers().Get(pinHeader)
	if pin == r.pin {
		return
	}
	r.pin = pin
	clear(r.expiries)
	r.log.Info("relay pinned to this instance")
}

// consumer ensures the durable consumer.
func (r *Relay) consumer(ctx context.Context) (jetstream.Consumer, error) {
	chat, err := r.js.Stream(ctx, stream.Chat)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", stream.Chat, err)
	}
	r.chat = chat
	// An older version's "chat.>" is replaced by the update. Not by no
	// filter: a filter removed by an update left the consumer unwoken by
	// new messages (nats-server 2.15.2).
	cons, err := chat.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       Durable,
		FilterSubject: stream.ChatSubjects,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       ackWait,
		MaxAckPending: 4 * batchSize,
		// One instance relays at a time: see the package comment.
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PriorityGroups: []string{Group},
		PinnedTTL:      r.pinTTL,
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", Durable, err)
	}
	return cons, nil
}

// process relays a batch: the messages of every event and the batch's
// facts are published asynchronously, and each event is acked once all
// its messages and the facts are stored, or nak'd for redelivery; when
// ctx ends first, every event not acked yet is nak'd.
func (r *Relay) process(ctx context.Context, msgs []jetstream.Msg) {
	if err := r.catchUp(ctx, msgs); err != nil {
		r.log.Warn("catch up with consents", "err", err)
		for _, m := range msgs {
			_ = m.NakWithDelay(retryDelay)
		}
		return
	}
	out, futures, facts := r.pending[:0], r.futures[:0], r.batchFacts[:0]
	defer func() {
		// Hold no message, future or fact until the next batch.
		clear(out)
		clear(futures)
		clear(facts)
		r.pending, r.futures, r.batchFacts = out[:0], futures[:0], facts[:0]
	}()
	var outs []*nats.Msg
	for _, m := range msgs {
		r.follow(m)
		p := pending{msg: m, from: len(futures)}
		before := len(facts)
		var err error
		outs, facts, p.expiry, err = r.handle(ctx, m, outs[:0], facts)
		if err != nil {
			r.log.Warn("relay event, will retry", "err", err)
			p.failed = true
		}
		p.facts = len(facts) > before
		for _, o := range outs {
			fu, err := r.js.PublishMsgAsync(o)
			if err != nil {
				r.log.Warn("publish", "subject", o.Subject, "err", err)
				p.failed = true
				break
			}
			futures = append(futures, fu)
		}
		p.to = len(futures)
		out = append(out, p)
	}
	factsFrom := len(futures)
	futures, err := r.publishFacts(facts, futures)
	if err != nil {
		r.log.Warn("publish facts", "err", err)
	}
	factsFailed := err != nil
	stored := func(fus []jetstream.PubAckFuture) (ok, done bool) {
		ok = true
		for _, fu := range fus {
			select {
			case <-fu.Ok():
			case err := <-fu.Err():
				r.log.Warn("store relayed message", "subject", fu.Msg().Subject, "err", err)
				ok = false
			case <-ctx.Done():
				return false, false
			}
		}
		return ok, true
	}
	// cut hands back the events of a batch cut by the stop that are not
	// acked yet, so that they come again at once, to the next instance,
	// rather than after ackWait. Their facts already stored are stored
	// again then, and counted once.
	cut := func(rest []pending) {
		for _, p := range rest {
			_ = p.msg.Nak()
		}
	}
	ok, done := stored(futures[factsFrom:])
	if !done {
		cut(out)
		return
	}
	factsFailed = factsFailed || !ok
	for i, p := range out {
		ok, done := stored(futures[p.from:p.to])
		if !done {
			cut(out[i:])
			return
		}
		if !ok || p.facts && factsFailed {
			p.failed = true
		}
		if p.failed {
			if p.expiry != nil {
				// The schedule may not be stored: the event schedules it
				// again when it comes back.
				delete(r.expiries, *p.expiry)
			}
			_ = p.msg.NakWithDelay(retryDelay)
			continue
		}
		if err := p.msg.Ack(); err != nil {
			r.log.Warn("ack chat event", "err", err)
		}
	}
}

// catchUp makes sure the consent history holds every consent that could
// apply to an event in msgs.
//
// Every consent stored before the batch arrived must be known: a visitor
// who withdraws, then writes, must not be counted. It takes a question to
// the server asked after the batch arrived (app.CatchUp: PRIVACY's last
// sequence, then waiting for it to be applied). Nothing this process knows
// can answer instead: any instance of the service records consents, so
// the last one this instance wrote says nothing of the others', and what
// the history's consumer has delivered says nothing of what is stored
// and not yet delivered, since JetStream orders nothing across streams.
// Only a batch whose events are all older than the last catch-up, by more
// than catchUpMargin, skips it.
func (r *Relay) catchUp(ctx context.Context, msgs []jetstream.Msg) error {
	var newest time.Time
	for _, m := range msgs {
		if at, err := time.Parse(time.RFC3339Nano, m.Headers().Get(event.HeaderAt)); err == nil && at.After(newest) {
			newest = at
		}
	}
	if newest.Before(r.caughtUp.Add(-catchUpMargin)) {
		return nil
	}
	start := r.now()
	if err := r.app.CatchUp(ctx); err != nil {
		return err
	}
	r.caughtUp = start
	return nil
}

// publishFacts publishes facts asynchronously to ANALYTICS, messages of
// one tenant's facts (analyticsapi.KindFacts) in the order they came, and
// appends the acks to come to futures. It sorts facts by tenant. A message
// holds up to analyticsapi.MaxFactsPerMsg facts and fits the bus's payload
// limit, read from the connection at each call: a message the bus refuses
// as too large would be refused again at every redelivery of its events,
// and the relay would go round them for good. An error means some were not
// sent.
func (r *Relay) publishFacts(facts []analyticsapi.Fact, futures []jetstream.PubAckFuture) ([]jetstream.PubAckFuture, error) {
	slices.SortStableFunc(facts, func(a, b analyticsapi.Fact) int { return strings.Compare(a.Tenant, b.Tenant) })
	limit := int(r.js.Conn().MaxPayload()) - factsHeaderRoom
	for len(facts) > 0 {
		data, n, err := encodeFacts(facts, limit)
		if err != nil {
			return futures, err
		}
		m := nats.NewMsg(analyticsapi.Subject(facts[0].Tenant, analyticsapi.KindFacts))
		m.Header.Set(jetstream.MsgIDHeader, analyticsapi.FactsID(facts[:n]))
		m.Data = data
		fu, err := r.js.PublishMsgAsync(m)
		if err != nil {
			return futures, fmt.Errorf("publish %s: %w", m.Subject, err)
		}
		futures = append(futures, fu)
		facts = facts[n:]
	}
	return futures, nil
}

// factsHeaderRoom is what a facts message's headers (its Nats-Msg-Id) and
// their framing take of the payload limit, with room to spare.
const factsHeaderRoom = 512

// encodeFacts returns the JSON array of the first n of facts: those of the
// first's tenant, up to analyticsapi.MaxFactsPerMsg, fewer when their array
// would be over limit bytes; at least one, whatever its size. The array is
// encoded whole, as it nearly always fits: only one over the limit is
// encoded again, with as many fewer facts as it was too long.
func encodeFacts(facts []analyticsapi.Fact, limit int) ([]byte, int, error) {
	n := 1
	for n < len(facts) && n < analyticsapi.MaxFactsPerMsg && facts[n].Tenant == facts[0].Tenant {
		n++
	}
	for {
		data, err := json.Marshal(facts[:n])
		if err != nil {
			return nil, 0, fmt.Errorf("encode facts: %w", err)
		}
		if len(data) <= limit || n == 1 {
			return data, n, nil
		}
		n = max(1, min(n-1, n*limit/len(data)))
	}
}

// errSkip marks an event that yields nothing and is acked: not a Parley
// event, or one that can no longer be read.
var errSkip = errors.New("skip")

// handle appends the event in m's facts to facts, and to out the
// messages to store for it: the schedule of its conversation's erasure
// when it closes one that is erased after closing, and the schedule of
// its visitor's expiry when it pushes that out, with the visitor. An
// error means the event must come again; events that can never yield
// anything append nothing and return no error.
func (r *Relay) handle(ctx context.Context, m jetstream.Msg, out []*nats.Msg, facts []analyticsapi.Fact) ([]*nats.Msg, []analyticsapi.Fact, *visitorKey, error) {
	n, nf := len(out), len(facts)
	md, err := m.Metadata()
	if err != nil {
		return out, facts, nil, nil
	}
	e, err := event.Parse(m.Subject(), m.Headers(), m.Data())
	if err != nil {
		r.log.Warn("skip chat message that is not an event", "stream_seq", md.Sequence.Stream)
		return out, facts, nil, nil
	}
	schedule, its, err := r.facts(ctx, e)
	if errors.Is(err, errSkip) {
		return out, facts, nil, nil
	}
	if err != nil {
		return out[:n], facts[:nf], nil, err
	}
	if schedule != nil {
		out = append(out, schedule)
	}
	facts = append(facts, its...)
	// Last: once it is remembered, the schedule must go out with the rest.
	expiry, visitor, err := r.expiry(md.Timestamp, m.Headers(), e)
	if err != nil {
		return out[:n], facts[:nf], nil, err
	}
	if expiry != nil {
		out = append(out, expiry)
	}
	return out, facts, visitor, nil
}

// expiry returns the schedule of the expiry of e's visitor's keys, and the
// visitor, when e, stored at stored with header h, expires after the last
// schedule of theirs the relay remembers fires; nothing otherwise, or when
// e never expires.
func (r *Relay) expiry(stored time.Time, h nats.Header, e event.Envelope) (*nats.Msg, *visitorKey, error) {
	ttl, ok := ephemeral.TTL(h)
	if !ok || !stream.ValidToken(e.Tenant) || !stream.ValidToken(e.Person) {
		return nil, nil, nil
	}
	grace := ephemeral.Grace(ttl)
	at := stored.Add(ttl + grace)
	key := visitorKey{e.Tenant, e.Person}
	if !at.After(r.expiries[key]) {
		return nil, nil, nil
	}
	// A grace later than needed: the visitor's events of the next grace
	// need no schedule of their own.
	at = at.Add(grace)
	m, err := ephemeral.ExpirySchedule(ephemeral.Expiry{Tenant: e.Tenant, Visitor: e.Person}, at)
	if err != nil {
		return nil, nil, err
	}
	if len(r.expiries) >= maxExpiries {
		for k := range r.expiries {
			delete(r.expiries, k)
			if len(r.expiries) < maxExpiries*9/10 {
				break
			}
		}
	}
	r.expiries[key] = at
	return m, &key, nil
}

// visitorKeys returns the keys sealing e; errSkip when the visitor has
// none left (erased, or expired with their conversations).
func (r *Relay) visitorKeys(ctx context.Context, e event.Envelope) (personkey.Keys, error) {
	k, err := r.app.GetKeys(ctx, e.Tenant, e.Person, false)
	if err == nil {
		return k, nil
	}
	if errors.Is(err, keyring.ErrErased) || errors.Is(err, keyring.ErrNotFound) || invalid(err) {
		return personkey.Keys{}, errSkip
	}
	return personkey.Keys{}, err
}

// facts returns the facts of the event e when the visitor consented; and,
// whatever the consent, the scheduled erasure of the conversation when e
// closes one that is erased after closing.
func (r *Relay) facts(ctx context.Context, e event.Envelope) (*nats.Msg, []analyticsapi.Fact, error) {
	k, err := r.visitorKeys(ctx, e)
	if err != nil {
		return nil, nil, err
	}
	payload := event.NewPayload(e.Type)
	if payload == nil {
		return nil, nil, nil
	}
	// Only a closing yields something whatever the consent: opening
	// another event of a visitor who did not consent then would be a
	// decryption and a decoding for nothing, on every such post.
	consent, err := r.app.AnalyticsConsentAt(ctx, e.Tenant, e.Person, e.At)
	if err != nil {
		return nil, nil, err
	}
	if e.Type != event.ConversationClosed && !consent {
		return nil, nil, nil
	}
	if err := e.Open(k.Data, payload); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errSkip, err)
	}
	st := event.StampOf(payload)
	if st == nil {
		if st, err = r.unstamped(ctx, k, e); err != nil {
			return nil, nil, err
		}
	}
	var schedule *nats.Msg
	if e.Type == event.ConversationClosed && st.EraseAfterCloseSeconds > 0 {
		job := ephemeral.Job{Tenant: e.Tenant, Conversation: e.Aggregate, Visitor: e.Person}
		if schedule, err = ephemeral.Schedule(e.ID, job, e.At.Add(time.Duration(st.EraseAfterCloseSeconds)*time.Second)); err != nil {
			return nil, nil, err
		}
	}
	if !consent {
		return schedule, nil, nil
	}
	facts, err := r.factsOf(ctx, k, e, payload, st)
	return schedule, facts, err
}

// unstamped returns what the relay can know of the stamp of e, stored
// before the chat service stamped its events: for a closing, the seconds
// since the opening and the erasure delay, read from the conversation's
// opening event; nothing else (see the package comment).
func (r *Relay) unstamped(ctx context.Context, k personkey.Keys, e event.Envelope) (*event.Stamp, error) {
	st := &event.Stamp{}
	if e.Type != event.ConversationClosed {
		return st, nil
	}
	m, err := r.chat.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(stream.ChatSubject(e.Tenant, e.Aggregate)))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the opening of a conversation: %w", err)
	}
	first, err := event.Parse(m.Subject, m.Header, m.Data)
	var o event.Opened
	if err != nil || first.Type != event.ConversationOpened || first.Open(k.Data, &o) != nil {
		return st, nil
	}
	open := seconds(e.At.Sub(first.At))
	st.OpenSeconds = &open
	st.EraseAfterCloseSeconds = int((o.EraseAfterClose() + time.Second - 1) / time.Second)
	return st, nil
}

// factsOf returns the facts of e, whose payload is decoded and stamped
// with st, for a visitor who consented to analytics at the time. How each
// type counts: an opening is an opened fact and the visitor's message; a
// posting a message fact with its author's role ("bot" for a bot's, which
// is no agent: it names none, and is no first response); a closing a
// closed fact, a rating a rated one, each with the agent assigned (none
// for a bot's). An assignment, a withdrawal and a hand-off
// (chat.handed_off.v1) yield none, as does a type this relay does not
// know: event.NewPayload has no payload for it, so facts skips it before
// opening it.
func (r *Relay) factsOf(ctx context.Context, k personkey.Keys, e event.Envelope, payload any, st *event.Stamp) ([]analyticsapi.Fact, error) {
	var err error
	base := analyticsapi.Fact{
		Tenant:       e.Tenant,
		At:           e.At.UTC(),
		Conversation: analyticsapi.Pseudonym(k.Pseudonym, e.Aggregate),
		Visitor:      analyticsapi.Pseudonym(k.Pseudonym, e.Person),
	}
	fact := func(kind string) analyticsapi.Fact {
		f := base
		f.ID, f.Kind = analyticsapi.FactID(e.ID, kind), kind
		return f
	}
	var out []analyticsapi.Fact
	switch p := payload.(type) {
	case *event.Opened:
		msg := fact(analyticsapi.KindMessage)
		msg.Role, msg.Length = "visitor", analyticsapi.LengthBucket(utf8.RuneCountInString(p.Text))
		out = append(out, fact(analyticsapi.KindOpened), msg)
	case *event.Posted:
		msg := fact(analyticsapi.KindMessage)
		msg.Role, msg.Length = p.Author.Role, analyticsapi.LengthBucket(utf8.RuneCountInString(p.Text))
		if staff(p.Author) {
			if msg.Agent, err = r.agentPseudonym(ctx, e.Tenant, p.Author.ID); err != nil {
				return nil, err
			}
		}
		out = append(out, msg)
		if st.FirstResponseSeconds != nil {
			fr := fact(analyticsapi.KindFirstResponse)
			fr.Agent, fr.Value = msg.Agent, *st.FirstResponseSeconds
			out = append(out, fr)
		}
	case *event.Closed:
		if st.OpenSeconds != nil {
			cl := fact(analyticsapi.KindClosed)
			cl.Value = *st.OpenSeconds
			if cl.Agent, err = r.agentPseudonym(ctx, e.Tenant, st.Assignee); err != nil {
				return nil, err
			}
			out = append(out, cl)
		}
	case *event.Rated:
		rt := fact(analyticsapi.KindRated)
		rt.Value = float64(p.Score)
		if rt.Agent, err = r.agentPseudonym(ctx, e.Tenant, st.Assignee); err != nil {
			return nil, err
		}
		out = append(out, rt)
	}
	return out, nil
}

// invalid reports an id that can never have keys: retrying is pointless.
func invalid(err error) bool {
	var verr *app.ValidationError
	return errors.As(err, &verr)
}

// staff reports whether a is a member of the support organisation: not a
// visitor, nor a bot.
func staff(a event.Author) bool { return auth.Role(a.Role).Staff() }

func seconds(d time.Duration) float64 { return max(d.Seconds(), 0) }

// agentPseudonym returns the pseudonym of agent under their own key,
// creating the key when they have none yet; "" for no agent, a bot (no
// person, so no key of a person for it), or an agent who was erased.
func (r *Relay) agentPseudonym(ctx context.Context, tenant, agent string) (string, error) {
	if _, bot := event.BotOf(agent); agent == "" || bot {
		return "", nil
	}
	k, err := r.app.GetKeys(ctx, tenant, agent, true)
	switch {
	case err == nil:
	case errors.Is(err, keyring.ErrErased) || invalid(err):
		return "", nil
	default:
		return "", fmt.Errorf("agent keys: %w", err)
	}
	return analyticsapi.Pseudonym(k.Pseudonym, agent), nil
}
