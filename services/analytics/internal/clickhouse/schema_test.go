package clickhouse_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/chserver/chtest"
	chstore "github.com/parley-chat/parley/services/analytics/internal/clickhouse"
)

// TestAnalystReadsOnlySuppressingViews connects as the analysts' user of
// the server `parley all` runs (pkg/chserver) and checks what it reaches:
// what the views answer, copied into the analysts' database, with a day of
// fewer than the minimum group of visitors left out; never the pseudonymized
// facts, where one visitor's rows can be singled out, not even in a
// subquery, nor the views themselves, which read the facts with the
// reader's rights.
func TestAnalystReadsOnlySuppressingViews(t *testing.T) {
	ch, conn, v := startMigrated(t)
	// The second start finds everything made.
	if err := chstore.Migrate(t.Context(), conn, v, 365); err != nil {
		t.Fatal(err)
	}
	// One day with as many visitors as the minimum group, one with a
	// visitor fewer.
	big := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	small := big.AddDate(0, 0, 1)
	var facts []analyticsapi.Fact
	for day, visitors := range map[time.Time]int{big: analyticsapi.DefaultMinGroupSize, small: analyticsapi.DefaultMinGroupSize - 1} {
		for i := range visitors {
			visitor := fmt.Sprintf("%064x", i)
			facts = append(facts, analyticsapi.Fact{
				ID: fmt.Sprintf("%s-%s:%s", visitor[52:], day.Format("0102"), analyticsapi.KindMessage), Tenant: "acme", Kind: analyticsapi.KindMessage,
				At: day, Conversation: visitor, Visitor: visitor, Role: "visitor", Length: analyticsapi.Length21to100,
			})
		}
	}
	st := chstore.New(conn, v)
	if err := st.Insert(t.Context(), facts); err != nil {
		t.Fatal(err)
	}
	if got, err := chtest.QueryAs(ch.HTTPAddr(), "analyst", "SELECT count() FROM "+chstore.AnalystDatabase+".daily_messages"); err != nil || got != "0" {
		t.Errorf("analyst reads daily_messages before a refresh: %q, %v; want 0 rows", got, err)
	}
	if err := st.RefreshAnalystTables(t.Context()); err != nil {
		t.Fatal(err)
	}

	got, err := chtest.QueryAs(ch.HTTPAddr(), "analyst", "SELECT day, messages, visitors FROM "+chstore.AnalystDatabase+".daily_messages WHERE tenant = 'acme' ORDER BY day")
	if want := fmt.Sprintf("%s\t%d\t%d", big.Format(time.DateOnly), analyticsapi.DefaultMinGroupSize, analyticsapi.DefaultMinGroupSize); err != nil || got != want {
		t.Errorf("analyst reads the daily_messages view: %q, %v; want %q, the small day left out", got, err, want)
	}
	for _, q := range []string{
		"SELECT count() FROM facts",
		"SELECT count() FROM default.facts",
		"SELECT count() FROM default.daily_messages",
		"SELECT count() FROM erased_pseudonyms",
		"SELECT count() FROM " + chstore.AnalystDatabase + ".daily_messages WHERE tenant IN (SELECT tenant FROM default.facts)",
	} {
		if got, err := chtest.QueryAs(ch.HTTPAddr(), "analyst", q); err == nil || !strings.Contains(err.Error(), "Access denied") {
			t.Errorf("analyst: %s = %q, %v; want access denied", q, got, err)
		}
	}
	if got, err := chtest.QueryAs(ch.HTTPAddr(), "analyst", "INSERT INTO "+chstore.AnalystDatabase+".daily_messages SELECT * FROM "+chstore.AnalystDatabase+".daily_messages"); err == nil {
		t.Errorf("analyst wrote to daily_messages: %q", got)
	}

	// Two instances refreshing at once leave the tables, and only them.
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- st.RefreshAnalystTables(t.Context()) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got, err := chtest.QueryAs(ch.HTTPAddr(), "default", "SELECT name FROM system.tables WHERE database = '"+chstore.AnalystDatabase+"' ORDER BY name"); err != nil ||
		got != "daily_conversations\ndaily_csat\ndaily_first_response\ndaily_messages\ndaily_resolution" {
		t.Errorf("tables of %s after two refreshes at once: %q, %v", chstore.AnalystDatabase, got, err)
	}

	// An erasure that takes the big day below the minimum group reaches
	// the analysts' table at the next refresh.
	if _, err := st.Erase(t.Context(), []analyticsapi.EraseArgs{{Tenant: "acme", Pseudonym: facts[0].Visitor}}); err != nil {
		t.Fatal(err)
	}
	if err := st.RefreshAnalystTables(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, err := chtest.QueryAs(ch.HTTPAddr(), "analyst", "SELECT count() FROM "+chstore.AnalystDatabase+".daily_messages"); err != nil || got != "0" {
		t.Errorf("analyst reads daily_messages after an erasure left %d visitors: %q, %v; want 0 rows", analyticsapi.DefaultMinGroupSize-1, got, err)
	}
}
