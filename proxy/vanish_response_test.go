package proxy_test

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// TestVanishMidResponse: a client inside a transaction sends a query with a
// large answer and closes its socket while the answer streams to it (txlane's
// write to the client fails in the relay). Its backend must not be lost nor
// go back with the transaction open: it is rolled back and reset and goes
// back to its pool, or it is closed, and the pool's counts (SHOW POOLS,
// txlane_pool_backends) match the backends the server runs for it, so that
// the next clients are served. In every pool mode and login kind.
func TestVanishMidResponse(t *testing.T) {
	tbl := uniqueName("vanish_resp")
	pgtest.Exec(t, "CREATE TABLE "+tbl+" (x int); GRANT ALL ON "+tbl+" TO PUBLIC")
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+tbl) })
	user := pgtest.Config(t).User
	for _, tc := range []struct {
		name string
		mode proxy.PoolMode
		// trust: txlane checks logins (the pool can open backends itself);
		// otherwise logins are relayed and the pool cannot.
		trust bool
	}{
		{"transaction relayed", proxy.PoolTransaction, false},
		{"transaction trust", proxy.PoolTransaction, true},
		{"session trust", proxy.PoolSession, true},
		{"session relayed", proxy.PoolSession, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, func(o *proxy.Options) {
				o.Pool = proxy.PoolOptions{Mode: tc.mode, Size: 2}
				if tc.trust {
					o.Auth = trustAuth(t, user)
				}
			})
			app := uniqueName("vanish_app")
			dsn := p.DSN(t, "") + "&application_name=" + app
			connect := func() *pgconn.PgConn { return connectDSN(t, dsn) }
			other := connect() // keeps the pool's clients above zero
			a := connect()
			exec(t, a, "BEGIN; INSERT INTO "+tbl+" VALUES (1)")
			pid := scalar(t, a, "SELECT pg_backend_pid()")
			hj, err := a.Hijack()
			if err != nil {
				t.Fatal(err)
			}
			// About 200 MB: far more than the socket buffers hold, so the
			// server is still sending when the client goes.
			writeMsgs(t, hj.Conn, &pgproto3.Query{String: "SELECT repeat('x', 1000) FROM generate_series(1, 200000)"})
			readSome(t, hj.Conn, 256<<10)
			hj.Conn.Close()

			direct := directConn(t)
			// The backend a used ends up idle outside a transaction (reset,
			// in the pool) or gone (closed); never left in its transaction.
			var state string
			waitFor(t, func() bool {
				res := exec(t, direct, "SELECT coalesce((SELECT state FROM pg_stat_activity WHERE pid = "+pid+"), 'gone')")
				state = string(res[0].Rows[0][0])
				return state == "idle" || state == "gone"
			}, "a's backend to be idle or gone")
			wantPoolMatchesServer(t, p, direct, app, tc.mode == proxy.PoolSession && !tc.trust)
			if tc.mode == proxy.PoolSession && !tc.trust && state != "gone" {
				t.Fatalf("a relayed session-mode login's backend is %s after its client vanished, want closed", state)
			}
			// Nothing of a's transaction committed, and the next clients run.
			if got := scalar(t, other, "SELECT count(*) FROM "+tbl); got != "0" {
				t.Fatalf("%s rows of a's transaction after it vanished mid-response, want 0", got)
			}
			c := connect()
			for i := 0; i < 3; i++ {
				exec(t, c, "BEGIN; INSERT INTO "+tbl+" VALUES (2)")
				if got := scalar(t, c, "SELECT count(*) FROM "+tbl); got != "1" {
					t.Fatalf("the next client sees %s rows in its transaction, want its own 1", got)
				}
				exec(t, c, "ROLLBACK")
			}
			wantPoolMatchesServer(t, p, direct, app, tc.mode == proxy.PoolSession && !tc.trust)
			t.Logf("a's backend %s: %s", pid, state)
		})
	}
}

// readSome reads at least n bytes of c (failing the test on an error first).
func readSome(t *testing.T, c net.Conn, n int64) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.CopyN(io.Discard, c, n); err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
}

// wantPoolMatchesServer waits until the backends txlane counts for the
// clients of application_name app match those the server runs for them:
// SHOW POOLS' sv_active + sv_idle + sv_tested, the txlane_pool_backends
// gauges (except for relayed session-mode logins, which have no pool), and
// SHOW SERVERS; every one of them idle or serving a client outside a
// transaction.
func wantPoolMatchesServer(t *testing.T, p *testProxy, direct *pgconn.PgConn, app string, noPool bool) {
	t.Helper()
	cfg := pgtest.Config(t)
	var why string
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The server's backends of the pool: those txlane lists, and any
		// other of the clients' application_name (a relayed login logs in
		// with it; a transaction-mode pool's own logins leave it out, and
		// it moves with the client).
		pids := []string{"0"}
		for _, sv := range p.Server.ServerList() {
			pids = append(pids, fmt.Sprint(sv.PID))
		}
		res := exec(t, direct, "SELECT count(*), count(*) FILTER (WHERE state <> 'idle') FROM pg_stat_activity WHERE application_name = "+quote(app)+
			" OR pid IN ("+strings.Join(pids, ",")+")")
		onServer, _ := strconv.Atoi(string(res[0].Rows[0][0]))
		busy := string(res[0].Rows[0][1])
		shown := 0
		for _, pi := range p.Server.Pools() {
			if pi.Database == cfg.Database && pi.User == cfg.User {
				shown += pi.SvActive + pi.SvIdle + pi.SvTested
			}
		}
		gauges := 0.0
		s := scrape(t, p.Server)
		for _, state := range []string{"active", "idle", "used"} {
			gauges += s[series("txlane_pool_backends", "database", cfg.Database, "lane", "primary", "state", state, "user", cfg.User)]
		}
		servers := len(p.Server.ServerList())
		why = fmt.Sprintf("the server runs %d backends (%s not idle), SHOW POOLS counts %d, txlane_pool_backends %v, SHOW SERVERS %d", onServer, busy, shown, gauges, servers)
		if onServer == shown && (noPool || int(gauges) == onServer) && servers == onServer && busy == "0" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
