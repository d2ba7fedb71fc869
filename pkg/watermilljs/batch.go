package watermilljs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Batch mode: SubscribeBatches follows a topic as Subscribe does — the
// same durable consumer naming, the same making again of a lost consumer,
// Health and GiveUp — for a reader that stores many messages at once, such
// as the analytics ingest of ANALYTICS into ClickHouse. A Watermill
// message per message delivered, with its channels, context and answer,
// and one acknowledgement per message were most of such a reader's CPU
// beside the decoding; neither Watermill nor its NATS adapter (whose
// JetStream subscriber also makes one message and one ack per message)
// offers batch consumption, so the batch mode is here, beside the
// Subscriber it shares its consumer handling with.
//
// Its consumer acknowledges cumulatively (JetStream's AckPolicy all):
// Ack(m) says m and every message delivered before it are done, with one
// acknowledgement. That is only right while nothing before m is still
// held unanswered elsewhere, so a batch subscription is the only reader of
// its consumer, and every session of it (its start, and each making again
// of a lost consumer) first resets the consumer to its acknowledgement
// floor: whatever was delivered and not acknowledged — held by a process
// that stopped, crashed or lost its connection — is delivered again, in
// stream order, before anything newer. A message is therefore
// acknowledged only after the reader finished it and every message before
// it, and delivery stays at least once, never dropped. Nothing is Nacked:
// what the reader has not answered when it stops comes back with the next
// session's reset. A session does not begin while another reader pulls
// from the consumer (ErrOtherReader): a second instance waits, as a
// standby, and gives up after GiveUp as for a lost consumer. That check
// and the reset after it are not one step, so two readers may still pull
// at once for a while; and nats.go's pull subscription goes on across a
// reconnect, where an answer to a pull can be lost on the way. Either way
// a delivery the session never sees would be acknowledged, unread, by the
// cumulative ack of a later one: a session takes each delivery only in
// the order of the consumer's delivery sequence, and ends at the first
// one missing (errDeliveryGap), so that the next session's reset delivers
// it again. A missing delivery shows by the next one; the last ones, with
// nothing after them, show by the consumer's count of deliveries, which a
// session compares with its own while nothing arrives (stuck). A
// session's acks end with it; should another reader's ack still cross a
// reset, the session sees the server ignore its own and ends (stuck).

// Msg is a message a batch subscription delivers: where it came from and
// its payload.
type Msg struct {
	Delivery
	Payload []byte

	m jetstream.Msg
	// session is the session that delivered m: an Ack of a message of an
	// earlier session is not passed on, since the reset that began the
	// current one delivers it again.
	session uint64
}

// Batches is a batch subscription. Its methods are safe for concurrent
// use.
type Batches struct {
	s     *Subscriber
	topic string
	c     chan []Msg

	mu      sync.Mutex
	session uint64
	// delivered is the consumer's delivery sequence of the session's last
	// message taken, or the one its reset left, when known: 0 is a known
	// sequence (a consumer reset before anything was acknowledged), whose
	// next delivery must be 1. gap is set once one was skipped, so that the
	// rest of the session is dropped with one warning, not one a message,
	// and none taken even if the missing one comes late.
	delivered uint64
	known     bool
	gap       bool
	// waiting counts the takes waiting for the reader to take what buf
	// holds (a late one of an ended session among them): deliveries then
	// wait in the pull subscription, not lost.
	waiting int
	buf     []Msg
	// bufBytes is the payload bytes in buf.
	bufBytes int
	// ready holds a token when buf has messages for c; taken, a token
	// when the reader took what buf held.
	ready, taken chan struct{}
	// forwarding is closed once nothing hands buf to the reader any more.
	forwarding chan struct{}
}

// SubscribeBatches creates or updates the consumer of topic for a batch
// subscription and delivers its messages on the channel C, in delivery
// order, each receive taking every message pulled so far, until ctx is
// done or the Subscriber is closed; then it closes C. The consumer holds
// at most MaxInFlight + Prefetch messages delivered and not acknowledged.
// A topic is followed either by Subscribe or by SubscribeBatches, never
// both: the consumers' acknowledgement policies differ. A consumer
// Subscribe made (acknowledging each message) is replaced by one starting
// after its acknowledgement floor. It fails as Subscribe does.
func (s *Subscriber) SubscribeBatches(ctx context.Context, topic string) (*Batches, error) {
	b := &Batches{s: s, topic: topic, c: make(chan []Msg), ready: make(chan struct{}, 1), taken: make(chan struct{}, 1), forwarding: make(chan struct{})}
	err := s.start(ctx, topic, s.batchConsumer, func(cons jetstream.Consumer, failed error) { b.run(ctx, cons, failed) }, func() { close(b.c) })
	if err != nil {
		return nil, err
	}
	return b, nil
}

// C delivers the messages, a slice at a time. A slice is the receiver's
// until its next receive, when it is filled again: what is kept longer is
// copied.
func (b *Batches) C() <-chan []Msg { return b.c }

// CaughtUp reports whether last, the latest message the reader received
// on C, is the last the consumer has to deliver when the server answers:
// nothing is left in the stream, and nothing the server delivered after
// last is still on its way to C. The consumer's pending count alone tells
// only the first: messages delivered may still wait in this process, up to
// Prefetch of them. It is false for a message of an earlier session, which
// the reset that began the current one delivers again, and fails when the
// server does not answer.
func (b *Batches) CaughtUp(ctx context.Context, last Msg) (bool, error) {
	cons, err := b.s.js.Consumer(ctx, b.s.cfg.Stream, b.s.cfg.Durable(b.topic))
	if err != nil {
		return false, fmt.Errorf("consumer of %s on %s: %w", b.topic, b.s.cfg.Stream, err)
	}
	info := cons.CachedInfo()
	b.mu.Lock()
	current := last.session == b.session
	b.mu.Unlock()
	return current && info.NumPending == 0 && last.Sequence >= info.Delivered.Stream, nil
}

// Ack acknowledges m and every message delivered before it. Messages must
// be acknowledged in delivery order: an Ack of a message before one
// already acknowledged does nothing. A lost Ack means a redelivery.
func (b *Batches) Ack(m Msg) {
	// Sent under the lock, so that no ack of a session leaves after the
	// session ended (pull).
	b.mu.Lock()
	defer b.mu.Unlock()
	if m.session != b.session {
		return
	}
	if err := m.m.Ack(); err != nil {
		b.s.cfg.Log.Warn("ack", "stream", b.s.cfg.Stream, "err", err)
	}
}

func (b *Batches) run(ctx context.Context, cons jetstream.Consumer, failed error) {
	ctx, cancel := b.s.untilClosed(ctx)
	defer cancel()
	go func() {
		defer close(b.forwarding)
		b.forward(ctx)
	}()
	defer func() {
		// keep also returns on giving up, with ctx still going: forward
		// stops only once ctx ends.
		cancel()
		<-b.forwarding
	}()
	b.s.keep(ctx, b.topic, cons, failed, b.s.batchConsumer, b.pull)
}

// forward hands what was pulled to the reader until ctx is done. Two
// slices take turns, so that none is allocated for each: the one the
// reader holds and the one being filled.
func (b *Batches) forward(ctx context.Context) {
	var held, free []Msg
	for {
		select {
		case <-b.ready:
		case <-ctx.Done():
			return
		}
		b.mu.Lock()
		if len(b.buf) == 0 {
			// The token of messages already handed over.
			b.mu.Unlock()
			continue
		}
		msgs := b.buf
		b.buf, b.bufBytes = free[:0], 0
		b.mu.Unlock()
		select {
		case b.c <- msgs:
		case <-ctx.Done():
			return
		}
		select {
		case b.taken <- struct{}{}:
		default:
		}
		// This receive ended the reader's hold on the slice before.
		free, held = held, msgs
		clear(free) // the messages' payloads may go
	}
}

// ErrOtherReader is why a batch subscription's session does not begin:
// another reader has pull requests waiting on the consumer.
var ErrOtherReader = errors.New("another reader pulls from the consumer")

// errDeliveryGap ends a session that missed a delivery: the consumer
// delivered a message that never reached the session (a pull's answer
// lost while the connection moved to another server, or taken by another
// reader), and a cumulative ack of anything after it would acknowledge it
// unread. The next session's reset delivers it again.
var errDeliveryGap = errors.New("a delivery of the consumer never arrived")

// errSessionStuck ends a session that can no longer finish what the
// consumer holds for it (stuck).
var errSessionStuck = errors.New("the consumer's deliveries or acks no longer reach the session")

// errConsumeStopped is returned when a pull subscription ends by itself:
// its consumer was deleted, or the connection closed.
var errConsumeStopped = errors.New("pull subscription stopped")

// pull is a session: it resets cons to its acknowledgement floor, then
// takes what cons delivers until ctx is done or the consumer is lost.
// The consumer's MaxAckPending bounds what is delivered and not
// acknowledged; with PrefetchBytes, what waits for the reader is bounded
// by bytes too (take).
func (b *Batches) pull(ctx context.Context, cons jetstream.Consumer) error {
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", cons.CachedInfo().Name, err)
	}
	if info.NumWaiting > 0 {
		// Its pull requests, or a crashed one's until they expire
		// (pullExpiry).
		return fmt.Errorf("consumer %s: %w: %d pull requests waiting", info.Name, ErrOtherReader, info.NumWaiting)
	}
	reset, err := b.s.js.ResetConsumer(ctx, info.Stream, info.Name)
	if err != nil {
		return fmt.Errorf("reset consumer %s: %w", info.Name, err)
	}
	b.mu.Lock()
	b.session++
	session := b.session
	b.delivered, b.known, b.gap = 0, false, false
	if reset.ConsumerInfo != nil {
		b.delivered, b.known = reset.ConsumerInfo.Delivered.Consumer, true
	}
	b.mu.Unlock()
	defer func() {
		// Its acks end with it, not with the next session's start: this
		// process may stand by for long while another reader resets the
		// consumer, and an ack of a delivery made before that reset would
		// move the acknowledgement floor past the other's deliveries.
		b.mu.Lock()
		if b.session == session {
			b.session++
		}
		b.mu.Unlock()
	}()
	lost := make(chan error, 1)
	var ahead jetstream.PullConsumeOpt = jetstream.PullMaxMessages(b.s.cfg.Prefetch)
	if b.s.cfg.PrefetchBytes > 0 {
		ahead = jetstream.PullMaxBytes(b.s.cfg.PrefetchBytes)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if !b.take(session, m) {
			select {
			case lost <- errDeliveryGap:
			default:
			}
		}
	},
		ahead,
		jetstream.PullExpiry(pullExpiry),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			// The pull subscription retries on its own, forever, even
			// when its consumer is gone (a server restarted without it
			// answers no pull): a missed heartbeat makes it again.
			if errors.Is(err, jetstream.ErrNoHeartbeat) || errors.Is(err, jetstream.ErrConsumerDeleted) {
				select {
				case lost <- err:
				default:
				}
			}
		}))
	if err != nil {
		return err
	}
	defer cc.Stop()
	check := time.NewTicker(checkEvery)
	defer check.Stop()
	var mark stuckMark
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-check.C:
			if b.stuck(ctx, cons, session, &mark) {
				return errSessionStuck
			}
		case err := <-lost:
			if b.s.lateHeartbeat(ctx, cons, err) {
				// The pull subscription asks again by itself, and what
				// was delivered stays delivered. A new session would
				// reset the consumer and deliver every unacknowledged
				// message again, up to MaxAckPending of them.
				continue
			}
			return err
		case <-cc.Closed():
			return errConsumeStopped
		}
	}
}

// checkEvery is how often a session asks the server whether its
// deliveries and acknowledgements still reach where they should (stuck).
const checkEvery = pullExpiry

// stuckMark is what a session saw at its last check that, seen again at
// the next, ends it.
type stuckMark struct {
	// taken is what the session had taken when the consumer reported
	// more delivered than that.
	taken    uint64
	tailSeen bool
	// ignored is set when the consumer reported acks pending with its
	// acknowledgement floor at its last delivery.
	ignored bool
}

// stuck reports whether the session can no longer finish what the
// consumer holds for it, seen at two checks in a row, so that the next
// session's reset begins afresh:
//   - the consumer delivered messages the session never took, and it took
//     nothing since: the last deliveries went to another pull (a stale
//     request of a reader whose session ended, which the server serves
//     until it learns the subscription is gone) or were lost on the way.
//     take sees a missing delivery only when a later one arrives; for the
//     stream's last ones none does.
//   - messages are pending with the consumer's acknowledgement floor at or
//     past its last delivery: the server drops each ack below that floor,
//     and those messages wait for AckWait's redeliveries to climb past it,
//     a few a minute. An ack of a delivery made before the reset that
//     began the session (another reader's, sent as this one began) moves
//     the floor past every delivery since; so does this session's own ack
//     of an AckWait redelivery of a message older than others pending (a
//     reader holding messages past AckWait).
//
// It is false while take waits for the reader, as the deliveries then wait
// in this process, and when the server does not answer.
func (b *Batches) stuck(ctx context.Context, cons jetstream.Consumer, session uint64, mark *stuckMark) bool {
	b.mu.Lock()
	taken, known, waiting := b.delivered, b.known, b.waiting
	current := session == b.session && !b.gap
	b.mu.Unlock()
	if !known || waiting > 0 || !current {
		*mark = stuckMark{}
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, ackTimeout)
	defer cancel()
	info, err := cons.Info(ctx)
	if err != nil {
		*mark = stuckMark{}
		return false
	}
	tail := info.Delivered.Consumer > taken
	ignored := info.NumAckPending > 0 && info.AckFloor.Consumer >= info.Delivered.Consumer
	switch {
	case tail && mark.tailSeen && mark.taken == taken:
		b.s.cfg.Log.Warn("deliveries never arrived: the session ends", "stream", b.s.cfg.Stream,
			"delivery_seq", info.Delivered.Consumer, "taken", taken)
		return true
	case ignored && mark.ignored:
		b.s.cfg.Log.Warn("acks pending below the acknowledgement floor: the session ends", "stream", b.s.cfg.Stream,
			"delivery_seq", info.Delivered.Consumer, "ack_floor", info.AckFloor.Consumer, "ack_pending", info.NumAckPending)
		return true
	}
	*mark = stuckMark{taken: taken, tailSeen: tail, ignored: ignored}
	return false
}

// take keeps m for the reader, unless a delivery before it in the session
// never arrived: then it drops m and every later message of the session,
// and returns false. Each delivery of a consumer, first or again, has the
// next delivery sequence, and with one reader every one comes here, in
// order, or the session ends. With PrefetchBytes, it first waits while
// twice that waits for the reader: the pull subscription then stops
// asking once PrefetchBytes more are delivered to it.
func (b *Batches) take(session uint64, m jetstream.Msg) bool {
	md, err := m.Metadata()
	if err != nil {
		b.s.cfg.Log.Warn("drop message without JetStream metadata", "stream", b.s.cfg.Stream, "err", err)
		return true
	}
	b.mu.Lock()
	for limit := 2 * b.s.cfg.PrefetchBytes; limit > 0 && b.bufBytes >= limit && session == b.session; {
		b.waiting++
		b.mu.Unlock()
		select {
		case <-b.taken:
		case <-b.forwarding:
			b.mu.Lock()
			b.waiting--
			b.mu.Unlock()
			return true
		}
		b.mu.Lock()
		b.waiting--
	}
	if session != b.session {
		// Late, of a session that ended: the reset of the one after
		// delivers it again.
		b.mu.Unlock()
		return true
	}
	if b.gap || b.known && md.Sequence.Consumer != b.delivered+1 {
		if !b.gap {
			b.s.cfg.Log.Warn("a delivery never arrived: the session ends", "stream", b.s.cfg.Stream,
				"delivery_seq", md.Sequence.Consumer, "want", b.delivered+1)
		}
		b.gap = true
		b.mu.Unlock()
		return false
	}
	b.delivered, b.known = md.Sequence.Consumer, true
	b.bufBytes += len(m.Data())
	b.buf = append(b.buf, Msg{
		Delivery: Delivery{Subject: m.Subject(), Stream: md.Stream, Sequence: md.Sequence.Stream, NumDelivered: md.NumDelivered},
		Payload:  m.Data(),
		m:        m,
		session:  session,
	})
	b.mu.Unlock()
	select {
	case b.ready <- struct{}{}:
	default:
	}
	return true
}

// batchConsumer creates or updates topic's consumer with cumulative
// acknowledgements. A consumer of another acknowledgement policy, which
// JetStream cannot change in place, is replaced by one starting after its
// acknowledgement floor: what it had delivered and not acknowledged is
// delivered again.
func (s *Subscriber) batchConsumer(ctx context.Context, topic string) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		FilterSubject: topic,
		AckPolicy:     jetstream.AckAllPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       s.cfg.AckWait,
		Durable:       s.cfg.Durable(topic),
		MaxAckPending: max(s.cfg.MaxInFlight+s.cfg.Prefetch, jetStreamMaxAckPending),
	}
	old, err := s.js.Consumer(ctx, s.cfg.Stream, cfg.Durable)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
	case err != nil:
		return nil, fmt.Errorf("consumer of %s on %s: %w", topic, s.cfg.Stream, err)
	case old.CachedInfo().Config.AckPolicy == cfg.AckPolicy:
		// Where it starts cannot change either; it is kept.
		cfg.DeliverPolicy, cfg.OptStartSeq = old.CachedInfo().Config.DeliverPolicy, old.CachedInfo().Config.OptStartSeq
	default:
		info := old.CachedInfo()
		if err := s.js.DeleteConsumer(ctx, s.cfg.Stream, cfg.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("replace consumer of %s on %s: %w", topic, s.cfg.Stream, err)
		}
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, info.AckFloor.Stream+1
		s.cfg.Log.Info("consumer replaced to acknowledge in batches", "stream", s.cfg.Stream, "consumer", cfg.Durable, "start_seq", cfg.OptStartSeq)
	}
	cons, err := s.js.CreateOrUpdateConsumer(ctx, s.cfg.Stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("consumer of %s on %s: %w", topic, s.cfg.Stream, err)
	}
	return cons, nil
}
