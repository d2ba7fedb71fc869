// Package live is the gateway's WebSocket hub: it follows the chat events
// of the tenants connected to it, decrypts the ones someone connected may
// see, and pushes them to those sessions.
//
// It follows the events the CHAT stream republishes as it stores them
// (stream.LiveChatSubjects), never chat.> itself, and only those of the
// tenants with a session on this hub: one subscription a tenant, made as
// its first session starts and ended with its last, so that a gateway
// with nobody of a tenant connected is sent none of its events. An append
// to chat.> reaches a core subscriber whether or not the stream stores it,
// so a client would be shown a message refused for a stale expected
// sequence, which was never stored and may never be, and a retried append
// the stream dropped as a duplicate. The republished subjects carry each
// stored event once, in the order of the stream, as soon as it is stored.
//
// Who sees what: a visitor sees their own conversations; an agent sees the
// conversations assigned to them and the unassigned ones (a hand-off, which
// unassigns a bot's, included); supervisors and admins see every
// conversation of their tenant; other roles see nothing, and a bot has no
// live stream at all (ErrNoStream): what it receives is delivered to it,
// redacted, by the privacy service.
// The hub keeps no state of conversations and asks nobody: who a
// conversation is assigned to before and after an event is stamped into
// the event's sealed payload by the chat service (event.Stamp). An event
// stored before stamps existed, which the hub cannot place, goes only to
// its visitor, supervisors and admins — never to an agent who may not see
// it — except an opening, which is unassigned whatever its age.
//
// Each session costs a WebSocket connection, one goroutine that reads (so
// that pings and close frames are answered) and a small bounded queue.
// Writes run on a goroutine started only while the queue is non-empty, so
// an idle session holds no writer. A client that falls more than QueueLen
// events behind is disconnected rather than allowed to slow the hub down.
// Events are encoded once and the same bytes go to every recipient. A
// visitor's keys are fetched as their session starts, not on the pipeline
// when their first event arrives.
//
// Every event carries the stream sequence of the chat event it shows. A
// client that reconnects with the last sequence it saw (Start's since) is
// first sent what it missed, read from the stream (History) and filtered
// as live delivery filters, in order, then the live events, each once:
// live events that arrive during the replay are held, and those the replay
// already sent are dropped by their sequence. A client that missed more
// than MaxReplay events, or whose replay fails, is sent a resync event
// instead, and then the live events: it reloads what it shows. So is
// every session of a tenant whose live events the hub dropped, its
// pipeline being full: once for a run of them, after the events it was
// sent before them (after its replay, when it is replaying).
//
// Audit: a member of staff shown message text live (an agent, a
// supervisor, an admin) is written to the audit trail as their session
// starts, with the sequence it replays from, by the Auditor, before the
// handshake completes; when that fails the session is refused and sent
// nothing. A visitor reads their own conversations; analysts and auditors
// are shown nothing.
//
// Typing: a client sends {"type":"typing","conversation_id":…} while its
// user types. The hub asks the chat service whether the user may (as they
// may post there) and who the other side is, publishes the signal on core
// NATS (chatapi.TypingSignal), and every gateway instance, this one
// included, pushes a typing frame to the sessions of that conversation's
// other side, found as for its messages, the typist's own sessions left
// out. A typing frame has no seq and is never replayed: it is not stored
// anywhere, and a session that is replaying or has no room drops it.
// Each session may send TypingBurst signals at once and one every
// TypingEvery after; others are dropped.
package live

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/stream"
)

// TenantSubject is what the hub subscribes to while tenant has sessions
// on it: every stored event of the tenant's conversations.
func TenantSubject(tenant string) string { return stream.LiveChatSubject(tenant, ">") }

const (
	// QueueLen bounds the events waiting for one client.
	QueueLen = 256
	// writeTimeout bounds one write to a client.
	writeTimeout = 5 * time.Second
	// readLimit bounds a client's frames: clients say no more than that
	// they are typing on this socket, so anything big is abuse.
	readLimit = 4 << 10
	// TypingEvery and TypingBurst bound the typing signals of a session:
	// TypingBurst at once, then one every TypingEvery.
	TypingEvery = time.Second
	TypingBurst = 5
	// lookupTimeout bounds a key lookup, which holds up the pipeline of
	// every tenant's events.
	lookupTimeout = 2 * time.Second
	// MaxReplay bounds the events a reconnecting client is sent from the
	// stream; a client further behind is told to resync.
	MaxReplay = 1000
	// pendingMsgs and pendingBytes (of payload) bound the events waiting
	// for the hub's pipeline, those of every tenant followed together.
	pendingMsgs  = 1 << 16
	pendingBytes = 64 << 20
	// subscribeTimeout bounds the wait, during a handshake, for the server
	// to know of the tenant's subscription.
	subscribeTimeout = 2 * time.Second
)

// Keys returns a data subject's keys; personkey.Cache is one.
type Keys interface {
	Get(ctx context.Context, tenant, subject string) (personkey.Keys, error)
}

// Event is one frame pushed to clients. Seq is the stream sequence of the
// chat event it shows, what a client reconnects with; the two frames of an
// opening share it. A resync event has neither sequence nor conversation.
type Event struct {
	Type           string   `json:"type"`
	Seq            uint64   `json:"seq,omitempty"`
	ConversationID string   `json:"conversation_id,omitempty"`
	Message        *Message `json:"message,omitempty"`
	// Author is who is typing, on a typing frame, and who asked for a
	// person, on a handed_off frame.
	Author *event.Author `json:"author,omitempty"`
	// Assignee is who the conversation is assigned to, on an assigned
	// frame: an agent's id, or a bot's (event.BotAssignee).
	Assignee string `json:"assignee,omitempty"`
	// Visitor is who was erased, on an erased frame only.
	Visitor string `json:"visitor,omitempty"`
	// At is when the hand-off was asked for, on a handed_off frame: the
	// server's time, the one its line in the transcript reads, so a page
	// shows the same whether it heard the hand-off live or read it later.
	At time.Time `json:"at,omitzero"`
}

// Message is a posted message as pushed live; on a withdrawal, the
// message withdrawn, with Withdrawn set and no text.
type Message struct {
	ID        string       `json:"id"`
	Author    event.Author `json:"author"`
	Text      string       `json:"text"`
	At        time.Time    `json:"at"`
	Withdrawn bool         `json:"withdrawn,omitempty"`
}

// Event types.
const (
	TypeMessage  = "message"
	TypeOpened   = "opened"
	TypeAssigned = "assigned"
	TypeClosed   = "closed"
	TypeRated    = "rated"
	// TypeWithdrawn tells that the visitor withdrew the message it names:
	// a client shows it withdrawn in place.
	TypeWithdrawn = "withdrawn"
	// TypeHandedOff tells that the visitor, or the bot assigned, asked for
	// a person: the conversation is unassigned, in every agent's reach.
	TypeHandedOff = "handed_off"
	// TypeResync tells a reconnecting client that what it missed is not
	// replayed: it reloads the conversations it shows.
	TypeResync = "resync"
	// TypeTyping says that Author is typing in the conversation; a client
	// sends it with the conversation's id alone.
	TypeTyping = "typing"
	// TypeErased tells staff that the visitor it names was erased: every
	// message of their conversations reads erased from now on. The chat
	// service stores no event for an erasure, so without it a console
	// showing such a conversation would learn nothing.
	TypeErased = "erased"
)

// Typist tells whether p may signal typing in a conversation and, if so,
// its summary, which names the other side; the chat service answers it on
// chatapi.TypingSubject.
type Typist func(ctx context.Context, p auth.Principal, conversation string) (chatapi.Summary, error)

// History reads what a reconnecting client missed: the chat events of
// tenant stored after stream sequence after, in order, up to the last one
// stored when it was called, handing each to fn; it stops at fn's first
// error and returns it. When more than max events are to be read it reads
// none and returns ErrTooFarBehind.
type History func(ctx context.Context, tenant string, after uint64, max int, fn func(seq uint64, env event.Envelope) error) error

// ErrTooFarBehind is returned by a History asked for more than its max.
var ErrTooFarBehind = errors.New("live: too many events missed to replay")

// Hub routes chat events to sessions. It is safe for concurrent use.
type Hub struct {
	log     *slog.Logger
	keys    Keys
	history History
	// nc and typist relay typing signals; set by Typing before sessions
	// start, nil while typing is not relayed.
	nc     *nats.Conn
	typist Typist
	// audit writes staff's sessions to the audit trail; set by Audit
	// before sessions start, nil while they are not audited.
	audit Auditor

	// mu guards tenants, each tenant's sessions and subscription, made on
	// conn (nil until Follow: no events); piping, set once the pipeline's
	// goroutine runs; and closing, set by Close, after which no session
	// starts and no subscription is kept.
	mu       sync.RWMutex
	tenants  map[string]*tenantSessions
	sessions int
	conn     *nats.Conn
	piping   bool
	closing  bool
	wg       sync.WaitGroup

	// events is the pipeline: every subscription hands its events here,
	// and one goroutine (pipe) handles them in the order they came, which
	// keeps each tenant's in the stream's order. A burst must not be dropped
	// while a key lookup holds the pipeline for a moment, so it holds up
	// to cap(events) events and maxWaiting bytes of payload; beyond that
	// events are dropped, as a slow consumer's are, and logged, and the
	// sessions of their tenant are told to resync (see loss). The bound
	// is the hub's, not a tenant's: with the key service down every
	// tenant's events wait, and a bound per tenant would let the memory
	// held grow with the tenants connected.
	events     chan queued
	maxWaiting int64
	waiting    atomic.Int64 // payload bytes in events
	dropped    atomic.Int64 // events dropped since the pipeline last took one
	stop       chan struct{}
	piped      chan struct{}
	// due holds the tenants that lost an event while none of theirs
	// waited, whose sessions the pipeline tells to resync on its next
	// turn; wake starts that turn when the pipeline is idle.
	dueMu sync.Mutex
	due   []*tenantSessions
	wake  chan struct{}

	resync []byte // the resync frame
}

// queued is an event in the pipeline, of t's subscription; resync tells
// the pipeline to tell t's sessions to resync before they are sent it.
type queued struct {
	t      *tenantSessions
	m      *nats.Msg
	resync bool
}

// loss counts a subscription's events through the pipeline, which tells
// the tenant's sessions of those it dropped. The pipeline does not know
// whom a dropped event was for (it was not routed), so every session of
// the tenant is sent one resync for a run of them, after each event of the
// tenant the pipeline took before the first, and before any it takes
// after: once the pipeline has handled the event numbered owedAfter (on
// its next turn when none waited), or with the next event of the tenant
// it takes, whichever comes first. A resync sent
// before a drop does not cover it: the reload it asks for may have read
// the store before the event was stored. mu guards it.
type loss struct {
	mu        sync.Mutex
	accepted  uint64 // events the pipeline took
	handled   uint64 // events the pipeline handled
	owed      bool   // an event was dropped and the sessions not told yet
	owedAfter uint64 // accepted when the first of them was dropped
}

type set map[*session]struct{}

// tenantSessions is what the hub holds of a tenant while it has a
// session: its sessions and the subscription to its events, made with its
// first session and ended with its last. h.mu guards it but for loss.
type tenantSessions struct {
	name string
	sub  *nats.Subscription // nil: not followed, or Close ended it
	// followed is closed once the first session's follow has returned,
	// followErr what it returned; sessions that start meanwhile wait for
	// it. Neither is guarded by h.mu: followErr is written before the
	// close and read after it.
	followed  chan struct{}
	followErr error
	visitors  map[string]set // by visitor id
	agents    map[string]set // by agent id
	overseers set            // supervisors and admins
	// blind are the sessions of roles shown nothing (analysts,
	// auditors): sent no event, but closed with the rest.
	blind   set
	nagents int
	n       int // every session of the tenant
	// byPrincipal counts the sessions of each principal, of every role:
	// analysts and auditors, who see nothing, hold connections too.
	byPrincipal map[principalID]int

	loss
}

type principalID struct {
	role auth.Role
	id   string
}

// appendSessions appends to to the sessions of t that may be sent events
// and returns it.
func (t *tenantSessions) appendSessions(to []*session) []*session {
	for _, ss := range t.visitors {
		for s := range ss {
			to = append(to, s)
		}
	}
	for _, ss := range t.agents {
		for s := range ss {
			to = append(to, s)
		}
	}
	for s := range t.overseers {
		to = append(to, s)
	}
	return to
}

// empty counts every session, those of roles that see nothing (analysts,
// auditors) included: they too are removed from the tenant's entry.
func (t *tenantSessions) empty() bool {
	return t.n == 0
}

// NewHub returns a hub decrypting with keys and replaying from history to
// reconnecting clients (nil: every reconnecting client is told to resync).
func NewHub(log *slog.Logger, keys Keys, history History) *Hub {
	h := &Hub{
		log:     log,
		keys:    keys,
		history: history,
		tenants: make(map[string]*tenantSessions),

		events:     make(chan queued, pendingMsgs),
		maxWaiting: pendingBytes,
		stop:       make(chan struct{}),
		piped:      make(chan struct{}),
		wake:       make(chan struct{}, 1),
	}
	h.resync = h.encode(Event{Type: TypeResync})
	return h
}

// Follow makes the hub follow the chat events stored in CHAT on nc, which
// the stream republishes on stream.LiveChatSubjects: from then on, each session that
// starts subscribes to its tenant's events unless another of the tenant
// has, and the last of the tenant to end unsubscribes. Events are handled
// one at a time, each tenant's in order, on one goroutine, which Close
// ends. Call it before the first Start.
func (h *Hub) Follow(nc *nats.Conn) {
	h.mu.Lock()
	h.conn = nc
	h.mu.Unlock()
}

// ErrUnavailable is returned by Start when the hub cannot follow the
// session's tenant: the bus did not take or confirm its subscription.
var ErrUnavailable = errors.New("live: events unavailable")

// follow subscribes on nc to the events of t, a tenant's first session on
// the way, unless the hub follows no events (nc nil) or the tenant is no
// token of a subject (an operator's "*"), which sees no conversation. It
// returns an error wrapping ErrUnavailable when the bus refuses, and
// ErrClosing, subscribing to nothing, once Close has begun. h.mu is not
// held.
func (h *Hub) follow(nc *nats.Conn, t *tenantSessions) error {
	if nc == nil || !stream.ValidToken(t.name) {
		return nil
	}
	sub, err := nc.Subscribe(TenantSubject(t.name), func(m *nats.Msg) { h.enqueue(t, m) })
	if err != nil {
		return fmt.Errorf("%w: subscribe to a tenant's events: %w", ErrUnavailable, err)
	}
	h.mu.Lock()
	if h.closing {
		// Close did not see it, and waits for no pipeline started now.
		h.mu.Unlock()
		_ = sub.Unsubscribe()
		return ErrClosing
	}
	t.sub = sub
	if !h.piping {
		h.piping = true
		go h.pipe()
	}
	h.mu.Unlock()
	return nil
}

// subscribed waits until the server knows of the subscription to tenant's
// events (a flush on the connection, bounded by ctx and subscribeTimeout),
// so that an event stored after a session's handshake is not missed for a
// subscription still on its way. Every session waits, not only the one
// that subscribed: another's subscription may still be on its way. It
// returns an error wrapping ErrUnavailable when the bus fails.
func (h *Hub) subscribed(ctx context.Context, tenant string) error {
	h.mu.RLock()
	nc := h.conn
	h.mu.RUnlock()
	if nc == nil || !stream.ValidToken(tenant) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, subscribeTimeout)
	defer cancel()
	if err := nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("%w: subscribe to a tenant's events: %w", ErrUnavailable, err)
	}
	return nil
}

// due adds handled to the events of l's subscription the pipeline has
// handled and reports whether the tenant's sessions are owed a resync now,
// which it then counts as sent: true once the pipeline has handled every
// event of the tenant it took before the first it dropped.
func (l *loss) due(handled uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.handled += handled
	if !l.owed || l.handled != l.owedAfter {
		return false
	}
	l.owed = false
	return true
}

// enqueue hands an event of t's subscription to the pipeline, or drops it
// when the pipeline is full. It never blocks, so that what waits is bounded
// by the pipeline alone, not by the subscriptions' own queues. t.loss.mu is
// held across the send so that a resync owed goes with one event only.
func (h *Hub) enqueue(t *tenantSessions, m *nats.Msg) {
	n := int64(len(m.Data))
	t.loss.mu.Lock()
	defer t.loss.mu.Unlock()
	if h.waiting.Add(n) <= h.maxWaiting {
		select {
		case h.events <- queued{t: t, m: m, resync: t.owed}:
			t.owed = false
			t.accepted++
			return
		default:
		}
	}
	h.waiting.Add(-n)
	h.drop(t)
}

// drop counts an event of t the pipeline had no room for, marks t to be
// told, and logs the first of a run of them; pipe logs how many there
// were. t.loss.mu is held.
func (h *Hub) drop(t *tenantSessions) {
	if !t.owed {
		t.owed, t.owedAfter = true, t.accepted
		if t.handled == t.accepted {
			// Nothing of the tenant waits for the pipeline to tell after.
			h.dueMu.Lock()
			h.due = append(h.due, t)
			h.dueMu.Unlock()
			select {
			case h.wake <- struct{}{}:
			default:
			}
		}
	}
	if h.dropped.Add(1) == 1 {
		h.log.Error("live: pipeline full, dropping events", "max_events", cap(h.events), "max_bytes", h.maxWaiting)
	}
}

// pipe handles the events of the pipeline until Close.
func (h *Hub) pipe() {
	defer close(h.piped)
	for {
		select {
		case q := <-h.events:
			h.waiting.Add(-int64(len(q.m.Data)))
			if n := h.dropped.Swap(0); n > 0 {
				h.log.Warn("live: pipeline has room again", "dropped", n)
			}
			if q.resync {
				h.tellResync(q.t)
			}
			h.handle(q.t, q.m)
			if q.t.due(1) {
				h.tellResync(q.t)
			}
		case <-h.wake:
		case <-h.stop:
			return
		}
		h.tellDue()
	}
}

// tellDue tells the sessions of the tenants in h.due to resync, unless an
// event taken since did.
func (h *Hub) tellDue() {
	h.dueMu.Lock()
	due := h.due
	h.due = nil
	h.dueMu.Unlock()
	for _, t := range due {
		if t.due(0) {
			h.tellResync(t)
		}
	}
}

// tellResync queues a resync frame for every session of t, after what it
// was sent; a session replaying gets it after its replay.
func (h *Hub) tellResync(t *tenantSessions) {
	h.mu.RLock()
	to := t.appendSessions(nil)
	h.mu.RUnlock()
	for _, s := range to {
		s.notice(h.resync)
	}
}

// Typing relays the typing signals of this hub's clients, checked by
// typist, over nc to every hub, and follows those of every hub on nc. Call
// it before the first Start.
func (h *Hub) Typing(nc *nats.Conn, typist Typist) (*nats.Subscription, error) {
	h.nc, h.typist = nc, typist
	return nc.Subscribe(chatapi.TypingSignals, h.handleTyping)
}

// Auditor writes p's opening of a live stream that shows them message
// text to the audit trail, since being the sequence it replays from (nil:
// no replay), and returns once it is written.
type Auditor func(ctx context.Context, p auth.Principal, since *uint64) error

// Audit makes the hub write every session of a member of staff shown
// message text to the audit trail with audit before it completes the
// handshake. Call it before the first Start; a hub never given one (a test
// of delivery) audits nothing.
func (h *Hub) Audit(audit Auditor) { h.audit = audit }

// ErrNotAudited is returned by Start when a session could not be written
// to the audit trail.
var ErrNotAudited = errors.New("live: stream not audited")

// audited reports whether p's sessions are written to the audit trail: a
// person on the staff shown message text. A visitor reads their own.
func audited(p auth.Principal) bool {
	return p.Role != auth.RoleVisitor && mayShow(p, "")
}

// ErrClosing is returned by Start once Close has begun.
var ErrClosing = errors.New("live: hub closing")

// ErrNoStream is returned by Start for a bot: it reads no conversation
// through the API, live or not.
var ErrNoStream = errors.New("live: a bot has no live stream")

// Errors of Start for a session over one of its Limits.
var (
	ErrPrincipalSessions = errors.New("live: too many sessions of this principal")
	ErrTenantSessions    = errors.New("live: too many sessions of this tenant")
	ErrProcessSessions   = errors.New("live: too many sessions in this process")
)

// Limits bound the sessions Start admits; a value of 0 or less means no
// limit.
type Limits struct {
	// Principal bounds the sessions of one principal.
	Principal int
	// Tenant bounds the sessions of the principal's tenant.
	Tenant int
	// Process bounds the sessions of the whole hub.
	Process int
}

// Start registers a session for p, making sure its tenant's events reach
// the hub, then completes the WebSocket handshake with accept, and runs the
// session on the connection until the client goes away, the hub closes it,
// or ctx is done, then closes it. req is the handshake's request's context:
// it bounds the wait before accept. Every event stored after the client
// saw the handshake reaches the session: the session is registered with
// its tenant's subscription, which is then known to the server
// (subscribed), and only then does accept answer the client; such an
// event is sent to the hub after that, and the hub finds the session.
// What arrives before accept returns waits in the session's queue. With
// since, the last sequence the client saw, it is first sent the events it
// missed (see the package comment).
// Start returns, without calling accept, ErrClosing once Close has begun;
// ErrPrincipalSessions, ErrTenantSessions or ErrProcessSessions when the
// session would exceed lim, before anything is subscribed to; an error
// wrapping ErrUnavailable when the bus fails to subscribe; and one
// wrapping ErrNotAudited when a staff member's session could not be
// written to the audit trail (see Audit). An error of
// accept, which has answered the client itself, ends the session and
// Start returns nil. Otherwise it returns at once: the session reads on a
// goroutine of its own, started fresh so that its stack stays small, and
// the HTTP handler can return. A bot's session is refused with
// ErrNoStream.
func (h *Hub) Start(ctx, req context.Context, p auth.Principal, lim Limits, since *uint64, accept func() (*websocket.Conn, error)) error {
	if p.Role == auth.RoleBot {
		return ErrNoStream
	}
	s := &session{p: p, replaying: since != nil, room: make(chan struct{}, 1), typing: rate.NewLimiter(rate.Every(TypingEvery), TypingBurst)}
	if err := h.add(s, lim); err != nil {
		return err
	}
	if err := h.subscribed(req, p.Tenant); err != nil {
		h.abandon(s)
		return err
	}
	if h.audit != nil && audited(p) {
		// After the limits and the subscription, so that only a session
		// about to be served is audited; before accept, so that a refused
		// one is answered with a status and sent nothing.
		if err := h.audit(req, p, since); err != nil {
			h.abandon(s)
			return fmt.Errorf("%w: %w", ErrNotAudited, err)
		}
	}
	conn, err := accept()
	if err != nil {
		h.abandon(s)
		return nil
	}
	conn.SetReadLimit(readLimit)
	s.attach(conn)
	if p.Role == auth.RoleVisitor {
		// Every event of a visitor's conversations is sealed under their
		// key. Fetched on their first event instead, it would hold up the
		// pipeline, the deliveries to every session, for a round trip to
		// the key service.
		h.wg.Add(1)
		go h.prefetchKeys(s)
	}
	if since != nil {
		h.wg.Add(1)
		go h.replay(ctx, s, *since)
	}
	go h.read(ctx, s)
	return nil
}

// replay sends s the events of its tenant after sequence after that its
// principal may see, as live delivery decides, then the live events held
// meanwhile.
func (h *Hub) replay(ctx context.Context, s *session, after uint64) {
	defer h.wg.Done()
	err := ErrTooFarBehind
	if h.history != nil {
		err = h.history(ctx, s.p.Tenant, after, MaxReplay, func(seq uint64, env event.Envelope) error {
			if !mayShow(s.p, env.Person) {
				return nil // not opened: another visitor's, or a role shown nothing
			}
			frames, rt, ok := h.frames(ctx, seq, env)
			if !ok || !rt.shows(s.p, env.Person) {
				return nil
			}
			return s.replayed(ctx, seq, frames)
		})
	}
	if err != nil && !errors.Is(err, ErrTooFarBehind) && !errors.Is(err, errSessionClosed) && ctx.Err() == nil {
		h.log.Warn("live: replay missed events", "tenant", s.p.Tenant, "err", err)
	}
	s.endReplay(h.resync, err != nil)
}

// prefetchKeys puts a visitor's keys in the cache, on a goroutine of its
// own so that neither the handshake nor the session's small reading stack
// pays for the lookup. It also closes the session of a visitor erased
// while it started: the erasure's CloseSubject may have run before the
// session was registered, but the cache knew of the erasure by then.
func (h *Hub) prefetchKeys(s *session) {
	defer h.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	_, err := h.keys.Get(ctx, s.p.Tenant, s.p.ID)
	switch {
	case errors.Is(err, personkey.ErrErased):
		s.close(websocket.StatusPolicyViolation, CloseErased)
	case err != nil && !errors.Is(err, personkey.ErrNotFound):
		// The first event will ask again.
		h.log.Warn("live: prefetch key", "tenant", s.p.Tenant, "err", err)
	}
}

// CloseErased is the reason of the close frame (status 1008, policy
// violation) that ends the sessions of an erased subject.
const CloseErased = "subject erased"

func (h *Hub) read(ctx context.Context, s *session) {
	defer h.wg.Done()
	defer h.remove(s)
	// Reading answers pings and notices the close handshake; what a client
	// sends besides typing signals is ignored.
	for {
		typ, data, err := s.conn.Read(ctx)
		if err != nil {
			s.closeNow()
			return
		}
		if typ == websocket.MessageText {
			h.typed(ctx, s, data)
		}
	}
}

// typed relays a typing signal the client of s sent, if data is one, s may
// send one now, and the chat service lets its principal type there.
func (h *Hub) typed(ctx context.Context, s *session, data []byte) {
	var in Event
	if h.typist == nil || json.Unmarshal(data, &in) != nil || in.Type != TypeTyping ||
		!stream.ValidToken(in.ConversationID) || !s.typing.Allow() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	sum, err := h.typist(ctx, s.p, in.ConversationID)
	if err != nil {
		// Refused or unanswered: a typing signal is not worth an error.
		h.log.Debug("live: typing not relayed", "tenant", s.p.Tenant, "err", err)
		return
	}
	t := chatapi.Typed{Tenant: s.p.Tenant, Conversation: sum.ID, Visitor: sum.Visitor, Author: event.Author{Role: string(s.p.Role), ID: s.p.ID}}
	if sum.Assignee != nil {
		t.Assignee = *sum.Assignee
	}
	b, _ := json.Marshal(t) // strings only
	if err := h.nc.Publish(chatapi.TypingSignal(t.Tenant, t.Conversation), b); err != nil {
		h.log.Warn("live: relay typing", "tenant", s.p.Tenant, "err", err)
	}
}

// handleTyping pushes a typing signal of any hub to the sessions here that
// see the conversation's messages, the typist's own left out.
func (h *Hub) handleTyping(m *nats.Msg) {
	var t chatapi.Typed
	if err := json.Unmarshal(m.Data, &t); err != nil || m.Subject != chatapi.TypingSignal(t.Tenant, t.Conversation) {
		h.log.Warn("live: skip typing signal", "subject", m.Subject)
		return
	}
	frame := h.encode(Event{Type: TypeTyping, ConversationID: t.Conversation, Author: &t.Author})
	h.mu.RLock()
	to := h.tenants[t.Tenant]
	h.mu.RUnlock()
	for _, s := range h.recipients(to, t.Visitor, route{placed: true, was: t.Assignee, now: t.Assignee}) {
		if s.p.ID != t.Author.ID || string(s.p.Role) != t.Author.Role {
			s.signal(frame)
		}
	}
}

// add registers s unless the hub is closing or s would exceed lim. The
// first session of a tenant subscribes to its events, outside h.mu (a
// Subscribe may block while nats.go's write buffer is full); sessions of
// the tenant that start meanwhile are registered and wait for it. When the
// bus refuses, each of them is unregistered and add returns an error
// wrapping ErrUnavailable.
func (h *Hub) add(s *session, lim Limits) error {
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		return ErrClosing
	}
	t := h.tenants[s.p.Tenant]
	var err error
	switch {
	case lim.Process > 0 && h.sessions >= lim.Process:
		err = ErrProcessSessions
	case t == nil:
	case lim.Tenant > 0 && t.n >= lim.Tenant:
		err = ErrTenantSessions
	case lim.Principal > 0 && t.byPrincipal[principalID{s.p.Role, s.p.ID}] >= lim.Principal:
		err = ErrPrincipalSessions
	}
	if err != nil {
		h.mu.Unlock()
		return err
	}
	first := t == nil
	if first {
		t = &tenantSessions{name: s.p.Tenant, visitors: make(map[string]set), agents: make(map[string]set), overseers: make(set), blind: make(set), byPrincipal: make(map[principalID]int), followed: make(chan struct{})}
		h.tenants[s.p.Tenant] = t
	}
	h.wg.Add(1)
	switch s.p.Role {
	case auth.RoleVisitor:
		addTo(t.visitors, s.p.ID, s)
	case auth.RoleAgent:
		addTo(t.agents, s.p.ID, s)
		t.nagents++
	case auth.RoleSupervisor, auth.RoleAdmin:
		t.overseers[s] = struct{}{}
	default:
		t.blind[s] = struct{}{}
	}
	t.n++
	t.byPrincipal[principalID{s.p.Role, s.p.ID}]++
	h.sessions++
	nc := h.conn
	h.mu.Unlock()
	if first {
		// s keeps t in h.tenants until then: no other session subscribes.
		t.followErr = h.follow(nc, t)
		close(t.followed)
	}
	<-t.followed
	if t.followErr != nil {
		h.abandon(s)
		return t.followErr
	}
	return nil
}

// abandon undoes add for a session that is not served: it unregisters s and
// ends the hub's wait for it.
func (h *Hub) abandon(s *session) {
	h.remove(s)
	h.wg.Done()
}

// remove unregisters s, and ends its tenant's subscription with its last
// session.
func (h *Hub) remove(s *session) {
	h.mu.Lock()
	t := h.tenants[s.p.Tenant]
	switch s.p.Role {
	case auth.RoleVisitor:
		removeFrom(t.visitors, s.p.ID, s)
	case auth.RoleAgent:
		removeFrom(t.agents, s.p.ID, s)
		t.nagents--
	case auth.RoleSupervisor, auth.RoleAdmin:
		delete(t.overseers, s)
	default:
		delete(t.blind, s)
	}
	t.n--
	if k := (principalID{s.p.Role, s.p.ID}); t.byPrincipal[k] > 1 {
		t.byPrincipal[k]--
	} else {
		delete(t.byPrincipal, k)
	}
	var sub *nats.Subscription
	if t.empty() {
		delete(h.tenants, s.p.Tenant)
		sub, t.sub = t.sub, nil
	}
	h.sessions--
	h.mu.Unlock()
	if sub != nil {
		// Ended outside h.mu: nats.go may write to the socket inside
		// Unsubscribe and block while its buffer is full. Events the
		// subscription hands over until then go to t, out of h.tenants
		// and without a session for good (a tenant's next first session
		// makes an entry of its own), so they reach nobody.
		_ = sub.Unsubscribe()
	}
}

func addTo(m map[string]set, id string, s *session) {
	ss := m[id]
	if ss == nil {
		ss = make(set, 1)
		m[id] = ss
	}
	ss[s] = struct{}{}
}

func removeFrom(m map[string]set, id string, s *session) {
	delete(m[id], s)
	if len(m[id]) == 0 {
		delete(m, id)
	}
}

// Sessions returns the number of live sessions.
func (h *Hub) Sessions() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.sessions
}

// CloseSubject closes every session of the principal id in tenant, whatever
// its role: used when the subject is erased, so that nobody keeps reading
// as them.
func (h *Hub) CloseSubject(tenant, id string) {
	h.mu.RLock()
	var victims []*session
	if t := h.tenants[tenant]; t != nil {
		for s := range t.visitors[id] {
			victims = append(victims, s)
		}
		for s := range t.agents[id] {
			victims = append(victims, s)
		}
		for s := range t.overseers {
			if s.p.ID == id {
				victims = append(victims, s)
			}
		}
	}
	h.mu.RUnlock()
	for _, s := range victims {
		s.close(websocket.StatusPolicyViolation, CloseErased)
	}
}

// Erased ends the sessions of the erased subject id in tenant (CloseSubject)
// and tells every agent, supervisor and admin session of the tenant, who
// may have the subject's conversations on screen, with an erased frame. An
// agent is told whoever the conversations were assigned to: the assignment
// was sealed under the subject's key, and every agent of the tenant may
// now read those conversations, erased. Only visitors have conversations,
// but the hub cannot tell a visitor's id from a staff member's: staff
// ignore a frame naming no visitor they show.
func (h *Hub) Erased(tenant, id string) {
	h.CloseSubject(tenant, id)
	frame := h.encode(Event{Type: TypeErased, Visitor: id})
	h.mu.RLock()
	var to []*session
	if t := h.tenants[tenant]; t != nil {
		for _, ss := range t.agents {
			for s := range ss {
				to = append(to, s)
			}
		}
		for s := range t.overseers {
			to = append(to, s)
		}
	}
	h.mu.RUnlock()
	for _, s := range to {
		s.notice(frame)
	}
}

// Close refuses new sessions, closes every session with "going away" —
// spread over a while (see closeSpread), events still reaching those not
// closed yet — then ends every subscription to events and the pipeline,
// and waits for the sessions and the pipeline to end or ctx to be done.
func (h *Hub) Close(ctx context.Context) error {
	h.mu.Lock()
	first := !h.closing
	h.closing = true
	var all []*session
	for _, t := range h.tenants {
		all = t.appendSessions(all)
		for s := range t.blind {
			all = append(all, s)
		}
	}
	h.mu.Unlock()
	closeSpread(ctx, all)
	h.mu.Lock()
	var subs []*nats.Subscription
	for _, t := range h.tenants {
		if t.sub != nil {
			subs = append(subs, t.sub)
			t.sub = nil
		}
	}
	piping := h.piping
	h.mu.Unlock()
	// Ended outside h.mu, as in remove: the events they hand over until
	// then reach sessions being closed, or none once the pipeline stops.
	for _, sub := range subs {
		_ = sub.Unsubscribe()
	}
	if first {
		close(h.stop)
	}
	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		if piping {
			<-h.piped
		}
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, s := range all {
			s.closeNow()
		}
		return ctx.Err()
	}
}

const (
	// closeRate is the pace at which Close ends sessions: the clients of a
	// gateway that stops come back to the others at about that rate, not
	// all in the same second — a reconnect with since costs the bus a
	// consumer and the replay (BENCHMARKS.md, "Sessions of a stopping
	// gateway").
	closeRate = 1000
	// closeTick is how often Close ends the next sessions of its spread.
	closeTick = 10 * time.Millisecond
)

// closeSpread closes sessions with "going away" at closeRate, but within
// half of what is left of ctx's time, so that the sessions' close
// handshakes and the rest of the shutdown fit in the other half; all at
// once when ctx has no deadline or is done.
func closeSpread(ctx context.Context, sessions []*session) {
	spread := time.Duration(len(sessions)) * time.Second / closeRate
	if deadline, ok := ctx.Deadline(); ok {
		spread = min(spread, time.Until(deadline)/2)
	} else {
		spread = 0
	}
	ticks := max(1, int(spread/closeTick))
	per := (len(sessions) + ticks - 1) / ticks
	t := time.NewTicker(closeTick)
	defer t.Stop()
	for len(sessions) > 0 {
		n := min(per, len(sessions))
		for _, s := range sessions[:n] {
			s.close(websocket.StatusGoingAway, "server shutting down")
		}
		sessions = sessions[n:]
		if len(sessions) == 0 {
			return
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			per = len(sessions)
		}
	}
}

// handle routes one chat event of t's subscription.
func (h *Hub) handle(t *tenantSessions, m *nats.Msg) {
	env, err := event.Parse(m.Subject, m.Header, m.Data)
	if err != nil {
		h.log.Warn("live: skip event", "subject", m.Subject, "err", err)
		return
	}
	// The stream republishes each event with its sequence.
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		h.log.Warn("live: skip event without its sequence", "subject", m.Subject)
		return
	}
	h.mu.RLock()
	interested := t.nagents > 0 || len(t.visitors[env.Person]) > 0 || len(t.overseers) > 0
	h.mu.RUnlock()
	if !interested {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	frames, rt, ok := h.frames(ctx, seq, env)
	if !ok {
		return
	}
	for _, s := range h.recipients(t, env.Person, rt) {
		s.deliver(seq, frames)
	}
}

// route is who may see an event besides its visitor, supervisors and
// admins, as the chat service stamped it.
type route struct {
	// placed is false for an event the hub cannot place: stored before
	// stamps existed, or whose payload cannot be read. No agent sees it.
	placed bool
	// was and now are the conversation's assignee before and after the
	// event, "" while unassigned.
	was, now string
}

// routeOf returns the route of an event of type typ stamped with st (nil:
// none).
func routeOf(typ event.Type, st *event.Stamp) route {
	switch {
	case st == nil && typ == event.ConversationOpened:
		return route{placed: true}
	case st == nil:
		return route{}
	case typ == event.ConversationAssigned || typ == event.ConversationHandedOff:
		return route{placed: true, was: st.PreviousAssignee, now: st.Assignee}
	}
	return route{placed: true, was: st.Assignee, now: st.Assignee}
}

// reaches reports whether the agent may see the event: every agent while
// the conversation was unassigned or once it is (a hand-off), else its
// agent before and after.
func (r route) reaches(agent string) bool {
	return r.placed && (r.was == "" || r.now == "" || r.was == agent || r.now == agent)
}

// shows reports whether p may see an event of visitor's conversation that
// goes by r.
func (r route) shows(p auth.Principal, visitor string) bool {
	return mayShow(p, visitor) && (p.Role != auth.RoleAgent || r.reaches(p.ID))
}

// mayShow reports whether p may see an event of visitor's conversation on
// some route: what needs no opening of the event to tell.
func mayShow(p auth.Principal, visitor string) bool {
	switch p.Role {
	case auth.RoleVisitor:
		return visitor == p.ID
	case auth.RoleSupervisor, auth.RoleAdmin, auth.RoleAgent:
		return true
	}
	return false
}

// frames returns the frames that show env, stored at seq, and its route;
// false when env is not shown, or cannot be read and is not shown without
// its payload. A closing or rating whose payload cannot be read is shown
// unplaced.
func (h *Hub) frames(ctx context.Context, seq uint64, env event.Envelope) ([][]byte, route, bool) {
	payload := event.NewPayload(env.Type)
	if payload == nil {
		return nil, route{}, false
	}
	read := h.open(ctx, env, payload)
	rt := routeOf(env.Type, event.StampOf(payload))
	ev := Event{Seq: seq, ConversationID: env.Aggregate}
	switch p := payload.(type) {
	case *event.Opened:
		if !read {
			return nil, route{}, false
		}
		opened, msg := ev, ev
		opened.Type = TypeOpened
		msg.Type = TypeMessage
		msg.Message = &Message{ID: env.ID, Author: event.Author{Role: string(auth.RoleVisitor), ID: env.Person}, Text: p.Text, At: env.At}
		return [][]byte{h.encode(opened), h.encode(msg)}, rt, true
	case *event.Posted:
		if !read {
			return nil, route{}, false
		}
		ev.Type = TypeMessage
		ev.Message = &Message{ID: env.ID, Author: p.Author, Text: p.Text, At: env.At}
	case *event.Assigned:
		if !read {
			return nil, route{}, false
		}
		ev.Type, ev.Assignee = TypeAssigned, p.Agent
	case *event.HandedOff:
		if !read {
			return nil, route{}, false
		}
		ev.Type, ev.Author, ev.At = TypeHandedOff, &p.By, env.At
	case *event.Withdrawn:
		if !read {
			return nil, route{}, false
		}
		ev.Type = TypeWithdrawn
		ev.Message = &Message{ID: p.Message, Author: event.Author{Role: string(auth.RoleVisitor), ID: env.Person}, At: p.PostedAt, Withdrawn: true}
	case *event.Closed:
		ev.Type = TypeClosed
	case *event.Rated:
		ev.Type = TypeRated
	}
	return [][]byte{h.encode(ev)}, rt, true
}

// recipients returns the sessions of t (nil: none) that may see an event
// of the visitor's conversation that goes by rt: those rt.shows, found by
// lookups rather than by asking every session.
func (h *Hub) recipients(t *tenantSessions, visitor string, rt route) []*session {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if t == nil {
		return nil
	}
	var to []*session
	for s := range t.visitors[visitor] {
		to = append(to, s)
	}
	for s := range t.overseers {
		to = append(to, s)
	}
	switch {
	case !rt.placed:
	case rt.was == "" || rt.now == "":
		// Unassigned until now, or from now on: every agent of the tenant
		// saw it, or may take it.
		for _, ss := range t.agents {
			for s := range ss {
				to = append(to, s)
			}
		}
	default:
		// Its agent until now and its new one.
		for s := range t.agents[rt.was] {
			to = append(to, s)
		}
		if rt.now != rt.was {
			for s := range t.agents[rt.now] {
				to = append(to, s)
			}
		}
	}
	return to
}

// open decrypts env's payload into v; false means it cannot be read (the
// subject was erased, or the key service failed).
func (h *Hub) open(ctx context.Context, env event.Envelope, v any) bool {
	keys, err := h.keys.Get(ctx, env.Tenant, env.Person)
	if err != nil {
		if !errors.Is(err, personkey.ErrNotFound) {
			h.log.Warn("live: get key", "tenant", env.Tenant, "event_id", env.ID, "err", err)
		}
		return false
	}
	if err := env.Open(keys.Data, v); err != nil {
		h.log.Warn("live: open event", "tenant", env.Tenant, "event_id", env.ID, "err", err)
		return false
	}
	return true
}

func (h *Hub) encode(e Event) []byte {
	b, _ := json.Marshal(e) // strings, ints and times always encode
	return b
}

// session is one connected client.
type session struct {
	p auth.Principal
	// conn is set once the handshake completes (attach); until then events
	// wait in queue.
	conn *websocket.Conn
	// room is signalled each time the writer takes a frame off the queue,
	// for a replay waiting to add more.
	room chan struct{}

	mu      sync.Mutex
	queue   [][]byte
	writing bool
	closed  bool
	// code and reason are those of a close asked for before the session
	// had its connection (0: none), which attach sends.
	code   websocket.StatusCode
	reason string
	// last is the sequence of the last event queued: an event at or below
	// it was sent already.
	last uint64
	// typing bounds the typing signals the client sends.
	typing *rate.Limiter
	// replaying is set while the missed events are read; live events wait
	// in held meanwhile, at most QueueLen of them (overflow set past it).
	replaying bool
	held      []heldEvent
	overflow  bool
}

type heldEvent struct {
	seq    uint64
	frames [][]byte
}

// errSessionClosed ends a replay to a session that is gone.
var errSessionClosed = errors.New("live: session closed")

// deliver queues the frames of the live event at seq, once; during a
// replay it holds them.
func (s *session) deliver(seq uint64, frames [][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.replaying {
		if len(s.held) >= QueueLen {
			s.overflow = true
			return
		}
		s.held = append(s.held, heldEvent{seq, frames})
		return
	}
	s.queueEvent(seq, frames)
}

// signal queues a frame of no event, such as typing, unless a replay is
// running (it would come out of order) or the queue is half full: it is
// worth less than an event.
func (s *session) signal(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.replaying && len(s.queue) < QueueLen/2 {
		s.enqueue(b)
	}
}

// notice queues a frame of no event that must not be lost, such as an
// erasure: during a replay, where it would come out of order, the client is
// told to resync after it instead, and its reload shows what changed.
func (s *session) notice(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.replaying {
		s.overflow = true
		return
	}
	s.enqueue(b)
}

// queueEvent queues the frames of the event at seq unless it was sent;
// s.mu is held.
func (s *session) queueEvent(seq uint64, frames [][]byte) {
	if seq <= s.last {
		return
	}
	s.last = seq
	for _, f := range frames {
		s.enqueue(f)
	}
}

// replayed queues the frames of a missed event at seq, waiting while the
// queue is half full, so that a replay never overflows it.
func (s *session) replayed(ctx context.Context, seq uint64, frames [][]byte) error {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return errSessionClosed
		}
		if len(s.queue) < QueueLen/2 {
			s.queueEvent(seq, frames)
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
		select {
		case <-s.room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// endReplay switches s to live delivery: it queues the resync frame when
// the replay failed or live events held meanwhile were dropped for want of
// room, then the held events it did not send.
func (s *session) endReplay(resync []byte, failed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if failed || s.overflow {
		s.enqueue(resync)
	}
	for _, e := range s.held {
		s.queueEvent(e.seq, e.frames)
	}
	s.replaying, s.held, s.overflow = false, nil, false
}

// enqueue queues b for the client without blocking; a client whose queue
// is full is disconnected. s.mu is held.
func (s *session) enqueue(b []byte) {
	if s.closed {
		return
	}
	if len(s.queue) >= QueueLen {
		// A client this far behind would not read a close frame either.
		s.closed = true
		s.queue = nil
		s.wake()
		if s.conn != nil {
			go s.conn.CloseNow()
		}
		return
	}
	s.queue = append(s.queue, b)
	s.startWriting()
}

// startWriting starts the session's writer when it has a connection, events
// to write and no writer yet; s.mu is held.
func (s *session) startWriting() {
	if s.conn != nil && len(s.queue) > 0 && !s.writing {
		s.writing = true
		go s.flush()
	}
}

// attach gives the session its connection once the handshake completed, and
// closes it at once when the session was closed before.
func (s *session) attach(conn *websocket.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conn = conn
	if s.closed {
		if s.code != 0 {
			go conn.Close(s.code, s.reason)
		} else {
			go conn.CloseNow()
		}
		return
	}
	s.startWriting()
}

func (s *session) flush() {
	for {
		s.mu.Lock()
		if s.closed || len(s.queue) == 0 {
			s.writing = false
			// Let an idle session drop its queue's backing array.
			s.queue = nil
			s.mu.Unlock()
			return
		}
		b := s.queue[0]
		s.queue[0] = nil
		s.queue = s.queue[1:]
		s.mu.Unlock()
		s.wake()

		ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
		err := s.conn.Write(ctx, websocket.MessageText, b)
		cancel()
		if err != nil {
			s.closeNow()
		}
	}
}

// close ends the session with a close handshake, in the background so the
// caller never waits on the client.
func (s *session) close(code websocket.StatusCode, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.queue = nil
	s.wake()
	if s.conn == nil {
		s.code, s.reason = code, reason
		return
	}
	go s.conn.Close(code, reason)
}

// wake tells a replay waiting for room to look again.
func (s *session) wake() {
	select {
	case s.room <- struct{}{}:
	default:
	}
}

func (s *session) closeNow() {
	s.mu.Lock()
	s.closed = true
	s.queue = nil
	conn := s.conn
	s.mu.Unlock()
	s.wake()
	// A session still in its handshake has no connection yet: attach
	// closes it.
	if conn != nil {
		conn.CloseNow()
	}
}
