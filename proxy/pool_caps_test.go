package proxy_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// primaryBackends counts the primary-lane backends txlane lists.
func primaryBackends(p *testProxy) int {
	n := 0
	for _, s := range p.Server.ServerList() {
		if s.Lane == proxy.LanePrimary {
			n++
		}
	}
	return n
}

// TestPoolCaps: max_user_connections and max_db_connections cap the
// backends of all pools of a user (two pools: clients with different
// startup parameters) and of a database (two pools: two users) at 1, with
// pool_size 4 and transaction pooling. While a is inside a transaction, b's
// request waits for a backend (SHOW CLIENTS: waiting) and txlane runs one
// backend; when a commits, its idle backend is closed (on the server too)
// to make room, and b runs on a new one. With a inside a transaction again,
// b gets what a full pool_size gives: FATAL 08P01 query_wait_timeout.
func TestPoolCaps(t *testing.T) {
	for _, tc := range []struct {
		name   string
		caps   func(*proxy.PoolOptions)
		bUser  string
		bExtra string // b's extra DSN parameters
	}{
		{"max_user_connections", func(o *proxy.PoolOptions) { o.MaxUserConnections = 1 }, pgtest.AppRole, "&search_path=public"},
		{"max_db_connections", func(o *proxy.PoolOptions) { o.MaxDBConnections = 1 }, "postgres", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, func(o *proxy.Options) {
				o.Auth = trustAuthUsers(t, pgtest.AppRole, "postgres")
				o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 4}
				tc.caps(&o.Pool)
				o.QueryWaitTimeout = 2 * time.Second
			})
			a := connectDSN(t, p.DSN(t, pgtest.AppRole))
			b := connectDSN(t, p.DSN(t, tc.bUser)+tc.bExtra)
			exec(t, a, "BEGIN")
			pidA := scalar(t, a, "SELECT pg_backend_pid()")
			done := make(chan string, 1)
			go func() {
				res, err := b.Exec(context.Background(), "SELECT pg_backend_pid()").ReadAll()
				if err != nil || len(res) != 1 || len(res[0].Rows) != 1 {
					done <- "error: " + errText(err) + " rows " + strconv.Itoa(len(res))
					return
				}
				done <- string(res[0].Rows[0][0])
			}()
			waitFor(t, func() bool {
				for _, c := range p.Server.ClientList() {
					if c.User == tc.bUser && c.State == proxy.ClientWaiting && c.WaitingFor == proxy.WaitingForServer {
						return true
					}
				}
				return false
			}, "b to wait for a backend")
			if n := primaryBackends(p); n != 1 {
				t.Fatalf("%d primary backends while b waits, want 1 (%s = 1): %+v", n, tc.name, p.Server.ServerList())
			}
			exec(t, a, "COMMIT")
			pidB := <-done
			if pidB == pidA || strings.HasPrefix(pidB, "error") {
				t.Fatalf("b: %s (a's backend was %s), want a backend of its own", pidB, pidA)
			}
			waitGone(t, pidA, 5*time.Second)
			if n := primaryBackends(p); n != 1 {
				t.Fatalf("%d primary backends after b ran, want 1: %+v", n, p.Server.ServerList())
			}

			exec(t, a, "BEGIN; SELECT 1")
			err := b.Exec(context.Background(), "SELECT 1").Close()
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != proxy.CodeProtocolViolation || !strings.Contains(pe.Message, "query_wait_timeout") {
				t.Fatalf("b held back by %s: %v, want FATAL 08P01 query_wait_timeout", tc.name, err)
			}
			// The detail says what was waited for, in the configuration's terms.
			if !strings.Contains(pe.Detail, "query_wait_timeout (2s)") || !strings.Contains(pe.Detail, "pool_size") {
				t.Errorf("detail %q does not name pool_size and query_wait_timeout (2s)", pe.Detail)
			}
			exec(t, a, "COMMIT")
		})
	}
}

// TestPoolCapsSessionMode: in session mode with logins txlane checks
// (pool_size caps the sessions of a pool), max_db_connections 1 makes a
// second user's login wait while the first user's session holds the one
// backend; when that client leaves, its backend is reset, goes idle in its
// pool and is closed to make room, and the waiting login gets a backend of
// its own.
func TestPoolCapsSessionMode(t *testing.T) {
	p := startProxy(t, func(o *proxy.Options) {
		o.Auth = trustAuthUsers(t, pgtest.AppRole, "postgres")
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolSession, Size: 4, MaxDBConnections: 1}
	})
	a := connectDSN(t, p.DSN(t, pgtest.AppRole))
	pidA := backendPID(t, a)
	type login struct {
		pid string
		err error
	}
	done := make(chan login, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		b, err := pgconn.Connect(ctx, p.DSN(t, "postgres"))
		if err != nil {
			done <- login{err: err}
			return
		}
		t.Cleanup(func() { b.Close(context.Background()) })
		res, err := b.Exec(ctx, "SELECT pg_backend_pid()").ReadAll()
		if err == nil {
			done <- login{pid: string(res[0].Rows[0][0])}
			return
		}
		done <- login{err: err}
	}()
	db := pgtest.Config(t).Database
	waiting := series("txlane_pool_clients_waiting", "database", db, "lane", "primary", "user", "postgres")
	waitFor(t, func() bool { return scrape(t, p.Server)[waiting] == 1 }, "b's login to wait for a backend")
	if n := primaryBackends(p); n != 1 {
		t.Fatalf("%d primary backends while b waits, want 1", n)
	}
	a.Close(context.Background())
	l := <-done
	if l.err != nil || l.pid == pidA {
		t.Fatalf("b after a left: %+v (a's backend %s), want a backend of its own", l, pidA)
	}
	waitGone(t, pidA, 5*time.Second)
}

// TestPoolCapsRelayedLogins: with auth_type server each login is checked
// by the server on a backend of its own. Under max_user_connections 1 the
// first login of a pool still makes that pool's backend (a pool without
// one could not serve its clients), and a's and b's pools (different
// startup parameters) both work; a third login, c, into a's pool is over
// the cap: its backend is closed once the login is done, and c runs on
// its pool's backend, a's.
func TestPoolCapsRelayedLogins(t *testing.T) {
	p := startProxy(t, func(o *proxy.Options) {
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 4, MaxUserConnections: 1}
	})
	a := connectDSN(t, p.DSN(t, pgtest.AppRole))
	b := connectDSN(t, p.DSN(t, pgtest.AppRole)+"&search_path=public")
	pidA, pidB := backendPID(t, a), backendPID(t, b)
	if pidA == pidB {
		t.Fatalf("a and b (two pools) on one backend %s", pidA)
	}
	app := uniqueName("capped_login")
	c := connectDSN(t, p.DSN(t, pgtest.AppRole)+"&application_name="+app)
	waitFor(t, func() bool { return backendCount(t, app) == "0" }, "c's login backend to close")
	if pidC := backendPID(t, c); pidC != pidA {
		t.Fatalf("c on backend %s, want its pool's, a's (%s)", pidC, pidA)
	}
}

// TestPoolCapsLoginRefusedByTheServer: a login of a new pool while the cap
// is full waits as for pool_size; the backend opened for it once an idle one
// of another pool made room is refused by the server (a TimeZone it does
// not know), and the client gets the server's refusal (22023), as from a
// login of its own, not "no server connection became free" (57P03).
func TestPoolCapsLoginRefusedByTheServer(t *testing.T) {
	p := startProxy(t, func(o *proxy.Options) {
		o.Auth = trustAuthUsers(t, "postgres")
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 4, MaxDBConnections: 1}
		o.QueryWaitTimeout = 3 * time.Second
	})
	a := connectDSN(t, p.DSN(t, "postgres"))
	exec(t, a, "SELECT 1") // a's pool holds the cap's one backend, idle
	_, err := pgconn.Connect(context.Background(), p.DSN(t, "postgres")+"&options=-c%20TimeZone%3Dbadzonea")
	if code := pgCode(err); code != "22023" {
		t.Fatalf("a login with a TimeZone the server refuses, while the cap was full: %v (code %q), want 22023", err, code)
	}
	if got := scalar(t, a, "SELECT 1"); got != "1" {
		t.Fatalf("a after the refused login: %s", got)
	}
}
