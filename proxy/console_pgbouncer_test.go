package proxy_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// The admin console as a PgBouncer user reads it: SHOW CLIENTS' state
// (active, idle, waiting), SHOW POOLS' cl_waiting and maxwait agreeing
// with it, every pool listed, SHOW VERSION.

// named returns the rows of r keyed by column name.
func named(r *pgconn.Result) []map[string]string {
	out := make([]map[string]string, len(r.Rows))
	for i, row := range r.Rows {
		m := make(map[string]string, len(row))
		for j, f := range r.FieldDescriptions {
			m[f.Name] = string(row[j])
		}
		out[i] = m
	}
	return out
}

// consoleShow runs one Query of SHOW commands on the console and returns
// each result's rows by column name.
func consoleShow(t *testing.T, admin *pgconn.PgConn, sql string) [][]map[string]string {
	t.Helper()
	var out [][]map[string]string
	for _, r := range exec(t, admin, sql) {
		out = append(out, named(r))
	}
	return out
}

// startConsoleProxy starts a proxy whose console pgtest.AppRole may use,
// and connects to that console.
func startConsoleProxy(t *testing.T, mutate func(*proxy.Options)) (*testProxy, *pgconn.PgConn) {
	t.Helper()
	p := startProxy(t, func(o *proxy.Options) {
		o.AdminUsers = []string{pgtest.AppRole}
		if mutate != nil {
			mutate(o)
		}
	})
	admin, err := adminConnect(t, p, pgtest.AppRole, "")
	if err != nil {
		t.Fatal(err)
	}
	return p, admin
}

// micros reads a wait column pair (wait, wait_us or maxwait, maxwait_us).
func micros(t *testing.T, row map[string]string, s, us string) time.Duration {
	t.Helper()
	a, err1 := strconv.Atoi(row[s])
	b, err2 := strconv.Atoi(row[us])
	if err1 != nil || err2 != nil || b < 0 || b >= 1_000_000 {
		t.Fatalf("%s=%q %s=%q", s, row[s], us, row[us])
	}
	return time.Duration(a)*time.Second + time.Duration(b)*time.Microsecond
}

// clientRow picks the SHOW CLIENTS row whose column key holds value.
func clientRow(rows []map[string]string, key, value string) map[string]string {
	for _, r := range rows {
		if r[key] == value {
			return r
		}
	}
	return nil
}

// proxyClients drops the admin console's own connections from SHOW
// CLIENTS' rows.
func proxyClients(rows []map[string]string) []map[string]string {
	var out []map[string]string
	for _, r := range rows {
		if r["database"] != proxy.AdminDatabase {
			out = append(out, r)
		}
	}
	return out
}

// poolRow picks SHOW POOLS' primary-lane row of database and user.
func poolRow(rows []map[string]string, database, user string) map[string]string {
	for _, r := range rows {
		if r["database"] == database && r["user"] == user && r["lane"] == proxy.LanePrimary {
			return r
		}
	}
	return nil
}

// TestConsoleWaitingClient: pool_mode transaction with pool_size 1 and two
// clients. While a holds the only backend (inside a transaction) and b's
// request waits for it, SHOW CLIENTS shows a active (linked to that
// backend) and b waiting for a server, and SHOW POOLS, read in the same
// Query right after, counts b in cl_waiting with a maxwait no shorter than
// b's wait. Once a commits, b runs and both are idle, nobody waits. When
// both have left, the pool is still listed with its backend idle and no
// clients (PgBouncer lists every pool), as SHOW SERVERS shows it.
func TestConsoleWaitingClient(t *testing.T) {
	p, admin := startConsoleProxy(t, func(o *proxy.Options) {
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 1}
	})
	a, b := p.connect(t), p.connect(t)
	exec(t, a, "BEGIN")
	pid := scalar(t, a, "SELECT pg_backend_pid()")
	done := make(chan error, 1)
	go func() { done <- b.Exec(context.Background(), "SELECT 'b ran'").Close() }()

	var clients, pools []map[string]string
	var waiting map[string]string
	waitFor(t, func() bool {
		res := consoleShow(t, admin, "SHOW CLIENTS; SHOW POOLS")
		clients, pools = res[0], res[1]
		waiting = clientRow(clients, "state", proxy.ClientWaiting)
		return waiting != nil
	}, "b to show as waiting")
	if len(proxyClients(clients)) != 2 {
		t.Fatalf("SHOW CLIENTS: %v, want a and b (and the console)", clients)
	}
	holder := clientRow(clients, "link", pid)
	if holder == nil || holder["state"] != proxy.ClientActive || holder["tx_status"] != "T" || holder["waiting_for"] != "" ||
		micros(t, holder, "wait", "wait_us") != 0 {
		t.Fatalf("SHOW CLIENTS: a (backend %s) is %v, want active in a transaction, no wait", pid, holder)
	}
	if waiting["waiting_for"] != proxy.WaitingForServer || waiting["link"] != "" || waiting["tx_status"] != "I" || waiting["type"] != "C" {
		t.Fatalf("SHOW CLIENTS: b is %v, want waiting for a server, no backend", waiting)
	}
	pool := poolRow(pools, waiting["database"], waiting["user"])
	if pool == nil {
		t.Fatalf("SHOW POOLS has no row for %s/%s: %v", waiting["database"], waiting["user"], pools)
	}
	if pool["cl_active"] != "1" || pool["cl_waiting"] != "1" || pool["sv_active"] != "1" || pool["sv_idle"] != "0" ||
		pool["pool_mode"] != "transaction" {
		t.Fatalf("SHOW POOLS: %v, want cl_active 1, cl_waiting 1, sv_active 1, sv_idle 0", pool)
	}
	if wait, maxWait := micros(t, waiting, "wait", "wait_us"), micros(t, pool, "maxwait", "maxwait_us"); maxWait <= 0 || maxWait < wait {
		t.Fatalf("SHOW POOLS maxwait %s, b's wait in SHOW CLIENTS (read before) %s", maxWait, wait)
	}

	exec(t, a, "COMMIT")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		res := consoleShow(t, admin, "SHOW POOLS")
		pool = poolRow(res[0], waiting["database"], waiting["user"])
		return pool != nil && pool["sv_idle"] == "1"
	}, "the backend to go back to the pool")
	for _, c := range proxyClients(consoleShow(t, admin, "SHOW CLIENTS")[0]) {
		if c["state"] != proxy.ClientIdle || c["link"] != "" || c["waiting_for"] != "" {
			t.Errorf("SHOW CLIENTS after the commit: %v, want idle", c)
		}
	}
	if pool["cl_active"] != "2" || pool["cl_waiting"] != "0" || pool["sv_active"] != "0" || micros(t, pool, "maxwait", "maxwait_us") != 0 {
		t.Fatalf("SHOW POOLS after the commit: %v, want cl_active 2 (idle clients count, as PgBouncer's), nobody waiting", pool)
	}

	a.Close(context.Background())
	b.Close(context.Background())
	waitFor(t, func() bool { return len(proxyClients(consoleShow(t, admin, "SHOW CLIENTS")[0])) == 0 }, "a and b to leave")
	res := consoleShow(t, admin, "SHOW POOLS; SHOW SERVERS")
	pool = poolRow(res[0], waiting["database"], waiting["user"])
	if pool == nil {
		t.Fatalf("SHOW POOLS lists no pool for %s/%s once its clients left: %v", waiting["database"], waiting["user"], res[0])
	}
	if pool["cl_active"] != "0" || pool["cl_waiting"] != "0" || pool["sv_active"] != "0" || pool["sv_idle"] != "1" {
		t.Fatalf("SHOW POOLS without clients: %v, want cl_active 0, sv_idle 1", pool)
	}
	if s := res[1]; len(s) != 1 || s[0]["state"] != "idle" || s[0]["remote_pid"] != pid || s[0]["link"] != "" {
		t.Fatalf("SHOW SERVERS without clients: %v, want backend %s idle", s, pid)
	}
}

// TestConsolePausedClientWaits: a request held by PAUSE has not begun to
// run: SHOW CLIENTS shows its client waiting (for resume), as PgBouncer
// shows clients queued while paused, and SHOW POOLS counts it in
// cl_waiting with its maxwait; after RESUME it runs, and the client (pool
// mode session: it keeps its backend) is active again.
func TestConsolePausedClientWaits(t *testing.T) {
	p, admin := startConsoleProxy(t, nil)
	c := p.connect(t)
	pid := scalar(t, c, "SELECT pg_backend_pid()")
	exec(t, admin, "PAUSE")
	// On a failure, the held request must end before the proxy stops.
	t.Cleanup(func() { admin.Exec(context.Background(), "RESUME").Close() })
	done := make(chan error, 1)
	go func() { done <- c.Exec(context.Background(), "SELECT 'held'").Close() }()
	var row, pool map[string]string
	waitFor(t, func() bool {
		res := consoleShow(t, admin, "SHOW CLIENTS; SHOW POOLS")
		row = clientRow(res[0], "link", pid)
		if row == nil {
			t.Fatalf("SHOW CLIENTS lacks the client of backend %s: %v", pid, res[0])
		}
		pool = poolRow(res[1], row["database"], row["user"])
		return row["state"] == proxy.ClientWaiting
	}, "the held client to show as waiting")
	if row["waiting_for"] != proxy.WaitingForResume {
		t.Fatalf("SHOW CLIENTS: %v, want waiting for resume", row)
	}
	if pool == nil || pool["cl_waiting"] != "1" || pool["cl_active"] != "0" || pool["sv_active"] != "1" ||
		micros(t, pool, "maxwait", "maxwait_us") < micros(t, row, "wait", "wait_us") {
		t.Fatalf("SHOW POOLS while held: %v (client %v), want cl_waiting 1 and maxwait at least its wait", pool, row)
	}
	exec(t, admin, "RESUME")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	row = clientRow(consoleShow(t, admin, "SHOW CLIENTS")[0], "link", pid)
	if row == nil || row["state"] != proxy.ClientActive || row["waiting_for"] != "" {
		t.Fatalf("SHOW CLIENTS after RESUME: %v, want active (session mode: linked to its backend)", row)
	}
}

// TestConsoleShowVersion: SHOW VERSION has PgBouncer's one column,
// version, and one row: "txlane " and Options.Version ("dev" unset).
func TestConsoleShowVersion(t *testing.T) {
	for _, tc := range []struct{ version, want string }{{"v9.8.7-test", "txlane v9.8.7-test"}, {"", "txlane dev"}} {
		_, admin := startConsoleProxy(t, func(o *proxy.Options) { o.Version = tc.version })
		res := consoleShow(t, admin, "SHOW VERSION")[0]
		if len(res) != 1 || len(res[0]) != 1 || res[0]["version"] != tc.want {
			t.Errorf("Version %q: SHOW VERSION %v, want one row, version %q", tc.version, res, tc.want)
		}
	}
}
