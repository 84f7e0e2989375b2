package proxy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/proxy"
)

// PostgreSQL parses a prepared statement under the settings in force at its
// Parse or PREPARE: the constants of its text are fixed then. These tests
// share one backend between clients (pool_size 1) so that a statement
// another client left there, or the client's own statement prepared again,
// must give what PostgreSQL gives the client on a backend of its own.

// parseEnvCases: the same text means different things under different
// settings of X and Y.
var parseEnvCases = []struct {
	name         string
	x, y         string // SET statements of X and Y
	sql          string
	wantX, wantY string
}{
	{"TimeZone", "SET TimeZone = 'Asia/Tokyo'", "SET TimeZone = 'UTC'",
		"SELECT '2026-01-01 00:00'::timestamptz::text", "2026-01-01 00:00:00+09", "2026-01-01 00:00:00+00"},
	{"DateStyle", "SET DateStyle = 'ISO, DMY'", "SET DateStyle = 'ISO, MDY'",
		"SELECT '01/02/2026'::date::text", "2026-02-01", "2026-01-02"},
	{"transform_null_equals", "SET transform_null_equals = on", "SET transform_null_equals = off",
		"SELECT (NULL = NULL) IS TRUE", "t", "f"},
	{"standard_conforming_strings", "SET standard_conforming_strings = off", "SET standard_conforming_strings = on",
		`SELECT 'a\\b'::text`, `a\b`, `a\\b`},
}

// execEach runs each of sqls as a request of its own.
func execEach(t *testing.T, c *pgconn.PgConn, sqls ...string) {
	t.Helper()
	for _, sql := range sqls {
		exec(t, c, sql)
	}
}

func execPrepared(t *testing.T, c *pgconn.PgConn, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	r := c.ExecPrepared(ctx, name, nil, nil, nil).Read()
	if r.Err != nil || len(r.Rows) != 1 {
		t.Fatalf("execute %s: %v %q", name, r.Err, r.Rows)
	}
	return string(r.Rows[0][0])
}

func prepare(t *testing.T, c *pgconn.PgConn, name, sql string) {
	t.Helper()
	if _, err := c.Prepare(context.Background(), name, sql, nil); err != nil {
		t.Fatalf("prepare %s: %v", name, err)
	}
}

// F6 with pgconn: X and Y prepare the same name and text under different
// settings on one shared backend; each must run its own parse.
func TestParseEnvSharedNameAndText(t *testing.T) {
	p := startTxPool(t, 1)
	for _, c := range parseEnvCases {
		t.Run(c.name, func(t *testing.T) {
			x, y := p.connect(t), p.connect(t)
			exec(t, x, c.x)
			exec(t, y, c.y)
			prepare(t, x, "penv", c.sql)
			prepare(t, y, "penv", c.sql)
			if got := execPrepared(t, x, "penv"); got != c.wantX {
				t.Errorf("X after Y prepared the same text: %q, want %q", got, c.wantX)
			}
			if got := execPrepared(t, y, "penv"); got != c.wantY {
				t.Errorf("Y: %q, want %q", got, c.wantY)
			}
			if got := execPrepared(t, x, "penv"); got != c.wantX {
				t.Errorf("X again: %q, want %q", got, c.wantX)
			}
		})
	}
}

// Clients whose parse settings are equal share the statement as before:
// nothing is prepared under other settings for them.
func TestParseEnvEqualSettingsShare(t *testing.T) {
	p := startTxPool(t, 1)
	x, y := p.connect(t), p.connect(t)
	before := proxy.Reparses()
	prepare(t, x, "penv", "SELECT '01/02/2026'::date::text")
	prepare(t, y, "penv", "SELECT '01/02/2026'::date::text")
	for range 2 {
		for _, c := range []*pgconn.PgConn{x, y} {
			if got := execPrepared(t, c, "penv"); got != "2026-01-02" {
				t.Fatalf("%q, want 2026-01-02", got)
			}
		}
	}
	if n := proxy.Reparses() - before; n != 0 {
		t.Fatalf("%d statements prepared under other settings for clients with equal ones", n)
	}
}

// F6 with stock pgx: its statement cache names a statement from its text, so
// two clients with other TimeZones (startup parameters, which move with
// them) send the same name and text.
func TestParseEnvPgxStatementCache(t *testing.T) {
	p := startTxPool(t, 1)
	ctx := context.Background()
	connect := func(tz string) *pgx.Conn {
		c, err := pgx.Connect(ctx, p.DSN(t, "")+"&timezone="+tz)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(ctx) })
		return c
	}
	x, y := connect("Asia/Tokyo"), connect("UTC")
	const q = "select '2026-01-01 00:00'::timestamptz::text"
	run := func(c *pgx.Conn) string {
		var s string
		if err := c.QueryRow(ctx, q).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	for i := range 2 {
		if got := run(x); got != "2026-01-01 00:00:00+09" {
			t.Fatalf("X (Asia/Tokyo), round %d: %q", i, got)
		}
		if got := run(y); got != "2026-01-01 00:00:00+00" {
			t.Fatalf("Y (UTC), round %d: %q", i, got)
		}
	}
}

// F6 with SQL-level PREPARE of one name and text.
func TestParseEnvSharedSQLPrepare(t *testing.T) {
	p := startTxPool(t, 1)
	x, y := p.connect(t), p.connect(t)
	const prep = "PREPARE penv AS SELECT '01/02/2026'::date::text"
	execEach(t, x, "SET DateStyle = 'ISO, DMY'", prep)
	execEach(t, y, "SET DateStyle = 'ISO, MDY'", prep)
	for i := range 2 {
		if got := scalar(t, x, "EXECUTE penv"); got != "2026-02-01" {
			t.Fatalf("X, round %d: %q, want 2026-02-01 (its own parse)", i, got)
		}
		if got := scalar(t, y, "EXECUTE penv"); got != "2026-01-02" {
			t.Fatalf("Y, round %d: %q, want 2026-01-02", i, got)
		}
	}
}

// clobber makes the backend the clients share lose a's statement name:
// b prepares another statement under it and closes it (b takes the backend
// while a is idle, pool_size 1).
func clobber(t *testing.T, b *pgconn.PgConn, name string) {
	t.Helper()
	prepare(t, b, name, "SELECT 'b'")
	if got := execPrepared(t, b, name); got != "b" {
		t.Fatalf("b's own statement: %q", got)
	}
	if err := b.Deallocate(context.Background(), name); err != nil {
		t.Fatal(err)
	}
}

// F5, protocol level: the client's statement is prepared again on its
// backend after the client changed the settings it was parsed under; it
// keeps its first parse (as PostgreSQL's does), and the client's settings
// are its current ones afterwards, in and outside a transaction block.
func TestParseEnvReparseUnderOwnSettings(t *testing.T) {
	p := startTxPool(t, 1)
	a, b := p.connect(t), p.connect(t)
	exec(t, a, "SET DateStyle = 'ISO, DMY'")
	prepare(t, a, "penv", "SELECT '01/02/2026'::date::text")
	exec(t, a, "SET DateStyle = 'ISO, MDY'")
	if got := execPrepared(t, a, "penv"); got != "2026-02-01" {
		t.Fatalf("on its backend: %q", got)
	}
	check := func(when string) {
		t.Helper()
		if got := scalar(t, a, "SHOW DateStyle"); got != "ISO, MDY" {
			t.Fatalf("%s: DateStyle %q, want the client's ISO, MDY", when, got)
		}
		if got := scalar(t, a, "SELECT '01/02/2026'::date::text"); got != "2026-01-02" {
			t.Fatalf("%s: a new statement %q, want 2026-01-02", when, got)
		}
		if got := a.ParameterStatus("DateStyle"); got != "ISO, MDY" {
			t.Fatalf("%s: ParameterStatus DateStyle %q", when, got)
		}
	}

	clobber(t, b, "penv")
	before := proxy.Reparses()
	if got := execPrepared(t, a, "penv"); got != "2026-02-01" {
		t.Fatalf("prepared again: %q, want 2026-02-01 (parsed under ISO, DMY)", got)
	}
	if proxy.Reparses() == before {
		t.Fatal("the statement was not prepared again under its own settings: the test tests nothing")
	}
	check("after")

	clobber(t, b, "penv")
	exec(t, a, "BEGIN")
	if got := execPrepared(t, a, "penv"); got != "2026-02-01" {
		t.Fatalf("in a transaction block: %q", got)
	}
	check("in the block")
	exec(t, a, "COMMIT")
	check("after the block")

	clobber(t, b, "penv")
	execErr(a, "BEGIN; SELECT 1/0")
	r := a.ExecPrepared(context.Background(), "penv", nil, nil, nil).Read()
	if sqlstate(r.Err) != "25P02" {
		t.Fatalf("in a failed transaction: %v, want 25P02", r.Err)
	}
	exec(t, a, "ROLLBACK")
	if got := execPrepared(t, a, "penv"); got != "2026-02-01" {
		t.Fatalf("after the failed transaction: %q", got)
	}
	check("after the failed transaction")
}

// F5, SQL level: PREPARE replayed on another backend runs under the
// settings of the client's PREPARE, not its current ones.
func TestParseEnvSQLPrepareReplay(t *testing.T) {
	p := startTxPool(t, 1)
	a, b := p.connect(t), p.connect(t)
	execEach(t, a, "SET DateStyle = 'ISO, DMY'", "PREPARE d AS SELECT '01/02/2026'::date::text",
		"SET standard_conforming_strings = off", `PREPARE s AS SELECT 'x\\y'::text`,
		"SET standard_conforming_strings = on", "SET DateStyle = 'ISO, MDY'")
	want := func(when string) {
		t.Helper()
		if got := scalar(t, a, "EXECUTE d"); got != "2026-02-01" {
			t.Fatalf("%s: EXECUTE d %q, want 2026-02-01", when, got)
		}
		if got := scalar(t, a, "EXECUTE s"); got != `x\y` {
			t.Fatalf(`%s: EXECUTE s %q, want x\y`, when, got)
		}
		if got := scalar(t, a, "SHOW DateStyle"); got != "ISO, MDY" {
			t.Fatalf("%s: DateStyle %q", when, got)
		}
		if got := scalar(t, a, "SHOW standard_conforming_strings"); got != "on" {
			t.Fatalf("%s: standard_conforming_strings %q", when, got)
		}
	}
	want("on its backend")
	// b takes the backend: a's statements are deallocated for it.
	exec(t, b, "PREPARE d AS SELECT 'b'")
	if got := scalar(t, b, "EXECUTE d"); got != "b" {
		t.Fatalf("b: %q", got)
	}
	want("replayed")
}

// A PREPARE in the same text as the SET before it: txlane cannot tell the
// settings it ran under before it reads them back, so the client keeps its
// backend (pin parse_settings) rather than have it replayed under others.
func TestParseEnvUnknownPins(t *testing.T) {
	p := startTxPoolWait(t, 1, false)
	a, b := p.connect(t), p.connect(t)
	exec(t, a, "SET DateStyle = 'ISO, DMY'; PREPARE d AS SELECT '01/02/2026'::date::text; SET DateStyle = 'ISO, MDY'")
	if got := scalar(t, a, "EXECUTE d"); got != "2026-02-01" {
		t.Fatalf("EXECUTE d: %q", got)
	}
	if r := pinnedReasons(p); !strings.Contains(r, "parse_settings") {
		t.Fatalf("pinned %q, want parse_settings", r)
	}
	wantNotOnBackendOf(t, b, "SELECT 1", "a PREPARE under unknown settings")
	exec(t, a, "DEALLOCATE d")
	if got := scalar(t, p.connect(t), "SELECT 1"); got != "1" {
		t.Fatalf("another client after a's DEALLOCATE: %q", got)
	}
}

// The vector lane: a lane connection holds statements under names derived
// from their text and, now, their parse settings, for every client; it
// parses one it lacks under the client's current settings. Another
// client's statement of the same text parsed under other settings must not
// serve a client, and a read of a statement the client parsed under
// settings it has changed since runs on the primary, which prepares it
// under its own.
func TestParseEnvVectorLane(t *testing.T) {
	bed := startVectorProxy(t, func(o *proxy.Options) {
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 1}
		o.ReadPool.MaxConns = 1 // one lane connection: every read meets the others' statements
	})
	read := "SELECT '01/02/2026'::date::text, pg_backend_pid() FROM " + bed.table + " ORDER BY embedding <-> '[1,0,0]' LIMIT 1"
	run := func(c *pgconn.PgConn, primary string) (string, bool) {
		t.Helper()
		r := c.ExecPrepared(context.Background(), "penv", nil, nil, nil).Read()
		if r.Err != nil || len(r.Rows) != 1 {
			t.Fatalf("execute: %v %q", r.Err, r.Rows)
		}
		return string(r.Rows[0][0]), string(r.Rows[0][1]) != primary
	}
	a, b := bed.connect(t), bed.connect(t)
	pa, pb := backendPID(t, a), backendPID(t, b)
	exec(t, a, "SET DateStyle = 'ISO, DMY'")
	exec(t, b, "SET DateStyle = 'ISO, MDY'")
	prepare(t, a, "penv", read)
	if got, lane := run(a, pa); got != "2026-02-01" || !lane {
		t.Fatalf("a under ISO, DMY: %q (lane %v), want 2026-02-01 on the lane", got, lane)
	}
	prepare(t, b, "penv", read)
	if got, lane := run(b, pb); got != "2026-01-02" || !lane {
		t.Fatalf("b under ISO, MDY: %q (lane %v), want 2026-01-02 on the lane: a's parse served b", got, lane)
	}
	exec(t, a, "SET DateStyle = 'ISO, MDY'")
	if got, lane := run(a, pa); got != "2026-02-01" || lane {
		t.Fatalf("a after SET DateStyle = 'ISO, MDY': %q (lane %v), want 2026-02-01 (parsed under ISO, DMY) on the primary", got, lane)
	}
}
