package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// Adversarial tests of pool_mode transaction: several clients share one or
// two backends, and nothing one does may reach another.

// startTxPoolWait starts txlane in pool_mode transaction with pool_size
// size and a short query_wait_timeout, so that a client waiting for a
// pinned backend gives up soon; with catalog, the vector lane and catalog
// discovery are on (txlane's defaults), so that what functions do is seen.
func startTxPoolWait(t *testing.T, size int, catalog bool) *testProxy {
	t.Helper()
	return startProxy(t, func(o *proxy.Options) {
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: size}
		o.QueryWaitTimeout = 300 * time.Millisecond
		if catalog {
			o.ReadPool = proxy.ReadPoolOptions{Config: pgtest.Config(t), MaxConns: 1, AcquireTimeout: time.Second}
			o.Discover = true
		}
	})
}

// wantNotOnBackendOf: b's statement must not run on a's backend, which a
// holds (pinned): with pool_size 1, b waits and gets query_wait_timeout.
func wantNotOnBackendOf(t *testing.T, b *pgconn.PgConn, sql, what string) {
	t.Helper()
	err := execErr(b, sql)
	if err == nil {
		t.Fatalf("b ran %q on a's backend: %s did not pin a", sql, what)
	}
	if !strings.Contains(err.Error(), "query_wait_timeout") {
		t.Fatalf("b: %v, want query_wait_timeout (a pinned by %s)", err, what)
	}
}

// pinnedReasons joins SHOW CLIENTS' pinned column of every client.
func pinnedReasons(p *testProxy) string {
	var out []string
	for _, ci := range p.Server.ClientList() {
		out = append(out, ci.Pinned)
	}
	return strings.Join(out, ";")
}

// wantOwnValue: sql, run by b, answers want, or b waits for a backend and
// gets query_wait_timeout (the backend it would share is pinned); never
// another client's value.
func wantOwnValue(t *testing.T, b *pgconn.PgConn, sql, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	res, err := b.Exec(ctx, sql).ReadAll()
	if err != nil {
		if !strings.Contains(err.Error(), "query_wait_timeout") {
			t.Fatalf("%q: %v", sql, err)
		}
		return
	}
	if got := string(res[len(res)-1].Rows[0][0]); got != want {
		t.Fatalf("%q answers %q, want %q: another client's state reached this one", sql, got, want)
	}
}

// Every object a client makes in pg_temp lives in its backend: functions,
// types, operators… pin it as temporary tables do.
func TestTxPoolBreakTempObjects(t *testing.T) {
	cases := []struct{ name, make, use string }{
		{"function", "CREATE FUNCTION pg_temp.tmpf() RETURNS text LANGUAGE sql AS $$SELECT 'mine'$$", "SELECT pg_temp.tmpf()"},
		{"enum", "CREATE TYPE pg_temp.tmpe AS ENUM ('mine')", "SELECT 'mine'::pg_temp.tmpe"},
		{"domain", "CREATE DOMAIN pg_temp.tmpd AS text CHECK (VALUE = 'mine')", "SELECT 'mine'::pg_temp.tmpd"},
		{"operator", "CREATE OPERATOR pg_temp.=== (FUNCTION = texteq, LEFTARG = text, RIGHTARG = text)", "SELECT 'mine' OPERATOR(pg_temp.===) 'mine'"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := startTxPoolWait(t, 1, false)
			a, b := p.connect(t), p.connect(t)
			exec(t, a, tc.make)
			wantNotOnBackendOf(t, b, tc.use, "a temporary "+tc.name)
			exec(t, a, tc.use)
			if got := pinnedReasons(p); !strings.Contains(got, "temp_table") {
				t.Fatalf("SHOW CLIENTS pinned %q, want temp_table", got)
			}
		})
	}
}

// A function that is not volatile may still call set_config or take a
// session advisory lock (PostgreSQL allows both in STABLE functions): what
// it did must stay with its client.
func TestTxPoolBreakStableFunctionSession(t *testing.T) {
	setFn, lockFn := uniqueName("brk_setpath"), uniqueName("brk_lock")
	pgtest.Exec(t, "CREATE FUNCTION "+setFn+"() RETURNS int LANGUAGE plpgsql STABLE AS $$BEGIN PERFORM set_config('search_path', 'pg_catalog', false); RETURN 1; END$$; "+
		"CREATE FUNCTION "+lockFn+"() RETURNS int LANGUAGE plpgsql STABLE AS $$BEGIN PERFORM pg_advisory_lock(777001); RETURN 1; END$$")
	t.Cleanup(func() { pgtest.Exec(t, "DROP FUNCTION IF EXISTS "+setFn+"(), "+lockFn+"()") })
	t.Run("set_config", func(t *testing.T) {
		p := startTxPoolWait(t, 1, true)
		a, b := p.connect(t), p.connect(t)
		exec(t, a, "SELECT "+setFn+"()")
		wantOwnValue(t, b, "SELECT current_setting('search_path')", `"$user", public`)
		if got := scalar(t, a, "SELECT current_setting('search_path')"); got != "pg_catalog" {
			t.Errorf("a's search_path is %q, want pg_catalog (what its function set)", got)
		}
	})
	t.Run("advisory_lock", func(t *testing.T) {
		p := startTxPoolWait(t, 1, true)
		a, b := p.connect(t), p.connect(t)
		exec(t, a, "SELECT "+lockFn+"()")
		wantNotOnBackendOf(t, b, "SELECT pg_advisory_unlock(777001)", "a session advisory lock taken in a STABLE function")
		if got := scalar(t, a, "SELECT pg_advisory_unlock(777001)"); got != "t" {
			t.Errorf("a does not hold its advisory lock any more")
		}
	})
}

// What the classifier cannot see: any user function when there is no
// catalog (policy.discover_vector_tables off, or no vector lane) looks like
// a plain read; what it does to the session is never asked of the server
// (a known hole). An IMMUTABLE PL/pgSQL function is no longer one: the
// catalog reads its body (router.ReadFunctionBody).
func TestTxPoolBreakInvisibleFunctionSession(t *testing.T) {
	for _, tc := range []struct {
		name, vol string
		catalog   bool
	}{{"immutable", "IMMUTABLE", true}, {"no_catalog", "VOLATILE", false}} {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.catalog {
				t.Skip("known limit (README: What the pin check does not see): without a catalog mayPin does not look into any function; a pin check after every transaction that runs such code would catch this but costs about 4 ms of server time each (tps fell about tenfold in pgbench)")
			}
			fn := uniqueName("brk_setpath_" + tc.name)
			pgtest.Exec(t, "CREATE FUNCTION "+fn+"() RETURNS int LANGUAGE plpgsql "+tc.vol+" AS $$BEGIN PERFORM set_config('search_path', 'pg_catalog', false); RETURN 1; END$$")
			t.Cleanup(func() { pgtest.Exec(t, "DROP FUNCTION IF EXISTS "+fn+"()") })
			p := startTxPoolWait(t, 1, tc.catalog)
			a, b := p.connect(t), p.connect(t)
			exec(t, a, "SELECT "+fn+"()")
			// A set_config txlane sees in a body but whose setting it
			// cannot name from the call pins a (set_config) until RESET ALL.
			wantNotOnBackendOf(t, b, "SELECT current_setting('search_path')", "an IMMUTABLE function's set_config")
			exec(t, a, "RESET ALL")
			if got := scalar(t, p.connect(t), "SELECT current_setting('search_path')"); got != `"$user", public` {
				t.Errorf("the next client's search_path is %q: a's function's setting reached it", got)
			}
		})
	}
}

func TestTxPoolBreakRoleAfterSessionAuthorization(t *testing.T) {
	p := startTxPool(t, 1)
	a, b := p.connect(t), p.connect(t)
	role := pgtest.AppRole
	exec(t, a, "SET SESSION AUTHORIZATION "+role+"; SET ROLE "+role)
	exec(t, b, "SET ROLE "+role)
	for i := 0; i < 3; i++ {
		if got := scalar(t, b, "SELECT current_user"); got != role {
			t.Fatalf("b runs as %s after SET ROLE %s", got, role)
		}
		if got := scalar(t, a, "SELECT session_user || '/' || current_user"); got != role+"/"+role {
			t.Fatalf("a runs as %s", got)
		}
	}
}

// svIdle counts the backends idle in transaction-mode pools.
func svIdle(p *testProxy) int {
	n := 0
	for _, pi := range p.Server.Pools() {
		n += pi.SvIdle
	}
	return n
}

// startTxPoolEscape starts an escape bed (escape_shapes_test.go) in
// pool_mode transaction with pool_size size and escape action.
func startTxPoolEscape(t *testing.T, size int, action string) *escapeBed {
	t.Helper()
	return startEscapeBed(t, func(o *proxy.Options) {
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: size}
		o.QueryWaitTimeout = time.Second
		o.Rules.Escape = action
	})
}

// A client that holds no backend opens a transaction carrying a unit in
// one request (BEGIN and the write together): the unit is held before the
// client has a backend. Another client's write of that unit must be refused
// (reject) or run inside that transaction (reroute), never reach anything
// else.
func TestTxPoolBreakUnitHeldBeforeAttach(t *testing.T) {
	for _, action := range []string{"reject", "reroute"} {
		t.Run(action, func(t *testing.T) {
			b := startTxPoolEscape(t, 2, action)
			h, other := b.connect(t), b.connect(t)
			// Both detached: each is idle with nothing pinning it.
			waitFor(t, func() bool { return svIdle(b.testProxy) == 2 }, "both backends idle in the pool")
			exec(t, h, "BEGIN; "+b.ins("u1", "holder")+" /*unit='u1'*/")
			if len(b.Units()) != 1 {
				t.Fatalf("holder does not hold u1: %+v", b.Units())
			}
			err := execErr(other, b.ins("u1", "other")+" /*unit='u1'*/")
			if action == "reject" {
				b.wantRejected(t, "write of u1 while held", err)
				exec(t, h, "ROLLBACK")
				return
			}
			if err != nil {
				t.Fatalf("rerouted write: %v", err)
			}
			exec(t, h, "ROLLBACK")
			if n := b.count(t, "unit = 'u1'"); n != "0" {
				t.Fatalf("%s row(s) of u1 survived the holder's rollback: the rerouted write ran outside its transaction", n)
			}
		})
	}
}

// A write whose trigger changes the session (here a set_config) is not
// rerouted into the holder's transaction, where the change would be the
// holder's: it is refused (25L01), and neither the holder's session nor
// the next client's on the backend has the trigger's setting.
func TestTxPoolBreakReroutedWriteChangesSession(t *testing.T) {
	b := startTxPoolEscape(t, 1, "reroute")
	// Only the rerouted write touches this table: the holder's own
	// statements give no reason to ask the server about its session.
	tbl := uniqueName("brk_trg")
	pgtest.Exec(t, "CREATE TABLE "+tbl+" (unit text); GRANT ALL ON "+tbl+" TO PUBLIC; "+
		"CREATE FUNCTION "+tbl+"() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN PERFORM set_config('search_path', 'pg_catalog, public', false); RETURN NEW; END$$; "+
		"CREATE TRIGGER "+tbl+" BEFORE INSERT ON "+tbl+" FOR EACH ROW EXECUTE FUNCTION "+tbl+"()")
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+tbl+"; DROP FUNCTION IF EXISTS "+tbl+"()") })
	h := b.hold(t)
	other, third := b.connect(t), b.connect(t)
	wantCodeBar(t, execErr(other, "INSERT INTO "+tbl+" VALUES ('u1') /*unit='u1'*/"), "")
	exec(t, h, "COMMIT")
	wantOwnValue(t, third, "SELECT current_setting('search_path')", `"$user", public`)
	if got := scalar(t, h, "SELECT current_setting('search_path')"); got != `"$user", public` {
		t.Errorf("the holder's search_path is %q after a refused write", got)
	}
	if got := directScalar(t, "SELECT count(*) FROM "+tbl); got != "0" {
		t.Errorf("%s rows of the refused write committed", got)
	}
}

// A trigger (or any code the text hides) may set a custom setting under a
// name txlane never sees; the value must not reach the next client.
func TestTxPoolBreakHiddenCustomSetting(t *testing.T) {
	tbl := uniqueName("brk_custom")
	pgtest.Exec(t, "CREATE TABLE "+tbl+" (x int); GRANT ALL ON "+tbl+" TO PUBLIC; "+
		"CREATE FUNCTION "+tbl+"() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN PERFORM set_config('brk.secret', 'a-secret', false); RETURN NEW; END$$; "+
		"CREATE TRIGGER "+tbl+" BEFORE INSERT ON "+tbl+" FOR EACH ROW EXECUTE FUNCTION "+tbl+"()")
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+tbl+"; DROP FUNCTION IF EXISTS "+tbl+"()") })
	for _, catalog := range []bool{true, false} {
		t.Run(map[bool]string{true: "catalog", false: "no_catalog"}[catalog], func(t *testing.T) {
			if !catalog {
				t.Skip("known limit (README: What the pin check does not see): without a catalog the trigger is invisible (no Hidden, no flag), and a custom setting set under a name txlane never sees can be found by no pin check; see TestTxPoolBreakInvisibleFunctionSession")
			}
			p := startTxPoolWait(t, 1, catalog)
			a, b := p.connect(t), p.connect(t)
			exec(t, a, "INSERT INTO "+tbl+" VALUES (1)")
			wantOwnValue(t, b, "SELECT coalesce(current_setting('brk.secret', true), '')", "")
			if got := scalar(t, a, "SELECT current_setting('brk.secret', true)"); got != "a-secret" {
				t.Fatalf("a lost its custom setting: %q", got)
			}
		})
	}
}

// server_idle_timeout and server_lifetime close idle backends; txlane cannot
// open new ones (a login makes each), so closing them all leaves the
// clients still connected with no backend at all.
func TestTxPoolBreakReapLeavesClientsWithoutBackend(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts proxy.PoolOptions
	}{
		{"server_idle_timeout", proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 2, ServerIdleTimeout: 100 * time.Millisecond}},
		{"server_lifetime", proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 2, ServerLifetime: 100 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, func(o *proxy.Options) { o.Pool = tc.opts })
			a, b := p.connect(t), p.connect(t)
			exec(t, a, "SELECT 1")
			exec(t, b, "SELECT 1")
			time.Sleep(2500 * time.Millisecond) // the reaper runs once a second
			for _, c := range []*pgconn.PgConn{a, b} {
				if err := execErr(c, "SELECT 1"); err != nil {
					t.Fatalf("a connected client after %s: %v", tc.name, err)
				}
			}
		})
	}
	// Backends beyond the clients' number still close.
	p := startProxy(t, func(o *proxy.Options) {
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 3, ServerIdleTimeout: 100 * time.Millisecond}
	})
	app := uniqueName("brk_reap")
	var conns []*pgconn.PgConn
	for i := 0; i < 3; i++ {
		c, err := pgconn.Connect(context.Background(), p.DSN(t, "")+"&application_name="+app)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	if got := backendCount(t, app); got != "3" {
		t.Fatalf("%s backends for 3 logins", got)
	}
	conns[1].Close(context.Background())
	conns[2].Close(context.Background())
	waitFor(t, func() bool { return backendCount(t, app) == "1" }, "idle backends beyond the one client to close")
	if err := execErr(conns[0], "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	conns[0].Close(context.Background())
}

// A cancel forwarded while the backend it went to is being given back
// (the client already got its error and sent the next request) must not
// leave the client without a cancel target: its next statement is
// cancellable too.
func TestTxPoolBreakCancelAfterCancel(t *testing.T) {
	p := startTxPool(t, 2)
	ctx := context.Background()
	a, b := p.connect(t), p.connect(t)
	for i := 0; i < 2; i++ {
		go func() {
			time.Sleep(300 * time.Millisecond)
			a.CancelRequest(ctx)
		}()
		if err := execErr(a, "SELECT pg_sleep(5)"); sqlstate(err) != "57014" {
			t.Fatalf("statement %d, cancelled: %v", i, err)
		}
	}
	for _, c := range []*pgconn.PgConn{a, b} {
		if got := scalar(t, c, "SELECT 1"); got != "1" {
			t.Fatal(got)
		}
	}
}

// A client waiting for a backend is told as soon as the pool has none left
// (FATAL 08006), rather than waiting query_wait_timeout for a backend that
// cannot come.
func TestTxPoolBreakWaiterToldPoolIsEmpty(t *testing.T) {
	p := startTxPool(t, 1) // query_wait_timeout: the default 2m
	a, b := p.connect(t), p.connect(t)
	exec(t, a, "BEGIN")
	pid := scalar(t, a, "SELECT pg_backend_pid()")
	waited := make(chan error, 1)
	go func() { waited <- execErr(b, "SELECT 1") }()
	waitFor(t, func() bool {
		for _, pi := range p.Server.Pools() {
			if pi.ClWaiting == 1 {
				return true
			}
		}
		return false
	}, "b to wait for the only backend")
	exec(t, directConn(t), "SELECT pg_terminate_backend("+pid+")")
	err := <-waited
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != proxy.CodeConnectionFailure {
		t.Fatalf("b, waiting for a pool that lost its last backend: %v, want FATAL 08006", err)
	}
}

// A backend a cancel was forwarded to goes back to the pool once the server
// has taken the cancel (txlane cannot open another in its place): with
// pool_size 2, cancelled statements leave the pool as it was.
func TestTxPoolBreakCancelsKeepThePool(t *testing.T) {
	p := startTxPool(t, 2)
	ctx := context.Background()
	a, b := p.connect(t), p.connect(t)
	for i := 0; i < 2; i++ {
		go func() {
			time.Sleep(300 * time.Millisecond)
			a.CancelRequest(ctx)
		}()
		if err := execErr(a, "SELECT pg_sleep(5)"); sqlstate(err) != "57014" {
			t.Fatalf("cancelled statement %d: %v", i, err)
		}
	}
	if err := execErr(b, "SELECT 1"); err != nil {
		t.Fatalf("b, which cancelled nothing: %v", err)
	}
	if err := execErr(a, "SELECT 1"); err != nil {
		t.Fatalf("a after two cancelled statements: %v", err)
	}
}

// A client that vanishes inside a transaction, or with session state that
// pins it, leaves its backend to the pool as a fresh session (ROLLBACK,
// DISCARD ALL): txlane could not replace it, and nothing of the client
// stays on it.
func TestTxPoolBreakVanishResetsTheBackend(t *testing.T) {
	tbl := uniqueName("brk_vanish")
	pgtest.Exec(t, "CREATE TABLE "+tbl+" (x int); GRANT ALL ON "+tbl+" TO PUBLIC")
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+tbl) })
	p := startTxPool(t, 1)
	a, b := p.connect(t), p.connect(t)
	exec(t, a, "SET ROLE "+pgtest.AppRole+"; SET search_path = pg_catalog, public; CREATE TEMP TABLE vanish_tmp (x int); "+
		"LISTEN vanish_ch; PREPARE vanish_p AS SELECT 1; SELECT pg_advisory_lock(777002); DECLARE vanish_c CURSOR WITH HOLD FOR SELECT 1")
	exec(t, a, "BEGIN; INSERT INTO "+tbl+" VALUES (1)")
	pid := scalar(t, a, "SELECT pg_backend_pid()")
	vanish(t, a)
	// b runs on the backend a left, which kept nothing of a's.
	got := scalar(t, b, "SELECT pg_backend_pid() || '|' || current_user || '|' || current_setting('search_path') || '|' || "+
		"(SELECT count(*) FROM pg_listening_channels()) || '|' || (SELECT count(*) FROM pg_prepared_statements) || '|' || "+
		"(SELECT count(*) FROM pg_cursors) || '|' || (pg_my_temp_schema() = 0 OR NOT EXISTS (SELECT 1 FROM pg_class WHERE relnamespace = pg_my_temp_schema())) || '|' || "+
		"(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory') || '|' || (SELECT count(*) FROM "+tbl+")")
	if want := pid + `|postgres|"$user", public|0|0|0|true|0|0`; got != want {
		t.Fatalf("b on the backend a left: %s, want %s (pid, user, search_path, channels, prepared, cursors, no temp table, advisory locks, rows of a's rolled back insert)", got, want)
	}
}

// A custom setting set under a name txlane cannot see pins its client
// until a reset that really took effect: a DISCARD ALL refused in a failed
// transaction, or a RESET ALL rolled back, leaves the setting in place.
func TestTxPoolBreakHiddenCustomResetThatDidNotHappen(t *testing.T) {
	cases := []struct{ name, reset string }{
		{"discard all in a failed transaction", "BEGIN; SELECT 1/0"},
		{"reset all rolled back", "BEGIN; RESET ALL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := startTxPoolWait(t, 1, false)
			a, b := p.connect(t), p.connect(t)
			exec(t, a, "SELECT set_config('brk.' || 'hidden', 'a-secret', false)") // a name txlane cannot see
			execErr(a, tc.reset)
			execErr(a, "DISCARD ALL") // refused in a failed transaction
			exec(t, a, "ROLLBACK")
			if got := scalar(t, a, "SELECT current_setting('brk.hidden', true)"); got != "a-secret" {
				t.Fatalf("a's setting: %q (the reset did take effect: the test is wrong)", got)
			}
			wantOwnValue(t, b, "SELECT coalesce(current_setting('brk.hidden', true), '')", "")
		})
	}
	t.Run("reset that did happen", func(t *testing.T) {
		p := startTxPoolWait(t, 1, false)
		a, b := p.connect(t), p.connect(t)
		exec(t, a, "SELECT set_config('brk.' || 'hidden', 'a-secret', false)") // a name txlane cannot see
		exec(t, a, "RESET ALL")
		// a is pooled again: b runs on the backend.
		if got := scalar(t, b, "SELECT coalesce(current_setting('brk.hidden', true), '')"); got != "" {
			t.Fatalf("b reads %q", got)
		}
	})
}

// pgconn sends COPY data right behind the COPY query, without waiting for
// CopyInResponse; when the COPY fails at once, the server ignores the data
// that follows. Through a pool the data must not reach the backend once it
// serves another client, and the client that sent it must stay usable.
func TestTxPoolBreakCopyDataAfterFailedCopy(t *testing.T) {
	p := startTxPool(t, 1)
	a, b := p.connect(t), p.connect(t)
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		if _, err := a.CopyFrom(ctx, strings.NewReader(strings.Repeat("1\n", 1000)), "COPY brk_no_such_table FROM STDIN"); sqlstate(err) != "42P01" {
			t.Fatalf("round %d: COPY into a missing table: %v", i, err)
		}
		for _, c := range []*pgconn.PgConn{a, b} {
			if got := scalar(t, c, "SELECT 1"); got != "1" {
				t.Fatal(got)
			}
		}
	}
}

// preparedElsewhere starts a transaction pool of two backends and two
// clients: a prepares name (SELECT 40 + $1::int) on one backend, and b holds
// that backend in an open transaction, so that a's next request runs on the
// other, which lacks the statement. It skips the test when the pool hands
// b the other backend.
func preparedElsewhere(t *testing.T, name string) (a, b *pgconn.PgConn) {
	t.Helper()
	p := startTxPool(t, 2)
	a, b = p.connect(t), p.connect(t)
	if _, err := a.Prepare(context.Background(), name, "SELECT 40 + $1::int", nil); err != nil {
		t.Fatal(err)
	}
	pa := scalar(t, a, "SELECT pg_backend_pid()")
	// The pool hands out the backend put back last (a's) once both are
	// idle: a pooled backend's first idle runs a pin check, which would
	// keep a's busy a moment longer.
	waitFor(t, func() bool {
		idle := 0
		for _, ps := range p.Server.Pools() {
			idle += ps.SvIdle
		}
		return idle == 2
	}, "both backends idle in the pool")
	exec(t, b, "BEGIN")
	if pb := scalar(t, b, "SELECT pg_backend_pid()"); pb != pa {
		exec(t, b, "ROLLBACK")
		t.Skipf("b got backend %s, not a's %s: the pool's order changed", pb, pa)
	}
	return a, b
}

// A client's prepared statement that a backend lacks is prepared there
// again, hidden, before it runs. When that Parse fails (here: the client's
// transaction has failed, so the server refuses it), the backend still
// lacks the statement, and the client's next use must prepare it again.
func TestTxPoolBreakInjectedParseThatFailed(t *testing.T) {
	ctx := context.Background()
	a, b := preparedElsewhere(t, "brk_s")
	execErr(a, "BEGIN; SELECT 1/0")
	if r := a.ExecPrepared(ctx, "brk_s", [][]byte{[]byte("2")}, nil, nil).Read(); sqlstate(r.Err) != "25P02" {
		t.Fatalf("in a failed transaction: %v, want 25P02", r.Err)
	}
	exec(t, a, "ROLLBACK")
	r := a.ExecPrepared(ctx, "brk_s", [][]byte{[]byte("2")}, nil, nil).Read()
	if r.Err != nil || len(r.Rows) != 1 || string(r.Rows[0][0]) != "42" {
		t.Fatalf("after the failed transaction: %v %q", r.Err, r.Rows)
	}
	exec(t, b, "ROLLBACK")
}

// SQL EXECUTE of a protocol-level statement the backend lacks: txlane
// prepares it first, hidden, before the Query. When that Parse fails, the
// server ignores everything up to a Sync, the Query included: the client
// must still get its answer (here the failed transaction's 25P02).
func TestTxPoolBreakInjectedParseBeforeQuery(t *testing.T) {
	a, b := preparedElsewhere(t, "brk_q")
	execErr(a, "BEGIN; SELECT 1/0")
	if err := execErr(a, "EXECUTE brk_q(2)"); sqlstate(err) != "25P02" {
		t.Fatalf("EXECUTE in a failed transaction: %v, want 25P02", err)
	}
	exec(t, a, "ROLLBACK")
	if got := scalar(t, a, "EXECUTE brk_q(2)"); got != "42" {
		t.Fatalf("EXECUTE after the failed transaction: %q", got)
	}
	exec(t, b, "ROLLBACK")
}

// A client that vanishes with a request in flight (a statement running, a
// COPY FROM STDIN half sent, an extended request sent up to a Flush) leaves
// its backend to the pool once that request is ended (cancel, CopyFail,
// Sync) and the session reset: the next client runs on it, and gets its own
// answers only.
func TestTxPoolBreakVanishMidRequest(t *testing.T) {
	tbl := uniqueName("brk_midreq")
	pgtest.Exec(t, "CREATE TABLE "+tbl+" (x int); GRANT ALL ON "+tbl+" TO PUBLIC")
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+tbl) })
	cases := []struct {
		name string
		send func(t *testing.T, c net.Conn)
	}{
		{"statement", func(t *testing.T, c net.Conn) {
			writeMsgs(t, c, &pgproto3.Query{String: "SELECT pg_sleep(30)"})
		}},
		{"copy in", func(t *testing.T, c net.Conn) {
			writeMsgs(t, c, &pgproto3.Query{String: "COPY " + tbl + " FROM STDIN"}, &pgproto3.CopyData{Data: []byte("1\n")})
		}},
		{"extended copy in", func(t *testing.T, c net.Conn) {
			writeMsgs(t, c, &pgproto3.Parse{Query: "COPY " + tbl + " FROM STDIN"}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.Sync{}, &pgproto3.CopyData{Data: []byte("2\n")})
		}},
		{"flushed part", func(t *testing.T, c net.Conn) {
			writeMsgs(t, c, &pgproto3.Parse{Query: "INSERT INTO " + tbl + " VALUES (3)"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
		}},
		{"in a transaction, mid statement", func(t *testing.T, c net.Conn) {
			writeMsgs(t, c, &pgproto3.Query{String: "BEGIN; INSERT INTO " + tbl + " VALUES (4); SELECT pg_sleep(30)"})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := startTxPool(t, 1)
			a, b := p.connect(t), p.connect(t)
			pid := scalar(t, a, "SELECT pg_backend_pid()")
			hj, err := a.Hijack()
			if err != nil {
				t.Fatal(err)
			}
			tc.send(t, hj.Conn)
			time.Sleep(200 * time.Millisecond) // the request reaches the server
			hj.Conn.Close()
			for i := 0; i < 3; i++ {
				if got := scalar(t, b, "SELECT pg_backend_pid() || '/' || (SELECT count(*) FROM "+tbl+")"); got != pid+"/0" {
					t.Fatalf("b: %s, want %s/0 (the backend a left, none of a's rows)", got, pid)
				}
			}
		})
	}
}

func writeMsgs(t *testing.T, c net.Conn, msgs ...pgproto3.FrontendMessage) {
	t.Helper()
	var buf []byte
	for _, m := range msgs {
		var err error
		if buf, err = m.Encode(buf); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Write(buf); err != nil {
		t.Fatal(err)
	}
}

// One backend for two clients: a's statements are cancelled at random
// moments (while they run, or just as they end) while b runs short
// statements on the same backend in between; a cancel is forwarded only
// while a's statement runs, and the backend goes to b only once the server
// has taken it: b's statements are never cancelled. (It fails when detach
// leaves a stale cancel target.)
func TestTxPoolBreakCancelUnderLoad(t *testing.T) {
	p := startTxPool(t, 1)
	ctx := context.Background()
	a, b := p.connect(t), p.connect(t)
	stop := make(chan struct{})
	bDone := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				bDone <- nil
				return
			default:
			}
			if err := b.Exec(ctx, "SELECT pg_sleep(0.001)").Close(); err != nil {
				bDone <- err
				return
			}
		}
	}()
	for i := 0; i < 20; i++ {
		go func() {
			time.Sleep(time.Duration(5+i%7) * time.Millisecond)
			a.CancelRequest(ctx)
		}()
		// Cancelled, or finished before the cancel came: both are a's.
		if err := a.Exec(ctx, "SELECT pg_sleep(0.02)").Close(); err != nil && sqlstate(err) != "57014" {
			t.Fatalf("a: %v", err)
		}
	}
	close(stop)
	if err := <-bDone; err != nil {
		t.Fatalf("b, which cancelled nothing: %v", err)
	}
	if got := scalar(t, a, "SELECT 1"); got != "1" {
		t.Fatal(got)
	}
}

// A superuser client that changed a superuser-only setting and then took a
// less privileged role: moving its settings to another backend must set
// the setting while still privileged, and the role last.
func TestTxPoolBreakPrivilegedSettingUnderRole(t *testing.T) {
	p := startTxPool(t, 1)
	a, b := p.connect(t), p.connect(t)
	exec(t, a, "SET log_min_duration_statement = 4321; SET ROLE "+pgtest.AppRole)
	for i := 0; i < 3; i++ {
		if got := scalar(t, b, "SELECT current_setting('log_min_duration_statement') || '/' || current_user"); got != "-1/postgres" {
			t.Fatalf("b: %s", got)
		}
		if got := scalar(t, a, "SELECT current_setting('log_min_duration_statement') || '/' || current_user"); got != "4321ms/"+pgtest.AppRole {
			t.Fatalf("a: %s", got)
		}
	}
}

// When the server refuses to give a client its settings on another backend
// (here: the role it had set was revoked meanwhile), the client gets txlane's
// FATAL saying so, and the backend, unchanged by the refused statement, stays
// in the pool for the others.
func TestTxPoolBreakSettingsRefused(t *testing.T) {
	role := uniqueName("brk_role")
	pgtest.Exec(t, "CREATE ROLE "+role+"; GRANT "+role+" TO "+pgtest.AppRole)
	t.Cleanup(func() { pgtest.Exec(t, "DROP ROLE IF EXISTS "+role) })
	p := startTxPool(t, 1)
	ctx := context.Background()
	conn := func() *pgconn.PgConn {
		c, err := pgconn.Connect(ctx, p.DSN(t, pgtest.AppRole))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(ctx) })
		return c
	}
	a, b := conn(), conn()
	exec(t, a, "SET ROLE "+role)
	pid := scalar(t, b, "SELECT pg_backend_pid()") // b has the backend, role reset
	pgtest.Exec(t, "REVOKE "+role+" FROM "+pgtest.AppRole)
	err := execErr(a, "SELECT current_user")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != proxy.CodeConnectionFailure || !strings.Contains(pe.Message, "could not restore") {
		t.Fatalf("a, whose role cannot be restored: %v", err)
	}
	if got := scalar(t, b, "SELECT pg_backend_pid() || '/' || current_user"); got != pid+"/"+pgtest.AppRole {
		t.Fatalf("b: %s, want %s/%s (the same backend, still in the pool)", got, pid, pgtest.AppRole)
	}
}

// A client's own statement_timeout (or lock_timeout, or
// idle_in_transaction_session_timeout) must not cut txlane's own queries on
// its backend: the pin check, moving settings, resetting a backend.
func TestTxPoolBreakClientTimeoutsAndTxlaneQueries(t *testing.T) {
	p := startTxPoolWait(t, 1, false)
	a, b := p.connect(t), p.connect(t)
	exec(t, a, "SET work_mem = '5MB'; SET statement_timeout = '1ms'")
	for i := 0; i < 20; i++ {
		if got := scalar(t, b, "SELECT current_setting('statement_timeout') || '/' || current_setting('work_mem')"); got != "0/4MB" {
			t.Fatalf("b: %s", got)
		}
		exec(t, b, "SET work_mem = '6MB'")
		// a's own statement runs under its 1 ms timeout, which a loaded
		// machine exceeds now and then, as it would without txlane: that
		// 57014 is the server's answer to a, not a fault of txlane's.
		var got string
		for try := 0; ; try++ {
			res, err := a.Exec(context.Background(), "SELECT current_setting('statement_timeout') || '/' || current_setting('work_mem')").ReadAll()
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "57014" && try < 20 {
				continue
			}
			if err != nil {
				t.Fatalf("a: %v", err)
			}
			got = string(res[0].Rows[0][0])
			break
		}
		if got != "1ms/5MB" {
			t.Fatalf("a: %s", got)
		}
		exec(t, b, "RESET work_mem")
	}
	if got := pinnedReasons(p); strings.Trim(got, ";") != "" {
		t.Fatalf("pinned: %q", got)
	}
}

// idle_session_timeout, set by a client or as a role default, would make
// PostgreSQL end backends idle in the pool, which txlane cannot replace.
func TestTxPoolBreakIdleSessionTimeout(t *testing.T) {
	role := uniqueName("brk_idle")
	pgtest.Exec(t, "CREATE ROLE "+role+" LOGIN; ALTER ROLE "+role+" SET idle_session_timeout = '300ms'")
	t.Cleanup(func() { pgtest.Exec(t, "DROP OWNED BY "+role+"; DROP ROLE IF EXISTS "+role) })
	for _, tc := range []struct{ name, user, set string }{
		{"set by a client", "", "SET idle_session_timeout = '300ms'"},
		{"role default", role, "SELECT 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startTxPool(t, 2)
			ctx := context.Background()
			var conns []*pgconn.PgConn
			for i := 0; i < 2; i++ {
				c, err := pgconn.Connect(ctx, p.DSN(t, tc.user))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close(ctx) })
				conns = append(conns, c)
			}
			for _, c := range conns {
				exec(t, c, tc.set)
			}
			time.Sleep(time.Second) // past the timeout, everything idle
			for i, c := range conns {
				if err := execErr(c, "SELECT 1"); err != nil {
					t.Fatalf("client %d after a second idle: %v", i, err)
				}
			}
		})
	}
}

// A client waiting for a backend that sends a cancel: PostgreSQL would
// cancel its statement; the request ends with 57014 rather than run once a
// backend comes free, and the connection stays usable. The request may be
// a simple Query, an extended
// one up to its Sync, or one sent up to a Flush (its Sync comes after the
// error). The holder's transaction is not touched, and the backend is not
// lost: the pool still has one, and serves both clients afterwards.
func TestTxPoolBreakCancelWhileWaitingForBackend(t *testing.T) {
	tbl := uniqueName("brk_waitcancel")
	pgtest.Exec(t, "CREATE TABLE "+tbl+" (x int); GRANT ALL ON "+tbl+" TO PUBLIC")
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+tbl) })
	ins := "INSERT INTO " + tbl + " VALUES (2)"
	for _, tc := range []struct {
		name string
		run  func(b *pgconn.PgConn) error
	}{
		{"simple", func(b *pgconn.PgConn) error { return execErr(b, ins) }},
		{"extended", func(b *pgconn.PgConn) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return b.ExecParams(ctx, ins, nil, nil, nil, nil).Read().Err
		}},
		{"flushed part", func(b *pgconn.PgConn) error {
			// Parse, Bind, Execute, Flush: sent on at once, the Sync later.
			fe := b.Frontend()
			fe.Send(&pgproto3.Parse{Query: ins})
			fe.Send(&pgproto3.Bind{})
			fe.Send(&pgproto3.Execute{})
			fe.Send(&pgproto3.Flush{})
			if err := fe.Flush(); err != nil {
				return err
			}
			// The error comes before the Sync; the Sync then gets the
			// ReadyForQuery.
			b.Conn().SetReadDeadline(time.Now().Add(10 * time.Second))
			msg, err := fe.Receive()
			b.Conn().SetReadDeadline(time.Time{})
			if err != nil {
				return err
			}
			m, ok := msg.(*pgproto3.ErrorResponse)
			if !ok {
				return fmt.Errorf("%T before the Sync, want ErrorResponse", msg)
			}
			if err := rawRequest(b, &pgproto3.Sync{}); err != nil || b.TxStatus() != 'I' {
				return fmt.Errorf("the Sync after the error: %v, status %c", err, b.TxStatus())
			}
			return pgconn.ErrorResponseToPgError(m)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startTxPool(t, 1)
			ctx := context.Background()
			a, b := p.connect(t), p.connect(t)
			exec(t, a, "BEGIN; INSERT INTO "+tbl+" VALUES (1)")
			waited := make(chan error, 1)
			go func() { waited <- tc.run(b) }()
			waitFor(t, func() bool { return p.Server.Pools()[0].ClWaiting == 1 }, "b to wait for the only backend")
			if err := b.CancelRequest(ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-waited:
				if sqlstate(err) != "57014" || !strings.Contains(err.Error(), "canceling statement due to user request") {
					t.Fatalf("b, cancelled while waiting for a backend: %v, want 57014 canceling statement due to user request", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("b's request still waits for a backend after its cancel")
			}
			if pi := p.Server.Pools(); len(pi) != 1 || pi[0].ClWaiting != 0 {
				t.Fatalf("after the cancel: pools %+v, want no client waiting", pi)
			}
			// The holder's transaction goes on untouched, and then both run on
			// the pool's one backend: b's cancelled insert never ran.
			if got := scalar(t, a, "SELECT count(*) FROM "+tbl); got != "1" {
				t.Fatalf("a's transaction sees %s rows, want its own 1", got)
			}
			exec(t, a, "COMMIT")
			if got := scalar(t, b, "SELECT string_agg(x::text, ',') FROM "+tbl); got != "1" {
				t.Fatalf("b sees rows %s after its cancelled insert, want 1", got)
			}
			exec(t, b, "DELETE FROM "+tbl)
			if pa, pb := scalar(t, a, "SELECT pg_backend_pid()"), scalar(t, b, "SELECT pg_backend_pid()"); pa != pb {
				t.Fatalf("a on backend %s, b on %s: pool_size 1 but two backends", pa, pb)
			}
		})
	}
}

// A pin check in flight (after a statement that may pin) is txlane's own
// query: the client is still idle, and its next request is treated as one
// from an idle client (here a write of a held unit, rerouted rather than
// refused as coming from "a transaction of its own").
func TestTxPoolBreakPinCheckInFlightIsIdle(t *testing.T) {
	b := startTxPoolEscape(t, 2, "reroute")
	h := b.hold(t)
	other := b.connect(t)
	for i := 0; i < 10; i++ {
		// A pin check follows (a function that takes locks may leave one).
		// Not a SET: a writer whose settings differ from the holder's is
		// not rerouted (rerouteBar).
		exec(t, other, "SELECT pg_advisory_unlock_all()")
		if err := escapeErr(other, b.ins("u1", "other")+" /*unit='u1'*/"); err != nil {
			t.Fatalf("round %d: rerouted write right after a statement that may pin: %v", i, err)
		}
	}
	exec(t, h, "ROLLBACK")
	if n := b.count(t, "unit = 'u1'"); n != "0" {
		t.Fatalf("%s rows of u1 after the holder rolled back", n)
	}
}
