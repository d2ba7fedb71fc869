package ephemeral

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/retry"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/pkg/watermilljs"

	"github.com/parley-chat/parley/services/privacy/internal/app"
)

// Durable is the name of the Eraser's consumer of the erasures after
// close in SCHEDULES, and ExpireDurable of its consumer of the visitors'
// expiries. They never change: a new name would run every erasure or
// expiry still in the stream again.
const (
	Durable       = "privacy-erase-after-close"
	ExpireDurable = "privacy-expire-subject"
)

// PoisonSubject is where the Eraser parks a fired message it can never
// act on, an erasure after close or an expiry (a malformed body, ids that do not match its subject), in
// SCHEDULES, outside the consumer's filter. The copy keeps the body and
// says why in its header "reason_poisoned" (Watermill's
// middleware.ReasonForPoisonedKey), for an operator to look at.
const PoisonSubject = "schedule.poison.erase-conversation"

// handlerName and expireHandlerName name the Eraser's handlers in its
// router, and in the headers of what it parks.
const (
	handlerName       = "erase-after-close"
	expireHandlerName = "expire-subject"
)

const (
	// ackWait is how long JetStream waits for an erasure to be acked
	// before it delivers it again.
	ackWait = time.Minute
	// retryDelay is how long an erasure that failed after its retries
	// waits before JetStream delivers it again.
	retryDelay = 2 * time.Second
	// retries bound the retries in place of a failed erasure, the first
	// after retryInterval, each wait doubling up to retryMaxInterval.
	retries          = 3
	retryInterval    = 100 * time.Millisecond
	retryMaxInterval = time.Second
	// closeTimeout bounds the wait for an erasure under way at shutdown.
	closeTimeout = 10 * time.Second
	// callTimeout bounds a call to the chat service.
	callTimeout = 5 * time.Second
)

// errMalformed marks a fired message no retry can help: it is parked on
// PoisonSubject. Every other failure is transient.
var errMalformed = errors.New("malformed scheduled erasure")

func permanent(err error) bool { return errors.Is(err, errMalformed) }

// App is what the Eraser needs of the privacy service; *app.App is one.
type App interface {
	// AuditSystem writes an act of the system actor to the audit trail.
	AuditSystem(ctx context.Context, tenant, action, target string) error
	// EraseBySystem erases a subject on behalf of the system actor; it
	// returns app.ErrNotFound when the subject has nothing to erase.
	EraseBySystem(ctx context.Context, tenant, subject string) (privacyapi.Erasure, error)
	// ExpireSubject erases a subject whose data all expired by retention,
	// on behalf of the system; it returns app.ErrNotFound when the subject
	// has nothing to erase.
	ExpireSubject(ctx context.Context, tenant, subject string) (privacyapi.Erasure, error)
}

// Eraser runs the erasures that fire in SCHEDULES. Run it once.
type Eraser struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	app App
	log *slog.Logger

	chat      jetstream.Stream
	schedules jetstream.Stream
}

// NewEraser returns an Eraser reading SCHEDULES and erasing from CHAT
// through js, calling the chat service and broadcasting over nc.
func NewEraser(nc *nats.Conn, js jetstream.JetStream, a App, log *slog.Logger) *Eraser {
	return &Eraser{nc: nc, js: js, app: a, log: log.With("component", "erase-after-close")}
}

// Run erases conversations as their schedules fire until ctx is done, then
// returns nil. It waits for the CHAT stream (owned by the chat service) to
// exist; SCHEDULES must exist already. health hears, for each part of
// the Eraser, each failure and nil once it works again: the part
// "streams" for opening the streams and making the consumers at first,
// and each consumer, by its durable name, for making it as its
// subscription starts or again once lost. Each consumer is a part of its
// own so that one made does not say well for another that is not. Run
// returns an error when the Watermill router cannot run, or when the
// streams or a consumer have kept failing for giveUp (0: never gives up).
//
// Each fired message goes through a Watermill router: a panic becomes an
// error (middleware.Recoverer); a failed erasure is retried in place a few
// times with backoff (middleware.Retry), then Nacked, so that JetStream
// delivers it again after retryDelay, for as long as it takes; a message
// no retry can help is parked on PoisonSubject with the reason
// (middleware.PoisonQueue) and acknowledged, so it never holds up the
// erasures behind it.
func (e *Eraser) Run(ctx context.Context, giveUp time.Duration, health func(part string, err error)) error {
	sub, err := watermilljs.NewSubscriber(e.js, watermilljs.SubscriberConfig{
		Stream:   stream.Schedules,
		Durable:  durable,
		AckWait:  ackWait,
		NakDelay: retryDelay,
		Log:      e.log,
		Health:   func(topic string, err error) { health(durable(topic), err) },
		GiveUp:   giveUp,
	})
	if err != nil {
		return fmt.Errorf("erase after close: %w", err)
	}
	notify := func(err error) {
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			e.log.Warn("open scheduled erasures", "err", err)
		}
		health(streamsPart, err)
	}
	if _, err := retry.Until(ctx, giveUp, notify, func() (struct{}, error) { return struct{}{}, e.open(ctx, sub) }); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("erase after close: %w", err)
	}
	health(streamsPart, nil)
	// Watermill's own progress reports are debug detail here.
	logger := watermill.NewSlogLoggerWithLevelMapping(e.log, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: closeTimeout}, logger)
	if err != nil {
		return fmt.Errorf("erase after close: %w", err)
	}
	poison, err := middleware.PoisonQueueWithFilter(watermilljs.NewPublisher(e.js), PoisonSubject, permanent)
	if err != nil {
		return fmt.Errorf("erase after close: %w", err)
	}
	router.AddMiddleware(
		poison,
		middleware.Retry{
			MaxRetries:          retries,
			InitialInterval:     retryInterval,
			MaxInterval:         retryMaxInterval,
			Multiplier:          2,
			ShouldRetry:         func(p middleware.RetryParams) bool { return !permanent(p.Err) },
			ResetContextOnRetry: true,
		}.Middleware,
		middleware.Recoverer,
	)
	router.AddConsumerHandler(handlerName, firedFilter, sub, e.handle)
	router.AddConsumerHandler(expireHandlerName, expireFiredFilter, sub, e.handleExpiry)
	e.log.Info("erase after close running", "consumers", []string{Durable, ExpireDurable})
	// A subscription that gave up ends its handler only: stop the router
	// with it.
	routerCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sub.Failed():
			cancel()
		case <-routerCtx.Done():
		}
	}()
	// A router stopped as it starts fails to subscribe: no failure.
	if err := router.Run(routerCtx); err != nil && ctx.Err() == nil {
		return fmt.Errorf("erase after close: %w", err)
	}
	if err := sub.Err(); err != nil {
		return fmt.Errorf("erase after close: %w", err)
	}
	return nil
}

// streamsPart is the part of the Eraser's health that opens its streams.
const streamsPart = "streams"

// durable names the consumer of a topic of the Eraser's.
func durable(topic string) string {
	if topic == expireFiredFilter {
		return ExpireDurable
	}
	return Durable
}

// open opens both streams and makes the durable consumers.
func (e *Eraser) open(ctx context.Context, sub *watermilljs.Subscriber) error {
	var err error
	if e.chat == nil {
		if e.chat, err = e.js.Stream(ctx, stream.Chat); err != nil {
			return fmt.Errorf("open stream %s: %w", stream.Chat, err)
		}
	}
	if e.schedules == nil {
		if e.schedules, err = e.js.Stream(ctx, stream.Schedules); err != nil {
			return fmt.Errorf("open stream %s: %w", stream.Schedules, err)
		}
	}
	for _, topic := range []string{firedFilter, expireFiredFilter} {
		if err := sub.SubscribeInitialize(topic); err != nil {
			return err
		}
	}
	return nil
}

// handle runs the erasure of one fired message, then deletes it. It
// returns an error wrapping errMalformed for a message no retry can help.
func (e *Eraser) handle(msg *message.Message) error {
	d, ok := watermilljs.DeliveryOf(msg)
	if !ok {
		return fmt.Errorf("%w: not delivered from %s", errMalformed, stream.Schedules)
	}
	var job Job
	switch err := json.Unmarshal(msg.Payload, &job); {
	case err != nil:
		// The decoder's message may quote the body: say where, not what.
		return fmt.Errorf("%w: message %d is not JSON", errMalformed, d.Sequence)
	case !job.valid():
		return fmt.Errorf("%w: message %d has malformed ids", errMalformed, d.Sequence)
	case d.Subject != firedSubject(job.Tenant, job.Conversation):
		return fmt.Errorf("%w: message %d names another conversation than its subject", errMalformed, d.Sequence)
	}
	ctx := msg.Context()
	res, err := e.erase(ctx, job)
	if err != nil {
		return fmt.Errorf("erase conversation %s of tenant %s: %w", job.Conversation, job.Tenant, err)
	}
	// Done: the message that said what to erase goes too.
	if err := e.schedules.DeleteMsg(ctx, d.Sequence); err != nil {
		e.log.Warn("delete fired erasure", "stream_seq", d.Sequence, "err", err)
	}
	e.log.Info("conversation erased after close", "tenant", job.Tenant, "conversation", job.Conversation,
		"events_deleted", res.events, "visitor_erased", res.visitorErased)
	return nil
}

type result struct {
	events        int
	visitorErased bool
}

// erase erases job's conversation, and its visitor when nothing else of
// theirs is left. Every step is safe to repeat.
func (e *Eraser) erase(ctx context.Context, job Job) (result, error) {
	var res result
	subject := stream.ChatSubject(job.Tenant, job.Conversation)
	held, err := e.holds(ctx, subject)
	if err != nil {
		return res, err
	}
	if held {
		// Audited before it happens, like every erasure; a repeat after a
		// failure is audited again, as another attempt.
		if err := e.app.AuditSystem(ctx, job.Tenant, app.ActionConversationErase, "conversation:"+job.Conversation); err != nil {
			return res, fmt.Errorf("audit: %w", err)
		}
		if res.events, err = e.deleteEvents(ctx, subject); err != nil {
			return res, err
		}
	}
	data, err := json.Marshal(privacyapi.ConversationErased{Tenant: job.Tenant, Conversation: job.Conversation})
	if err != nil {
		return res, err
	}
	if err := e.nc.Publish(privacyapi.ConversationErasedSubject, data); err != nil {
		return res, fmt.Errorf("broadcast: %w", err)
	}
	others, err := e.otherConversations(ctx, job)
	if err != nil {
		return res, err
	}
	if others {
		return res, nil
	}
	_, err = e.app.EraseBySystem(ctx, job.Tenant, job.Visitor)
	switch {
	case errors.Is(err, app.ErrNotFound):
		// Nothing of the visitor left to erase (their keys expired).
	case err != nil:
		return res, fmt.Errorf("erase visitor: %w", err)
	default:
		res.visitorErased = true
	}
	return res, nil
}

// holds reports whether CHAT holds any event on subject.
func (e *Eraser) holds(ctx context.Context, subject string) (bool, error) {
	_, err := e.chat.GetLastMsgForSubject(ctx, subject)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read %s: %w", stream.Chat, err)
	}
	return true, nil
}

// deleteEvents secure-deletes every event on subject, the last first, so
// that one appended meanwhile goes too, and returns how many it deleted.
func (e *Eraser) deleteEvents(ctx context.Context, subject string) (int, error) {
	deleted := make(map[uint64]bool)
	for {
		m, err := e.chat.GetLastMsgForSubject(ctx, subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return len(deleted), nil
		}
		if err != nil {
			return len(deleted), fmt.Errorf("read %s: %w", stream.Chat, err)
		}
		if deleted[m.Sequence] {
			// A direct get served by a replica behind the leader: retry
			// the whole erasure later rather than spin.
			return len(deleted), fmt.Errorf("event %d of %s still served after its deletion", m.Sequence, stream.Chat)
		}
		if err := e.chat.SecureDeleteMsg(ctx, m.Sequence); err != nil {
			return len(deleted), fmt.Errorf("secure-delete event %d of %s: %w", m.Sequence, stream.Chat, err)
		}
		deleted[m.Sequence] = true
	}
}

// otherConversations reports whether job's visitor has a conversation left
// in CHAT besides job's.
func (e *Eraser) otherConversations(ctx context.Context, job Job) (bool, error) {
	held, _, err := e.left(ctx, job.Tenant, job.Visitor, job.Conversation)
	return held, err
}

// left reports whether the visitor has a conversation other than except
// left in CHAT and, if so, when the last of them has expired by retention,
// grace included: the zero time if one never does. The chat service lists
// the visitor's conversations (see conversations); the store has the last
// word on each, as the chat service may not have applied an erasure or an
// expiry yet.
func (e *Eraser) left(ctx context.Context, tenant, visitor, except string) (bool, time.Time, error) {
	convs, err := e.conversations(ctx, tenant, visitor)
	if err != nil {
		return false, time.Time{}, err
	}
	var (
		held    bool
		until   time.Time
		forever bool
	)
	for _, c := range convs {
		if c == except || !stream.ValidToken(c) {
			continue
		}
		m, err := e.chat.GetLastMsgForSubject(ctx, stream.ChatSubject(tenant, c))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			continue
		case err != nil:
			return false, time.Time{}, fmt.Errorf("read %s: %w", stream.Chat, err)
		}
		held = true
		ttl, ok := TTL(m.Header)
		if !ok {
			forever = true
			continue
		}
		if at := ExpiresAt(m.Time, ttl); at.After(until) {
			until = at
		}
	}
	if forever {
		until = time.Time{}
	}
	return held, until, nil
}

// conversations returns the ids of the visitor's conversations, as the
// chat service lists them to the visitor, asked as the system principal on
// chat's internal endpoint: page after page, each call bounded by
// callTimeout, so that a visitor with more conversations than one reply
// holds is seen whole. The pages come in order of id, so one erased or
// expired between two pages never hides another.
func (e *Eraser) conversations(ctx context.Context, tenant, visitor string) ([]string, error) {
	p := auth.System(tenant, privacyapi.Service)
	var ids []string
	err := chatapi.ReadPages(func(after *string) (*string, error) {
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		var res chatapi.ListResult
		req := rpc.Request[chatapi.VisitorConversationsArgs]{Principal: p, Args: chatapi.VisitorConversationsArgs{Visitor: visitor, Page: chatapi.PageAfter(after)}}
		if err := rpc.Call(ctx, e.nc, chatapi.VisitorConversationsSubject, req, &res); err != nil {
			return nil, err
		}
		for _, c := range res.Conversations {
			ids = append(ids, c.ID)
		}
		return res.Next, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the visitor's conversations: %w", err)
	}
	return ids, nil
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// handleExpiry runs the expiry of one fired message, then deletes it. It
// returns an error wrapping errMalformed for a message no retry can help.
func (e *Eraser) handleExpiry(msg *message.Message) error {
	d, ok := watermilljs.DeliveryOf(msg)
	if !ok {
		return fmt.Errorf("%w: not delivered from %s", errMalformed, stream.Schedules)
	}
	var x Expiry
	switch err := json.Unmarshal(msg.Payload, &x); {
	case err != nil:
		return fmt.Errorf("%w: message %d is not JSON", errMalformed, d.Sequence)
	case !x.valid():
		return fmt.Errorf("%w: message %d has malformed ids", errMalformed, d.Sequence)
	case d.Subject != expireFiredSubject(x.Tenant, x.Visitor):
		return fmt.Errorf("%w: message %d names another visitor than its subject", errMalformed, d.Sequence)
	}
	ctx := msg.Context()
	erased, err := e.expire(ctx, x)
	if err != nil {
		return fmt.Errorf("expire visitor %s of tenant %s: %w", x.Visitor, x.Tenant, err)
	}
	if err := e.schedules.DeleteMsg(ctx, d.Sequence); err != nil {
		e.log.Warn("delete fired expiry", "stream_seq", d.Sequence, "err", err)
	}
	e.log.Info("visitor expiry fired", "tenant", x.Tenant, "visitor", x.Visitor, "visitor_erased", erased)
	return nil
}

// expire erases x's visitor when nothing of theirs is left in CHAT, and
// reports whether it did. Otherwise it schedules the expiry again for when
// what is left expires, unless something is kept forever. Every step is
// safe to repeat.
func (e *Eraser) expire(ctx context.Context, x Expiry) (bool, error) {
	held, until, err := e.left(ctx, x.Tenant, x.Visitor, "")
	if err != nil {
		return false, err
	}
	if held {
		if until.IsZero() {
			return false, nil
		}
		// Never in the past: an event the server is late removing would
		// make the expiry fire again at once.
		m, err := ExpirySchedule(x, latest(until, time.Now().Add(time.Second)))
		if err != nil {
			return false, err
		}
		if _, err := e.js.PublishMsg(ctx, m); err != nil {
			return false, fmt.Errorf("schedule the expiry again: %w", err)
		}
		return false, nil
	}
	_, err = e.app.ExpireSubject(ctx, x.Tenant, x.Visitor)
	switch {
	case errors.Is(err, app.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("erase visitor: %w", err)
	}
	return true, nil
}
