// Package analytics is the analytics service: it consumes the pseudonymized,
// content-free facts of the ANALYTICS stream (and nothing else), stores them
// in ClickHouse, and answers metrics with a minimum group size.
//
// It consumes ANALYTICS through the batch mode of Parley's Watermill
// subscriber (pkg/watermilljs) on the durable consumer
// "analytics-clickhouse" (internal/ingest), one instance reading at a time,
// and inserts in batches of up to 20,000 facts or one second, whichever
// comes first, through clickhouse-go's native protocol with explicit
// column lists. A batch is acked, with one cumulative ack, only after its
// insert and every one before it succeeded: while
// ClickHouse is down the batch is held and retried and nothing more is read
// until it answers again, so facts wait in the stream (within its MaxAge)
// and none is lost. The relay writes a batch's facts of a tenant in one
// message (analyticsapi.KindFacts); a message of one fact, as written
// before, is read too. A redelivered fact is
// counted once: the facts table keeps one row per fact id
// (ReplacingMergeTree) and every query reads it with FINAL.
//
// It serves, in queue group analyticsapi.Queue, the metrics
// (analyticsapi.MetricsSubject: a point whose facts concern fewer distinct
// visitor pseudonyms than the minimum group size has no value) and the
// erasure of a pseudonym's rows (analyticsapi.EraseSubject), which the
// privacy service calls, and which erasure requests stored in ANALYTICS
// trigger too. An erased pseudonym's facts still in transit are dropped
// before insert. The stored requests read while a deletion runs are
// deleted together, in one deletion: on servers before 23.3 each is a
// mutation rewriting the table, so a backlog with many requests pays one
// or two, not one each. The requests waiting in the backlog when the
// consumer starts are found first: none of their pseudonyms' facts is
// inserted, so their deletions find nothing to rewrite.
//
// At start it creates and migrates its schema (table schema_migrations; see
// internal/clickhouse and docs/analytics.md), including the aggregate views
// analysts' tools read. With no DSN configured it runs without ClickHouse and
// reports "not configured"; with a DSN it retries with backoff until the
// server answers, so Parley starts before its ClickHouse does and /readyz
// says why it is not ready.
//
// # ClickHouse versions
//
// clickhouse-go v2 (v2.50) targets current servers, but its native protocol
// negotiates down to the server's revision, and against Debian's
// clickhouse-server 18.16 (revision 54412) connecting, SELECT version(),
// CREATE TABLE and batch inserts work without any option (tested here with a
// real 18.16 server). Two limits follow from the old revision:
//   - Query settings (in the DSN query string or in a context) are sent in the
//     pre-54429 binary form, which takes only integers and booleans: a string
//     setting fails with "query setting … has unsupported data type".
//   - Only the native protocol: the driver's HTTP mode needs a 2023+ server.
//
// Features are gated on the detected version (see Service.Version), not
// assumed: the TTL clause only from 19.6 (before, monthly partitions past the
// retention are dropped every hour), lightweight DELETE only from 23.3
// (before, ALTER TABLE … DELETE, whose mutation erasure waits for), and no
// DateTime64 anywhere. The store's statements are tested on 18.16 and on
// ClickHouse 26.7 (in process, through chDB: the statements, not the
// driver's protocol or grants; internal/clickhouse, TestStore).
package analytics
