package proxy_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// pgxConfig parses dsn for pgx. A context that ends during a query sends a CancelRequest
// (through txlane when dsn is proxied) and waits for the server's answer, as libpq does,
// instead of pgx's default of closing the connection.
func pgxConfig(tb testing.TB, dsn string) *pgx.ConnConfig {
	tb.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.BuildContextWatcherHandler = func(pg *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pg, DeadlineDelay: 5 * time.Second}
	}
	return cfg
}

// pgxConnect opens a pgx connection to dsn, closed when the test ends.
func pgxConnect(tb testing.TB, dsn string) *pgx.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, pgxConfig(tb, dsn))
	if err != nil {
		tb.Fatalf("pgx connect: %v", err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	tb.Cleanup(cancel)
	return ctx
}

func mustExec(tb testing.TB, conn *pgx.Conn, sql string, args ...any) pgconn.CommandTag {
	tb.Helper()
	tag, err := conn.Exec(testCtx(tb), sql, args...)
	if err != nil {
		tb.Fatalf("exec %q: %v", sql, err)
	}
	return tag
}

// wantPgError fails unless err is a server error with SQLSTATE code.
func wantPgError(tb testing.TB, err error, code string) *pgconn.PgError {
	tb.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		tb.Fatalf("got error %v (%T), want SQLSTATE %s", err, err, code)
	}
	if pgErr.Code != code {
		tb.Fatalf("got SQLSTATE %s (%s), want %s", pgErr.Code, pgErr.Message, code)
	}
	return pgErr
}

// TestPgxQueryExecModes runs the same typed round trip in every pgx query mode through
// txlane: simple protocol (values inlined client-side), extended without and with Describe,
// and the statement and description caches.
func TestPgxQueryExecModes(t *testing.T) { inPgxPoolModes(t, testPgxQueryExecModes) }

func testPgxQueryExecModes(t *testing.T, pool proxy.PoolOptions) {
	p := startProxy(t, func(o *proxy.Options) { o.Pool = pool })
	conn := pgxConnect(t, p.DSN(t, ""))
	ctx := testCtx(t)
	if _, err := conn.Exec(ctx, "SET TimeZone = 'UTC'"); err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2024, 2, 29, 23, 59, 59, 123456000, time.UTC)
	num := pgtype.Numeric{Int: big.NewInt(1234567), Exp: -3, Valid: true}
	modes := []pgx.QueryExecMode{
		pgx.QueryExecModeSimpleProtocol,
		pgx.QueryExecModeExec,
		pgx.QueryExecModeDescribeExec,
		pgx.QueryExecModeCacheStatement,
		pgx.QueryExecModeCacheDescribe,
	}
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			var (
				i     int64
				s     string
				null  *string
				b     []byte
				arr   []int32
				gotTS time.Time
				n     pgtype.Numeric
				j     map[string]any
				ok    bool
			)
			err := conn.QueryRow(ctx,
				`SELECT $1::int8 + 1, $2::text || '!', $3::text, $4::bytea, $5::int4[], $6::timestamptz, $7::numeric * 2, $8::jsonb, $9::bool`,
				mode, int64(41), "it's", nil, []byte{0, 0xff, 'x'}, []int32{1, 2, 3}, ts, num,
				`{"k": [1, "two"]}`, true,
			).Scan(&i, &s, &null, &b, &arr, &gotTS, &n, &j, &ok)
			if err != nil {
				t.Fatal(err)
			}
			if i != 42 || s != "it's!" || null != nil || !bytes.Equal(b, []byte{0, 0xff, 'x'}) ||
				fmt.Sprint(arr) != "[1 2 3]" || !gotTS.Equal(ts) || !ok {
				t.Errorf("got %d %q %v %x %v %v %v", i, s, null, b, arr, gotTS, ok)
			}
			if v, _ := n.Value(); v != "2469.134" {
				t.Errorf("numeric: got %v, want 2469.134", v)
			}
			if fmt.Sprint(j) != "map[k:[1 two]]" {
				t.Errorf("jsonb: got %v", j)
			}

			// Errors are reported as the server's, and the connection stays usable.
			_, err = conn.Exec(ctx, "SELECT 1/$1::int", mode, 0)
			wantPgError(t, err, "22012")
			var one int
			if err := conn.QueryRow(ctx, "SELECT $1::int", mode, 1).Scan(&one); err != nil || one != 1 {
				t.Fatalf("after an error: %d, %v", one, err)
			}
		})
	}
}

// TestPgxStatementCache runs one query many times in pgx's default mode: pgx prepares it
// once and then only binds it, so the server holds exactly one prepared statement for it.
func TestPgxStatementCache(t *testing.T) { inPgxPoolModes(t, testPgxStatementCache) }

func testPgxStatementCache(t *testing.T, pool proxy.PoolOptions) {
	p := startProxy(t, func(o *proxy.Options) { o.Pool = pool })
	conn := pgxConnect(t, p.DSN(t, ""))
	ctx := testCtx(t)
	const sql = "SELECT $1::int4 * 3 /* statement cache */"
	for i := 0; i < 200; i++ {
		var got int
		if err := conn.QueryRow(ctx, sql, i).Scan(&got); err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		if got != 3*i {
			t.Fatalf("query %d: got %d, want %d", i, got, 3*i)
		}
	}
	var n int
	var name string
	err := conn.QueryRow(ctx, "SELECT count(*), min(name) FROM pg_prepared_statements WHERE statement = $1",
		pgx.QueryExecModeSimpleProtocol, sql).Scan(&n, &name)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || !strings.HasPrefix(name, "stmtcache_") {
		t.Fatalf("server holds %d prepared statements for the query (first %q), want 1 stmtcache_*", n, name)
	}
}

// batchOutcome is what pgx reported for one queued query of a batch.
type batchOutcome struct {
	value int
	code  string // SQLSTATE, "" on success
}

// runBatch sends 100 queries in one batch, the 51st failing, and returns each result.
func runBatch(t *testing.T, dsn, table string) []batchOutcome {
	conn := pgxConnect(t, dsn)
	ctx := testCtx(t)
	b := &pgx.Batch{}
	for i := 0; i < 100; i++ {
		switch {
		case i == 50:
			b.Queue("SELECT 1/(5 - $1::int)", 5)
		case i%10 == 0:
			b.Queue("INSERT INTO "+table+" VALUES ($1) RETURNING id", i)
		default:
			b.Queue("SELECT $1::int * 2", i)
		}
	}
	br := conn.SendBatch(ctx, b)
	out := make([]batchOutcome, 100)
	for i := range out {
		err := br.QueryRow().Scan(&out[i].value)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			out[i].code = pgErr.Code
		} else if err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
	}
	err := br.Close()
	wantPgError(t, err, "22012")
	// The connection is usable after the failed batch.
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("after the batch: %d, %v", one, err)
	}
	return out
}

// TestPgxBatch sends 100 queries in one batch with a failure in the middle: results before
// it succeed, the rest report its error, and the batch's implicit transaction rolls back
// the inserts queued before it. The outcome must be the same directly and through txlane.
func TestPgxBatch(t *testing.T) { inPgxPoolModes(t, testPgxBatch) }

func testPgxBatch(t *testing.T, pool proxy.PoolOptions) {
	p := startProxy(t, func(o *proxy.Options) { o.Pool = pool })
	admin := pgxConnect(t, p.Direct)
	table := uniqueName("pgx_batch")
	mustExec(t, admin, "CREATE TABLE "+table+" (id int PRIMARY KEY)")
	t.Cleanup(func() { admin.Exec(context.Background(), "DROP TABLE "+table) })

	proxied := runBatch(t, p.DSN(t, ""), table)
	for i, o := range proxied {
		switch {
		case i < 50 && i%10 == 0:
			if o != (batchOutcome{value: i}) {
				t.Errorf("insert %d: got %+v", i, o)
			}
		case i < 50:
			if o != (batchOutcome{value: 2 * i}) {
				t.Errorf("query %d: got %+v, want %d", i, o, 2*i)
			}
		default:
			if o.code != "22012" {
				t.Errorf("query %d after the failure: got %+v, want SQLSTATE 22012", i, o)
			}
		}
	}
	var n int
	if err := admin.QueryRow(testCtx(t), "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != 0 {
		t.Errorf("rows left by the failed batch: %d (%v), want 0", n, err)
	}
	direct := runBatch(t, p.Direct, table)
	if fmt.Sprint(direct) != fmt.Sprint(proxied) {
		t.Errorf("batch outcomes differ:\ndirect  %v\nproxied %v", direct, proxied)
	}
}

// TestPgconnPipelineError drives a pgconn pipeline through txlane with an error in the
// middle segment: the segment's later requests are skipped, the next segment runs.
func TestPgconnPipelineError(t *testing.T) { inPgxPoolModes(t, testPgconnPipelineError) }

func testPgconnPipelineError(t *testing.T, pool proxy.PoolOptions) {
	p := startProxy(t, func(o *proxy.Options) { o.Pool = pool })
	conn := pgxConnect(t, p.DSN(t, "")).PgConn()
	ctx := testCtx(t)
	table := uniqueName("pgx_pipe")
	exec(t, conn, "CREATE TABLE "+table+" (id int PRIMARY KEY)")
	t.Cleanup(func() { exec(t, conn, "DROP TABLE IF EXISTS "+table) })

	pl := conn.StartPipeline(ctx)
	ins := "INSERT INTO " + table + " VALUES ($1)"
	pl.SendQueryParams(ins, [][]byte{[]byte("1")}, nil, nil, nil)
	pl.SendPipelineSync()
	pl.SendPrepare("pipe_stmt", "SELECT $1::int + 100", nil)
	pl.SendQueryPrepared("pipe_stmt", [][]byte{[]byte("1")}, nil, nil)
	pl.SendQueryParams(ins, [][]byte{[]byte("2")}, nil, nil, nil)
	pl.SendQueryParams(ins, [][]byte{[]byte("1")}, nil, nil, nil) // duplicate key
	pl.SendQueryParams(ins, [][]byte{[]byte("3")}, nil, nil, nil) // skipped
	pl.SendPipelineSync()
	pl.SendQueryPrepared("pipe_stmt", [][]byte{[]byte("5")}, nil, nil)
	pl.SendQueryParams("SELECT array_agg(id ORDER BY id)::text FROM "+table, nil, nil, nil, nil)
	pl.SendPipelineSync()
	if err := pl.Flush(); err != nil {
		t.Fatal(err)
	}

	next := func() any {
		t.Helper()
		res, err := pl.GetResults()
		if err != nil {
			return err
		}
		return res
	}
	rows := func(what string) []string {
		t.Helper()
		res := next()
		rr, ok := res.(*pgconn.ResultReader)
		if !ok {
			t.Fatalf("%s: got %T %v, want a result", what, res, res)
		}
		r := rr.Read()
		if r.Err != nil {
			t.Fatalf("%s: %v", what, r.Err)
		}
		var out []string
		for _, row := range r.Rows {
			out = append(out, string(row[0]))
		}
		return append(out, r.CommandTag.String())
	}
	sync := func(what string) {
		t.Helper()
		if res := next(); fmt.Sprintf("%T", res) != "*pgconn.PipelineSync" {
			t.Fatalf("%s: got %T %v, want a PipelineSync", what, res, res)
		}
	}
	if got := rows("insert 1"); fmt.Sprint(got) != "[INSERT 0 1]" {
		t.Errorf("insert 1: %v", got)
	}
	sync("first sync")
	if sd, ok := next().(*pgconn.StatementDescription); !ok || len(sd.ParamOIDs) != 1 || sd.ParamOIDs[0] != pgtype.Int4OID {
		t.Errorf("prepare: got %+v", sd)
	}
	if got := rows("prepared 1"); fmt.Sprint(got) != "[101 SELECT 1]" {
		t.Errorf("prepared 1: %v", got)
	}
	if got := rows("insert 2"); fmt.Sprint(got) != "[INSERT 0 1]" {
		t.Errorf("insert 2: %v", got)
	}
	err, _ := next().(error)
	wantPgError(t, err, "23505")
	sync("second sync (the insert of 3 is skipped)")
	if got := rows("prepared 5"); fmt.Sprint(got) != "[105 SELECT 1]" {
		t.Errorf("prepared 5: %v", got)
	}
	// The failed segment rolled back as one implicit transaction: 2 is gone too.
	if got := rows("contents"); fmt.Sprint(got) != "[{1} SELECT 1]" {
		t.Errorf("table contents: %v, want [{1} SELECT 1]", got)
	}
	sync("last sync")
	if err := pl.Close(); err != nil {
		t.Fatal(err)
	}
	if got := scalar(t, conn, "SELECT 'after pipeline'"); got != "after pipeline" {
		t.Fatal(got)
	}
}

// TestPgxCopy copies 10,000 rows in with CopyFrom and out with COPY TO STDOUT, checking
// every byte.
func TestPgxCopy(t *testing.T) { inPgxPoolModes(t, testPgxCopy) }

func testPgxCopy(t *testing.T, pool proxy.PoolOptions) {
	p := startProxy(t, func(o *proxy.Options) { o.Pool = pool })
	conn := pgxConnect(t, p.DSN(t, ""))
	ctx := testCtx(t)
	table := uniqueName("pgx_copy")
	mustExec(t, conn, "CREATE TABLE "+table+" (id int PRIMARY KEY, name text, score float8)")
	t.Cleanup(func() { conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })

	const n = 10_000
	var want bytes.Buffer
	rows := make([][]any, n)
	for i := range rows {
		name := fmt.Sprintf("name-%d", i)
		var score any = float64(i) / 4
		if i%1000 == 7 {
			score = nil
		}
		rows[i] = []any{i, name, score}
		if score == nil {
			fmt.Fprintf(&want, "%d\t%s\t\\N\n", i, name)
		} else {
			fmt.Fprintf(&want, "%d\t%s\t%v\n", i, name, score)
		}
	}
	copied, err := conn.CopyFrom(ctx, pgx.Identifier{table}, []string{"id", "name", "score"}, pgx.CopyFromRows(rows))
	if err != nil {
		t.Fatal(err)
	}
	if copied != n {
		t.Fatalf("CopyFrom copied %d rows, want %d", copied, n)
	}

	var got bytes.Buffer
	tag, err := conn.PgConn().CopyTo(ctx, &got, "COPY (SELECT * FROM "+table+" ORDER BY id) TO STDOUT")
	if err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() != n || tag.String() != fmt.Sprintf("COPY %d", n) {
		t.Errorf("CopyTo tag %q, want COPY %d", tag, n)
	}
	if got.Len() != want.Len() || !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("COPY TO STDOUT sent %d bytes, want %d; first line %q", got.Len(), want.Len(), strings.SplitN(got.String(), "\n", 2)[0])
	}
	if lines := strings.Count(got.String(), "\n"); lines != n {
		t.Errorf("%d lines, want %d", lines, n)
	}

	// A failing COPY (duplicate key) reports the server's error and leaves the connection usable.
	_, err = conn.CopyFrom(ctx, pgx.Identifier{table}, []string{"id", "name", "score"}, pgx.CopyFromRows([][]any{{n + 1, "new", 1.0}, {5, "dup", 1.0}}))
	wantPgError(t, err, "23505")
	var count int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&count); err != nil || count != n {
		t.Fatalf("after the failed copy: %d rows (%v), want %d", count, err, n)
	}
}

// TestPgxCancel lets a context expire during pg_sleep(10): pgx sends a CancelRequest
// through txlane, the server answers 57014 at once, and the connection stays usable.
func TestPgxCancel(t *testing.T) { inPgxPoolModes(t, testPgxCancel) }

func testPgxCancel(t *testing.T, pool proxy.PoolOptions) {
	p := startProxy(t, func(o *proxy.Options) { o.Pool = pool })
	conn := pgxConnect(t, p.DSN(t, ""))
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		start := time.Now()
		_, err := conn.Exec(ctx, "SELECT pg_sleep(10)", mode)
		elapsed := time.Since(start)
		cancel()
		pgErr := wantPgError(t, err, "57014")
		if pgErr.Message != "canceling statement due to user request" {
			t.Errorf("%v: message %q", mode, pgErr.Message)
		}
		if elapsed > 3*time.Second {
			t.Errorf("%v: the canceled query took %v", mode, elapsed)
		}
		if conn.IsClosed() {
			t.Fatalf("%v: connection closed by the cancel", mode)
		}
		var got string
		if err := conn.QueryRow(testCtx(t), "SELECT 'usable'").Scan(&got); err != nil || got != "usable" {
			t.Fatalf("%v: after cancel: %q, %v", mode, got, err)
		}
	}
}

// TestPgxCancelWhileStreaming cancels a query while its rows stream through txlane: the
// rows received so far are delivered, then 57014, and the connection stays usable.
func TestPgxCancelWhileStreaming(t *testing.T) { inPgxPoolModes(t, testPgxCancelWhileStreaming) }

func testPgxCancelWhileStreaming(t *testing.T, pool proxy.PoolOptions) {
	p := startProxy(t, func(o *proxy.Options) { o.Pool = pool })
	conn := pgxConnect(t, p.DSN(t, ""))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	// NOTE: a set-returning function in the select list streams; in FROM it would be
	// materialized before the first row.
	rows, err := conn.Query(ctx, "SELECT generate_series(1, 1000000000)")
	if err != nil {
		t.Fatal(err)
	}
	var n, last int64
	for rows.Next() {
		var g int64
		if err := rows.Scan(&g); err != nil {
			t.Fatal(err)
		}
		n++
		if g != last+1 {
			t.Fatalf("row %d holds %d after %d", n, g, last)
		}
		last = g
	}
	wantPgError(t, rows.Err(), "57014")
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("canceled stream took %v", elapsed)
	}
	if n == 0 {
		t.Error("no row arrived before the cancel")
	}
	var got string
	if err := conn.QueryRow(testCtx(t), "SELECT 'usable'").Scan(&got); err != nil || got != "usable" {
		t.Fatalf("after cancel: %q, %v", got, err)
	}
}

// TestPgxCancelReachesOnlyItsBackend runs pg_sleep on two proxied connections and cancels
// one: it fails with 57014 at once, the other sleeps to the end and succeeds.
func TestPgxCancelReachesOnlyItsBackend(t *testing.T) {
	inPgxPoolModes(t, testPgxCancelReachesOnlyItsBackend)
}

func testPgxCancelReachesOnlyItsBackend(t *testing.T, pool proxy.PoolOptions) {
	p := startProxy(t, func(o *proxy.Options) { o.Pool = pool })
	dsn := p.DSN(t, "")
	victim := pgxConnect(t, dsn)
	bystander := pgxConnect(t, dsn)
	ctx := testCtx(t)

	type outcome struct {
		err     error
		elapsed time.Duration
	}
	run := func(conn *pgx.Conn, secs string, done chan<- outcome) {
		start := time.Now()
		_, err := conn.Exec(ctx, "SELECT pg_sleep("+secs+")")
		done <- outcome{err, time.Since(start)}
	}
	victimDone := make(chan outcome, 1)
	bystanderDone := make(chan outcome, 1)
	go run(bystander, "1.5", bystanderDone)
	go run(victim, "10", victimDone)

	time.Sleep(300 * time.Millisecond)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := victim.PgConn().CancelRequest(cctx); err != nil {
		t.Fatalf("CancelRequest: %v", err)
	}
	select {
	case v := <-victimDone:
		wantPgError(t, v.err, "57014")
		if v.elapsed > 3*time.Second {
			t.Errorf("canceled query took %v", v.elapsed)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the canceled query did not return within 5s")
	}
	b := <-bystanderDone
	if b.err != nil {
		t.Fatalf("the other connection's query failed: %v", b.err)
	}
	if b.elapsed < 1400*time.Millisecond {
		t.Errorf("the other connection's pg_sleep(1.5) returned after %v", b.elapsed)
	}
	var got int
	if err := victim.QueryRow(ctx, "SELECT 7").Scan(&got); err != nil || got != 7 {
		t.Fatalf("canceled connection after cancel: %d, %v", got, err)
	}
}

// TestPgxListenNotify sends a notification from one proxied connection to another.
func TestPgxListenNotify(t *testing.T) { inPgxPoolModes(t, testPgxListenNotify) }

func testPgxListenNotify(t *testing.T, pool proxy.PoolOptions) {
	p := startProxy(t, func(o *proxy.Options) { o.Pool = pool })
	dsn := p.DSN(t, "")
	listener := pgxConnect(t, dsn)
	sender := pgxConnect(t, dsn)
	ctx := testCtx(t)
	channel := uniqueName("pgx_chan")
	mustExec(t, listener, "LISTEN "+channel)
	mustExec(t, sender, "SELECT pg_notify($1, $2)", channel, "payload one")
	mustExec(t, sender, "NOTIFY "+channel+", 'payload two'")

	for _, want := range []string{"payload one", "payload two"} {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := listener.WaitForNotification(wctx)
		cancel()
		if err != nil {
			t.Fatalf("waiting for %q: %v", want, err)
		}
		if n.Channel != channel || n.Payload != want {
			t.Fatalf("got notification %q on %q, want %q on %q", n.Payload, n.Channel, want, channel)
		}
	}
	// The listener is still a working connection.
	var got string
	if err := listener.QueryRow(ctx, "SELECT 'after'").Scan(&got); err != nil || got != "after" {
		t.Fatalf("%q, %v", got, err)
	}
}

// TestPgxLargeResult reads 100,000 rows in both protocols and checks their sum.
func TestPgxLargeResult(t *testing.T) { inPgxPoolModes(t, testPgxLargeResult) }

func testPgxLargeResult(t *testing.T, pool proxy.PoolOptions) {
	p := startProxy(t, func(o *proxy.Options) { o.Pool = pool })
	conn := pgxConnect(t, p.DSN(t, ""))
	ctx := testCtx(t)
	const n = 100_000
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		rows, err := conn.Query(ctx, "SELECT g, repeat('x', g % 7) FROM generate_series(1, $1::int) AS g", mode, n)
		if err != nil {
			t.Fatal(err)
		}
		var count, sum, chars int64
		for rows.Next() {
			var g int64
			var s string
			if err := rows.Scan(&g, &s); err != nil {
				t.Fatal(err)
			}
			count++
			sum += g
			chars += int64(len(s))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if count != n || sum != n*(n+1)/2 {
			t.Errorf("%v: %d rows summing to %d, want %d summing to %d", mode, count, sum, n, n*(n+1)/2)
		}
		var wantChars int64
		for g := int64(1); g <= n; g++ {
			wantChars += g % 7
		}
		if chars != wantChars {
			t.Errorf("%v: %d characters, want %d", mode, chars, wantChars)
		}
		if rows.CommandTag().String() != fmt.Sprintf("SELECT %d", n) {
			t.Errorf("%v: tag %q", mode, rows.CommandTag())
		}
	}
}

// TestPgxLargeValues round-trips 5 MB text and bytea values as parameters and results.
func TestPgxLargeValues(t *testing.T) { inPgxPoolModes(t, testPgxLargeValues) }

func testPgxLargeValues(t *testing.T, pool proxy.PoolOptions) {
	p := startProxy(t, func(o *proxy.Options) { o.Pool = pool })
	conn := pgxConnect(t, p.DSN(t, ""))
	ctx := testCtx(t)
	const size = 5 << 20
	var sb strings.Builder
	for i := 0; sb.Len() < size; i++ {
		fmt.Fprintf(&sb, "%08d|", i)
	}
	text := sb.String()[:size]
	sum := md5.Sum([]byte(text))
	blob := make([]byte, size)
	for i := range blob {
		blob[i] = byte(i * 7)
	}

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec, pgx.QueryExecModeCacheStatement} {
		var echo string
		var length int
		var serverMD5 string
		err := conn.QueryRow(ctx, "SELECT $1::text, length($1::text), md5($1::text)", mode, text).Scan(&echo, &length, &serverMD5)
		if err != nil {
			t.Fatalf("%v: %v", mode, err)
		}
		if echo != text || length != size || serverMD5 != hex.EncodeToString(sum[:]) {
			t.Fatalf("%v: text of %d bytes came back as %d bytes (server length %d, md5 %s)", mode, size, len(echo), length, serverMD5)
		}
		var blobBack []byte
		if err := conn.QueryRow(ctx, "SELECT $1::bytea", mode, blob).Scan(&blobBack); err != nil {
			t.Fatalf("%v: %v", mode, err)
		}
		if !bytes.Equal(blobBack, blob) {
			t.Fatalf("%v: bytea of %d bytes came back as %d bytes, different", mode, size, len(blobBack))
		}
	}
	// A server-generated value larger than any buffer.
	var big string
	if err := conn.QueryRow(ctx, "SELECT repeat('ab', $1::int)", size/2).Scan(&big); err != nil || len(big) != size || big[:4] != "abab" {
		t.Fatalf("repeat: %d bytes, %v", len(big), err)
	}
}

// TestPgxPool runs 10 goroutines × 200 queries on a pgxpool of 4 connections through
// txlane, so connections are shared and waited for.
func TestPgxPool(t *testing.T) { inPgxPoolModes(t, testPgxPool) }

func testPgxPool(t *testing.T, poolOpts proxy.PoolOptions) {
	p := startProxy(t, func(o *proxy.Options) { o.Pool = poolOpts })
	cfg, err := pgxpool.ParseConfig(p.DSN(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 4
	ctx := testCtx(t)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	const workers, perWorker = 10, 200
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWorker; i++ {
				v := int64(w*perWorker + i)
				var got int64
				var label string
				var err error
				if i%2 == 0 {
					err = pool.QueryRow(ctx, "SELECT $1::int8 * 2, $2::text", v, fmt.Sprint("w", w)).Scan(&got, &label)
				} else {
					err = pool.QueryRow(ctx, "SELECT $1::int8 * 2, $2::text", pgx.QueryExecModeSimpleProtocol, v, fmt.Sprint("w", w)).Scan(&got, &label)
				}
				if err != nil {
					errs <- fmt.Errorf("worker %d query %d: %w", w, i, err)
					return
				}
				if got != 2*v || label != fmt.Sprint("w", w) {
					errs <- fmt.Errorf("worker %d query %d: got %d %q, want %d %q", w, i, got, label, 2*v, fmt.Sprint("w", w))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := pool.Stat()
	if st.TotalConns() > 4 || st.TotalConns() < 1 {
		t.Errorf("pool holds %d connections, want 1..4", st.TotalConns())
	}
	if st.AcquireCount() < workers*perWorker {
		t.Errorf("pool acquired %d times, want at least %d", st.AcquireCount(), workers*perWorker)
	}
	if n := p.Clients(); n != int(st.TotalConns()) {
		t.Errorf("txlane serves %d clients, the pool holds %d connections", n, st.TotalConns())
	}
}

// exchange sends msgs and returns the names of the messages received up to the
// ReadyForQuery answering the last of them (ParameterStatus and notices left out), and the
// values of the DataRows.
func exchange(t *testing.T, conn *pgconn.PgConn, msgs ...pgproto3.FrontendMessage) (types []string, rows [][]string) {
	t.Helper()
	fe := conn.Frontend()
	for _, m := range msgs {
		fe.Send(m)
	}
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	for {
		msg, err := conn.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("after %v: %v", types, err)
		}
		switch msg := msg.(type) {
		case *pgproto3.ParameterStatus, *pgproto3.NoticeResponse:
			continue
		case *pgproto3.DataRow:
			var row []string
			for _, v := range msg.Values {
				row = append(row, string(v))
			}
			rows = append(rows, row)
		case *pgproto3.ErrorResponse:
			types = append(types, "ErrorResponse "+msg.Code)
			continue
		}
		types = append(types, strings.TrimPrefix(fmt.Sprintf("%T", msg), "*pgproto3."))
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			return types, rows
		}
	}
}

// copyWithStraySync runs COPY FROM STDIN the way clients that pipeline a Sync right after
// Execute do (Parse/Bind/Execute/Sync, then CopyData, CopyDone, Sync). PostgreSQL ignores a
// Sync that arrives during COPY IN: two Syncs, one ReadyForQuery.
func copyWithStraySync(t *testing.T, conn *pgconn.PgConn, table string) {
	t.Helper()
	got, _ := exchange(t, conn,
		&pgproto3.Parse{Query: "COPY " + table + " FROM STDIN"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Sync{},
		&pgproto3.CopyData{Data: []byte("1\n2\n")}, &pgproto3.CopyDone{},
		&pgproto3.Sync{})
	if want := "[ParseComplete BindComplete CopyInResponse CommandComplete ReadyForQuery]"; fmt.Sprint(got) != want {
		t.Fatalf("COPY answered %v, want %v", got, want)
	}
}

// TestVectorLaneAfterCopyWithStraySync checks that a Sync the server ignores (sent during
// COPY IN) does not leave txlane waiting for a ReadyForQuery that never comes: vector reads
// are still offloaded afterwards, and a statement prepared on the vector lane can still be
// executed on the primary.
func TestVectorLaneAfterCopyWithStraySync(t *testing.T) {
	vec, scratch := uniqueName("stray_vec"), uniqueName("stray_copy")
	pgtest.Exec(t, fmt.Sprintf(`CREATE TABLE %[1]s (id int PRIMARY KEY, embedding vector(3));
INSERT INTO %[1]s VALUES (1, '[1,0,0]'), (2, '[0,1,0]');
CREATE TABLE %[2]s (id int)`, vec, scratch))
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+vec+", "+scratch) })
	p := startProxy(t, func(o *proxy.Options) {
		o.ReadPool = proxy.ReadPoolOptions{Config: pgtest.Config(t), MaxConns: 2, AcquireTimeout: 2 * time.Second}
		o.Rules.VectorTables = []string{vec}
	})
	conn := p.connect(t)
	primaryPID := scalar(t, conn, "SELECT pg_backend_pid()")
	read := "SELECT pg_backend_pid() FROM " + vec + " ORDER BY embedding <-> '[1,0,0]' LIMIT 1"
	if scalar(t, conn, read) == primaryPID {
		t.Fatal("a vector read ran on the primary before the COPY: the vector lane is not in use")
	}
	ctx := testCtx(t)
	// A statement first prepared and executed on the vector lane.
	knn := "SELECT id FROM " + vec + " ORDER BY embedding <-> $1::vector LIMIT 1"
	if _, err := conn.Prepare(ctx, "knn", knn, nil); err != nil {
		t.Fatal(err)
	}
	res := conn.ExecPrepared(ctx, "knn", [][]byte{[]byte("[0,1,0]")}, nil, nil).Read()
	if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != "2" {
		t.Fatalf("knn before the COPY: %v %v", res.Rows, res.Err)
	}

	// A statement parsed, bound and executed in one unit on the vector lane: the primary
	// does not hold it.
	knn2 := "SELECT id, pg_backend_pid() FROM " + vec + " ORDER BY embedding <-> $1::vector LIMIT 1"
	got, rows := exchange(t, conn,
		&pgproto3.Parse{Name: "knn2", Query: knn2},
		&pgproto3.Bind{PreparedStatement: "knn2", Parameters: [][]byte{[]byte("[0,1,0]")}},
		&pgproto3.Execute{}, &pgproto3.Sync{})
	if fmt.Sprint(got) != "[ParseComplete BindComplete DataRow CommandComplete ReadyForQuery]" ||
		len(rows) != 1 || rows[0][0] != "2" || rows[0][1] == primaryPID {
		t.Fatalf("knn2 on the vector lane: %v %v (primary pid %s)", got, rows, primaryPID)
	}

	copyWithStraySync(t, conn, scratch)
	if got := scalar(t, conn, "SELECT count(*) FROM "+scratch); got != "2" {
		t.Fatalf("copied %s rows, want 2", got)
	}
	if got := scalar(t, conn, "SELECT 'in step'"); got != "in step" {
		t.Fatalf("got %q", got)
	}

	// The statement still executes, wherever txlane runs it.
	res = conn.ExecPrepared(ctx, "knn", [][]byte{[]byte("[1,0,0]")}, nil, nil).Read()
	if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != "1" {
		t.Fatalf("knn after the COPY: rows %v, error %v", res.Rows, res.Err)
	}
	// Bound wherever txlane runs it, the client sees exactly the answer to its messages.
	got, rows = exchange(t, conn,
		&pgproto3.Bind{PreparedStatement: "knn2", Parameters: [][]byte{[]byte("[1,0,0]")}},
		&pgproto3.Execute{}, &pgproto3.Sync{})
	if fmt.Sprint(got) != "[BindComplete DataRow CommandComplete ReadyForQuery]" || len(rows) != 1 || rows[0][0] != "1" {
		t.Errorf("knn2 after the COPY answered %v %v, want [BindComplete DataRow CommandComplete ReadyForQuery] with id 1", got, rows)
	}
	got, _ = exchange(t, conn, &pgproto3.Parse{Name: "later", Query: "SELECT 1"}, &pgproto3.Sync{})
	if fmt.Sprint(got) != "[ParseComplete ReadyForQuery]" {
		t.Errorf("a Parse after that answered %v, want [ParseComplete ReadyForQuery]", got)
	}
	if got := scalar(t, conn, "SELECT 'still in step'"); got != "still in step" {
		t.Fatalf("got %q", got)
	}
	// And vector reads are offloaded again.
	if scalar(t, conn, read) == primaryPID {
		t.Error("after a COPY with a Sync sent during COPY IN, vector reads stay on the primary lane")
	}
}

// TestVectorLaneKeepsUnnamedStatement checks that what txlane does on the primary between a
// client's units (reading session settings before an offload decision) leaves the client's
// unnamed statement and unnamed portal alone: PostgreSQL keeps both across Syncs.
func TestVectorLaneKeepsUnnamedStatement(t *testing.T) {
	vec := uniqueName("unnamed_vec")
	pgtest.Exec(t, fmt.Sprintf(`CREATE TABLE %[1]s (id int PRIMARY KEY, embedding vector(3));
INSERT INTO %[1]s VALUES (1, '[1,0,0]')`, vec))
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+vec) })
	p := startProxy(t, func(o *proxy.Options) {
		o.ReadPool = proxy.ReadPoolOptions{Config: pgtest.Config(t), MaxConns: 2, AcquireTimeout: 2 * time.Second}
		o.Rules.VectorTables = []string{vec}
	})

	for _, dsn := range []struct{ name, dsn string }{{"direct", p.Direct}, {"txlane", p.DSN(t, "")}} {
		t.Run(dsn.name, func(t *testing.T) {
			ctx := testCtx(t)
			conn, err := pgconn.Connect(ctx, dsn.dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())

			got, _ := exchange(t, conn, &pgproto3.Parse{Query: "SELECT 'unnamed'"}, &pgproto3.Sync{})
			if fmt.Sprint(got) != "[ParseComplete ReadyForQuery]" {
				t.Fatalf("parse: %v", got)
			}
			got, rows := exchange(t, conn, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
			if fmt.Sprint(got) != "[BindComplete DataRow CommandComplete ReadyForQuery]" || fmt.Sprint(rows) != "[[unnamed]]" {
				t.Errorf("unnamed statement bound after a Sync: %v %v, want BindComplete and the row", got, rows)
			}

			// The unnamed portal, suspended inside a transaction block, resumes in a later unit.
			exec(t, conn, "BEGIN")
			got, rows = exchange(t, conn,
				&pgproto3.Parse{Query: "SELECT g FROM generate_series(1, 3) AS g"}, &pgproto3.Bind{},
				&pgproto3.Execute{MaxRows: 1}, &pgproto3.Sync{})
			if fmt.Sprint(got) != "[ParseComplete BindComplete DataRow PortalSuspended ReadyForQuery]" || fmt.Sprint(rows) != "[[1]]" {
				t.Fatalf("first row: %v %v", got, rows)
			}
			got, rows = exchange(t, conn, &pgproto3.Execute{MaxRows: 1}, &pgproto3.Sync{})
			if fmt.Sprint(got) != "[DataRow PortalSuspended ReadyForQuery]" || fmt.Sprint(rows) != "[[2]]" {
				t.Errorf("unnamed portal resumed after a Sync: %v %v, want the second row", got, rows)
			}
			exec(t, conn, "ROLLBACK")
		})
	}
}

// inPgxPoolModes runs a pgx test in session mode and in transaction mode
// with pool_size 2: the tests' connections (one to four) share two
// backends, and a test's two concurrent statements each get one.
func inPgxPoolModes(t *testing.T, test func(t *testing.T, pool proxy.PoolOptions)) {
	for _, pool := range []proxy.PoolOptions{{Mode: proxy.PoolSession}, {Mode: proxy.PoolTransaction, Size: 2}} {
		t.Run(string(pool.Mode), func(t *testing.T) { test(t, pool) })
	}
}
