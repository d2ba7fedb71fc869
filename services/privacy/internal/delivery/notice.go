package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/retry"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/privacy/internal/app"
)

// NoticesDurable is the name of the consumer of NOTICES that sends the
// notices an erasure's own attempt did not get acknowledged. It never
// changes.
const NoticesDurable = "privacy-erasure-notices"

// notice is a pending "subject erased" notice as NOTICES stores it.
type notice struct {
	Tenant      string    `json:"tenant"`
	Integration string    `json:"integration"`
	Kind        string    `json:"kind"`
	Visitor     string    `json:"visitor"`
	ErasureID   string    `json:"erasure_id"`
	At          time.Time `json:"at"`
	// After, when set, is the id of an event of the visitor delivered
	// while the erasure ran (Deliverer.followErasure): this notice
	// follows it, and the erasure made no attempt at it.
	After string `json:"after,omitempty"`
}

// id is the notice's id, the same however often it is stored or sent.
func (n notice) id() string {
	id := "erasure-notice/" + n.ErasureID + "/" + n.Integration
	if n.After != "" {
		id += "/after/" + n.After
	}
	return event.DerivedID(id)
}

// storeNotice stores nt in NOTICES, once within its duplicate window, and
// returns where.
func storeNotice(ctx context.Context, js jetstream.JetStream, nt notice) (uint64, error) {
	data, err := json.Marshal(nt)
	if err != nil {
		return 0, err
	}
	m := nats.NewMsg(stream.NoticeSubject(nt.Tenant, nt.Integration))
	m.Header.Set(jetstream.MsgIDHeader, nt.id())
	m.Data = data
	ack, err := js.PublishMsg(ctx, m)
	if err != nil {
		return 0, fmt.Errorf("store erasure notice: %w", err)
	}
	return ack.Sequence, nil
}

// purgeRecipients removes the records of who received a visitor that
// subject (a RecipientSubject, or one with a wildcard) matches, leaving
// no marker that names them.
func purgeRecipients(ctx context.Context, js jetstream.JetStream, subject string) error {
	st, err := js.Stream(ctx, stream.Recipients)
	if err != nil {
		return err
	}
	return st.Purge(ctx, jetstream.WithPurgeSubject(subject))
}

func (n notice) body() ([]byte, error) {
	return json.Marshal(Body{ID: n.id(), Type: ErasedType, Tenant: n.Tenant, VisitorID: n.Visitor, At: n.At.UTC(), ErasureID: n.ErasureID})
}

// Notifier tells integrations of erasures (app.ErasureNotifier), and
// sends again, from NOTICES, the notices they did not acknowledge in
// time. It is safe for concurrent use; run it once.
type Notifier struct {
	js      jetstream.JetStream
	ints    *Integrations
	out     *sender
	backoff []time.Duration
	wait    time.Duration
	log     *slog.Logger
	now     func() time.Time
}

// NewNotifier returns the notifier of the integrations ints holds.
func NewNotifier(nc *nats.Conn, js jetstream.JetStream, ints *Integrations, secret SecretOpener, log *slog.Logger, c Config) *Notifier {
	c = c.withDefaults()
	log = log.With("component", "erasure notices")
	return &Notifier{js: js, ints: ints, backoff: c.Backoff, wait: c.NoticeWait, log: log, now: time.Now,
		out: newSender(nc, js, c, secret, log)}
}

// Prepare implements app.ErasureNotifier: a notice stored in NOTICES for
// each integration that has a record of receiving the subject's events.
// A repeat within NOTICES's duplicate window stores each once.
func (n *Notifier) Prepare(ctx context.Context, tenant, subject, erasureID string) ([]app.ErasureNotice, error) {
	st, err := n.js.Stream(ctx, stream.Recipients)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", stream.Recipients, err)
	}
	prefix := stream.RecipientSubject(tenant, subject, "")
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(prefix+"*"))
	if err != nil {
		return nil, fmt.Errorf("list recipients: %w", err)
	}
	var out []app.ErasureNotice
	for subj := range info.State.Subjects {
		id := strings.TrimPrefix(subj, prefix)
		kind, err := n.kindOf(ctx, st, tenant, id, subj)
		if err != nil {
			return nil, err
		}
		nt := notice{Tenant: tenant, Integration: id, Kind: kind, Visitor: subject, ErasureID: erasureID, At: n.now()}
		seq, err := storeNotice(ctx, n.js, nt)
		if err != nil {
			return nil, err
		}
		out = append(out, app.ErasureNotice{Integration: id, Kind: kind, At: nt.At, Seq: seq})
	}
	return out, nil
}

// kindOf returns the kind of tenant's integration id: the registered
// one's, or, for one deleted since, what its recipient record at subj
// says.
func (n *Notifier) kindOf(ctx context.Context, st jetstream.Stream, tenant, id, subj string) (string, error) {
	if rec, ok := n.ints.Get(privacyapi.IntegrationKey(tenant, id)); ok {
		return rec.Kind, nil
	}
	m, err := st.GetLastMsgForSubject(ctx, subj)
	if err != nil {
		return "", fmt.Errorf("read recipient %s: %w", subj, err)
	}
	var r recipient
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return "", fmt.Errorf("read recipient %s: %w", subj, err)
	}
	return r.Kind, nil
}

// Notify implements app.ErasureNotifier: each notice is sent at once, all
// at the same time, each waited for until the notice wait or ctx's
// deadline, whichever is first; an acknowledged one is removed from
// NOTICES. The recipients' records are purged last.
func (n *Notifier) Notify(ctx context.Context, tenant, subject, erasureID string, notices []app.ErasureNotice) []privacyapi.ErasureIntegration {
	wait := n.wait
	if dl, ok := ctx.Deadline(); ok {
		// Keep half of what is left for the rest of the erasure.
		wait = min(wait, time.Until(dl)/2)
	}
	sctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	out := make([]privacyapi.ErasureIntegration, len(notices))
	var wg sync.WaitGroup
	for i, nt := range notices {
		out[i] = privacyapi.ErasureIntegration{ID: nt.Integration, Kind: nt.Kind}
		rec, ok := n.ints.Get(privacyapi.IntegrationKey(tenant, nt.Integration))
		if !ok {
			// Deleted: no one to tell. Its notice goes with the retries'
			// first look.
			continue
		}
		wg.Go(func() {
			// The body the retries would send: the same id and date.
			pending := notice{Tenant: tenant, Integration: nt.Integration, Kind: nt.Kind, Visitor: subject, ErasureID: erasureID, At: nt.At}
			body, err := pending.body()
			if err != nil {
				return
			}
			secret, err := n.out.secret(rec)
			if err != nil {
				// No attempt: the retries send it.
				n.log.Warn("open the signing secret of an erasure notice", "tenant", tenant, "integration", nt.Integration, "err", err)
				return
			}
			a := attempt{rec: rec, id: pending.id(), typ: ErasedType, n: 1, body: body, secret: secret, visitor: subject}
			if !attemptAndLog(sctx, n.out, a, len(n.backoff)+1) {
				return
			}
			out[i].Acknowledged = true
			if err := n.remove(context.WithoutCancel(ctx), nt.Seq); err != nil {
				n.log.Warn("remove an acknowledged erasure notice; it is sent again", "tenant", tenant, "integration", nt.Integration, "err", err)
			}
		})
	}
	wg.Wait()
	if len(notices) > 0 {
		if err := purgeRecipients(context.WithoutCancel(ctx), n.js, stream.RecipientSubject(tenant, subject, "*")); err != nil {
			n.log.Warn("purge the recipients of an erased subject", "tenant", tenant, "err", err)
		}
	}
	return out
}

// remove deletes the notice stored at seq, acknowledged.
func (n *Notifier) remove(ctx context.Context, seq uint64) error {
	st, err := n.js.Stream(ctx, stream.Notices)
	if err != nil {
		return err
	}
	if err := st.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return err
	}
	return nil
}

// Run sends the pending notices again until ctx is done, then returns
// nil; health hears of the consumer's failures, and Run returns an error
// once it has kept failing for giveUp.
func (n *Notifier) Run(ctx context.Context, giveUp time.Duration, health func(error)) error {
	return retry.Keep(ctx, giveUp, health, func(ctx context.Context, working func()) error {
		cons, err := n.js.CreateOrUpdateConsumer(ctx, stream.Notices, jetstream.ConsumerConfig{
			Durable:       NoticesDurable,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       n.out.ackWait(),
			MaxAckPending: 64,
		})
		if err != nil {
			return fmt.Errorf("create consumer %s: %w", NoticesDurable, err)
		}
		working()
		return pullEach(ctx, cons, 1, func(m jetstream.Msg) { n.handle(ctx, m) })
	})
}

// handle sends a pending notice again, unless its erasure is still
// sending it, and acks it once acknowledged or abandoned.
func (n *Notifier) handle(ctx context.Context, m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		_ = m.Term()
		return
	}
	var nt notice
	if err := json.Unmarshal(m.Data(), &nt); err != nil {
		n.log.Warn("drop a malformed erasure notice", "stream_seq", md.Sequence.Stream)
		_ = m.Term()
		return
	}
	// The erasure sends it first, for up to the notice wait; after that
	// it waits as any failed attempt does. One that follows a delivery
	// made during the erasure has had no attempt yet.
	if age, first := n.now().Sub(md.Timestamp), n.wait+n.backoff[0]; nt.After == "" && age < first {
		_ = m.NakWithDelay(first - age)
		return
	}
	defer keepInProgress(m, n.out.ackWait())()
	rec, ok := n.ints.Get(privacyapi.IntegrationKey(nt.Tenant, nt.Integration))
	if !ok {
		// Deleted: no one left to tell.
		_ = m.Term()
		return
	}
	body, err := nt.body()
	if err != nil {
		_ = m.Term()
		return
	}
	var secret []byte
	if err := untilDone(ctx, n.log, "open the signing secret of an erasure notice", func() (err error) {
		secret, err = n.out.secret(rec)
		return err
	}); err != nil {
		// Stopping: another instance sends it.
		_ = m.NakWithDelay(transientDelay)
		return
	}
	// NumDelivered counts this message's attempts and the hold-back above
	// (a failure on Parley's side is retried in place): the erasure's own
	// attempt was the first, and the hold-back stands for it.
	a := attempt{rec: rec, id: nt.id(), typ: ErasedType, n: int(md.NumDelivered), body: body, secret: secret, visitor: nt.Visitor}
	if nt.After == "" {
		a.n = max(a.n, 2)
	}
	attempts := len(n.backoff) + 1
	switch {
	case attemptAndLog(ctx, n.out, a, attempts), a.n >= attempts:
		_ = m.Ack()
	default:
		_ = m.NakWithDelay(n.backoff[a.n-1])
	}
}
