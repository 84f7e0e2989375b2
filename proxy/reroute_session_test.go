package proxy_test

import (
	"fmt"
	"testing"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// TestUnitsRerouteNotWhatChangesTheSession: a request that itself leaves
// state in the session or transaction it runs in is not rerouted into the
// holder's transaction, where that state would be the holder's (an
// adversarial tester's SELECT pg_advisory_lock(1) /*unit=…*/ was rerouted,
// and the lock stayed with the holder's session): advisory locks, called
// in the text or hidden in a view, LISTEN, a cursor WITH HOLD, PREPARE,
// LOCK. Each is refused (25L01); the holder's backend holds no advisory
// lock of the writer's, its transaction goes on, and nothing is written.
func TestUnitsRerouteNotWhatChangesTheSession(t *testing.T) {
	for _, pool := range []proxy.PoolOptions{{Mode: proxy.PoolSession}, {Mode: proxy.PoolTransaction, Size: 4}} {
		bed := startUnitProxy(t, "reroute", func(o *proxy.Options) { o.Pool = pool })
		view := uniqueName("lockview")
		pgtest.Exec(t, fmt.Sprintf("CREATE VIEW %s AS SELECT pg_try_advisory_lock(424243) AS l; GRANT ALL ON %[1]s TO PUBLIC", view))
		t.Cleanup(func() { pgtest.Exec(t, "DROP VIEW IF EXISTS "+view) })
		ins := func(unit, who string) string {
			return fmt.Sprintf("INSERT INTO %s (unit, who) VALUES ('%s', '%s')", bed.table, unit, who)
		}
		requests := []string{
			"SELECT pg_advisory_lock(424242) /*unit='u1'*/",
			"SELECT pg_try_advisory_lock(424242) /*unit='u1'*/",
			"SELECT pg_advisory_xact_lock(424242) /*unit='u1'*/",
			"SELECT pg_catalog.pg_advisory_unlock_all() /*unit='u1'*/",
			fmt.Sprintf("INSERT INTO %s (unit, who) SELECT 'u1', 'other' FROM %s /*unit='u1'*/", bed.table, view),
			ins("u1", "other") + "; LISTEN txlane_chan /*unit='u1'*/",
			ins("u1", "other") + "; DECLARE c CURSOR WITH HOLD FOR SELECT 1 /*unit='u1'*/",
			ins("u1", "other") + "; PREPARE p AS SELECT 1 /*unit='u1'*/",
			ins("u1", "other") + "; LOCK TABLE " + bed.table + " /*unit='u1'*/",
		}
		for _, req := range requests {
			t.Run(fmt.Sprintf("%s/%s", pool.Mode, req), func(t *testing.T) {
				holder, writer := bed.connect(t), bed.connect(t)
				exec(t, holder, "BEGIN; "+bed.insert("u1", "holder"))
				pid := scalar(t, holder, "SELECT pg_backend_pid()")
				wantCode(t, execErr(writer, req), proxy.CodeEscapedWrite)
				if holder.TxStatus() != 'T' {
					t.Fatalf("the holder's status is %q, want T", holder.TxStatus())
				}
				direct := directConn(t)
				if got := scalar(t, direct, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid IN (424242, 424243) AND pid = "+pid); got != "0" {
					t.Fatalf("the holder's backend holds %s advisory locks of the writer's", got)
				}
				exec(t, holder, "ROLLBACK")
				if got := bed.count(t, "who = 'other'"); got != "0" {
					t.Fatalf("refused, yet %s rows written", got)
				}
			})
		}
	}
}
