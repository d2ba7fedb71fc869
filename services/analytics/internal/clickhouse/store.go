package clickhouse

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/parley-chat/parley/pkg/analyticsapi"
)

// Store is the facts table of one ClickHouse server. It is safe for
// concurrent use; the driver reconnects after the server comes back.
type Store struct {
	conn    driver.Conn
	version Version
}

// New returns the store on conn, a server of version v, whose schema
// Migrate brought up to date.
func New(conn driver.Conn, v Version) *Store {
	return &Store{conn: conn, version: v}
}

// insertFacts names every column: the native protocol sends columns by
// position, so a list keeps inserts right whatever order the table has.
const insertFacts = `INSERT INTO facts (fact_id, tenant, kind, at, conversation_pseudonym, visitor_pseudonym, agent_pseudonym, role, length_bucket, value, inserted_at)`

// insertBlock is how many rows go in one block of an insert. The
// driver's string columns start empty and grow by appending, copying and
// allocating about five times their final size: a whole batch of 10,000
// facts in one block was the largest allocator of the ingest and a fifth
// of its CPU. Blocks of this size sent one after the other (Flush) reuse
// the columns, grown once, and the insert is still one statement,
// committed, or failed, by Send. Flush does not watch ctx as Send does: on
// the connections Dial makes, WriteTimeout bounds it.
const insertBlock = 1000

// Insert stores facts in one insert. Inserting a fact again is harmless:
// the table keeps one row per fact id (ReplacingMergeTree), and queries
// read it deduplicated.
func (s *Store) Insert(ctx context.Context, facts []analyticsapi.Fact) error {
	if len(facts) == 0 {
		return nil
	}
	b, err := s.conn.PrepareBatch(ctx, insertFacts)
	if err != nil {
		return fmt.Errorf("prepare insert: %w", err)
	}
	defer b.Abort()
	n := min(len(facts), insertBlock)
	var (
		ids, tenants, kinds, convs, visitors, agents, roles, lengths = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		ats, inserted                                                = make([]time.Time, n), make([]time.Time, n)
		values                                                       = make([]float64, n)
	)
	now := time.Now()
	for from := 0; from < len(facts); from += n {
		block := facts[from:min(from+n, len(facts))]
		for i, f := range block {
			ids[i], tenants[i], kinds[i], ats[i] = f.ID, f.Tenant, f.Kind, f.At
			convs[i], visitors[i], agents[i] = f.Conversation, f.Visitor, f.Agent
			roles[i], lengths[i], values[i], inserted[i] = f.Role, f.Length, f.Value, now
		}
		k := len(block)
		for i, col := range []any{ids[:k], tenants[:k], kinds[:k], ats[:k], convs[:k], visitors[:k], agents[:k], roles[:k], lengths[:k], values[:k], inserted[:k]} {
			if err := b.Column(i).Append(col); err != nil {
				return fmt.Errorf("append column %d: %w", i, err)
			}
		}
		if from+k < len(facts) {
			// Each block's write has its own deadline: a stop must not
			// wait for every block of a slow server's insert in turn.
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("insert %d facts: %w", len(facts), err)
			}
			if err := b.Flush(); err != nil {
				return fmt.Errorf("insert %d facts: send rows %d to %d: %w", len(facts), from, from+k, err)
			}
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert %d facts: %w", len(facts), err)
	}
	return nil
}

// Erased is a pseudonym erased from a tenant's facts.
type Erased struct{ Tenant, Pseudonym string }

// ErasedPseudonyms returns every pseudonym erased so far.
func (s *Store) ErasedPseudonyms(ctx context.Context) ([]Erased, error) {
	rows, err := s.conn.Query(ctx, "SELECT DISTINCT tenant, pseudonym FROM erased_pseudonyms")
	if err != nil {
		return nil, fmt.Errorf("read erased pseudonyms: %w", err)
	}
	defer rows.Close()
	var out []Erased
	for rows.Next() {
		var e Erased
		if err := rows.Scan(&e.Tenant, &e.Pseudonym); err != nil {
			return nil, fmt.Errorf("read erased pseudonyms: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// deletePoll is how often Erase checks whether the deletion is done.
const deletePoll = 50 * time.Millisecond

// Erase records each pseudonym as erased, deletes every row whose visitor
// or agent is one of them, and returns once no such row is left, with the
// number of facts deleted for each, in the order given. The rows of every
// pseudonym go in one deletion: a lightweight DELETE where the server has
// one (23.3 and later), an ALTER TABLE … DELETE mutation otherwise, which
// rewrites the table's parts and so costs about as much for many
// pseudonyms as for one. It waits for the deletion until the rows are gone
// or ctx ends.
func (s *Store) Erase(ctx context.Context, erased []analyticsapi.EraseArgs) ([]int64, error) {
	if len(erased) == 0 {
		return nil, nil
	}
	rec, err := s.conn.PrepareBatch(ctx, "INSERT INTO erased_pseudonyms (tenant, pseudonym, erased_at)")
	if err != nil {
		return nil, fmt.Errorf("record erased pseudonyms: %w", err)
	}
	defer rec.Abort()
	now := time.Now()
	for _, e := range erased {
		if err := rec.Append(e.Tenant, e.Pseudonym, now); err != nil {
			return nil, fmt.Errorf("record erased pseudonyms: %w", err)
		}
	}
	if err := rec.Send(); err != nil {
		return nil, fmt.Errorf("record erased pseudonyms: %w", err)
	}
	const one = "(tenant = ? AND (visitor_pseudonym = ? OR agent_pseudonym = ?))"
	counts := make([]int64, len(erased))
	var (
		where []string
		args  []any
	)
	for i, e := range erased {
		var n uint64
		if err := s.conn.QueryRow(ctx, "SELECT uniqExact(fact_id) FROM facts WHERE "+one, e.Tenant, e.Pseudonym, e.Pseudonym).Scan(&n); err != nil {
			return nil, fmt.Errorf("count rows to erase: %w", err)
		}
		if counts[i] = int64(n); n > 0 {
			where = append(where, one)
			args = append(args, e.Tenant, e.Pseudonym, e.Pseudonym)
		}
	}
	if len(where) == 0 {
		return counts, nil
	}
	cond := strings.Join(where, " OR ")
	stmt := "ALTER TABLE facts DELETE WHERE "
	if s.version.hasLightweightDelete() {
		stmt = "DELETE FROM facts WHERE "
	}
	if err := s.conn.Exec(ctx, stmt+cond, args...); err != nil {
		return nil, fmt.Errorf("delete rows: %w", err)
	}
	for {
		var left uint64
		if err := s.conn.QueryRow(ctx, "SELECT count() FROM facts WHERE "+cond, args...).Scan(&left); err != nil {
			return nil, fmt.Errorf("count rows left to erase: %w", err)
		}
		if left == 0 {
			return counts, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for deletion of %d rows: %w", left, ctx.Err())
		case <-time.After(deletePoll):
		}
	}
}

// kindOf is the fact kind each metric reads.
var kindOf = map[string]string{
	analyticsapi.MetricConversations: analyticsapi.KindOpened,
	analyticsapi.MetricMessages:      analyticsapi.KindMessage,
	analyticsapi.MetricFirstResponse: analyticsapi.KindFirstResponse,
	analyticsapi.MetricResolution:    analyticsapi.KindClosed,
	analyticsapi.MetricCSAT:          analyticsapi.KindRated,
}

// KnownMetric reports whether Metric can answer name.
func KnownMetric(name string) bool { return kindOf[name] != "" }

// Bucket is one interval of a metric: its facts, the mean of their values
// and the distinct visitors they concern.
type Bucket struct {
	Start    time.Time
	Facts    uint64
	Mean     float64
	Visitors uint64
}

// Metric returns the buckets of width step (an hour or a day, aligned on
// UTC) of metric for tenant over [from, to), oldest first; buckets without
// facts are left out. Each fact counts once however often it was inserted.
func (s *Store) Metric(ctx context.Context, tenant, metric string, from, to time.Time, step time.Duration) ([]Bucket, error) {
	kind := kindOf[metric]
	if kind == "" {
		return nil, fmt.Errorf("unknown metric %q", metric)
	}
	width := strconv.FormatInt(int64(step/time.Second), 10)
	q := `SELECT intDiv(toUInt32(at), ` + width + `) * ` + width + ` AS t, count() AS n, avg(value) AS v, uniqExact(visitor_pseudonym) AS visitors
FROM facts FINAL
WHERE tenant = ? AND kind = ? AND at >= toDateTime(?) AND at < toDateTime(?)
GROUP BY t
ORDER BY t`
	rows, err := s.conn.Query(ctx, q, tenant, kind, uint32(from.Unix()), uint32(to.Unix()))
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", metric, err)
	}
	defer rows.Close()
	var out []Bucket
	for rows.Next() {
		var (
			t        uint64
			b        Bucket
			mean     float64
			n, users uint64
		)
		if err := rows.Scan(&t, &n, &mean, &users); err != nil {
			return nil, fmt.Errorf("read %s: %w", metric, err)
		}
		b.Start, b.Facts, b.Mean, b.Visitors = time.Unix(int64(t), 0).UTC(), n, mean, users
		out = append(out, b)
	}
	return out, rows.Err()
}

// DropExpired drops the monthly partitions of facts that end before
// cutoff: retention on servers without TTL, and a cheap sweep on the
// others. It returns the partitions dropped.
func (s *Store) DropExpired(ctx context.Context, cutoff time.Time) ([]string, error) {
	rows, err := s.conn.Query(ctx, "SELECT DISTINCT partition FROM system.parts WHERE database = currentDatabase() AND table = 'facts' AND active")
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	var parts []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list partitions: %w", err)
		}
		parts = append(parts, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	var dropped []string
	for _, p := range parts {
		month, err := time.Parse("200601", p)
		if err != nil || !month.AddDate(0, 1, 0).Before(cutoff) {
			continue
		}
		// p is six digits, checked by the parse above.
		if err := s.conn.Exec(ctx, "ALTER TABLE facts DROP PARTITION "+p); err != nil {
			return dropped, fmt.Errorf("drop partition %s: %w", p, err)
		}
		dropped = append(dropped, p)
	}
	return dropped, nil
}
