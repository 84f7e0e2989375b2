package proxy_test

// PostgreSQL's own functions (set_config, nextval, advisory locks, lo_*)
// hidden in views, SQL function bodies, argument defaults, column defaults,
// check constraints, generated columns, index expressions, domain checks,
// row-level security policies and rules count as they would written in the
// text: pg_depend records no dependency on them (they are pinned), so the
// catalog read finds them in the stored expressions. Row-level security
// policies that may use the session's identity keep reads on the primary;
// reads of the catalog's session views pin nobody.

import (
	"context"
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

// builtinObjects are the shapes, created by txlane_app in a database of
// their own (a domain check that writes would make every statement of a
// shared database presumed to write).
const builtinObjects = `
CREATE TABLE items (id int PRIMARY KEY, embedding vector(3));
INSERT INTO items VALUES (1, '[1,2,3]'), (2, '[3,2,1]');
CREATE SEQUENCE s;
CREATE VIEW v_set AS SELECT set_config('app.h', 'view', false) AS s;
CREATE VIEW v_role AS SELECT set_config('role', 'txlane_app', false) AS r;
CREATE VIEW v_next AS SELECT nextval('s') AS n;
CREATE VIEW v_lock AS SELECT pg_try_advisory_lock(4242) AS l;
CREATE VIEW v_lo AS SELECT lo_from_bytea(0, '\x01'::bytea) AS loid;
CREATE FUNCTION f_atomic() RETURNS text LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT set_config('app.h', 'atomic', false); END;
CREATE FUNCTION f_return(v text) RETURNS text LANGUAGE sql IMMUTABLE RETURN set_config('app.h', v, false);
CREATE FUNCTION f_next() RETURNS bigint LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT nextval('s'); END;
CREATE FUNCTION f_argdef(a text DEFAULT set_config('app.h', 'argdef', false)) RETURNS text LANGUAGE sql IMMUTABLE RETURN a;
CREATE TABLE t_default (v text, d text DEFAULT set_config('app.h', 'default', false));
CREATE TABLE t_check (v text CHECK (set_config('app.h', v, false) IS NOT NULL));
CREATE TABLE t_gen (v text, g text GENERATED ALWAYS AS (f_return(v)) STORED);
CREATE TABLE t_index (v text);
CREATE INDEX ON t_index ((f_return(v)));
CREATE TABLE t_rule (v text);
CREATE RULE r AS ON INSERT TO t_rule DO ALSO SELECT set_config('app.h', NEW.v, false);
CREATE TABLE t_rls (v text);
INSERT INTO t_rls VALUES ('r');
ALTER TABLE t_rls ENABLE ROW LEVEL SECURITY;
ALTER TABLE t_rls FORCE ROW LEVEL SECURITY;
CREATE POLICY p ON t_rls USING (set_config('app.h', 'rls', false) IS NOT NULL);
CREATE TABLE t_serial (id serial, v text, at timestamptz DEFAULT now());
`

// builtinDB creates a database owned by txlane_app with builtinObjects
// (and extra), dropped after the test, and returns its superuser DSN.
func builtinDB(t *testing.T, extra ...string) string {
	t.Helper()
	name := uniqueName("builtins")
	pgtest.Exec(t, "CREATE DATABASE "+name+" OWNER "+pgtest.AppRole)
	t.Cleanup(func() { pgtest.Exec(t, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") })
	u, err := url.Parse(pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	dsn := u.String()
	app := connectDSN(t, asUser(t, dsn, pgtest.AppRole))
	exec(t, app, builtinObjects)
	for _, sql := range extra {
		exec(t, app, sql)
	}
	app.Close(context.Background())
	return dsn
}

// asUser is dsn with user in place of its user.
func asUser(t *testing.T, dsn, user string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(user)
	return u.String()
}

// classifyIn classifies sql with the catalog of the database of dsn, read
// as `txlane explain --discover` reads it.
func classifyIn(t *testing.T, dsn, sql string) *policy.Statement {
	t.Helper()
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	snap, err := catalog.Discover(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return router.NewClassifier(router.Config{Catalog: router.NewCatalog(snap.Objects)}).Classify(sql)
}

// TestHiddenBuiltinsExplain: each shape gets the flags its built-in has in
// the text, with the finding named.
func TestHiddenBuiltinsExplain(t *testing.T) {
	dsn := builtinDB(t)
	const setter = policy.FlagWritingFunction | policy.FlagMayChangeSession
	cases := []struct {
		sql       string
		want, not policy.Flags
		names     string
	}{
		{"SELECT * FROM v_set", setter, 0, "set_config"},
		{"SELECT * FROM v_role", setter, 0, "set_config"},
		{"SELECT * FROM v_next", policy.FlagWritingFunction, 0, "nextval"},
		{"SELECT * FROM v_lock", policy.FlagWritingFunction, 0, "pg_try_advisory_lock"},
		{"SELECT * FROM v_lo", policy.FlagWritingFunction, 0, "lo_from_bytea"},
		{"SELECT f_atomic()", setter, 0, "set_config"},
		{"SELECT f_return('x')", setter, 0, "set_config"},
		{"SELECT f_next()", policy.FlagWritingFunction, 0, "nextval"},
		{"SELECT f_argdef()", setter, 0, "set_config"},
		{"INSERT INTO t_default(v) VALUES ('x')", setter, 0, "default of column d"},
		{"INSERT INTO t_check VALUES ('x')", setter, 0, "constraint t_check_v_check"},
		{"INSERT INTO t_gen(v) VALUES ('x')", setter, 0, "default of column g"},
		{"INSERT INTO t_index VALUES ('x')", setter, 0, "index t_index_f_return_idx"},
		{"INSERT INTO t_rule VALUES ('x')", setter, 0, "rule r"},
		{"SELECT * FROM t_rls", setter, 0, "row-level security policy p"},
		{"SELECT table_to_xml('v_set', false, false, '')", setter, 0, "set_config"},
		{"SELECT schema_to_xml('public', false, false, '')", policy.FlagUnproven, 0, ""},
		{"UPDATE pg_settings SET setting = '11MB' WHERE name = 'work_mem'", setter, 0, "pg_settings_u"},
		// Controls: a sequence in a default adds nothing to a write (no pin
		// check for every insert into a serial column); rules of another
		// command and the session views change nothing.
		{"INSERT INTO t_serial(v) VALUES ('x')", policy.FlagTxDependent, setter, "now()"},
		{"SELECT count(*) FROM pg_settings", policy.FlagBackendDependent, setter, ""},
		{"SELECT id FROM items", 0, setter | policy.FlagBackendDependent, ""},
	}
	for _, c := range cases {
		st := classifyIn(t, dsn, c.sql)
		if st.Flags&c.want != c.want || st.Flags&c.not != 0 {
			t.Errorf("%s: flags %v, want %v and none of %v (hidden %q)", c.sql, st.Flags, c.want, c.not, st.Hidden)
		}
		if c.names != "" && !strings.Contains(strings.Join(st.Hidden, "\n"), c.names) {
			t.Errorf("%s: hidden %q, want %q named", c.sql, st.Hidden, c.names)
		}
	}

	// A domain's check runs wherever a value becomes one: a hazard of every
	// statement.
	app := connectDSN(t, asUser(t, dsn, pgtest.AppRole))
	exec(t, app, "CREATE DOMAIN d_set AS text CHECK (set_config('app.h', VALUE, false) IS NOT NULL)")
	if st := classifyIn(t, dsn, "SELECT 'x'::d_set"); st.Flags&setter != setter || !strings.Contains(strings.Join(st.Hidden, "\n"), "d_set") {
		t.Errorf("cast to a domain whose check calls set_config: flags %v hidden %q", st.Flags, st.Hidden)
	}
}

// startBuiltinTxPool is a transaction-mode proxy with pool_size 1 and
// catalog discovery in front of the database of dsn.
func startBuiltinTxPool(t *testing.T, dsn string) *testProxy {
	t.Helper()
	lane, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return startProxyOn(t, dsn, func(o *proxy.Options) {
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 1}
		o.QueryWaitTimeout = 300 * time.Millisecond
		o.ReadPool = proxy.ReadPoolOptions{Config: lane, MaxConns: 1, AcquireTimeout: time.Second}
		o.Discover = true
		o.DiscoverInterval = time.Hour
	})
}

// waitPinned waits up to 5 s until SHOW CLIENTS' pinned column names
// reason (the pin check runs behind the client's request) and returns it.
func waitPinned(p *testProxy, reason string) string {
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := pinnedReasons(p)
		if strings.Contains(got, reason) || time.Now().After(deadline) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitNoClients waits until the proxy lists no client.
func waitNoClients(t *testing.T, p *testProxy) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(p.Server.ClientList()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("clients still listed: %+v", p.Server.ClientList())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHiddenBuiltinsTxPoolNextClientClean: in transaction mode with one
// pooled backend, what a hidden built-in leaves in the session pins its
// client (or moves with it), and the next client of the backend finds none
// of it.
func TestHiddenBuiltinsTxPoolNextClientClean(t *testing.T) {
	dsn := builtinDB(t)
	p := startBuiltinTxPool(t, dsn)
	const (
		custom = "SELECT coalesce(current_setting('app.h', true), '')"
		locks  = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
	)
	for _, c := range []struct{ stmt, pin, check, clean string }{
		{"SELECT * FROM v_set", "set_config", custom, ""},
		{"SELECT f_atomic()", "set_config", custom, ""},
		{"SELECT f_return('return')", "set_config", custom, ""},
		{"SELECT f_argdef()", "set_config", custom, ""},
		{"INSERT INTO t_default(v) VALUES ('x')", "set_config", custom, ""},
		{"INSERT INTO t_check VALUES ('check')", "set_config", custom, ""},
		{"INSERT INTO t_gen(v) VALUES ('gen')", "set_config", custom, ""},
		{"INSERT INTO t_index VALUES ('index')", "set_config", custom, ""},
		{"INSERT INTO t_rule VALUES ('rule')", "set_config", custom, ""},
		{"SELECT * FROM t_rls", "set_config", custom, ""},
		{"SELECT table_to_xml('v_set', false, false, '')", "set_config", custom, ""},
		{"SELECT * FROM v_lock", "advisory_lock", locks, "0"},
		{"SELECT * FROM v_role", "", "SELECT current_user", "postgres"},
	} {
		t.Run(c.stmt, func(t *testing.T) {
			a := connectDSN(t, p.DSN(t, ""))
			exec(t, a, c.stmt)
			if got := waitPinned(p, c.pin); !strings.Contains(got, c.pin) {
				t.Errorf("after %q SHOW CLIENTS pinned %q, want %q", c.stmt, got, c.pin)
			}
			a.Close(context.Background())
			waitNoClients(t, p)
			b := connectDSN(t, p.DSN(t, ""))
			if got := scalar(t, b, c.check); got != c.clean {
				t.Errorf("the next client of the backend: %q answers %q, want %q", c.check, got, c.clean)
			}
			b.Close(context.Background())
			waitNoClients(t, p)
		})
	}
}

// startBuiltinLane is a session-mode proxy in front of the database of dsn
// with catalog discovery and a vector lane of one connection whose login
// is pool (no superuser, granted txlane_app).
func startBuiltinLane(t *testing.T, dsn string, pool *pgconn.Config) *testProxy {
	t.Helper()
	pool.Database = strings.TrimPrefix(mustURL(t, dsn).Path, "/")
	return startProxyOn(t, dsn, func(o *proxy.Options) {
		o.ReadPool = proxy.ReadPoolOptions{Config: pool, MaxConns: 1, AcquireTimeout: 2 * time.Second}
		o.Discover = true
		o.DiscoverInterval = time.Hour
	})
}

func mustURL(t *testing.T, dsn string) *url.URL {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestHiddenBuiltinsLane: a read of a vector table that runs a hidden
// built-in which writes or sets stays on the primary, and a large object a
// view creates rolls back with the client's transaction.
func TestHiddenBuiltinsLane(t *testing.T) {
	pool := isoPool(t, pgtest.AppRole)
	dsn := builtinDB(t)
	p := startBuiltinLane(t, dsn, pool)
	c := connectDSN(t, p.DSN(t, pgtest.AppRole))
	l := newLanes(t, c)
	l.wantLane("SELECT pg_backend_pid() FROM items LIMIT 1")
	super := connectDSN(t, dsn)
	const los = "SELECT count(*) FROM pg_largeobject_metadata"
	before := scalar(t, super, los)
	exec(t, c, "BEGIN")
	exec(t, c, "SELECT l.loid FROM v_lo l, items LIMIT 1")
	exec(t, c, "ROLLBACK")
	if after := scalar(t, super, los); after != before {
		t.Errorf("large objects %s before, %s after the client's ROLLBACK: the view's lo_from_bytea escaped it", before, after)
	}
	for _, sql := range []string{
		"SELECT pg_backend_pid() FROM items, v_set LIMIT 1",
		"SELECT pg_backend_pid() FROM items, v_next LIMIT 1",
		"SELECT pg_backend_pid() FROM items, v_lock LIMIT 1",
		"SELECT pg_backend_pid() FROM items, v_lo LIMIT 1",
		"SELECT pg_backend_pid() FROM items, t_rls LIMIT 1",
		"SELECT pg_backend_pid(), f_atomic() FROM items LIMIT 1",
		"SELECT pg_backend_pid(), f_return('x') FROM items LIMIT 1",
		"SELECT pg_backend_pid(), f_next() FROM items LIMIT 1",
		"SELECT pg_backend_pid(), f_argdef() FROM items LIMIT 1",
		"SELECT pg_backend_pid(), table_to_xml('v_set', false, false, '') FROM items LIMIT 1",
	} {
		l.wantPrimary(sql)
	}
	exec(t, c, "RESET ALL; SELECT pg_advisory_unlock_all()")
}

// TestPolicyIdentityKeepsPrimary: a forced row-level security policy whose
// expression may depend on the session's identity (session_user, directly
// or in a function of any body, current_user, current_setting) keeps reads
// of its table on the primary, where the session user is the client's: the
// rows are the ones PostgreSQL shows the client directly. A policy without
// it stays on the lane.
func TestPolicyIdentityKeepsPrimary(t *testing.T) {
	pool := isoPool(t, pgtest.AppRole)
	policies := []string{
		"owner = session_user",
		"owner = who_sql()",
		"owner = who_pl()",
		"owner = who_str()",
		"owner = who_atomic()",
		"owner = who_nested()",
		"owner = current_user",
		"owner = current_setting('app.owner', true)",
		"owner = 'txlane_app'",
	}
	extra := []string{`
CREATE FUNCTION who_sql() RETURNS text LANGUAGE sql STABLE RETURN session_user;
CREATE FUNCTION who_pl() RETURNS text LANGUAGE plpgsql STABLE AS $f$BEGIN RETURN session_user; END$f$;
CREATE FUNCTION who_str() RETURNS text LANGUAGE sql STABLE AS 'SELECT session_user::text';
CREATE FUNCTION who_atomic() RETURNS text LANGUAGE sql STABLE BEGIN ATOMIC SELECT current_user; END;
CREATE FUNCTION who_nested() RETURNS text LANGUAGE sql IMMUTABLE RETURN upper(who_pl());`}
	for i, pol := range policies {
		extra = append(extra, fmt.Sprintf(`CREATE TABLE r%[1]d (id int, owner text, embedding vector(3));
INSERT INTO r%[1]d VALUES (1, 'txlane_app', '[1,1,1]'), (2, '%[2]s', '[1,1,1]'), (3, 'TXLANE_APP', '[1,1,1]');
ALTER TABLE r%[1]d ENABLE ROW LEVEL SECURITY;
ALTER TABLE r%[1]d FORCE ROW LEVEL SECURITY;
CREATE POLICY p ON r%[1]d USING (%[3]s)`, i, pool.User, pol))
	}
	dsn := builtinDB(t, extra...)
	p := startBuiltinLane(t, dsn, pool)
	direct := connectDSN(t, asUser(t, dsn, pgtest.AppRole))
	c := connectDSN(t, p.DSN(t, pgtest.AppRole))
	for _, conn := range []*pgconn.PgConn{direct, c} {
		exec(t, conn, "SET app.owner = 'txlane_app'")
	}
	l := newLanes(t, c)
	for i, pol := range policies {
		rows := fmt.Sprintf("SELECT string_agg(id::text, ',' ORDER BY id) FROM r%d", i)
		if got, want := scalar(t, c, rows), scalar(t, direct, rows); got != want {
			t.Errorf("policy USING (%s): rows %s through txlane, %s directly", pol, got, want)
		}
		read := fmt.Sprintf("SELECT pg_backend_pid() FROM r%d ORDER BY embedding <-> '[1,1,1]' LIMIT 1", i)
		if strings.Contains(pol, "'txlane_app'") {
			l.wantLane(read)
			continue
		}
		if l.ranOnLane(read) {
			t.Errorf("policy USING (%s): the read ran on the vector lane, want the primary", pol)
		}
	}
}

// TestCatalogReadsDoNotPin: reading the catalog's session views leaves the
// client unpinned in transaction mode (the next client runs on the same,
// only, backend), while a set_config hidden in a view still pins it.
func TestCatalogReadsDoNotPin(t *testing.T) {
	dsn := builtinDB(t)
	p := startBuiltinTxPool(t, dsn)
	a, b := connectDSN(t, p.DSN(t, "")), connectDSN(t, p.DSN(t, ""))
	exec(t, a, "SELECT 1")
	exec(t, b, "SELECT 1")
	pins := p.Server.Metrics().Pins("set_config")
	for _, sql := range []string{
		"SELECT count(*) FROM pg_settings",
		"SELECT * FROM pg_cursors",
		"SELECT name FROM pg_prepared_statements",
		"SELECT * FROM pg_prepared_statement()",
		"SELECT count(*) FROM information_schema.tables",
		"SELECT count(*) FROM pg_stat_activity",
		"SELECT count(*) FROM pg_locks",
		"SELECT * FROM t_serial",
		"INSERT INTO t_serial(v) VALUES ('x')",
	} {
		exec(t, a, sql)
		// b runs on the only backend once a's pin check (if any) is done.
		if err := execErr(b, "SELECT 1"); err != nil {
			t.Errorf("after a's %q, b: %v", sql, err)
		}
		if got := pinnedReasons(p); strings.Trim(got, ";") != "" {
			t.Errorf("after %q SHOW CLIENTS pinned %q, want nothing", sql, got)
		}
	}
	if got := p.Server.Metrics().Pins("set_config"); got != pins {
		t.Errorf("txlane_pins_total{reason=set_config} went from %v to %v", pins, got)
	}
	exec(t, a, "SELECT * FROM v_set")
	if got := waitPinned(p, "set_config"); !strings.Contains(got, "set_config") {
		t.Errorf("after a set_config through a view SHOW CLIENTS pinned %q, want set_config", got)
	}
	wantNotOnBackendOf(t, b, "SELECT 1", "set_config through a view")
}
