package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/privacyapi"
	pkgrpc "github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/chat/internal/app"
	"github.com/parley-chat/parley/services/chat/internal/jetstream"
	"github.com/parley-chat/parley/services/chat/internal/privacy"
	"github.com/parley-chat/parley/services/chat/internal/rpc"
)

// Deps are what the chat service runs on.
type Deps struct {
	// NC is the bus connection; required.
	NC *nats.Conn
	// Log is the service's logger; required.
	Log *slog.Logger
	// Keys are the visitors' keys, fetched from the privacy service over the
	// bus; required.
	Keys *personkey.Cache
	// Streams tune the CHAT stream's definition.
	Streams stream.Options
	// Registry receives the service's metrics; nil means none are exported.
	Registry prometheus.Registerer
	// Health, when set, is where Run says whether this instance is ready:
	// not before its read models caught up and it serves, for the process's
	// /readyz. Its pings answer it too. Nil means Run keeps its own.
	Health *pkgrpc.Health
}

// expireEvery is how often a running instance drops the open conversations
// it holds whose events all expired (app.Service.ExpireOpen): memory only,
// as their entries leave CHAT_VIEW by their TTL. A pass looks at the open
// conversations held and reads CHAT for the expired ones alone.
const expireEvery = time.Minute

// errCatchingUp is the readiness of an instance whose read models have not
// caught up with CHAT yet.
var errCatchingUp = errors.New("catching up")

// Run creates the streams CHAT and PROFILES and the buckets CHAT_VIEW and AGENTS when missing, waits
// for the tenants' settings (the privacy service's SETTINGS bucket),
// restores the read models from CHAT_VIEW and catches up from CHAT, then
// serves the chat subjects until ctx is done. Nothing is served before the
// read models hold every event stored when Run started. It returns nil once ctx
// is done, also when that interrupts the start, and an error when it cannot
// start or its consumer fails.
func Run(ctx context.Context, d Deps) error {
	err := run(ctx, d)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func run(ctx context.Context, d Deps) error {
	switch {
	case d.NC == nil:
		return errors.New("chat: Deps.NC is required")
	case d.Log == nil:
		return errors.New("chat: Deps.Log is required")
	case d.Keys == nil:
		return errors.New("chat: Deps.Keys is required")
	}
	log := d.Log
	health := d.Health
	if health == nil {
		health = new(pkgrpc.Health)
	}
	health.Set(readModels, errCatchingUp)
	js, err := natsjs.New(d.NC)
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	store, err := jetstream.Open(ctx, js, d.Streams, log)
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	conflicts, err := conflictCounter(d.Registry)
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	settings, err := jetstream.WatchSettings(runCtx, js, log)
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	defer settings.Close()
	view, err := jetstream.OpenView(ctx, js, d.Streams, log)
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	agents, err := jetstream.OpenAgents(ctx, js, d.Streams, log)
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	profiles, err := jetstream.OpenProfiles(ctx, js, d.Streams, log)
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	privacyClient := privacy.NewClient(d.NC, log)
	svc := app.New(store, view, d.Keys, app.Options{
		Policies: settings, OnConflict: conflicts.Inc, Auditor: privacyClient, Agents: agents, Profiles: profiles,
		Bots: jetstream.NewBots(js), Consents: privacyClient,
	})
	stopOnErase := d.Keys.OnErase(func(e personkey.Erased) {
		ctx, cancel := context.WithTimeout(runCtx, viewTimeout)
		defer cancel()
		if err := svc.EraseVisitor(ctx, e.Tenant, e.Person); err != nil {
			// The next start writes the open ones: an open entry whose
			// visitor has no keys is written back as closed (Restore). A
			// closed one left holds nothing readable but in its sealed
			// part, which the destroyed key no longer opens.
			leftToNextStart(runCtx, log, "write an erased visitor's conversations to the view", err)
		}
		if err := svc.ForgetProfile(ctx, e.Tenant, e.Person); err != nil {
			// Unreadable already, its key being gone; the next start
			// removes it (ForgetErasedProfiles), as does a read of it.
			leftToNextStart(runCtx, log, "remove an erased visitor's profile", err)
		}
	})
	// The cache may outlive this service (a restart in the same process).
	defer stopOnErase()
	// Subscribed before the read models are restored, so that no erasure
	// falls between the restore and the subscription.
	erased, err := d.NC.Subscribe(privacyapi.ConversationErasedSubject, func(m *nats.Msg) {
		var e privacyapi.ConversationErased
		if json.Unmarshal(m.Data, &e) != nil {
			return
		}
		ctx, cancel := context.WithTimeout(runCtx, viewTimeout)
		defer cancel()
		if err := svc.Forget(ctx, e.Tenant, e.Conversation); err != nil {
			// The entry still goes by its own TTL, 30 s after this
			// erasure was due (app.ViewEntry.Expires).
			leftToNextStart(runCtx, log, "remove an erased conversation from the view", err)
		}
	})
	if err != nil {
		return fmt.Errorf("chat: subscribe %s: %w", privacyapi.ConversationErasedSubject, err)
	}
	defer func() { _ = erased.Unsubscribe() }()

	// The open entries only, and the store for the expired ones alone:
	// however many conversations CHAT retains, a start reads what is live.
	var applied uint64
	err = store.Retry(runCtx, "restore the view", func(ctx context.Context) error {
		applied, err = svc.Restore(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("chat: restore the view: %w", err)
	}
	g, gctx := errgroup.WithContext(runCtx)
	caughtUp := make(chan struct{})
	g.Go(func() error {
		// Whatever ended it, the requests drained after it are answered
		// from what the instance holds.
		defer svc.Unfollowed()
		return store.Follow(gctx, applied+1, svc, func() { close(caughtUp) })
	})
	g.Go(func() error { return settings.Watching(gctx) })
	g.Go(func() error {
		// A view behind the store costs a start catching up, nothing more.
		periodically(gctx, app.ViewEvery, log, "write the view", func(ctx context.Context) error { return svc.WriteView(ctx, app.ViewPace) })
		return nil
	})
	defer writeView(ctx, svc, log)
	select {
	case <-caughtUp:
	case <-gctx.Done():
		return following(g.Wait())
	}
	// The view as current as the read models when the service is ready: a
	// start that caught up far is not caught up again after a crash.
	if err := svc.WriteView(gctx, 0); err != nil && gctx.Err() == nil {
		log.Warn("write the view", "err", err)
	}

	// Requests in flight when ctx ends run to completion: their context is
	// not cancelled with ctx, and each is bounded by the bus timeouts.
	served, err := rpc.Serve(context.WithoutCancel(ctx), d.NC, log, health, svc)
	if err != nil {
		stop()
		return errors.Join(fmt.Errorf("chat: %w", err), g.Wait())
	}
	health.Set(readModels, nil)
	log.Info("chat service ready")
	g.Go(func() error {
		// Entries expire by their TTL: this pass, once for a bucket, is
		// for the closed ones an older version wrote with none. One left
		// behind serves as a closed conversation until it is removed, at
		// worst with no transcript: worth a warning, not the service, and
		// the next start runs the pass again.
		ran, err := svc.MigrateExpiry(gctx)
		switch {
		case err != nil && gctx.Err() == nil:
			log.Warn("give the view's entries their TTL; left to the next start", "err", err)
		case ran:
			log.Info("gave the view's closed entries written without a TTL theirs, or removed them; later starts skip this", "bucket", stream.ChatViewBucket)
		case err == nil:
			log.Debug("the view's closed entries were given their TTL at an earlier start", "bucket", stream.ChatViewBucket)
		}
		return nil
	})
	g.Go(func() error {
		periodically(gctx, expireEvery, log, "expire open conversations", svc.ExpireOpen)
		return nil
	})
	g.Go(func() error {
		// An erased visitor's profile, unreadable but theirs, is left
		// by an erasure this service missed or was stopped in: removed
		// now, listed again until done or the service stops, which leaves
		// it to the next start.
		var removed, skipped int
		err := store.Retry(gctx, "remove erased visitors' profiles", func(ctx context.Context) error {
			// A pass started again lists what the last one removed no
			// more: its removals add up; its skips are counted anew.
			r, s, err := svc.ForgetErasedProfiles(ctx, store.Retry)
			removed, skipped = removed+r, s
			return err
		})
		switch {
		case err != nil:
			// Only when stopping: what is left, the next start removes.
		case skipped > 0:
			// Counted, not named: the ids are personal data.
			log.Warn("removed erased visitors' profiles; visitors the key service failed for are left to the next start",
				"removed", removed, "skipped", skipped)
		default:
			log.Info("removed erased visitors' profiles", "removed", removed)
		}
		return nil
	})
	<-gctx.Done()
	// Drained: every request received is answered before Run returns.
	served.Stop()
	return following(g.Wait())
}

// periodically runs fn every interval until ctx is done; a failure is
// logged as what, and the next tick tries again.
func periodically(ctx context.Context, every time.Duration, log *slog.Logger, what string, fn func(context.Context) error) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := fn(ctx); err != nil && ctx.Err() == nil {
			log.Warn(what, "err", err)
		}
	}
}

// readModels names the read models' part of the service's health.
const readModels = "read models"

// writeView writes what the read models applied to the view once they
// stopped, so that the next start catches up from there.
func writeView(ctx context.Context, svc *app.Service, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), viewTimeout)
	defer cancel()
	if err := svc.WriteView(ctx, 0); err != nil {
		log.Warn("write the view at stop", "err", err)
	}
}

// leftToNextStart logs the failure of work an erasure asked for, which
// the next start completes: a warning, unless the service is stopping,
// which cut it short and fails nothing.
func leftToNextStart(runCtx context.Context, log *slog.Logger, what string, err error) {
	if runCtx.Err() != nil {
		log.Info(what+": stopping, left to the next start", "err", err)
		return
	}
	log.Warn(what, "err", err)
}

// following names the read models' consumer in its error.
func following(err error) error {
	if err != nil {
		return fmt.Errorf("chat: read models: %w", err)
	}
	return nil
}

// viewTimeout bounds a write to the view that no request waits on: the
// removal of an erased conversation, an erased visitor's entries, the last
// write at stop.
const viewTimeout = 10 * time.Second

// conflictCounter returns the counter of appends that lost the race for a
// conversation, registered on reg when set. A registry that has it already
// (the service restarted in the same process) shares it.
func conflictCounter(reg prometheus.Registerer) (prometheus.Counter, error) {
	c := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "parley_chat_append_conflicts_total",
		Help: "Appends to a conversation refused because another writer appended while this one decided on the conversation as the store held it.",
	})
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(prometheus.Counter); ok {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	return c, nil
}
