package proxy_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSharedUnitsIdleHolder: a transaction that holds a unit only through
// statements that do no work (SET LOCAL txlane.unit, a tagged SET LOCAL,
// SAVEPOINT or SET TRANSACTION) and then stays idle holds it for the other
// instances too: a write of the unit there is refused, and the holder's
// transaction keeps its characteristics (SET TRANSACTION ISOLATION LEVEL
// still runs after it: no snapshot was taken for it).
func TestSharedUnitsIdleHolder(t *testing.T) {
	bed := startInstances(t, 3, "reject", transactionPoolOn(t, 3, 2))
	cases := []struct {
		name   string
		holder []string
	}{
		{"SET LOCAL txlane.unit", []string{"BEGIN", "SET LOCAL txlane.unit = '%s'"}},
		{"tagged SET LOCAL", []string{"BEGIN", "SET LOCAL work_mem = '8MB' /*unit='%s'*/"}},
		{"tagged SAVEPOINT", []string{"BEGIN", "SAVEPOINT s /*unit='%s'*/"}},
		{"SET LOCAL then SET TRANSACTION", []string{"BEGIN", "SET LOCAL txlane.unit = '%s'", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"}},
		{"SET TRANSACTION carrying it", []string{"BEGIN", "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ /*unit='%s'*/"}},
	}
	for i, c := range cases {
		for _, hid := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s on instance %d", c.name, hid), func(t *testing.T) {
				unit := fmt.Sprintf("idle%d-%d", i, hid)
				holder := bed.connect(t, hid, "holder")
				for _, sql := range c.holder {
					if strings.Contains(sql, "%s") {
						sql = fmt.Sprintf(sql, unit)
					}
					exec(t, holder, sql)
				}
				writer := bed.connect(t, 2, "writer")
				wantHeldElsewhereCode(t, execErr(writer, bed.insert(unit, "escape")))
				if strings.Contains(c.name, "SET TRANSACTION") {
					// Still before the transaction's first snapshot.
					exec(t, holder, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
				} else {
					if strings.Contains(c.name, "SAVEPOINT") {
						exec(t, holder, "RELEASE s") // not in a subtransaction
					}
					exec(t, holder, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
				}
				// Its own write runs: the lock held for it is no other
				// instance's.
				exec(t, holder, bed.insert(unit, "holder"))
				// Still held once the transaction works, on its own backend.
				wantHeldElsewhereCode(t, execErr(writer, bed.insert(unit, "escape")))
				waitNoIdleLocks(t)
				wantHeldElsewhereCode(t, execErr(writer, bed.insert(unit, "escape")))
				exec(t, holder, "ROLLBACK")
				if got := bed.count(t, "unit = '"+unit+"'"); got != "0" {
					t.Fatalf("%s rows of %s after the holder rolled back", got, unit)
				}
				waitFree(t, writer, bed.insert(unit, "after"))
			})
		}
	}
	// Ended without working: the unit is free again.
	holder := bed.connect(t, 1, "holder")
	exec(t, holder, "BEGIN")
	exec(t, holder, "SET LOCAL txlane.unit = 'idle-end'")
	writer := bed.connect(t, 2, "writer")
	wantHeldElsewhereCode(t, execErr(writer, bed.insert("idle-end", "escape")))
	exec(t, holder, "COMMIT")
	waitFree(t, writer, bed.insert("idle-end", "after"))
	waitNoIdleLocks(t)
	// Its client gone: free again.
	gone := bed.connect(t, 1, "gone")
	exec(t, gone, "BEGIN")
	exec(t, gone, "SET LOCAL txlane.unit = 'idle-gone'")
	wantHeldElsewhereCode(t, execErr(writer, bed.insert("idle-gone", "escape")))
	gone.Close(context.Background())
	waitFree(t, writer, bed.insert("idle-gone", "after"))
	waitNoIdleLocks(t)
}

// waitNoIdleLocks waits until txlane's connections holding units for
// transactions before their first snapshot hold none.
func waitNoIdleLocks(t *testing.T) {
	t.Helper()
	sql := "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid " +
		"WHERE l.locktype = 'advisory' AND l.classid = 1954049134 AND a.application_name LIKE 'txlane (units of%'"
	direct := directConn(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := scalar(t, direct, sql)
		if n == "0" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s unit locks still held for transactions before their first snapshot", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
