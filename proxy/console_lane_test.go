package proxy_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// laneRow picks the row of rows whose lane column is lane and whose column
// key holds value.
func laneRow(rows []map[string]string, lane, key, value string) map[string]string {
	for _, r := range rows {
		if r["lane"] == lane && r[key] == value {
			return r
		}
	}
	return nil
}

// TestConsoleVectorLane: the vector lane's connections show in SHOW
// SERVERS (lane vector, the read pool's login as user) and its pool in
// SHOW POOLS, also in session mode with no client left. While a read holds
// the only lane connection (blocked by a lock taken directly) and a second
// read waits for it, the connection is active and linked to the first
// client's id, and the pool counts one active client, one waiting with a
// maxwait, one active server; afterwards the connection is idle and
// unlinked. The primary lane's rows say lane primary.
func TestConsoleVectorLane(t *testing.T) {
	bed := startVectorProxy(t, func(o *proxy.Options) {
		o.AdminUsers = []string{pgtest.AppRole}
		o.ReadPool.MaxConns = 1
		o.ReadPool.AcquireTimeout = 30 * time.Second
	})
	admin, err := adminConnect(t, bed.testProxy, pgtest.AppRole, "")
	if err != nil {
		t.Fatal(err)
	}
	laneUser := pgtest.Config(t).User
	db := pgtest.Config(t).Database
	read := "SELECT pg_backend_pid() FROM " + bed.table + " LIMIT 1"

	c := bed.connect(t)
	primaryPID := backendPID(t, c)
	lanePID := scalar(t, c, read)
	if lanePID == primaryPID {
		t.Fatalf("the read ran on the primary (backend %s)", primaryPID)
	}
	res := consoleShow(t, admin, "SHOW SERVERS")
	if r := laneRow(res[0], proxy.LanePrimary, "remote_pid", primaryPID); r == nil || r["state"] != "active" {
		t.Fatalf("SHOW SERVERS: no active primary-lane row for backend %s: %v", primaryPID, res[0])
	}
	c.Close(context.Background())
	waitFor(t, func() bool { return len(proxyClients(consoleShow(t, admin, "SHOW CLIENTS")[0])) == 0 }, "the client to leave")

	res = consoleShow(t, admin, "SHOW POOLS; SHOW SERVERS")
	pool := laneRow(res[0], proxy.LaneVector, "database", db)
	if pool == nil || pool["user"] != laneUser || pool["sv_idle"] != "1" || pool["sv_active"] != "0" || pool["cl_active"] != "0" ||
		pool["cl_waiting"] != "0" || pool["pool_mode"] != "transaction" || pool["pool_size"] != "1" {
		t.Fatalf("SHOW POOLS with no client: %v, want the vector pool of %s (user %s) with its connection idle", res[0], db, laneUser)
	}
	srv := laneRow(res[1], proxy.LaneVector, "remote_pid", lanePID)
	if srv == nil || srv["type"] != "S" || srv["user"] != laneUser || srv["database"] != db || srv["state"] != "idle" ||
		srv["link"] != "" || srv["connect_time"] == "" || srv["request_time"] == "" || srv["port"] == "" {
		t.Fatalf("SHOW SERVERS with no client: %v, want lane connection %s idle", res[1], lanePID)
	}
	if r := laneRow(res[1], proxy.LanePrimary, "remote_pid", primaryPID); r != nil {
		t.Fatalf("SHOW SERVERS lists the departed client's backend: %v", r)
	}

	// A lock taken directly holds the next read on the lane connection.
	direct := directConn(t)
	exec(t, direct, "BEGIN; LOCK TABLE "+bed.table+" IN ACCESS EXCLUSIVE MODE")
	a, b := bed.connect(t), bed.connect(t)
	done := make(chan error, 2)
	go func() { done <- a.Exec(context.Background(), read).Close() }()
	var active map[string]string
	waitFor(t, func() bool {
		active = laneRow(consoleShow(t, admin, "SHOW SERVERS")[0], proxy.LaneVector, "state", "active")
		return active != nil && active["link"] != ""
	}, "the lane connection to serve a")
	go func() { done <- b.Exec(context.Background(), read).Close() }()
	var clients []map[string]string
	waitFor(t, func() bool {
		res = consoleShow(t, admin, "SHOW POOLS; SHOW CLIENTS")
		pool, clients = laneRow(res[0], proxy.LaneVector, "database", db), res[1]
		return pool != nil && pool["cl_waiting"] == "1"
	}, "b's read to wait for the lane")
	if pool["cl_active"] != "1" || pool["sv_active"] != "1" || pool["sv_idle"] != "0" || micros(t, pool, "maxwait", "maxwait_us") <= 0 {
		t.Fatalf("SHOW POOLS while a reads and b waits: %v, want cl_active 1, cl_waiting 1, sv_active 1, a maxwait", pool)
	}
	if active["remote_pid"] != lanePID {
		t.Fatalf("SHOW SERVERS: active lane connection %v, want backend %s", active, lanePID)
	}
	if cl := clientRow(clients, "id", active["link"]); cl == nil {
		t.Fatalf("the lane connection's link %s is no client of SHOW CLIENTS: %v", active["link"], clients)
	}
	exec(t, direct, "COMMIT")
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool {
		r := laneRow(consoleShow(t, admin, "SHOW SERVERS")[0], proxy.LaneVector, "remote_pid", lanePID)
		return r != nil && r["state"] == "idle" && r["link"] == ""
	}, "the lane connection to be idle and unlinked")
}

// TestConsoleListsItself: SHOW CLIENTS lists the admin console's own
// connections, as PgBouncer lists its console's: database txlane, the
// console user, state active, its address, application_name and an id of
// its own, no backend; and SHOW POOLS a console row per user counting them
// (pool_mode statement, PgBouncer's admin pool's). A console that leaves
// is no longer listed.
func TestConsoleListsItself(t *testing.T) {
	p, admin := startConsoleProxy(t, nil)
	c := p.connect(t)
	u, err := url.Parse(p.adminDSN(t, pgtest.AppRole))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", "second-console")
	u.RawQuery = q.Encode()
	second := connectDSN(t, u.String())
	clientPID := backendPID(t, c)

	res := consoleShow(t, admin, "SHOW CLIENTS; SHOW POOLS")
	consoles := clientRowsOf(res[0], proxy.AdminDatabase)
	if len(consoles) != 2 {
		t.Fatalf("SHOW CLIENTS: %v, want both console connections", res[0])
	}
	ids := map[string]bool{}
	for _, r := range res[0] {
		ids[r["id"]] = true
	}
	if len(ids) != len(res[0]) || len(res[0]) != 3 {
		t.Fatalf("SHOW CLIENTS: %v, want 3 rows with distinct ids", res[0])
	}
	for _, r := range consoles {
		if r["type"] != "C" || r["user"] != pgtest.AppRole || r["state"] != proxy.ClientActive || r["addr"] != "127.0.0.1" ||
			r["port"] == "" || r["connect_time"] == "" || r["link"] != "" || r["tx_status"] != "I" || r["waiting_for"] != "" {
			t.Fatalf("SHOW CLIENTS console row %v", r)
		}
	}
	if clientRow(consoles, "application_name", "second-console") == nil {
		t.Fatalf("SHOW CLIENTS: no console with application_name 'second-console': %v", consoles)
	}
	if r := clientRow(res[0], "link", clientPID); r == nil || r["database"] == proxy.AdminDatabase {
		t.Fatalf("SHOW CLIENTS lacks the proxy's client: %v", res[0])
	}
	pool := laneRow(res[1], proxy.LaneConsole, "database", proxy.AdminDatabase)
	if pool == nil || pool["user"] != pgtest.AppRole || pool["cl_active"] != "2" || pool["cl_waiting"] != "0" ||
		pool["sv_active"] != "0" || pool["sv_idle"] != "0" || pool["pool_mode"] != "statement" {
		t.Fatalf("SHOW POOLS: %v, want a console row with cl_active 2", res[1])
	}

	second.Close(context.Background())
	waitFor(t, func() bool {
		return len(clientRowsOf(consoleShow(t, admin, "SHOW CLIENTS")[0], proxy.AdminDatabase)) == 1
	},
		"the second-console to leave SHOW CLIENTS")
}

// clientRowsOf picks SHOW CLIENTS' rows of database.
func clientRowsOf(rows []map[string]string, database string) []map[string]string {
	var out []map[string]string
	for _, r := range rows {
		if r["database"] == database {
			out = append(out, r)
		}
	}
	return out
}
