package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// startTxPool starts txlane in pool_mode transaction with pool_size size.
func startTxPool(t *testing.T, size int) *testProxy {
	t.Helper()
	return startProxy(t, func(o *proxy.Options) {
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: size}
	})
}

// backendCount is how many backends the server runs for application_name
// app (by pg_stat_activity, read directly).
func backendCount(t *testing.T, app string) string {
	t.Helper()
	direct := directConn(t)
	return scalar(t, direct, "SELECT count(*) FROM pg_stat_activity WHERE application_name = "+quote(app))
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func TestTxPoolSharesBackends(t *testing.T) {
	p := startTxPool(t, 2)
	app := uniqueName("txpool")
	ctx := context.Background()
	var conns []*pgconn.PgConn
	for i := 0; i < 6; i++ {
		c, err := pgconn.Connect(ctx, p.DSN(t, "")+"&application_name="+app)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		conns = append(conns, c)
	}
	// Each login made a backend; those past pool_size were closed once
	// their client went idle.
	waitFor(t, func() bool { return backendCount(t, app) == "2" }, "backends to shrink to pool_size")

	tbl := uniqueName("txpool_t")
	exec(t, conns[0], "CREATE TABLE "+tbl+" (id int, who int)")
	defer pgtest.Exec(t, "DROP TABLE IF EXISTS "+tbl)

	// Six clients, two backends: every client's transaction runs whole on
	// one backend, and each sees its own uncommitted rows only.
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func(i int, c *pgconn.PgConn) {
			defer wg.Done()
			for round := 0; round < 20; round++ {
				res := c.Exec(ctx, fmt.Sprintf("BEGIN; INSERT INTO %s VALUES (%d, %d); SELECT count(*) FROM %s WHERE who = %d AND id = %d; SELECT pg_backend_pid()",
					tbl, round, i, tbl, i, round))
				rs, err := res.ReadAll()
				if err != nil {
					t.Error(err)
					return
				}
				if got := string(rs[2].Rows[0][0]); got != "1" {
					t.Errorf("client %d sees %s of its rows in its transaction", i, got)
				}
				if round%2 == 0 {
					_, err = c.Exec(ctx, "COMMIT").ReadAll()
				} else {
					_, err = c.Exec(ctx, "ROLLBACK").ReadAll()
				}
				if err != nil {
					t.Error(err)
				}
			}
		}(i, c)
	}
	wg.Wait()
	if got := scalar(t, directConn(t), "SELECT count(*) FROM "+tbl); got != "60" {
		t.Fatalf("%s rows committed, want 60 (10 per client)", got)
	}
	if got := backendCount(t, app); got != "2" {
		t.Fatalf("%s backends for six clients, want pool_size 2", got)
	}
}

func TestTxPoolPreparedStatementsMove(t *testing.T) {
	p := startTxPool(t, 2)
	ctx := context.Background()
	// pgx prepares and caches statements per connection; with more clients
	// than backends every statement runs, sooner or later, on a backend that
	// did not prepare it.
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := pgx.Connect(ctx, p.DSN(t, ""))
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close(ctx)
			for round := 0; round < 30; round++ {
				var n, pid int
				if err := c.QueryRow(ctx, "SELECT $1::int + $2::int, pg_backend_pid()", i, round).Scan(&n, &pid); err != nil {
					t.Errorf("client %d round %d: %v", i, round, err)
					return
				}
				if n != i+round {
					t.Errorf("client %d: got %d", i, n)
				}
			}
		}(i)
	}
	wg.Wait()
}

func TestTxPoolPins(t *testing.T) {
	p := startTxPool(t, 2)
	ctx := context.Background()
	cases := []struct {
		reason, make, undo string
	}{
		{"temp_table", "CREATE TEMP TABLE pin_tmp (x int)", "DROP TABLE pin_tmp"},
		{"advisory_lock", "SELECT pg_advisory_lock(4242)", "SELECT pg_advisory_unlock(4242)"},
		{"listen", "LISTEN pin_channel", "UNLISTEN pin_channel"},
		{"set_config", "SELECT set_config('my.' || 'hidden', '1', false)", "RESET ALL"}, // a name txlane cannot see
		{"hold_cursor", "DECLARE pin_c CURSOR WITH HOLD FOR SELECT 1", "CLOSE pin_c"},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			c := p.connect(t)
			other := p.connect(t)
			exec(t, c, tc.make)
			pid := scalar(t, c, "SELECT pg_backend_pid()")
			// Pinned: the client keeps its backend across transactions, and
			// the other client never gets it.
			for i := 0; i < 5; i++ {
				if got := scalar(t, c, "SELECT pg_backend_pid()"); got != pid {
					t.Fatalf("pinned client moved from backend %s to %s", pid, got)
				}
				if got := scalar(t, other, "SELECT pg_backend_pid()"); got == pid {
					t.Fatalf("another client got the pinned backend %s", pid)
				}
			}
			if n := p.Server.Metrics().Pins(tc.reason); n < 1 {
				t.Fatalf("pins for %s counted %v", tc.reason, n)
			}
			var pinned string
			for _, ci := range p.Server.ClientList() {
				if ci.Pinned != "" {
					pinned = ci.Pinned
				}
			}
			if !strings.Contains(pinned, tc.reason) {
				t.Fatalf("SHOW CLIENTS pinned %q, want %s", pinned, tc.reason)
			}
			// Undone: pooled again (the pin is read from the server).
			exec(t, c, tc.undo)
			waitFor(t, func() bool {
				for _, ci := range p.Server.ClientList() {
					if ci.Pinned != "" {
						return false
					}
				}
				return true
			}, "the pin to go")
			c.Close(ctx)
			other.Close(ctx)
		})
	}
}

// TestTxPoolPinsCountNewReasons: txlane_pins_total counts a client becoming
// pinned for a reason, not each change of its set of reasons: an advisory
// lock, then LISTEN on the same client, then a second lock, count one
// advisory_lock and one listen; releasing everything and locking again
// counts a second advisory_lock.
func TestTxPoolPinsCountNewReasons(t *testing.T) {
	p := startTxPool(t, 2)
	m := p.Server.Metrics()
	lock0, listen0 := m.Pins("advisory_lock"), m.Pins("listen")
	c := p.connect(t)
	pinned := func() string {
		for _, ci := range p.Server.ClientList() {
			if ci.Pinned != "" {
				return ci.Pinned
			}
		}
		return ""
	}
	exec(t, c, "SELECT pg_advisory_lock(9)")
	exec(t, c, "LISTEN pins_count")
	exec(t, c, "SELECT pg_advisory_lock(10)")
	exec(t, c, "SELECT 1")
	waitFor(t, func() bool { return pinned() == "advisory_lock,listen" }, "pins advisory_lock,listen")
	if l, n := m.Pins("advisory_lock")-lock0, m.Pins("listen")-listen0; l != 1 || n != 1 {
		t.Fatalf("pins counted advisory_lock +%v, listen +%v; want +1 each", l, n)
	}
	exec(t, c, "SELECT pg_advisory_unlock_all()")
	exec(t, c, "UNLISTEN *")
	waitFor(t, func() bool { return pinned() == "" }, "the pins to go")
	exec(t, c, "SELECT pg_advisory_lock(9)")
	// The pin check runs once the backend is idle: a next statement sent at
	// once may come first, and then the lock is gone before anyone looks.
	waitFor(t, func() bool { return pinned() == "advisory_lock" }, "the lock to pin the client again")
	exec(t, c, "SELECT pg_advisory_unlock(9)")
	if l := m.Pins("advisory_lock") - lock0; l != 2 {
		t.Fatalf("pinned again after it was unpinned: advisory_lock +%v, want +2", l)
	}
}

func TestTxPoolSettingsFollowTheClient(t *testing.T) {
	p := startTxPool(t, 1)
	a, b := p.connect(t), p.connect(t)
	role := pgtest.AppRole
	// One backend for both. What a sets for its session holds whenever it
	// runs, and never reaches b.
	exec(t, a, "SET statement_timeout = '123s'; SET search_path = \"$user\", public, pg_temp; SET my.flag = 'x''y'; SET ROLE "+role)
	exec(t, a, "BEGIN; SET LOCAL work_mem = '7MB'; COMMIT")
	check := func(c *pgconn.PgConn, want []string) {
		t.Helper()
		res := exec(t, c, "SELECT current_setting('statement_timeout'), current_setting('search_path'), current_setting('my.flag', true), current_user, current_setting('work_mem')")
		var got []string
		for _, v := range res[0].Rows[0] {
			got = append(got, string(v))
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	for i := 0; i < 3; i++ {
		check(b, []string{"0", `"$user", public`, "", "postgres", "4MB"})
		check(a, []string{"123s", `"$user", public, pg_temp`, "x'y", role, "4MB"})
	}
	if pa, pb := scalar(t, a, "SELECT pg_backend_pid()"), scalar(t, b, "SELECT pg_backend_pid()"); pa != pb {
		t.Fatalf("a on %s, b on %s: settings pinned a (want them moved)", pa, pb)
	}
	exec(t, a, "RESET ALL; RESET ROLE")
	check(a, []string{"0", `"$user", public`, "", "postgres", "4MB"})
	if n := p.Server.Metrics().Pins("set"); n != 0 {
		t.Fatalf("settings counted as pins: %v", n)
	}
}

func TestTxPoolWaitTimeout(t *testing.T) {
	p := startProxy(t, func(o *proxy.Options) {
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 1}
		o.QueryWaitTimeout = 300 * time.Millisecond
	})
	a, b := p.connect(t), p.connect(t)
	exec(t, a, "BEGIN")
	err := b.Exec(context.Background(), "SELECT 1").Close()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != proxy.CodeProtocolViolation || !strings.Contains(pe.Message, "query_wait_timeout") {
		t.Fatalf("waiting client got %v, want FATAL 08P01 query_wait_timeout", err)
	}
	exec(t, a, "COMMIT")
	if scalar(t, a, "SELECT 1") != "1" {
		t.Fatal("holder broken")
	}
}

// waitFor polls cond (a test helper, not a timing assertion) for up to 5s.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTxPoolCancelReachesOnlyItsClient(t *testing.T) {
	p := startTxPool(t, 1)
	ctx := context.Background()
	a, b := p.connect(t), p.connect(t)
	go func() {
		time.Sleep(300 * time.Millisecond)
		a.CancelRequest(ctx)
	}()
	err := a.Exec(ctx, "SELECT pg_sleep(10)").Close()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57014" {
		t.Fatalf("cancelled statement: %v", err)
	}
	// The one backend goes on serving both; the cancel reaches nobody else:
	// not b's statements on that backend right after it, not a late cancel
	// of a's sent while a holds no backend.
	for i := 0; i < 20; i++ {
		if err := b.Exec(ctx, "SELECT pg_sleep(0.01)").Close(); err != nil {
			t.Fatalf("b after a's cancel: %v", err)
		}
		if i == 5 {
			a.CancelRequest(ctx) // a is idle: there is nothing to cancel
		}
	}
	if got := scalar(t, a, "SELECT 1"); got != "1" {
		t.Fatalf("a after its cancel: %s", got)
	}
}

func TestTxPoolOverrides(t *testing.T) {
	o := proxy.PoolOptions{Mode: proxy.PoolSession, Size: 20, Overrides: []proxy.PoolOverride{
		{Database: "analytics", Size: 3},
		{User: "batch", Mode: proxy.PoolTransaction},
		{Database: "analytics", Mode: proxy.PoolTransaction, Size: 9},
	}}
	for _, tc := range []struct {
		db, user string
		mode     proxy.PoolMode
		size     int
	}{
		{"app", "web", proxy.PoolSession, 20},
		{"analytics", "web", proxy.PoolTransaction, 3}, // size from the first entry that sets it
		{"app", "batch", proxy.PoolTransaction, 20},
	} {
		if mode, size := o.For(tc.db, tc.user); mode != tc.mode || size != tc.size {
			t.Errorf("For(%s, %s) = %s, %d; want %s, %d", tc.db, tc.user, mode, size, tc.mode, tc.size)
		}
	}

	// A user in transaction mode shares one backend; others keep their own.
	p := startProxy(t, func(o *proxy.Options) {
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolSession, Overrides: []proxy.PoolOverride{
			{User: pgtest.AppRole, Mode: proxy.PoolTransaction, Size: 1}}}
	})
	ctx := context.Background()
	pid := func(user string) (*pgconn.PgConn, string) {
		c, err := pgconn.Connect(ctx, p.DSN(t, user))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(ctx) })
		return c, scalar(t, c, "SELECT pg_backend_pid()")
	}
	a1, pa1 := pid(pgtest.AppRole)
	_, pa2 := pid(pgtest.AppRole)
	if pa1 != pa2 {
		t.Fatalf("transaction-mode clients of %s on backends %s and %s, want one", pgtest.AppRole, pa1, pa2)
	}
	_, ps1 := pid("")
	_, ps2 := pid("")
	if ps1 == ps2 {
		t.Fatalf("session-mode clients share backend %s", ps1)
	}
	exec(t, a1, "SELECT 1")
}

func TestTxPoolSQLPreparedStatementsFollowTheClient(t *testing.T) {
	p := startTxPool(t, 1)
	a, b := p.connect(t), p.connect(t)
	// One backend for both: a's SQL-level prepared statements run wherever
	// a runs, and b never sees them.
	exec(t, a, "SELECT 1; PREPARE add_one(int) AS SELECT $1 + 1; SET search_path = pg_catalog")
	exec(t, a, `PREPARE "Quoted" AS SELECT 'a;b'`)
	for i := 0; i < 3; i++ {
		if got := scalar(t, b, "SELECT count(*) FROM pg_prepared_statements"); got != "0" {
			t.Fatalf("b sees %s prepared statements", got)
		}
		if got := scalar(t, a, "EXECUTE add_one(41)"); got != "42" {
			t.Fatalf("a's EXECUTE: %s", got)
		}
		if got := scalar(t, a, `EXECUTE "Quoted"`); got != "a;b" {
			t.Fatalf("a's EXECUTE \"Quoted\": %s", got)
		}
		wantCode(t, execErr(b, "EXECUTE add_one(1)"), "26000")
	}
	if pa, pb := scalar(t, a, "SELECT pg_backend_pid()"), scalar(t, b, "SELECT pg_backend_pid()"); pa != pb {
		t.Fatalf("a pinned to its backend (%s, b on %s): want its statements moved", pa, pb)
	}
	exec(t, a, "DEALLOCATE add_one")
	wantCode(t, execErr(a, "EXECUTE add_one(1)"), "26000")
	if n := p.Server.Metrics().Pins("sql_prepare"); n != 0 {
		t.Fatalf("SQL prepared statements counted as pins: %v", n)
	}
}

func TestTxPoolInspection(t *testing.T) {
	p := startTxPool(t, 1)
	a, b := p.connect(t), p.connect(t)
	exec(t, a, "BEGIN")
	pid := scalar(t, a, "SELECT pg_backend_pid()")
	done := make(chan error, 1)
	go func() { done <- b.Exec(context.Background(), "SELECT 1").Close() }()
	var pool proxy.PoolInfo
	waitFor(t, func() bool {
		for _, pl := range p.Server.Pools() {
			if pl.User == "postgres" {
				pool = pl
			}
		}
		return pool.ClWaiting == 1
	}, "b to wait for the backend")
	if pool.ClActive != 1 || pool.SvActive != 1 || pool.SvIdle != 0 || pool.PoolMode != proxy.PoolTransaction || pool.MaxWait <= 0 {
		t.Fatalf("SHOW POOLS row %+v", pool)
	}
	servers := p.Server.ServerList()
	if len(servers) != 1 || servers[0].State != "active" || fmt.Sprint(servers[0].PID) != pid || servers[0].Link == 0 {
		t.Fatalf("SHOW SERVERS %+v, want a's backend %s active", servers, pid)
	}
	for _, c := range p.Server.ClientList() {
		if c.ID == servers[0].Link && fmt.Sprint(c.ServerPID) != pid {
			t.Fatalf("SHOW CLIENTS: a served by %d, want %s", c.ServerPID, pid)
		}
	}
	exec(t, a, "COMMIT")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		s := p.Server.ServerList()
		return len(s) == 1 && s[0].State == "idle" && s[0].Link == 0
	}, "the backend to be idle in the pool")
}

// TestTxPoolBackendTerminatedWhileIdle: a pooled backend that dies while no
// client holds it is dropped; its former client carries on on another
// backend. One that dies while serving a client gives that client FATAL
// (the server's 57P01) and nobody else, and a pool that can open backends
// (logins txlane checks) replaces it for the clients waiting.
func TestTxPoolBackendTerminatedWhileIdle(t *testing.T) {
	p := startProxy(t, func(o *proxy.Options) {
		o.Auth = trustAuth(t, pgtest.AppRole)
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 1}
	})
	connect := func() *pgconn.PgConn {
		c, err := pgconn.Connect(context.Background(), p.DSN(t, pgtest.AppRole))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	a, b := connect(), connect()
	pid := scalar(t, a, "SELECT pg_backend_pid()")
	direct := directConn(t)
	exec(t, direct, "SELECT pg_terminate_backend("+pid+")")
	waitFor(t, func() bool {
		for _, s := range p.Server.ServerList() {
			if fmt.Sprint(s.PID) == pid {
				return false
			}
		}
		return true
	}, "the terminated backend to leave the pool")
	if got := scalar(t, a, "SELECT 'a carries on'"); got != "a carries on" {
		t.Fatal(got)
	}
	// Mid-transaction: only that client sees it; b, waiting for the one
	// backend, gets a new one.
	exec(t, a, "BEGIN")
	pid = scalar(t, a, "SELECT pg_backend_pid()")
	waiting := make(chan string, 1)
	go func() {
		res := b.Exec(context.Background(), "SELECT 'b unaffected'")
		rs, err := res.ReadAll()
		if err != nil {
			waiting <- err.Error()
			return
		}
		waiting <- string(rs[0].Rows[0][0])
	}()
	waitFor(t, func() bool { return p.Server.Pools()[0].ClWaiting == 1 }, "b to wait")
	exec(t, direct, "SELECT pg_terminate_backend("+pid+")")
	err := a.Exec(context.Background(), "SELECT 1").Close()
	var pe *pgconn.PgError
	if err == nil || errors.As(err, &pe) && pe.Code != "57P01" {
		t.Fatalf("client whose backend died mid-transaction: %v, want FATAL 57P01", err)
	}
	if got := <-waiting; got != "b unaffected" {
		t.Fatalf("b: %s", got)
	}
}

// TestTxPoolUnitsOfWork: in transaction mode a unit is held by the
// holder's transaction on the backend it runs on, from the request that
// begins it (taken while the client held no backend): an escaping write is
// rejected, or rerouted into that transaction and gone with its rollback.
func TestTxPoolUnitsOfWork(t *testing.T) {
	for _, escape := range []string{"reject", "reroute"} {
		t.Run(escape, func(t *testing.T) {
			bed := startUnitProxy(t, escape, func(o *proxy.Options) {
				o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 2}
			})
			holder, other := bed.connect(t), bed.connect(t)
			exec(t, holder, "BEGIN; "+bed.insert("u1", "holder"))
			err := execErr(other, bed.insert("u1", "other"))
			if escape == "reject" {
				wantCode(t, err, proxy.CodeEscapedWrite)
			} else if err != nil {
				t.Fatalf("rerouted write: %v", err)
			}
			exec(t, holder, "ROLLBACK")
			if got := bed.count(t, "true"); got != "0" {
				t.Fatalf("%s rows after the holder rolled back", got)
			}
			// The unit is free: the write runs on its own now.
			exec(t, other, bed.insert("u1", "other"))
			if got := bed.count(t, "who = 'other'"); got != "1" {
				t.Fatalf("%s rows of the free write", got)
			}
		})
	}
}

// TestTxPoolBackendsGauge: txlane_backends{lane="primary"} counts backends,
// not clients: three idle clients over one pooled backend are one idle
// backend.
func TestTxPoolBackendsGauge(t *testing.T) {
	p := startTxPool(t, 1)
	for i := 0; i < 3; i++ {
		exec(t, p.connect(t), "SELECT 1")
	}
	waitFor(t, func() bool {
		m := scrape(t, p.Server)
		return m[series("txlane_backends", "lane", "primary", "state", "idle")] == 1 &&
			m[series("txlane_backends", "lane", "primary", "state", "active")] == 0
	}, "one idle primary backend for three idle clients")
}
