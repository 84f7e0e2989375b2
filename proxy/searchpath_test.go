package proxy_test

// txlane runs queries of its own inside clients' sessions: the pin check,
// the lane's state snapshot and check, settings moved between backends,
// units' locks and holders, SHOW UNITS. A client may set any search_path,
// with a schema of its own before pg_catalog. What that schema defines under
// pg_catalog's names must never run in txlane's queries, nor make them lie.

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// evilPath is the clients' search_path in these tests.
const evilPath = "evil, pg_catalog, public"

// evilSchema creates schema evil, which holds, under pg_catalog's names and
// for the argument types txlane's queries use, operators, functions,
// aggregates and types (domains). Each calls evil.hit(), which takes a
// value of the sequence evil.hits (nextval is not transactional: a call
// counts even when its transaction rolls back), and answers wrongly: every
// comparison is false, every function's answer empty or forged. It returns
// how many times that code ran so far.
//
// NOTE: all but evil.count_hit are STABLE, which the classifier trusts not
// to write: a volatile function behind a domain's constraint may run in any
// statement, and would keep every client on its backend (pin set_config),
// which is not what these tests are about.
func evilSchema(t *testing.T) func() int64 {
	t.Helper()
	var b strings.Builder
	b.WriteString(`DROP SCHEMA IF EXISTS evil CASCADE; CREATE SCHEMA evil; GRANT USAGE ON SCHEMA evil TO PUBLIC;
CREATE SEQUENCE evil.hits; GRANT USAGE ON SEQUENCE evil.hits TO PUBLIC;
CREATE FUNCTION evil.count_hit() RETURNS pg_catalog.int8 VOLATILE LANGUAGE sql AS $$SELECT pg_catalog.nextval('evil.hits')$$;
CREATE FUNCTION evil.hit() RETURNS pg_catalog.int8 STABLE LANGUAGE plpgsql AS $$DECLARE r pg_catalog.int8; BEGIN EXECUTE 'SELECT evil.count_hit()' INTO r; RETURN r; END$$;
`)
	types := []string{"text", "name", "oid", "int2", "int4", "int8", `"char"`, "bool", "regclass", "regnamespace", "json"}
	pairs := [][2]string{{"oid", "int4"}, {"int4", "oid"}, {"int2", "int4"}, {"int8", "int4"}, {"name", "text"}, {"text", "name"}}
	for _, ty := range types {
		pairs = append(pairs, [2]string{ty, ty})
	}
	n := 0
	op := func(name, l, r, ret, answer string) {
		n++
		fmt.Fprintf(&b, "CREATE FUNCTION evil.op%[1]d(pg_catalog.%[3]s, pg_catalog.%[4]s) RETURNS pg_catalog.%[5]s STABLE LANGUAGE sql AS $$SELECT CASE WHEN evil.hit() OPERATOR(pg_catalog.>) 0 THEN %[6]s END$$;\n"+
			"CREATE OPERATOR evil.%[2]s (LEFTARG = pg_catalog.%[3]s, RIGHTARG = pg_catalog.%[4]s, FUNCTION = evil.op%[1]d);\n", n, name, l, r, ret, answer)
	}
	for _, p := range pairs {
		if p[0] == "json" {
			continue // json has no comparison operators to shadow
		}
		for _, o := range []string{"=", "<>", "<", ">", "<=", ">="} {
			op(o, p[0], p[1], "bool", "false")
		}
	}
	for _, p := range [][2]string{{"text", "text"}, {"name", "text"}} {
		for _, o := range []string{"~~", "!~~", "~", "~*", "!~"} {
			op(o, p[0], p[1], "bool", "false")
		}
		op("||", p[0], p[1], "text", "'evil'::pg_catalog.text")
	}
	for _, p := range [][2]string{{"int2", "int4"}, {"int4", "int4"}, {"int2", "int2"}} {
		op("&", p[0], p[1], "int4", "0")
	}
	funcs := []struct{ name, args, ret, answer string }{
		{"current_setting", "pg_catalog.text", "pg_catalog.text", "'evil'"},
		{"current_setting", "pg_catalog.text, pg_catalog.bool", "pg_catalog.text", "'evil'"},
		{"set_config", "pg_catalog.text, pg_catalog.text, pg_catalog.bool", "pg_catalog.text", "'evil'"},
		{"concat_ws", "pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text", "pg_catalog.text", "'evil'"},
		{"pg_my_temp_schema", "", "pg_catalog.oid", "0"},
		{"pg_backend_pid", "", "pg_catalog.int4", "0"},
		{"current_database", "", "pg_catalog.name", "'evil'"},
		{"now", "", "pg_catalog.timestamptz", "'-infinity'"},
		{"quote_ident", "pg_catalog.text", "pg_catalog.text", "'evil'"},
		{"substr", "pg_catalog.text, pg_catalog.int4", "pg_catalog.text", "'evil'"},
		{"starts_with", "pg_catalog.text, pg_catalog.text", "pg_catalog.bool", "false"},
		{"pg_has_role", "pg_catalog.name, pg_catalog.oid, pg_catalog.text", "pg_catalog.bool", "false"},
		{"json_build_array", "pg_catalog.text, pg_catalog.text", "pg_catalog.json", "'[]'"},
		{"pg_get_viewdef", "pg_catalog.oid", "pg_catalog.text", "''"},
		{"pg_advisory_unlock_all", "", "pg_catalog.void", "NULL"},
		{"pg_try_advisory_lock", "pg_catalog.int4, pg_catalog.int4", "pg_catalog.bool", "true"},
		{"pg_advisory_unlock", "pg_catalog.int4, pg_catalog.int4", "pg_catalog.bool", "true"},
		{"pg_try_advisory_lock_shared", "pg_catalog.int4, pg_catalog.int4", "pg_catalog.bool", "true"},
		{"pg_try_advisory_xact_lock_shared", "pg_catalog.int4, pg_catalog.int4", "pg_catalog.bool", "true"},
		{"pg_advisory_unlock_shared", "pg_catalog.int4, pg_catalog.int4", "pg_catalog.bool", "true"},
	}
	for _, f := range funcs {
		answer := "(" + f.answer + ")::" + f.ret
		if f.ret == "pg_catalog.void" {
			answer = "NULL"
		}
		fmt.Fprintf(&b, "CREATE FUNCTION evil.%s(%s) RETURNS %s STABLE LANGUAGE sql AS $$SELECT CASE WHEN evil.hit() OPERATOR(pg_catalog.>) 0 THEN %s END$$;\n",
			f.name, f.args, f.ret, answer)
	}
	b.WriteString(`CREATE FUNCTION evil.pg_listening_channels() RETURNS SETOF pg_catalog.text STABLE LANGUAGE sql AS $$SELECT NULL::pg_catalog.text WHERE evil.hit() OPERATOR(pg_catalog.<) 0$$;
CREATE FUNCTION evil.unnest(pg_catalog.text[]) RETURNS SETOF pg_catalog.text STABLE LANGUAGE sql AS $$SELECT 'evil'::pg_catalog.text WHERE evil.hit() OPERATOR(pg_catalog.>) 0$$;
CREATE FUNCTION evil.count_step(pg_catalog.int8) RETURNS pg_catalog.int8 STABLE LANGUAGE sql AS $$SELECT evil.hit() OPERATOR(pg_catalog.*) 0$$;
CREATE AGGREGATE evil.count(*) (SFUNC = evil.count_step, STYPE = pg_catalog.int8, INITCOND = '0');
CREATE FUNCTION evil.json_step(pg_catalog.json, pg_catalog.json) RETURNS pg_catalog.json STABLE LANGUAGE sql AS $$SELECT CASE WHEN evil.hit() OPERATOR(pg_catalog.<) 0 THEN $2 END$$;
CREATE AGGREGATE evil.json_agg(pg_catalog.json) (SFUNC = evil.json_step, STYPE = pg_catalog.json);
CREATE FUNCTION evil.text_step(pg_catalog.text, pg_catalog.text, pg_catalog.text) RETURNS pg_catalog.text STABLE LANGUAGE sql AS $$SELECT CASE WHEN evil.hit() OPERATOR(pg_catalog.<) 0 THEN $2 END$$;
CREATE AGGREGATE evil.string_agg(pg_catalog.text, pg_catalog.text) (SFUNC = evil.text_step, STYPE = pg_catalog.text);
`)
	for _, ty := range types {
		fmt.Fprintf(&b, "CREATE DOMAIN evil.%[1]s AS pg_catalog.%[1]s CHECK (evil.hit() OPERATOR(pg_catalog.>) 0);\n", ty)
	}
	direct := directConn(t)
	for _, sql := range strings.SplitAfter(b.String(), ";\n") {
		if strings.TrimSpace(sql) != "" {
			exec(t, direct, sql)
		}
	}
	t.Cleanup(func() { pgtest.Exec(t, "DROP SCHEMA IF EXISTS evil CASCADE") })
	hits := func() int64 {
		var v int64
		fmt.Sscan(scalar(t, direct, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM evil.hits"), &v)
		return v
	}
	// The schema works: a session with it first on its path runs its code.
	c := directConn(t)
	exec(t, c, "SET search_path = "+evilPath)
	if got := scalar(t, c, "SELECT 'a'::text = 'a'::text"); got != "f" {
		t.Fatalf("evil's = answers %s, want f", got)
	}
	if hits() == 0 {
		t.Fatal("evil's code ran without counting")
	}
	pgtest.Exec(t, "ALTER SEQUENCE evil.hits RESTART")
	if h := hits(); h != 0 {
		t.Fatalf("evil.hits restarted at %d", h)
	}
	return hits
}

// wantNoEvil fails when evil's code ran since the schema was made.
func wantNoEvil(t *testing.T, hits func() int64, when string) {
	t.Helper()
	if h := hits(); h != 0 {
		t.Fatalf("%s: evil's operators, functions or types ran %d times in txlane's queries", when, h)
	}
}

// A client whose search_path puts evil before pg_catalog, in transaction
// mode with one backend (the tester's repro: its settings, temporary table,
// advisory lock and LISTEN passed to the next client when the pin check
// lied): what it does stays with it, the next client on the backend sees
// defaults, and none of evil's code runs in txlane's own queries (pin
// checks, settings moved, the reset fix of a movable parameter, the vector
// lane's snapshot, apply and check, the reset of a client that leaves).
func TestSearchPathTxlaneQueriesTransactionMode(t *testing.T) {
	hits := evilSchema(t)
	vec := isoTable(t)
	p := startProxy(t, func(o *proxy.Options) {
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 1}
		o.QueryWaitTimeout = time.Second
		o.ReadPool = proxy.ReadPoolOptions{Config: isoPool(t, pgtest.AppRole), MaxConns: 1, AcquireTimeout: 2 * time.Second}
		o.Rules.VectorTables = []string{vec}
		o.Discover = true
	})
	dsn := p.DSN(t, pgtest.AppRole)
	a := connectDSN(t, dsn+"&DateStyle="+url.PathEscape("SQL, DMY"))
	b := connectDSN(t, dsn)
	wantDefaults := func(when string) {
		t.Helper()
		for sql, want := range map[string]string{
			"SELECT pg_catalog.current_setting('search_path')": `"$user", public`,
			"SELECT pg_catalog.current_setting('work_mem')":    "4MB",
			"SELECT pg_catalog.current_setting('DateStyle')":   "ISO, MDY",
		} {
			if got := scalar(t, b, sql); got != want {
				t.Fatalf("%s: b's %q is %q, want %q: a's session reached b", when, sql, got, want)
			}
		}
	}
	aSees := func(sql, want string) {
		t.Helper()
		if got := scalar(t, a, sql); got != want {
			t.Fatalf("a's %q is %q, want %q", sql, got, want)
		}
	}

	exec(t, a, "SET search_path = "+evilPath)
	exec(t, a, "SET work_mem = '13MB'")
	wantDefaults("after a's SET")
	aSees("SELECT pg_catalog.current_setting('work_mem')", "13MB")
	aSees("SELECT pg_catalog.current_setting('search_path')", evilPath)
	wantNoEvil(t, hits, "settings")

	// A movable parameter reset goes back to a's login value (the fix
	// runs behind a's pin check, under a's search_path).
	exec(t, a, "RESET DateStyle")
	aSees("SELECT pg_catalog.current_setting('DateStyle')", "SQL, DMY")
	wantDefaults("after a's RESET DateStyle")
	wantNoEvil(t, hits, "movable parameters")

	pins := []struct{ pin, unpin, reason string }{
		{"CREATE TEMP TABLE evil_tmp (v pg_catalog.int4)", "DROP TABLE pg_temp.evil_tmp", "temp_table"},
		{"SELECT pg_catalog.pg_advisory_lock(4242)", "SELECT pg_catalog.pg_advisory_unlock(4242)", "advisory_lock"},
		{"LISTEN evil_channel", "UNLISTEN evil_channel", "listen"},
	}
	for _, pc := range pins {
		exec(t, a, pc.pin)
		// query_wait_timeout ends b (FATAL): the next checks use another.
		wantNotOnBackendOf(t, b, "SELECT 1", pc.reason)
		b = connectDSN(t, dsn)
		if got := pinnedReasons(p); !strings.Contains(got, pc.reason) {
			t.Fatalf("after %q SHOW CLIENTS pinned %q, want %s", pc.pin, got, pc.reason)
		}
		exec(t, a, pc.unpin)
		wantDefaults("after " + pc.unpin)
		wantNoEvil(t, hits, pc.reason)
	}

	// A read of the vector table goes over the lane, with a's settings
	// (read from a's backend: the snapshot), applied and checked there.
	m := p.Server.Metrics()
	reads, snaps := m.Routed("vector", "vector_read_idle"), m.LaneStateReads()
	if got := scalar(t, a, "SELECT note FROM public."+vec+" WHERE id OPERATOR(pg_catalog.=) 2"); got != "y" {
		t.Fatalf("a's vector read answers %q, want y", got)
	}
	if m.Routed("vector", "vector_read_idle") != reads+1 || m.LaneStateReads() == snaps {
		t.Fatalf("a's vector read: lane reads %v -> %v, state reads %v -> %v; want one more of each",
			reads, m.Routed("vector", "vector_read_idle"), snaps, m.LaneStateReads())
	}
	for _, r := range []string{"role", "settings", "prepared_statements", "reported_setting", "check_failed"} {
		if n := m.LaneDiscards(r); n != 0 {
			t.Errorf("lane connections discarded for %s: %v", r, n)
		}
	}
	wantNoEvil(t, hits, "vector lane")

	// a leaves with a temporary table: its backend is reset (ROLLBACK,
	// DISCARD ALL) for b.
	exec(t, a, "CREATE TEMP TABLE evil_left (v pg_catalog.int4)")
	a.Close(context.Background())
	if got := scalar(t, b, "SELECT pg_catalog.count(*) FROM pg_catalog.pg_class WHERE relname OPERATOR(pg_catalog.=) 'evil_left' AND relnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()"); got != "0" {
		t.Fatalf("b sees a's temporary table (%s)", got)
	}
	wantDefaults("after a left")
	wantNoEvil(t, hits, "a's logout")
}

// Session mode with pooled logins and units of work shared through
// advisory locks: the lock calls, the check of another backend's lock and
// the holders' look-up run under the clients' search_path, SHOW UNITS under
// one set for the primary DSN's role; a client that leaves gets its backend
// reset for the next.
func TestSearchPathTxlaneQueriesSessionMode(t *testing.T) {
	hits := evilSchema(t)
	vec := isoTable(t)
	table := uniqueName("evil_uow")
	role := uniqueName("evil_admin")
	pgtest.Exec(t, fmt.Sprintf(`CREATE TABLE %[1]s (unit pg_catalog.text); GRANT ALL ON %[1]s TO PUBLIC;
CREATE ROLE %[2]s LOGIN; ALTER ROLE %[2]s SET search_path = %[3]s`, table, role, evilPath))
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+table+"; DROP ROLE IF EXISTS "+role) })
	p := startProxy(t, func(o *proxy.Options) {
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolSession, Size: 2}
		o.Auth = trustAuth(t, pgtest.AppRole)
		o.Primary.User = role
		o.Instances = proxy.InstanceOptions{ID: 1, SharedUnits: true}
		o.ReadPool = proxy.ReadPoolOptions{Config: isoPool(t, pgtest.AppRole), MaxConns: 1, AcquireTimeout: 2 * time.Second}
		o.Rules.VectorTables = []string{vec}
		o.Discover = true
	})
	dsn := p.DSN(t, pgtest.AppRole)
	a, b := connectDSN(t, dsn), connectDSN(t, dsn)
	for _, c := range []*pgconn.PgConn{a, b} {
		exec(t, c, "SET search_path = "+evilPath)
	}
	insert := "INSERT INTO public." + table + " VALUES ('u1') /*unit='evil-u1'*/"
	exec(t, a, "BEGIN")
	exec(t, a, insert)
	pid := scalar(t, a, "SELECT pg_catalog.pg_backend_pid()")
	err := execErr(b, insert)
	if err == nil || !strings.Contains(err.Error(), proxy.CodeEscapedWrite) {
		t.Fatalf("b's write of a's unit: %v, want %s", err, proxy.CodeEscapedWrite)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	units, uerr := p.Server.SharedUnits(ctx)
	if uerr != nil {
		t.Fatal(uerr)
	}
	if len(units) != 1 || units[0].Unit != "evil-u1" || fmt.Sprint(units[0].BackendPID) != pid {
		t.Fatalf("SHOW UNITS: %+v, want evil-u1 held by backend %s", units, pid)
	}
	exec(t, a, "COMMIT")
	waitFree(t, b, insert)
	wantNoEvil(t, hits, "shared units")

	// A vector read with the snapshot, the lane's apply and check.
	if got := scalar(t, b, "SELECT note FROM public."+vec+" WHERE id OPERATOR(pg_catalog.=) 3"); got != "z" {
		t.Fatalf("b's vector read answers %q, want z", got)
	}
	wantNoEvil(t, hits, "vector lane")

	// a leaves with state; the next login takes its backend, reset.
	apid := scalar(t, a, "SELECT pg_catalog.pg_backend_pid()")
	for _, sql := range []string{"SET work_mem = '13MB'", "CREATE TEMP TABLE evil_left (v pg_catalog.int4)",
		"SELECT pg_catalog.pg_advisory_lock(4243)", "LISTEN evil_channel"} {
		exec(t, a, sql)
	}
	a.Close(context.Background())
	var c *pgconn.PgConn
	deadline := time.Now().Add(5 * time.Second)
	for {
		c = connectDSN(t, dsn)
		if scalar(t, c, "SELECT pg_catalog.pg_backend_pid()") == apid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no login got a's backend %s back from the pool", apid)
		}
		c.Close(context.Background())
		time.Sleep(20 * time.Millisecond)
	}
	for sql, want := range map[string]string{
		"SELECT pg_catalog.current_setting('search_path')":                                                                                           `"$user", public`,
		"SELECT pg_catalog.current_setting('work_mem')":                                                                                              "4MB",
		"SELECT pg_catalog.count(*) FROM pg_catalog.pg_class WHERE relname OPERATOR(pg_catalog.=) 'evil_left'":                                       "0",
		"SELECT pg_catalog.count(*) FROM pg_catalog.pg_locks WHERE locktype OPERATOR(pg_catalog.=) 'advisory' AND objid OPERATOR(pg_catalog.=) 4243": "0",
		"SELECT pg_catalog.count(*) FROM pg_catalog.pg_listening_channels()":                                                                         "0",
	} {
		if got := scalar(t, c, sql); got != want {
			t.Errorf("the next client's %q is %q, want %q", sql, got, want)
		}
	}
	wantNoEvil(t, hits, "session-mode reset")
}
