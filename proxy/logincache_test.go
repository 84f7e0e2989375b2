package proxy_test

import (
	"context"
	"errors"
	"maps"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// loginCacheProxy starts txlane in transaction mode with pool_size 1,
// checking logins of user itself (auth_type trust).
func loginCacheProxy(t *testing.T, user string, mutate func(*proxy.Options)) *testProxy {
	t.Helper()
	return startProxy(t, func(o *proxy.Options) {
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 1}
		o.Auth = trustAuth(t, user)
		if mutate != nil {
			mutate(o)
		}
	})
}

// roleProxy creates a login role of its own for a test (dropped after it)
// and a loginCacheProxy for it.
func roleProxy(t *testing.T, prefix string) (string, *testProxy) {
	t.Helper()
	role := uniqueName(prefix)
	pgtest.Exec(t, "CREATE ROLE "+role+" LOGIN")
	t.Cleanup(func() { pgtest.Exec(t, "DROP ROLE IF EXISTS "+role) })
	return role, loginCacheProxy(t, role, nil)
}

// loginStatus logs in to dsn and returns every ParameterStatus value the
// login gave, and the login's error.
func loginStatus(t *testing.T, dsn string) (map[string]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	hc, err := c.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	hc.Conn.Close()
	return hc.ParameterStatuses, nil
}

// cachedLogins counts the logins answered from the login cache.
func cachedLogins(p *testProxy) float64 { return p.Metrics().PoolLogins("cache") }

// TestTxPoolLoginFromCache: with the pool's only backend inside another
// client's transaction, a login whose movable values a backend of the pool
// has applied gets in at once, from the login cache, with the values
// PostgreSQL gives such a login; its first query waits for the backend and
// then runs there with the client's values.
func TestTxPoolLoginFromCache(t *testing.T) {
	p := loginCacheProxy(t, "postgres", func(o *proxy.Options) { o.QueryWaitTimeout = time.Minute })
	params := map[string]string{"TimeZone": "utc", "DateStyle": "iso", "application_name": uniqueName("lc_wait")}
	dsn := withParams(t, p.DSN(t, ""), params)
	a := connectDSN(t, dsn) // takes a backend: the pool's first login
	if n := cachedLogins(p); n != 0 {
		t.Fatalf("the pool's first login came from the cache (%v)", n)
	}
	holder := scalar(t, a, "BEGIN; SELECT pg_backend_pid()")

	b := connectDSN(t, dsn)
	if n := cachedLogins(p); n != 1 {
		t.Fatalf("txlane_pool_logins_total{from=cache} = %v after a login of values seen before, want 1", n)
	}
	if tz, ds := b.ParameterStatus("TimeZone"), b.ParameterStatus("DateStyle"); tz != "UTC" || ds != "ISO, MDY" {
		t.Errorf("login from the cache: TimeZone %q, DateStyle %q; PostgreSQL reports UTC and ISO, MDY", tz, ds)
	}
	type answer struct {
		row []string
		err error
	}
	done := make(chan answer, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		res, err := b.Exec(ctx, "SELECT current_setting('TimeZone'), current_setting('DateStyle'), "+
			"current_setting('application_name'), pg_backend_pid()::text").ReadAll()
		var row []string
		if err == nil {
			for _, v := range res[0].Rows[0] {
				row = append(row, string(v))
			}
		}
		done <- answer{row, err}
	}()
	waitFor(t, func() bool {
		for _, c := range p.Server.ClientList() {
			if c.State == proxy.ClientWaiting && c.WaitingFor == proxy.WaitingForServer {
				return true
			}
		}
		return false
	}, "the client logged in from the cache to wait for the pool's backend")
	select {
	case ans := <-done:
		t.Fatalf("the query ran while the only backend was in another client's transaction: %v", ans)
	default:
	}
	exec(t, a, "COMMIT")
	ans := <-done
	if ans.err != nil {
		t.Fatal(ans.err)
	}
	if want := []string{"UTC", "ISO, MDY", params["application_name"], holder}; !slicesEqual(ans.row, want) {
		t.Errorf("first query of the client logged in from the cache: %q, want %q", ans.row, want)
	}
}

func slicesEqual(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }

// TestTxPoolLoginCacheParameterStatus: the ParameterStatus values a login
// gets, whether it took a backend or came from the cache, are those a
// direct login to PostgreSQL with the same startup parameters gets (the
// server's normalization of the values included: a partial DateStyle, a
// lower-case TimeZone, an application_name past 63 bytes).
func TestTxPoolLoginCacheParameterStatus(t *testing.T) {
	p := loginCacheProxy(t, "postgres", nil)
	for _, params := range []map[string]string{
		{},
		{"TimeZone": "utc", "DateStyle": "iso"},
		{"DateStyle": "SQL", "timezone": "europe/berlin"},
		{"IntervalStyle": "iso_8601", "client_encoding": "latin1", "standard_conforming_strings": "on"},
		{"application_name": strings.Repeat("x", 70) + uniqueName("lc")},
	} {
		want, err := loginStatus(t, withParams(t, p.Direct, params))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ {
			before := cachedLogins(p)
			got, err := loginStatus(t, withParams(t, p.DSN(t, ""), params))
			if err != nil {
				t.Fatalf("%v, login %d: %v", params, i, err)
			}
			if !maps.Equal(got, want) {
				t.Errorf("%v, login %d: ParameterStatus\n%v\nPostgreSQL gives\n%v", params, i, got, want)
			}
			if cached := cachedLogins(p) - before; i == 1 && cached != 1 {
				t.Errorf("%v: the second login did not come from the cache", params)
			}
		}
	}
}

// TestTxPoolLoginCacheInvalidValue: a movable value the server refuses is
// never cached: each login sending it takes a backend and is refused as
// PostgreSQL refuses it (FATAL 22023), also once the pool has a cache.
func TestTxPoolLoginCacheInvalidValue(t *testing.T) {
	p := loginCacheProxy(t, "postgres", nil)
	connectDSN(t, p.DSN(t, "")) // the pool has logged in
	for _, params := range []map[string]string{{"TimeZone": "Nowhere"}, {"timezone": "Nowhere"}, {"DateStyle": "bogus"}} {
		_, derr := loginStatus(t, withParams(t, p.Direct, params))
		var want *pgconn.PgError
		if !errors.As(derr, &want) {
			t.Fatalf("direct login with %v: %v, want a server error", params, derr)
		}
		for i := 0; i < 2; i++ {
			before := cachedLogins(p)
			_, err := loginStatus(t, withParams(t, p.DSN(t, ""), params))
			var got *pgconn.PgError
			if !errors.As(err, &got) || got.Severity != "FATAL" || got.Code != want.Code || got.Message != want.Message {
				t.Errorf("%v, login %d through txlane: %v; PostgreSQL refuses it with %s %s %q", params, i, err, want.Severity, want.Code, want.Message)
			}
			if n := cachedLogins(p) - before; n != 0 {
				t.Errorf("%v, login %d: came from the cache", params, i)
			}
		}
	}
}

// TestTxPoolLoginCacheServerChange: a client's own SET of a server value
// (default_transaction_read_only) reaches no other client's login; a
// server value that changes for new backends (ALTER ROLE … SET) reaches a
// client that logged in from the stale cache at its first attach, and the
// logins after that one from the cache.
func TestTxPoolLoginCacheServerChange(t *testing.T) {
	role, p := roleProxy(t, "lc_role")
	dsn := p.DSN(t, role)
	a := connectDSN(t, dsn)
	if got := a.ParameterStatus("default_transaction_read_only"); got != "off" {
		t.Fatalf("default_transaction_read_only = %q at login", got)
	}
	exec(t, a, "SET default_transaction_read_only = on")
	exec(t, a, "SELECT 1") // on the backend again: txlane sets the client's value there
	before := cachedLogins(p)
	st, err := loginStatus(t, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if got := st["default_transaction_read_only"]; got != "off" {
		t.Errorf("a login after another client's SET default_transaction_read_only = on was told %q, want off", got)
	}
	if n := cachedLogins(p) - before; n != 1 {
		t.Errorf("a client's own SET kept the next login from the cache")
	}
	a.Close(context.Background())

	// The pool's backend ends; new backends of the role log in read-only.
	pgtest.Exec(t, "ALTER ROLE "+role+" SET default_transaction_read_only = on")
	endBackends(t, p, role)
	before = cachedLogins(p)
	b := connectDSN(t, dsn)
	if n := cachedLogins(p) - before; n != 1 {
		t.Fatalf("the login did not come from the cache")
	}
	if got := b.ParameterStatus("default_transaction_read_only"); got != "off" {
		t.Fatalf("login from the cache: default_transaction_read_only %q, want the cached off", got)
	}
	if got := scalar(t, b, "SHOW default_transaction_read_only"); got != "on" {
		t.Fatalf("the new backend has default_transaction_read_only %q", got)
	}
	if got := b.ParameterStatus("default_transaction_read_only"); got != "on" {
		t.Errorf("after its first query on a backend of default_transaction_read_only on, the client was told %q", got)
	}
	st, err = loginStatus(t, dsn)
	if err != nil {
		t.Fatal(err)
	}
	direct, err := loginStatus(t, withParams(t, p.Direct, map[string]string{"user": role}))
	if err != nil {
		t.Fatal(err)
	}
	if got := st["default_transaction_read_only"]; got != "on" || got != direct["default_transaction_read_only"] {
		t.Errorf("a login after the pool opened a backend of the new value was told %q, PostgreSQL gives %q", got, direct["default_transaction_read_only"])
	}
}

// TestTxPoolLoginCacheRoleRefused: a role that can no longer log in still
// gets in from the login cache; its first query, which needs a new backend,
// ends it with the server's refusal (as a direct login is refused).
func TestTxPoolLoginCacheRoleRefused(t *testing.T) {
	role, p := roleProxy(t, "lc_nologin")
	dsn := p.DSN(t, role)
	connectDSN(t, dsn).Close(context.Background())
	pgtest.Exec(t, "ALTER ROLE "+role+" NOLOGIN")
	endBackends(t, p, role)
	_, derr := loginStatus(t, withParams(t, p.Direct, map[string]string{"user": role}))
	var want *pgconn.PgError
	if !errors.As(derr, &want) {
		t.Fatalf("direct login of a NOLOGIN role: %v", derr)
	}
	c := connectDSN(t, dsn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Exec(ctx, "SELECT 1").ReadAll()
	var got *pgconn.PgError
	if !errors.As(err, &got) || got.Severity != "FATAL" || got.Code != want.Code || got.Message != want.Message {
		t.Errorf("first query of a NOLOGIN role logged in from the cache: %v; PostgreSQL refuses its login with %s %s %q", err, want.Severity, want.Code, want.Message)
	}
}

// TestTxPoolLoginCacheServerGone: with the server out of reach, a login
// the cache answers still gets in; its first query, for which the pool
// must open a backend, ends it with 57P03 (txlane cannot reach the server),
// not with a wait for query_wait_timeout.
func TestTxPoolLoginCacheServerGone(t *testing.T) {
	cfg := pgtest.Config(t)
	cutter := newTCPCutter(t, net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
	p := loginCacheProxy(t, cfg.User, func(o *proxy.Options) {
		c := o.Primary.Copy()
		c.Host, c.Port, c.Fallbacks = "127.0.0.1", uint16(cutter.ln.Addr().(*net.TCPAddr).Port), nil
		o.Primary = c
		o.QueryWaitTimeout = time.Minute
	})
	connectDSN(t, p.DSN(t, "")).Close(context.Background())
	cutter.ln.Close() // the server is out of reach; the pool's backend ends
	cutter.cut()
	waitFor(t, func() bool {
		for _, pl := range p.Server.Pools() {
			if pl.SvActive+pl.SvIdle+pl.SvTested > 0 {
				return false
			}
		}
		return true
	}, "the pool's backend to end")
	c := connectDSN(t, p.DSN(t, ""))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Exec(ctx, "SELECT 1").ReadAll()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Severity != "FATAL" || pe.Code != proxy.CodeCannotConnectNow {
		t.Fatalf("first query with the server out of reach: %v, want FATAL 57P03", err)
	}
}

// endBackends terminates role's backends and waits until p's pools hold
// none (txlane has seen them end).
func endBackends(t *testing.T, p *testProxy, role string) {
	t.Helper()
	pgtest.Exec(t, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = "+quote(role))
	waitFor(t, func() bool {
		for _, pl := range p.Server.Pools() {
			if pl.User == role && pl.SvActive+pl.SvIdle+pl.SvTested > 0 {
				return false
			}
		}
		return true
	}, "the pool's backend to end")
}

// TestSessionModeLoginKeepsBackend: in session mode a login txlane checks
// keeps the backend it takes; the login cache is not used.
func TestSessionModeLoginKeepsBackend(t *testing.T) {
	p := loginCacheProxy(t, "postgres", func(o *proxy.Options) { o.Pool = proxy.PoolOptions{Mode: proxy.PoolSession, Size: 4} })
	for i := 0; i < 3; i++ {
		connectDSN(t, p.DSN(t, ""))
	}
	for _, c := range p.Server.ClientList() {
		if c.ServerPID == 0 {
			t.Errorf("session-mode client %d holds no backend after its login", c.ID)
		}
	}
	if n := p.Metrics().PoolLogins("cache") + p.Metrics().PoolLogins("backend"); n != 0 {
		t.Errorf("txlane_pool_logins_total counted %v session-mode logins", n)
	}
}
