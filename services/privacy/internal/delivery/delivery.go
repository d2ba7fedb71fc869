// Package delivery delivers conversation events to the bots and
// integrations admins register (privacyapi.Integration, in the
// INTEGRATIONS bucket), and tells them of erasures.
//
// Each integration has a durable consumer of CHAT of its own, filtered to
// its tenant's conversations (chat.<tenant>.*) and starting at its
// registration, with one message in flight (MaxAckPending 1), so that an
// integration receives its events in order, one at a time, whichever
// privacy instance pulls: every instance pulls every integration's
// consumer. The instances learn of integrations from a mirror of the
// bucket (pkg/kvmirror): a new one's consumer is made, a deleted one's
// deleted.
//
// An event is delivered only when all of these hold: it opens under its
// visitor's keys (an erased visitor's events are never delivered); for a
// bot, its stamp names the bot as the conversation's assignee, or as the
// assignee before it (so a bot learns that it was handed off); and the
// visitor's ai consent held at the event and holds at the attempt
// (app.ConsentAt, after catching up with consents and erasure requests
// other instances stored, and asking for the keys again), so a withdrawal
// stops delivery at the next event, and a backlog retried past it is
// dropped. An event skipped for not being the bot's is skipped before the
// catch-up, a request to the server: it is delivered to no one either way. Every text is redacted (pkg/redact) before
// it is put in the body (Body). The body is signed with the integration's
// secret (pkg/webhook) and POSTed to its webhook within a timeout, or
// sent as a NATS request to its subject; a 2xx answer, or any reply on
// NATS, acknowledges it. An attempt that is not acknowledged is tried
// again after the next wait of the backoff (NakWithDelay: 1 s, 5 s, 30 s,
// 2 min, 10 min, 30 min, 1 h, 3 h by default), and abandoned after the
// last: the consumer then moves on. A failure on Parley's side (the bus,
// the keys, the secret) is no attempt: it is retried in place, the
// message kept in progress, so the server's count of deliveries is the
// count of attempts. Every attempt is written to the
// delivery log (stream DELIVERIES): event id, type, attempt, outcome,
// status, duration, time — no content.
//
// Before an integration first receives a visitor's event, a record that
// it did is stored (stream RECIPIENTS, one message per visitor and
// integration). An erasure reads them (Notifier): each such integration
// is sent a signed "subject erased" notice, the erasure waits a bounded
// time for the acknowledgements, and the records are purged. A notice
// not acknowledged by then stays in the NOTICES work queue, and a durable
// consumer shared by the instances sends it again with the same backoff.
// A delivery acknowledged while an erasure of its visitor ran may have
// stored its record after the erasure read or purged them: after each,
// the erasure requests are caught up with again, and, for a visitor whose
// erasure completed, that record is purged and one more notice stored.
// While the erasure runs the event is looked at again a second later
// (the integration's next events wait), so that the purge cannot come
// before the erasure read the record and leave the integration out of
// its report.
package delivery

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/kvmirror"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/retry"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/privacy/internal/app"
)

// Defaults of Config.
const (
	DefaultTimeout    = 10 * time.Second
	DefaultNoticeWait = 2 * time.Second
)

// DefaultBackoff is the waits between the attempts at a delivery: nine
// attempts over about five hours, then it is abandoned.
var DefaultBackoff = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute,
	10 * time.Minute, 30 * time.Minute, time.Hour, 3 * time.Hour}

const (
	// consumerPrefix starts the name of every integration's consumer.
	consumerPrefix = "delivery-"
	// pullWait bounds one pull of an integration's consumer.
	pullWait = 5 * time.Second
	// reconcileEvery is how often the consumers are matched with the
	// integrations the mirror holds.
	reconcileEvery = time.Second
	// transientDelay is the wait after a failure on Parley's side (the
	// bus, the keys), which is no attempt at the integration.
	transientDelay = time.Second
	// erasureWait is how long after an erasure's request followErasure
	// waits for it to complete: past app.StalledAfter, when FinishStalled
	// takes over an erasure whose instance stopped, and two of its rounds
	// a minute apart.
	erasureWait = app.StalledAfter + 2*time.Minute
	// maxRecorded bounds the recipients an instance remembers recording.
	maxRecorded = 100_000
)

// Config tunes deliveries. The zero value works.
type Config struct {
	// Backoff is the waits between attempts; len(Backoff)+1 attempts are
	// made. Empty means DefaultBackoff.
	Backoff []time.Duration
	// Timeout bounds one attempt; 0 means DefaultTimeout.
	Timeout time.Duration
	// NoticeWait bounds how long an erasure waits for the integrations to
	// acknowledge its notice; 0 means DefaultNoticeWait.
	NoticeWait time.Duration
	// PrivateAddresses lets webhooks go to this host and private networks
	// (egress.Public); without it they go to public addresses only.
	PrivateAddresses bool
	// HTTPClient sends webhooks; nil means newClient's, which follows no
	// redirect and keeps to PrivateAddresses. Its own Timeout, if any,
	// adds to Timeout.
	HTTPClient *http.Client
}

func (c Config) withDefaults() Config {
	if len(c.Backoff) == 0 {
		c.Backoff = DefaultBackoff
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.NoticeWait <= 0 {
		c.NoticeWait = DefaultNoticeWait
	}
	if c.HTTPClient == nil {
		c.HTTPClient = newClient(c.PrivateAddresses)
	}
	return c
}

// App is what deliveries need of the privacy service.
type App interface {
	// HeldKeys returns a subject's keys, false when it has none left
	// (app.App.HeldKeys).
	HeldKeys(ctx context.Context, tenant, subject string) (personkey.Keys, bool, error)
	// ErasureOf returns the id of the subject's erasure, "" when none was
	// requested, when it was requested, and whether it is completed
	// (app.App.ErasureOf).
	ErasureOf(ctx context.Context, tenant, subject string) (id string, requested time.Time, completed bool, err error)
	// ConsentAt returns the consent in force at a time (app.App.ConsentAt).
	ConsentAt(ctx context.Context, tenant, subject string, at time.Time) (event.Consent, bool, error)
	// CatchUp returns once every PRIVACY event stored before the call is
	// in the consent history.
	CatchUp(ctx context.Context) error
}

// Integrations is the mirror of the INTEGRATIONS bucket.
type Integrations = kvmirror.Mirror[privacyapi.Integration]

// WatchIntegrations starts the mirror of the INTEGRATIONS bucket that
// deliveries and erasure notices read.
func WatchIntegrations(ctx context.Context, js jetstream.JetStream, log *slog.Logger, giveUp time.Duration, health func(error)) *Integrations {
	return kvmirror.Start(ctx, js, kvmirror.Config[privacyapi.Integration]{
		Bucket: privacyapi.IntegrationsBucket, Log: log, Health: health, GiveUp: giveUp})
}

// Deliverer runs the consumers of every integration. Run it once.
type Deliverer struct {
	js      jetstream.JetStream
	app     App
	ints    *Integrations
	out     *sender
	backoff []time.Duration
	log     *slog.Logger

	mu sync.Mutex
	// recorded holds the recipients this instance stored, so that it
	// stores each once, not at every event.
	recorded map[string]struct{}
}

// New returns the deliverer of the integrations ints holds, reading CHAT
// through js, opening events with a's keys and secrets with secret.
func New(nc *nats.Conn, js jetstream.JetStream, a App, ints *Integrations, secret SecretOpener, log *slog.Logger, c Config) *Deliverer {
	c = c.withDefaults()
	log = log.With("component", "delivery")
	return &Deliverer{js: js, app: a, ints: ints, backoff: c.Backoff, log: log,
		out: newSender(nc, js, c, secret, log), recorded: make(map[string]struct{})}
}

// ConsumerName is the name of the durable consumer of tenant's
// integration id: a hash, since "-" may be in both (the consumer's
// metadata names them).
func ConsumerName(tenant, id string) string {
	h := sha256.Sum256([]byte(privacyapi.IntegrationKey(tenant, id)))
	return consumerPrefix + hex.EncodeToString(h[:16])
}

// Run delivers until ctx is done, then returns nil. health hears of each
// part that fails (the mirror, an integration's consumer) and nil once it
// works again; Run returns an error once one has kept failing for giveUp.
func (d *Deliverer) Run(ctx context.Context, giveUp time.Duration, health func(part string, err error)) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		running := make(map[string]runner)
		defer func() {
			for _, r := range running {
				r.stop()
			}
		}()
		tick := time.NewTicker(reconcileEvery)
		defer tick.Stop()
		cleaned := false
		for {
			if d.ints.Ready() {
				d.reconcile(gctx, g, giveUp, health, running)
				if !cleaned {
					cleaned = d.removeOrphans(gctx) == nil
				}
			}
			select {
			case <-gctx.Done():
				return nil
			case <-d.ints.Done():
				return d.ints.Err()
			case <-tick.C:
			}
		}
	})
	return g.Wait()
}

// runner is an integration's consumer running.
type runner struct {
	created time.Time
	stop    context.CancelFunc
}

// reconcile starts a runner for each integration the mirror holds without
// one, and stops and deletes the consumer of each that is gone (or was
// registered again).
func (d *Deliverer) reconcile(ctx context.Context, g *errgroup.Group, giveUp time.Duration, health func(string, error), running map[string]runner) {
	seen := make(map[string]privacyapi.Integration)
	d.ints.Range(func(key string, rec privacyapi.Integration) bool {
		seen[key] = rec
		return true
	})
	for key, r := range running {
		if rec, ok := seen[key]; ok && rec.CreatedAt.Equal(r.created) {
			continue
		}
		r.stop()
		delete(running, key)
		tenant, id, _ := strings.Cut(key, ".")
		if err := d.deleteConsumer(ctx, tenant, id); err != nil {
			d.log.Warn("delete the consumer of a removed integration", "tenant", tenant, "integration", id, "err", err)
		}
	}
	for key, rec := range seen {
		if _, ok := running[key]; ok || !stream.ValidToken(rec.Tenant) || !stream.ValidToken(rec.ID) || key != privacyapi.IntegrationKey(rec.Tenant, rec.ID) {
			continue
		}
		rctx, stop := context.WithCancel(ctx)
		running[key] = runner{created: rec.CreatedAt, stop: stop}
		part := "delivery " + rec.Tenant + "/" + rec.ID
		g.Go(func() error {
			defer health(part, nil)
			err := retry.Keep(rctx, giveUp, func(err error) { health(part, err) }, func(ctx context.Context, working func()) error {
				cons, err := d.consumer(ctx, rec)
				if err != nil {
					return err
				}
				working()
				return d.pull(ctx, key, cons)
			})
			if err != nil {
				return fmt.Errorf("%s: %w", part, err)
			}
			return nil
		})
	}
}

// Metadata keys of an integration's consumer.
const (
	metaTenant  = "parley_tenant"
	metaID      = "parley_integration"
	metaCreated = "parley_created_at"
)

// consumer makes rec's consumer when missing; one left from an earlier
// registration under the same id is replaced.
func (d *Deliverer) consumer(ctx context.Context, rec privacyapi.Integration) (jetstream.Consumer, error) {
	chat, err := d.js.Stream(ctx, stream.Chat)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", stream.Chat, err)
	}
	name := ConsumerName(rec.Tenant, rec.ID)
	created := rec.CreatedAt.UTC().Format(time.RFC3339Nano)
	if c, err := chat.Consumer(ctx, name); err == nil && c.CachedInfo().Config.Metadata[metaCreated] != created {
		if err := chat.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("replace consumer %s: %w", name, err)
		}
	}
	start := rec.CreatedAt
	cons, err := chat.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "deliveries to an integration",
		FilterSubject: stream.ChatSubject(rec.Tenant, "*"),
		DeliverPolicy: jetstream.DeliverByStartTimePolicy,
		OptStartTime:  &start,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       d.out.ackWait(),
		// One at a time, in order, whichever instance pulls.
		MaxAckPending: 1,
		Metadata:      map[string]string{metaTenant: rec.Tenant, metaID: rec.ID, metaCreated: created},
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", name, err)
	}
	return cons, nil
}

func (d *Deliverer) deleteConsumer(ctx context.Context, tenant, id string) error {
	err := d.js.DeleteConsumer(ctx, stream.Chat, ConsumerName(tenant, id))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil
	}
	return err
}

// removeOrphans deletes the consumers of integrations deleted while no
// instance ran.
func (d *Deliverer) removeOrphans(ctx context.Context) error {
	chat, err := d.js.Stream(ctx, stream.Chat)
	if err != nil {
		return err
	}
	infos := chat.ListConsumers(ctx)
	var failed error
	// Read to the end even after a failure: the lister's goroutine sends
	// each consumer unguarded, whatever ctx says, and would be left blocked.
	for info := range infos.Info() {
		tenant, id := info.Config.Metadata[metaTenant], info.Config.Metadata[metaID]
		if failed != nil || tenant == "" || info.Name != ConsumerName(tenant, id) {
			continue
		}
		if _, ok := d.ints.Get(privacyapi.IntegrationKey(tenant, id)); !ok {
			failed = d.deleteConsumer(ctx, tenant, id)
		}
	}
	if failed != nil {
		return failed
	}
	return infos.Err()
}

// pull delivers the events of cons, one at a time, until ctx ends or the
// consumer fails.
func (d *Deliverer) pull(ctx context.Context, key string, cons jetstream.Consumer) error {
	return pullEach(ctx, cons, 1, func(m jetstream.Msg) { d.handle(ctx, key, m) })
}

// pullEach fetches up to n messages of cons at a time and hands each to
// handle, until ctx ends (nil) or a fetch fails (its error).
func pullEach(ctx context.Context, cons jetstream.Consumer, n int, handle func(jetstream.Msg)) error {
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, pullWait)
		batch, err := cons.Fetch(n, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for m := range batch.Messages() {
			handle(m)
		}
		cancel()
		if err := batch.Error(); err != nil && ctx.Err() == nil &&
			!errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
			return err
		}
	}
	return nil
}

// handle delivers m to the integration of key, or skips it, and acks,
// naks with the backoff's wait, or terminates it. A failure on Parley's
// side (the bus, the keys, the secret) is no attempt: it is retried here,
// m kept in progress, so that m's NumDelivered counts the attempts at the
// integration (and a redelivery after this instance stopped) and nothing
// else. Naks and their counts are the server's; counting in the log
// instead would cost a read per attempt for the same number.
func (d *Deliverer) handle(ctx context.Context, key string, m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		_ = m.Term()
		return
	}
	defer keepInProgress(m, d.out.ackWait())()
	var a attempt
	var decided error
	err = untilDone(ctx, d.log, "prepare a delivery", func() error {
		rec, ok := d.ints.Get(key)
		if !ok {
			// Deleted meanwhile: its consumer goes with it.
			decided = errGone
			return nil
		}
		a, decided = d.prepare(ctx, rec, m, md)
		if errors.Is(decided, errSkip) || errors.Is(decided, errWithdrawn) {
			return nil
		}
		return decided
	})
	switch {
	case err != nil, errors.Is(decided, errGone):
		// Stopping, or the integration deleted: another instance, or
		// this one's next look at the registry, takes it on.
		_ = m.NakWithDelay(transientDelay)
		return
	case errors.Is(decided, errWithdrawn):
		if err := d.out.logAttempt(ctx, a, privacyapi.OutcomeWithdrawn, 0, 0); err != nil {
			d.log.Warn("log a delivery", "tenant", a.rec.Tenant, "integration", a.rec.ID, "err", err)
		}
		_ = m.Ack()
		return
	case errors.Is(decided, errSkip):
		// Redelivered after an attempt: the visitor may have been erased
		// since it was made, or be being erased (errErasing).
		if md.NumDelivered > 1 && a.visitor != "" && d.followErasure(ctx, a) != nil {
			_ = m.NakWithDelay(transientDelay)
			return
		}
		_ = m.Ack()
		return
	}
	if !d.deliver(ctx, a) {
		if a.n > len(d.backoff) {
			_ = m.Term()
			return
		}
		_ = m.NakWithDelay(d.backoff[a.n-1])
		return
	}
	if err := d.followErasure(ctx, a); err != nil {
		// Stopping: sent again, with the same id, and the receiver sees
		// a retry. errErasing: the erasure requested refuses the keys, so
		// it is skipped then and the erasure followed once completed.
		_ = m.NakWithDelay(transientDelay)
		return
	}
	_ = m.Ack()
}

// followErasure makes sure an erasure of a's visitor requested while a
// was on its way reaches a's integration. That erasure read the
// recipients, or purged them, perhaps before a's record was stored: once
// it completed, the record is purged here, and one more notice stored in
// NOTICES (its id names the event too), which the notices' consumer
// sends. While it runs, errErasing: a purge now could come before the
// erasure read the recipients, which would leave the integration out of
// its report (the notice stored here would still tell it). The
// integration's later events wait meanwhile, for erasureWait at most: an
// erasure that long under way is one whose steps keep failing, which
// FinishStalled goes on trying. Safe to repeat; nothing is done when no
// erasure was requested.
func (d *Deliverer) followErasure(ctx context.Context, a attempt) error {
	running := false
	err := untilDone(ctx, d.log, "follow an erasure", func() error {
		if err := d.app.CatchUp(ctx); err != nil {
			return err
		}
		erasure, requested, completed, err := d.app.ErasureOf(ctx, a.rec.Tenant, a.visitor)
		if err != nil {
			return err
		}
		if erasure == "" {
			return nil
		}
		if !completed {
			if running = d.out.now().Sub(requested) < erasureWait; running {
				return nil
			}
			// The integration's later events have waited long enough.
			d.log.Warn("an erasure still not completed: its notice sent, the integration perhaps left out of its report",
				"erasure_id", erasure, "requested_at", requested)
		}
		nt := notice{Tenant: a.rec.Tenant, Integration: a.rec.ID, Kind: a.rec.Kind, Visitor: a.visitor,
			ErasureID: erasure, After: a.id, At: d.out.now()}
		if _, err := storeNotice(ctx, d.js, nt); err != nil {
			return err
		}
		subject := stream.RecipientSubject(a.rec.Tenant, a.visitor, a.rec.ID)
		d.mu.Lock()
		delete(d.recorded, subject)
		d.mu.Unlock()
		return purgeRecipients(ctx, d.js, subject)
	})
	if err == nil && running {
		return errErasing
	}
	return err
}

// deliver makes one attempt at a and logs it; it reports whether a is
// done with: acknowledged, or abandoned at its last attempt.
func (d *Deliverer) deliver(ctx context.Context, a attempt) bool {
	return attemptAndLog(ctx, d.out, a, len(d.backoff)+1)
}

// attemptAndLog makes attempt a of at most attempts, logs it, and reports
// whether it was acknowledged.
func attemptAndLog(ctx context.Context, out *sender, a attempt, attempts int) bool {
	began := time.Now()
	ok, status, err := out.send(ctx, a)
	took := time.Since(began)
	if err != nil {
		out.log.Warn("deliver", "tenant", a.rec.Tenant, "integration", a.rec.ID, "err", err)
	}
	outcome := privacyapi.OutcomeDelivered
	switch {
	case ok:
	case a.n >= attempts:
		outcome = privacyapi.OutcomeAbandoned
	default:
		outcome = privacyapi.OutcomeFailed
	}
	// Logged even when ctx ended the attempt (an erasure's wait for its
	// notices, a shutdown): the attempt was made.
	if err := out.logAttempt(context.WithoutCancel(ctx), a, outcome, status, took); err != nil {
		out.log.Warn("log a delivery", "tenant", a.rec.Tenant, "integration", a.rec.ID, "err", err)
	}
	return ok
}

// Why an event is not attempted.
var (
	// errSkip: not a Parley event, unreadable (erased), not for this bot,
	// or without ai consent at its time.
	errSkip = errors.New("not delivered")
	// errWithdrawn: tried before, and the ai consent withdrawn since.
	errWithdrawn = errors.New("ai consent withdrawn since the last attempt")
	// errGone: the integration was deleted.
	errGone = errors.New("integration deleted")
	// errErasing: the visitor's erasure is requested and not completed;
	// the event is looked at again after transientDelay, when its keys
	// are refused (errSkip) and the erasure is followed again.
	errErasing = errors.New("erasure of the visitor under way")
)

// prepare returns the attempt delivering m to rec, errSkip or
// errWithdrawn when it is not to be delivered, or another error when that
// cannot be told now. The attempt's visitor is set whenever m is an event.
func (d *Deliverer) prepare(ctx context.Context, rec privacyapi.Integration, m jetstream.Msg, md *jetstream.MsgMetadata) (attempt, error) {
	e, err := event.Parse(m.Subject(), m.Headers(), m.Data())
	if err != nil {
		return attempt{}, errSkip
	}
	a := attempt{rec: rec, id: e.ID, typ: string(e.Type), n: int(md.NumDelivered), visitor: e.Person}
	payload := event.NewPayload(e.Type)
	if payload == nil {
		return a, errSkip
	}
	// Whether the event is a bot's is sealed in its stamp: it is opened
	// with the keys held now, before catching up, so that the events a
	// bot's consumer skips, most of its tenant's, cost no request. A skip
	// delivers nothing, so keys an erasure is about to refuse may decide
	// one; they are asked for again once caught up, before anything leaves.
	k, err := d.keysOf(ctx, e.Tenant, e.Person)
	if err != nil {
		return a, err
	}
	if err := e.Open(k.Data, payload); err != nil {
		return a, errSkip
	}
	st := event.StampOf(payload)
	if rec.Kind == privacyapi.KindBot {
		bot := event.BotAssignee(rec.ID)
		if st == nil || st.Assignee != bot && st.PreviousAssignee != bot {
			return a, errSkip
		}
	}
	// Consents and erasure requests other instances stored before this
	// event reached us must be known: a visitor who withdraws, then
	// writes, is not delivered, nor one whose erasure began (their keys
	// are refused from its request on).
	if err := d.app.CatchUp(ctx); err != nil {
		return a, err
	}
	if _, err := d.keysOf(ctx, e.Tenant, e.Person); err != nil {
		return a, err
	}
	// The consent must have held at the event and hold now: a backlog
	// retried past a withdrawal is dropped.
	if c, ok, err := d.app.ConsentAt(ctx, e.Tenant, e.Person, e.At); err != nil || !ok || !c.AI {
		return a, cmp.Or(err, errSkip)
	}
	c, ok, err := d.app.ConsentAt(ctx, e.Tenant, e.Person, d.out.now())
	if err != nil {
		return a, err
	}
	if !ok || !c.AI {
		if a.n > 1 {
			return a, errWithdrawn
		}
		return a, errSkip
	}
	if a.secret, err = d.out.secret(rec); err != nil {
		return a, fmt.Errorf("open the signing secret: %w", err)
	}
	if err := d.record(ctx, rec, e.Person); err != nil {
		return a, err
	}
	if a.body, err = json.Marshal(bodyOf(e, md.Sequence.Stream, payload, st)); err != nil {
		return a, err
	}
	return a, nil
}

// keysOf returns the keys of tenant's visitor, errSkip when none are held:
// erased, or their erasure requested as far as this instance knows.
func (d *Deliverer) keysOf(ctx context.Context, tenant, visitor string) (personkey.Keys, error) {
	k, held, err := d.app.HeldKeys(ctx, tenant, visitor)
	switch {
	case err != nil:
		return personkey.Keys{}, err
	case !held:
		return personkey.Keys{}, errSkip
	}
	return k, nil
}

// recipient is the record that an integration received a visitor's
// events: what an erasure notice needs when the integration is gone.
type recipient struct {
	Kind string `json:"kind"`
}

// record stores that rec receives visitor's events, before the first is
// sent, unless this instance stored it already.
func (d *Deliverer) record(ctx context.Context, rec privacyapi.Integration, visitor string) error {
	subject := stream.RecipientSubject(rec.Tenant, visitor, rec.ID)
	d.mu.Lock()
	_, done := d.recorded[subject]
	d.mu.Unlock()
	if done {
		return nil
	}
	data, err := json.Marshal(recipient{Kind: rec.Kind})
	if err != nil {
		return err
	}
	m := nats.NewMsg(subject)
	m.Data = data
	if _, err := d.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("record recipient: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.recorded) >= maxRecorded {
		clear(d.recorded)
	}
	d.recorded[subject] = struct{}{}
	return nil
}
