package proxy_test

// Function bodies stored as text (PL/pgSQL, LANGUAGE sql with a string
// body) are read by the catalog (router.ReadFunctionBody): what they call
// counts as in the text, a harmless body costs nothing, and a body txlane
// cannot read (dynamic SQL) counts, whatever its volatility, as code that
// may read any table and change the session.

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/policy"
)

// bodyFunctions are created by txlane_app in builtinDB.
const bodyFunctions = `
CREATE FUNCTION pl_double(x int) RETURNS int LANGUAGE plpgsql STABLE AS $f$BEGIN RETURN x * 2; END$f$;
CREATE FUNCTION pl_double_imm(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $f$DECLARE y int := x; BEGIN IF y > 0 THEN y := y * 2; END IF; RETURN y; END$f$;
CREATE FUNCTION sql_double(x int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 2';
CREATE FUNCTION pl_setter(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $f$BEGIN PERFORM set_config('app.h', 'pl', false); RETURN x; END$f$;
CREATE FUNCTION pl_locker(x int) RETURNS int LANGUAGE plpgsql STABLE AS $f$BEGIN PERFORM pg_advisory_lock(x); RETURN x; END$f$;
CREATE FUNCTION pl_view(x int) RETURNS int LANGUAGE plpgsql STABLE AS $f$DECLARE s text; BEGIN SELECT v.s INTO s FROM v_set v; RETURN x; END$f$;
CREATE FUNCTION sql_next(x int) RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT nextval(''s'')';
CREATE FUNCTION pl_exec(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $f$BEGIN EXECUTE format('SELECT %s', x); RETURN x; END$f$;
`

// TestFunctionBodiesExplain: with the catalog of a real database, a
// PL/pgSQL or SQL string body is judged by what it calls and reads.
func TestFunctionBodiesExplain(t *testing.T) {
	dsn := builtinDB(t, bodyFunctions)
	const setter = policy.FlagWritingFunction | policy.FlagMayChangeSession
	const unknown = policy.FlagReadsUnknown | policy.FlagMayChangeSession | policy.FlagWritingFunction |
		policy.FlagWritesUnknown | policy.FlagUnproven
	for _, c := range []struct {
		sql       string
		want, not policy.Flags
		names     string
	}{
		{"SELECT pl_double(id) FROM items", 0, unknown, ""},
		{"SELECT pl_double_imm(id) FROM items", 0, unknown, ""},
		{"SELECT sql_double(id) FROM items", 0, unknown, ""},
		{"SELECT pl_setter(id) FROM items", setter, 0, "set_config"},
		{"SELECT pl_locker(id) FROM items", policy.FlagWritingFunction, 0, "pg_advisory_lock"},
		{"SELECT pl_view(id) FROM items", setter, 0, "v_set"},
		{"SELECT sql_next(id) FROM items", policy.FlagWritingFunction, 0, "nextval"},
		{"SELECT pl_exec(id) FROM items", policy.FlagReadsUnknown, 0, "body txlane cannot read"},
	} {
		st := classifyIn(t, dsn, c.sql)
		if st.Flags&c.want != c.want || st.Flags&c.not != 0 {
			t.Errorf("%s: flags %v, want %v and none of %v (hidden %q)", c.sql, st.Flags, c.want, c.not, st.Hidden)
		}
		if c.names != "" && !strings.Contains(strings.Join(st.Hidden, "; "), c.names) {
			t.Errorf("%s: hidden %q, want it to name %s", c.sql, st.Hidden, c.names)
		}
	}
}

// TestFunctionBodiesLane: inside a READ COMMITTED transaction that wrote a
// table, a read of a vector table calling a harmless PL/pgSQL function goes
// to the vector lane (its body reads no table the transaction wrote); one
// whose body txlane cannot read, IMMUTABLE or not, may read what the
// transaction wrote and stays on the primary, as does one whose body sets a
// setting.
func TestFunctionBodiesLane(t *testing.T) {
	pool := isoPool(t, pgtest.AppRole)
	dsn := builtinDB(t, bodyFunctions)
	p := startBuiltinLane(t, dsn, pool)
	c := connectDSN(t, p.DSN(t, pgtest.AppRole))
	l := newLanes(t, c)
	exec(t, c, "BEGIN")
	exec(t, c, "INSERT INTO t_serial(v) VALUES ('x')")
	l.wantLane("SELECT pg_backend_pid(), pl_double(id) FROM items LIMIT 1")
	l.wantLane("SELECT pg_backend_pid(), sql_double(id) FROM items LIMIT 1")
	l.wantPrimary("SELECT pg_backend_pid(), pl_exec(id) FROM items LIMIT 1")
	l.wantPrimary("SELECT pg_backend_pid(), pl_setter(id) FROM items LIMIT 1")
	exec(t, c, "ROLLBACK; RESET ALL")
}

// TestFunctionBodiesTxPoolNextClientClean: in transaction mode with one
// pooled backend, an IMMUTABLE PL/pgSQL function that sets a custom
// setting, and an IMMUTABLE one whose body txlane cannot read (EXECUTE),
// pin their client: the other client does not get the backend with the
// setting (it waits, query_wait_timeout), and once the client has reset
// it the next client finds nothing. Before, such functions were trusted
// and the next client saw the setting.
func TestFunctionBodiesTxPoolNextClientClean(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"perform", "BEGIN PERFORM set_config('app.body', 'leak', false); RETURN 1; END"},
		{"execute", "BEGIN EXECUTE 'SELECT set_config(''app.body'', ''leak'', false)'; RETURN 1; END"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fn := uniqueName("body_set_" + tc.name)
			pgtest.Exec(t, "CREATE FUNCTION "+fn+"() RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$"+tc.body+"$$")
			t.Cleanup(func() { pgtest.Exec(t, "DROP FUNCTION IF EXISTS "+fn+"()") })
			p := startTxPoolWait(t, 1, true)
			a, b := p.connect(t), p.connect(t)
			exec(t, a, "SELECT "+fn+"()")
			wantNotOnBackendOf(t, b, "SELECT current_setting('app.body', true)", "an IMMUTABLE function's set_config")
			if got := pinnedReasons(p); !strings.Contains(got, "set_config") {
				t.Fatalf("SHOW CLIENTS pinned %q, want set_config", got)
			}
			exec(t, a, "RESET ALL")
			if got := scalar(t, p.connect(t), "SELECT coalesce(current_setting('app.body', true), '')"); got != "" {
				t.Fatalf("the next client sees app.body = %q", got)
			}
		})
	}
}

// TestFunctionBodiesPinChecks: in transaction mode, a STABLE PL/pgSQL
// function whose body only computes costs no pin check per call (before,
// every call did, as code that may change the session); one whose body
// txlane cannot read still costs one per transaction.
func TestFunctionBodiesPinChecks(t *testing.T) {
	const calls = 20
	for _, tc := range []struct {
		name, body string
		checks     bool
	}{
		{"harmless", "BEGIN RETURN x * 2; END", false},
		{"opaque", "BEGIN EXECUTE 'SELECT 1'; RETURN x * 2; END", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fn := uniqueName("body_pin_" + tc.name)
			pgtest.Exec(t, "CREATE FUNCTION "+fn+"(x int) RETURNS int LANGUAGE plpgsql STABLE AS $$"+tc.body+"$$")
			t.Cleanup(func() { pgtest.Exec(t, "DROP FUNCTION IF EXISTS "+fn+"(int)") })
			p := startTxPoolWait(t, 1, true)
			a := p.connect(t)
			exec(t, a, "SELECT 1") // the pooled backend's first idle is checked once
			before := p.Server.Metrics().PinChecks()
			for i := 0; i < calls; i++ {
				if got := scalar(t, a, fmt.Sprintf("SELECT %s(%d)", fn, i)); got != fmt.Sprint(2*i) {
					t.Fatalf("%s(%d) = %s", fn, i, got)
				}
			}
			n := p.Server.Metrics().PinChecks() - before
			t.Logf("%d calls of a %s STABLE PL/pgSQL function: %v pin checks", calls, tc.name, n)
			switch {
			case tc.checks && n < calls:
				t.Errorf("%v pin checks for %d calls of an opaque body, want one per call", n, calls)
			case !tc.checks && n != 0:
				t.Errorf("%v pin checks for %d calls of a harmless body, want none", n, calls)
			}
			a.Close(context.Background())
		})
	}
}
