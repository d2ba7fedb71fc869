package clickhouse_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/chserver"
	"github.com/parley-chat/parley/pkg/chserver/chtest"
	chstore "github.com/parley-chat/parley/services/analytics/internal/clickhouse"
)

// BenchmarkInsert measures Store.Insert alone, by batch size, on a real
// ClickHouse server: the insert half of the ingest, without the stream.
func BenchmarkInsert(b *testing.B) {
	_, conn, v := startMigrated(b)
	st := chstore.New(conn, v)
	at := time.Now().UTC()
	next := 0
	for _, size := range []int{1000, 10_000, 50_000} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			facts := make([]analyticsapi.Fact, size)
			for b.Loop() {
				for i := range facts {
					next++
					v := fmt.Sprintf("%064x", next%50)
					facts[i] = analyticsapi.Fact{
						ID: fmt.Sprintf("%s-%d:%s", v[:12], next, analyticsapi.KindMessage), Tenant: "acme", Kind: analyticsapi.KindMessage,
						At: at, Conversation: v, Visitor: v, Role: "visitor", Length: analyticsapi.Length21to100,
					}
				}
				if err := st.Insert(b.Context(), facts); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "facts/s")
		})
	}
}

// TestInsertInBlocks inserts more facts than one block of the insert holds,
// the last block partly filled: every fact arrives as it was given, each
// once.
func TestInsertInBlocks(t *testing.T) {
	ch, conn, v := startMigrated(t)
	st := chstore.New(conn, v)
	at := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	facts := make([]analyticsapi.Fact, 2345)
	for i := range facts {
		p := fmt.Sprintf("%064x", i)
		facts[i] = analyticsapi.Fact{
			ID: fmt.Sprintf("e%d:%s", i, analyticsapi.KindFirstResponse), Tenant: "acme", Kind: analyticsapi.KindFirstResponse,
			At: at.Add(time.Duration(i) * time.Second), Conversation: p, Visitor: p, Agent: "a" + p[1:], Value: float64(i),
		}
	}
	if err := st.Insert(t.Context(), facts); err != nil {
		t.Fatal(err)
	}
	const q = "SELECT count(), uniqExact(fact_id), sum(value), toUnixTimestamp(min(at)), toUnixTimestamp(max(at)), countIf(visitor_pseudonym = conversation_pseudonym AND agent_pseudonym = concat('a', substring(visitor_pseudonym, 2))), countIf(fact_id = concat('e', toString(toUInt32(value)), ':first_response')) " +
		"FROM facts FORMAT TSV"
	got, err := chtest.Query(ch.HTTPAddr(), q)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("2345\t2345\t%d\t%d\t%d\t2345\t2345", 2344*2345/2, at.Unix(), at.Unix()+2344)
	if got != want {
		t.Errorf("Insert(2345 facts): %s = %q, want %q", q, got, want)
	}
}

// startMigrated starts a private ClickHouse server and connects to it as
// its default user, with Parley's schema made.
func startMigrated(tb testing.TB) (*chserver.Server, clickhouse.Conn, chstore.Version) {
	tb.Helper()
	ch := chtest.Start(tb)
	opts, err := clickhouse.ParseDSN(ch.DSN())
	if err != nil {
		tb.Fatal(err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	var version string
	if err := conn.QueryRow(tb.Context(), "SELECT version()").Scan(&version); err != nil {
		tb.Fatal(err)
	}
	v := chstore.ParseVersion(version)
	if err := chstore.Migrate(tb.Context(), conn, v, 365); err != nil {
		tb.Fatal(err)
	}
	return ch, conn, v
}
