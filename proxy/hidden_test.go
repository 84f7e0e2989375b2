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
	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/proxy"
	"github.com/txlane/txlane/proxy/catalog"
	"github.com/txlane/txlane/router"
)

// What SQL text hides: views, operators, aggregates, row-level security
// policies and casts whose functions write, and writes that reach tables the
// statement does not name (triggers, cascades, rules, writable views,
// partitions). Each scenario runs the same statements directly and through
// txlane (discovery on, escape reject) and wants identical results and an
// unchanged database after ROLLBACK.

// hiddenSchema is the objects every test here uses, created in a schema of
// their own owned by txlane_app (a non-superuser, so that row-level
// security applies).
const hiddenSchema = `
CREATE TABLE items (id int PRIMARY KEY, embedding vector(3));
INSERT INTO items VALUES (1, '[1,2,3]'), (2, '[3,2,1]');
CREATE TABLE audit (what text);

-- A: a view whose definition writes; nested.
CREATE FUNCTION logit() RETURNS int LANGUAGE sql VOLATILE AS $$ INSERT INTO audit VALUES ('view') RETURNING 1 $$;
CREATE VIEW v_items AS SELECT id, embedding, logit() AS l FROM items;
CREATE VIEW v_outer AS SELECT id, embedding FROM v_items;
CREATE VIEW v_plain AS SELECT id, embedding FROM items;
-- CURRENT_TIMESTAMP is no function call: pg_depend does not show it.
CREATE VIEW v_time AS SELECT id, embedding, CURRENT_TIMESTAMP AS t FROM items;

-- B: an aggregate whose state function writes (also as a window function).
CREATE FUNCTION sfn(s int, v int) RETURNS int LANGUAGE plpgsql VOLATILE AS
  $$ BEGIN INSERT INTO audit VALUES ('agg'); RETURN coalesce(s, 0) + v; END $$;

-- An operator whose function writes.
CREATE FUNCTION op_fn(a int, b int) RETURNS boolean LANGUAGE plpgsql VOLATILE AS
  $$ BEGIN INSERT INTO audit VALUES ('op'); RETURN a = b; END $$;
CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = op_fn);

-- A row-level security policy calling a function that writes.
CREATE TABLE sec_items (id int PRIMARY KEY, embedding vector(3));
INSERT INTO sec_items VALUES (1, '[1,1,1]'), (2, '[2,2,2]');
CREATE FUNCTION rls_fn(i int) RETURNS boolean LANGUAGE plpgsql VOLATILE AS
  $$ BEGIN INSERT INTO audit VALUES ('rls'); RETURN i > 0; END $$;
ALTER TABLE sec_items ENABLE ROW LEVEL SECURITY;
ALTER TABLE sec_items FORCE ROW LEVEL SECURITY;
CREATE POLICY p_sel ON sec_items USING (rls_fn(id));

-- A cast to a user type whose function writes.
CREATE TYPE mytype AS (v text);
CREATE FUNCTION conv(t text) RETURNS mytype LANGUAGE plpgsql VOLATILE AS
  $$ BEGIN INSERT INTO audit VALUES ('cast'); RETURN ROW(t)::mytype; END $$;
CREATE CAST (text AS mytype) WITH FUNCTION conv(text);

-- K: a trigger on another table writes items.
CREATE TABLE other (id int);
CREATE FUNCTION trg_f() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO items VALUES (4 + coalesce((SELECT max(id) FROM items), 0), '[1,0,0]'); RETURN new; END $$;
CREATE TRIGGER t_other AFTER INSERT ON other FOR EACH ROW EXECUTE FUNCTION trg_f();

-- A cascading foreign key chain into a vector table.
CREATE TABLE par (id int PRIMARY KEY);
CREATE TABLE chi (id int PRIMARY KEY, par_id int REFERENCES par ON DELETE CASCADE, embedding vector(3));
CREATE TABLE grand (id int, chi_id int REFERENCES chi ON DELETE SET NULL, embedding vector(3));
INSERT INTO par VALUES (1), (2);
INSERT INTO chi VALUES (1, 1, '[1,1,1]'), (2, 2, '[2,2,2]');
INSERT INTO grand VALUES (1, 1, '[1,1,1]');

-- A rule writing items.
CREATE TABLE ruled (x int);
CREATE RULE r_log AS ON INSERT TO ruled DO ALSO INSERT INTO items VALUES (100 + new.x, '[0,1,0]');

-- A writable view, and a view with an INSTEAD OF trigger.
CREATE VIEW w_items AS SELECT id, embedding FROM items;
CREATE VIEW v_ins AS SELECT id FROM items;
CREATE FUNCTION ins_f() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO items VALUES (new.id, '[0,0,1]'); RETURN new; END $$;
CREATE TRIGGER t_ins INSTEAD OF INSERT ON v_ins FOR EACH ROW EXECUTE FUNCTION ins_f();

-- Partitions.
CREATE TABLE meas (id int, embedding vector(3)) PARTITION BY RANGE (id);
CREATE TABLE meas_1 PARTITION OF meas FOR VALUES FROM (0) TO (1000);
INSERT INTO meas VALUES (1, '[1,1,1]');
`

// hiddenBed is a schema with hiddenSchema's objects, a proxy with discovery
// on, and the DSNs of txlane_app directly and through the proxy.
type hiddenBed struct {
	*testProxy
	schema string
	direct string // txlane_app, directly
	// super reads fingerprints: a superuser is not subject to row-level
	// security, whose policy here writes.
	super *pgconn.PgConn
}

func startHiddenBed(t *testing.T, extra ...string) *hiddenBed {
	t.Helper()
	schema := uniqueName("hid")
	pgtest.Exec(t, "CREATE SCHEMA "+schema+" AUTHORIZATION "+pgtest.AppRole)
	t.Cleanup(func() { pgtest.Exec(t, "DROP SCHEMA IF EXISTS "+schema+" CASCADE") })
	u, err := url.Parse(pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(pgtest.AppRole)
	b := &hiddenBed{schema: schema, direct: u.String()}
	c := b.connectDirect(t)
	exec(t, c, hiddenSchema)
	for _, sql := range extra {
		exec(t, c, sql)
	}
	b.super = b.dial(t, pgtest.DSN(t))
	b.testProxy = startProxy(t, func(o *proxy.Options) {
		o.ReadPool = proxy.ReadPoolOptions{Config: isoPool(t, pgtest.AppRole), MaxConns: 4, AcquireTimeout: 2 * time.Second}
		o.Discover = true
		o.DiscoverInterval = time.Hour // reads come from first use, DDL and reload only
	})
	return b
}

// connectDirect connects as txlane_app to PostgreSQL, search_path set.
func (b *hiddenBed) connectDirect(t *testing.T) *pgconn.PgConn {
	t.Helper()
	return b.dial(t, b.direct)
}

// connectLane connects as txlane_app through txlane, search_path set.
func (b *hiddenBed) connectLane(t *testing.T) *pgconn.PgConn {
	t.Helper()
	return b.dial(t, b.DSN(t, pgtest.AppRole))
}

func (b *hiddenBed) dial(t *testing.T, dsn string) *pgconn.PgConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	exec(t, c, "SET search_path = "+b.schema+", public")
	return c
}

// outcome is what one statement returned: its rows as text, or its
// SQLSTATE.
func outcome(c *pgconn.PgConn, sql string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.Exec(ctx, sql).ReadAll()
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			return "ERROR " + pgErr.Code
		}
		return "ERROR " + err.Error()
	}
	var b strings.Builder
	for _, r := range res {
		for _, row := range r.Rows {
			for i, v := range row {
				if i > 0 {
					b.WriteByte('|')
				}
				if v == nil {
					b.WriteString("NULL")
				} else {
					b.Write(v)
				}
			}
			b.WriteByte(';')
		}
		b.WriteString(r.CommandTag.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func runAll(c *pgconn.PgConn, stmts []string) []string {
	out := make([]string, len(stmts))
	for i, s := range stmts {
		out[i] = outcome(c, s)
	}
	return out
}

// fingerprint summarises every table of the schema (row count and a hash of
// its rows), read directly by a superuser.
func (b *hiddenBed) fingerprint(t *testing.T) string {
	t.Helper()
	c := b.super
	res := exec(t, c, fmt.Sprintf(`SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = '%s' AND c.relkind = 'r' ORDER BY 1`, b.schema))
	var parts []string
	for _, row := range res[0].Rows {
		name := string(row[0])
		parts = append(parts, name+"="+scalar(t, c, fmt.Sprintf(
			"SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '') FROM %s.%s x", b.schema, name)))
	}
	return strings.Join(parts, " ")
}

// compare runs stmts directly, then through txlane, and wants the same
// outcomes and the database unchanged after each run (the statements end
// with ROLLBACK).
func (b *hiddenBed) compare(t *testing.T, direct, lane *pgconn.PgConn, stmts []string) {
	t.Helper()
	before := b.fingerprint(t)
	want := runAll(direct, stmts)
	if got := b.fingerprint(t); got != before {
		t.Fatalf("the scenario itself changed the database directly:\n%s\nbefore %s\nafter  %s", strings.Join(stmts, "\n"), before, got)
	}
	got := runAll(lane, stmts)
	for i := range stmts {
		if got[i] != want[i] {
			t.Errorf("%s\n  through txlane: %q\n  directly:      %q", stmts[i], got[i], want[i])
		}
	}
	if after := b.fingerprint(t); after != before {
		t.Errorf("after ROLLBACK through txlane the database changed:\nbefore %s\nafter  %s", before, after)
	}
}

func TestHiddenWritesAndReachedTables(t *testing.T) {
	b := startHiddenBed(t)
	direct, lane := b.connectDirect(t), b.connectLane(t)

	// The lane is in use: a plain vector read is offloaded, in and out of a
	// transaction (so the cases below are not on the primary by accident).
	l := newLanes(t, lane)
	l.wantLane("SELECT pg_backend_pid() FROM items ORDER BY embedding <-> '[1,2,3]' LIMIT 1")
	exec(t, lane, "BEGIN")
	l.wantLane("SELECT pg_backend_pid() FROM items ORDER BY embedding <-> '[1,2,3]' LIMIT 1")
	l.wantLane("SELECT pg_backend_pid() FROM v_plain LIMIT 1")
	l.wantLane("SELECT pg_backend_pid() FROM chi WHERE id = 1")
	exec(t, lane, "ROLLBACK")

	cases := []struct {
		name  string
		stmts []string
	}{
		{"A view whose definition writes", []string{"BEGIN", "SELECT id, l FROM v_items ORDER BY id", "ROLLBACK"}},
		{"A idle, in a transaction block opened in the same text",
			[]string{"BEGIN; SELECT id, l FROM v_items ORDER BY id", "ROLLBACK"}},
		{"nested views", []string{"BEGIN", "SELECT id FROM v_outer ORDER BY id", "ROLLBACK"}},
		{"operator", []string{"BEGIN", "SELECT id FROM items WHERE id === 1", "ROLLBACK"}},
		{"row-level security policy", []string{"BEGIN", "SELECT id FROM sec_items ORDER BY embedding <-> '[1,1,1]'", "ROLLBACK"}},
		{"cast", []string{"BEGIN", "SELECT id, ('x'::text)::mytype FROM items ORDER BY id", "ROLLBACK"}},
		{"K trigger", []string{"BEGIN", "INSERT INTO other VALUES (1)", "SELECT count(*) FROM items", "ROLLBACK"}},
		{"K trigger, vector-ordered read", []string{"BEGIN", "INSERT INTO other VALUES (1)",
			"SELECT id FROM items ORDER BY embedding <-> '[1,0,0]', id LIMIT 2", "ROLLBACK"}},
		{"FK cascade", []string{"BEGIN", "DELETE FROM par WHERE id = 1", "SELECT count(*) FROM chi",
			"SELECT count(*) FROM grand WHERE chi_id IS NULL", "ROLLBACK"}},
		{"rule", []string{"BEGIN", "INSERT INTO ruled VALUES (1)", "SELECT count(*) FROM items", "ROLLBACK"}},
		{"writable view", []string{"BEGIN", "INSERT INTO w_items VALUES (5, '[1,2,3]')", "SELECT count(*) FROM items", "ROLLBACK"}},
		{"INSTEAD OF trigger", []string{"BEGIN", "INSERT INTO v_ins VALUES (6)", "SELECT count(*) FROM items", "ROLLBACK"}},
		{"partition written, parent read", []string{"BEGIN", "INSERT INTO meas_1 VALUES (2, '[2,2,2]')", "SELECT count(*) FROM meas", "ROLLBACK"}},
		{"parent written, partition read", []string{"BEGIN", "INSERT INTO meas VALUES (3, '[3,3,3]')", "SELECT count(*) FROM meas_1", "ROLLBACK"}},
		{"base table written, view read", []string{"BEGIN", "INSERT INTO items VALUES (7, '[7,7,7]')", "SELECT count(*) FROM v_plain", "ROLLBACK"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { b.compare(t, direct, lane, c.stmts) })
	}

	t.Run("view using CURRENT_TIMESTAMP inside a transaction", func(t *testing.T) {
		l := newLanes(t, lane)
		l.wantLane("SELECT pg_backend_pid() FROM v_time LIMIT 1")
		exec(t, lane, "BEGIN")
		now := scalar(t, lane, "SELECT now()")
		time.Sleep(20 * time.Millisecond)
		l.wantPrimary("SELECT pg_backend_pid() FROM v_time LIMIT 1")
		if got := scalar(t, lane, "SELECT t FROM v_time LIMIT 1"); got != now {
			t.Errorf("CURRENT_TIMESTAMP through the view: %s, the transaction's is %s", got, now)
		}
		exec(t, lane, "ROLLBACK")
	})

	t.Run("B aggregate created through txlane", func(t *testing.T) {
		// DDL committed through txlane makes the catalog be read again.
		exec(t, lane, "CREATE AGGREGATE wsum(int) (SFUNC = sfn, STYPE = int)")
		t.Cleanup(func() { exec(t, direct, "DROP AGGREGATE IF EXISTS wsum(int)") })
		b.compare(t, direct, lane, []string{"BEGIN", "SELECT wsum(id) FROM items", "ROLLBACK"})
		b.compare(t, direct, lane, []string{"BEGIN", "SELECT id, wsum(id) OVER (ORDER BY id) FROM items", "ROLLBACK"})
	})
}

// explainHidden classifies sql with a catalog read from the database, as
// `txlane explain --discover` does.
func explainHidden(t *testing.T, b *hiddenBed, sql string, state *policy.TxState) router.Explanation {
	t.Helper()
	cfg, err := pgconn.ParseConfig(b.direct)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	snap, err := catalog.Discover(ctx, cfg)
	tables, objs := snap.VectorTables, snap.Objects
	if err != nil {
		t.Fatal(err)
	}
	rules, err := policy.NewRules(policy.RulesConfig{Discovered: tables})
	if err != nil {
		t.Fatal(err)
	}
	cl := router.NewClassifier(router.Config{Catalog: router.NewCatalog(objs)})
	return router.Explain(cl, sql, state, rules, []string{b.schema, "public"})
}

func TestHiddenExplain(t *testing.T) {
	b := startHiddenBed(t)
	for _, c := range []struct{ sql, reason, hidden string }{
		{"SELECT id, l FROM v_items", "writing_function", "view " + b.schema + ".v_items calls volatile " + b.schema + ".logit()"},
		{"SELECT id FROM items ORDER BY embedding <-> $1 LIMIT 3", "vector_read_idle", ""},
	} {
		e := explainHidden(t, b, c.sql, nil)
		t.Logf("%s: %+v", c.sql, e)
		if e.Reason != c.reason || c.hidden != "" && (len(e.Hidden) == 0 || e.Hidden[0] != c.hidden) {
			t.Errorf("%s: reason %s hidden %q, want %s, %q", c.sql, e.Reason, e.Hidden, c.reason, c.hidden)
		}
	}
}

// BenchmarkDiscoverCatalog reads the test database's catalog as the vector
// lane does on first use (connection included) and builds the snapshot.
func BenchmarkDiscoverCatalog(b *testing.B) {
	cfg := pgtest.Config(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		snap, err := catalog.Discover(ctx, cfg)
		objs := snap.Objects
		if err != nil {
			b.Fatal(err)
		}
		router.NewCatalog(objs)
	}
}

// TestHiddenCatalogUnread: with discovery on, until a catalog read
// succeeds nothing is offloaded (what views and triggers do is unknown).
func TestHiddenCatalogUnread(t *testing.T) {
	b := startHiddenBed(t)
	// A pool that cannot log in: the catalog cannot be read.
	cfg := pgtest.Config(t)
	cfg.User = "no_such_role_for_txlane"
	p := startProxy(t, func(o *proxy.Options) {
		o.ReadPool = proxy.ReadPoolOptions{Config: cfg, MaxConns: 2, AcquireTimeout: 500 * time.Millisecond}
		o.Discover = true
		o.Rules.VectorTables = []string{b.schema + ".items"}
	})
	c := b.dial(t, p.DSN(t, pgtest.AppRole))
	l := newLanes(t, c)
	l.wantPrimary("SELECT pg_backend_pid() FROM items ORDER BY embedding <-> '[1,2,3]' LIMIT 1")
	if n := p.Server.Metrics().Routed("primary", "unproven"); n == 0 {
		t.Errorf("reads before a catalog read: not routed as unproven")
	}
	b.compare(t, b.connectDirect(t), c, []string{"BEGIN", "SELECT id, l FROM v_items ORDER BY id", "ROLLBACK"})
}

// TestHiddenRerouteFollowsReachedTables: a write rerouted into the holder's
// transaction (escape reroute) reaches tables through a cascade; a later
// read of them carrying the unit follows it there and sees the cascade.
func TestHiddenRerouteFollowsReachedTables(t *testing.T) {
	b := startHiddenBed(t)
	p := startProxy(t, func(o *proxy.Options) {
		o.ReadPool = proxy.ReadPoolOptions{Config: isoPool(t, pgtest.AppRole), MaxConns: 4, AcquireTimeout: 2 * time.Second}
		o.Discover = true
		o.Rules.Escape = "reroute"
		o.RerouteWaitTimeout = 2 * time.Second
	})
	holder, other := b.dial(t, p.DSN(t, pgtest.AppRole)), b.dial(t, p.DSN(t, pgtest.AppRole))
	exec(t, holder, "BEGIN; INSERT INTO audit VALUES ('holder') /*unit='u1'*/")
	exec(t, other, "DELETE FROM par WHERE id = 1 /*unit='u1'*/")
	if got := scalar(t, other, "SELECT count(*) FROM chi /*unit='u1'*/"); got != "1" {
		t.Errorf("a read in the unit sees %s rows of chi, want 1 (the rerouted delete cascaded)", got)
	}
	if got := scalar(t, other, "SELECT count(*) FROM chi"); got != "2" {
		t.Errorf("a read outside the unit sees %s rows of chi, want 2 (nothing committed)", got)
	}
	exec(t, holder, "ROLLBACK")
	if got := scalar(t, b.super, "SELECT count(*) FROM "+b.schema+".chi"); got != "2" {
		t.Errorf("after the holder's ROLLBACK chi has %s rows", got)
	}
}

// TestHiddenCatalogReload: a relation created behind txlane's back is
// unknown, hence kept on the primary, until the catalog is read again; a
// reload reads it again, and a view redefined to write is then seen.
func TestHiddenCatalogReload(t *testing.T) {
	b := startHiddenBed(t)
	direct, lane := b.connectDirect(t), b.connectLane(t)
	l := newLanes(t, lane)
	l.wantLane("SELECT pg_backend_pid() FROM items LIMIT 1") // first use: the catalog is read
	reload := func() {
		t.Helper()
		err := b.Server.Reload(proxy.Options{
			ReadPool: proxy.ReadPoolOptions{Config: isoPool(t, pgtest.AppRole), MaxConns: 4, AcquireTimeout: 2 * time.Second},
			Discover: true, DiscoverInterval: time.Hour,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// waitLane waits for the background catalog read a reload starts.
	waitLane := func(sql string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !l.ranOnLane(sql); {
			if time.Now().After(deadline) {
				t.Fatalf("%q still on the primary after the reload", sql)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	exec(t, direct, "CREATE VIEW v_new AS SELECT id, embedding FROM items; CREATE VIEW v_marker AS SELECT 1 AS one")
	before := b.Server.Metrics().Routed("primary", "unproven")
	l.wantPrimary("SELECT pg_backend_pid() FROM items, v_new LIMIT 1")
	if b.Server.Metrics().Routed("primary", "unproven") <= before {
		t.Error("a read of a relation created behind txlane's back was not routed as unproven")
	}
	reload()
	waitLane("SELECT pg_backend_pid() FROM items, v_new LIMIT 1")

	// Redefined behind txlane's back to write: seen after the next reload
	// (v_marker2 tells when that catalog read is in).
	exec(t, direct, "CREATE OR REPLACE VIEW v_new AS SELECT id, embedding, logit() AS l FROM items; CREATE VIEW v_marker2 AS SELECT 1 AS one")
	reload()
	waitLane("SELECT pg_backend_pid() FROM items, v_marker2 LIMIT 1")
	l.wantPrimary("SELECT pg_backend_pid() FROM v_new LIMIT 1")
	b.compare(t, direct, lane, []string{"BEGIN", "SELECT id, l FROM v_new ORDER BY id", "ROLLBACK"})
}

// TestAdminExplainUsesDiscoveredCatalog: once the primary's database has
// been read, the console's EXPLAIN routes as the proxy does: a table found to
// be a vector table goes to the lane, a view that calls a writing function
// to the primary.
func TestAdminExplainUsesDiscoveredCatalog(t *testing.T) {
	schema := uniqueName("adm_explain")
	pgtest.Exec(t, fmt.Sprintf(`CREATE SCHEMA %[1]s;
CREATE TABLE %[1]s.found (id int, embedding vector(3)); INSERT INTO %[1]s.found VALUES (1, '[1,0,0]');
CREATE TABLE %[1]s.audit (what text);
CREATE FUNCTION %[1]s.logit() RETURNS int LANGUAGE sql VOLATILE AS $$ INSERT INTO %[1]s.audit VALUES ('x') RETURNING 1 $$;
CREATE VIEW %[1]s.v_found AS SELECT id, embedding, %[1]s.logit() AS l FROM %[1]s.found`, schema))
	t.Cleanup(func() { pgtest.Exec(t, "DROP SCHEMA IF EXISTS "+schema+" CASCADE") })
	p := startProxy(t, func(o *proxy.Options) {
		o.ReadPool = proxy.ReadPoolOptions{Config: isoPool(t, pgtest.AppRole), MaxConns: 2, AcquireTimeout: 2 * time.Second}
		o.Discover = true
		o.DiscoverInterval = time.Hour
		o.AdminUsers = []string{pgtest.AppRole}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgconn.Connect(ctx, p.adminDSN(t, pgtest.AppRole))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	route := func(sql string) string {
		for _, row := range exec(t, admin, "EXPLAIN "+sql)[0].Rows {
			if string(row[0]) == "route" {
				return string(row[1])
			}
		}
		t.Fatalf("EXPLAIN %s: no route row", sql)
		return ""
	}
	read := "SELECT id FROM " + schema + ".found ORDER BY embedding <-> '[1,0,0]'"
	if got := route(read); !strings.Contains(got, "not_vector_read") {
		t.Fatalf("before any catalog read: %q, want the configured policy's not_vector_read", got)
	}
	// A client's first request makes the proxy read the catalog.
	scalar(t, p.connect(t), "SELECT 1")
	if got := route(read); !strings.Contains(got, "vector_read_idle") {
		t.Errorf("a discovered vector table: %q, want vector (vector_read_idle)", got)
	}
	if got := route("SELECT id, l FROM " + schema + ".v_found"); !strings.Contains(got, "writing_function") {
		t.Errorf("a view calling a writing function: %q, want primary (writing_function)", got)
	}
}

// TestCatalogReadIgnoresClientOperators: the catalog is read on a lane
// connection that carries the last client's search_path; a client whose own
// "=" on oid comes before pg_catalog's must not hide the vector tables (and
// so the hidden writes) txlane reads there.
func TestCatalogReadIgnoresClientOperators(t *testing.T) {
	schema := uniqueName("forge")
	pgtest.Exec(t, fmt.Sprintf(`CREATE SCHEMA %[1]s;
CREATE FUNCTION %[1]s.never(oid, oid) RETURNS bool IMMUTABLE LANGUAGE sql AS $f$SELECT false$f$;
CREATE OPERATOR %[1]s.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = %[1]s.never);
CREATE TABLE %[1]s.found (id int, embedding vector(3)); INSERT INTO %[1]s.found VALUES (1, '[1,0,0]');
GRANT USAGE ON SCHEMA %[1]s TO PUBLIC; GRANT SELECT ON %[1]s.found TO PUBLIC`, schema))
	t.Cleanup(func() { pgtest.Exec(t, "DROP SCHEMA IF EXISTS "+schema+" CASCADE") })
	p := startProxy(t, func(o *proxy.Options) {
		o.ReadPool = proxy.ReadPoolOptions{Config: pgtest.Config(t), MaxConns: 1, AcquireTimeout: 2 * time.Second}
		o.Discover = true
		o.DiscoverInterval = time.Hour
	})
	c := p.connect(t)
	l := newLanes(t, c)
	exec(t, c, "SET search_path = "+schema+", pg_catalog, public")
	// A lane read leaves the client's search_path on the one lane connection;
	// committed DDL then makes the next request read the catalog there.
	l.wantLane("SELECT pg_backend_pid() FROM " + schema + ".found")
	exec(t, c, "CREATE TABLE "+schema+".trigger_refresh (x int)")
	l.wantLane("SELECT pg_backend_pid() FROM " + schema + ".found")
}
