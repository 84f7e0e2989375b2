package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
	"github.com/txlane/txlane/proxy/auth"
)

// scramProxy starts txlane checking txlane_scram's password itself (its
// verifier read from the server into an auth file), with pool options o.
func scramProxy(t *testing.T, o proxy.PoolOptions, mutate ...func(*proxy.Options)) (p *testProxy, dsn string) {
	t.Helper()
	role := pgtest.PasswordRoles()[1]
	verifier := scalar(t, directConn(t), "SELECT rolpassword FROM pg_authid WHERE rolname = "+quote(role.User))
	f, err := auth.ParseFile("users.txt", fmt.Appendf(nil, "%q %q\n", role.User, verifier))
	if err != nil {
		t.Fatal(err)
	}
	p = startProxy(t, func(opts *proxy.Options) {
		opts.Auth = proxy.AuthOptions{Type: auth.MethodSCRAM, File: f}
		opts.Pool = o
		for _, m := range mutate {
			m(opts)
		}
	})
	u, _ := url.Parse(p.DSN(t, ""))
	u.User = url.UserPassword(role.User, role.Password)
	q := u.Query()
	q.Set("application_name", uniqueName("pooled"))
	u.RawQuery = q.Encode()
	return p, u.String()
}

// TestSessionModeBackendsOutliveClients: with logins txlane checks itself, a
// client that leaves hands its backend back to the pool after
// server_reset_query (DISCARD ALL); the next login of that (database, user)
// reuses it, finding nothing of the previous client's session.
func TestSessionModeBackendsOutliveClients(t *testing.T) {
	_, dsn := scramProxy(t, proxy.PoolOptions{Mode: proxy.PoolSession, Size: 2})
	ctx := context.Background()
	var pids []string
	for i := 0; i < 4; i++ {
		c, err := pgconn.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, scalar(t, c, "SELECT pg_backend_pid()"))
		if got := scalar(t, c, "SELECT current_setting('statement_timeout') || '|' || count(*) FROM pg_prepared_statements"); got != "0|0" {
			t.Fatalf("login %d found the previous session's state: %s", i, got)
		}
		if got := scalar(t, c, "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()"); got != "0" {
			t.Fatalf("login %d found %s temporary relations", i, got)
		}
		exec(t, c, "SET statement_timeout = '42s'; PREPARE leftover AS SELECT 1; CREATE TEMP TABLE leftover_t (x int)")
		c.Close(ctx)
		// The reset runs after the client left: wait until the pool has the
		// backend back before the next login.
		waitFor(t, func() bool { return idleInPool(t, pids[i]) }, "the backend to be back in the pool")
	}
	for i := 1; i < len(pids); i++ {
		if pids[i] != pids[0] {
			t.Fatalf("logins ran on backends %v: want one reused", pids)
		}
	}
}

// idleInPool reports whether backend pid is idle after DISCARD ALL.
func idleInPool(t *testing.T, pid string) bool {
	return scalar(t, directConn(t), "SELECT count(*) FROM pg_stat_activity WHERE pid = "+pid+" AND state = 'idle' AND query = 'DISCARD ALL'") == "1"
}

// TestTransactionModeWithVerifiers: logins txlane checks itself take no
// backend of their own; the pool opens up to pool_size backends with the
// clients' pass-through credentials and shares them.
func TestTransactionModeWithVerifiers(t *testing.T) {
	_, dsn := scramProxy(t, proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 2})
	ctx := context.Background()
	app, _ := url.Parse(dsn)
	name := app.Query().Get("application_name")
	var conns []*pgconn.PgConn
	for i := 0; i < 8; i++ {
		c, err := pgconn.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		conns = append(conns, c)
	}
	for round := 0; round < 3; round++ {
		for i, c := range conns {
			if got := scalar(t, c, "SELECT session_user"); got != "txlane_scram" {
				t.Fatalf("client %d runs as %s", i, got)
			}
		}
	}
	if got := backendCount(t, name); got != "1" && got != "2" {
		t.Fatalf("%s backends for 8 clients, want at most pool_size 2", got)
	}
}

// TestMinPoolSize: once a login gave the pool credentials, the pool opens
// backends by itself up to min_pool_size.
func TestMinPoolSize(t *testing.T) {
	p, dsn := scramProxy(t, proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 5, MinSize: 3})
	c, err := pgconn.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	// The pool's backends, as the server lists them (in transaction mode a
	// pooled backend logs in without the client's application_name, which
	// moves with the client).
	waitFor(t, func() bool {
		var pids []string
		for _, sv := range p.Server.ServerList() {
			pids = append(pids, fmt.Sprint(sv.PID))
		}
		if len(pids) != 3 {
			return false
		}
		return scalar(t, directConn(t), "SELECT count(*) FROM pg_stat_activity WHERE pid IN ("+strings.Join(pids, ",")+")") == "3"
	}, "min_pool_size backends")
}

// TestSessionModePoolFull: in session mode pool_size caps a pool's
// sessions; a login that finds no backend free within client_login_timeout
// is refused with a message (57P03), not just closed.
func TestSessionModePoolFull(t *testing.T) {
	_, dsn := scramProxy(t, proxy.PoolOptions{Mode: proxy.PoolSession, Size: 1},
		func(o *proxy.Options) { o.ClientLoginTimeout = time.Second })
	ctx := context.Background()
	first, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close(ctx)
	_, err = pgconn.Connect(ctx, dsn)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != proxy.CodeCannotConnectNow {
		t.Fatalf("second login with the pool full: %v, want FATAL 57P03", err)
	}
}
