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
