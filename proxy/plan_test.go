package proxy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/proxy"
)

// Requests whose parts reach the server in pieces, or whose statements are
// named by portals, are planned and checked like any other: a write carrying
// a unit of work held by another connection is refused before it runs.

// escapeShapes are extended-protocol requests that each execute one write
// carrying unit u1, in the shapes where checks used to be skipped.
func escapeShapes(ins string) map[string][]pgproto3.FrontendMessage {
	big := strings.Repeat("x", 1100*1024) // past the size txlane holds back
	return map[string][]pgproto3.FrontendMessage{
		"flush before sync": {pParse("", ins), pBind(""), pExecute(), &pgproto3.Flush{}, pSync()},
		"named portals": {
			pParse("w", ins), pParse("r", "SELECT 1"),
			&pgproto3.Bind{DestinationPortal: "p1", PreparedStatement: "w"},
			&pgproto3.Bind{DestinationPortal: "p2", PreparedStatement: "r"},
			&pgproto3.Execute{Portal: "p1"}, &pgproto3.Execute{Portal: "p2"}, pSync(),
		},
		"size cap": {
			pParse("", strings.Replace(ins, "'other'", "$1", 1)), pBind("", big), pExecute(), pSync(),
		},
		"read then write": {
			pParse("", "SELECT 1"), pBind(""), pExecute(), &pgproto3.Flush{},
			pParse("w2", ins), pBind("w2"), pExecute(), pSync(),
		},
	}
}

func TestEscapeShapesRejected(t *testing.T) {
	bed := startUnitProxy(t, "reject", nil)
	holder := bed.connect(t)
	exec(t, holder, "BEGIN")
	exec(t, holder, bed.insert("u1", "holder"))
	ins := bed.insert("u1", "other")
	for name, msgs := range escapeShapes(ins) {
		t.Run(name, func(t *testing.T) {
			w := newPrepConn(t, bed.connect(t))
			r := w.run(msgs...)
			if len(r.errs) != 1 || !strings.HasPrefix(r.errs[0], proxy.CodeEscapedWrite+":") {
				t.Fatalf("escaping write in a %s request: got\n%s\nwant one %s error", name, indent(r.String()), proxy.CodeEscapedWrite)
			}
			if r.status != 'I' {
				t.Errorf("writer's status %q after the refusal", r.status)
			}
			// The connection carries on.
			if got := scalar(t, w.conn, "SELECT 41+1"); got != "42" {
				t.Errorf("after the refusal: %s", got)
			}
		})
	}
	if got := bed.count(t, "who <> 'holder'"); got != "0" {
		t.Fatalf("%s escaping rows committed", got)
	}
	exec(t, holder, "ROLLBACK")
	if got := bed.count(t, "true"); got != "0" {
		t.Fatalf("%s rows after the holder rolled back", got)
	}
}

// A transaction whose statements arrive in parts holds its unit like any
// other, and a refusal in the middle of a request leaves what came before it
// as PostgreSQL would: rolled back with the implicit transaction.
func TestEscapeFlushedHolderAndPartialRequest(t *testing.T) {
	bed := startUnitProxy(t, "reject", nil)
	h := newPrepConn(t, bed.connect(t))
	r := h.run(pParse("", "BEGIN"), pBind(""), pExecute(), &pgproto3.Flush{},
		pParse("", bed.insert("u1", "holder")), pBind(""), pExecute(), &pgproto3.Flush{}, pSync())
	if len(r.errs) != 0 || r.status != 'T' {
		t.Fatalf("holder: %s", r)
	}
	w := newPrepConn(t, bed.connect(t))
	r = w.run(pParse("", bed.insert("u2", "before")), pBind(""), pExecute(), &pgproto3.Flush{},
		pParse("", bed.insert("u1", "other")), pBind(""), pExecute(), pSync())
	if len(r.errs) != 1 || !strings.HasPrefix(r.errs[0], proxy.CodeEscapedWrite) {
		t.Fatalf("writer: %s", r)
	}
	if !strings.Contains(r.String(), "CommandComplete INSERT 0 1") {
		t.Errorf("the first write of the request should have run before the refusal:\n%s", r)
	}
	if got := bed.count(t, "who <> 'holder'"); got != "0" {
		t.Fatalf("%s rows of the refused request committed (the implicit transaction must roll back)", got)
	}
	// The unnamed statement the refusal used is the client's again.
	r = w.run(pBind(""), pExecute(), pSync())
	if len(r.errs) != 1 || !strings.HasPrefix(r.errs[0], proxy.CodeEscapedWrite) {
		t.Fatalf("re-executing the client's unnamed statement: %s", r)
	}
	if r = h.run(pQuery("ROLLBACK")); r.status != 'I' {
		t.Fatalf("holder's ROLLBACK: %s", r)
	}
	if got := bed.count(t, "true"); got != "0" {
		t.Fatalf("%s rows after the holder rolled back", got)
	}
}

// With escape: reroute, a request that was partly sent cannot move to the
// holder: it is refused with a hint.
func TestEscapeRerouteFlushedRefused(t *testing.T) {
	bed := startUnitProxy(t, "reroute", nil)
	holder := bed.connect(t)
	exec(t, holder, "BEGIN")
	exec(t, holder, bed.insert("u1", "holder"))
	w := newPrepConn(t, bed.connect(t))
	r := w.run(pParse("", bed.insert("u1", "other")), pBind(""), pExecute(), &pgproto3.Flush{}, pSync())
	if len(r.errs) != 1 || !strings.HasPrefix(r.errs[0], proxy.CodeEscapedWrite) {
		t.Fatalf("flushed write under reroute: %s", r)
	}
	// Counted as what happened to it, with the hint for a reroute that could
	// not be made.
	m := bed.Server.Metrics()
	if rej, rer := m.Escapes("reject", bed.table), m.Escapes("reroute", bed.table); rej != 1 || rer != 0 {
		t.Errorf("after a refused reroute: reject %v, reroute %v; want 1, 0", rej, rer)
	}
	// Whole, it is rerouted.
	r = w.run(pParse("", bed.insert("u1", "other")), pBind(""), pExecute(), pSync())
	if len(r.errs) != 0 {
		t.Fatalf("whole write under reroute: %s", r)
	}
	if rer := m.Escapes("reroute", bed.table); rer != 1 {
		t.Errorf("reroutes counted: %v", rer)
	}
	exec(t, holder, "ROLLBACK")
	if got := bed.count(t, "true"); got != "0" {
		t.Fatalf("%s rows after the holder rolled back", got)
	}
}

// F: a Parse before a pipelined DEALLOCATE ALL is deallocated too.
func TestPlanRegistryFollowsPipeline(t *testing.T) {
	bed := startVectorProxy(t, nil)
	tw := newPrepTwins(t, bed, proxy.PoolSession).open(t)
	q := "SELECT pg_backend_pid(), id FROM " + bed.table + " WHERE id = $1"
	tw.step("parse then DEALLOCATE ALL in one request",
		pParse("s3", q), pParse("", "DEALLOCATE ALL"), pBind(""), pExecute(), pSync())
	r := tw.step("bind the deallocated statement", pBind("s3", "2"), pExecute(), pSync())
	if len(r.errs) != 1 || !strings.HasPrefix(r.errs[0], "26000") {
		t.Fatalf("want 26000, got %s", r)
	}
	// DEALLOCATE name, and DISCARD ALL, likewise.
	tw.step("parse then DEALLOCATE s4", pParse("s4", q), pParse("", "DEALLOCATE s4"), pBind(""), pExecute(), pSync())
	tw.step("bind s4", pBind("s4", "2"), pExecute(), pSync())
	tw.step("parse then DISCARD ALL", pParse("s5", q), pQuery("DISCARD ALL"))
	tw.step("bind s5", pBind("s5", "2"), pExecute(), pSync())
	// A DEALLOCATE the server skipped (after an error) deallocates nothing.
	tw.step("parse s6", pParse("s6", q), pSync())
	tw.step("error, then a skipped DEALLOCATE", pParse("", "SELECT 1/0"), pBind(""), pExecute(),
		pParse("", "DEALLOCATE s6"), pBind(""), pExecute(), pSync())
	r = tw.step("bind s6", pBind("s6", "2"), pExecute(), pSync())
	if len(r.rows) != 1 {
		t.Fatalf("s6 should still exist: %s", r)
	}
}

// H: a request that cannot go to the vector lane reaches the server as it
// arrives, so statement_timeout fires between Parse and Describe as it does
// without txlane.
func TestPlanTimeoutBetweenParseAndDescribe(t *testing.T) {
	for _, lane := range []bool{false, true} {
		name := "no vector lane"
		var p *testProxy
		if lane {
			name = "vector lane"
			p = startVectorProxy(t, nil).testProxy
		} else {
			p = startProxy(t, nil)
		}
		t.Run(name, func(t *testing.T) {
			for _, side := range []struct {
				name string
				conn *pgconn.PgConn
			}{{"direct", directConn(t)}, {"txlane", p.connect(t)}} {
				c := newPrepConn(t, side.conn)
				c.run(pQuery("SET statement_timeout = '100ms'"))
				c.send(pParse("t1", "select $1::varchar"))
				time.Sleep(250 * time.Millisecond)
				r := c.run(pDescribeS("t1"), pSync())
				if !strings.HasPrefix(r.String(), "ParseComplete") || len(r.errs) != 1 || !strings.HasPrefix(r.errs[0], "57014") {
					t.Fatalf("%s: want ParseComplete then 57014, got\n%s", side.name, indent(r.String()))
				}
				// The statement exists, as the server confirmed its Parse.
				c.run(pQuery("SET statement_timeout = 0"))
				if got := c.run(pQuery("SELECT count(*) FROM pg_prepared_statements WHERE name = 't1'")); got.values() != "" || len(got.rows) != 1 || got.rows[0][0] != "1" {
					t.Fatalf("%s: t1 not prepared: %s", side.name, got)
				}
			}
		})
	}
}

// I: statements the server skipped after an error change nothing txlane
// tracks, here the session's default isolation.
func TestPlanSkippedStatementsChangeNothing(t *testing.T) {
	bed := startVectorProxy(t, nil)
	conn := bed.connect(t)
	pc := newPrepConn(t, conn)
	r := pc.run(pParse("", "BEGIN"), pBind(""), pExecute(),
		pParse("", "SELECT 1/0"), pBind(""), pExecute(),
		pParse("", "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE"), pBind(""), pExecute(),
		pParse("", "SET default_transaction_isolation = 'repeatable read'"), pBind(""), pExecute(),
		pSync())
	if len(r.errs) != 1 || r.status != 'E' {
		t.Fatalf("setup: %s", r)
	}
	exec(t, conn, "ROLLBACK")
	if got := scalar(t, conn, "SHOW default_transaction_isolation"); got != "read committed" {
		t.Fatalf("server's default isolation %q", got)
	}
	l := newLanes(t, conn)
	before := bed.Server.Metrics().Routed("vector", policy.ReasonVectorReadInTx.String())
	for i := 0; i < 3; i++ {
		exec(t, conn, "BEGIN")
		l.wantLane("SELECT pg_backend_pid() FROM " + bed.table + " LIMIT 1")
		exec(t, conn, "COMMIT")
	}
	if got := bed.Server.Metrics().Routed("vector", policy.ReasonVectorReadInTx.String()) - before; got != 3 {
		t.Errorf("vector_read_in_tx counted %v times, want 3", got)
	}
	if n := bed.Server.Metrics().Routed("primary", policy.ReasonIsolationSnapshot.String()); n != 0 {
		t.Errorf("isolation_snapshot counted %v times", n)
	}
}

// J: every request is counted once, whichever way its parts went out.
func TestPlanRequestsCountedOnce(t *testing.T) {
	bed := startVectorProxy(t, nil)
	pc := newPrepConn(t, bed.connect(t))
	m := bed.Server.Metrics()
	flushed := m.Routed("primary", policy.ReasonFlushed.String())
	// postgres.js with prepare: false: Parse/Describe/Flush, then Bind/Execute/Sync.
	for i := 0; i < 4; i++ {
		pc.send(pParse("", "SELECT id FROM "+bed.table+" WHERE id = $1"), pDescribeS(""), &pgproto3.Flush{})
		readUntil(t, pc, func(m pgproto3.BackendMessage) bool { _, ok := m.(*pgproto3.RowDescription); return ok })
		r := pc.run(pBind("", "1"), pExecute(), pSync())
		if len(r.rows) != 1 {
			t.Fatalf("flushed read: %s", r)
		}
	}
	if got := m.Routed("primary", policy.ReasonFlushed.String()) - flushed; got != 4 {
		t.Fatalf("flushed requests counted %v times, want 4", got)
	}
}

// A statement parsed in one request and executed through a portal bound in
// an earlier request of the same transaction is attributed to its text.
func TestPlanPortalAcrossRequests(t *testing.T) {
	bed := startUnitProxy(t, "reject", nil)
	holder := bed.connect(t)
	exec(t, holder, "BEGIN")
	exec(t, holder, bed.insert("u1", "holder"))
	w := newPrepConn(t, bed.connect(t))
	if r := w.run(pQuery("BEGIN")); r.status != 'T' {
		t.Fatalf("BEGIN: %s", r)
	}
	r := w.run(pParse("w", bed.insert("u1", "other")), &pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "w"}, pSync())
	if len(r.errs) != 0 {
		t.Fatalf("bind: %s", r)
	}
	r = w.run(&pgproto3.Execute{Portal: "p"}, pSync())
	if len(r.errs) != 1 || !strings.HasPrefix(r.errs[0], proxy.CodeEscapedWrite) || r.status != 'E' {
		t.Fatalf("execute of a portal bound earlier: %s", r)
	}
	w.run(pQuery("ROLLBACK"))
	exec(t, holder, "ROLLBACK")
	if got := bed.count(t, "true"); got != "0" {
		t.Fatalf("%s rows", got)
	}
}

// readUntil reads messages until done says so (for answers to a Flush).
func readUntil(t *testing.T, c *prepConn, done func(pgproto3.BackendMessage) bool) {
	t.Helper()
	c.conn.Conn().SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.conn.Conn().SetReadDeadline(time.Time{})
	for {
		m, err := c.fe.Receive()
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			t.Fatalf("error: %s %s", e.Code, e.Message)
		}
		if done(m) {
			return
		}
	}
}
