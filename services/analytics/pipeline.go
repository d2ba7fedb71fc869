package analytics

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/retry"
	"github.com/parley-chat/parley/pkg/rpc"

	"github.com/parley-chat/parley/services/analytics/internal/app"
	chstore "github.com/parley-chat/parley/services/analytics/internal/clickhouse"
	"github.com/parley-chat/parley/services/analytics/internal/ingest"
	analyticsrpc "github.com/parley-chat/parley/services/analytics/internal/rpc"
)

// sweepEvery is how often partitions past the retention are dropped.
const sweepEvery = time.Hour

// serveBus starts the consumer of ANALYTICS and the request/reply
// subjects in g; both wait for ClickHouse on their own.
func (s *Service) serveBus(ctx context.Context, g *errgroup.Group) error {
	js, err := jetstream.New(s.d.NC)
	if err != nil {
		return fmt.Errorf("analytics: jetstream: %w", err)
	}
	ingested, err := ingestedCounter(s.d.Registry)
	if err != nil {
		return fmt.Errorf("analytics: %w", err)
	}
	s.ingester = ingest.New(js, s.log, s.waitStore, s.recover, func(n int) { ingested.Add(float64(n)) })
	served, err := analyticsrpc.Serve(ctx, s.d.NC, s.log, &s.health, analyticsrpc.Handlers{
		Metrics: func(ctx context.Context, req rpc.Request[analyticsapi.MetricsArgs]) (analyticsapi.MetricsResult, error) {
			var q app.Queries
			if st := s.currentStore(); st != nil {
				q = st
			}
			res, err := app.Metrics(ctx, q, req.Principal, req.Args)
			if errors.Is(err, app.ErrUnavailable) {
				s.log.Warn("metrics query", "err", hideAddrs(err, s.addrs))
			}
			return res, err
		},
		Erase: s.erase,
	})
	if err != nil {
		return fmt.Errorf("analytics: %w", err)
	}
	g.Go(func() error {
		<-ctx.Done()
		served.Stop()
		return nil
	})
	giveUp := s.d.GiveUp
	if giveUp == 0 {
		giveUp = retry.GiveUp
	}
	g.Go(func() error { return s.ingester.Run(ctx, giveUp, s.health.Of("ingest")) })
	return nil
}

// ingestedCounter returns the counter of facts ingested, registered on
// reg when set. Run, called once per Service, registers it once.
func ingestedCounter(reg prometheus.Registerer) (prometheus.Counter, error) {
	c := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "parley_analytics_facts_ingested_total",
		Help: "Facts taken from ANALYTICS and stored in ClickHouse, those of erased pseudonyms left out included; a fact stored twice (relayed again, redelivered), which ClickHouse counts once, is counted twice here.",
	})
	if reg != nil {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return c, nil
}

// erase deletes a pseudonym's rows for the privacy service's erasure.
func (s *Service) erase(ctx context.Context, tenant, pseudonym string) (int64, error) {
	st := s.currentStore()
	if st == nil {
		return 0, app.ErrUnavailable
	}
	n, err := s.ingester.Erase(ctx, addrHiddenStore{st, s.addrs}, tenant, pseudonym)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", app.ErrUnavailable, err)
	}
	s.log.Info("erased a pseudonym's facts", "facts", n)
	return n, nil
}

// prepare migrates the schema, retrying until it succeeds, and makes the
// store available; false means ctx ended first.
func (s *Service) prepare(ctx context.Context) bool {
	s.mu.Lock()
	conn, version := s.conn, chstore.ParseVersion(s.version)
	s.mu.Unlock()
	if conn == nil {
		return false
	}
	st := chstore.New(conn, version)
	notify := func(err error) {
		s.log.Warn("migrate clickhouse schema, retrying", "err", hideAddrs(err, s.addrs))
	}
	if _, err := retry.Until(ctx, 0, notify, func() (struct{}, error) { return struct{}{}, s.migrate(ctx, st) }); err != nil {
		return false
	}
	s.mu.Lock()
	s.store = st
	s.mu.Unlock()
	close(s.storeSet)
	s.log.Info("clickhouse schema ready", "schema_version", chstore.SchemaVersion(), "ttl", version.AtLeast(19, 6))
	return true
}

// migrate brings the schema up to date and tells the ingester which
// pseudonyms were erased.
func (s *Service) migrate(ctx context.Context, st *chstore.Store) error {
	s.mu.Lock()
	conn, version := s.conn, chstore.ParseVersion(s.version)
	s.mu.Unlock()
	if err := chstore.Migrate(ctx, conn, version, s.retention); err != nil {
		return err
	}
	erased, err := st.ErasedPseudonyms(ctx)
	if err != nil {
		return err
	}
	if s.ingester != nil {
		for _, e := range erased {
			s.ingester.MarkErased(e.Tenant, e.Pseudonym)
		}
	}
	return nil
}

func (s *Service) currentStore() *chstore.Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.store
}

// waitStore returns the store once the schema is ready.
func (s *Service) waitStore(ctx context.Context) (ingest.Store, error) {
	select {
	case <-s.storeSet:
		return addrHiddenStore{s.currentStore(), s.addrs}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// recover returns once ClickHouse answers again and the schema is in
// place (a server that lost its data gets it back), or ctx ends.
func (s *Service) recover(ctx context.Context) {
	st := s.currentStore()
	if st == nil {
		return
	}
	// The store just failed: wait before the first look.
	if !retry.Sleep(ctx, retry.InitialInterval) {
		return
	}
	_, err := retry.Until(ctx, 0, nil, func() (struct{}, error) {
		if err := s.clickHouseReady(ctx); err != nil {
			return struct{}{}, err
		}
		return struct{}{}, s.migrate(ctx, st)
	})
	if err == nil {
		s.log.Info("clickhouse back, ingesting again")
	}
}

// refreshEvery is how often the analysts' tables are filled anew from the
// views: how long a fact, or an erasure, takes to reach them.
const refreshEvery = time.Minute

// periodically calls do with the store now and every period until ctx
// ends.
func (s *Service) periodically(ctx context.Context, period time.Duration, do func(*chstore.Store)) {
	for {
		if st := s.currentStore(); st != nil {
			do(st)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(period):
		}
	}
}

// sweep drops the partitions past the retention.
func (s *Service) sweep(ctx context.Context, st *chstore.Store) {
	cutoff := time.Now().AddDate(0, 0, -s.retention)
	dropped, err := st.DropExpired(ctx, cutoff)
	if err != nil && ctx.Err() == nil {
		s.log.Warn("drop expired partitions", "err", hideAddrs(err, s.addrs))
	}
	if len(dropped) > 0 {
		s.log.Info("dropped expired partitions", "partitions", dropped)
	}
}

// refresh fills the analysts' tables anew from the views.
func (s *Service) refresh(ctx context.Context, st *chstore.Store) {
	if err := st.RefreshAnalystTables(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("refresh the analysts' tables", "err", hideAddrs(err, s.addrs))
	}
}

// addrHiddenStore is the store with the server's address hidden in its
// errors, which the ingester logs.
type addrHiddenStore struct {
	st    *chstore.Store
	addrs []string
}

func (h addrHiddenStore) Insert(ctx context.Context, facts []analyticsapi.Fact) error {
	if err := h.st.Insert(ctx, facts); err != nil {
		return hideAddrs(err, h.addrs)
	}
	return nil
}

func (h addrHiddenStore) Erase(ctx context.Context, erased []analyticsapi.EraseArgs) ([]int64, error) {
	n, err := h.st.Erase(ctx, erased)
	if err != nil {
		return nil, hideAddrs(err, h.addrs)
	}
	return n, nil
}
