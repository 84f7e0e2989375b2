package proxy_test

// Escapes found by an adversarial review: each test states a promise of
// docs/semantics.md (a write carrying a unit of work held by another
// connection's transaction is refused) for one input shape.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// escapeBed is a proxy with escape: reject, a vector lane with catalog
// discovery on (as txlane runs by default), a vector table and a uow table.
type escapeBed struct {
	*testProxy
	vec, uow string
}

func startEscapeBed(t *testing.T, mutate func(*proxy.Options)) *escapeBed {
	t.Helper()
	vec, uow := uniqueName("escvec"), uniqueName("escuow")
	pgtest.Exec(t, fmt.Sprintf(`CREATE TABLE %[1]s (id int PRIMARY KEY, embedding vector(3), note text);
INSERT INTO %[1]s VALUES (1, '[1,0,0]', 'x'), (2, '[0,1,0]', 'y'), (3, '[0,0,1]', 'z');
GRANT ALL ON %[1]s TO PUBLIC;
CREATE TABLE %[2]s (id serial PRIMARY KEY, unit text, who text); GRANT ALL ON %[2]s TO PUBLIC; GRANT ALL ON SEQUENCE %[2]s_id_seq TO PUBLIC`, vec, uow))
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+vec+", "+uow) })
	p := startProxy(t, func(o *proxy.Options) {
		o.ReadPool = proxy.ReadPoolOptions{Config: pgtest.Config(t), MaxConns: 1, AcquireTimeout: 2 * time.Second}
		o.Rules.VectorTables = []string{vec}
		o.Rules.Escape = "reject"
		o.Discover = true
		o.RerouteWaitTimeout = 2 * time.Second
		if mutate != nil {
			mutate(o)
		}
	})
	return &escapeBed{testProxy: p, vec: vec, uow: uow}
}

func (b *escapeBed) ins(unit, who string) string {
	return fmt.Sprintf("INSERT INTO %s (unit, who) VALUES ('%s', '%s')", b.uow, unit, who)
}

func (b *escapeBed) count(t *testing.T, where string) string {
	t.Helper()
	return scalar(t, directConn(t), "SELECT count(*) FROM "+b.uow+" WHERE "+where)
}

// hold opens a transaction on a new connection that carries unit u1 and
// wrote a row (who = 'holder').
func (b *escapeBed) hold(t *testing.T) *pgconn.PgConn {
	t.Helper()
	h := b.connect(t)
	exec(t, h, "BEGIN")
	exec(t, h, b.ins("u1", "holder")+" /*unit='u1'*/")
	if len(b.Units()) != 1 {
		t.Fatalf("holder does not hold u1: %+v", b.Units())
	}
	return h
}

func escapeErr(conn *pgconn.PgConn, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err := conn.Exec(ctx, sql).ReadAll()
	return err
}

func sqlstate(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// wantRejected: the escaping write got 25L01 and wrote nothing (no row with
// who = 'other').
func (b *escapeBed) wantRejected(t *testing.T, what string, err error) {
	t.Helper()
	if got := sqlstate(err); got != proxy.CodeEscapedWrite {
		t.Errorf("%s: got %s, want SQLSTATE %s (write escaping the holder's transaction of u1)", what, got, proxy.CodeEscapedWrite)
	}
	if n := b.count(t, "who = 'other'"); n != "0" {
		t.Errorf("%s: %s row(s) written by the escaping write (committed outside the holder's transaction)", what, n)
	}
}

// A holder's implicit transaction (one simple Query with several statements)
// is an open transaction carrying u1: txlane registers the hold for it.
func TestEscapeImplicitTxHolderSimpleQuery(t *testing.T) {
	b := startEscapeBed(t, nil)
	h := newPrepConn(t, b.connect(t))
	// Holder: write u1, wait, then fail: the implicit transaction rolls back.
	h.send(pQuery(b.ins("u1", "holder") + " /*unit='u1'*/; SELECT pg_sleep(1.5); SELECT 1/0"))
	// NOTE: a wait for the hold, not a fixed sleep: on a loaded machine the
	// holder's request may reach txlane after the writer's.
	waitFor(t, func() bool { return len(b.Units()) == 1 }, "the holder's request to hold u1")
	w := b.connect(t)
	err := escapeErr(w, b.ins("u1", "other")+" /*unit='u1'*/")
	r := h.read(1)
	t.Logf("holder: %s", strings.Join(r.errs, "; "))
	t.Logf("rows: holder=%s other=%s", b.count(t, "who='holder'"), b.count(t, "who='other'"))
	b.wantRejected(t, "write of u1 during the holder's implicit transaction (multi-statement Query)", err)
}

// The same with an extended-protocol batch without BEGIN (one implicit
// transaction up to Sync), as pgx batches and JDBC executeBatch send it.
func TestEscapeImplicitTxHolderExtendedBatch(t *testing.T) {
	b := startEscapeBed(t, nil)
	h := newPrepConn(t, b.connect(t))
	h.send(pParse("", b.ins("u1", "holder")+" /*unit='u1'*/"), pBind(""), pExecute(),
		pParse("", "SELECT pg_sleep(1.5) /*unit='u1'*/"), pBind(""), pExecute(),
		pParse("", "SELECT 1/0 /*unit='u1'*/"), pBind(""), pExecute(), pSync())
	waitFor(t, func() bool { return len(b.Units()) == 1 }, "the holder's request to hold u1")
	w := b.connect(t)
	err := escapeErr(w, b.ins("u1", "other")+" /*unit='u1'*/")
	r := h.read(1)
	t.Logf("holder: %s", strings.Join(r.errs, "; "))
	b.wantRejected(t, "write of u1 during the holder's implicit transaction (extended batch)", err)
}

// SET txlane.unit in the same simple Query as the write: the write carries
// u1 at the server, but txlane learns the unit only after the check.
func TestEscapeSetInSameQuery(t *testing.T) {
	b := startEscapeBed(t, nil)
	h := b.hold(t)
	defer exec(t, h, "ROLLBACK")
	w := b.connect(t)
	err := escapeErr(w, "SET txlane.unit = 'u1'; "+b.ins("u1", "other"))
	b.wantRejected(t, "SET txlane.unit = 'u1'; INSERT (one Query)", err)
	w2 := b.connect(t)
	err = escapeErr(w2, "BEGIN; SET LOCAL txlane.unit = 'u1'; "+b.ins("u1", "other")+"; COMMIT")
	b.wantRejected(t, "BEGIN; SET LOCAL txlane.unit = 'u1'; INSERT; COMMIT (one Query)", err)
}

// The same in one extended batch.
func TestEscapeSetInSameBatch(t *testing.T) {
	b := startEscapeBed(t, nil)
	h := b.hold(t)
	defer exec(t, h, "ROLLBACK")
	w := newPrepConn(t, b.connect(t))
	r := w.run(pParse("", "SET txlane.unit = 'u1'"), pBind(""), pExecute(),
		pParse("", b.ins("u1", "other")), pBind(""), pExecute(), pSync())
	var err error
	if len(r.errs) > 0 {
		err = &pgconn.PgError{Code: strings.SplitN(r.errs[0], ":", 2)[0]}
	}
	b.wantRejected(t, "extended batch: SET txlane.unit; INSERT", err)
}

// The holder sets its unit with SET LOCAL in the same Query as its first
// write: txlane does not register the hold, so the other pool's write of u1
// commits on its own and survives the holder's rollback.
func TestEscapeHolderSetLocalSameQuery(t *testing.T) {
	b := startEscapeBed(t, nil)
	h := b.connect(t)
	exec(t, h, "BEGIN; SET LOCAL txlane.unit = 'u1'; "+b.ins("u1", "holder"))
	if got := scalar(t, h, "SELECT current_setting('txlane.unit')"); got != "u1" {
		t.Fatalf("holder's unit at the server: %q", got)
	}
	// NOTE: the SELECT above carried u1 (unitLocal) and registered the hold;
	// test the window before it on a second holder.
	exec(t, h, "ROLLBACK")
	h2 := b.connect(t)
	exec(t, h2, "BEGIN; SET LOCAL txlane.unit = 'u1'; "+b.ins("u1", "holder"))
	w := b.connect(t)
	err := escapeErr(w, b.ins("u1", "other")+" /*unit='u1'*/")
	exec(t, h2, "ROLLBACK")
	b.wantRejected(t, "holder: BEGIN; SET LOCAL txlane.unit; INSERT (one Query); other: INSERT /*unit='u1'*/", err)
}

// A RESET the server skipped (an error earlier in the same Query) still
// clears txlane's idea of the session's unit: later writes carry u1 at the
// server but are not checked.
func TestEscapeSkippedReset(t *testing.T) {
	b := startEscapeBed(t, nil)
	h := b.hold(t)
	defer exec(t, h, "ROLLBACK")
	w := b.connect(t)
	exec(t, w, "SET txlane.unit = 'u1'")
	if got := sqlstate(escapeErr(w, "SELECT 1/0; RESET txlane.unit")); got != "22012" {
		t.Fatalf("got %s", got)
	}
	if got := scalar(t, w, "SELECT current_setting('txlane.unit')"); got != "u1" {
		t.Fatalf("server's unit after the skipped RESET: %q", got)
	}
	b.wantRejected(t, "INSERT after a skipped RESET txlane.unit (server still has u1)", escapeErr(w, b.ins("u1", "other")))
}

// RESET txlane.unit inside a transaction that rolls back: PostgreSQL
// restores u1, txlane forgets it.
func TestEscapeResetRolledBack(t *testing.T) {
	b := startEscapeBed(t, nil)
	h := b.hold(t)
	defer exec(t, h, "ROLLBACK")
	w := b.connect(t)
	exec(t, w, "SET txlane.unit = 'u1'")
	exec(t, w, "BEGIN")
	exec(t, w, "RESET txlane.unit")
	exec(t, w, "ROLLBACK")
	if got := scalar(t, w, "SELECT current_setting('txlane.unit')"); got != "u1" {
		t.Fatalf("server's unit after ROLLBACK: %q", got)
	}
	b.wantRejected(t, "INSERT after RESET txlane.unit was rolled back", escapeErr(w, b.ins("u1", "other")))
}

// txlane.unit given at login (options=-c txlane.unit=u1) is the session's
// unit at the server, but txlane ignores it.
func TestEscapeStartupOption(t *testing.T) {
	b := startEscapeBed(t, nil)
	h := b.hold(t)
	defer exec(t, h, "ROLLBACK")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg, err := pgconn.ParseConfig(b.DSN(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["options"] = "-c txlane.unit=u1"
	w, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(ctx)
	if got := scalar(t, w, "SELECT current_setting('txlane.unit')"); got != "u1" {
		t.Fatalf("server's unit: %q", got)
	}
	b.wantRejected(t, "INSERT on a connection whose txlane.unit was set at login", escapeErr(w, b.ins("u1", "other")))
}

// Same, through the vector lane: the lane refuses the write (25006) and
// txlane runs the read again on the primary — where it writes, unchecked.
func TestEscapeStableFunctionWritesViaLaneRerun(t *testing.T) {
	b := startEscapeBed(t, nil)
	fn := uniqueName("esc_stable")
	pgtest.Exec(t, fmt.Sprintf(`CREATE FUNCTION %[1]s_w(u text) RETURNS int VOLATILE LANGUAGE plpgsql AS $$
BEGIN INSERT INTO %[2]s (unit, who) VALUES (u, 'other'); RETURN 1; END $$;
CREATE FUNCTION %[1]s(u text) RETURNS int STABLE LANGUAGE plpgsql AS $$ BEGIN RETURN %[1]s_w(u); END $$`, fn, b.uow))
	t.Cleanup(func() {
		pgtest.Exec(t, fmt.Sprintf("DROP FUNCTION IF EXISTS %[1]s(text); DROP FUNCTION IF EXISTS %[1]s_w(text)", fn))
	})
	h := b.hold(t)
	defer exec(t, h, "ROLLBACK")
	w := b.connect(t)
	b.wantRejected(t, "SELECT stable_fn() FROM vector_table /*unit='u1'*/ (lane refuses, primary reruns)",
		escapeErr(w, fmt.Sprintf("SELECT %s('u1') FROM %s WHERE id = 1 /*unit='u1'*/", fn, b.vec)))
}

// replyErr turns the first error of a raw reply into a *pgconn.PgError.
func replyErr(r *prepReply) error {
	if len(r.errs) == 0 {
		return nil
	}
	code, msg, _ := strings.Cut(r.errs[0], ": ")
	return &pgconn.PgError{Code: code, Message: msg}
}

// A protocol-level portal bound to an INSERT ... RETURNING that carries u1
// is executed by SQL FETCH (or MOVE), which txlane classifies as a cursor
// utility statement: no write, no check.
func TestEscapeFetchRunsBoundPortal(t *testing.T) {
	b := startEscapeBed(t, nil)
	h := b.hold(t)
	defer exec(t, h, "ROLLBACK")
	for _, verb := range []string{"FETCH ALL FROM", "MOVE ALL IN"} {
		w := newPrepConn(t, b.connect(t))
		r := w.run(pParse("w", b.ins("u1", "other")+" RETURNING id /*unit='u1'*/"),
			&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "w"},
			pParse("", verb+" p /*unit='u1'*/"), pBind(""), pExecute(), pSync())
		t.Logf("%s: %s", verb, strings.ReplaceAll(r.String(), "\n", " | "))
		b.wantRejected(t, verb+" of a portal bound to an INSERT carrying u1", replyErr(r))
	}
}

// The planner records a Bind's portal before the server confirms it. A Bind
// that fails its parameter count check leaves the server's old unnamed
// portal in place (inside a transaction, recovered with ROLLBACK TO
// SAVEPOINT); the next Execute runs the old portal — an INSERT carrying u1 —
// while txlane plans the read.
func TestEscapeFailedBindKeepsOldPortal(t *testing.T) {
	b := startEscapeBed(t, nil)
	h := b.hold(t)
	defer exec(t, h, "ROLLBACK")
	w := newPrepConn(t, b.connect(t))
	steps := []struct {
		what string
		msgs []pgproto3.FrontendMessage
	}{
		{"BEGIN", []pgproto3.FrontendMessage{pQuery("BEGIN")}},
		{"bind the write, no Execute", []pgproto3.FrontendMessage{pParse("", b.ins("u1", "other")+" /*unit='u1'*/"), pBind(""), pSync()}},
		{"savepoint (named portal)", []pgproto3.FrontendMessage{pParse("sp", "SAVEPOINT a"), &pgproto3.Bind{DestinationPortal: "q1", PreparedStatement: "sp"}, &pgproto3.Execute{Portal: "q1"}, pSync()}},
		{"failing Bind of a read to the unnamed portal", []pgproto3.FrontendMessage{pParse("rd", "SELECT 1"), pBind("rd", "extra"), pSync()}},
		{"rollback to savepoint (named portal)", []pgproto3.FrontendMessage{pParse("rb", "ROLLBACK TO SAVEPOINT a"), &pgproto3.Bind{DestinationPortal: "q2", PreparedStatement: "rb"}, &pgproto3.Execute{Portal: "q2"}, pSync()}},
		{"Execute the unnamed portal", []pgproto3.FrontendMessage{pExecute(), pSync()}},
		{"COMMIT", []pgproto3.FrontendMessage{pQuery("COMMIT")}},
	}
	var execErr error
	for _, s := range steps {
		r := w.run(s.msgs...)
		t.Logf("%s: %s", s.what, strings.ReplaceAll(r.String(), "\n", " | "))
		if s.what == "Execute the unnamed portal" {
			execErr = replyErr(r)
		}
	}
	b.wantRejected(t, "Execute of the old unnamed portal after a failed Bind", execErr)
}

// Write shapes that must each get 25L01 while u1 is held.
func TestEscapeWriteShapes(t *testing.T) {
	b := startEscapeBed(t, nil)
	fn := uniqueName("esc_ws")
	pgtest.Exec(t, fmt.Sprintf(`CREATE FUNCTION %[1]s_v(u text) RETURNS int VOLATILE LANGUAGE plpgsql AS $f$
BEGIN INSERT INTO %[2]s (unit, who) VALUES (u, 'other'); RETURN 1; END $f$;
CREATE PROCEDURE %[1]s_p() LANGUAGE sql AS $f$ INSERT INTO %[2]s (unit, who) VALUES ('u1', 'other') $f$;
CREATE VIEW %[1]s_view AS SELECT * FROM %[2]s; GRANT ALL ON %[1]s_view TO PUBLIC`, fn, b.uow))
	t.Cleanup(func() {
		pgtest.Exec(t, fmt.Sprintf("DROP VIEW IF EXISTS %[1]s_view; DROP FUNCTION IF EXISTS %[1]s_v(text); DROP PROCEDURE IF EXISTS %[1]s_p()", fn))
	})
	h := b.hold(t)
	defer exec(t, h, "ROLLBACK")
	u := " /*unit='u1'*/"
	simple := map[string][]string{
		"DO block":                {"DO $$BEGIN " + b.ins("u1", "other") + "; END$$" + u},
		"CALL":                    {"CALL " + fn + "_p()" + u},
		"SQL EXECUTE":             {"PREPARE wps AS " + b.ins("u1", "other"), "EXECUTE wps" + u},
		"SQL PREPARE carrying u1": {"PREPARE wps2 AS " + b.ins("u1", "other") + u, "EXECUTE wps2"},
		"EXPLAIN ANALYZE":         {"EXPLAIN ANALYZE " + b.ins("u1", "other") + u},
		"MERGE":                   {fmt.Sprintf("MERGE INTO %s t USING (SELECT 'u1' AS unit) s ON false WHEN NOT MATCHED THEN INSERT (unit, who) VALUES (s.unit, 'other')", b.uow) + u},
		"writable CTE":            {"WITH x AS (" + b.ins("u1", "other") + " RETURNING id) SELECT count(*) FROM x" + u},
		"volatile function":       {"SELECT " + fn + "_v('u1')" + u},
		"volatile SRF in FROM":    {"SELECT * FROM " + fn + "_v('u1')" + u},
		"holdable cursor":         {"DECLARE hc CURSOR WITH HOLD FOR SELECT " + fn + "_v('u1')" + u, "CLOSE hc"},
		"cursor FETCH in own tx":  {"BEGIN", "DECLARE c2 CURSOR FOR SELECT " + fn + "_v('u1')", "FETCH ALL FROM c2" + u, "COMMIT"},
		"insert through a view":   {fmt.Sprintf("INSERT INTO %s_view (unit, who) VALUES ('u1', 'other')", fn) + u},
		"SET unquoted value":      {"SET txlane.unit = u1", b.ins("u1", "other"), "RESET txlane.unit"},
		"SET upper-case name":     {"SET TXLANE.UNIT TO 'u1'", b.ins("u1", "other"), "RESET txlane.unit"},
		"set_config(txlane.unit)": {"SELECT set_config('txlane.unit', 'u1', false)", b.ins("u1", "other"), "RESET txlane.unit"},
		"unit in leading comment": {"/*unit='u1'*/ " + b.ins("u1", "other")},
		"url-encoded unit":        {b.ins("u1", "other") + " /*unit='%75%31'*/"},
		"two comments":            {b.ins("u1", "other") + " /*unit='u2'*/ /*unit='u1'*/"},
	}
	for name, stmts := range simple {
		t.Run(name, func(t *testing.T) {
			w := b.connect(t)
			var first error
			for _, s := range stmts {
				if err := escapeErr(w, s); err != nil && first == nil {
					first = err
				}
			}
			b.wantRejected(t, name, first)
			pgtest.Exec(t, "DELETE FROM "+b.uow+" WHERE who = 'other'")
		})
	}
	t.Run("COPY FROM STDIN", func(t *testing.T) {
		w := b.connect(t)
		_, err := w.CopyFrom(context.Background(), strings.NewReader("u1\tother\n"), "COPY "+b.uow+" (unit, who) FROM STDIN"+u)
		b.wantRejected(t, "COPY FROM STDIN", err)
		pgtest.Exec(t, "DELETE FROM "+b.uow+" WHERE who = 'other'")
	})
	t.Run("fast-path function call with SET txlane.unit", func(t *testing.T) {
		w := newPrepConn(t, b.connect(t))
		oid := scalar(t, directConn(t), fmt.Sprintf("SELECT '%s_v(text)'::regprocedure::oid", fn))
		var o uint32
		fmt.Sscan(oid, &o)
		w.run(pQuery("SET txlane.unit = 'u1'"))
		w.send(&pgproto3.FunctionCall{Function: o, ArgFormatCodes: []uint16{0}, Arguments: [][]byte{[]byte("u1")}, ResultFormatCode: 0})
		r := w.read(1)
		b.wantRejected(t, "FunctionCall", replyErr(r))
		pgtest.Exec(t, "DELETE FROM "+b.uow+" WHERE who = 'other'")
	})
}

// An extended-protocol Parse/Bind/Execute followed by a simple Query without
// a Sync in between (legal: the server runs both). Direct: two results.
// Through txlane, compare.
func TestMixedExtendedThenQuery(t *testing.T) {
	b := startEscapeBed(t, nil)
	read := fmt.Sprintf("SELECT id FROM %s WHERE id = 1", b.vec)
	msgs := []pgproto3.FrontendMessage{pParse("", read), pBind(""), pExecute(), pQuery(read)}
	direct := newPrepConn(t, directConn(t))
	want := direct.run(msgs...)
	via := newPrepConn(t, b.connect(t))
	got := via.run(msgs...)
	if got.String() != want.String() {
		t.Errorf("mixed Execute+Query without Sync:\ndirect:\n%s\ntxlane:\n%s", indent(want.String()), indent(got.String()))
	}
	// The connection still works.
	if v := scalar(t, via.conn, "SELECT 41+1"); v != "42" {
		t.Errorf("after: %s", v)
	}
}

// DISCARD ALL (and RESET ALL inside a rolled-back block, etc.) clear
// txlane.unit at the server; txlane keeps the unit and refuses a write that
// carries none.
func TestEscapeDiscardAllKeepsStaleUnit(t *testing.T) {
	b := startEscapeBed(t, nil)
	h := b.hold(t)
	defer exec(t, h, "ROLLBACK")
	w := b.connect(t)
	exec(t, w, "SET txlane.unit = 'u1'")
	exec(t, w, "DISCARD ALL")
	if got := scalar(t, w, "SELECT coalesce(current_setting('txlane.unit', true), '')"); got != "" {
		t.Fatalf("server's unit after DISCARD ALL: %q", got)
	}
	if err := escapeErr(w, b.ins("none", "plain")); err != nil {
		t.Errorf("a write carrying no unit (server's txlane.unit is empty after DISCARD ALL) was refused: %v", err)
	}
}

// A session unit (SET txlane.unit) is ignored as soon as a statement of the
// request carries any sqlcommenter unit, e.g. a traceparent added by
// OpenTelemetry instrumentation: the write is checked only for the trace-id.
func TestEscapeSessionUnitShadowedByTraceparent(t *testing.T) {
	b := startEscapeBed(t, nil)
	h := b.hold(t)
	defer exec(t, h, "ROLLBACK")
	w := b.connect(t)
	exec(t, w, "SET txlane.unit = 'u1'")
	err := escapeErr(w, b.ins("u1", "other")+" /*traceparent='00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'*/")
	b.wantRejected(t, "SET txlane.unit = 'u1' + INSERT with an unrelated traceparent comment", err)
}

// A STABLE function may call a volatile one that writes; the catalog says
// STABLE, so the statement is a read and is not checked.
func TestEscapeStableFunctionWrites(t *testing.T) {
	b := startEscapeBed(t, nil)
	fn := uniqueName("esc_stable")
	pgtest.Exec(t, fmt.Sprintf(`CREATE FUNCTION %[1]s_w(u text) RETURNS int VOLATILE LANGUAGE plpgsql AS $$
BEGIN INSERT INTO %[2]s (unit, who) VALUES (u, 'other'); RETURN 1; END $$;
CREATE FUNCTION %[1]s(u text) RETURNS int STABLE LANGUAGE plpgsql AS $$ BEGIN RETURN %[1]s_w(u); END $$`, fn, b.uow))
	t.Cleanup(func() {
		pgtest.Exec(t, fmt.Sprintf("DROP FUNCTION IF EXISTS %[1]s(text); DROP FUNCTION IF EXISTS %[1]s_w(text)", fn))
	})
	h := b.hold(t)
	defer exec(t, h, "ROLLBACK")
	w := b.connect(t)
	// Sanity: the volatile function itself is caught.
	if got := sqlstate(escapeErr(w, fmt.Sprintf("SELECT %s_w('u1') /*unit='u1'*/", fn))); got != proxy.CodeEscapedWrite {
		t.Errorf("volatile writer: got %s, want %s", got, proxy.CodeEscapedWrite)
	}
	b.wantRejected(t, "SELECT stable_fn() /*unit='u1'*/ (stable function calling a volatile writer)",
		escapeErr(w, fmt.Sprintf("SELECT %s('u1') /*unit='u1'*/", fn)))
}
