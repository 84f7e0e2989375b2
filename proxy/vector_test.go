package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// vectorBed is a proxy with a vector lane in front of the test database and a
// vector table private to the test.
type vectorBed struct {
	*testProxy
	table string
}

// startVectorProxy creates a vector table (id, embedding vector(3), note) with
// three rows and starts a proxy whose vector lane serves it.
func startVectorProxy(t *testing.T, mutate func(*proxy.Options)) *vectorBed {
	t.Helper()
	table := uniqueName("items")
	pgtest.Exec(t, fmt.Sprintf(`CREATE TABLE %[1]s (id int PRIMARY KEY, embedding vector(3), note text);
INSERT INTO %[1]s VALUES (1, '[1,0,0]', 'x'), (2, '[0,1,0]', 'y'), (3, '[0,0,1]', 'z');
GRANT ALL ON %[1]s TO PUBLIC`, table))
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+table) })
	p := startProxy(t, func(o *proxy.Options) {
		o.ReadPool = proxy.ReadPoolOptions{Config: pgtest.Config(t), MaxConns: 4, AcquireTimeout: time.Second}
		o.Rules.VectorTables = []string{table}
		if mutate != nil {
			mutate(o)
		}
	})
	return &vectorBed{testProxy: p, table: table}
}

// lanes tells which backend ran a read: the primary's pid is the one a
// table-less SELECT reports.
type lanes struct {
	t       *testing.T
	conn    *pgconn.PgConn
	primary string
}

func newLanes(t *testing.T, conn *pgconn.PgConn) *lanes {
	return &lanes{t: t, conn: conn, primary: backendPID(t, conn)}
}

// ranOnLane runs sql, whose first column must be pg_backend_pid(), and reports
// whether the vector lane ran it.
func (l *lanes) ranOnLane(sql string) bool {
	l.t.Helper()
	return scalar(l.t, l.conn, sql) != l.primary
}

func (l *lanes) wantLane(sql string) {
	l.t.Helper()
	if !l.ranOnLane(sql) {
		l.t.Fatalf("%q ran on the primary lane, want the vector lane", sql)
	}
}

func (l *lanes) wantPrimary(sql string) {
	l.t.Helper()
	if l.ranOnLane(sql) {
		l.t.Fatalf("%q ran on the vector lane, want the primary lane", sql)
	}
}

func TestVectorLaneRouting(t *testing.T) {
	bed := startVectorProxy(t, nil)
	tb := bed.table
	read := "SELECT pg_backend_pid() FROM " + tb + " ORDER BY embedding <-> '[1,0,0]' LIMIT 1"

	t.Run("pure vector read, idle", func(t *testing.T) {
		c := bed.connect(t)
		l := newLanes(t, c)
		l.wantLane(read)
		l.wantLane("SELECT pg_backend_pid() FROM " + tb + " WHERE embedding <=> '[1,1,0]' < 0.5")
		if c.TxStatus() != 'I' {
			t.Fatalf("status %q", c.TxStatus())
		}
	})
	t.Run("non-vector reads and writes stay on the primary", func(t *testing.T) {
		c := bed.connect(t)
		l := newLanes(t, c)
		l.wantPrimary("SELECT pg_backend_pid() FROM pg_class LIMIT 1")
		for _, sql := range []string{
			"SELECT pg_backend_pid() FROM " + tb + " FOR UPDATE",
			"SELECT pg_backend_pid() FROM " + tb + " LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED",
			"WITH u AS (UPDATE " + tb + " SET note = note WHERE id = 1 RETURNING id) SELECT pg_backend_pid() FROM u",
			"SELECT pg_backend_pid() FROM " + tb + " WHERE pg_advisory_xact_lock(1) IS NOT NULL LIMIT 1",
		} {
			l.wantPrimary(sql)
		}
	})
	t.Run("read inside a READ COMMITTED transaction", func(t *testing.T) {
		c := bed.connect(t)
		l := newLanes(t, c)
		exec(t, c, "CREATE TEMP TABLE scratch (x int)")
		exec(t, c, "BEGIN")
		l.wantLane(read)
		if c.TxStatus() != 'T' {
			t.Fatalf("client sees status %q after an offloaded read, want T", c.TxStatus())
		}
		// A write to another table leaves vector reads offloadable (after_write: table).
		exec(t, c, "INSERT INTO scratch VALUES (1)")
		l.wantLane(read)
		// Read-your-writes: once the transaction wrote the table, reads of it stay.
		exec(t, c, "INSERT INTO "+tb+" VALUES (100, '[1,0,0]', 'mine')")
		l.wantPrimary(read)
		if got := scalar(t, c, "SELECT count(*) FROM "+tb+" WHERE note = 'mine'"); got != "1" {
			t.Fatalf("uncommitted row not visible to its transaction: %s", got)
		}
		exec(t, c, "ROLLBACK")
		// After the transaction, reads go back to the lane and the row is gone.
		l.wantLane(read)
		if got := scalar(t, c, "SELECT count(*) FROM "+tb+" WHERE note = 'mine'"); got != "0" {
			t.Fatalf("rolled-back row visible: %s", got)
		}
	})
	t.Run("snapshot isolation levels stay on the primary", func(t *testing.T) {
		c := bed.connect(t)
		l := newLanes(t, c)
		for _, begin := range []string{
			"BEGIN ISOLATION LEVEL REPEATABLE READ",
			"BEGIN ISOLATION LEVEL SERIALIZABLE",
			"START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
		} {
			exec(t, c, begin)
			l.wantPrimary(read)
			exec(t, c, "COMMIT")
		}
		// A session default counts too, however it was set.
		exec(t, c, "SET default_transaction_isolation = 'serializable'")
		exec(t, c, "BEGIN")
		l.wantPrimary(read)
		exec(t, c, "COMMIT")
		exec(t, c, "RESET default_transaction_isolation")
		exec(t, c, "BEGIN")
		l.wantLane(read)
		exec(t, c, "COMMIT")
	})
	t.Run("failed transaction", func(t *testing.T) {
		c := bed.connect(t)
		exec(t, c, "BEGIN")
		_, err := c.Exec(context.Background(), "SELECT 1/0").ReadAll()
		wantCode(t, err, "22012")
		_, err = c.Exec(context.Background(), read).ReadAll()
		wantCode(t, err, "25P02")
		exec(t, c, "ROLLBACK")
	})
}

func TestVectorLaneAfterWriteAny(t *testing.T) {
	bed := startVectorProxy(t, func(o *proxy.Options) { o.Rules.AfterWrite = "any" })
	c := bed.connect(t)
	l := newLanes(t, c)
	read := "SELECT pg_backend_pid() FROM " + bed.table + " LIMIT 1"
	exec(t, c, "CREATE TEMP TABLE scratch (x int)")
	exec(t, c, "BEGIN")
	l.wantLane(read)
	exec(t, c, "INSERT INTO scratch VALUES (1)")
	l.wantPrimary(read)
	exec(t, c, "COMMIT")
	l.wantLane(read)
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != code {
		t.Fatalf("got %v, want SQLSTATE %s", err, code)
	}
}

func TestVectorLaneErrorFailsTransaction(t *testing.T) {
	bed := startVectorProxy(t, nil)
	bad := "SELECT pg_backend_pid() FROM " + bed.table + " ORDER BY embedding <-> '[1,0]' LIMIT 1" // wrong dimensions
	ctx := context.Background()

	t.Run("later statements get 25P02 and COMMIT rolls back", func(t *testing.T) {
		c := bed.connect(t)
		exec(t, c, "BEGIN; INSERT INTO "+bed.table+" VALUES (200, '[1,1,1]', 'doomed')")
		// The insert keeps this table's reads on the primary; read another way.
		exec(t, c, "SAVEPOINT s")
		_, err := c.Exec(ctx, "SELECT 1 FROM "+bed.table+" WHERE embedding <-> '[1]' < 1").ReadAll()
		wantCode(t, err, "22000")
		if c.TxStatus() != 'E' {
			t.Fatalf("status %q after a failed statement, want E", c.TxStatus())
		}
		exec(t, c, "ROLLBACK")
	})
	t.Run("offloaded error", func(t *testing.T) {
		c := bed.connect(t)
		l := newLanes(t, c)
		exec(t, c, "BEGIN")
		l.wantLane("SELECT pg_backend_pid() FROM " + bed.table + " LIMIT 1")
		_, err := c.Exec(ctx, bad).ReadAll()
		wantCode(t, err, "22000") // different vector dimensions, from the lane
		if c.TxStatus() != 'E' {
			t.Fatalf("status %q after an offloaded error, want E", c.TxStatus())
		}
		_, err = c.Exec(ctx, "SELECT 1").ReadAll()
		wantCode(t, err, "25P02")
		res := exec(t, c, "COMMIT")
		if tag := res[0].CommandTag.String(); tag != "ROLLBACK" {
			t.Fatalf("COMMIT of the failed transaction answered %q, want ROLLBACK", tag)
		}
	})
	t.Run("ROLLBACK TO SAVEPOINT recovers", func(t *testing.T) {
		c := bed.connect(t)
		exec(t, c, "BEGIN; SAVEPOINT a")
		_, err := c.Exec(ctx, bad).ReadAll()
		wantCode(t, err, "22000")
		exec(t, c, "ROLLBACK TO SAVEPOINT a")
		if got := scalar(t, c, "SELECT count(*) FROM "+bed.table); got != "3" {
			t.Fatalf("count = %s", got)
		}
		res := exec(t, c, "COMMIT")
		if tag := res[0].CommandTag.String(); tag != "COMMIT" {
			t.Fatalf("COMMIT answered %q", tag)
		}
	})
	t.Run("idle error leaves the session idle", func(t *testing.T) {
		c := bed.connect(t)
		_, err := c.Exec(ctx, bad).ReadAll()
		wantCode(t, err, "22000")
		if c.TxStatus() != 'I' {
			t.Fatalf("status %q", c.TxStatus())
		}
		if scalar(t, c, "SELECT 5") != "5" {
			t.Fatal("session broken")
		}
	})
}

func TestVectorLaneSessionSettings(t *testing.T) {
	bed := startVectorProxy(t, func(o *proxy.Options) { o.ReadPool.MaxConns = 1 })
	schema := uniqueName("sch")
	pgtest.Exec(t, fmt.Sprintf(`CREATE SCHEMA %[1]s; CREATE TABLE %[1]s.hidden (id int, embedding vector(2));
INSERT INTO %[1]s.hidden VALUES (7, '[1,1]'); GRANT USAGE ON SCHEMA %[1]s TO PUBLIC; GRANT SELECT ON %[1]s.hidden TO PUBLIC`, schema))
	t.Cleanup(func() { pgtest.Exec(t, "DROP SCHEMA "+schema+" CASCADE") })
	probe := "SELECT pg_backend_pid(), current_setting('search_path'), current_setting('TimeZone'), " +
		"'2020-01-01 00:00:00+00'::timestamptz::text, (1.0/3)::float8::text, current_setting('hnsw.ef_search', true), current_user FROM " + bed.table + " LIMIT 1"

	a := bed.connect(t)
	la := newLanes(t, a)
	direct := exec(t, a, "SELECT 1") // warm up
	_ = direct
	exec(t, a, "SET search_path = "+schema+", public")
	exec(t, a, "SET TimeZone = 'Asia/Tokyo'")
	exec(t, a, "SET extra_float_digits = 0")
	exec(t, a, "SET hnsw.ef_search = 77")
	exec(t, a, "SET bytea_output = 'escape'; SET DateStyle = 'SQL, DMY'; SET IntervalStyle = 'iso_8601'")
	styles := "SELECT pg_backend_pid(), '\\x41'::bytea::text, '2020-01-02'::date::text, '1 day 2 hours'::interval::text FROM " + bed.table + " LIMIT 1"
	if row := exec(t, a, styles)[0].Rows[0]; string(row[0]) == la.primary ||
		string(row[1]) != "A" || string(row[2]) != "02/01/2020" || string(row[3]) != "P1DT2H" {
		t.Fatalf("output styles on the lane: %q (primary %s)", row, la.primary)
	}
	res := exec(t, a, probe)
	row := res[0].Rows[0]
	if string(row[0]) == la.primary {
		t.Fatal("probe ran on the primary")
	}
	got := []string{string(row[1]), string(row[2]), string(row[3]), string(row[4]), string(row[5])}
	want := []string{schema + ", public", "Asia/Tokyo", "01/01/2020 09:00:00 JST", "0.333333333333333", "77"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("vector lane settings = %q, want %q", got, want)
	}
	// The search_path resolves an unqualified vector table on the lane too.
	pgtest.Exec(t, "SELECT 1") // nothing
	la.wantLane("SELECT pg_backend_pid() FROM " + bed.table + " LIMIT 1")

	// Nothing leaks to the next client of the same (single) lane connection.
	b := bed.connect(t)
	res = exec(t, b, probe)
	row = res[0].Rows[0]
	if string(row[1]) != `"$user", public` || string(row[2]) == "Asia/Tokyo" || !strings.HasPrefix(string(row[3]), "2020-01-01") ||
		string(row[4]) == "0.333333333333333" || row[5] != nil && string(row[5]) == "77" {
		t.Fatalf("settings leaked to the next client: %q", row)
	}

	// SET LOCAL lasts for the transaction only.
	exec(t, b, "BEGIN; SET LOCAL hnsw.ef_search = 5")
	res = exec(t, b, probe)
	if v := string(res[0].Rows[0][5]); v != "5" {
		t.Fatalf("SET LOCAL not mirrored: %q", v)
	}
	exec(t, b, "COMMIT")
	res = exec(t, b, probe)
	if v := res[0].Rows[0][5]; v != nil && string(v) == "5" {
		t.Fatalf("SET LOCAL outlived its transaction on the lane: %q", v)
	}
}

func TestVectorLaneRoleAndRowLevelSecurity(t *testing.T) {
	role := uniqueName("reader")
	pgtest.Exec(t, "CREATE ROLE "+role)
	t.Cleanup(func() { pgtest.Exec(t, "DROP ROLE IF EXISTS "+role) })
	// The read pool README prescribes: not a superuser, NOINHERIT, granted
	// the client roles.
	bed := startVectorProxy(t, func(o *proxy.Options) { o.ReadPool.Config = isoPool(t, role) })
	tb := bed.table
	pgtest.Exec(t, fmt.Sprintf(`ALTER TABLE %[1]s ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_x ON %[1]s FOR SELECT TO %[2]s USING (note = 'x');
GRANT SELECT ON %[1]s TO %[2]s`, tb, role))
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+tb) })

	c := bed.connect(t)
	l := newLanes(t, c)
	count := "SELECT pg_backend_pid(), count(*), current_user FROM " + tb
	res := exec(t, c, count)
	if row := res[0].Rows[0]; string(row[1]) != "3" || string(row[0]) != l.primary {
		t.Fatalf("superuser sees %s rows on backend %s (primary %s): a read pool that is not a superuser does not serve one", row[1], row[0], l.primary)
	}
	exec(t, c, "SET ROLE "+role)
	res = exec(t, c, count)
	row := res[0].Rows[0]
	if string(row[0]) == l.primary {
		t.Fatal("read under SET ROLE ran on the primary")
	}
	if string(row[1]) != "1" || string(row[2]) != role {
		t.Fatalf("on the lane under role %s: count=%s current_user=%s, want 1 row (row-level security)", role, row[1], row[2])
	}
	exec(t, c, "RESET ROLE")
	res = exec(t, c, count)
	if string(res[0].Rows[0][1]) != "3" {
		t.Fatalf("after RESET ROLE: %s rows", res[0].Rows[0][1])
	}

	// SET SESSION AUTHORIZATION changes current_user too.
	exec(t, c, "SET SESSION AUTHORIZATION "+role)
	res = exec(t, c, count)
	if row := res[0].Rows[0]; string(row[0]) == l.primary || string(row[1]) != "1" || string(row[2]) != role {
		t.Fatalf("under SET SESSION AUTHORIZATION %s: backend %s (primary %s), count %s, current_user %s", role, row[0], l.primary, row[1], row[2])
	}
	exec(t, c, "RESET SESSION AUTHORIZATION")

	// A client logged in as another user reads as that user on the lane.
	pgtest.Exec(t, "GRANT "+role+" TO txlane_app")
	t.Cleanup(func() { pgtest.Exec(t, "REVOKE "+role+" FROM txlane_app") })
	ctx := context.Background()
	app, err := pgconn.Connect(ctx, bed.DSN(t, "txlane_app"))
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close(ctx)
	exec(t, app, "SET ROLE "+role)
	res = exec(t, app, count)
	if row := res[0].Rows[0]; string(row[1]) != "1" || string(row[0]) == backendPID(t, app) {
		t.Fatalf("txlane_app as %s sees %s rows on backend %s", role, row[1], row[0])
	}
}

func TestVectorLaneUnavailable(t *testing.T) {
	dead := pgtest.Config(t)
	dead.Host, dead.Port, dead.Fallbacks = "127.0.0.1", 1, nil
	dead.ConnectTimeout = time.Second

	t.Run("falls back to the primary", func(t *testing.T) {
		bed := startVectorProxy(t, func(o *proxy.Options) { o.ReadPool.Config = dead })
		c := bed.connect(t)
		l := newLanes(t, c)
		l.wantPrimary("SELECT pg_backend_pid() FROM " + bed.table + " LIMIT 1")
		if n := bed.Server.Metrics().Routed("primary", "vector_unavailable"); n < 1 {
			t.Fatalf("fallbacks counted: %v", n)
		}
	})
	t.Run("or fails when configured to", func(t *testing.T) {
		bed := startVectorProxy(t, func(o *proxy.Options) {
			o.ReadPool.Config = dead
			o.Rules.OnUnavailable = "error"
		})
		c := bed.connect(t)
		_, err := c.Exec(context.Background(), "SELECT 1 FROM "+bed.table).ReadAll()
		wantCode(t, err, proxy.CodeCannotConnectNow)
		if scalar(t, c, "SELECT 9") != "9" {
			t.Fatal("session broken after a refused read")
		}
	})
}

func TestVectorLaneCancel(t *testing.T) {
	bed := startVectorProxy(t, nil)
	c := bed.connect(t)
	l := newLanes(t, c)
	l.wantLane("SELECT pg_backend_pid() FROM " + bed.table + " LIMIT 1")
	// Another client runs a long read meanwhile: the cancel must not reach it.
	other := bed.connect(t)
	otherDone := make(chan error, 1)
	go func() {
		_, err := other.Exec(context.Background(), "SELECT pg_sleep(0.5) FROM "+bed.table+" LIMIT 1").ReadAll()
		otherDone <- err
	}()
	start := time.Now()
	onLane := make(chan string, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		// The statement being cancelled runs on the vector lane.
		onLane <- scalar(t, directConn(t), "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'txlane vector lane' AND query LIKE '%pg_sleep(10)%' AND state = 'active'")
		c.CancelRequest(context.Background())
	}()
	_, err := c.Exec(context.Background(), "SELECT pg_backend_pid(), pg_sleep(10) FROM "+bed.table+" LIMIT 1").ReadAll()
	wantCode(t, err, "57014")
	if n := <-onLane; n != "1" {
		t.Fatalf("%s vector-lane backends ran the statement, want 1", n)
	}
	if err := <-otherDone; err != nil {
		t.Fatalf("the other client's read was disturbed: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("cancel took %v", took)
	}
	l.wantLane("SELECT pg_backend_pid() FROM " + bed.table + " LIMIT 1")
}

// TestVectorLaneConnectionLost cuts the vector lane's connections under a
// session: a read whose lane connection dies before answering runs on the
// primary instead, and the lane recovers with new connections.
func TestVectorLaneConnectionLost(t *testing.T) {
	cfg := pgtest.Config(t)
	cutter := newTCPCutter(t, fmt.Sprintf("%s:%d", cfg.Host, cfg.Port))
	bed := startVectorProxy(t, func(o *proxy.Options) {
		lane := pgtest.Config(t)
		host, port, _ := net.SplitHostPort(cutter.ln.Addr().String())
		lane.Host, lane.Fallbacks = host, nil
		fmt.Sscan(port, &lane.Port)
		o.ReadPool.Config = lane
		o.ReadPool.MaxConns = 1
	})
	c := bed.connect(t)
	l := newLanes(t, c)
	read := "SELECT pg_backend_pid(), id FROM " + bed.table + " ORDER BY embedding <-> '[0,0,1]' LIMIT 1"
	l.wantLane(read)
	waitLaneReleased(t, bed.Server) // the cut must hit an idle connection
	cutter.cut()
	res := exec(t, c, read)
	if row := res[0].Rows[0]; string(row[0]) != l.primary || string(row[1]) != "3" {
		t.Fatalf("after the lane connection died: backend %s (primary %s), id %s; want the primary and id 3", row[0], l.primary, row[1])
	}
	if n := bed.Server.Metrics().Routed("primary", "lane_lost"); n != 1 {
		t.Fatalf("lane_lost reruns counted: %v", n)
	}
	l.wantLane(read) // a new lane connection
}
