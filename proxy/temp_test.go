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

// tempScenario is a script that creates session temporary relations the
// classifier cannot see (or that it can), then a read that must see them.
type tempScenario struct {
	name string
	// setup runs statement by statement (simple protocol); {{t}} is the
	// vector table's name, {{s}} a schema private to the test.
	setup []string
	// read is checked after setup, idle and inside BEGIN; want is what
	// PostgreSQL answers directly.
	read string
	want string
}

// TestTempRelationsFromServer: temporary relations shadow a vector table of
// the same name whatever created them (a DO block, a function, CREATE TEMP
// TABLE AS, a temporary view, another search_path), so txlane must not read
// the permanent table on the vector lane. Each scenario runs directly and
// through txlane; the answers must be identical, idle and inside a
// transaction, and the read must run on the client's own backend.
func TestTempRelationsFromServer(t *testing.T) {
	bed := startVectorProxy(t, func(o *proxy.Options) { o.Discover = true })
	schema := uniqueName("tmpsch")
	pgtest.Exec(t, fmt.Sprintf(`CREATE SCHEMA %[1]s;
CREATE TABLE %[1]s.%[2]s (id int, embedding vector(3));
INSERT INTO %[1]s.%[2]s VALUES (7, '[1,1,1]');
GRANT USAGE ON SCHEMA %[1]s TO PUBLIC; GRANT SELECT ON %[1]s.%[2]s TO PUBLIC;
CREATE FUNCTION %[1]s.mk_temp() RETURNS void LANGUAGE plpgsql AS $f$BEGIN
  CREATE TEMP TABLE %[2]s (id int, embedding vector(3)); INSERT INTO %[2]s VALUES (99, '[0,0,0]');
END$f$;
CREATE PROCEDURE %[1]s.mk_temp_proc() LANGUAGE plpgsql AS $f$BEGIN
  CREATE TEMP TABLE %[2]s (id int, embedding vector(3)); INSERT INTO %[2]s VALUES (91, '[0,0,0]');
END$f$;
CREATE FUNCTION %[1]s.mk_temp_trigger() RETURNS trigger LANGUAGE plpgsql AS $f$BEGIN
  CREATE TEMP TABLE IF NOT EXISTS %[2]s (id int, embedding vector(3)); INSERT INTO %[2]s VALUES (NEW.x, '[0,0,0]');
  RETURN NEW;
END$f$;
CREATE TABLE %[1]s.src (x int);
GRANT ALL ON %[1]s.src TO PUBLIC;
CREATE TRIGGER mk AFTER INSERT ON %[1]s.src FOR EACH ROW EXECUTE FUNCTION %[1]s.mk_temp_trigger();`, schema, bed.table))
	t.Cleanup(func() { pgtest.Exec(t, "DROP SCHEMA "+schema+" CASCADE") })

	agg := "SELECT string_agg(id::text, ',' ORDER BY id) FROM {{t}}"
	scenarios := []tempScenario{
		{name: "DO block", setup: []string{
			"DO $$ BEGIN CREATE TEMP TABLE {{t}}(id int, embedding vector(3)); INSERT INTO {{t}} VALUES (99,'[0,0,0]'); END $$"},
			read: agg, want: "99"},
		{name: "function", setup: []string{"SELECT {{s}}.mk_temp()"}, read: agg, want: "99"},
		{name: "CREATE TEMP TABLE AS", setup: []string{
			"CREATE TEMP TABLE {{t}} AS SELECT 98 AS id, '[0,0,0]'::vector(3) AS embedding"}, read: agg, want: "98"},
		{name: "SELECT INTO TEMP", setup: []string{
			"SELECT 97 AS id, '[0,0,0]'::vector(3) AS embedding INTO TEMP {{t}}"}, read: agg, want: "97"},
		{name: "temporary view", setup: []string{
			"CREATE TEMP VIEW {{t}} AS SELECT 96 AS id, '[0,0,0]'::vector(3) AS embedding"}, read: agg, want: "96"},
		{name: "EXECUTE in a DO block", setup: []string{
			"DO $$ BEGIN EXECUTE 'CREATE TEMPORARY TABLE ' || quote_ident('{{t}}') || ' (id int, embedding vector(3))'; END $$",
			"INSERT INTO {{t}} VALUES (95, '[0,0,0]')"}, read: agg, want: "95"},
		{name: "another search_path", setup: []string{
			"SET search_path = {{s}}, public",
			"DO $$ BEGIN CREATE TEMP TABLE {{t}}(id int, embedding vector(3)); INSERT INTO {{t}} VALUES (94,'[0,0,0]'); END $$"},
			read: agg, want: "94"},
		{name: "procedure", setup: []string{"CALL {{s}}.mk_temp_proc()"}, read: agg, want: "91"},
		{name: "trigger of an INSERT", setup: []string{"INSERT INTO {{s}}.src VALUES (93)"}, read: agg, want: "93"},
		{name: "DROP TABLE: no longer shadows", setup: []string{
			"CREATE TEMP TABLE {{t}} (id int, embedding vector(3))",
			"DROP TABLE {{t}}"}, read: agg, want: "1,2,3"},
		{name: "rolled back: no longer shadows", setup: []string{
			"BEGIN", "CREATE TEMP TABLE {{t}} (id int, embedding vector(3))", "ROLLBACK"}, read: agg, want: "1,2,3"},
		{name: "DO block DROP: no longer shadows", setup: []string{
			"DO $$ BEGIN CREATE TEMP TABLE {{t}}(id int, embedding vector(3)); END $$",
			"DO $$ BEGIN DROP TABLE {{t}}; END $$"}, read: agg, want: "1,2,3"},
		{name: "DISCARD TEMP: no longer shadows", setup: []string{
			"DO $$ BEGIN CREATE TEMP TABLE {{t}}(id int, embedding vector(3)); END $$",
			"DISCARD TEMP"}, read: agg, want: "1,2,3"},
		{name: "DISCARD ALL: no longer shadows", setup: []string{
			"DO $$ BEGIN CREATE TEMP TABLE {{t}}(id int, embedding vector(3)); END $$",
			"DISCARD ALL"}, read: agg, want: "1,2,3"},
	}
	fill := strings.NewReplacer("{{t}}", bed.table, "{{s}}", schema)
	run := func(t *testing.T, c *pgconn.PgConn, sc tempScenario) (idle, inTx string) {
		for _, sql := range sc.setup {
			exec(t, c, fill.Replace(sql))
		}
		idle = scalar(t, c, fill.Replace(sc.read))
		exec(t, c, "BEGIN")
		inTx = scalar(t, c, fill.Replace(sc.read))
		exec(t, c, "COMMIT")
		return idle, inTx
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			d := directConn(t)
			dIdle, dTx := run(t, d, sc)
			if dIdle != sc.want || dTx != sc.want {
				t.Fatalf("PostgreSQL directly: %q idle, %q in a transaction; the scenario expects %q", dIdle, dTx, sc.want)
			}
			c := bed.connect(t)
			l := newLanes(t, c)
			l.wantLane("SELECT pg_backend_pid() FROM " + bed.table + " LIMIT 1") // the lane serves this session
			pIdle, pTx := run(t, c, sc)
			if pIdle != dIdle || pTx != dTx {
				t.Fatalf("through txlane: %q idle, %q in a transaction; PostgreSQL directly: %q, %q", pIdle, pTx, dIdle, dTx)
			}
			probe := fill.Replace("SELECT pg_backend_pid() FROM {{t}} LIMIT 1")
			if sc.want == "1,2,3" {
				// Nothing shadows the table any more: the lane may serve it.
				l.wantLane(probe)
			} else {
				l.wantPrimary(probe)
			}
		})
	}
}

// TestTempRelationsOfReroutedWrite: a write whose trigger would create a
// temporary relation in the session it runs in is not rerouted into another
// client's transaction (escape: reroute): there the relation would be the
// holder's and shadow the vector table for its later reads. It is refused
// (25L01), writes nothing, and the holder's reads keep going to the lane.
func TestTempRelationsOfReroutedWrite(t *testing.T) {
	bed := startVectorProxy(t, func(o *proxy.Options) {
		o.Rules.Escape = "reroute"
		o.RerouteWaitTimeout = 2 * time.Second
		o.Discover = true
	})
	schema := uniqueName("rrsch")
	pgtest.Exec(t, fmt.Sprintf(`CREATE SCHEMA %[1]s; GRANT ALL ON SCHEMA %[1]s TO PUBLIC;
CREATE TABLE %[1]s.plain (x int); CREATE TABLE %[1]s.src (x int);
GRANT ALL ON %[1]s.plain, %[1]s.src TO PUBLIC;
CREATE FUNCTION %[1]s.mk() RETURNS trigger LANGUAGE plpgsql AS $f$BEGIN
  CREATE TEMP TABLE %[2]s (id int, embedding vector(3)); INSERT INTO %[2]s VALUES (NEW.x, '[0,0,0]'); RETURN NEW;
END$f$;
CREATE TRIGGER mk AFTER INSERT ON %[1]s.src FOR EACH ROW EXECUTE FUNCTION %[1]s.mk();`, schema, bed.table))
	t.Cleanup(func() { pgtest.Exec(t, "DROP SCHEMA "+schema+" CASCADE") })

	holder, other := bed.connect(t), bed.connect(t)
	l := newLanes(t, holder)
	exec(t, holder, "BEGIN")
	exec(t, holder, "INSERT INTO "+schema+".plain VALUES (1) /*unit='rr1'*/")
	l.wantLane("SELECT pg_backend_pid() FROM " + bed.table + " LIMIT 1") // settings read, lane serves the transaction
	wantCodeBar(t, execErr(other, "INSERT INTO "+schema+".src VALUES (92) /*unit='rr1'*/"), "trigger mk")
	if got := scalar(t, holder, "SELECT count(*) FROM pg_class WHERE relpersistence = 't'"); got != "0" {
		t.Fatalf("the holder's session has %s temporary relations after the refused write", got)
	}
	l.wantLane("SELECT pg_backend_pid() FROM " + bed.table + " LIMIT 1")
	exec(t, holder, "COMMIT")
	if got := directScalar(t, "SELECT count(*) FROM "+schema+".src"); got != "0" {
		t.Fatalf("%s rows of the refused write committed", got)
	}
}
