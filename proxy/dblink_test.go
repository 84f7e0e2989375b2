package proxy_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// TestDblinkConnectionStaysWithItsClient: a dblink connection outlives
// DISCARD ALL and RESET ALL in its backend, with its remote session and an
// open remote transaction (an adversarial tester's next client on the
// backend listed the first client's connections and committed its remote
// transaction). A client that opened one, named, unnamed, through a view
// that calls dblink_connect or a function whose body txlane cannot read, keeps its backend (pin dblink) and no other
// client runs there; when it leaves, its backend is closed, in both pool
// modes, and the next client finds no dblink connection.
func TestDblinkConnectionStaysWithItsClient(t *testing.T) {
	direct := directConn(t)
	if scalar(t, direct, "SELECT count(*) FROM pg_extension WHERE extname = 'dblink'") == "0" {
		if err := execErr(direct, "CREATE EXTENSION dblink"); err != nil {
			t.Skipf("dblink is not available: %v", err)
		}
		// Other tests' opaque functions would count as dblink calls.
		t.Cleanup(func() { pgtest.Exec(t, "DROP EXTENSION IF EXISTS dblink CASCADE") })
	}
	remote := strings.ReplaceAll(pgtest.DSN(t), "'", "''")
	view := uniqueName("dblview")
	pgtest.Exec(t, fmt.Sprintf("CREATE VIEW %s AS SELECT dblink_connect('hv', '%s') AS c", view, remote))
	t.Cleanup(func() { pgtest.Exec(t, "DROP VIEW IF EXISTS "+view) })
	fn := uniqueName("dblfn")
	pgtest.Exec(t, fmt.Sprintf("CREATE FUNCTION %s() RETURNS text LANGUAGE plpgsql AS $f$BEGIN RETURN dblink_connect('pf', '%s'); END$f$", fn, remote))
	t.Cleanup(func() { pgtest.Exec(t, "DROP FUNCTION IF EXISTS "+fn+"()") })
	opens := map[string]string{
		"named":   fmt.Sprintf("SELECT dblink_connect('c1', '%s')", remote),
		"unnamed": fmt.Sprintf("SELECT dblink_connect('%s')", remote),
		"view":    "SELECT c FROM " + view,
		// A body txlane cannot read, with dblink installed.
		"opaque function": "SELECT " + fn + "()",
	}
	for _, mode := range []proxy.PoolMode{proxy.PoolSession, proxy.PoolTransaction} {
		for name, open := range opens {
			t.Run(string(mode)+"/"+name, func(t *testing.T) {
				p := startProxy(t, func(o *proxy.Options) {
					o.Pool = proxy.PoolOptions{Mode: mode, Size: 1}
					o.QueryWaitTimeout = 300 * time.Millisecond
					o.ReadPool = proxy.ReadPoolOptions{Config: pgtest.Config(t), MaxConns: 1, AcquireTimeout: time.Second}
					o.Discover = true
					o.Auth = trustAuth(t, "postgres")
				})
				a := p.connect(t)
				pid := scalar(t, a, "SELECT pg_backend_pid()")
				exec(t, a, open)
				exec(t, a, "DISCARD ALL")
				if mode == proxy.PoolTransaction {
					waitFor(t, func() bool { return strings.Contains(pinnedReasons(p), "dblink") }, "a pinned by dblink")
					wantNotOnBackendOf(t, p.connect(t), "SELECT dblink_get_connections()", "dblink_connect")
				}
				a.Close(t.Context())
				next := nextAfterClosed(t, p, pid, "opened a dblink connection")
				if got := scalar(t, next, "SELECT coalesce(array_to_string(dblink_get_connections(), ','), '')"); got != "" {
					t.Fatalf("the next client sees dblink connections %q", got)
				}
			})
		}
	}
}

// nextAfterClosed waits for backend pid, whose client did what and left, to
// be closed, and returns the proxy's next client, which must be on another.
func nextAfterClosed(t *testing.T, p *testProxy, pid, what string) *pgconn.PgConn {
	t.Helper()
	waitFor(t, func() bool {
		return scalar(t, directConn(t), "SELECT count(*) FROM pg_stat_activity WHERE pid = "+pid) == "0"
	}, "the backend that "+what+" to be closed")
	next := p.connect(t)
	if got := scalar(t, next, "SELECT pg_backend_pid()"); got == pid {
		t.Fatalf("the next client got backend %s, which %s", pid, what)
	}
	return next
}
