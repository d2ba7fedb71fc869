package watermilljs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/retry"
)

// SubscriberConfig says which stream a Subscriber follows and how.
type SubscriberConfig struct {
	// Stream is the stream holding the subjects subscribed to; required.
	Stream string
	// Durable names the durable consumer following a topic; required.
	// Subscribers of one name share its messages, and a restart resumes
	// where the last left off. A name must serve one topic only: a
	// subscription to another topic under the same name changes the
	// consumer's filter.
	Durable func(topic string) string
	// AckWait is how long JetStream waits for a delivered message's Ack or
	// Nack before it delivers it again; 0 means 30 seconds.
	AckWait time.Duration
	// NakDelay is how long JetStream waits before it delivers a Nacked
	// message again; 0 means at once.
	NakDelay time.Duration
	// Prefetch is how many messages a subscription pulls ahead of the one
	// being handled; 0 means 10. Each counts against AckWait from its
	// delivery, so it stays small for slow handlers.
	Prefetch int
	// PrefetchBytes, above 0, bounds a batch subscription by bytes
	// instead: it pulls ahead up to PrefetchBytes of messages rather than
	// Prefetch of them, and holds at most about twice that for its reader,
	// after which the pull waits until the reader takes what waits. For
	// messages whose sizes differ a thousandfold, which a count of
	// messages cannot bound.
	PrefetchBytes int
	// MaxInFlight is how many delivered messages may await their Ack or
	// Nack at once; 0 means 1, so that the next message is delivered only
	// after the last was answered, and an Ack returns once JetStream has
	// confirmed it. Above 1, a reader may hold many messages, to store
	// them in one batch, say: answers are passed on in delivery order, and
	// an Ack without waiting for JetStream's confirmation, so a lost Ack
	// means a redelivery.
	MaxInFlight int
	// Log receives what goes wrong in the background; nil discards it.
	Log *slog.Logger
	// Health, when set, hears of each failure of a topic's consumer (not
	// made as its subscription starts, or lost, and not made again yet)
	// and nil once it is made. A failure as a subscription starts is told
	// before Subscribe returns, so that a service is not ready until the
	// consumer exists.
	Health func(topic string, err error)
	// GiveUp is how long a consumer may keep failing to be made, as its
	// subscription starts or after it was lost, before its subscription
	// ends, closing its channel; Failed and Err then tell it. 0 means
	// never.
	GiveUp time.Duration
}

const (
	defaultAckWait  = 30 * time.Second
	defaultPrefetch = 10
	// ackTimeout bounds the wait for JetStream to confirm an Ack.
	ackTimeout = 5 * time.Second
	// pullExpiry is how long one pull request waits on the server.
	pullExpiry = 5 * time.Second
	// closeTimeout bounds Close's wait for subscriptions to end.
	closeTimeout = 10 * time.Second
	// jetStreamMaxAckPending is JetStream's default bound on a consumer's
	// messages delivered and not yet acknowledged.
	jetStreamMaxAckPending = 1000
)

// Subscriber delivers the messages of a JetStream stream as Watermill
// messages. Each subscription delivers messages in stream order, up to
// MaxInFlight of them awaiting their Ack or Nack. It is safe for
// concurrent use.
type Subscriber struct {
	js  jetstream.JetStream
	cfg SubscriberConfig

	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	subs    sync.WaitGroup
	err     error         // why the first subscription that ended by itself did
	failed  chan struct{} // closed with err set
}

var _ message.Subscriber = (*Subscriber)(nil)

// NewSubscriber returns a Subscriber following cfg.Stream through js. It
// fails when cfg names no stream or no Durable.
func NewSubscriber(js jetstream.JetStream, cfg SubscriberConfig) (*Subscriber, error) {
	switch {
	case cfg.Stream == "":
		return nil, errors.New("watermill subscriber: no stream")
	case cfg.Durable == nil:
		return nil, errors.New("watermill subscriber: no durable name")
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = defaultAckWait
	}
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = defaultPrefetch
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 1
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Subscriber{js: js, cfg: cfg, closing: make(chan struct{}), failed: make(chan struct{})}, nil
}

// Subscribe creates or updates the consumer of topic (a subject, possibly
// with wildcards) and delivers its messages on the returned channel, from
// the stream's first unacknowledged one, until ctx is done or the
// Subscriber is closed; then it closes the channel. It fails only when the
// Subscriber is closed; when ctx ends first, the channel is closed at once.
// A consumer that cannot be made (JetStream away, no such stream yet) or
// is lost later (deleted, the connection down) is made again in the
// background, with backoff and Health told, until GiveUp, and delivery
// goes on. A pull whose heartbeats come late while its consumer exists
// goes on with it: that is no loss.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	out := make(chan *message.Message)
	err := s.start(ctx, topic, s.consumer, func(cons jetstream.Consumer, failed error) { s.run(ctx, topic, cons, failed, out) }, func() { close(out) })
	if err != nil {
		return nil, err
	}
	return out, nil
}

// start makes topic's consumer with create and runs deliver on it in the
// background, then end. A consumer that cannot be made at once is made
// again in the background as a lost one is (keep): deliver gets nil and
// why, and Health hears it before start returns. A bus briefly away as a
// service starts is a failure to recover from, not one to end the service
// with. start fails only when s is closed; when ctx ends first, it calls
// end at once and returns nil.
func (s *Subscriber) start(ctx context.Context, topic string,
	create func(context.Context, string) (jetstream.Consumer, error),
	deliver func(cons jetstream.Consumer, failed error), end func(),
) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("subscribe: subscriber closed")
	}
	cons, err := create(ctx, topic)
	if err != nil && ctx.Err() != nil {
		s.mu.Unlock()
		// Ended before it began, as if just after: a Watermill router
		// would otherwise wait forever for a handler that never started.
		end()
		return nil
	}
	s.subs.Add(1)
	s.mu.Unlock()
	if err != nil {
		s.logRetry("subscribe, will try again", topic, err)
		s.health(topic, err)
	}
	go func() {
		defer s.subs.Done()
		defer end()
		deliver(cons, err)
	}()
	return nil
}

// logRetry logs a failure to make topic's consumer, to be tried again. A
// stream not there yet is routine while the service owning it starts too,
// and Health tells it anyway: it is no warning.
func (s *Subscriber) logRetry(msg, topic string, err error) {
	level := slog.LevelWarn
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		level = slog.LevelInfo
	}
	s.cfg.Log.Log(context.Background(), level, msg, "stream", s.cfg.Stream, "topic", topic, "err", err)
}

func (s *Subscriber) health(topic string, err error) {
	if s.cfg.Health != nil {
		s.cfg.Health(topic, err)
	}
}

// Failed is closed when a subscription ended by itself, having given up
// making its consumer; Err then says why.
func (s *Subscriber) Failed() <-chan struct{} { return s.failed }

// Err returns why a subscription ended by itself, or nil.
func (s *Subscriber) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Subscriber) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
		close(s.failed)
	}
}

// SubscribeInitialize makes topic's consumer, so that it holds every
// message published from now on.
func (s *Subscriber) SubscribeInitialize(topic string) error {
	_, err := s.consumer(context.Background(), topic)
	return err
}

// Close ends every subscription, waiting for them up to ten seconds; an
// unacknowledged message is delivered again. It does not close the NATS
// connection. It is safe to call more than once.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.subs.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(closeTimeout):
		return fmt.Errorf("close subscriber of %s: subscriptions still running after %s", s.cfg.Stream, closeTimeout)
	}
}

func (s *Subscriber) consumer(ctx context.Context, topic string) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		FilterSubject: topic,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       s.cfg.AckWait,
		Durable:       s.cfg.Durable(topic),
	}
	if n := s.cfg.MaxInFlight + s.cfg.Prefetch; n > jetStreamMaxAckPending {
		cfg.MaxAckPending = n
	}
	cons, err := s.js.CreateOrUpdateConsumer(ctx, s.cfg.Stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("consumer of %s on %s: %w", topic, s.cfg.Stream, err)
	}
	return cons, nil
}

// run delivers the messages of cons until ctx is done or s closes, making
// the consumer again when it is lost, or first when failed says why start
// could not.
func (s *Subscriber) run(ctx context.Context, topic string, cons jetstream.Consumer, failed error, out chan<- *message.Message) {
	ctx, cancel := s.untilClosed(ctx)
	defer cancel()
	// slots holds a token per message delivered and not yet answered,
	// across the subscription's pull iterators: one that fails is
	// replaced at once, while the reader still holds what it delivered.
	// The answers are passed on in delivery order.
	slots := make(chan struct{}, s.cfg.MaxInFlight)
	waiting := make(chan inFlight, s.cfg.MaxInFlight)
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		for f := range waiting {
			s.answer(ctx, f)
			<-slots
		}
	}()
	defer func() {
		close(waiting)
		<-answered
	}()
	s.keep(ctx, topic, cons, failed, s.consumer, func(ctx context.Context, cons jetstream.Consumer) error {
		return s.pull(ctx, cons, out, slots, waiting)
	})
}

// untilClosed is ctx, ended also when s closes.
func (s *Subscriber) untilClosed(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// keep runs session on topic's consumer until ctx is done, making the
// consumer again with create, with backoff, whenever a session ends by
// itself, and first, after the first wait, when failed says why it could
// not be made as the subscription started (cons is then nil); after
// GiveUp of failures, the Subscriber fails.
func (s *Subscriber) keep(ctx context.Context, topic string, cons jetstream.Consumer, failed error,
	create func(context.Context, string) (jetstream.Consumer, error),
	session func(context.Context, jetstream.Consumer) error,
) {
	health := func(err error) { s.health(topic, err) }
	err := retry.Keep(ctx, s.cfg.GiveUp, health, func(ctx context.Context, working func()) error {
		if failed != nil {
			// Told and logged by start: Keep waits before the next try.
			err := failed
			failed = nil
			return err
		}
		if cons == nil {
			var err error
			if cons, err = create(ctx, topic); err != nil {
				if ctx.Err() == nil {
					s.logRetry("resubscribe", topic, err)
				}
				return err
			}
		}
		working()
		err := session(ctx, cons)
		cons = nil
		if ctx.Err() == nil {
			s.cfg.Log.Warn("consume, will resubscribe", "stream", s.cfg.Stream, "topic", topic, "err", err)
		}
		return err
	})
	if err != nil {
		s.fail(fmt.Errorf("subscription to %s on %s: %w", topic, s.cfg.Stream, err))
	}
}

// pull delivers the messages of cons until ctx is done or the consumer
// fails, and returns why. It takes a slot for each message it delivers and
// queues the message on waiting for its answer.
func (s *Subscriber) pull(ctx context.Context, cons jetstream.Consumer, out chan<- *message.Message, slots chan struct{}, waiting chan<- inFlight) error {
	// The iterator asks for more as messages are taken, but may miss its
	// turn while its last request is still being sent, and then only asks
	// again at the next heartbeat (half the expiry); a short expiry bounds
	// that pause.
	it, err := cons.Messages(jetstream.PullMaxMessages(s.cfg.Prefetch), jetstream.PullExpiry(pullExpiry))
	if err != nil {
		return err
	}
	// Drain, not Stop, when the subscription ends: Next then returns only
	// once the server has seen the unsubscribe, so no message goes on to a
	// subscription that is gone, and what was pulled ahead comes back here
	// to be Nacked for redelivery at once instead of after AckWait.
	stop := context.AfterFunc(ctx, it.Drain)
	defer stop()
	defer it.Stop()
	for {
		m, err := it.Next()
		if s.lateHeartbeat(ctx, cons, err) {
			// nats.go's Next returns it without stopping the iterator,
			// having zeroed what it counts as asked for: the next call
			// sends a new pull request, and what arrived still waits.
			continue
		}
		if err != nil {
			return err
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			s.nak(m, 0)
			continue
		}
		f, ok := s.message(ctx, m)
		if !ok {
			<-slots
			continue
		}
		select {
		case out <- f.msg:
			waiting <- f
		case <-ctx.Done():
			f.cancel()
			<-slots
			s.nak(m, 0)
		}
	}
}

// lateHeartbeat reports whether err is a pull's missed heartbeat while its
// consumer cons still exists: a heartbeat late on a busy machine, after
// which the pull asks again and goes on, not a consumer lost. A consumer
// gone (a server restarted without it answers no pull) shows only by its
// missed heartbeats, so it is false when the server cannot tell.
func (s *Subscriber) lateHeartbeat(ctx context.Context, cons jetstream.Consumer, err error) bool {
	if !errors.Is(err, jetstream.ErrNoHeartbeat) {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, ackTimeout)
	defer cancel()
	if _, err := cons.Info(ctx); err != nil {
		return false
	}
	s.cfg.Log.Debug("heartbeat late, consumer still there: the pull goes on", "stream", s.cfg.Stream, "consumer", cons.CachedInfo().Name)
	return true
}

// inFlight is a message delivered and awaiting its answer.
type inFlight struct {
	m   jetstream.Msg
	msg *message.Message
	// cancel ends msg's context once it is answered, as Watermill expects.
	cancel context.CancelFunc
}

// message is m as a Watermill message; false means m is no JetStream
// message, with nothing to deliver or answer.
func (s *Subscriber) message(ctx context.Context, m jetstream.Msg) (inFlight, bool) {
	md, err := m.Metadata()
	if err != nil {
		s.cfg.Log.Warn("drop message without JetStream metadata", "stream", s.cfg.Stream, "err", err)
		return inFlight{}, false
	}
	msg := message.NewMessage(uuidOf(m, md), m.Data())
	for k, vs := range m.Headers() {
		if len(vs) > 0 && k != UUIDHeader && !strings.HasPrefix(k, reservedPrefix) {
			msg.Metadata.Set(k, vs[0])
		}
	}
	mctx, cancel := context.WithCancel(ctx)
	msg.SetContext(withDelivery(mctx, Delivery{
		Subject:      m.Subject(),
		Stream:       md.Stream,
		Sequence:     md.Sequence.Stream,
		NumDelivered: md.NumDelivered,
	}))
	return inFlight{m: m, msg: msg, cancel: cancel}, true
}

// answer passes f's Ack or Nack on to JetStream; a message not answered
// when ctx ends is Nacked, so that it is delivered again at once.
func (s *Subscriber) answer(ctx context.Context, f inFlight) {
	defer f.cancel()
	select {
	case <-f.msg.Acked():
		s.ack(ctx, f.m)
	case <-f.msg.Nacked():
		s.nak(f.m, s.cfg.NakDelay)
	case <-ctx.Done():
		// An answer given just before the end still counts.
		select {
		case <-f.msg.Acked():
			s.ack(ctx, f.m)
		default:
			s.nak(f.m, 0)
		}
	}
}

func (s *Subscriber) ack(ctx context.Context, m jetstream.Msg) {
	var err error
	if s.cfg.MaxInFlight > 1 {
		err = m.Ack()
	} else {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
		defer cancel()
		err = m.DoubleAck(actx)
	}
	if err != nil {
		s.cfg.Log.Warn("ack", "stream", s.cfg.Stream, "err", err)
	}
}

func (s *Subscriber) nak(m jetstream.Msg, delay time.Duration) {
	var err error
	if delay > 0 {
		err = m.NakWithDelay(delay)
	} else {
		err = m.Nak()
	}
	if err != nil {
		s.cfg.Log.Warn("nak", "stream", s.cfg.Stream, "err", err)
	}
}

// uuidOf is the message's UUID, as Publish sets it; for a message stored
// otherwise, its place in the stream, the same on every delivery.
func uuidOf(m jetstream.Msg, md *jetstream.MsgMetadata) string {
	if id := m.Headers().Get(UUIDHeader); id != "" {
		return id
	}
	return md.Stream + "-" + strconv.FormatUint(md.Sequence.Stream, 10)
}
