package proxy_test

// Isolation of the shared vector lane: whatever a read's hidden code does to
// its lane connection's session (role, settings, prepared statements), the
// next client of that connection runs as itself, and the connection is
// closed and counted (txlane_lane_connections_discarded_total{reason}).
// Every proxy here has one lane connection (MaxConns 1), so the next client
// surely gets the connection the previous read used.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// isoBed is a proxy with catalog discovery on (as txlane runs by default,
// trusting STABLE functions) and a vector lane of one connection, in front
// of a vector table vec (id, embedding, note: 1 'x', 2 'y', 3 'z').
type isoBed struct {
	*testProxy
	vec string
}

// startIsoBed starts the proxy; pool is the read pool's login (nil: the
// test's superuser). Functions the test uses must exist before: discovery
// reads them once.
func startIsoBed(t *testing.T, vec string, pool *pgconn.Config) *isoBed {
	t.Helper()
	if pool == nil {
		pool = pgtest.Config(t)
	}
	p := startProxy(t, func(o *proxy.Options) {
		o.ReadPool = proxy.ReadPoolOptions{Config: pool, MaxConns: 1, AcquireTimeout: 2 * time.Second}
		o.Rules.VectorTables = []string{vec}
		o.Discover = true
	})
	return &isoBed{testProxy: p, vec: vec}
}

// isoTable creates the vector table and drops it after the test.
func isoTable(t *testing.T) string {
	t.Helper()
	vec := uniqueName("isovec")
	pgtest.Exec(t, fmt.Sprintf(`CREATE TABLE %[1]s (id int PRIMARY KEY, embedding vector(3), note text);
INSERT INTO %[1]s VALUES (1, '[1,0,0]', 'x'), (2, '[0,1,0]', 'y'), (3, '[0,0,1]', 'z');
GRANT SELECT ON %[1]s TO PUBLIC;
-- Probes of the lane's session state, through functions: a read naming
-- current_setting() of a setting the lane does not mirror, or pg_settings,
-- stays on the primary.
-- Their bodies run dynamic SQL, which the catalog cannot read.
CREATE FUNCTION %[1]s_setting(n text, missing_ok bool DEFAULT false) RETURNS text STABLE LANGUAGE plpgsql AS $f$DECLARE r text; BEGIN EXECUTE 'SELECT current_setting($1, $2)' INTO r USING n, missing_ok; RETURN r; END$f$;
CREATE FUNCTION %[1]s_settings_like(p text) RETURNS bigint STABLE LANGUAGE plpgsql AS $f$DECLARE r bigint; BEGIN EXECUTE 'SELECT count(*) FROM pg_settings WHERE name LIKE $1' INTO r USING p; RETURN r; END$f$`, vec))
	t.Cleanup(func() {
		pgtest.Exec(t, "DROP TABLE IF EXISTS "+vec+"; DROP FUNCTION IF EXISTS "+vec+"_setting(text, bool); DROP FUNCTION IF EXISTS "+vec+"_settings_like(text)")
	})
	return vec
}

// isoPool creates the read pool's login as README prescribes (LOGIN
// NOSUPERUSER NOINHERIT, granted the client roles) and returns its config.
// Roles are dropped after the test (register isoPool before objects granted
// to them, so that those are gone first).
func isoPool(t *testing.T, clientRoles ...string) *pgconn.Config {
	t.Helper()
	pool := uniqueName("isopool")
	sql := "CREATE ROLE " + pool + " LOGIN NOSUPERUSER NOINHERIT"
	for _, r := range clientRoles {
		sql += "; GRANT " + r + " TO " + pool
	}
	pgtest.Exec(t, sql)
	t.Cleanup(func() { pgtest.Exec(t, "DROP ROLE IF EXISTS "+pool) })
	cfg := pgtest.Config(t)
	cfg.User = pool
	return cfg
}

// isoRoles creates login roles and drops them after the test.
func isoRoles(t *testing.T, prefix string, n int) []string {
	t.Helper()
	var out []string
	for i := 0; i < n; i++ {
		r := uniqueName(fmt.Sprintf("%s%d", prefix, i))
		pgtest.Exec(t, "CREATE ROLE "+r+" LOGIN")
		out = append(out, r)
	}
	t.Cleanup(func() {
		for _, r := range out {
			pgtest.Exec(t, "DROP OWNED BY "+r+"; DROP ROLE IF EXISTS "+r)
		}
	})
	return out
}

// isoFunc creates a STABLE plpgsql function name(args) that calls a
// VOLATILE one (name_v) with the given body (PostgreSQL runs SET, PREPARE
// or DEALLOCATE only in a volatile function) through dynamic SQL, which the
// catalog cannot read: the classifier lets a read calling it go to the lane
// while the client has written nothing. call passes the arguments on. Both
// are dropped after the test.
func isoFunc(t *testing.T, name, args, call, ret, body string) {
	t.Helper()
	params, using := "", ""
	if call != "" {
		for i := range strings.Split(call, ",") {
			if i > 0 {
				params += ", "
			}
			params += fmt.Sprintf("$%d", i+1)
		}
		using = " USING " + call
	}
	pgtest.Exec(t, fmt.Sprintf(`CREATE FUNCTION %[1]s_v(%[2]s) RETURNS %[4]s VOLATILE LANGUAGE plpgsql AS $f$ %[5]s $f$;
CREATE FUNCTION %[1]s(%[2]s) RETURNS %[4]s STABLE LANGUAGE plpgsql AS $f$ DECLARE iso_ret %[4]s; BEGIN EXECUTE 'SELECT %[1]s_v(%[6]s)' INTO iso_ret%[7]s; RETURN iso_ret; END $f$;
GRANT EXECUTE ON FUNCTION %[1]s(%[2]s), %[1]s_v(%[2]s) TO PUBLIC`, name, args, call, ret, body, params, using))
	t.Cleanup(func() {
		pgtest.Exec(t, fmt.Sprintf("DROP FUNCTION IF EXISTS %[1]s(%[2]s); DROP FUNCTION IF EXISTS %[1]s_v(%[2]s)", name, args))
	})
}

func (b *isoBed) connectAs(t *testing.T, user string) *pgconn.PgConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, b.DSN(t, user))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// laneRead runs sql, whose first column is pg_backend_pid(), fails unless
// the vector lane ran it, and returns its rows as text (NULL as "<null>").
func laneRead(t *testing.T, c *pgconn.PgConn, sql string) [][]string {
	t.Helper()
	primary := backendPID(t, c)
	res := exec(t, c, sql)
	var out [][]string
	for _, row := range res[len(res)-1].Rows {
		var r []string
		for _, v := range row {
			if v == nil {
				r = append(r, "<null>")
			} else {
				r = append(r, string(v))
			}
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		t.Fatalf("%q: no rows", sql)
	}
	if out[0][0] == primary {
		t.Fatalf("%q ran on the primary; the test needs the vector lane", sql)
	}
	return out
}

// discards returns the lane connections discarded so far, by reason.
func (b *isoBed) discards() map[string]float64 {
	out := map[string]float64{}
	for _, r := range []string{"role", "settings", "prepared_statements", "reported_setting", "notification", "transaction", "check_failed"} {
		if n := b.Server.Metrics().LaneDiscards(r); n != 0 {
			out[r] = n
		}
	}
	return out
}

// wantDiscards fails unless exactly want were discarded since before.
func (b *isoBed) wantDiscards(t *testing.T, before map[string]float64, want map[string]float64) {
	t.Helper()
	now := b.discards()
	got := map[string]float64{}
	for r, n := range now {
		if d := n - before[r]; d != 0 {
			got[r] = d
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("lane connections discarded: %v, want %v", got, want)
	}
}

// A read's hidden code makes its lane connection take another role for the
// session (set_config('role', ..., false), or SET ROLE through EXECUTE).
// The next client of the first role runs its read as itself, on a new lane
// connection, and the poisoned one is discarded for its role.
func TestLaneRoleChangeDoesNotReachNextClient(t *testing.T) {
	roles := isoRoles(t, "isor", 2)
	ra, rb := roles[0], roles[1]
	pool := isoPool(t, ra, rb)
	vec := isoTable(t)
	secret := uniqueName("isosecret")
	pgtest.Exec(t, fmt.Sprintf("CREATE TABLE %[1]s (s text); INSERT INTO %[1]s VALUES ('b-only'); REVOKE ALL ON %[1]s FROM PUBLIC; GRANT SELECT ON %[1]s TO %[2]s", secret, rb))
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+secret) })
	viaSetConfig, viaSetRole := uniqueName("iso_setcfg"), uniqueName("iso_setrole")
	isoFunc(t, viaSetConfig, "r text", "r", "text", "BEGIN PERFORM set_config('role', r, false); RETURN current_user; END")
	isoFunc(t, viaSetRole, "r text", "r", "text", "BEGIN EXECUTE 'SET ROLE ' || quote_ident(r); RETURN current_user; END")
	b := startIsoBed(t, vec, pool)

	for i, fn := range []string{viaSetConfig, viaSetRole} {
		before := b.discards()
		a := b.connectAs(t, ra)
		rows := laneRead(t, a, fmt.Sprintf("SELECT pg_backend_pid(), %s('%s') FROM %s WHERE id = 1", fn, rb, b.vec))
		lanePID := rows[0][0]
		// NOTE: within its own statement the read did act as rb (README:
		// a read may act with another client role granted to the pool).
		t.Logf("%s: the read's hidden code ran as %q", fn, rows[0][1])
		a2 := b.connectAs(t, ra)
		rows = laneRead(t, a2, fmt.Sprintf("SELECT pg_backend_pid(), current_user, (SELECT count(*) FROM %s WHERE has_table_privilege('%s', 'SELECT')) FROM %s WHERE id = 1", b.vec, secret, b.vec))
		if rows[0][1] != ra || rows[0][2] != "0" {
			t.Errorf("%s: the next client of role %s ran its read as %q (privilege on %s: %s)", fn, ra, rows[0][1], secret, rows[0][2])
		}
		if rows[0][0] == lanePID {
			t.Errorf("%s: the next read ran on the lane connection whose role was changed (pid %s)", fn, lanePID)
		}
		b.wantDiscards(t, before, map[string]float64{"role": 1})
		if i == 0 {
			// The set-up README prescribes: the same function, run by a
			// client of role rb, changes nothing, and the connection stays.
			c := b.connectAs(t, rb)
			p1 := laneRead(t, c, fmt.Sprintf("SELECT pg_backend_pid(), %s('%s') FROM %s WHERE id = 1", fn, rb, b.vec))[0][0]
			p2 := laneRead(t, c, fmt.Sprintf("SELECT pg_backend_pid(), current_user FROM %s WHERE id = 1", b.vec))[0][0]
			if p1 != p2 {
				t.Errorf("a set_config of the role the read already had cost its lane connection (%s -> %s)", p1, p2)
			}
		}
	}
}

// With the read pool README prescribes (not a superuser, NOINHERIT),
// hidden code that resets its role (to the pool's login) gains nothing: the
// read fails with the login's own privileges, which are none.
func TestLaneRoleResetInsideReadGainsNothing(t *testing.T) {
	roles := isoRoles(t, "isolow", 1)
	pool := isoPool(t, roles...)
	vec := isoTable(t)
	secret, fn := uniqueName("isosecret"), uniqueName("iso_reset")
	pgtest.Exec(t, fmt.Sprintf("CREATE TABLE %[1]s (s text); INSERT INTO %[1]s VALUES ('top-secret'); REVOKE ALL ON %[1]s FROM PUBLIC", secret))
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+secret) })
	isoFunc(t, fn, "", "", "text", fmt.Sprintf("BEGIN PERFORM set_config('role', 'none', true); RETURN current_user || ':' || coalesce((SELECT string_agg(s, ',') FROM %s), ''); END", secret))
	b := startIsoBed(t, vec, pool)
	c := b.connectAs(t, roles[0])
	laneRead(t, c, fmt.Sprintf("SELECT pg_backend_pid() FROM %s WHERE id = 1", b.vec)) // the lane serves this client
	res, err := c.Exec(context.Background(), fmt.Sprintf("SELECT pg_backend_pid(), %s() FROM %s WHERE id = 1", fn, b.vec)).ReadAll()
	if code := sqlstateOf(err); code != "42501" {
		t.Errorf("hidden role reset on the lane: got %v (%v), want 42501 (the pool's login has no privilege)", code, res)
	}
}

// A read pool whose login is a superuser serves only superuser clients:
// another client's read runs on the primary (read_pool.on_unavailable), so
// hidden code resetting its role gains nothing there either. And a pool that
// is not one does not serve a superuser client.
func TestLaneSuperuserPoolServesOnlySuperusers(t *testing.T) {
	roles := isoRoles(t, "isolow", 1)
	pool := isoPool(t, roles...)
	vec := isoTable(t)
	secret, fn := uniqueName("isosecret"), uniqueName("iso_escape")
	pgtest.Exec(t, fmt.Sprintf("CREATE TABLE %[1]s (s text); INSERT INTO %[1]s VALUES ('top-secret'); REVOKE ALL ON %[1]s FROM PUBLIC", secret))
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+secret) })
	isoFunc(t, fn, "", "", "text", fmt.Sprintf("BEGIN PERFORM set_config('role', 'none', true); RETURN current_user || ':' || coalesce((SELECT string_agg(s, ',') FROM %s), ''); END", secret))
	read := fmt.Sprintf("SELECT pg_backend_pid() FROM %s WHERE id = 1", vec)

	super := startIsoBed(t, vec, nil)
	low := super.connectAs(t, roles[0])
	newLanes(t, low).wantPrimary(read)
	if n := super.Server.Metrics().Routed("primary", "vector_unavailable"); n != 1 {
		t.Errorf("reads of a non-superuser client refused by a superuser lane: %v counted vector_unavailable, want 1", n)
	}
	if _, err := low.Exec(context.Background(), fmt.Sprintf("SELECT pg_backend_pid(), %s() FROM %s WHERE id = 1", fn, vec)).ReadAll(); sqlstateOf(err) != "42501" {
		t.Errorf("hidden role reset by a non-superuser client: %v, want 42501 (run on the primary as the client)", err)
	}
	newLanes(t, super.connect(t)).wantLane(read)

	plain := startIsoBed(t, vec, pool)
	newLanes(t, plain.connect(t)).wantPrimary(read)
	newLanes(t, plain.connectAs(t, roles[0])).wantLane(read)
}

func sqlstateOf(err error) string {
	if pe, ok := err.(*pgconn.PgError); ok {
		return pe.Code
	}
	return fmt.Sprint(err)
}

// A read's hidden set_config of search_path stays on its lane connection;
// the next client's unqualified names must not resolve through it.
func TestLaneSearchPathDoesNotReachNextClient(t *testing.T) {
	vec := isoTable(t)
	schema, fn := uniqueName("isoevil"), uniqueName("iso_sp")
	pgtest.Exec(t, fmt.Sprintf(`CREATE SCHEMA %[1]s; GRANT USAGE ON SCHEMA %[1]s TO PUBLIC;
CREATE TABLE %[1]s.%[2]s (id int PRIMARY KEY, embedding vector(3), note text);
INSERT INTO %[1]s.%[2]s VALUES (1, '[1,0,0]', 'forged'); GRANT SELECT ON %[1]s.%[2]s TO PUBLIC`, schema, vec))
	t.Cleanup(func() { pgtest.Exec(t, "DROP SCHEMA IF EXISTS "+schema+" CASCADE") })
	isoFunc(t, fn, "", "", "int", fmt.Sprintf("BEGIN PERFORM set_config('search_path', '%s, public', false); RETURN 1; END", schema))
	b := startIsoBed(t, vec, nil)
	before := b.discards()
	attacker := b.connect(t)
	pid := laneRead(t, attacker, fmt.Sprintf("SELECT pg_backend_pid(), public.%s() FROM public.%s WHERE id = 1", fn, vec))[0][0]
	victim := b.connect(t)
	rows := laneRead(t, victim, fmt.Sprintf("SELECT pg_backend_pid(), note, current_setting('search_path') FROM %s WHERE id = 1", vec))
	if rows[0][1] != "x" || rows[0][2] != `"$user", public` {
		t.Errorf("victim read note %q under search_path %q, want \"x\" under its own", rows[0][1], rows[0][2])
	}
	if rows[0][0] == pid {
		t.Errorf("the victim's read ran on the poisoned lane connection %s", pid)
	}
	b.wantDiscards(t, before, map[string]float64{"settings": 1})
}

// Other settings a read changes where PostgreSQL does not report it, mirrored
// or not, custom or built in; and one it reports (TimeZone).
func TestLaneHiddenSettingsDoNotReachNextClient(t *testing.T) {
	var sets []string
	for i := 0; i < 10; i++ {
		sets = append(sets, fmt.Sprintf("SET app.c%d = 'v'", i))
	}
	tenCustoms := strings.Join(sets, "; ")
	vec := isoTable(t)
	fn := uniqueName("iso_set")
	isoFunc(t, fn, "n text, v text", "n, v", "int", "BEGIN PERFORM set_config(n, v, false); RETURN 1; END")
	b := startIsoBed(t, vec, nil)
	for _, c := range []struct {
		name, value string
		// attacker and victim: settings each client has made itself.
		attacker, victim string
		probe, want      string // what the victim reads, and must read
		reason           string
	}{
		{"bytea_output", "escape", "", "", `'\x41'::bytea::text`, `\x41`, "settings"},
		{"extra_float_digits", "-15", "", "", "(1.0/3)::float8::text", "0.3333333333333333", "settings"},
		{"statement_timeout", "123s", "", "", "current_setting('statement_timeout')", "0", "settings"},
		{"transform_null_equals", "on", "", "", "coalesce((NULL = NULL)::text, 'null')", "null", "settings"},
		{"enable_indexscan", "off", "", "", "current_setting('enable_indexscan')", "on", "settings"},
		{"hnsw.ef_search", "1", "", "", "current_setting('hnsw.ef_search')", "40", "settings"},
		{"client_min_messages", "debug1", "", "", "current_setting('client_min_messages')", "notice", "settings"},
		// A custom setting both clients made, with the same value: txlane
		// sees nothing to apply for the victim.
		{"app.tenant", "b", "SET app.tenant = 'a'", "SET app.tenant = 'a'", "current_setting('app.tenant')", "a", "settings"},
		// A custom setting the attacker lacks: txlane reset it before the
		// attacker's read (it stays defined, empty), and hidden code set it.
		{"app.flag", "evil", "", "", "coalesce(current_setting('app.flag', true), '<null>')", "<null>", "settings"},
		{"TimeZone", "Asia/Tokyo", "", "", "current_setting('TimeZone')", "UTC", "reported_setting"},
		// Many custom settings: the one changed comes last.
		{"app.c9", "evil", tenCustoms, tenCustoms, "current_setting('app.c9')", "v", "settings"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "app.flag" {
				// Someone defines app.flag on the lane connection first.
				other := b.connect(t)
				exec(t, other, "SET app.flag = 'x'")
				laneRead(t, other, fmt.Sprintf("SELECT pg_backend_pid() FROM %s WHERE id = 1", vec))
			}
			before := b.discards()
			attacker := b.connect(t)
			if c.attacker != "" {
				exec(t, attacker, c.attacker)
			}
			pid := laneRead(t, attacker, fmt.Sprintf("SELECT pg_backend_pid(), %s('%s', '%s') FROM %s WHERE id = 1", fn, c.name, c.value, vec))[0][0]
			victim := b.connect(t)
			exec(t, victim, "SET TimeZone = 'UTC'")
			if c.victim != "" {
				exec(t, victim, c.victim)
			}
			probe := strings.ReplaceAll(c.probe, "current_setting(", vec+"_setting(")
			rows := laneRead(t, victim, fmt.Sprintf("SELECT pg_backend_pid(), %s FROM %s WHERE id = 1", probe, vec))
			if rows[0][1] != c.want {
				t.Errorf("after a hidden set_config(%s, %s): the next client read %q, want %q", c.name, c.value, rows[0][1], c.want)
			}
			if rows[0][0] == pid {
				t.Errorf("the next read ran on the poisoned lane connection %s", pid)
			}
			b.wantDiscards(t, before, map[string]float64{c.reason: 1})
		})
	}
}

// A read's hidden code redefines, through dynamic SQL (PREPARE is allowed
// in a read-only transaction), the content-named statement another client
// binds next; or txlane's own statement that applies settings; or just
// drops one. The other client's next Bind/Execute runs its own statement.
func TestLanePreparedStatementsCannotBePoisoned(t *testing.T) {
	vec := isoTable(t)
	poison, drop := uniqueName("iso_poison"), uniqueName("iso_drop")
	// Redefines every statement it can see: clients' as a query of the
	// attacker's, txlane's own (lane_apply) as one that applies nothing.
	isoFunc(t, poison, "", "", "int", `DECLARE r record; n int := 0;
BEGIN
  FOR r IN SELECT name FROM pg_prepared_statements LOOP
    EXECUTE format('DEALLOCATE %I', r.name);
    IF r.name LIKE 'txlane\_%' THEN
      EXECUTE format('PREPARE %I(integer) AS SELECT pg_backend_pid(), %L::text', r.name, 'attacker-controlled');
    ELSE
      EXECUTE format('PREPARE %I(text[], text[]) AS SELECT v FROM unnest($2) v', r.name);
    END IF;
    n := n + 1;
  END LOOP;
  RETURN n;
END`)
	isoFunc(t, drop, "", "", "int", "BEGIN EXECUTE 'DEALLOCATE ALL'; RETURN 1; END")
	for _, fn := range []string{poison, drop} {
		t.Run(fn[:strings.LastIndex(fn, "_")], func(t *testing.T) {
			b := startIsoBed(t, vec, nil)
			victim := newPrepConn(t, b.connect(t))
			exec(t, victim.conn, "SET search_path = public, pg_catalog") // applied on the lane by lane_apply
			q := fmt.Sprintf("SELECT pg_backend_pid(), note FROM %s WHERE id = $1", vec)
			r := victim.run(pParse("s1", q, 23), pBind("s1", "1"), pExecute(), pSync())
			if len(r.errs) > 0 || r.values() != "x" {
				t.Fatalf("victim's first run: %s", r)
			}
			before := b.discards()
			attacker := b.connect(t)
			rows := laneRead(t, attacker, fmt.Sprintf("SELECT pg_backend_pid(), %s() FROM %s WHERE id = 1", fn, vec))
			t.Logf("attacker redefined or dropped statements on lane connection %s: %s", rows[0][0], rows[0][1])
			r = victim.run(pBind("s1", "1"), pExecute(), pSync())
			if len(r.errs) > 0 || r.values() != "x" {
				t.Errorf("victim's statement s1 ($1=1) answered %s, want \"x\"", indent(r.String()))
			}
			if r.pids()[0] == rows[0][0] {
				t.Errorf("the victim's read ran on the poisoned lane connection %s", rows[0][0])
			}
			if sp := laneRead(t, victim.conn, fmt.Sprintf("SELECT pg_backend_pid(), current_setting('search_path') FROM %s WHERE id = 1", vec))[0][1]; sp != "public, pg_catalog" {
				t.Errorf("victim's search_path on the lane: %q", sp)
			}
			b.wantDiscards(t, before, map[string]float64{"prepared_statements": 1})
		})
	}
}

// A custom setting another client set is RESET on the lane connection, not
// removed (PostgreSQL cannot remove one from a session): the next client
// never reads the value, but reads an empty value where PostgreSQL, for a session that
// never defined the name, has none (NULL). README documents it.
func TestLaneCustomSettingResetNotRemoved(t *testing.T) {
	vec := isoTable(t)
	b := startIsoBed(t, vec, nil)
	a := b.connect(t)
	exec(t, a, "SET myapp.tenant_secret_name = 'acme'")
	if v := laneRead(t, a, fmt.Sprintf("SELECT pg_backend_pid(), current_setting('myapp.tenant_secret_name') FROM %s WHERE id = 1", vec))[0][1]; v != "acme" {
		t.Fatalf("client's own custom setting on the lane: %q", v)
	}
	before := b.discards()
	c := b.connect(t)
	rows := laneRead(t, c, fmt.Sprintf("SELECT pg_backend_pid(), coalesce(%[1]s_setting('myapp.tenant_secret_name', true), '<null>'), "+
		"%[1]s_settings_like('myapp.%%') FROM %[1]s WHERE id = 1", vec))
	direct := scalar(t, directConn(t), "SELECT coalesce(current_setting('myapp.tenant_secret_name', true), '<null>')")
	if rows[0][1] != "" || direct != "<null>" || rows[0][2] != "0" {
		t.Errorf("next client on the lane: current_setting = %q (direct: %q), listed in pg_settings: %s; want '' (defined, reset), not the value", rows[0][1], direct, rows[0][2])
	}
	b.wantDiscards(t, before, map[string]float64{})
}

// Clients that do nothing unusual never cost a lane connection: different
// roles, settings spelled as the server does not spell them, custom and
// extension settings, statements prepared or not, simple and extended
// protocol, all on one connection.
func TestLaneCleanReadsKeepConnection(t *testing.T) {
	roles := isoRoles(t, "isocl", 2)
	pool := isoPool(t, roles...)
	vec := isoTable(t)
	b := startIsoBed(t, vec, pool)
	read := fmt.Sprintf("SELECT pg_backend_pid(), id FROM %s ORDER BY embedding <-> '[1,0,0]' LIMIT 1", vec)
	pids := map[string]bool{}
	for i := 0; i < 3; i++ {
		for j, r := range roles {
			c := b.connectAs(t, r)
			if j == 0 {
				exec(t, c, "SET TimeZone = 'utc'; SET DateStyle = 'iso,dmy'; SET statement_timeout = '1min'; "+
					`SET search_path = "$user", public, pg_catalog; SET app.tenant = 't1'; SET hnsw.ef_search = 50; SET extra_float_digits = 2`)
			}
			pids[laneRead(t, c, read)[0][0]] = true
			p := newPrepConn(t, c)
			rp := p.run(pParse("s", fmt.Sprintf("SELECT pg_backend_pid(), note FROM %s WHERE id = $1", vec), 23), pBind("s", "2"), pExecute(), pSync())
			if len(rp.errs) > 0 || rp.values() != "y" {
				t.Fatalf("extended read: %s", rp)
			}
			pids[rp.pids()[0]] = true
			rp = p.run(pBind("s", "3"), pExecute(), pSync())
			if len(rp.errs) > 0 || rp.values() != "z" {
				t.Fatalf("extended read again: %s", rp)
			}
			pids[rp.pids()[0]] = true
		}
	}
	if len(pids) != 1 {
		t.Errorf("clean reads ran on %d lane connections, want 1", len(pids))
	}
	b.wantDiscards(t, map[string]float64{}, map[string]float64{})
}
