package proxy_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// Code the statement text does not show: a STABLE PL/pgSQL function (its
// body is opaque to the catalog) may call set_config, or call a volatile
// function that does anything; PostgreSQL does not stop it. Called directly,
// or from a column default of a table without triggers, it must count as
// code that may change the session: for the vector lane's copy of the
// session (re-read before the next offload), for a temporary table that
// shadows a vector table, and for the transaction pool's pin check.

// unseenFuncs creates, for one test, a STABLE function that sets app.tenant
// (name_tenant), one that sets default_transaction_isolation (name_iso), a
// volatile one that creates a temporary table shadow (one row, id -1) and
// takes a session advisory lock (name_evil), a STABLE one calling it
// (name_wrap), and a table without triggers whose default calls that
// (name_log).
func unseenFuncs(t *testing.T, name, shadow string) {
	t.Helper()
	pgtest.Exec(t, fmt.Sprintf(`
CREATE FUNCTION %[1]s_tenant() RETURNS int LANGUAGE plpgsql STABLE AS $$BEGIN PERFORM set_config('app.tenant', 'evil', false); RETURN 1; END$$;
CREATE FUNCTION %[1]s_iso() RETURNS int LANGUAGE plpgsql STABLE AS $$BEGIN PERFORM set_config('default_transaction_isolation', 'repeatable read', false); RETURN 1; END$$;
CREATE FUNCTION %[1]s_evil() RETURNS int LANGUAGE plpgsql VOLATILE AS $$BEGIN
  CREATE TEMP TABLE IF NOT EXISTS %[2]s (id int, note text); INSERT INTO %[2]s VALUES (-1, 'temp');
  PERFORM pg_advisory_lock(4242); RETURN 1; END$$;
CREATE FUNCTION %[1]s_wrap() RETURNS int LANGUAGE plpgsql STABLE AS $$BEGIN RETURN %[1]s_evil(); END$$;
CREATE TABLE %[1]s_log (id serial, v int DEFAULT %[1]s_wrap());
GRANT ALL ON %[1]s_log TO PUBLIC; GRANT ALL ON SEQUENCE %[1]s_log_id_seq TO PUBLIC`, name, shadow))
	t.Cleanup(func() {
		pgtest.Exec(t, fmt.Sprintf(`DROP TABLE IF EXISTS %[1]s_log;
DROP FUNCTION IF EXISTS %[1]s_tenant(), %[1]s_iso(), %[1]s_wrap(), %[1]s_evil()`, name))
	})
}

func TestUnseenCodeAndTheLane(t *testing.T) {
	bed := startVectorProxy(t, func(o *proxy.Options) { o.Discover = true })
	name := uniqueName("unseen")
	unseenFuncs(t, name, bed.table)
	c := bed.connect(t) // the catalog is read at first use: it knows them
	l := newLanes(t, c)
	read := "SELECT pg_backend_pid() FROM " + bed.table + " LIMIT 1"
	tenant := "SELECT current_setting('app.tenant', true) FROM " + bed.table + " LIMIT 1"

	exec(t, c, "SET app.tenant = 'good'")
	l.wantLane(read)
	exec(t, c, "SELECT "+name+"_tenant()")
	l.wantLane(read)
	if got := scalar(t, c, tenant); got != "evil" {
		t.Fatalf("the lane ran with app.tenant %q after a STABLE function set it to evil", got)
	}

	exec(t, c, "SELECT "+name+"_iso()")
	for i := 0; i < 2; i++ {
		exec(t, c, "BEGIN")
		l.wantPrimary(read) // repeatable read
		exec(t, c, "COMMIT")
	}
	exec(t, c, "SET default_transaction_isolation = 'read committed'")

	// A write into a table without triggers whose default creates a
	// temporary table that shadows the vector table.
	exec(t, c, "INSERT INTO "+name+"_log DEFAULT VALUES")
	l.wantPrimary("SELECT pg_backend_pid() FROM " + bed.table)
	if got := scalar(t, c, "SELECT id FROM "+bed.table); got != "-1" {
		t.Fatalf("read %s after a default made a temporary one: id %s", bed.table, got)
	}
}

// TestUnseenCodeAndThePool: in transaction mode a client whose write ran a
// column default that took a session advisory lock and made a temporary
// table keeps its backend; the next client never sees either.
func TestUnseenCodeAndThePool(t *testing.T) {
	p := startProxy(t, func(o *proxy.Options) {
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 1}
		o.QueryWaitTimeout = 500 * time.Millisecond
		o.ReadPool = proxy.ReadPoolOptions{Config: pgtest.Config(t), MaxConns: 1, AcquireTimeout: time.Second}
		o.Discover = true
	})
	name := uniqueName("unseenp")
	unseenFuncs(t, name, name+"_secret")
	a, b := p.connect(t), p.connect(t)
	exec(t, a, "INSERT INTO "+name+"_log DEFAULT VALUES")
	wantNotOnBackendOf(t, b, "SELECT count(*) FROM pg_temp."+name+"_secret", "a temporary table made by a column default")
	if got := scalar(t, a, "SELECT note FROM pg_temp."+name+"_secret"); got != "temp" {
		t.Fatalf("a lost its temporary table: %s", got)
	}
	exec(t, a, "DISCARD ALL")
	// b's wait ended its connection (query_wait_timeout is FATAL).
	if got := scalar(t, p.connect(t), "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"); got != "0" {
		t.Fatalf("b's backend holds %s advisory locks", got)
	}
}
