package proxy_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// startSeqPool starts txlane in transaction mode with one backend, reading
// the catalog (discover) or not; more adjusts the options further.
func startSeqPool(t *testing.T, discover bool, more ...func(*proxy.Options)) *testProxy {
	t.Helper()
	return startProxy(t, func(o *proxy.Options) {
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 1}
		o.Discover = discover
		if discover {
			// The catalog is read over the vector lane.
			o.ReadPool = proxy.ReadPoolOptions{Config: pgtest.Config(t), MaxConns: 1, AcquireTimeout: 2 * time.Second}
		}
		o.DiscoverInterval = time.Hour
		for _, f := range more {
			f(o)
		}
	})
}

// sqlState runs sql and returns the SQLSTATE of its error ("" for none)
// and, without an error, the first value of its last result.
func sqlState(t *testing.T, c *pgconn.PgConn, sql string) (state, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.Exec(ctx, sql).ReadAll()
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code, pe.Message
	}
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	last := res[len(res)-1]
	if len(last.Rows) == 0 {
		return "", ""
	}
	return "", string(last.Rows[0][0])
}

// wantFresh checks that sql fails on c as on a session that never called
// nextval: PostgreSQL's own 55000 and message (asked of the server
// directly), never another client's value.
func wantFresh(t *testing.T, c *pgconn.PgConn, sql, shape string) {
	t.Helper()
	_, directMsg := sqlState(t, directConn(t), sql)
	state, got := sqlState(t, c, sql)
	if state != "55000" || got != directMsg {
		t.Errorf("%s: %s through txlane gave %s %q; want 55000 %q (another client's sequence state)", shape, sql, state, got, directMsg)
	}
}

// TestTxPoolSequenceStateStaysWithClient: over one backend, client B never
// reads the currval or lastval client A's nextval left there, whichever
// way A called it (a serial or identity column, nextval or setval in the
// text, nextval in a column default or in a view), with the catalog and
// without it. (A user function that may call nextval pins A to its backend,
// as one that may set a setting does: B never gets it.) A's own currval works while it
// finds its backend as it left it.
func TestTxPoolSequenceStateStaysWithClient(t *testing.T) {
	s := uniqueName("seqst")
	setup := []string{
		"CREATE SEQUENCE " + s + "_s",
		"CREATE TABLE " + s + "_serial (id serial, v int)",
		"CREATE TABLE " + s + "_ident (id int GENERATED ALWAYS AS IDENTITY, v int)",
		"CREATE VIEW " + s + "_v AS SELECT nextval('" + s + "_s') AS n",
		"CREATE TABLE " + s + "_def (id bigint DEFAULT nextval('" + s + "_s'), v int)",
	}
	for _, q := range setup {
		pgtest.Exec(t, q)
	}
	t.Cleanup(func() {
		for _, q := range []string{"DROP TABLE IF EXISTS " + s + "_serial, " + s + "_ident, " + s + "_def",
			"DROP VIEW IF EXISTS " + s + "_v", "DROP SEQUENCE IF EXISTS " + s + "_s"} {
			pgtest.Exec(t, q)
		}
	})
	shapes := []struct{ name, write, seq string }{
		{"serial column", "INSERT INTO " + s + "_serial (v) VALUES (1)", s + "_serial_id_seq"},
		{"identity column", "INSERT INTO " + s + "_ident (v) VALUES (1)", s + "_ident_id_seq"},
		{"explicit nextval", "SELECT nextval('" + s + "_s')", s + "_s"},
		{"setval", "SELECT setval('" + s + "_s', 4242)", s + "_s"},
		{"nextval in a view", "SELECT n FROM " + s + "_v", s + "_s"},
		{"nextval in a column default", "INSERT INTO " + s + "_def (v) VALUES (1)", s + "_s"},
		{"in a transaction block", "BEGIN; INSERT INTO " + s + "_serial (v) VALUES (1); COMMIT", s + "_serial_id_seq"},
	}
	for _, discover := range []bool{true, false} {
		p := startSeqPool(t, discover)
		for _, sh := range shapes {
			name := sh.name
			if !discover {
				name += " (no catalog)"
			}
			a, b := p.connect(t), p.connect(t)
			exec(t, a, sh.write)
			// A's own value on the backend it left.
			if state, v := sqlState(t, a, "SELECT currval('"+sh.seq+"') IS NOT NULL"); state != "" || v != "t" {
				t.Errorf("%s: A's own currval after its write: %s %q", name, state, v)
			}
			wantFresh(t, b, "SELECT currval('"+sh.seq+"')", name)
			exec(t, a, sh.write)
			wantFresh(t, b, "SELECT lastval()", name)
			// A finds its backend reset by B's arrival: 55000 too, honest.
			wantFresh(t, a, "SELECT currval('"+sh.seq+"')", name+", A after B")
		}
	}
}

// TestTxPoolSequenceDiscardCost: DISCARD SEQUENCES goes only to a backend
// that passes from a client whose statements may have set its sequence
// state to another client; clients that only read send none. It joins the
// query that moves B's settings when there is one, and is written ahead of
// B's request otherwise (also when B's first request is extended), or,
// under a statement_timeout another client left, sent and awaited.
func TestTxPoolSequenceDiscardCost(t *testing.T) {
	tbl := uniqueName("seqcost")
	pgtest.Exec(t, "CREATE TABLE "+tbl+" (id serial, v int); CREATE TABLE "+tbl+"_plain (v int)")
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+tbl+", "+tbl+"_plain") })
	p := startSeqPool(t, true)
	a, b := p.connect(t), p.connect(t)
	ctx := context.Background()

	before := proxy.SeqDiscards()
	for range 5 {
		exec(t, a, "SELECT 1")
		exec(t, b, "SELECT count(*) FROM "+tbl)
		exec(t, a, "UPDATE "+tbl+"_plain SET v = 1 WHERE false")
		exec(t, b, "INSERT INTO "+tbl+"_plain VALUES (1)")
	}
	if n := proxy.SeqDiscards() - before; n != 0 {
		t.Errorf("%d DISCARD SEQUENCES among clients that never called nextval", n)
	}
	insert := "INSERT INTO " + tbl + " (v) VALUES (1)"
	cases := []struct {
		name   string
		bSetup string // B's own state, set before A writes
		aSetup string
	}{
		{"written ahead", "", ""},
		{"joined to moving B's settings", "SET work_mem = '8MB'", ""},
		{"under another client's statement_timeout", "SET statement_timeout = '30s'", "SET statement_timeout = '30s'"},
	}
	for _, tc := range cases {
		a, b := p.connect(t), p.connect(t)
		if tc.bSetup != "" {
			exec(t, b, tc.bSetup)
		}
		if tc.aSetup != "" {
			exec(t, a, tc.aSetup)
		}
		exec(t, a, insert)
		before := proxy.SeqDiscards()
		// B's first request after A's write is extended: the discard
		// goes ahead of its Parse.
		_, err := b.ExecParams(ctx, "SELECT currval('"+tbl+"_id_seq')", nil, nil, nil, nil).Close()
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "55000" {
			t.Errorf("%s: B's currval after A's insert: %v; want 55000", tc.name, err)
		}
		if n := proxy.SeqDiscards() - before; n != 1 {
			t.Errorf("%s: %d DISCARD SEQUENCES; want 1", tc.name, n)
		}
		before = proxy.SeqDiscards()
		exec(t, b, "SELECT 1")
		exec(t, a, "SELECT 1")
		if n := proxy.SeqDiscards() - before; n != 0 {
			t.Errorf("%s: %d more DISCARD SEQUENCES once the backend was clean", tc.name, n)
		}
		if state, v := sqlState(t, b, "SHOW work_mem"); tc.bSetup == "SET work_mem = '8MB'" && (state != "" || v != "8MB") {
			t.Errorf("%s: B's work_mem %s %q after the joined discard", tc.name, state, v)
		}
	}
}

// TestTxPoolClientDiscardSequences: a client's own DISCARD SEQUENCES and
// DISCARD ALL still reset its sequence state, as on PostgreSQL, and the
// pool carries on.
func TestTxPoolClientDiscardSequences(t *testing.T) {
	seq := uniqueName("seqdisc")
	pgtest.Exec(t, "CREATE SEQUENCE "+seq)
	t.Cleanup(func() { pgtest.Exec(t, "DROP SEQUENCE IF EXISTS "+seq) })
	p := startSeqPool(t, true)
	a, b := p.connect(t), p.connect(t)
	for _, discard := range []string{"DISCARD SEQUENCES", "DISCARD ALL"} {
		v := scalar(t, a, "SELECT nextval('"+seq+"')")
		if got := scalar(t, a, "SELECT currval('"+seq+"')"); got != v {
			t.Errorf("currval %s after nextval %s", got, v)
		}
		exec(t, a, discard)
		wantFresh(t, a, "SELECT currval('"+seq+"')", discard)
		wantFresh(t, a, "SELECT lastval()", discard)
		if got := scalar(t, b, "SELECT 41 + 1"); got != "42" {
			t.Errorf("after %s: B got %s", discard, got)
		}
	}
	// In a transaction block, as PostgreSQL answers it.
	exec(t, a, "SELECT nextval('"+seq+"')")
	res := exec(t, a, "BEGIN; DISCARD SEQUENCES; SELECT 1; COMMIT")
	if len(res) != 4 {
		t.Errorf("DISCARD SEQUENCES in a block: %d results", len(res))
	}
	wantFresh(t, a, "SELECT currval('"+seq+"')", "DISCARD SEQUENCES in a block")
	if state, _ := sqlState(t, a, "BEGIN; DISCARD ALL"); state != "25001" {
		t.Errorf("DISCARD ALL in a block: %q; want 25001", state)
	}
	exec(t, a, "ROLLBACK")
	if !strings.HasPrefix(scalar(t, a, "SELECT 'ok'"), "ok") {
		t.Error("client unusable after DISCARD ALL refused")
	}
}
