package proxy_test

// Prepared statements, whichever lane runs them (docs/semantics.md, "Wire notes":
// named statements, unnamed statement, portals). Each test replays, at the
// message level, the wire pattern of a real driver against a proxy with a
// vector lane and checks two things: the client sees exactly what PostgreSQL
// would have sent (the same units run on a direct connection, see prepTwin),
// and the lane that ran each execute (a read's pg_backend_pid() differs from
// the primary's when the vector lane ran it).

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// ---------------------------------------------------------------------------
// Message-level helpers.

// prepConn drives one connection with raw protocol messages.
type prepConn struct {
	t    *testing.T
	conn *pgconn.PgConn
	fe   *pgproto3.Frontend
}

func newPrepConn(t *testing.T, conn *pgconn.PgConn) *prepConn {
	return &prepConn{t: t, conn: conn, fe: conn.Frontend()}
}

// prepReply is what the server sent for one or more units, up to the
// ReadyForQuery of the last.
type prepReply struct {
	lines  []string   // one per message, DataRow values in full
	masked []string   // the same with the first column of DataRows masked
	rows   [][]string // DataRow values, NULL as "<null>"
	errs   []string   // "SQLSTATE: message"
	status byte       // of the last ReadyForQuery
}

func (r *prepReply) String() string { return strings.Join(r.lines, "\n") }

// transcript is the reply with the first column of each DataRow (the
// backend pid in these tests) masked, to compare with a direct connection.
func (r *prepReply) transcript() string { return strings.Join(r.masked, "\n") }

// pids returns the first column of every row.
func (r *prepReply) pids() []string {
	out := make([]string, len(r.rows))
	for i, row := range r.rows {
		out[i] = row[0]
	}
	return out
}

// values returns the rows without their first column, joined.
func (r *prepReply) values() string {
	var out []string
	for _, row := range r.rows {
		out = append(out, strings.Join(row[1:], ","))
	}
	return strings.Join(out, " | ")
}

// send queues msgs and flushes them.
func (c *prepConn) send(msgs ...pgproto3.FrontendMessage) {
	c.t.Helper()
	for _, m := range msgs {
		c.fe.Send(m)
	}
	if err := c.fe.Flush(); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// run sends msgs and reads the answers up to the ReadyForQuery of each Sync
// or Query among them.
func (c *prepConn) run(msgs ...pgproto3.FrontendMessage) *prepReply {
	c.t.Helper()
	n := 0
	for _, m := range msgs {
		switch m.(type) {
		case *pgproto3.Sync, *pgproto3.Query:
			n++
		}
	}
	if n == 0 {
		c.t.Fatal("BUG: a unit without Sync")
	}
	c.send(msgs...)
	return c.read(n)
}

// read reads messages up to the n-th ReadyForQuery.
func (c *prepConn) read(n int) *prepReply {
	c.t.Helper()
	c.conn.Conn().SetReadDeadline(time.Now().Add(30 * time.Second))
	defer c.conn.Conn().SetReadDeadline(time.Time{})
	r := &prepReply{}
	add := func(s string) { r.lines = append(r.lines, s); r.masked = append(r.masked, s) }
	for n > 0 {
		msg, err := c.fe.Receive()
		if err != nil {
			c.t.Fatalf("receive: %v (so far:\n%s)", err, r)
		}
		switch m := msg.(type) {
		case *pgproto3.ParseComplete:
			add("ParseComplete")
		case *pgproto3.BindComplete:
			add("BindComplete")
		case *pgproto3.CloseComplete:
			add("CloseComplete")
		case *pgproto3.NoData:
			add("NoData")
		case *pgproto3.EmptyQueryResponse:
			add("EmptyQueryResponse")
		case *pgproto3.PortalSuspended:
			add("PortalSuspended")
		case *pgproto3.ParameterDescription:
			add(fmt.Sprintf("ParameterDescription %v", m.ParameterOIDs))
		case *pgproto3.RowDescription:
			var f []string
			for _, fd := range m.Fields {
				f = append(f, fmt.Sprintf("%s:%d", fd.Name, fd.DataTypeOID))
			}
			add("RowDescription " + strings.Join(f, " "))
		case *pgproto3.DataRow:
			vals := make([]string, len(m.Values))
			for i, v := range m.Values {
				if v == nil {
					vals[i] = "<null>"
				} else {
					vals[i] = string(v)
				}
			}
			r.rows = append(r.rows, vals)
			r.lines = append(r.lines, "DataRow "+strings.Join(vals, ","))
			masked := append([]string{"*"}, vals[1:]...)
			if len(vals) == 0 {
				masked = nil
			}
			r.masked = append(r.masked, "DataRow "+strings.Join(masked, ","))
		case *pgproto3.CommandComplete:
			add("CommandComplete " + string(m.CommandTag))
		case *pgproto3.ErrorResponse:
			r.errs = append(r.errs, m.Code+": "+m.Message)
			add(fmt.Sprintf("ErrorResponse %s %s %q detail=%q pos=%d", m.Severity, m.Code, m.Message, m.Detail, m.Position))
		case *pgproto3.NoticeResponse:
			add(fmt.Sprintf("NoticeResponse %s %s %q", m.Severity, m.Code, m.Message))
		case *pgproto3.ParameterStatus, *pgproto3.NotificationResponse:
			// asynchronous
		case *pgproto3.ReadyForQuery:
			r.status = m.TxStatus
			add("ReadyForQuery " + string(m.TxStatus))
			n--
		default:
			add(fmt.Sprintf("%T", msg))
		}
	}
	return r
}

// Message constructors.

func pParse(name, sql string, oids ...uint32) *pgproto3.Parse {
	return &pgproto3.Parse{Name: name, Query: sql, ParameterOIDs: oids}
}

func pBind(stmt string, params ...string) *pgproto3.Bind {
	vals := make([][]byte, len(params))
	for i, p := range params {
		vals[i] = []byte(p)
	}
	return &pgproto3.Bind{PreparedStatement: stmt, Parameters: vals}
}

func pDescribeS(name string) *pgproto3.Describe {
	return &pgproto3.Describe{ObjectType: 'S', Name: name}
}

func pDescribeP() *pgproto3.Describe { return &pgproto3.Describe{ObjectType: 'P'} }

func pExecute() *pgproto3.Execute { return &pgproto3.Execute{} }

func pSync() *pgproto3.Sync { return &pgproto3.Sync{} }

func pCloseS(name string) *pgproto3.Close { return &pgproto3.Close{ObjectType: 'S', Name: name} }

func pQuery(sql string) *pgproto3.Query { return &pgproto3.Query{String: sql} }

// ---------------------------------------------------------------------------
// Twins: the same units through the proxy and on a direct connection.

// prepTwins holds a copy of the bed's vector table, under the same name in a
// schema of its own, for the direct side of prepTwin: both sides can then
// write "their" table in open transactions without waiting for each other.
type prepTwins struct {
	bed    *vectorBed
	schema string
	mode   proxy.PoolMode
}

// inPoolModes runs test in each of clientModes: session, and transaction
// with pool_size 1, where twins get a second client on the one backend
// (prepTwin.other).
func inPoolModes(t *testing.T, test func(t *testing.T, pool proxy.PoolOptions)) {
	for _, m := range clientModes {
		t.Run(m.name, func(t *testing.T) { test(t, m.opts) })
	}
}

func newPrepTwins(t *testing.T, bed *vectorBed, mode proxy.PoolMode) *prepTwins {
	t.Helper()
	schema := uniqueName("direct")
	pgtest.Exec(t, fmt.Sprintf(`CREATE SCHEMA %[1]s;
CREATE TABLE %[1]s.%[2]s (LIKE public.%[2]s INCLUDING ALL);
INSERT INTO %[1]s.%[2]s SELECT * FROM public.%[2]s`, schema, bed.table))
	t.Cleanup(func() { pgtest.Exec(t, "DROP SCHEMA IF EXISTS "+schema+" CASCADE") })
	return &prepTwins{bed: bed, schema: schema, mode: mode}
}

// prepTwin is one proxied connection and one direct connection.
type prepTwin struct {
	t       *testing.T
	px, dx  *prepConn
	pconn   *pgconn.PgConn
	primary string // the proxied connection's primary backend pid
	// other, in transaction mode, is a second proxied client on the pool's
	// one backend (primary): after each step that leaves the twin idle it
	// prepares statements of its own under the names the step prepared,
	// and an unnamed one, with a search_path and TimeZone of its own (see
	// interfere).
	other *prepConn
	srv   *proxy.Server
}

func (tw *prepTwins) open(t *testing.T) *prepTwin {
	t.Helper()
	pc := tw.bed.connect(t)
	dc := directConn(t)
	exec(t, dc, "SET search_path = "+tw.schema+", public")
	twin := &prepTwin{t: t, px: newPrepConn(t, pc), dx: newPrepConn(t, dc), pconn: pc, primary: backendPID(t, pc)}
	if tw.mode == proxy.PoolTransaction {
		oc := tw.bed.connect(t)
		exec(t, oc, "SET search_path = pg_catalog; SET TimeZone = 'Pacific/Chatham'")
		if pid := backendPID(t, oc); pid != twin.primary {
			t.Fatalf("pool_size 1, but the two clients ran on backends %s and %s", twin.primary, pid)
		}
		twin.other, twin.srv = newPrepConn(t, oc), tw.bed.Server
	}
	return twin
}

// step runs one or more units on both connections and fails the test when
// the proxied client does not see what the direct one sees. It returns the
// proxied reply.
func (tw *prepTwin) step(what string, msgs ...pgproto3.FrontendMessage) *prepReply {
	tw.t.Helper()
	p := tw.px.run(msgs...)
	d := tw.dx.run(msgs...)
	if p.transcript() != d.transcript() {
		tw.t.Fatalf("%s: the proxied client saw\n%s\n\nPostgreSQL answers directly\n%s", what, indent(p.transcript()), indent(d.transcript()))
	}
	if tw.other != nil && p.status == 'I' && !tw.pinned() {
		tw.interfere(msgs)
	}
	return p
}

// pinned reports whether a client of the twin's proxy is pinned to its
// backend (then the other client would wait for it). The replays pin the
// twin where they Bind a statement that does not exist, as some check the
// server's error: txlane cannot attribute the Execute that follows (see the
// README's pinning rules).
// It waits for the pin check that follows a step to end: until each client
// holds no backend or is pinned.
func (tw *prepTwin) pinned() bool {
	tw.t.Helper()
	pinned := false
	waitFor(tw.t, func() bool {
		pinned = false
		for _, ci := range tw.srv.ClientList() {
			if ci.ServerPID != 0 && ci.Pinned == "" {
				return false
			}
			pinned = pinned || ci.Pinned != ""
		}
		return true
	}, "the twin's pin check")
	return pinned
}

// interfere has the other client (transaction mode) use the twin's backend
// between two of its steps: a statement of its own under each name msgs
// prepared (closed first: the other client's names are its own), and an
// unnamed one, run under its own search_path (pg_catalog: were it left on
// the backend, the twin's unqualified table would not resolve) and
// TimeZone. The twin must see none of it.
func (tw *prepTwin) interfere(msgs []pgproto3.FrontendMessage) {
	tw.t.Helper()
	var out []pgproto3.FrontendMessage
	for _, m := range msgs {
		if p, ok := m.(*pgproto3.Parse); ok && p.Name != "" {
			out = append(out, pCloseS(p.Name), pParse(p.Name, "SELECT 'other' AS pid, current_setting('TimeZone') AS tz"), pDescribeS(p.Name))
		}
	}
	out = append(out, pParse("", "SELECT 'other' AS pid, current_setting('search_path') AS sp, current_setting('TimeZone') AS tz"),
		pBind(""), pExecute(), pSync())
	r := tw.other.run(out...)
	if len(r.errs) > 0 || r.values() != "pg_catalog,Pacific/Chatham" {
		tw.t.Fatalf("the other client on the twin's backend:\n%s", indent(r.String()))
	}
}

// simple runs sql with the simple protocol on both connections.
func (tw *prepTwin) simple(sql string) *prepReply {
	tw.t.Helper()
	return tw.step(sql, pQuery(sql))
}

func indent(s string) string { return "    " + strings.ReplaceAll(s, "\n", "\n    ") }

// wantLane fails unless every row of r came from the vector lane.
func (tw *prepTwin) wantLane(what string, r *prepReply) {
	tw.t.Helper()
	wantRowsOn(tw.t, what, r, tw.primary, true)
}

// wantPrimary fails unless every row of r came from the primary lane.
func (tw *prepTwin) wantPrimary(what string, r *prepReply) {
	tw.t.Helper()
	wantRowsOn(tw.t, what, r, tw.primary, false)
}

func wantRowsOn(t *testing.T, what string, r *prepReply, primary string, lane bool) {
	t.Helper()
	if len(r.rows) == 0 {
		t.Fatalf("%s: no rows:\n%s", what, indent(r.String()))
	}
	for _, pid := range r.pids() {
		if (pid != primary) != lane {
			where := "the primary lane"
			if lane {
				where = "the vector lane"
			}
			t.Fatalf("%s: row from backend %s (primary %s), want %s:\n%s", what, pid, primary, where, indent(r.String()))
		}
	}
}

// prepRead is the vector query most tests prepare: $1 a vector, $2 a limit.
// With '[1,0.5,0]' the order is 1 (x), 2 (y), 3 (z) without ties.
func prepRead(table string) string {
	return "SELECT pg_backend_pid() AS pid, id, note FROM " + table + " ORDER BY embedding <-> $1 LIMIT $2"
}

const prepVec = "[1,0.5,0]"

// exec1 returns Bind/Describe/Execute/Sync of statement name with params, as
// pgconn's ExecPrepared (and node-postgres, pgjdbc) send them.
func exec1(name string, params ...string) []pgproto3.FrontendMessage {
	return []pgproto3.FrontendMessage{pBind(name, params...), pDescribeP(), pExecute(), pSync()}
}

// unnamed1 returns an unnamed Parse + Bind + Describe + Execute + Sync.
func unnamed1(sql string, params ...string) []pgproto3.FrontendMessage {
	return append([]pgproto3.FrontendMessage{pParse("", sql)}, exec1("", params...)...)
}

func wantValues(t *testing.T, what string, r *prepReply, want string) {
	t.Helper()
	if got := r.values(); got != want {
		t.Fatalf("%s: rows %q, want %q\n%s", what, got, want, indent(r.String()))
	}
}

func wantErrCode(t *testing.T, what string, r *prepReply, code, msgPart string) {
	t.Helper()
	if len(r.errs) == 0 || !strings.HasPrefix(r.errs[0], code+": ") || !strings.Contains(r.errs[0], msgPart) {
		t.Fatalf("%s: errors %q, want SQLSTATE %s %q\n%s", what, r.errs, code, msgPart, indent(r.String()))
	}
}

// lanePreparedCount returns how many statements txlane prepared on the vector
// lane connection that runs the query (use with MaxConns = 1), and its pid.
// It reads them through a function: a read naming pg_prepared_statements
// shows the backend's own state, so it stays on the primary.
func lanePreparedCount(t *testing.T, c *pgconn.PgConn, table, primary string) (n int, pid string) {
	t.Helper()
	fn := uniqueName("lane_stmts")
	pgtest.Exec(t, "CREATE FUNCTION "+fn+"() RETURNS bigint STABLE LANGUAGE sql AS $f$SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'txlane%'$f$")
	defer pgtest.Exec(t, "DROP FUNCTION "+fn+"()")
	res := exec(t, c, "SELECT pg_backend_pid(), "+fn+"() FROM "+table+" LIMIT 1")
	row := res[0].Rows[0]
	if string(row[0]) == primary {
		t.Fatal("the lane probe ran on the primary")
	}
	n, _ = strconv.Atoi(string(row[1]))
	return n, string(row[0])
}

// ---------------------------------------------------------------------------
// Tests.

// TestPreparedStatementCache replays pgx's statement cache: Parse
// "stmtcache_x" + Describe + Sync first (nothing executes: the primary),
// then Bind/Describe/Execute/Sync of it in later units (the vector lane must
// prepare it on demand), inside a transaction that wrote the table (the
// primary, which holds it), and idle again (the lane).
func TestPreparedStatementCache(t *testing.T) { inPoolModes(t, testPreparedStatementCache) }

func testPreparedStatementCache(t *testing.T, pool proxy.PoolOptions) {
	bed := startVectorProxy(t, func(o *proxy.Options) { o.ReadPool.MaxConns = 1; o.Pool = pool })
	tw := newPrepTwins(t, bed, pool.Mode).open(t)
	q := prepRead(bed.table)
	const name = "stmtcache_0123456789abcdef"

	tw.step("prepare", pParse(name, q), pDescribeS(name), pSync())
	if n := scalar(t, tw.pconn, "SELECT count(*) FROM pg_prepared_statements WHERE name = '"+name+"'"); n != "1" {
		t.Fatalf("the primary holds %s statements %s after Parse+Describe+Sync, want 1", n, name)
	}
	var lanePID string
	for i := 0; i < 3; i++ {
		r := tw.step("execute idle", exec1(name, prepVec, "2")...)
		tw.wantLane("execute idle", r)
		wantValues(t, "execute idle", r, "1,x | 2,y")
		if i > 0 && r.pids()[0] != lanePID {
			t.Fatalf("MaxConns=1 but executes ran on backends %s and %s", lanePID, r.pids()[0])
		}
		lanePID = r.pids()[0]
	}
	if n, _ := lanePreparedCount(t, tw.pconn, bed.table, tw.primary); n != 1 {
		t.Fatalf("the lane connection holds %d txlane statements, want 1", n)
	}
	if n := scalar(t, tw.pconn, "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'txlane%'"); n != "0" {
		t.Fatalf("the primary holds %s txlane statements, want 0", n)
	}

	tw.simple("BEGIN")
	r := tw.step("execute in tx, clean", exec1(name, prepVec, "2")...)
	tw.wantLane("execute in a transaction that wrote nothing", r)
	if r.status != 'T' {
		t.Fatalf("status %q after an offloaded execute in a transaction", r.status)
	}
	tw.simple("UPDATE " + bed.table + " SET note = 'x-new' WHERE id = 1")
	r = tw.step("execute after write", exec1(name, prepVec, "2")...)
	tw.wantPrimary("execute after the transaction wrote the table (read-your-writes)", r)
	wantValues(t, "execute after write", r, "1,x-new | 2,y")
	tw.simple("COMMIT")

	r = tw.step("execute idle after commit", exec1(name, prepVec, "3")...)
	tw.wantLane("execute idle after commit", r)
	wantValues(t, "execute idle after commit", r, "1,x-new | 2,y | 3,z")
}

// TestPreparedPgxModes runs the same vector query 20 times through pgx in each
// query exec mode: the results must be those of a direct connection, and the
// executes must run on the vector lane (and on the primary after a write).
func TestPreparedPgxModes(t *testing.T) { inPoolModes(t, testPreparedPgxModes) }

func testPreparedPgxModes(t *testing.T, pool proxy.PoolOptions) {
	bed := startVectorProxy(t, func(o *proxy.Options) { o.ReadPool.MaxConns = 2; o.Pool = pool })
	const sqlFmt = "SELECT pg_backend_pid(), id, note FROM %s WHERE id <= $2 ORDER BY embedding <-> $1::vector, id"
	q := fmt.Sprintf(sqlFmt, bed.table)
	type row struct {
		pid  int32
		id   int32
		note string
	}
	query := func(t *testing.T, conn *pgx.Conn, vec string, maxID int) []row {
		t.Helper()
		rows, err := conn.Query(testCtx(t), q, vec, maxID)
		if err != nil {
			t.Fatalf("query: %v", err)
		}
		out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			err := r.Scan(&x.pid, &x.id, &x.note)
			return x, err
		})
		if err != nil {
			t.Fatalf("query: %v", err)
		}
		return out
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe,
		pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		t.Run(strings.ReplaceAll(mode.String(), " ", "_"), func(t *testing.T) {
			connect := func(dsn string) *pgx.Conn {
				cfg := pgxConfig(t, dsn)
				cfg.DefaultQueryExecMode = mode
				conn, err := pgx.ConnectConfig(testCtx(t), cfg)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { conn.Close(context.Background()) })
				return conn
			}
			px, dx := connect(bed.DSN(t, "")), connect(bed.Direct)
			var primary int32
			if err := px.QueryRow(testCtx(t), "SELECT pg_backend_pid()").Scan(&primary); err != nil {
				t.Fatal(err)
			}
			vecs := []string{"[1,0.5,0]", "[0,1,0.2]", "[0.1,0.2,1]"}
			for i := 0; i < 20; i++ {
				vec, maxID := vecs[i%3], 1+i%3
				got, want := query(t, px, vec, maxID), query(t, dx, vec, maxID)
				if len(got) != len(want) || len(got) == 0 {
					t.Fatalf("run %d: %d rows through txlane, %d directly", i, len(got), len(want))
				}
				for j := range got {
					if got[j].id != want[j].id || got[j].note != want[j].note {
						t.Fatalf("run %d row %d: %+v through txlane, %+v directly", i, j, got[j], want[j])
					}
					if got[j].pid == primary {
						t.Fatalf("run %d: ran on the primary lane, want the vector lane", i)
					}
				}
			}
			// Read-your-writes: inside a transaction that wrote the table, the
			// same statement runs on the primary and sees the write.
			tx, err := px.Begin(testCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			got := query(t, px, "[1,0.5,0]", 3)
			if got[0].pid == primary {
				t.Fatal("in a clean transaction: ran on the primary lane, want the vector lane")
			}
			if _, err := tx.Exec(testCtx(t), "UPDATE "+bed.table+" SET note = $1 WHERE id = 1", "mine"); err != nil {
				t.Fatal(err)
			}
			got = query(t, px, "[1,0.5,0]", 3)
			if got[0].pid != primary || got[0].note != "mine" {
				t.Fatalf("after a write in the transaction: %+v, want the primary (pid %d) and note mine", got[0], primary)
			}
			if err := tx.Rollback(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			got = query(t, px, "[1,0.5,0]", 3)
			if got[0].pid == primary || got[0].note != "x" {
				t.Fatalf("after rollback: %+v, want the vector lane and note x", got[0])
			}
		})
	}
}

// TestPreparedNodePostgresUnnamed replays node-postgres: an unnamed Parse +
// Bind + Describe + Execute + Sync for every query, with $1 parameters.
func TestPreparedNodePostgresUnnamed(t *testing.T) { inPoolModes(t, testPreparedNodePostgresUnnamed) }

func testPreparedNodePostgresUnnamed(t *testing.T, pool proxy.PoolOptions) {
	bed := startVectorProxy(t, func(o *proxy.Options) { o.ReadPool.MaxConns = 1; o.Pool = pool })
	tw := newPrepTwins(t, bed, pool.Mode).open(t)
	q := prepRead(bed.table)
	byID := "SELECT pg_backend_pid() AS pid, id, note, embedding::text FROM " + bed.table + " WHERE id = $1"
	for i := 0; i < 10; i++ {
		r := tw.step("vector parameter", unnamed1(q, prepVec, strconv.Itoa(1+i%3))...)
		tw.wantLane("vector parameter", r)
		r = tw.step("int parameter", unnamed1(byID, strconv.Itoa(1+i%3))...)
		tw.wantLane("int parameter", r)
	}
	r := tw.step("vector parameter [1,0,0]", unnamed1("SELECT pg_backend_pid() AS pid, id FROM "+bed.table+" WHERE embedding = $1", "[1,0,0]")...)
	tw.wantLane("vector parameter [1,0,0]", r)
	wantValues(t, "vector parameter [1,0,0]", r, "1")

	tw.simple("BEGIN")
	r = tw.step("in tx", unnamed1(q, prepVec, "3")...)
	tw.wantLane("in a clean transaction", r)
	tw.step("write", unnamed1("UPDATE "+bed.table+" SET note = $1 WHERE id = $2", "mine", "2")...)
	r = tw.step("in tx after write", unnamed1(q, prepVec, "3")...)
	tw.wantPrimary("after the transaction wrote the table", r)
	wantValues(t, "in tx after write", r, "1,x | 2,mine | 3,z")
	tw.simple("ROLLBACK")
	r = tw.step("after rollback", unnamed1(q, prepVec, "3")...)
	tw.wantLane("after rollback", r)
	wantValues(t, "after rollback", r, "1,x | 2,y | 3,z")
}

// TestPreparedJDBCStyle replays pgjdbc (prepareThreshold=5): unnamed
// statements first; from the 5th execution a named statement S_1, parsed in
// the same batch as a BEGIN (which keeps the batch on the primary); later
// executions of S_1 outside the transaction may run on the lane.
func TestPreparedJDBCStyle(t *testing.T) { inPoolModes(t, testPreparedJDBCStyle) }

func testPreparedJDBCStyle(t *testing.T, pool proxy.PoolOptions) {
	bed := startVectorProxy(t, func(o *proxy.Options) { o.ReadPool.MaxConns = 1; o.Pool = pool })
	tw := newPrepTwins(t, bed, pool.Mode).open(t)
	q := prepRead(bed.table)
	for i := 1; i <= 4; i++ {
		r := tw.step(fmt.Sprintf("unnamed execution %d", i), unnamed1(q, prepVec, "2")...)
		tw.wantLane("unnamed execution", r)
	}
	// 5th execution, autocommit off: BEGIN and the new named statement in one batch.
	begin := []pgproto3.FrontendMessage{pParse("", "BEGIN"), pBind(""), pExecute()}
	r := tw.step("BEGIN + Parse S_1 batch", append(begin,
		pParse("S_1", q), pBind("S_1", prepVec, "2"), pDescribeP(), pExecute(), pSync())...)
	tw.wantPrimary("the batch with BEGIN", r)
	if r.status != 'T' {
		t.Fatalf("status %q after BEGIN batch", r.status)
	}
	r = tw.step("S_1 in the transaction", exec1("S_1", prepVec, "3")...)
	tw.wantLane("S_1 in a transaction that wrote nothing", r)
	tw.step("COMMIT", pParse("", "COMMIT"), pBind(""), pExecute(), pSync())

	for i := 0; i < 5; i++ {
		r = tw.step("S_1 idle", exec1("S_1", prepVec, "2")...)
		tw.wantLane("S_1 outside the transaction", r)
		wantValues(t, "S_1 idle", r, "1,x | 2,y")
	}
	// Another transaction: BEGIN batched with S_1, then a write, then S_1.
	r = tw.step("BEGIN + S_1", append(begin, pBind("S_1", prepVec, "2"), pDescribeP(), pExecute(), pSync())...)
	tw.wantPrimary("BEGIN batched with S_1", r)
	tw.step("UPDATE", pParse("", "UPDATE "+bed.table+" SET note = $1 WHERE id = $2"), pBind("", "jdbc", "1"), pExecute(), pSync())
	r = tw.step("S_1 after write", exec1("S_1", prepVec, "2")...)
	tw.wantPrimary("S_1 after the transaction wrote the table", r)
	wantValues(t, "S_1 after write", r, "1,jdbc | 2,y")
	tw.step("ROLLBACK", pParse("", "ROLLBACK"), pBind(""), pExecute(), pSync())
	r = tw.step("S_1 idle after rollback", exec1("S_1", prepVec, "2")...)
	tw.wantLane("S_1 after rollback", r)
	wantValues(t, "S_1 idle after rollback", r, "1,x | 2,y")
}

// TestPreparedPsycopgStyle replays psycopg 3: a query is prepared as _pg3_0
// after prepare_threshold executions; a DDL statement makes psycopg send
// DEALLOCATE ALL, and the name is then prepared again for other SQL.
func TestPreparedPsycopgStyle(t *testing.T) { inPoolModes(t, testPreparedPsycopgStyle) }

func testPreparedPsycopgStyle(t *testing.T, pool proxy.PoolOptions) {
	t.Run("different SQL after DDL", func(t *testing.T) {
		bed := startVectorProxy(t, func(o *proxy.Options) { o.ReadPool.MaxConns = 1; o.Pool = pool })
		tw := newPrepTwins(t, bed, pool.Mode).open(t)
		q := prepRead(bed.table)
		psycopgCycle(t, tw, bed.table, q, q)
		// The new SQL sees the new column: on the lane, and on the primary.
		q2 := "SELECT pg_backend_pid() AS pid, id, note, extra FROM " + bed.table + " ORDER BY embedding <-> $1 LIMIT $2"
		tw.simple("DEALLOCATE ALL")
		tw.step("prepare _pg3_0 with new SQL", pParse("_pg3_0", q2), pSync())
		r := tw.step("new SQL idle", exec1("_pg3_0", prepVec, "2")...)
		tw.wantLane("new SQL idle", r)
		wantValues(t, "new SQL idle", r, "1,psy2,e | 2,y,e")
		tw.simple("BEGIN")
		tw.simple("UPDATE " + bed.table + " SET extra = 'tx' WHERE id = 2")
		r = tw.step("new SQL after write", exec1("_pg3_0", prepVec, "2")...)
		tw.wantPrimary("new SQL after write", r)
		wantValues(t, "new SQL after write", r, "1,psy2,e | 2,y,tx")
		tw.simple("ROLLBACK")
	})
	t.Run("same SQL text after DDL", func(t *testing.T) {
		// SELECT * changes its result type with the new column: PostgreSQL
		// plans the re-prepared statement afresh; so must the lane.
		bed := startVectorProxy(t, func(o *proxy.Options) { o.ReadPool.MaxConns = 1; o.Pool = pool })
		tw := newPrepTwins(t, bed, pool.Mode).open(t)
		q := "SELECT pg_backend_pid() AS pid, * FROM " + bed.table + " ORDER BY embedding <-> $1 LIMIT $2"
		psycopgCycle(t, tw, bed.table, q, q)
	})
}

// psycopgCycle executes q five times unprepared, prepares it as _pg3_0,
// executes it on both lanes, then runs DDL, DEALLOCATE ALL, and prepares q2
// under _pg3_0 again and executes it on both lanes.
func psycopgCycle(t *testing.T, tw *prepTwin, table, q, q2 string) {
	t.Helper()
	for i := 0; i < 5; i++ {
		r := tw.step("unprepared", unnamed1(q, prepVec, "2")...)
		tw.wantLane("unprepared", r)
	}
	tw.step("prepare _pg3_0", pParse("_pg3_0", q), pBind("_pg3_0", prepVec, "2"), pDescribeP(), pExecute(), pSync())
	for i := 0; i < 3; i++ {
		r := tw.step("_pg3_0 idle", exec1("_pg3_0", prepVec, "2")...)
		tw.wantLane("_pg3_0 idle", r)
	}
	tw.simple("BEGIN")
	tw.simple("UPDATE " + table + " SET note = 'psy' WHERE id = 1")
	r := tw.step("_pg3_0 after write", exec1("_pg3_0", prepVec, "2")...)
	tw.wantPrimary("_pg3_0 after write", r)
	tw.simple("COMMIT")

	tw.simple("ALTER TABLE " + table + " ADD COLUMN extra text DEFAULT 'e'")
	tw.simple("DEALLOCATE ALL")
	tw.step("prepare _pg3_0 again", pParse("_pg3_0", q2), pBind("_pg3_0", prepVec, "2"), pDescribeP(), pExecute(), pSync())
	for i := 0; i < 3; i++ {
		r := tw.step("_pg3_0 idle after DDL", exec1("_pg3_0", prepVec, "2")...)
		tw.wantLane("_pg3_0 idle after DDL", r)
	}
	tw.simple("BEGIN")
	tw.simple("UPDATE " + table + " SET note = 'psy2' WHERE id = 1")
	r = tw.step("_pg3_0 after DDL and write", exec1("_pg3_0", prepVec, "2")...)
	tw.wantPrimary("_pg3_0 after DDL and write", r)
	tw.simple("COMMIT")
}

// TestPreparedUniqueNames replays postgres.js: every query gets a new unique
// statement name. 300 distinct statements through one lane connection: the
// proxy keeps at most 256 per lane connection, evicts, and still executes
// each correctly, also when an evicted statement is used again.
func TestPreparedUniqueNames(t *testing.T) { inPoolModes(t, testPreparedUniqueNames) }

func testPreparedUniqueNames(t *testing.T, pool proxy.PoolOptions) {
	bed := startVectorProxy(t, func(o *proxy.Options) { o.ReadPool.MaxConns = 1; o.Pool = pool })
	c := bed.connect(t)
	pc := newPrepConn(t, c)
	primary := backendPID(t, c)
	const n = 300
	sql := func(i int) string {
		return fmt.Sprintf("SELECT pg_backend_pid() AS pid, id, %d AS n FROM %s WHERE id = $1 ORDER BY embedding <-> '[1,0,0]'", i, bed.table)
	}
	name := func(i int) string { return fmt.Sprintf("pjs%dx%d", i*7919%1000, i) }
	check := func(what string, i int, r *prepReply) {
		t.Helper()
		wantRowsOn(t, what, r, primary, true)
		id := 1 + i%3
		if got, want := r.values(), fmt.Sprintf("%d,%d", id, i); got != want {
			t.Fatalf("%s %d: rows %q, want %q\n%s", what, i, got, want, indent(r.String()))
		}
	}
	for i := 0; i < n; i++ {
		r := pc.run(pParse(name(i), sql(i)), pDescribeS(name(i)), pBind(name(i), strconv.Itoa(1+i%3)), pExecute(), pSync())
		check("first execution", i, r)
	}
	if k, _ := lanePreparedCount(t, c, bed.table, primary); k > 256 || k < 200 {
		t.Fatalf("the lane connection holds %d txlane statements, want at most 256 (and most of them)", k)
	}
	// Again, oldest first: every one was evicted by the time it is used.
	for i := 0; i < n; i++ {
		r := pc.run(exec1(name(i), strconv.Itoa(1+i%3))...)
		check("second execution", i, r)
	}
	if k, _ := lanePreparedCount(t, c, bed.table, primary); k > 256 {
		t.Fatalf("the lane connection holds %d txlane statements, want at most 256", k)
	}
	// Newest first, several per unit.
	for i := n - 1; i >= 2; i -= 3 {
		var msgs []pgproto3.FrontendMessage
		for _, j := range []int{i, i - 1, i - 2} {
			msgs = append(msgs, pBind(name(j), strconv.Itoa(1+j%3)), pExecute())
		}
		r := pc.run(append(msgs, pSync())...)
		want := fmt.Sprintf("%d,%d | %d,%d | %d,%d", 1+i%3, i, 1+(i-1)%3, i-1, 1+(i-2)%3, i-2)
		if got := r.values(); got != want {
			t.Fatalf("three per unit from %d: rows %q, want %q\n%s", i, got, want, indent(r.String()))
		}
		wantRowsOn(t, "three per unit", r, primary, true)
	}
}

// TestPreparedSameNameTwoClients: two clients prepare the same name for
// different SQL and both run it on the one lane connection: names must not
// collide there, for named and for unnamed statements.
func TestPreparedSameNameTwoClients(t *testing.T) { inPoolModes(t, testPreparedSameNameTwoClients) }

func testPreparedSameNameTwoClients(t *testing.T, pool proxy.PoolOptions) {
	bed := startVectorProxy(t, func(o *proxy.Options) { o.ReadPool.MaxConns = 1; o.Pool = pool })
	a, b := bed.connect(t), bed.connect(t)
	pa, pb := newPrepConn(t, a), newPrepConn(t, b)
	primA, primB := backendPID(t, a), backendPID(t, b)
	qa := "SELECT pg_backend_pid() AS pid, id, 'A:' || note FROM " + bed.table + " WHERE id = $1"
	qb := "SELECT pg_backend_pid() AS pid, id * 10, 'B:' || upper(note) FROM " + bed.table + " WHERE id = $1 ORDER BY embedding <-> '[0,1,0]'"
	for _, name := range []string{"shared", ""} {
		pa.run(pParse(name, qa), pDescribeS(name), pSync())
		pb.run(pParse(name, qb), pDescribeS(name), pSync())
		var lanePID string
		for i := 0; i < 10; i++ {
			id := strconv.Itoa(1 + i%3)
			ra := pa.run(exec1(name, id)...)
			rb := pb.run(exec1(name, id)...)
			wantRowsOn(t, "client A", ra, primA, true)
			wantRowsOn(t, "client B", rb, primB, true)
			notes := map[string]string{"1": "x", "2": "y", "3": "z"}
			if got, want := ra.values(), id+",A:"+notes[id]; got != want {
				t.Fatalf("client A, statement %q: %q, want %q", name, got, want)
			}
			idn, _ := strconv.Atoi(id)
			if got, want := rb.values(), fmt.Sprintf("%d,B:%s", idn*10, strings.ToUpper(notes[id])); got != want {
				t.Fatalf("client B, statement %q: %q, want %q", name, got, want)
			}
			if ra.pids()[0] != rb.pids()[0] || lanePID != "" && ra.pids()[0] != lanePID {
				t.Fatalf("MaxConns=1 but the lane backends differ: %s, %s, %s", ra.pids()[0], rb.pids()[0], lanePID)
			}
			lanePID = ra.pids()[0]
		}
	}
	// A Parse in the same unit as its execute (the lane), then a Close (the
	// primary), interleaved.
	for i := 0; i < 5; i++ {
		ra := pa.run(pParse("shared2", qa), pBind("shared2", "1"), pExecute(), pSync())
		rb := pb.run(pParse("shared2", qb), pBind("shared2", "1"), pExecute(), pSync())
		wantRowsOn(t, "client A, parse+execute", ra, primA, true)
		wantRowsOn(t, "client B, parse+execute", rb, primB, true)
		if ra.values() != "1,A:x" || rb.values() != "10,B:X" {
			t.Fatalf("parse+execute units: A %q, B %q", ra.values(), rb.values())
		}
		pa.run(pCloseS("shared2"), pSync())
		pb.run(pCloseS("shared2"), pSync())
	}
}

// TestPreparedCloseAndDeallocate: after a Close of a named statement or a SQL
// DEALLOCATE of it, a Bind (or Describe) of the name fails with SQLSTATE 26000
// exactly as directly, wherever the statement was prepared; the name can then
// be prepared again for other SQL.
func TestPreparedCloseAndDeallocate(t *testing.T) { inPoolModes(t, testPreparedCloseAndDeallocate) }

func testPreparedCloseAndDeallocate(t *testing.T, pool proxy.PoolOptions) {
	bed := startVectorProxy(t, func(o *proxy.Options) { o.ReadPool.MaxConns = 1; o.Pool = pool })
	twins := newPrepTwins(t, bed, pool.Mode)
	q := prepRead(bed.table)
	q2 := "SELECT pg_backend_pid() AS pid, id, upper(note) FROM " + bed.table + " ORDER BY embedding <-> $1 LIMIT $2"
	prepares := map[string]func(tw *prepTwin, name string){
		"prepared on the primary": func(tw *prepTwin, name string) {
			tw.step("Parse+Describe+Sync", pParse(name, q), pDescribeS(name), pSync())
		},
		"prepared on the lane": func(tw *prepTwin, name string) {
			r := tw.step("Parse+Bind+Execute+Sync", pParse(name, q), pBind(name, prepVec, "1"), pDescribeP(), pExecute(), pSync())
			tw.wantLane("Parse+Bind+Execute+Sync", r)
		},
	}
	closes := map[string]func(tw *prepTwin, name string){
		"Close message": func(tw *prepTwin, name string) {
			tw.step("Close", pCloseS(name), pSync())
		},
		"SQL DEALLOCATE": func(tw *prepTwin, name string) {
			tw.simple("DEALLOCATE " + name)
		},
		"SQL DEALLOCATE PREPARE, extended protocol": func(tw *prepTwin, name string) {
			tw.step("DEALLOCATE PREPARE (extended)", unnamed1("DEALLOCATE PREPARE "+name)...)
		},
	}
	for pname, prepare := range prepares {
		for cname, closeIt := range closes {
			t.Run(pname+"/"+cname, func(t *testing.T) {
				tw := twins.open(t)
				const name = "closeme"
				prepare(tw, name)
				r := tw.step("execute", exec1(name, prepVec, "2")...)
				tw.wantLane("execute before close", r)
				closeIt(tw, name)
				r = tw.step("Bind after close", exec1(name, prepVec, "2")...)
				wantErrCode(t, "Bind after close", r, "26000", `prepared statement "closeme" does not exist`)
				r = tw.step("Describe after close", pDescribeS(name), pSync())
				wantErrCode(t, "Describe after close", r, "26000", `prepared statement "closeme" does not exist`)
				// In a transaction too (the primary answers), and the
				// transaction is failed as PostgreSQL fails it.
				tw.simple("BEGIN")
				r = tw.step("Bind after close, in a transaction", exec1(name, prepVec, "2")...)
				wantErrCode(t, "Bind after close in a transaction", r, "26000", `does not exist`)
				tw.simple("ROLLBACK")
				// The name is free again, for other SQL.
				tw.step("prepare again", pParse(name, q2), pDescribeS(name), pSync())
				r = tw.step("execute new SQL", exec1(name, prepVec, "2")...)
				tw.wantLane("execute new SQL", r)
				wantValues(t, "execute new SQL", r, "1,X | 2,Y")
				tw.simple("BEGIN")
				tw.simple("UPDATE " + bed.table + " SET note = 'w' WHERE id = 2")
				r = tw.step("execute new SQL after write", exec1(name, prepVec, "2")...)
				tw.wantPrimary("execute new SQL after write", r)
				wantValues(t, "execute new SQL after write", r, "1,X | 2,W")
				tw.simple("ROLLBACK")
			})
		}
	}
}

// TestPreparedParseErrors: a Parse that fails in a unit bound for the vector
// lane gives the client what PostgreSQL gives, and leaves the session usable.
func TestPreparedParseErrors(t *testing.T) { inPoolModes(t, testPreparedParseErrors) }

func testPreparedParseErrors(t *testing.T, pool proxy.PoolOptions) {
	bed := startVectorProxy(t, func(o *proxy.Options) { o.ReadPool.MaxConns = 1; o.Pool = pool })
	twins := newPrepTwins(t, bed, pool.Mode)
	tb := bed.table
	good := prepRead(tb)
	badColumn := "SELECT pg_backend_pid() AS pid, nosuch FROM " + tb + " ORDER BY embedding <-> $1"
	usable := func(tw *prepTwin) {
		tw.t.Helper()
		r := tw.step("a good read after the error", unnamed1(good, prepVec, "2")...)
		tw.wantLane("a good read after the error", r)
		wantValues(tw.t, "a good read after the error", r, "1,x | 2,y")
	}

	t.Run("unnamed, idle", func(t *testing.T) {
		tw := twins.open(t)
		r := tw.step("bad column", unnamed1(badColumn, prepVec)...)
		wantErrCode(t, "bad column", r, "42703", "nosuch")
		usable(tw)
		r = tw.step("syntax error", unnamed1("SELECT pg_backend_pid() AS pid FROM "+tb+" ORDER BY embedding <-> $1 LIMT 1", prepVec)...)
		wantErrCode(t, "syntax error", r, "42601", "syntax error")
		usable(tw)
		r = tw.step("wrong dimensions at execute", unnamed1(good, "[1,0]", "1")...)
		wantErrCode(t, "wrong dimensions", r, "22000", "dimensions")
		usable(tw)
	})
	t.Run("Bind errors name the client's statement", func(t *testing.T) {
		// The server's message names the statement: the client's name, not
		// the one txlane prepared on the lane.
		tw := twins.open(t)
		r := tw.step("too few parameters, unnamed", pParse("", good), pBind("", prepVec), pExecute(), pSync())
		wantErrCode(t, "too few parameters, unnamed", r, "08P01", `prepared statement "" requires 2`)
		usable(tw)
		tw.step("prepare S_1", pParse("S_1", good), pDescribeS("S_1"), pSync())
		r = tw.step("too few parameters, named", pBind("S_1", prepVec), pExecute(), pSync())
		wantErrCode(t, "too few parameters, named", r, "08P01", `prepared statement "S_1" requires 2`)
		usable(tw)
	})
	t.Run("named, idle, then bound", func(t *testing.T) {
		tw := twins.open(t)
		r := tw.step("bad named Parse", pParse("bad", badColumn), pBind("bad", prepVec), pExecute(), pSync())
		wantErrCode(t, "bad named Parse", r, "42703", "nosuch")
		usable(tw)
		// The failed Parse defined nothing.
		r = tw.step("Bind of the failed name", exec1("bad", prepVec)...)
		wantErrCode(t, "Bind of the failed name", r, "26000", `prepared statement "bad" does not exist`)
		usable(tw)
	})
	t.Run("inside a transaction", func(t *testing.T) {
		tw := twins.open(t)
		tw.simple("BEGIN")
		r := tw.step("clean read", unnamed1(good, prepVec, "1")...)
		tw.wantLane("read in the transaction", r)
		r = tw.step("bad column in the transaction", unnamed1(badColumn, prepVec)...)
		wantErrCode(t, "bad column in the transaction", r, "42703", "nosuch")
		if r.status != 'E' {
			t.Fatalf("status %q after a failed Parse in a transaction, want E", r.status)
		}
		r = tw.step("read in the failed transaction", unnamed1(good, prepVec, "1")...)
		wantErrCode(t, "read in the failed transaction", r, "25P02", "aborted")
		tw.simple("ROLLBACK")
		usable(tw)
	})
	t.Run("error after a good statement in the same unit", func(t *testing.T) {
		// pgx batches and pipelines without intermediate Syncs: the first
		// statement runs and returns its rows before the second fails.
		tw := twins.open(t)
		msgs := []pgproto3.FrontendMessage{pParse("", good), pBind("", prepVec, "1"), pDescribeP(), pExecute(),
			pParse("", badColumn), pBind("", prepVec), pDescribeP(), pExecute(), pSync()}
		r := tw.step("good then bad", msgs...)
		wantErrCode(t, "good then bad", r, "42703", "nosuch")
		usable(tw)
	})
	t.Run("named statement defined twice", func(t *testing.T) {
		tw := twins.open(t)
		r := tw.step("first Parse", pParse("twice", good), pBind("twice", prepVec, "1"), pExecute(), pSync())
		tw.wantLane("first Parse", r)
		r = tw.step("second Parse of the same name", pParse("twice", good), pBind("twice", prepVec, "1"), pExecute(), pSync())
		wantErrCode(t, "second Parse of the same name", r, "42P05", `prepared statement "twice" already exists`)
		usable(tw)
	})
}

// TestPreparedDescribeAcrossLanes: a statement prepared (and described) on the
// vector lane is described and executed on the primary inside a write
// transaction, and on the lane again afterwards.
func TestPreparedDescribeAcrossLanes(t *testing.T) { inPoolModes(t, testPreparedDescribeAcrossLanes) }

func testPreparedDescribeAcrossLanes(t *testing.T, pool proxy.PoolOptions) {
	bed := startVectorProxy(t, func(o *proxy.Options) { o.ReadPool.MaxConns = 1; o.Pool = pool })
	tw := newPrepTwins(t, bed, pool.Mode).open(t)
	q := prepRead(bed.table)
	for _, name := range []string{"d1", ""} {
		r := tw.step("prepare and describe on the lane", pParse(name, q), pDescribeS(name), pBind(name, prepVec, "2"), pDescribeP(), pExecute(), pSync())
		tw.wantLane("prepare and describe on the lane", r)
		r = tw.step("describe alone", pDescribeS(name), pSync())
		if !strings.Contains(r.String(), "ParameterDescription") || !strings.Contains(r.String(), "RowDescription pid:23 id:23 note:25") {
			t.Fatalf("Describe of %q:\n%s", name, indent(r.String()))
		}
		tw.simple("BEGIN")
		tw.step("write", unnamed1("UPDATE "+bed.table+" SET note = $1 WHERE id = 1", "dirty")...)
		if name == "" {
			// The UPDATE replaced the unnamed statement: prepare it again.
			tw.step("prepare unnamed again", pParse("", q), pDescribeS(""), pSync())
		}
		r = tw.step("describe and execute after write", pDescribeS(name), pBind(name, prepVec, "2"), pDescribeP(), pExecute(), pSync())
		tw.wantPrimary("describe and execute after write", r)
		wantValues(t, "describe and execute after write", r, "1,dirty | 2,y")
		tw.simple("ROLLBACK")
		if name == "" {
			tw.step("prepare unnamed again", pParse("", q), pDescribeS(""), pSync())
		}
		r = tw.step("describe and execute idle", pDescribeS(name), pBind(name, prepVec, "2"), pDescribeP(), pExecute(), pSync())
		tw.wantLane("describe and execute idle", r)
		wantValues(t, "describe and execute idle", r, "1,x | 2,y")
	}
}

// TestPreparedUnnamedAcrossSnapshotRefresh replays pgx's DescribeExec mode
// (Parse "" + Describe + Sync, then Bind "" + Execute + Sync) when the
// session's settings must be re-read before the execute and the fresh
// settings send it to the primary: the primary must still hold the unnamed
// statement the client prepared there.
func TestPreparedUnnamedAcrossSnapshotRefresh(t *testing.T) {
	inPoolModes(t, testPreparedUnnamedAcrossSnapshotRefresh)
}

func testPreparedUnnamedAcrossSnapshotRefresh(t *testing.T, pool proxy.PoolOptions) {
	t.Run("default_transaction_isolation", func(t *testing.T) {
		bed := startVectorProxy(t, func(o *proxy.Options) { o.Pool = pool })
		tw := newPrepTwins(t, bed, pool.Mode).open(t)
		q := prepRead(bed.table)
		tw.simple("SET default_transaction_isolation = 'serializable'")
		tw.simple("BEGIN")
		tw.step("Parse unnamed + Describe", pParse("", q), pDescribeS(""), pSync())
		r := tw.step("Bind unnamed + Execute", exec1("", prepVec, "2")...)
		tw.wantPrimary("read in a SERIALIZABLE transaction", r)
		wantValues(t, "Bind unnamed + Execute", r, "1,x | 2,y")
		tw.simple("COMMIT")
	})
	for _, dirty := range []string{"BEGIN", "SET application_name = 'dirty'", "SET TimeZone = 'UTC'"} {
		// Each of these makes txlane re-read the session's settings from the
		// primary before the next unit that might be offloaded; the read
		// below is no vector read, so it stays on the primary.
		t.Run("non-vector read after "+dirty, func(t *testing.T) {
			bed := startVectorProxy(t, func(o *proxy.Options) { o.Pool = pool })
			tw := newPrepTwins(t, bed, pool.Mode).open(t)
			tw.simple(dirty)
			q := "SELECT pg_backend_pid() AS pid, $1::int + 1 AS next"
			tw.step("Parse unnamed + Describe", pParse("", q), pDescribeS(""), pSync())
			r := tw.step("Bind unnamed + Execute", exec1("", "41")...)
			tw.wantPrimary("a non-vector read", r)
			wantValues(t, "Bind unnamed + Execute", r, "42")
			if dirty == "BEGIN" {
				tw.simple("COMMIT")
			}
		})
	}
}

// TestPreparedPipelineAlternatingLanes sends 50 units in one pgconn pipeline
// (a Sync per unit), alternating vector reads and primary work: every result
// arrives, in order, as a direct connection returns them.
func TestPreparedPipelineAlternatingLanes(t *testing.T) {
	inPoolModes(t, testPreparedPipelineAlternatingLanes)
}

func testPreparedPipelineAlternatingLanes(t *testing.T, pool proxy.PoolOptions) {
	bed := startVectorProxy(t, func(o *proxy.Options) { o.ReadPool.MaxConns = 2; o.Pool = pool })
	side := uniqueName("pipe_side")
	pgtest.Exec(t, "CREATE TABLE "+side+" (v int); GRANT ALL ON "+side+" TO PUBLIC")
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+side) })
	q := prepRead(bed.table)
	vecs := []string{"[1,0.5,0]", "[0,1,0.2]", "[0.1,0.2,1]"}

	type result struct {
		pid  string
		rows string // without the pid column
		tag  string
	}
	runPipeline := func(t *testing.T, conn *pgconn.PgConn) []result {
		ctx := testCtx(t)
		pl := conn.StartPipeline(ctx)
		for i := 0; i < 50; i++ {
			switch {
			case i == 0:
				pl.SendPrepare("pl_read", q, nil)
				pl.SendQueryPrepared("pl_read", [][]byte{[]byte(vecs[0]), []byte("3")}, nil, nil)
			case i%4 == 0:
				pl.SendQueryPrepared("pl_read", [][]byte{[]byte(vecs[i%3]), []byte(strconv.Itoa(1 + i%3))}, nil, nil)
			case i%2 == 0:
				pl.SendQueryParams(q, [][]byte{[]byte(vecs[i%3]), []byte(strconv.Itoa(1 + i%3))}, nil, nil, nil)
			case i%4 == 1:
				pl.SendQueryParams("INSERT INTO "+side+" VALUES ($1) RETURNING pg_backend_pid(), v", [][]byte{[]byte(strconv.Itoa(i))}, nil, nil, nil)
			default:
				pl.SendQueryParams("SELECT pg_backend_pid(), $1::int * 2", [][]byte{[]byte(strconv.Itoa(i))}, nil, nil, nil)
			}
			pl.SendPipelineSync()
		}
		if err := pl.Flush(); err != nil {
			t.Fatal(err)
		}
		var out []result
		for {
			res, err := pl.GetResults()
			if err != nil {
				t.Fatalf("pipeline result %d: %v", len(out), err)
			}
			if res == nil {
				break
			}
			rr, ok := res.(*pgconn.ResultReader)
			if !ok {
				continue // a StatementDescription or a PipelineSync
			}
			r := rr.Read()
			if r.Err != nil {
				t.Fatalf("pipeline result %d: %v", len(out), r.Err)
			}
			var x result
			var rows []string
			for _, row := range r.Rows {
				x.pid = string(row[0])
				var vals []string
				for _, v := range row[1:] {
					vals = append(vals, string(v))
				}
				rows = append(rows, strings.Join(vals, ","))
			}
			x.rows, x.tag = strings.Join(rows, " | "), r.CommandTag.String()
			out = append(out, x)
		}
		if err := pl.Close(); err != nil {
			t.Fatal(err)
		}
		return out
	}

	px := bed.connect(t)
	primary := backendPID(t, px)
	got := runPipeline(t, px)
	want := runPipeline(t, directConn(t))
	if len(got) != 50 || len(want) != 50 {
		t.Fatalf("%d results through txlane, %d directly, want 50", len(got), len(want))
	}
	onLane := 0
	for i := range got {
		if got[i].rows != want[i].rows || got[i].tag != want[i].tag {
			t.Fatalf("unit %d: %+v through txlane, %+v directly", i, got[i], want[i])
		}
		read := i%2 == 0
		switch {
		case !read && got[i].pid != primary:
			t.Fatalf("unit %d (primary work) ran on backend %s, want the primary %s", i, got[i].pid, primary)
		case read && got[i].pid != primary:
			onLane++
		case i == 0:
			t.Fatalf("unit 0 (a vector read, nothing in flight) ran on the primary")
		}
	}
	t.Logf("%d of 25 pipelined vector reads ran on the vector lane", onLane)
	// The session is in order after the pipeline.
	l := newLanes(t, px)
	l.wantLane("SELECT pg_backend_pid() FROM " + bed.table + " LIMIT 1")
	if scalar(t, px, "SELECT count(*) FROM "+side) != "26" { // 13 inserts from each side
		t.Fatalf("side table rows: %s", scalar(t, px, "SELECT count(*) FROM "+side))
	}
}
