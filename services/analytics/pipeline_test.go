package analytics_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chserver"
	"github.com/parley-chat/parley/pkg/chserver/chtest"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/seal"
	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/services/analytics"
	"github.com/parley-chat/parley/services/analytics/internal/ingest"
)

// pipeline is a running analytics service between a real JetStream and a
// real ClickHouse.
type pipeline struct {
	nc *nats.Conn
	js jetstream.JetStream
	ch *chserver.Server
	s  *analytics.Service
}

// analyticsStream starts a server holding the ANALYTICS stream and
// returns a connection to it and a JetStream of it.
func analyticsStream(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js := natstest.Connect(t, natstest.Start(t, ""))
	if err := stream.Ensure(t.Context(), js, stream.Options{}, stream.Analytics); err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func startPipeline(t *testing.T) *pipeline {
	t.Helper()
	nc, js := analyticsStream(t)
	ch := chtest.Start(t)
	s := analytics.New(analytics.Deps{NC: nc, ClickHouseDSN: ch.DSN()})
	_, stop := run(t, s)
	t.Cleanup(func() { stop() })
	p := &pipeline{nc: nc, js: js, ch: ch, s: s}
	natstest.Eventually(t, 30*time.Second, "schema", func() error {
		if err := s.Ready(t.Context()); err != nil {
			return err
		}
		_, err := p.query(t, "SELECT count() FROM facts")
		return err
	})
	return p
}

// query runs q over ClickHouse's HTTP interface.
func (p *pipeline) query(t testing.TB, q string) (string, error) {
	t.Helper()
	return chtest.QueryAs(p.ch.HTTPAddr(), "default", q)
}

// waitCount polls q, a query answering one number, until it answers want.
func (p *pipeline) waitCount(t *testing.T, q string, want int) {
	t.Helper()
	natstest.Eventually(t, 30*time.Second, q, func() error {
		got, err := p.query(t, q)
		if err != nil {
			return err
		}
		if got != strconv.Itoa(want) {
			return fmt.Errorf("%s = %s, want %d", q, got, want)
		}
		return nil
	})
}

// publish stores f on ANALYTICS with msgID as its Nats-Msg-Id (the fact id
// when empty).
func (p *pipeline) publish(t *testing.T, f analyticsapi.Fact, msgID string) {
	t.Helper()
	data, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if msgID == "" {
		msgID = f.ID
	}
	m := nats.NewMsg(analyticsapi.Subject(f.Tenant, f.Kind))
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	m.Data = data
	if _, err := p.js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
}

func (p *pipeline) metrics(t *testing.T, args analyticsapi.MetricsArgs) (analyticsapi.MetricsResult, error) {
	t.Helper()
	var res analyticsapi.MetricsResult
	err := rpc.Call(t.Context(), p.nc, analyticsapi.MetricsSubject, rpc.Request[analyticsapi.MetricsArgs]{
		Principal: auth.Principal{Tenant: args.Tenant, ID: "ana", Role: auth.RoleAnalyst}, Args: args,
	}, &res)
	return res, err
}

// pseudonym returns a pseudonym like the relay's, of a fresh key.
func pseudonym(t testing.TB, id string) string {
	t.Helper()
	k, err := seal.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return analyticsapi.Pseudonym(k, id)
}

var hour0 = time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)

func opened(tenant, visitor string, n int, at time.Time) analyticsapi.Fact {
	id := fmt.Sprintf("evt-%s-%d", visitor[:8], n)
	return analyticsapi.Fact{
		ID: analyticsapi.FactID(id, analyticsapi.KindOpened), Tenant: tenant, Kind: analyticsapi.KindOpened,
		At: at, Conversation: visitor[:16] + strconv.Itoa(n), Visitor: visitor,
	}
}

func TestIngestCountsRedeliveredFactsOnce(t *testing.T) {
	p := startPipeline(t)
	var visitors []string
	for i := range 6 {
		visitors = append(visitors, pseudonym(t, "v"+strconv.Itoa(i)))
	}
	var facts []analyticsapi.Fact
	for i, v := range visitors {
		facts = append(facts, opened("acme", v, 0, hour0.Add(time.Duration(i)*time.Minute)))
	}
	for _, f := range facts {
		p.publish(t, f, "")
	}
	p.waitCount(t, "SELECT count() FROM facts FINAL", len(facts))
	// The same facts again past the stream's duplicate window (another
	// Nats-Msg-Id), as a relay redelivery after two minutes would be.
	for _, f := range facts[:3] {
		p.publish(t, f, f.ID+"-again")
	}
	p.waitCount(t, "SELECT count() FROM facts", len(facts)+3)
	p.waitCount(t, "SELECT count() FROM facts FINAL", len(facts))

	got, err := p.metrics(t, analyticsapi.MetricsArgs{Tenant: "acme", Metric: analyticsapi.MetricConversations,
		From: hour0, To: hour0.Add(time.Hour), Interval: analyticsapi.IntervalHour})
	if err != nil {
		t.Fatal(err)
	}
	value, count := float64(len(facts)), int64(len(facts))
	want := analyticsapi.MetricsResult{Metric: "conversations", Interval: "hour", MinGroupSize: 5,
		Points: []analyticsapi.Point{{T: hour0, Value: &value, Count: &count}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("metrics mismatch (-want +got):\n%s", diff)
	}
}

func TestMetricsSuppressSmallGroups(t *testing.T) {
	p := startPipeline(t)
	// Hour 0: 4 visitors with 3 conversations each; hour 1: 5 visitors.
	total := 0
	for h, n := range []int{4, 5} {
		for i := range n {
			v := pseudonym(t, fmt.Sprintf("v%d-%d", h, i))
			for c := range 3 {
				p.publish(t, opened("acme", v, c, hour0.Add(time.Duration(h)*time.Hour+time.Duration(c)*time.Minute)), "")
				total++
			}
		}
	}
	p.waitCount(t, "SELECT count() FROM facts FINAL", total)
	got, err := p.metrics(t, analyticsapi.MetricsArgs{Tenant: "acme", Metric: analyticsapi.MetricConversations,
		From: hour0, To: hour0.Add(2 * time.Hour), Interval: analyticsapi.IntervalHour})
	if err != nil {
		t.Fatal(err)
	}
	value, count := 15.0, int64(15)
	want := []analyticsapi.Point{{T: hour0}, {T: hour0.Add(time.Hour), Value: &value, Count: &count}}
	if diff := cmp.Diff(want, got.Points); diff != "" {
		t.Errorf("points mismatch (-want +got):\n%s", diff)
	}
	// A larger group size asked for suppresses the second hour too.
	got, err = p.metrics(t, analyticsapi.MetricsArgs{Tenant: "acme", Metric: analyticsapi.MetricConversations,
		From: hour0, To: hour0.Add(2 * time.Hour), Interval: analyticsapi.IntervalDay, MinGroupSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]analyticsapi.Point{{T: hour0.Truncate(24 * time.Hour)}}, got.Points); diff != "" || got.MinGroupSize != 10 {
		t.Errorf("day points with min group 10 (-want +got):\n%s (min_group_size %d)", diff, got.MinGroupSize)
	}
}

func TestMetricsRejectBadArguments(t *testing.T) {
	p := startPipeline(t)
	ok := analyticsapi.MetricsArgs{Tenant: "acme", Metric: "csat", From: hour0, To: hour0.Add(time.Hour), Interval: "day"}
	tests := []struct {
		name     string
		give     func(*analyticsapi.MetricsArgs)
		giveRole auth.Role
		want     rpc.Code
	}{
		{name: "unknown metric", give: func(a *analyticsapi.MetricsArgs) { a.Metric = "visitors" }, want: rpc.CodeInvalid},
		{name: "unknown interval", give: func(a *analyticsapi.MetricsArgs) { a.Interval = "week" }, want: rpc.CodeInvalid},
		{name: "empty range", give: func(a *analyticsapi.MetricsArgs) { a.To = a.From }, want: rpc.CodeInvalid},
		{name: "too many points", give: func(a *analyticsapi.MetricsArgs) { a.Interval, a.To = "hour", a.From.AddDate(2, 0, 0) }, want: rpc.CodeInvalid},
		{name: "agent", giveRole: auth.RoleAgent, want: rpc.CodeForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := ok
			if tt.give != nil {
				tt.give(&args)
			}
			role := auth.RoleAdmin
			if tt.giveRole != "" {
				role = tt.giveRole
			}
			err := rpc.Call(t.Context(), p.nc, analyticsapi.MetricsSubject, rpc.Request[analyticsapi.MetricsArgs]{
				Principal: auth.Principal{Tenant: "acme", ID: "x", Role: role}, Args: args}, nil)
			if got := rpc.CodeOf(err); got != tt.want {
				t.Errorf("metrics(%s) code = %s (%v), want %s", tt.name, got, err, tt.want)
			}
		})
	}
}

func TestEraseDeletesRowsAndRefusesLaterFacts(t *testing.T) {
	p := startPipeline(t)
	gone, kept, agent := pseudonym(t, "gone"), pseudonym(t, "kept"), pseudonym(t, "agent")
	for c := range 3 {
		p.publish(t, opened("acme", gone, c, hour0), "")
		p.publish(t, opened("acme", kept, c, hour0), "")
	}
	// A fact where the erased subject is the agent goes too.
	byAgent := opened("acme", kept, 9, hour0)
	byAgent.Agent = agent
	p.publish(t, byAgent, "")
	p.waitCount(t, "SELECT count() FROM facts FINAL", 7)

	// Only a service erases: a user, even the tenant's admin, is refused.
	asAdmin := eraseRequest("acme", kept)
	asAdmin.Principal = auth.Principal{Tenant: "acme", ID: "x", Role: auth.RoleAdmin}
	if err := rpc.Call(t.Context(), p.nc, analyticsapi.EraseSubject, asAdmin, nil); rpc.CodeOf(err) != rpc.CodeForbidden {
		t.Errorf("erase as admin = %v, want %s", err, rpc.CodeForbidden)
	}

	var res analyticsapi.EraseResult
	if err := rpc.Call(t.Context(), p.nc, analyticsapi.EraseSubject, eraseRequest("acme", gone), &res); err != nil {
		t.Fatal(err)
	}
	if res.RowsDeleted != 3 {
		t.Errorf("erase rows_deleted = %d, want 3", res.RowsDeleted)
	}
	if got, _ := p.query(t, "SELECT count() FROM facts WHERE visitor_pseudonym = '"+gone+"'"); got != "0" {
		t.Errorf("rows of the erased pseudonym right after erase = %s, want 0", got)
	}

	// The durable request on the stream, as privacy stores it before the
	// keys are destroyed, is performed in stream order.
	data, _ := json.Marshal(analyticsapi.EraseArgs{Tenant: "acme", Pseudonym: agent})
	if _, err := p.js.Publish(t.Context(), analyticsapi.Subject("acme", analyticsapi.KindErasure), data); err != nil {
		t.Fatal(err)
	}
	p.waitCount(t, "SELECT count() FROM facts FINAL", 3)
	// The same erasure called over the bus afterwards finds nothing left,
	// and reports what the stored request deleted.
	if err := rpc.Call(t.Context(), p.nc, analyticsapi.EraseSubject, eraseRequest("acme", agent), &res); err != nil {
		t.Fatal(err)
	}
	if res.RowsDeleted != 1 {
		t.Errorf("second erase of the agent: rows_deleted = %d, want 1 (deleted by the stored request)", res.RowsDeleted)
	}

	// A fact of the erased pseudonym still in transit never lands; the
	// fact after it shows the batch was inserted.
	p.publish(t, opened("acme", gone, 7, hour0), "")
	p.publish(t, opened("acme", kept, 7, hour0), "")
	p.waitCount(t, "SELECT count() FROM facts FINAL", 4)
	if got, _ := p.query(t, "SELECT count() FROM facts WHERE visitor_pseudonym = '"+gone+"'"); got != "0" {
		t.Errorf("rows of the erased pseudonym after a late fact = %s, want 0", got)
	}
}

// TestFactsWaitWhileClickHouseIsDown stops ClickHouse for 30 seconds while
// facts keep coming.
func TestFactsWaitWhileClickHouseIsDown(t *testing.T) {
	p := startPipeline(t)
	v := make([]string, 5)
	for i := range v {
		v[i] = pseudonym(t, "v"+strconv.Itoa(i))
	}
	n := 0
	publishSome := func(count int) {
		for range count {
			p.publish(t, opened("acme", v[n%5], n, hour0), "")
			n++
		}
	}
	publishSome(50)
	p.waitCount(t, "SELECT count() FROM facts FINAL", 50)

	dir, tcp, httpPort := p.ch.Dir(), p.ch.TCPPort(), p.ch.HTTPPort()
	if err := p.ch.Close(); err != nil {
		t.Fatal(err)
	}
	publishSome(200)
	natstest.Eventually(t, 30*time.Second, "Ready() error while ClickHouse is down", func() error {
		if p.s.Ready(t.Context()) == nil {
			return errors.New("still ready")
		}
		return nil
	})
	// The outage the issue names: thirty seconds, several times the
	// ingest's longest retry backoff, so it backs off to the maximum and
	// still delivers everything once ClickHouse is back.
	const outage = 30 * time.Second
	down := time.Now()
	for time.Since(down) < outage {
		publishSome(10)
		time.Sleep(100 * time.Millisecond) // a steady trickle, not synchronisation
	}
	restarted, err := chserver.Start(t.Context(), chserver.Options{Dir: dir, TCPPort: tcp, HTTPPort: httpPort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { restarted.Close() })
	p.ch = restarted
	publishSome(50)
	p.waitCount(t, "SELECT count() FROM facts FINAL", n)
	natstest.Eventually(t, 30*time.Second, "Ready()", func() error { return p.s.Ready(t.Context()) })

	// The failed batch was held and retried, not handed back: within the
	// ack wait the stream delivered every fact exactly once.
	var delivered uint64
	natstest.Eventually(t, 30*time.Second, "every fact acked", func() error {
		c, err := p.js.Consumer(t.Context(), stream.Analytics, ingest.Durable)
		if err != nil {
			return err
		}
		info, err := c.Info(t.Context())
		if err != nil {
			return err
		}
		if info.NumAckPending > 0 {
			return fmt.Errorf("%d facts unacked", info.NumAckPending)
		}
		delivered = info.Delivered.Consumer
		return nil
	})
	if delivered != uint64(n) {
		t.Errorf("deliveries = %d for %d facts, want each delivered once", delivered, n)
	}
}

// TestNoStoreReadsNothing runs the service with no ClickHouse configured:
// facts stay in ANALYTICS unread, rather than read and held until the ack
// wait brings them back.
func TestNoStoreReadsNothing(t *testing.T) {
	nc, js := analyticsStream(t)
	p := &pipeline{nc: nc, js: js}
	v := pseudonym(t, "v")
	for i := range 3 {
		p.publish(t, opened("acme", v, i, hour0), "")
	}
	s := analytics.New(analytics.Deps{NC: nc})
	_, stop := run(t, s)
	t.Cleanup(func() { stop() })
	natstest.Eventually(t, 30*time.Second, "the service answering", func() error {
		_, err := p.metrics(t, analyticsapi.MetricsArgs{Tenant: "acme", Metric: "no-such-metric"})
		if rpc.CodeOf(err) != rpc.CodeInvalid {
			return fmt.Errorf("metrics = %v, want code %s", err, rpc.CodeInvalid)
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond) // what a consumer would have read by now
	c, err := js.Consumer(t.Context(), stream.Analytics, ingest.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if d := c.CachedInfo().Delivered.Consumer; d > 0 {
		t.Errorf("%d facts read with no store to write them to, want none", d)
	}
}

// eraseRequest is the privacy service's call of EraseSubject: as the
// system principal, which the internal endpoint requires.
func eraseRequest(tenant, pseudonym string) rpc.Request[analyticsapi.EraseArgs] {
	return rpc.Request[analyticsapi.EraseArgs]{
		Principal: auth.System(tenant, "parley-privacy"),
		Args:      analyticsapi.EraseArgs{Tenant: tenant, Pseudonym: pseudonym},
	}
}
