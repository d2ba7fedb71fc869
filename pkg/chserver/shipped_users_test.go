package chserver_test

import (
	"os"
	"strings"
	"testing"

	"github.com/parley-chat/parley/pkg/chserver/chtest"
)

// TestShippedUsers runs a server with the production users.xml
// (deploy/k8s/base/clickhouse/users.xml), its passwords in the environment
// as the StatefulSet gives them, and checks what each user reaches: the
// analytics service does all it does (tables in "default" and "analyst",
// inserts, deletions, the partition list of the retention sweep); analysts
// read database "analyst" alone, never the pseudonymized facts, and write
// nothing; a wrong or missing password is refused.
func TestShippedUsers(t *testing.T) {
	users, err := os.ReadFile("../../deploy/k8s/base/clickhouse/users.xml")
	if err != nil {
		t.Fatal(err)
	}
	const analyticsPassword, analystPassword = "analytics-pw", "analyst-pw"
	t.Setenv("CLICKHOUSE_ANALYTICS_PASSWORD", analyticsPassword)
	t.Setenv("CLICKHOUSE_ANALYST_PASSWORD", analystPassword)
	s := chtest.StartWithUsers(t, string(users))
	analytics := chtest.LoggedIn(s.HTTPAddr(), "analytics", analyticsPassword)
	analyst := chtest.LoggedIn(s.HTTPAddr(), "analyst", analystPassword)

	for _, q := range []string{
		"CREATE TABLE default.facts (visitor String, d Date) ENGINE = MergeTree PARTITION BY toYYYYMM(d) ORDER BY visitor",
		"INSERT INTO default.facts VALUES ('a', '2026-03-02'), ('b', '2026-03-02'), ('c', '2026-03-03')",
		"CREATE DATABASE IF NOT EXISTS analyst",
		"CREATE TABLE analyst.daily (d Date, visitors UInt64) ENGINE = MergeTree ORDER BY d",
		"INSERT INTO analyst.daily SELECT d, uniqExact(visitor) FROM default.facts GROUP BY d",
		"ALTER TABLE default.facts DELETE WHERE visitor = 'a'",
	} {
		if _, err := analytics.Exec(q); err != nil {
			t.Fatalf("analytics: %s: %v", q, err)
		}
	}
	if got, err := analytics.Query("SELECT DISTINCT partition FROM system.parts WHERE database = 'default' AND table = 'facts' AND active"); err != nil || got != "202603" {
		t.Errorf("analytics lists the partitions of facts: %q, %v; want 202603", got, err)
	}

	if got, err := analyst.Query("SELECT sum(visitors) FROM analyst.daily"); err != nil || got != "3" {
		t.Errorf("analyst reads analyst.daily: %q, %v; want 3", got, err)
	}
	for _, q := range []string{
		"SELECT count() FROM default.facts",
		"SELECT count() FROM analyst.daily WHERE d IN (SELECT d FROM default.facts)",
	} {
		if got, err := analyst.Query(q); err == nil || !strings.Contains(err.Error(), "Access denied") {
			t.Errorf("analyst: %s = %q, %v; want access denied", q, got, err)
		}
	}
	for _, q := range []string{
		"INSERT INTO analyst.daily VALUES ('2026-03-04', 1)",
		"CREATE TABLE analyst.mine (x UInt8) ENGINE = Memory",
	} {
		if got, err := analyst.Exec(q); err == nil {
			t.Errorf("analyst: %s = %q, want a refusal", q, got)
		}
	}

	for _, l := range []chtest.Login{
		chtest.LoggedIn(s.HTTPAddr(), "analyst", ""),
		chtest.LoggedIn(s.HTTPAddr(), "analyst", analyticsPassword),
		chtest.LoggedIn(s.HTTPAddr(), "analytics", ""),
	} {
		if got, err := l.Query("SELECT 1"); err == nil {
			t.Errorf("%+v logged in: %q, want a refusal", l, got)
		}
	}
}
