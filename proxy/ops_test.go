package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// opsBed is a proxy with a vector lane and a plain table private to the test,
// which the policy may or may not list as a vector table.
type opsBed struct {
	*testProxy
	table string
	opts  proxy.Options // as started, for Reload
}

func startOpsProxy(t *testing.T, mutate func(*proxy.Options)) *opsBed {
	t.Helper()
	table := uniqueName("ops_items")
	pgtest.Exec(t, fmt.Sprintf(`CREATE TABLE %[1]s (id int PRIMARY KEY); INSERT INTO %[1]s VALUES (1), (2);
GRANT ALL ON %[1]s TO PUBLIC`, table))
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+table) })
	var opts proxy.Options
	p := startProxy(t, func(o *proxy.Options) {
		o.ReadPool = proxy.ReadPoolOptions{Config: pgtest.Config(t), MaxConns: 2, AcquireTimeout: time.Second}
		if mutate != nil {
			mutate(o)
		}
		opts = *o
	})
	return &opsBed{testProxy: p, table: table, opts: opts}
}

// pgCode returns the SQLSTATE of err, or "".
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// directScalar runs sql on the test database directly and returns the first
// column of its first row.
func directScalar(t *testing.T, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	return scalar(t, conn, sql)
}

// opsExecErr runs sql and returns its error.
func opsExecErr(conn *pgconn.PgConn, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := conn.Exec(ctx, sql).ReadAll()
	return err
}

// TestReloadTakesEffectAtNextUnit: a reload changes the routing of a session
// already connected, at its next request, without dropping it; an
// invalid policy changes nothing.
func TestReloadTakesEffectAtNextUnit(t *testing.T) {
	bed := startOpsProxy(t, nil)
	conn := bed.connect(t)
	m := bed.Metrics()
	sql := "SELECT count(*) FROM " + bed.table

	before := m.Routed("vector", "vector_read_idle")
	if got := scalar(t, conn, sql); got != "2" {
		t.Fatalf("count = %s", got)
	}
	if m.Routed("vector", "vector_read_idle") != before {
		t.Fatal("routed to the vector lane before the table was a vector table")
	}

	next := bed.opts
	next.Rules.VectorTables = []string{bed.table}
	if err := bed.Reload(next); err != nil {
		t.Fatal(err)
	}
	scalar(t, conn, sql)
	if m.Routed("vector", "vector_read_idle") != before+1 {
		t.Fatal("the reloaded policy did not route the read to the vector lane")
	}

	bad := next
	bad.Rules.VectorTables = []string{"no such.\"table"}
	if err := bed.Reload(bad); err == nil {
		t.Fatal("Reload accepted an invalid table name")
	}
	scalar(t, conn, sql)
	if m.Routed("vector", "vector_read_idle") != before+2 {
		t.Fatal("an invalid reload changed the policy")
	}
	if p := bed.Policy(); len(p.Rules.VectorTables()) != 1 || p.Rules.VectorTables()[0].Name != bed.table {
		t.Fatalf("policy in force: %v", p.Rules.VectorTables())
	}

	// Pool sizes change live; the lane keeps serving.
	resized := next
	resized.ReadPool.MaxConns = 3
	if err := bed.Reload(resized); err != nil {
		t.Fatal(err)
	}
	scalar(t, conn, sql)
	lanes := 0
	for _, p := range bed.Pools() {
		if p.Lane != proxy.LaneVector {
			continue
		}
		lanes++
		if p.PoolSize != 3 {
			t.Errorf("vector pool %s max %d after resize, want 3", p.Database, p.PoolSize)
		}
	}
	if lanes == 0 {
		t.Errorf("no vector-lane pool listed: %v", bed.Pools())
	}
}

// TestShutdownLetsTransactionsFinish: idle clients are closed at once with
// 57P01, a client inside a transaction may still commit, and Shutdown
// returns nil once it has left.
func TestShutdownLetsTransactionsFinish(t *testing.T) {
	bed := startOpsProxy(t, nil)
	idle := bed.connect(t)
	inTx := bed.connect(t)
	exec(t, inTx, "BEGIN")
	exec(t, inTx, fmt.Sprintf("INSERT INTO %s VALUES (10)", bed.table))

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- bed.Shutdown(ctx)
	}()

	// The idle client is told and closed.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := opsExecErr(idle, "SELECT 1")
		if err != nil {
			if code := pgCode(err); code != "" && code != proxy.CodeAdminShutdown {
				t.Fatalf("idle client: %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("idle client still served after Shutdown")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// New clients are refused.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if c, err := pgconn.Connect(ctx, bed.DSN(t, "")); err == nil {
		c.Close(ctx)
		t.Error("a new client was accepted during shutdown")
	}
	cancel()

	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v while a transaction was open", err)
	case <-time.After(100 * time.Millisecond):
	}
	exec(t, inTx, fmt.Sprintf("INSERT INTO %s VALUES (11)", bed.table))
	exec(t, inTx, "COMMIT")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return after the transaction ended")
	}
	if n := directScalar(t, fmt.Sprintf("SELECT count(*) FROM %s WHERE id >= 10", bed.table)); n != "2" {
		t.Fatalf("committed rows: %s, want 2", n)
	}
}

// TestShutdownTimeout: a transaction still open at the deadline is cut off
// and rolled back; Shutdown reports the deadline.
func TestShutdownTimeout(t *testing.T) {
	bed := startOpsProxy(t, nil)
	inTx := bed.connect(t)
	exec(t, inTx, "BEGIN")
	exec(t, inTx, fmt.Sprintf("INSERT INTO %s VALUES (20)", bed.table))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := bed.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want the deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Shutdown took %s", d)
	}
	err := opsExecErr(inTx, "COMMIT")
	if err == nil {
		t.Fatal("COMMIT after a forced stop succeeded")
	}
	if n := directScalar(t, fmt.Sprintf("SELECT count(*) FROM %s WHERE id = 20", bed.table)); n != "0" {
		t.Fatalf("the cut-off transaction committed")
	}
}

// TestIdleInTransactionTimeout closes a client idle inside a transaction with
// FATAL 25P03 and leaves idle clients outside transactions alone.
func TestIdleInTransactionTimeout(t *testing.T) {
	bed := startOpsProxy(t, func(o *proxy.Options) { o.IdleInTransactionTimeout = 200 * time.Millisecond })
	idle := bed.connect(t)
	inTx := bed.connect(t)
	exec(t, inTx, "BEGIN")
	exec(t, inTx, fmt.Sprintf("INSERT INTO %s VALUES (30)", bed.table))
	time.Sleep(700 * time.Millisecond)
	err := opsExecErr(inTx, "SELECT 1")
	if code := pgCode(err); code != proxy.CodeIdleInTransactionTimeout {
		t.Fatalf("idle in transaction: %v (code %q), want 25P03", err, code)
	}
	if got := scalar(t, idle, "SELECT 1"); got != "1" {
		t.Fatalf("idle client: %s", got)
	}
	// A transaction that keeps working is not idle.
	busy := bed.connect(t)
	exec(t, busy, "BEGIN")
	for range 6 {
		time.Sleep(80 * time.Millisecond)
		exec(t, busy, "SELECT 1")
	}
	exec(t, busy, "COMMIT")
	if n := directScalar(t, fmt.Sprintf("SELECT count(*) FROM %s WHERE id = 30", bed.table)); n != "0" {
		t.Fatal("the timed-out transaction committed")
	}
}

// TestPauseResume: PAUSE holds new requests at a transaction boundary, lets
// open transactions finish, and a held request fails with 57014 after
// query_wait_timeout; RESUME releases them.
func TestPauseResume(t *testing.T) {
	bed := startOpsProxy(t, func(o *proxy.Options) { o.QueryWaitTimeout = 400 * time.Millisecond })
	inTx := bed.connect(t)
	held := bed.connect(t)
	exec(t, inTx, "BEGIN")

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	if err := bed.Pause(ctx); err == nil {
		t.Fatal("Pause returned while a transaction was open")
	}
	cancel()
	exec(t, inTx, "SELECT 1") // a transaction in progress goes on
	exec(t, inTx, "COMMIT")
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	if err := bed.Pause(ctx); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	cancel()

	start := time.Now()
	err := opsExecErr(held, "SELECT 1")
	if code := pgCode(err); code != proxy.CodeQueryCanceled {
		t.Fatalf("held request: %v, want 57014", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("held request failed after %s, before query_wait_timeout", d)
	}

	// txlane_pool_acquire_wait_seconds{lane="primary"} observes the requests PAUSE
	// held, released by RESUME, and no other.
	waits := series("txlane_pool_acquire_wait_seconds_count", "lane", "primary")
	before := scrape(t, bed.Server)[waits]
	var wg sync.WaitGroup
	wg.Add(1)
	var got string
	go func() {
		defer wg.Done()
		got = scalar(t, held, "SELECT 7")
	}()
	time.Sleep(100 * time.Millisecond)
	bed.Resume()
	wg.Wait()
	if got != "7" {
		t.Fatalf("after RESUME: %q", got)
	}
	exec(t, held, "SELECT 8")
	if n := scrape(t, bed.Server)[waits] - before; n != 1 {
		t.Fatalf("%s went up by %v for one held request and one not held, want 1", waits, n)
	}
}

// adminDSN returns a DSN for the admin console as user.
func (p *testProxy) adminDSN(tb testing.TB, user string) string {
	u, err := url.Parse(p.DSN(tb, user))
	if err != nil {
		tb.Fatal(err)
	}
	u.Path = "/" + proxy.AdminDatabase
	return u.String()
}

// TestAdminConsole runs the console's commands over the simple and the
// extended protocol, and checks admin.users (pgtest.AppRole logs in to
// PostgreSQL without a password).
func TestAdminConsole(t *testing.T) {
	bed := startOpsProxy(t, func(o *proxy.Options) { o.AdminUsers = []string{pgtest.AppRole} })
	client := bed.connect(t)
	exec(t, client, "BEGIN")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c, err := pgconn.Connect(ctx, bed.adminDSN(t, "intruder")); err == nil {
		c.Close(ctx)
		t.Fatal("a user outside admin.users reached the console")
	} else if code := pgCode(err); code != "28000" {
		t.Fatalf("refused admin login: %v, want 28000", err)
	}

	admin, err := pgconn.Connect(ctx, bed.adminDSN(t, pgtest.AppRole))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	res := exec(t, admin, "SHOW CLIENTS; SHOW POOLS")
	if len(res) != 2 {
		t.Fatalf("%d results", len(res))
	}
	found := false
	for _, row := range named(res[0]) {
		if row["tx_status"] == "T" && row["state"] == proxy.ClientActive {
			found = true
		}
	}
	if !found {
		t.Fatalf("SHOW CLIENTS does not show the client in a transaction: %q", res[0].Rows)
	}
	if got := res[0].CommandTag.String(); got != "SHOW" {
		t.Errorf("tag %q", got)
	}
	exec(t, client, "COMMIT")

	for _, sql := range []string{"SHOW STATS", "SHOW POLICY", "SHOW UNITS", "SHOW HELP", "SET application_name = 'x'"} {
		exec(t, admin, sql)
	}
	e := exec(t, admin, "EXPLAIN SELECT * FROM "+bed.table)
	if got := fmt.Sprintf("%q", e[0].Rows); !strings.Contains(got, "not_vector_read") {
		t.Errorf("EXPLAIN: %s", got)
	}
	for sql, code := range map[string]string{"SELECT 1": "0A000", "SHOW NOTHING": "0A000", "SHOW": "42601", "RELOAD now": "42601", "RELOAD": "0A000"} {
		if err := opsExecErr(admin, sql); pgCode(err) != code {
			t.Errorf("%s: %v, want %s", sql, err, code)
		}
	}
	exec(t, admin, "SHOW HELP") // still usable after errors

	// pgx uses the extended protocol: Parse, Describe, Bind, Execute, Sync.
	pc, err := pgx.Connect(ctx, bed.adminDSN(t, pgtest.AppRole))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	var n int
	rows, err := pc.Query(ctx, "SHOW CLIENTS")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil || len(vals) != len(rows.FieldDescriptions()) {
			t.Fatal(vals, err)
		}
		n++
	}
	if rows.Err() != nil || n == 0 {
		t.Fatalf("pgx SHOW CLIENTS: %d rows, %v", n, rows.Err())
	}
	var lane string
	if err := pc.QueryRow(ctx, "EXPLAIN SELECT 1").Scan(new(string), &lane); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Exec(ctx, "PAUSE"); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Exec(ctx, "RESUME"); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Exec(ctx, "SELECT 1"); pgCode(err) != "0A000" {
		t.Fatalf("pgx SELECT 1: %v", err)
	}
	if err := pc.Ping(ctx); err != nil {
		t.Fatalf("ping after an error: %v", err)
	}
}

// TestAdminConsoleSameOSUser: without admin.users, a local client of the
// same OS user is accepted (this test and the proxy are one process).
func TestAdminConsoleSameOSUser(t *testing.T) {
	bed := startOpsProxy(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgconn.Connect(ctx, bed.adminDSN(t, "anyone"))
	if err != nil {
		t.Fatalf("same-user local login refused: %v", err)
	}
	defer admin.Close(ctx)
	exec(t, admin, "SHOW POOLS")
}
