// Package clickhouse is the analytics service's store: the facts table in
// ClickHouse, its schema migrations, batch inserts, erasure and the metric
// queries. It works with Debian's ClickHouse 18.16 and with current
// releases, gating what differs on the server's version; TestStore runs it
// on both (an 18.16 server, and ClickHouse 26.7 in process through chDB).
package clickhouse

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/parley-chat/parley/pkg/analyticsapi"
)

// Version is a ClickHouse server version, as SELECT version() answers it.
type Version struct{ Major, Minor int }

// ParseVersion reads "18.16.1" or "25.8.2.29" (and "" as 0.0).
func ParseVersion(s string) Version {
	parts := strings.SplitN(s, ".", 3)
	var v Version
	if len(parts) > 0 {
		v.Major, _ = strconv.Atoi(parts[0])
	}
	if len(parts) > 1 {
		v.Minor, _ = strconv.Atoi(parts[1])
	}
	return v
}

// AtLeast reports whether v is major.minor or later.
func (v Version) AtLeast(major, minor int) bool {
	return v.Major > major || v.Major == major && v.Minor >= minor
}

// Features the schema and the erasure depend on.
func (v Version) hasTTL() bool               { return v.AtLeast(19, 6) }
func (v Version) hasLightweightDelete() bool { return v.AtLeast(23, 3) }

// migration is one step of the schema. Its statements are built for the
// server's version and must be safe to run twice (IF NOT EXISTS): two
// instances may migrate at once.
type migration struct {
	version    uint32
	name       string
	statements func(v Version, retentionDays int) []string
}

// The views are the analysts' interface (docs/analytics.md): each reads
// the deduplicated facts (FINAL) and keeps only the days of a tenant with
// at least DefaultMinGroupSize distinct visitors, as the metrics API does.
var migrations = []migration{
	{1, "facts", func(v Version, days int) []string {
		ttl := ""
		if v.hasTTL() {
			ttl = fmt.Sprintf("\nTTL at + toIntervalDay(%d)", days)
		}
		return []string{`CREATE TABLE IF NOT EXISTS facts (
    fact_id String,
    tenant String,
    kind String,
    at DateTime,
    conversation_pseudonym String,
    visitor_pseudonym String,
    agent_pseudonym String,
    role String,
    length_bucket String,
    value Float64,
    inserted_at DateTime
) ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(at)
ORDER BY (tenant, kind, at, fact_id)` + ttl}
	}},
	{2, "erased_pseudonyms", func(Version, int) []string {
		return []string{`CREATE TABLE IF NOT EXISTS erased_pseudonyms (
    tenant String,
    pseudonym String,
    erased_at DateTime
) ENGINE = ReplacingMergeTree(erased_at)
ORDER BY (tenant, pseudonym)`}
	}},
	{3, "views", func(Version, int) []string {
		view := func(name, kind, agg string) string {
			return fmt.Sprintf(`CREATE VIEW IF NOT EXISTS %s AS
SELECT tenant, toDate(at) AS day, %s, uniqExact(visitor_pseudonym) AS visitors
FROM facts FINAL
WHERE kind = '%s'
GROUP BY tenant, day
HAVING visitors >= %d`, name, agg, kind, analyticsapi.DefaultMinGroupSize)
		}
		return []string{
			view("daily_conversations", analyticsapi.KindOpened, "count() AS conversations"),
			view("daily_messages", analyticsapi.KindMessage, "count() AS messages"),
			view("daily_first_response", analyticsapi.KindFirstResponse, "count() AS responses, avg(value) AS avg_seconds, quantile(0.9)(value) AS p90_seconds"),
			view("daily_resolution", analyticsapi.KindClosed, "count() AS closed, avg(value) AS avg_seconds, quantile(0.9)(value) AS p90_seconds"),
			view("daily_csat", analyticsapi.KindRated, "count() AS ratings, avg(value) AS avg_score"),
		}
	}},
}

// Migrate brings the schema up to date: it creates schema_migrations, then
// runs every migration whose version is not recorded there, in order, and
// records it, then makes the analysts' tables (ensureAnalystTables).
// retentionDays sets the facts' TTL where the server has TTL (19.6 and
// later); older servers rely on DropExpired.
func Migrate(ctx context.Context, conn driver.Conn, v Version, retentionDays int) error {
	if err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
    version UInt32,
    name String,
    applied_at DateTime
) ENGINE = MergeTree ORDER BY version`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	var applied uint32
	if err := conn.QueryRow(ctx, "SELECT max(version) FROM schema_migrations").Scan(&applied); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	for _, m := range migrations {
		if m.version <= applied {
			continue
		}
		for _, stmt := range m.statements(v, retentionDays) {
			if err := conn.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
			}
		}
		if err := conn.Exec(ctx, "INSERT INTO schema_migrations (version, name, applied_at) SELECT ?, ?, now()", m.version, m.name); err != nil {
			return fmt.Errorf("record migration %d: %w", m.version, err)
		}
	}
	return ensureAnalystTables(ctx, conn)
}

// AnalystDatabase is the analysts' interface, readable without the facts:
// tables holding what the views answer, copied by RefreshAnalystTables.
// Not the views themselves: ClickHouse checks a view's tables against the
// rights of whoever reads it (18.16 knows no other way; current releases
// do so unless a view is SQL SECURITY DEFINER), so a user allowed the
// views could read the facts as well. The analysts' user is allowed this
// database only (pkg/chserver; deploy/k8s/base/clickhouse/users.xml).
const AnalystDatabase = "analyst"

// analystTables are the views copied into AnalystDatabase, by name.
var analystTables = []string{"daily_conversations", "daily_messages", "daily_first_response", "daily_resolution", "daily_csat"}

// ensureAnalystTables creates the analysts' database and a table for each
// view, empty until RefreshAnalystTables fills it. It runs at every start
// and refresh (a table lost to a refresh that failed half way is made
// again); every statement is safe to run twice.
func ensureAnalystTables(ctx context.Context, conn driver.Conn) error {
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+AnalystDatabase); err != nil {
		return fmt.Errorf("create database %s: %w", AnalystDatabase, err)
	}
	for _, view := range analystTables {
		stmt := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %[1]s.%[2]s AS %[2]s ENGINE = MergeTree ORDER BY (tenant, day)", AnalystDatabase, view)
		if err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("create %s.%s: %w", AnalystDatabase, view, err)
		}
	}
	return nil
}

// SchemaVersion is the version of the newest migration.
func SchemaVersion() uint32 { return migrations[len(migrations)-1].version }

// RefreshAnalystTables replaces the content of each table in
// AnalystDatabase by what its view answers now: a copy filled aside and
// renamed into place in one RENAME, so analysts never read a half-filled
// table. Facts inserted or erased since the last refresh reach the tables
// only now. The copies are named for this refresh alone, so that two
// instances refreshing at once (a standby's start, say) do not take each
// other's; those a refresh that stopped half way left behind are dropped
// once they are ten minutes old.
func (s *Store) RefreshAnalystTables(ctx context.Context) error {
	if err := ensureAnalystTables(ctx, s.conn); err != nil {
		return err
	}
	if err := s.dropLeftovers(ctx); err != nil {
		return err
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("refresh the analysts' tables: %w", err)
	}
	suffix := hex.EncodeToString(b[:])
	for _, view := range analystTables {
		table := AnalystDatabase + "." + view
		next, old := table+"_next_"+suffix, table+"_old_"+suffix
		for _, stmt := range []string{
			"CREATE TABLE " + next + " AS " + table,
			"INSERT INTO " + next + " SELECT * FROM " + view,
			"RENAME TABLE " + table + " TO " + old + ", " + next + " TO " + table,
			"DROP TABLE " + old,
		} {
			if err := s.conn.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("refresh %s: %w", table, err)
			}
		}
	}
	return nil
}

// dropLeftovers drops the copies of refreshes that stopped half way.
func (s *Store) dropLeftovers(ctx context.Context) error {
	rows, err := s.conn.Query(ctx, `SELECT name FROM system.tables
WHERE database = ? AND match(name, '_(next|old)_[0-9a-f]{8}$') AND metadata_modification_time < now() - 600`, AnalystDatabase)
	if err != nil {
		return fmt.Errorf("list the analysts' leftover tables: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return fmt.Errorf("list the analysts' leftover tables: %w", err)
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list the analysts' leftover tables: %w", err)
	}
	for _, n := range names {
		if err := s.conn.Exec(ctx, "DROP TABLE IF EXISTS "+AnalystDatabase+"."+n); err != nil {
			return fmt.Errorf("drop %s.%s: %w", AnalystDatabase, n, err)
		}
	}
	return nil
}
