package clickhouse_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// The statements of the store run on a current ClickHouse through chDB,
// ClickHouse's engine as a library, which testdata/chdb/run.mjs loads in
// Node.js (the npm registry has it; no current clickhouse-server package
// is within reach of CI). chdbConn is the store's connection to it: it
// sends each statement, with its arguments bound into the text as
// clickhouse-go binds them, to run.mjs and reads the rows back. What it
// does not cover is the driver's wire protocol: a batch insert arrives as
// INSERT … VALUES of the same columns instead of native column blocks.

// chdbDir is the npm project with run.mjs; `make test` installs it.
const chdbDir = "testdata/chdb"

// startChDB starts run.mjs with a session in a new temp dir, stopped when
// the test ends. Without node or the npm install the test is skipped,
// except when the CI environment variable is set: CI must never pass by
// skipping.
func startChDB(t *testing.T) *chdbConn {
	t.Helper()
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(chdbDir + "/node_modules/chdb/package.json")
	}
	if err != nil {
		msg := fmt.Sprintf("this test needs Node.js, and chDB installed in %[1]s (make test-chdb installs it; make test runs that first): %[2]v", chdbDir, err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	cmd := exec.Command(node, "run.mjs", t.TempDir())
	cmd.Dir = chdbDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("run.mjs: %v: %s", err, stderr.String())
		}
	})
	c := &chdbConn{in: in, out: bufio.NewReader(out)}
	// The session's default database is clickhouse-local's own kind; the
	// store's tables go into an Atomic one, as a server's default is.
	for _, stmt := range []string{"CREATE DATABASE parley ENGINE = Atomic", "USE parley"} {
		if _, err := c.run(stmt); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// chdbConn is a driver.Conn on run.mjs. The store calls Exec, Query,
// QueryRow and PrepareBatch only; any other method panics (nil Conn).
type chdbConn struct {
	driver.Conn
	mu  sync.Mutex // one statement at a time on the pipe
	in  io.Writer
	out *bufio.Reader
}

// run runs one statement and returns its rows.
func (c *chdbConn) run(query string, args ...any) ([][]any, error) {
	query, err := bind(query, args)
	if err != nil {
		return nil, err
	}
	line, err := json.Marshal(query)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.in.Write(append(line, '\n')); err != nil {
		return nil, fmt.Errorf("send to run.mjs: %w", err)
	}
	reply, err := c.out.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("read from run.mjs: %w", err)
	}
	var answer struct {
		Data  *string
		Error string
	}
	if err := json.Unmarshal(reply, &answer); err != nil {
		return nil, fmt.Errorf("read from run.mjs: %w: %q", err, reply)
	}
	if answer.Data == nil {
		return nil, fmt.Errorf("%s: %s", query, answer.Error)
	}
	var rows [][]any
	dec := json.NewDecoder(strings.NewReader(*answer.Data))
	dec.UseNumber()
	for dec.More() {
		var row []any
		if err := dec.Decode(&row); err != nil {
			return nil, fmt.Errorf("read rows of %s: %w", query, err)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// query runs q and returns its rows as text.
func (c *chdbConn) query(t *testing.T, q string) [][]string {
	t.Helper()
	rows, err := c.run(q)
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]string, 0, len(rows))
	for _, r := range rows {
		row := make([]string, len(r))
		for i, v := range r {
			row[i] = fmt.Sprint(v)
		}
		out = append(out, row)
	}
	return out
}

func (c *chdbConn) Exec(_ context.Context, query string, args ...any) error {
	_, err := c.run(query, args...)
	return err
}

func (c *chdbConn) Query(_ context.Context, query string, args ...any) (driver.Rows, error) {
	rows, err := c.run(query, args...)
	if err != nil {
		return nil, err
	}
	return &chdbRows{rows: rows, next: -1}, nil
}

func (c *chdbConn) QueryRow(_ context.Context, query string, args ...any) driver.Row {
	rows, err := c.run(query, args...)
	if err == nil && len(rows) == 0 {
		err = errors.New("no rows")
	}
	r := &chdbRows{rows: rows, err: err}
	return r
}

func (c *chdbConn) PrepareBatch(_ context.Context, insert string, _ ...driver.PrepareBatchOption) (driver.Batch, error) {
	return &chdbBatch{conn: c, insert: insert}, nil
}

// chdbRows are the rows of a statement, as driver.Rows and driver.Row.
type chdbRows struct {
	driver.Rows
	rows [][]any
	next int
	err  error
}

func (r *chdbRows) Next() bool   { r.next++; return r.next < len(r.rows) }
func (r *chdbRows) Err() error   { return r.err }
func (r *chdbRows) Close() error { return nil }

// ScanStruct makes chdbRows a driver.Row as well; the store does not call it.
func (r *chdbRows) ScanStruct(any) error { return errors.New("not supported") }

func (r *chdbRows) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	row := r.rows[max(r.next, 0)]
	if len(row) != len(dest) {
		return fmt.Errorf("scan %d columns into %d values", len(row), len(dest))
	}
	for i, v := range row {
		// Numbers come as JSON numbers, or as strings where the server
		// quotes 64-bit integers.
		s := fmt.Sprint(v)
		var err error
		switch d := dest[i].(type) {
		case *string:
			*d = s
		case *uint32:
			var n uint64
			n, err = strconv.ParseUint(s, 10, 32)
			*d = uint32(n)
		case *uint64:
			*d, err = strconv.ParseUint(s, 10, 64)
		case *float64:
			*d, err = strconv.ParseFloat(s, 64)
		default:
			err = fmt.Errorf("scan into %T: not supported", d)
		}
		if err != nil {
			return fmt.Errorf("scan column %d: %w", i, err)
		}
	}
	return nil
}

// chdbBatch gathers a batch insert's values, by row or by column, and
// sends them as one INSERT … VALUES.
type chdbBatch struct {
	driver.Batch
	conn   *chdbConn
	insert string
	cols   [][]any
}

func (b *chdbBatch) Abort() error { return nil }

func (b *chdbBatch) Append(row ...any) error {
	for i, v := range row {
		b.column(i)
		b.cols[i] = append(b.cols[i], v)
	}
	return nil
}

func (b *chdbBatch) Column(i int) driver.BatchColumn {
	b.column(i)
	return chdbColumn{b, i}
}

func (b *chdbBatch) column(i int) {
	for len(b.cols) <= i {
		b.cols = append(b.cols, nil)
	}
}

// Flush keeps the rows for Send, which sends them all: the insert is one
// statement either way.
func (b *chdbBatch) Flush() error { return nil }

func (b *chdbBatch) Send() error {
	var rows []string
	for r := range b.cols[0] {
		values := make([]string, len(b.cols))
		for c, col := range b.cols {
			if len(col) != len(b.cols[0]) {
				return fmt.Errorf("column %d has %d values, column 0 %d", c, len(col), len(b.cols[0]))
			}
			v, err := literal(col[r])
			if err != nil {
				return err
			}
			values[c] = v
		}
		rows = append(rows, "("+strings.Join(values, ", ")+")")
	}
	return b.conn.Exec(context.Background(), b.insert+" VALUES "+strings.Join(rows, ", "))
}

type chdbColumn struct {
	b *chdbBatch
	i int
}

// Append takes a column's values as a slice, as the store gives them.
func (c chdbColumn) Append(values any) error {
	v := reflect.ValueOf(values)
	if v.Kind() != reflect.Slice {
		return fmt.Errorf("append %T to a column: want a slice", values)
	}
	for j := range v.Len() {
		c.b.cols[c.i] = append(c.b.cols[c.i], v.Index(j).Interface())
	}
	return nil
}

func (c chdbColumn) AppendRow(v any) error { return c.b.Append(v) }

// bind replaces each ? of query by its argument, as clickhouse-go's
// client-side binding does for the store's statements (none of which has a
// ? inside a literal).
func bind(query string, args []any) (string, error) {
	parts := strings.Split(query, "?")
	if len(parts)-1 != len(args) {
		return "", fmt.Errorf("%d placeholders, %d arguments: %s", len(parts)-1, len(args), query)
	}
	var b strings.Builder
	b.WriteString(parts[0])
	for i, a := range args {
		v, err := literal(a)
		if err != nil {
			return "", err
		}
		b.WriteString(v)
		b.WriteString(parts[i+1])
	}
	return b.String(), nil
}

// quoteString escapes a string literal as clickhouse-go does.
var quoteString = strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\x00", `\0`)

// literal is v as clickhouse-go binds it into a statement's text (its
// format in bind.go), for the types the store uses.
func literal(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return "'" + quoteString.Replace(v) + "'", nil
	case uint32:
		return strconv.FormatUint(uint64(v), 10), nil
	case float64:
		return fmt.Sprintf("cast(%s, 'Float64')", strconv.FormatFloat(v, 'g', -1, 64)), nil
	case time.Time:
		if v.Location() == time.Local {
			return fmt.Sprintf("toDateTime('%d')", v.Unix()), nil
		}
		return fmt.Sprintf("toDateTime('%s', '%s')", v.Format(time.DateTime), v.Location()), nil
	}
	return "", fmt.Errorf("bind %T: not supported", v)
}
