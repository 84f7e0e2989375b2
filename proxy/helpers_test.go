package proxy_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
	"github.com/txlane/txlane/proxy/auth"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// testProxy is a txlane proxy serving on a loopback port for one test.
type testProxy struct {
	*proxy.Server
	Addr string
	// Direct is the DSN of the PostgreSQL server behind the proxy.
	Direct string
}

// startProxy starts a proxy in front of the test database. mutate, if not nil,
// adjusts the options before the server starts.
func startProxy(tb testing.TB, mutate func(*proxy.Options)) *testProxy {
	tb.Helper()
	return startProxyOn(tb, pgtest.DSN(tb), mutate)
}

// startProxyOn starts a proxy in front of the server of the DSN direct.
func startProxyOn(tb testing.TB, direct string, mutate func(*proxy.Options)) *testProxy {
	tb.Helper()
	cfg, err := pgconn.ParseConfig(direct)
	if err != nil {
		tb.Fatal(err)
	}
	opts := proxy.Options{Primary: cfg, Logger: zaptest.NewLogger(tb, zaptest.Level(zap.WarnLevel))}
	if mutate != nil {
		mutate(&opts)
	}
	rerouteReadsCatalog(tb, &opts)
	srv, err := proxy.New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return &testProxy{Server: srv, Addr: ln.Addr().String(), Direct: direct}
}

// DSN returns a connection string that reaches the test database through the
// proxy as user (empty: the direct DSN's user).
func (p *testProxy) DSN(tb testing.TB, user string) string {
	tb.Helper()
	u, err := url.Parse(p.Direct)
	if err != nil {
		tb.Fatal(err)
	}
	u.Host = p.Addr
	if user != "" {
		u.User = url.User(user)
	}
	q := u.Query()
	q.Set("sslmode", "disable")
	u.RawQuery = q.Encode()
	return u.String()
}

// connect opens a pgconn connection through the proxy.
func (p *testProxy) connect(tb testing.TB) *pgconn.PgConn {
	tb.Helper()
	return connectDSN(tb, p.DSN(tb, ""))
}

// connectDSN opens a pgconn connection to dsn, closed at the end of the test.
func connectDSN(tb testing.TB, dsn string) *pgconn.PgConn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		tb.Fatalf("connect to %s: %v", dsn, err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// exec runs sql with the simple protocol and fails the test on error.
func exec(tb testing.TB, conn *pgconn.PgConn, sql string) []*pgconn.Result {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		tb.Fatalf("exec %q: %v", sql, err)
	}
	return res
}

// scalar returns the first column of the first row of sql's result as text.
func scalar(tb testing.TB, conn *pgconn.PgConn, sql string) string {
	tb.Helper()
	res := exec(tb, conn, sql)
	last := res[len(res)-1]
	if len(last.Rows) == 0 {
		tb.Fatalf("%q returned no rows", sql)
	}
	return string(last.Rows[0][0])
}

// uniqueName returns a name for a table or role private to one test.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano()%1_000_000_000)
}

// trustAuth makes txlane check logins itself (auth_type trust) for user,
// whom the test cluster trusts: logins then take pooled backends, and a
// pool can open backends by itself.
func trustAuth(tb testing.TB, user string) proxy.AuthOptions {
	tb.Helper()
	return trustAuthUsers(tb, user)
}

// trustAuthUsers is trustAuth for several users.
func trustAuthUsers(tb testing.TB, users ...string) proxy.AuthOptions {
	tb.Helper()
	var file strings.Builder
	for _, u := range users {
		file.WriteString(strconv.Quote(u) + ` "unused: the server trusts this role"` + "\n")
	}
	f, err := auth.ParseFile("users.txt", []byte(file.String()))
	if err != nil {
		tb.Fatal(err)
	}
	return proxy.AuthOptions{Type: auth.MethodTrust, File: f}
}
