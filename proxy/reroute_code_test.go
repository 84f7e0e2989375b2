package proxy_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/proxy"
)

// rerouteReadsCatalog gives o, a proxy whose escape actions may reroute, the
// catalog txlane reads by default (policy.discover_vector_tables: true, over
// a read pool on the primary's server): without one no write is rerouted
// (reroute_code.go). A test that sets a read pool itself keeps its choice.
func rerouteReadsCatalog(tb testing.TB, o *proxy.Options) {
	if o.ReadPool.Config != nil || !mayReroute(o.Rules) {
		return
	}
	o.ReadPool = proxy.ReadPoolOptions{Config: pgtest.Config(tb), MaxConns: 2, AcquireTimeout: 2 * time.Second}
	o.Discover = true
}

// mayReroute reports whether rules reroute some write.
func mayReroute(rules policy.RulesConfig) bool {
	if rules.Escape == "reroute" {
		return true
	}
	for _, o := range rules.EscapeOverrides {
		if o.Escape == "reroute" {
			return true
		}
	}
	return false
}

// wantCodeBar fails t unless err is the refusal of a write kept from the
// holder's transaction by what it runs besides its text: 25L01, the hint
// that says so, and a detail that names why (holding want).
func wantCodeBar(t *testing.T, err error, want string) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != proxy.CodeEscapedWrite {
		t.Fatalf("got %v, want SQLSTATE %s", err, proxy.CodeEscapedWrite)
	}
	if !strings.Contains(pe.Hint, "reroutes a write only when the catalog shows") {
		t.Errorf("hint %q, want the one of a write kept from the holder's transaction by what it runs", pe.Hint)
	}
	if !strings.Contains(pe.Detail, "nothing was written") || !strings.Contains(pe.Detail, want) {
		t.Errorf("detail %q, want one that says nothing was written and names %q", pe.Detail, want)
	}
}

// rerouteCodeObjects are the shapes of TestRerouteCodeBar, in schema %[1]s:
// deferrable constraints on either side of a write, constraint triggers,
// and code a write fires that would change the session it runs in.
const rerouteCodeObjects = `CREATE SCHEMA %[1]s;
CREATE TABLE %[1]s.parent (id int PRIMARY KEY);
INSERT INTO %[1]s.parent VALUES (1), (2);
CREATE TABLE %[1]s.child (pid int CONSTRAINT child_fk REFERENCES %[1]s.parent DEFERRABLE INITIALLY DEFERRED);
INSERT INTO %[1]s.child VALUES (1);
CREATE TABLE %[1]s.uniq (x int CONSTRAINT uniq_x UNIQUE DEFERRABLE INITIALLY DEFERRED);
INSERT INTO %[1]s.uniq VALUES (1);
CREATE TABLE %[1]s.uniq_imm (x int CONSTRAINT uniq_imm_x UNIQUE DEFERRABLE INITIALLY IMMEDIATE);
INSERT INTO %[1]s.uniq_imm VALUES (1);
CREATE TABLE %[1]s.excl (x int, CONSTRAINT excl_x EXCLUDE USING btree (x WITH =) DEFERRABLE INITIALLY DEFERRED);
INSERT INTO %[1]s.excl VALUES (1);
CREATE FUNCTION %[1]s.refuse() RETURNS trigger LANGUAGE plpgsql AS $f$BEGIN RAISE EXCEPTION 'checked at commit'; END$f$;
CREATE TABLE %[1]s.checked (x int);
CREATE CONSTRAINT TRIGGER checked_trg AFTER INSERT ON %[1]s.checked DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION %[1]s.refuse();
CREATE FUNCTION %[1]s.setter() RETURNS trigger LANGUAGE plpgsql AS $f$BEGIN
  PERFORM set_config('rc.from_trigger', 'writer', false); RETURN NEW; END$f$;
CREATE TABLE %[1]s.trig (x int);
CREATE TRIGGER trig_set BEFORE INSERT ON %[1]s.trig FOR EACH ROW EXECUTE FUNCTION %[1]s.setter();
CREATE TABLE %[1]s.locking (x int, l int DEFAULT CASE WHEN pg_try_advisory_lock(4242) THEN 1 ELSE 0 END);
CREATE FUNCTION %[1]s.imm() RETURNS text IMMUTABLE LANGUAGE plpgsql AS $f$BEGIN
  EXECUTE 'SELECT set_config(''rc.from_default'', ''writer'', false)'; RETURN 'x'; END$f$;
CREATE TABLE %[1]s.opaque_default (x int, v text DEFAULT %[1]s.imm());
CREATE TABLE %[1]s.ruled (x int);
CREATE TABLE %[1]s.ruled_log (ok bool);
CREATE RULE ruled_lock AS ON INSERT TO %[1]s.ruled DO ALSO INSERT INTO %[1]s.ruled_log VALUES (pg_try_advisory_lock(4243));
CREATE TABLE %[1]s.plain_fk (id serial PRIMARY KEY, pid int REFERENCES %[1]s.parent, at timestamptz DEFAULT now(), u uuid DEFAULT gen_random_uuid())`

// TestRerouteCodeBar: escape reroute keeps out of the holder's transaction
// every write txlane cannot show runs there as on its own connection: one
// that may queue a deferred check (which PostgreSQL runs at the holder's
// COMMIT, outside txlane's savepoint: a violation would roll the holder's
// whole transaction back after the writer was told its write ran), and one
// that fires code that may change the session (a trigger, a default or a
// rule calling what sets settings or takes session locks, a user function
// whose body txlane cannot read). Each is refused with 25L01 and the
// hint of such refusals, nothing of it commits, the holder's session is
// unchanged, and the holder's transaction commits. Plain writes, and
// writes to tables whose foreign keys are not deferrable and whose defaults
// change nothing (serial, now(), gen_random_uuid()), are still rerouted.
// In session and transaction pool modes.
func TestRerouteCodeBar(t *testing.T) {
	cases := []struct {
		name string
		// holder runs in the holder's transaction before the write.
		holder string
		write  string
		// detail is part of the refusal's detail ("" for none checked).
		detail string
		// after must be true directly once the holder has committed.
		after string
	}{
		{"insert into the referencing side of a deferred foreign key", "",
			"INSERT INTO %[1]s.child VALUES (99)", "child_fk", "NOT EXISTS (SELECT FROM %[1]s.child WHERE pid = 99)"},
		{"delete of the referenced side of a deferred foreign key", "",
			"DELETE FROM %[1]s.parent WHERE id = 1", "child_fk", "EXISTS (SELECT FROM %[1]s.parent WHERE id = 1)"},
		{"update of the referenced side of a deferred foreign key", "",
			"UPDATE %[1]s.parent SET id = 5 WHERE id = 1", "child_fk", "EXISTS (SELECT FROM %[1]s.parent WHERE id = 1)"},
		{"deferred unique constraint", "",
			"INSERT INTO %[1]s.uniq VALUES (1)", "uniq_x", "(SELECT count(*) FROM %[1]s.uniq) = 1"},
		{"deferrable unique constraint the holder deferred", "SET CONSTRAINTS ALL DEFERRED",
			"INSERT INTO %[1]s.uniq_imm VALUES (1)", "uniq_imm_x", "(SELECT count(*) FROM %[1]s.uniq_imm) = 1"},
		{"deferred exclusion constraint", "",
			"INSERT INTO %[1]s.excl VALUES (1)", "excl_x", "(SELECT count(*) FROM %[1]s.excl) = 1"},
		{"deferred constraint trigger that raises", "",
			"INSERT INTO %[1]s.checked VALUES (1)", "may queue a deferred check (table %[1]s.checked has deferrable constraint checked_trg", "NOT EXISTS (SELECT FROM %[1]s.checked)"},
		{"SET CONSTRAINTS in the request", "",
			"SET CONSTRAINTS ALL IMMEDIATE; INSERT INTO %[1]s.plain_fk (pid) VALUES (2)", "SET CONSTRAINTS", "NOT EXISTS (SELECT FROM %[1]s.plain_fk)"},
		{"trigger that sets a setting", "",
			"INSERT INTO %[1]s.trig VALUES (1)", "trig_set", "NOT EXISTS (SELECT FROM %[1]s.trig)"},
		{"default that takes a session advisory lock", "",
			"INSERT INTO %[1]s.locking (x) VALUES (1)", "pg_try_advisory_lock", "NOT EXISTS (SELECT FROM %[1]s.locking)"},
		{"default calling an IMMUTABLE function whose body txlane cannot read", "",
			"INSERT INTO %[1]s.opaque_default (x) VALUES (1)", "imm()", "NOT EXISTS (SELECT FROM %[1]s.opaque_default)"},
		{"rule that takes a session advisory lock", "",
			"INSERT INTO %[1]s.ruled VALUES (1)", "ruled_lock", "NOT EXISTS (SELECT FROM %[1]s.ruled) AND NOT EXISTS (SELECT FROM %[1]s.ruled_log)"},
	}
	for _, pool := range []proxy.PoolOptions{{Mode: proxy.PoolSession}, {Mode: proxy.PoolTransaction, Size: 4}} {
		t.Run(string(pool.Mode), func(t *testing.T) {
			schema := uniqueName("rc")
			pgtest.Exec(t, fmt.Sprintf(rerouteCodeObjects, schema))
			t.Cleanup(func() { pgtest.Exec(t, "DROP SCHEMA "+schema+" CASCADE") })
			bed := startUnitProxy(t, "reroute", func(o *proxy.Options) { o.Pool = pool })
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					holder, writer := bed.connect(t), bed.connect(t)
					exec(t, holder, "BEGIN")
					if c.holder != "" {
						exec(t, holder, c.holder)
					}
					exec(t, holder, bed.insert("u1", "holder"))
					err := execErr(writer, fmt.Sprintf(c.write, schema)+" /*unit='u1'*/")
					wantCodeBar(t, err, strings.ReplaceAll(c.detail, "%[1]s", schema))
					if writer.TxStatus() != 'I' {
						t.Errorf("writer's status %q, want I", writer.TxStatus())
					}
					if got := scalar(t, holder, "SELECT coalesce(current_setting('rc.from_trigger', true), '') || coalesce(current_setting('rc.from_default', true), '')"); got != "" {
						t.Errorf("the holder's session has the writer's settings: %q", got)
					}
					if got := scalar(t, holder, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"); got != "0" {
						t.Errorf("the holder's session holds %s advisory locks", got)
					}
					exec(t, holder, "COMMIT")
					if got := bed.count(t, "who = 'holder'"); got != "1" {
						t.Fatalf("the holder's row after its COMMIT: %s, want 1", got)
					}
					exec(t, directConn(t), "DELETE FROM "+bed.table)
					if got := directScalar(t, "SELECT "+fmt.Sprintf(c.after, schema)); got != "t" {
						t.Errorf("after the holder's COMMIT, %s is %s: the refused write committed", fmt.Sprintf(c.after, schema), got)
					}
				})
			}
			t.Run("plain writes are still rerouted", func(t *testing.T) {
				holder, writer := bed.connect(t), bed.connect(t)
				exec(t, holder, "BEGIN; "+bed.insert("u1", "holder"))
				exec(t, writer, bed.insert("u1", "other"))
				exec(t, writer, fmt.Sprintf("INSERT INTO %s.plain_fk (pid) VALUES (2) /*unit='u1'*/", schema))
				if got := scalar(t, holder, fmt.Sprintf("SELECT count(*) FROM %s.plain_fk", schema)); got != "1" {
					t.Fatalf("the holder sees %s rows of the rerouted write", got)
				}
				exec(t, holder, "ROLLBACK")
				if got := directScalar(t, fmt.Sprintf("SELECT (SELECT count(*) FROM %s.plain_fk) + (SELECT count(*) FROM %s)", schema, bed.table)); got != "0" {
					t.Fatalf("%s rows of rerouted writes survived the holder's ROLLBACK", got)
				}
				if n := bed.Server.Metrics().Escapes("reroute", bed.table); n != 1 {
					t.Errorf("reroutes counted for %s: %v", bed.table, n)
				}
			})
		})
	}
}

// TestRerouteCodeBarWithoutTheCatalog: what the catalog cannot show is not
// rerouted (fail safe): a relation created since the catalog was read, and
// any write when txlane reads no catalog (policy.discover_vector_tables:
// false). Each is refused with 25L01; the holder's transaction commits its
// own row and nothing of the write.
func TestRerouteCodeBarWithoutTheCatalog(t *testing.T) {
	check := func(t *testing.T, bed *unitBed, write, detail, after string) {
		t.Helper()
		holder, writer := bed.connect(t), bed.connect(t)
		exec(t, holder, "BEGIN; "+bed.insert("u1", "holder"))
		wantCodeBar(t, execErr(writer, write), detail)
		exec(t, holder, "COMMIT")
		if got := bed.count(t, "true"); got != "1" {
			t.Fatalf("%s rows committed, want the holder's 1", got)
		}
		if got := directScalar(t, after); got != "0" {
			t.Fatalf("%s: %s, want 0: the refused write committed", after, got)
		}
	}
	t.Run("a relation created since the catalog was read", func(t *testing.T) {
		bed := startUnitProxy(t, "reroute", nil)
		// The catalog is read at the first request.
		exec(t, bed.connect(t), "SELECT count(*) FROM "+bed.table)
		late := uniqueName("late")
		pgtest.Exec(t, "CREATE TABLE "+late+" (x int)")
		t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+late) })
		check(t, bed, "INSERT INTO "+late+" VALUES (1) /*unit='u1'*/", "not in the catalog", "SELECT count(*) FROM "+late)
	})
	t.Run("no catalog", func(t *testing.T) {
		bed := startUnitProxy(t, "reroute", func(o *proxy.Options) {
			o.ReadPool = proxy.ReadPoolOptions{Config: pgtest.Config(t), MaxConns: 2, AcquireTimeout: 2 * time.Second}
			o.Discover = false
		})
		check(t, bed, bed.insert("u1", "other"), "reads no catalog", "SELECT count(*) FROM "+bed.table+" WHERE who = 'other'")
		// A reroute the write could not take counts as a rejection.
		if r, rr := bed.Server.Metrics().Escapes("reject", bed.table), bed.Server.Metrics().Escapes("reroute", bed.table); r != 1 || rr != 0 {
			t.Errorf("escapes counted: reject %v, reroute %v; want 1, 0", r, rr)
		}
	})
}
