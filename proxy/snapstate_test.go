package proxy_test

import (
	"fmt"
	"testing"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// TestLaneStateReads: the client's session state is read from the primary
// before an offload only when something may have changed it. A transaction
// that changed nothing costs no read (BEGIN and COMMIT alone used to cost
// two per transaction); one that changed a setting is read again after its
// end, since COMMIT undoes SET LOCAL, ROLLBACK undoes SET, and ROLLBACK TO
// undoes what followed the savepoint. Each case reads current_setting on the
// lane, which shows what txlane gave the lane connection.
func TestLaneStateReads(t *testing.T) {
	// With the catalog, a write whose table has no trigger changes nothing
	// of the session; without it, every write may (a trigger may create a
	// temporary table), and each of these transactions costs one read.
	t.Run("catalog", func(t *testing.T) { testLaneStateReads(t, true, 0) })
	t.Run("no catalog", func(t *testing.T) { testLaneStateReads(t, false, 5) })
}

func testLaneStateReads(t *testing.T, discover bool, wantReads float64) {
	bed := startVectorProxy(t, func(o *proxy.Options) { o.Discover = discover })
	// Made before the first client, so that the catalog read at first use
	// knows them: a plain table, and one whose trigger creates a temporary
	// table that shadows the vector table.
	plain, trig := uniqueName("plain"), uniqueName("trig")
	pgtest.Exec(t, fmt.Sprintf(`CREATE TABLE %[1]s (x int); INSERT INTO %[1]s VALUES (1);
CREATE TABLE %[2]s (x int);
CREATE FUNCTION %[2]s_f() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN
  CREATE TEMP TABLE IF NOT EXISTS %[3]s (id int); INSERT INTO %[3]s VALUES (-1); RETURN NEW; END$$;
CREATE TRIGGER %[2]s_t AFTER INSERT ON %[2]s FOR EACH ROW EXECUTE FUNCTION %[2]s_f();
GRANT ALL ON %[1]s, %[2]s TO PUBLIC`, plain, trig, bed.table))
	t.Cleanup(func() {
		pgtest.Exec(t, fmt.Sprintf("DROP TABLE IF EXISTS %[1]s, %[2]s; DROP FUNCTION IF EXISTS %[2]s_f()", plain, trig))
	})
	c := bed.connect(t)
	l := newLanes(t, c)
	read := "SELECT pg_backend_pid() FROM " + bed.table + " LIMIT 1"
	tz := "SELECT current_setting('TimeZone') FROM " + bed.table + " LIMIT 1"
	l.wantLane(read)
	base := scalar(t, c, tz)
	n0 := bed.Server.Metrics().LaneStateReads()
	for i := 0; i < 5; i++ {
		exec(t, c, "BEGIN")
		l.wantLane(read)
		exec(t, c, "UPDATE "+plain+" SET x = x + 1")
		exec(t, c, "COMMIT")
		l.wantLane(read)
	}
	if n := bed.Server.Metrics().LaneStateReads() - n0; n != wantReads {
		t.Fatalf("5 transactions that changed nothing cost %v reads of the session's state, want %v", n, wantReads)
	}
	// A write whose trigger creates a temporary table: the reads of the name
	// it shadows stay on the primary, and see the temporary table.
	exec(t, c, "INSERT INTO "+trig+" VALUES (1)")
	l.wantPrimary("SELECT pg_backend_pid() FROM " + bed.table)
	if got := scalar(t, c, "SELECT id FROM "+bed.table); got != "-1" {
		t.Fatalf("read %s after the trigger made a temporary table: %s", bed.table, got)
	}
	exec(t, c, "DROP TABLE pg_temp."+bed.table)

	// laneTZ is the lane's TimeZone for the client's read, which must be
	// what the client's session has (asked of the primary).
	laneTZ := func(step, want string) {
		t.Helper()
		l.wantLane(read)
		if got := scalar(t, c, tz); got != want {
			t.Fatalf("%s: the lane ran with TimeZone %q, the session has %q", step, got, want)
		}
	}
	for _, tc := range []struct{ name, before, change, end string }{
		{"ROLLBACK undoes SET", "BEGIN", "SET TimeZone = 'Asia/Tokyo'", "ROLLBACK"},
		{"COMMIT undoes SET LOCAL", "BEGIN", "SET LOCAL TimeZone = 'Asia/Tokyo'", "COMMIT"},
		{"ROLLBACK undoes set_config", "BEGIN", "SELECT set_config('TimeZone', 'Asia/Tokyo', false)", "ROLLBACK"},
		{"ROLLBACK TO undoes SET", "BEGIN; SAVEPOINT s", "SET TimeZone = 'Asia/Tokyo'", "ROLLBACK TO SAVEPOINT s"},
		{"ROLLBACK AND CHAIN undoes SET", "BEGIN", "SET TimeZone = 'Asia/Tokyo'", "ROLLBACK AND CHAIN"},
	} {
		exec(t, c, tc.before)
		exec(t, c, tc.change)
		laneTZ(tc.name+", inside", "Asia/Tokyo")
		exec(t, c, tc.end)
		laneTZ(tc.name+", after", base)
		exec(t, c, "ROLLBACK")
	}

	// A default set where txlane's parser does not see it: the next BEGIN's
	// transaction is serializable, and its reads stay on the primary.
	exec(t, c, "SELECT set_config('default_transaction_isolation', 'serializable', false)")
	for i := 0; i < 3; i++ {
		exec(t, c, "BEGIN")
		l.wantPrimary(read)
		exec(t, c, "COMMIT")
	}
	exec(t, c, "SELECT set_config('default_transaction_isolation', 'read committed', false)")
	exec(t, c, "BEGIN")
	l.wantLane(read)
	exec(t, c, "COMMIT")

	// A temporary table that shadows the vector table, gone at COMMIT: the
	// reads inside stay on the primary, those after go back to the lane.
	exec(t, c, "BEGIN")
	exec(t, c, "CREATE TEMP TABLE "+bed.table+" (id int) ON COMMIT DROP; INSERT INTO "+bed.table+" VALUES (1)")
	l.wantPrimary("SELECT pg_backend_pid() FROM " + bed.table)
	exec(t, c, "COMMIT")
	l.wantLane(read)
}
