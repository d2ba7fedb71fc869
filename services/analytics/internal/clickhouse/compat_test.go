package clickhouse_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/chserver/chtest"
	chstore "github.com/parley-chat/parley/services/analytics/internal/clickhouse"
)

// TestStore runs every statement the store sends, and checks what they
// do, on the ClickHouse server of the other tests (Debian's 18.16 in CI)
// and on ClickHouse 26.7 (chDB): the paths that only a current release
// takes, the facts' TTL and erasure by lightweight DELETE, run nowhere
// else. What neither can show is on the server only: the analysts' user
// and its grants (TestAnalystReadsOnlySuppressingViews); chDB, like
// clickhouse-local, has no users.
func TestStore(t *testing.T) {
	t.Run("server", func(t *testing.T) {
		ch, conn, v := startMigrated(t)
		storeScenario(t, conn, v, func(t *testing.T, q string) [][]string {
			t.Helper()
			out, err := chtest.Query(ch.HTTPAddr(), q)
			if err != nil {
				t.Fatal(err)
			}
			var rows [][]string
			for line := range strings.Lines(out) {
				rows = append(rows, strings.Split(strings.TrimSuffix(line, "\n"), "\t"))
			}
			return rows
		})
	})
	t.Run("chdb", func(t *testing.T) {
		conn := startChDB(t)
		var version string
		if err := conn.QueryRow(t.Context(), "SELECT version()").Scan(&version); err != nil {
			t.Fatal(err)
		}
		v := chstore.ParseVersion(version)
		if !v.AtLeast(26, 7) {
			t.Fatalf("chDB runs ClickHouse %s, want 26.7 or later", version)
		}
		storeScenario(t, conn, v, conn.query)
	})
}

// storeScenario migrates (twice, as two instances may), inserts facts
// (each twice, as a redelivered batch does), reads the metrics and the
// analysts' views with a day under the minimum group of visitors left
// out, refreshes the analysts' tables, erases a visitor until a day falls
// under the minimum, and drops an expired month, on conn, a server of
// version v. query runs a statement of the test's own and returns its
// rows as text.
func storeScenario(t *testing.T, conn driver.Conn, v chstore.Version, query func(t *testing.T, q string) [][]string) {
	ctx := t.Context()
	for range 2 {
		if err := chstore.Migrate(ctx, conn, v, 365); err != nil {
			t.Fatal(err)
		}
	}
	if got := query(t, "SELECT count(), max(version) FROM schema_migrations"); !cmp.Equal(got, [][]string{{"3", strconv.Itoa(int(chstore.SchemaVersion()))}}) {
		t.Errorf("schema_migrations = %v, want each of the %d migrations once", got, chstore.SchemaVersion())
	}
	// Servers before 19.6 know no TTL: DropExpired is their retention.
	if got := query(t, "SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = 'facts'"); len(got) != 1 || strings.Contains(got[0][0], "TTL at + toIntervalDay(365)") != v.AtLeast(19, 6) {
		t.Errorf("facts engine on %v = %v, want a TTL of 365 days from 19.6 on", v, got)
	}

	// On the first day as many visitors as the minimum group, on the
	// second a visitor fewer, each posting once and answered once; and a
	// message three months before.
	// The current month, so that the facts are inside the TTL.
	now := time.Now().UTC()
	big := time.Date(now.Year(), now.Month(), 1, 10, 0, 0, 0, time.UTC)
	small, old := big.AddDate(0, 0, 1), big.AddDate(0, -3, 0)
	visitor := func(i int) string { return fmt.Sprintf("%064x", i) }
	agent := fmt.Sprintf("%064x", 999)
	fact := func(day time.Time, i int, kind string, value float64) analyticsapi.Fact {
		f := analyticsapi.Fact{
			ID: fmt.Sprintf("%s-%s:%s", visitor(i)[52:], day.Format("20060102"), kind), Tenant: "acme", Kind: kind,
			At: day, Conversation: visitor(i), Visitor: visitor(i), Value: value,
		}
		if kind == analyticsapi.KindMessage {
			f.Role, f.Length = "visitor", analyticsapi.Length21to100
		} else {
			f.Agent = agent
		}
		return f
	}
	var facts []analyticsapi.Fact
	for day, visitors := range map[time.Time]int{big: analyticsapi.DefaultMinGroupSize, small: analyticsapi.DefaultMinGroupSize - 1} {
		for i := range visitors {
			facts = append(facts, fact(day, i, analyticsapi.KindMessage, 0), fact(day, i, analyticsapi.KindFirstResponse, float64(10*(i+1))))
		}
	}
	facts = append(facts, fact(old, 9, analyticsapi.KindMessage, 0))
	st := chstore.New(conn, v)
	// Inserted twice, as a redelivered batch is: each fact counts once.
	for range 2 {
		if err := st.Insert(ctx, facts); err != nil {
			t.Fatal(err)
		}
	}

	day, hour := 24*time.Hour, time.Hour
	metrics := []struct {
		metric   string
		from, to time.Time
		step     time.Duration
		want     []chstore.Bucket
	}{
		{analyticsapi.MetricMessages, big, big.AddDate(0, 0, 2), day, []chstore.Bucket{
			{Start: big.Truncate(day), Facts: 5, Visitors: 5},
			{Start: small.Truncate(day), Facts: 4, Visitors: 4},
		}},
		{analyticsapi.MetricFirstResponse, big, big.AddDate(0, 0, 1), hour, []chstore.Bucket{
			{Start: big, Facts: 5, Mean: 30, Visitors: 5},
		}},
		{analyticsapi.MetricMessages, old.AddDate(0, 0, -1), big, hour, []chstore.Bucket{
			{Start: old, Facts: 1, Visitors: 1},
		}},
	}
	for _, m := range metrics {
		got, err := st.Metric(ctx, "acme", m.metric, m.from, m.to, m.step)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(m.want, got); diff != "" {
			t.Errorf("Metric(%s, %v, %v, %v) (-want +got):\n%s", m.metric, m.from, m.to, m.step, diff)
		}
	}

	// The views leave out the second day; the analysts' tables hold what
	// they answered at the last refresh.
	bigDay := big.Format(time.DateOnly)
	for _, q := range []struct {
		query string
		want  [][]string
	}{
		{"SELECT day, messages, visitors FROM daily_messages WHERE tenant = 'acme' ORDER BY day", [][]string{{bigDay, "5", "5"}}},
		{"SELECT day, responses, avg_seconds, visitors FROM daily_first_response WHERE tenant = 'acme' ORDER BY day", [][]string{{bigDay, "5", "30", "5"}}},
		{"SELECT count() FROM " + chstore.AnalystDatabase + ".daily_messages", [][]string{{"0"}}},
	} {
		if got := query(t, q.query); !cmp.Equal(got, q.want) {
			t.Errorf("%s = %v, want %v", q.query, got, q.want)
		}
	}
	if err := st.RefreshAnalystTables(ctx); err != nil {
		t.Fatal(err)
	}
	analystMessages := "SELECT day, messages, visitors FROM " + chstore.AnalystDatabase + ".daily_messages WHERE tenant = 'acme' ORDER BY day"
	if got, want := query(t, analystMessages), [][]string{{bigDay, "5", "5"}}; !cmp.Equal(got, want) {
		t.Errorf("after a refresh, %s = %v, want %v", analystMessages, got, want)
	}

	// Erasing the first visitor takes the first day under the minimum.
	erase := []analyticsapi.EraseArgs{{Tenant: "acme", Pseudonym: visitor(0)}, {Tenant: "acme", Pseudonym: visitor(42)}}
	counts, err := st.Erase(ctx, erase)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{4, 0}; !cmp.Equal(counts, want) {
		t.Errorf("Erase(%v) = %v, want %v", erase, counts, want)
	}
	erased, err := st.ErasedPseudonyms(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []chstore.Erased{{Tenant: "acme", Pseudonym: visitor(0)}, {Tenant: "acme", Pseudonym: visitor(42)}}; !cmp.Equal(erased, want, cmpopts.SortSlices(func(a, b chstore.Erased) bool { return a.Pseudonym < b.Pseudonym })) {
		t.Errorf("ErasedPseudonyms() = %v, want %v", erased, want)
	}
	if got := query(t, "SELECT count() FROM facts WHERE visitor_pseudonym = '"+visitor(0)+"'"); !cmp.Equal(got, [][]string{{"0"}}) {
		t.Errorf("facts of the erased visitor: %v, want none", got)
	}
	if err := st.RefreshAnalystTables(ctx); err != nil {
		t.Fatal(err)
	}
	if got := query(t, analystMessages); len(got) != 0 {
		t.Errorf("after an erasure left %d visitors, %s = %v, want no rows", analyticsapi.DefaultMinGroupSize-1, analystMessages, got)
	}
	if got, want := query(t, "SELECT name FROM system.tables WHERE database = '"+chstore.AnalystDatabase+"' ORDER BY name"),
		[][]string{{"daily_conversations"}, {"daily_csat"}, {"daily_first_response"}, {"daily_messages"}, {"daily_resolution"}}; !cmp.Equal(got, want) {
		t.Errorf("tables of %s after refreshes: %v, want %v", chstore.AnalystDatabase, got, want)
	}

	// A month that ended before the cutoff goes; the current one stays.
	dropped, err := st.DropExpired(ctx, big.AddDate(0, -1, 0))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{old.Format("200601")}; !cmp.Equal(dropped, want) {
		t.Errorf("DropExpired = %v, want %v", dropped, want)
	}
	if got, want := query(t, "SELECT toYYYYMM(at) AS month, count() FROM facts FINAL GROUP BY month ORDER BY month"), [][]string{{big.Format("200601"), "14"}}; !cmp.Equal(got, want) {
		t.Errorf("facts by month after DropExpired: %v, want %v", got, want)
	}
}
