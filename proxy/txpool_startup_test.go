package proxy_test

import (
	"context"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/proxy"
)

// startupClient is a client of TestTxPoolStartupParameters: the movable
// startup parameters it sends, and what PostgreSQL itself answers such a
// login (read directly).
type startupClient struct {
	params map[string]string
	conn   *pgconn.PgConn
	want   map[string]string // SHOW name → value, from a direct login
	status map[string]string // login ParameterStatus, from a direct login
}

// movableShows are the movable parameters the test reads back.
var movableShows = []string{"application_name", "TimeZone", "DateStyle", "client_encoding", "IntervalStyle", "standard_conforming_strings"}

// withParams adds startup parameters to a URL DSN.
func withParams(t *testing.T, dsn string, params map[string]string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for k, v := range params {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// showAll reads the movable parameters as the session sees them.
func showAll(t *testing.T, c *pgconn.PgConn) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range movableShows {
		out[n] = scalar(t, c, "SHOW "+n)
	}
	return out
}

// startupClients connects three clients of different movable startup
// parameters and one that sends none, through p, and reads what a direct
// login with the same parameters sees.
func startupClients(t *testing.T, p *testProxy) []*startupClient {
	t.Helper()
	clients := []*startupClient{
		{params: map[string]string{"application_name": uniqueName("sp_a"), "TimeZone": "Europe/Berlin", "DateStyle": "iso,dmy", "client_encoding": "LATIN1"}},
		{params: map[string]string{"application_name": uniqueName("sp_b"), "TimeZone": "America/New_York", "DateStyle": "SQL", "IntervalStyle": "iso_8601"}},
		{params: map[string]string{"application_name": uniqueName("sp_c"), "timezone": "Asia/Tokyo", "client_encoding": "EUC_JP"}},
		{params: map[string]string{}},
	}
	for _, c := range clients {
		direct := connectDSN(t, withParams(t, p.Direct, c.params))
		c.want = showAll(t, direct)
		c.status = map[string]string{}
		for _, n := range movableShows {
			c.status[n] = direct.ParameterStatus(n)
		}
		direct.Close(context.Background())
		c.conn = connectDSN(t, withParams(t, p.DSN(t, ""), c.params))
	}
	return clients
}

// TestTxPoolStartupParameters: in transaction mode clients that differ only
// in movable startup parameters share one pool (pool_size 1: one backend),
// and each always sees its own values — at login (ParameterStatus), in its
// transactions (SHOW, and pg_stat_activity for application_name), and after
// RESET, RESET ALL and DISCARD ALL — with relayed logins and with logins
// txlane checks (auth_type trust).
func TestTxPoolStartupParameters(t *testing.T) {
	for _, tc := range []struct {
		name string
		auth bool
	}{{"relayed", false}, {"trust", true}} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, func(o *proxy.Options) {
				o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 1}
				if tc.auth {
					o.Auth = trustAuth(t, "postgres")
				}
			})
			clients := startupClients(t, p)
			for i, c := range clients {
				for _, n := range movableShows {
					if got := c.conn.ParameterStatus(n); got != c.status[n] {
						t.Errorf("client %d: login ParameterStatus %s = %q, PostgreSQL gives %q", i, n, got, c.status[n])
					}
				}
			}
			pids := map[string]bool{}
			check := func(round int) {
				for i, c := range clients {
					res := exec(t, c.conn, "BEGIN; SELECT current_setting('application_name'), current_setting('TimeZone'), current_setting('DateStyle'), "+
						"current_setting('client_encoding'), current_setting('IntervalStyle'), current_setting('standard_conforming_strings'), "+
						"(SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()), pg_backend_pid()::text; COMMIT")
					row := res[1].Rows[0]
					for j, n := range movableShows {
						if got := string(row[j]); got != c.want[n] {
							t.Errorf("round %d, client %d: %s = %q, want %q", round, i, n, got, c.want[n])
						}
					}
					if got := string(row[6]); got != c.want["application_name"] {
						t.Errorf("round %d, client %d: pg_stat_activity shows application_name %q, want %q", round, i, got, c.want["application_name"])
					}
					pids[string(row[7])] = true
				}
			}
			for round := 0; round < 3; round++ {
				check(round)
			}
			if len(pids) != 1 {
				t.Errorf("clients ran on %d backends, want 1 (one pool of pool_size 1)", len(pids))
			}
			pools := p.Server.Pools()
			if len(pools) != 1 || pools[0].SvActive+pools[0].SvIdle != 1 {
				t.Errorf("SHOW POOLS: %+v, want one pool with one backend", pools)
			}

			// RESET of a movable parameter gives the client its own login
			// value, not the backend's (another client's, or the pool's).
			for _, reset := range []string{"RESET application_name", "SET application_name TO DEFAULT", "RESET ALL", "DISCARD ALL"} {
				for _, c := range clients {
					exec(t, c.conn, "SET application_name = 'other'; SET TimeZone = 'Pacific/Auckland'")
				}
				for i, c := range clients {
					exec(t, c.conn, reset)
					if got := c.conn.ParameterStatus("application_name"); got != c.want["application_name"] {
						t.Errorf("%s, client %d: ParameterStatus application_name = %q, want %q", reset, i, got, c.want["application_name"])
					}
				}
				for i, c := range clients {
					got := scalar(t, c.conn, "SHOW application_name")
					if got != c.want["application_name"] {
						t.Errorf("%s, client %d: application_name = %q, want its login's %q", reset, i, got, c.want["application_name"])
					}
					wantTZ := "Pacific/Auckland"
					if reset != "RESET application_name" && reset != "SET application_name TO DEFAULT" {
						wantTZ = c.want["TimeZone"]
					}
					if got := scalar(t, c.conn, "SHOW TimeZone"); got != wantTZ {
						t.Errorf("%s, client %d: TimeZone = %q, want %q", reset, i, got, wantTZ)
					}
				}
			}
			exec(t, clients[0].conn, "RESET ALL")
			exec(t, clients[1].conn, "RESET ALL")
			check(3)

			// A pinned client keeps its backend: a RESET there is undone
			// before its next statement.
			c := clients[0]
			exec(t, c.conn, "CREATE TEMP TABLE sp_pin (i int)")
			exec(t, c.conn, "SET application_name = 'other'")
			exec(t, c.conn, "RESET application_name")
			if got := scalar(t, c.conn, "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"); got != c.want["application_name"] {
				t.Errorf("pinned, after RESET: application_name = %q, want %q", got, c.want["application_name"])
			}
			exec(t, c.conn, "DROP TABLE sp_pin")
			check(4)
		})
	}
}

// TestTxPoolStartupParametersNoExtraQuery: clients whose movable parameters
// are equal take the shared backend without a query of txlane's own; a
// client of other values costs one.
func TestTxPoolStartupParametersNoExtraQuery(t *testing.T) {
	p := startProxy(t, func(o *proxy.Options) {
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 1}
		o.Auth = trustAuth(t, "postgres")
	})
	same := map[string]string{"application_name": uniqueName("sp_same"), "TimeZone": "Europe/Berlin"}
	a := connectDSN(t, withParams(t, p.DSN(t, ""), same))
	b := connectDSN(t, withParams(t, p.DSN(t, ""), same))
	// NOTE: both read their session back once (a SET), so that both have
	// settings of their own: a client never read back has none, and one
	// read back has its statement_timeout and lock_timeout, which move.
	exec(t, a, "SET extra_float_digits = 2")
	exec(t, b, "SET extra_float_digits = 2")
	before := proxy.MoveQueries()
	for i := 0; i < 10; i++ {
		exec(t, a, "BEGIN; SELECT 1; COMMIT")
		exec(t, b, "SELECT 1")
	}
	if got := proxy.MoveQueries() - before; got != 0 {
		t.Errorf("%d queries moved settings between clients of equal values, want none", got)
	}
	other := connectDSN(t, withParams(t, p.DSN(t, ""), map[string]string{"application_name": uniqueName("sp_other")}))
	// Its login set its values on the backend; a and other then take turns.
	exec(t, other, "SELECT 1")
	exec(t, a, "SELECT 1")
	exec(t, other, "SELECT 1")
	if got := proxy.MoveQueries() - before; got != 2 {
		t.Errorf("%d queries moved settings for two changes of values, want 2", got)
	}
}

// TestTxPoolStartupParametersResetUnseen: a RESET txlane cannot read (in a
// DO block) gives the client its own login value too, once its backend is
// idle, and tells it so. The DO block pins the client (it may have set
// custom settings by names txlane cannot see), so the value is put back on
// the backend it keeps.
func TestTxPoolStartupParametersResetUnseen(t *testing.T) {
	p := startProxy(t, func(o *proxy.Options) {
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 1}
		o.Auth = trustAuth(t, "postgres")
	})
	c := connectDSN(t, withParams(t, p.DSN(t, ""), map[string]string{"TimeZone": "Asia/Tokyo", "application_name": "unseen_reset"}))
	exec(t, c, "SET TimeZone = 'Pacific/Auckland'; SET application_name = 'other'")
	exec(t, c, "DO $$BEGIN RESET TimeZone; RESET application_name; END$$")
	for i := 0; i < 2; i++ {
		if got := scalar(t, c, "SELECT current_setting('TimeZone') || ' ' || current_setting('application_name')"); got != "Asia/Tokyo unseen_reset" {
			t.Fatalf("after a RESET in a DO block: %q, want the login's values", got)
		}
	}
	if tz, app := c.ParameterStatus("TimeZone"), c.ParameterStatus("application_name"); tz != "Asia/Tokyo" || app != "unseen_reset" {
		t.Fatalf("the client was told TimeZone %q, application_name %q", tz, app)
	}
}
