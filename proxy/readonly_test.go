package proxy_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// hiddenWriteBed is a vector bed with functions that write where the
// classifier cannot see it, so that reads calling them are offloaded:
//
//   - S.audit(i): volatile, inserts i into S.log; listed in
//     policy.read_only_functions (a wrong claim);
//   - S.peek(i): stable, calls S.audit_v(i), a volatile twin of audit that is
//     not listed (the classifier cannot read the stable function's body);
//   - S.unsafe_ro(), S.lock(k), S.listen(): claimed read-only, they turn off
//     default_transaction_read_only, take a session advisory lock, LISTEN;
//   - S.setting(name): current_setting(name), hidden from the classifier, so
//     that a probe reads a setting the lane does not mirror on the lane.
//
// The STABLE ones (peek, tz, setting) run their SQL through EXECUTE: the
// catalog reads PL/pgSQL and SQL string bodies, but not dynamic SQL.
type hiddenWriteBed struct {
	*vectorBed
	schema string
}

func startHiddenWriteBed(t *testing.T, maxConns int) *hiddenWriteBed {
	t.Helper()
	schema := uniqueName("hw")
	pgtest.Exec(t, fmt.Sprintf(`CREATE SCHEMA %[1]s; GRANT ALL ON SCHEMA %[1]s TO PUBLIC;
CREATE TABLE %[1]s.log (i int); GRANT ALL ON %[1]s.log TO PUBLIC;
CREATE FUNCTION %[1]s.audit(i int) RETURNS int VOLATILE LANGUAGE plpgsql AS $f$BEGIN INSERT INTO %[1]s.log VALUES (i); RETURN i; END$f$;
CREATE FUNCTION %[1]s.audit_v(i int) RETURNS int VOLATILE LANGUAGE plpgsql AS $f$BEGIN INSERT INTO %[1]s.log VALUES (i); RETURN i; END$f$;
CREATE FUNCTION %[1]s.peek(i int) RETURNS int STABLE LANGUAGE plpgsql AS $f$DECLARE r int; BEGIN EXECUTE 'SELECT %[1]s.audit_v($1)' INTO r USING i; RETURN r; END$f$;
CREATE FUNCTION %[1]s.unsafe_ro() RETURNS int VOLATILE LANGUAGE plpgsql AS $f$BEGIN PERFORM set_config('default_transaction_read_only', 'off', false); RETURN 1; END$f$;
CREATE FUNCTION %[1]s.lock(k int) RETURNS int VOLATILE LANGUAGE plpgsql AS $f$BEGIN PERFORM pg_advisory_lock(k); RETURN 1; END$f$;
CREATE FUNCTION %[1]s.listen() RETURNS int VOLATILE LANGUAGE plpgsql AS $f$BEGIN EXECUTE 'LISTEN ' || quote_ident('%[1]s'); RETURN 1; END$f$;
CREATE FUNCTION %[1]s.tz() RETURNS text STABLE LANGUAGE plpgsql SET TimeZone = 'Asia/Tokyo' AS $f$DECLARE r text; BEGIN EXECUTE 'SELECT current_setting(''TimeZone'')' INTO r; RETURN r; END$f$;
CREATE FUNCTION %[1]s.setting(n text) RETURNS text STABLE LANGUAGE plpgsql AS $f$DECLARE r text; BEGIN EXECUTE 'SELECT current_setting($1)' INTO r USING n; RETURN r; END$f$;`, schema))
	t.Cleanup(func() { pgtest.Exec(t, "DROP SCHEMA "+schema+" CASCADE") })
	bed := startVectorProxy(t, func(o *proxy.Options) {
		o.Discover = true
		o.ReadPool.MaxConns = maxConns
		for _, f := range []string{"audit", "unsafe_ro", "lock", "listen"} {
			o.Rules.ReadOnlyFunctions = append(o.Rules.ReadOnlyFunctions, schema+"."+f)
		}
	})
	return &hiddenWriteBed{vectorBed: bed, schema: schema}
}

// sql fills {{t}} (the vector table) and {{s}} (the functions' schema).
func (b *hiddenWriteBed) sql(s string) string {
	return strings.NewReplacer("{{t}}", b.table, "{{s}}", b.schema).Replace(s)
}

// logged returns S.log's rows, read directly, sorted.
func (b *hiddenWriteBed) logged(t *testing.T) string {
	t.Helper()
	return scalar(t, directConn(t), b.sql("SELECT coalesce(string_agg(i::text, ',' ORDER BY i), '') FROM {{s}}.log"))
}

func (b *hiddenWriteBed) clearLog(t *testing.T) { pgtest.Exec(t, b.sql("TRUNCATE {{s}}.log")) }

// rows renders a result's rows from column from on, for comparisons.
func rows(res *pgconn.Result, from int) string {
	var out []string
	for _, r := range res.Rows {
		var cols []string
		for _, v := range r[from:] {
			cols = append(cols, string(v))
		}
		out = append(out, strings.Join(cols, "|"))
	}
	return strings.Join(out, ";")
}

// TestVectorLaneRefusesHiddenWrite: a read that writes where the classifier
// cannot see it is refused by the lane's read-only transaction before any of
// its answer reached the client, runs again on the primary (inside the
// client's transaction, if any) with the answer PostgreSQL gives directly,
// and its text goes straight to the primary from then on.
func TestVectorLaneRefusesHiddenWrite(t *testing.T) {
	bed := startHiddenWriteBed(t, 2)
	m := bed.Server.Metrics()
	ctx := context.Background()

	t.Run("idle", func(t *testing.T) {
		bed.clearLog(t)
		q := bed.sql("SELECT pg_backend_pid(), id, {{s}}.audit(id) FROM {{t}} ORDER BY id")
		direct := rows(exec(t, directConn(t), q)[0], 1)
		if direct != "1|1;2|2;3|3" || bed.logged(t) != "1,2,3" {
			t.Fatalf("directly: %q, log %q", direct, bed.logged(t))
		}
		bed.clearLog(t)
		c := bed.connect(t)
		l := newLanes(t, c)
		rerun0, routed0 := m.RefusedWrites("rerun"), m.Routed("primary", "lane_refused_write")
		res := exec(t, c, q)[0]
		if got := rows(res, 1); got != direct || string(res.Rows[0][0]) != l.primary {
			t.Fatalf("through txlane: %q on backend %s (primary %s); directly %q", got, res.Rows[0][0], l.primary, direct)
		}
		if got := bed.logged(t); got != "1,2,3" {
			t.Fatalf("log after the rerun: %q, want 1,2,3 (written once, by the primary)", got)
		}
		if m.RefusedWrites("rerun")-rerun0 != 1 || m.Routed("primary", "lane_refused_write")-routed0 != 1 {
			t.Fatalf("refusals %v, routed lane_refused_write %v; want 1, 1",
				m.RefusedWrites("rerun")-rerun0, m.Routed("primary", "lane_refused_write")-routed0)
		}
		// The same text, with or without a trailing comment, now goes to the
		// primary without trying the lane.
		bed.clearLog(t)
		exec(t, c, q)
		exec(t, c, q+" /*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/")
		if got := bed.logged(t); got != "1,1,2,2,3,3" {
			t.Fatalf("log after two more runs: %q", got)
		}
		if m.RefusedWrites("rerun")-rerun0 != 1 || m.Routed("primary", "lane_refused_write")-routed0 != 3 {
			t.Fatalf("refusals %v (want still 1), routed lane_refused_write %v (want 3)",
				m.RefusedWrites("rerun")-rerun0, m.Routed("primary", "lane_refused_write")-routed0)
		}
		// Other reads of the table still go to the lane.
		l.wantLane(bed.sql("SELECT pg_backend_pid() FROM {{t}} LIMIT 1"))
	})

	t.Run("inside BEGIN", func(t *testing.T) {
		bed.clearLog(t)
		q := bed.sql("SELECT pg_backend_pid(), id, {{s}}.audit(id) FROM {{t}} WHERE id > 1 ORDER BY id")
		c := bed.connect(t)
		l := newLanes(t, c)
		rerun0 := m.RefusedWrites("rerun")
		exec(t, c, "BEGIN")
		res := exec(t, c, q)[0]
		if got := rows(res, 1); got != "2|2;3|3" || string(res.Rows[0][0]) != l.primary {
			t.Fatalf("through txlane: %q on backend %s (primary %s)", got, res.Rows[0][0], l.primary)
		}
		if c.TxStatus() != 'T' {
			t.Fatalf("status %q after the rerun, want T", c.TxStatus())
		}
		// The rerun wrote inside the client's transaction: it sees its rows,
		// nobody else does.
		if got := scalar(t, c, bed.sql("SELECT string_agg(i::text, ',' ORDER BY i) FROM {{s}}.log")); got != "2,3" {
			t.Fatalf("the transaction sees %q", got)
		}
		if got := bed.logged(t); got != "" {
			t.Fatalf("uncommitted rows visible outside: %q", got)
		}
		exec(t, c, "ROLLBACK")
		if got := bed.logged(t); got != "" {
			t.Fatalf("after ROLLBACK the log holds %q", got)
		}
		if m.RefusedWrites("rerun")-rerun0 != 1 {
			t.Fatalf("refusals counted: %v", m.RefusedWrites("rerun")-rerun0)
		}
	})

	t.Run("stable function calling a volatile one", func(t *testing.T) {
		bed.clearLog(t)
		q := bed.sql("SELECT id, {{s}}.peek(id) FROM {{t}} ORDER BY id")
		c := bed.connect(t)
		rerun0 := m.RefusedWrites("rerun")
		if got := rows(exec(t, c, q)[0], 0); got != "1|1;2|2;3|3" {
			t.Fatalf("through txlane: %q", got)
		}
		if got := bed.logged(t); got != "1,2,3" || m.RefusedWrites("rerun")-rerun0 != 1 {
			t.Fatalf("log %q, refusals %v", got, m.RefusedWrites("rerun")-rerun0)
		}
	})

	t.Run("extended protocol", func(t *testing.T) {
		bed.clearLog(t)
		c := bed.connect(t)
		l := newLanes(t, c)
		rerun0 := m.RefusedWrites("rerun")
		// The unnamed statement, with a parameter.
		q := bed.sql("SELECT pg_backend_pid(), id, {{s}}.audit(id) FROM {{t}} WHERE id <> $1 ORDER BY id")
		res := c.ExecParams(ctx, q, [][]byte{[]byte("2")}, nil, nil, nil).Read()
		if res.Err != nil || rows(res, 1) != "1|1;3|3" || string(res.Rows[0][0]) != l.primary {
			t.Fatalf("ExecParams through txlane: %v %q", res.Err, rows(res, 1))
		}
		// A named statement parsed in the same unit that executes it: the
		// primary must parse it as the client asked (the lane's ParseComplete
		// never reached the client).
		q2 := bed.sql("SELECT id, {{s}}.audit(id) FROM {{t}} WHERE id = $1")
		p := c.StartPipeline(ctx)
		p.SendPrepare("hw_named", q2, nil)
		p.SendQueryPrepared("hw_named", [][]byte{[]byte("1")}, nil, nil)
		if err := p.Sync(); err != nil {
			t.Fatal(err)
		}
		var got []string
		for {
			r, err := p.GetResults()
			if err != nil {
				t.Fatalf("pipeline: %v", err)
			}
			if r == nil {
				break
			}
			switch r := r.(type) {
			case *pgconn.ResultReader:
				res := r.Read()
				if res.Err != nil {
					t.Fatalf("pipeline execute: %v", res.Err)
				}
				got = append(got, rows(res, 0))
			case *pgconn.PipelineSync:
				got = append(got, "sync")
			}
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, " ") != "1|1 sync" {
			t.Fatalf("pipeline results %q", got)
		}
		// The statement exists for the client, once, and runs again.
		res = c.ExecPrepared(ctx, "hw_named", [][]byte{[]byte("3")}, nil, nil).Read()
		if res.Err != nil || rows(res, 0) != "3|3" {
			t.Fatalf("ExecPrepared after the rerun: %v %q", res.Err, rows(res, 0))
		}
		if got := bed.logged(t); got != "1,1,3,3" {
			t.Fatalf("log %q, want 1,1,3,3", got)
		}
		if n := m.RefusedWrites("rerun") - rerun0; n != 2 {
			t.Fatalf("refusals counted: %v, want 2", n)
		}
	})
}

// TestVectorLaneRefusalAfterOutput: when the lane refuses a write after part
// of the answer reached the client (a later row, the second statement of a
// batch), the client gets the server's error as it is, nothing is written,
// and transaction semantics hold: inside a transaction it fails the
// transaction. The statement runs on the primary from then on.
func TestVectorLaneRefusalAfterOutput(t *testing.T) {
	bed := startHiddenWriteBed(t, 2)
	m := bed.Server.Metrics()
	ctx := context.Background()
	// Heap order: rows 1 and 2 are sent before row 3 writes.
	later := bed.sql("SELECT id, CASE WHEN id = 3 THEN {{s}}.audit(id) ELSE id END FROM {{t}}")

	t.Run("a later row, idle", func(t *testing.T) {
		bed.clearLog(t)
		c := bed.connect(t)
		err0 := m.RefusedWrites("error")
		res, err := c.Exec(ctx, later).ReadAll()
		wantCode(t, err, "25006")
		if len(res) != 1 || len(res[0].Rows) != 2 {
			t.Fatalf("the client should have had rows 1 and 2 before the error: %+v", res)
		}
		if got := bed.logged(t); got != "" {
			t.Fatalf("log %q after a refused write", got)
		}
		if c.TxStatus() != 'I' || scalar(t, c, "SELECT 4") != "4" {
			t.Fatalf("session not usable after the error (status %q)", c.TxStatus())
		}
		if m.RefusedWrites("error")-err0 != 1 {
			t.Fatalf("refusals with outcome error: %v", m.RefusedWrites("error")-err0)
		}
		// Remembered: now the primary runs it, with PostgreSQL's answer.
		if got := rows(exec(t, c, later)[0], 0); got != "1|1;2|2;3|3" {
			t.Fatalf("second run: %q", got)
		}
		if got := bed.logged(t); got != "3" {
			t.Fatalf("log %q after the primary ran it", got)
		}
	})

	t.Run("a later row, inside BEGIN", func(t *testing.T) {
		bed.clearLog(t)
		c := bed.connect(t)
		q := later + " WHERE id > 0"
		exec(t, c, "BEGIN")
		_, err := c.Exec(ctx, q).ReadAll()
		wantCode(t, err, "25006")
		if c.TxStatus() != 'E' {
			t.Fatalf("status %q, want E", c.TxStatus())
		}
		_, err = c.Exec(ctx, "SELECT 1").ReadAll()
		wantCode(t, err, "25P02")
		if tag := exec(t, c, "COMMIT")[0].CommandTag.String(); tag != "ROLLBACK" {
			t.Fatalf("COMMIT answered %q", tag)
		}
		if got := bed.logged(t); got != "" {
			t.Fatalf("log %q", got)
		}
	})

	t.Run("the second statement of an extended batch", func(t *testing.T) {
		bed.clearLog(t)
		c := bed.connect(t)
		l := newLanes(t, c)
		first := bed.sql("SELECT pg_backend_pid(), id FROM {{t}} WHERE id = $1")
		second := bed.sql("SELECT id, {{s}}.audit(id) FROM {{t}} WHERE id = $1")
		batch := &pgconn.Batch{}
		batch.ExecParams(first, [][]byte{[]byte("1")}, nil, nil, nil)
		batch.ExecParams(second, [][]byte{[]byte("2")}, nil, nil, nil)
		res, err := c.ExecBatch(ctx, batch).ReadAll()
		wantCode(t, err, "25006")
		if len(res) < 1 || len(res[0].Rows) != 1 || string(res[0].Rows[0][0]) == l.primary {
			t.Fatalf("the first statement's answer should have come from the lane: %+v", res)
		}
		if got := bed.logged(t); got != "" || c.TxStatus() != 'I' {
			t.Fatalf("log %q, status %q", got, c.TxStatus())
		}
		// Only the statement that wrote is remembered.
		routed0 := m.Routed("primary", "lane_refused_write")
		r := c.ExecParams(ctx, first, [][]byte{[]byte("1")}, nil, nil, nil).Read()
		if r.Err != nil || string(r.Rows[0][0]) == l.primary {
			t.Fatalf("the first statement alone: %v, backend %s (primary %s)", r.Err, r.Rows[0][0], l.primary)
		}
		r = c.ExecParams(ctx, second, [][]byte{[]byte("2")}, nil, nil, nil).Read()
		if r.Err != nil || rows(r, 0) != "2|2" || m.Routed("primary", "lane_refused_write")-routed0 != 1 {
			t.Fatalf("the second statement alone: %v %q, routed lane_refused_write %v", r.Err, rows(r, 0), m.Routed("primary", "lane_refused_write")-routed0)
		}
	})
}

// TestVectorLaneConnectionStaysClean: what a read hidden in a function leaves
// on its lane connection does not reach the next read: the connection is
// read-only and idle after a refusal, session advisory locks are released,
// and a connection whose session a read changed (a reported setting such as
// default_transaction_read_only, LISTEN) is closed instead of reused.
func TestVectorLaneConnectionStaysClean(t *testing.T) {
	bed := startHiddenWriteBed(t, 1) // one lane connection: every read meets the last one's
	cfg, err := pgconn.ParseConfig(bed.DSN(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	var notified atomic.Int32
	cfg.OnNotification = func(*pgconn.PgConn, *pgconn.Notification) { notified.Add(1) }
	c, err := pgconn.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	l := newLanes(t, c)
	probe := bed.sql("SELECT pg_backend_pid(), {{s}}.setting('transaction_read_only'), {{s}}.setting('default_transaction_read_only') FROM {{t}} LIMIT 1")
	lanePID := func() string {
		t.Helper()
		row := exec(t, c, probe)[0].Rows[0]
		if string(row[0]) == l.primary || string(row[1]) != "on" || string(row[2]) != "on" {
			t.Fatalf("probe: backend %s (primary %s), transaction_read_only %s, default %s; want the lane, on, on",
				row[0], l.primary, row[1], row[2])
		}
		return string(row[0])
	}
	pid := lanePID()

	// A function that sets a reported setting for its own duration changes
	// nothing that outlives it: the connection is reused.
	row := exec(t, c, bed.sql("SELECT pg_backend_pid(), {{s}}.tz() FROM {{t}} LIMIT 1"))[0].Rows[0]
	if string(row[0]) != pid || string(row[1]) != "Asia/Tokyo" {
		t.Fatalf("tz(): backend %s (lane %s), %s", row[0], pid, row[1])
	}
	if got := lanePID(); got != pid {
		t.Fatalf("the lane connection was replaced after a function-level SET (%s -> %s)", pid, got)
	}

	// A refusal leaves the connection idle and read-only: it is reused.
	exec(t, c, bed.sql("SELECT id, {{s}}.audit(id) FROM {{t}} WHERE id = 1"))
	if got := lanePID(); got != pid {
		t.Fatalf("the lane connection was replaced after a refusal (%s -> %s)", pid, got)
	}

	// A session advisory lock taken on the lane does not outlive the read.
	row = exec(t, c, bed.sql("SELECT pg_backend_pid(), {{s}}.lock(424242) FROM {{t}} LIMIT 1"))[0].Rows[0]
	if string(row[0]) != pid {
		t.Fatalf("the lock was taken on backend %s, want the lane's %s", row[0], pid)
	}
	if got := lanePID(); got != pid { // the connection came back: cleaned up
		t.Fatalf("the lane connection was replaced after an advisory lock (%s -> %s)", pid, got)
	}
	if n := scalar(t, directConn(t), "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 424242"); n != "0" {
		t.Fatalf("%s advisory locks 424242 still held", n)
	}

	// A read that turns off default_transaction_read_only on the lane: the
	// connection is closed, the next read has a fresh read-only one, and the
	// client's own session (on the primary) did not hear of it.
	before := c.ParameterStatus("default_transaction_read_only")
	row = exec(t, c, bed.sql("SELECT pg_backend_pid(), {{s}}.unsafe_ro() FROM {{t}} LIMIT 1"))[0].Rows[0]
	if string(row[0]) != pid {
		t.Fatalf("unsafe_ro ran on backend %s, want the lane's %s", row[0], pid)
	}
	if got := c.ParameterStatus("default_transaction_read_only"); got != before {
		t.Fatalf("the client was told default_transaction_read_only = %q (was %q)", got, before)
	}
	next := lanePID()
	if next == pid {
		t.Fatal("the lane connection whose read-only default was turned off was reused")
	}
	waitGone(t, pid, 5*time.Second)

	// LISTEN on the lane: the first notification closes the connection, and
	// it never reaches a client.
	pid = next
	exec(t, c, bed.sql("SELECT {{s}}.listen() FROM {{t}} LIMIT 1"))
	if got := lanePID(); got != pid {
		t.Fatalf("the lane connection was replaced before any notification (%s -> %s)", pid, got)
	}
	pgtest.Exec(t, bed.sql("NOTIFY {{s}}, 'for nobody'"))
	deadline := time.Now().Add(5 * time.Second)
	for lanePID() == pid {
		if time.Now().After(deadline) {
			t.Fatal("a lane connection that received a notification is still reused")
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitGone(t, pid, 5*time.Second)
	if n := notified.Load(); n != 0 {
		t.Fatalf("the client received %d notifications of a lane connection", n)
	}
}

// TestVectorLaneRequiresReadOnlySession: a read-pool server that does not
// confirm default_transaction_read_only = on at login (a server that ignores
// the startup parameter, something in between) gets no reads: they run on
// the primary as if the lane were unavailable.
func TestVectorLaneRequiresReadOnlySession(t *testing.T) {
	// A fake that logs anyone in without reporting the setting, and answers
	// every query with one row "fake".
	var reply []byte
	reply, _ = (&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("x"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}}).Encode(reply)
	reply, _ = (&pgproto3.DataRow{Values: [][]byte{[]byte("fake")}}).Encode(reply)
	reply, _ = (&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}).Encode(reply)
	reply, _ = (&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(reply)
	addr := scriptServer(t, trustLogin, func(string) ([]byte, bool) { return reply, false })
	bed := startVectorProxy(t, func(o *proxy.Options) {
		lane := pgtest.Config(t)
		host, port, _ := net.SplitHostPort(addr)
		lane.Host, lane.Fallbacks = host, nil
		fmt.Sscan(port, &lane.Port)
		o.ReadPool.Config = lane
	})
	c := bed.connect(t)
	if got := scalar(t, c, "SELECT note FROM "+bed.table+" WHERE id = 1"); got != "x" {
		t.Fatalf("read answered %q, want x from the primary", got)
	}
	if n := bed.Server.Metrics().Routed("primary", "vector_unavailable"); n < 1 {
		t.Fatalf("vector_unavailable fallbacks: %v", n)
	}
}

// waitLaneReleased waits until no vector-lane connection is acquired: a lane
// connection goes back to its pool after the lane's check (laneCheckSQL)
// has answered, a moment after the client had its answer.
func waitLaneReleased(t *testing.T, srv *proxy.Server) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		acquired := 0
		for _, p := range srv.Pools() {
			if p.Lane == proxy.LaneVector {
				acquired += p.SvActive
			}
		}
		if acquired == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d vector-lane connections still acquired", acquired)
		}
		time.Sleep(time.Millisecond)
	}
}
