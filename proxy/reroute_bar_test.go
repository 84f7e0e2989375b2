package proxy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// TestUnitsRerouteBar: with escape: reroute, a write runs inside the
// holder's transaction only where it would do there what it does on its own
// connection; otherwise it is refused (25L01) and nothing of it is written,
// and the holder's transaction is untouched. Each case was an escape or a
// privilege change an adversarial tester found: a write of another user ran
// with the holder's privileges (ALTER ROLE … SUPERUSER went through), a
// COMMIT in the writer's request committed the holder's transaction, a COPY
// hung the writer and broke the holder's connection, a writer's temporary
// table or search_path was not found there.
func TestUnitsRerouteBar(t *testing.T) {
	bed := startUnitProxy(t, "reroute", nil)
	ctx := context.Background()
	cases := []struct {
		name  string
		dsn   string // the writer's login ("" for the test DSN's)
		setup string // the writer's session, before the holder begins
		write func(b *unitBed) error
	}{
		{"another user", bed.DSN(t, pgtest.AppRole), "", nil},
		{"transaction control in the request", "", "", func(b *unitBed) error {
			return execErr(b.connect(t), b.insert("u1", "other")+"; COMMIT")
		}},
		{"COPY", "", "", func(b *unitBed) error {
			c := b.connect(t)
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			_, err := c.CopyFrom(cctx, strings.NewReader("u1\tother\n"), "COPY "+b.table+" (unit, who) FROM STDIN /*unit='u1'*/")
			return err
		}},
		{"the writer's temporary table", "", "CREATE TEMP TABLE scratch (x int)", nil},
		{"the writer's search_path", "", "SET search_path = pg_catalog, public", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			holder := bed.connect(t)
			dsn := tc.dsn
			if dsn == "" {
				dsn = bed.DSN(t, "")
			}
			writer := connectDSN(t, dsn)
			if tc.setup != "" {
				exec(t, writer, tc.setup)
			}
			exec(t, holder, "BEGIN; "+bed.insert("u1", "holder"))
			var err error
			if tc.write != nil {
				err = tc.write(bed)
			} else {
				err = execErr(writer, bed.insert("u1", "other"))
			}
			wantCode(t, err, proxy.CodeEscapedWrite)
			if holder.TxStatus() != 'T' {
				t.Fatalf("the holder's status is %q, want T", holder.TxStatus())
			}
			if got := scalar(t, holder, "SELECT count(*) FROM "+bed.table+" WHERE who = 'other'"); got != "0" {
				t.Fatalf("the holder's transaction sees %s of the refused write's rows", got)
			}
			exec(t, holder, "ROLLBACK")
			if got := bed.count(t, "true"); got != "0" {
				t.Fatalf("%s rows after the holder rolled back", got)
			}
		})
	}
	// Both sessions with the same settings: the write moves.
	holder, writer := bed.connect(t), bed.connect(t)
	exec(t, holder, "SET search_path = pg_catalog, public")
	exec(t, writer, "SET search_path = pg_catalog, public")
	exec(t, holder, "BEGIN; "+bed.insert("u1", "holder"))
	exec(t, writer, bed.insert("u1", "other"))
	if got := scalar(t, holder, "SELECT count(*) FROM "+bed.table+" WHERE who = 'other'"); got != "1" {
		t.Fatalf("the holder sees %s rerouted rows, want 1", got)
	}
	exec(t, holder, "ROLLBACK")
}

// TestUnitsRerouteNotIntoANewTransaction: a holder whose request ends its
// transaction and begins another (COMMIT; BEGIN) keeps its hold until the
// request ends; a write of the unit is not rerouted into the new,
// unrelated transaction, whose rollback would silently drop it.
func TestUnitsRerouteNotIntoANewTransaction(t *testing.T) {
	bed := startUnitProxy(t, "reroute", nil)
	holder, writer := bed.connect(t), bed.connect(t)
	exec(t, holder, "BEGIN; "+bed.insert("u7", "holder"))
	exec(t, holder, "COMMIT; BEGIN")
	exec(t, holder, "SELECT 'unrelated'")
	err := execErr(writer, bed.insert("u7", "other"))
	exec(t, holder, "ROLLBACK")
	if err == nil {
		if got := bed.count(t, "who = 'other'"); got != "1" {
			t.Fatalf("the write was acknowledged, and %s of its rows are there after the new transaction rolled back", got)
		}
		return
	}
	wantCode(t, err, proxy.CodeEscapedWrite)
	if got := bed.count(t, "who = 'other'"); got != "0" {
		t.Fatalf("refused, yet %s rows written", got)
	}
}

// TestSharedUnitsCarriedByASet: with shared_units, a unit that a
// transaction carries only on statements that do no work (SET LOCAL,
// SAVEPOINT) is locked behind its first statement that does work, so that
// a write of the unit on another instance is refused from then on (it was
// never locked, and such a write committed outside the transaction).
func TestSharedUnitsCarriedByASet(t *testing.T) {
	for _, carrier := range []string{"SET LOCAL statement_timeout = '50s' /*unit='c1'*/", "SAVEPOINT sp /*unit='c1'*/"} {
		t.Run(carrier, func(t *testing.T) {
			bed := startInstances(t, 2, "reject", nil)
			holder := bed.connect(t, 1, "holder-app")
			exec(t, holder, "BEGIN")
			exec(t, holder, carrier)
			exec(t, holder, "INSERT INTO "+bed.table+" (unit, who) VALUES ('x', 'holder')")
			backend := scalar(t, holder, "SELECT pg_backend_pid()")
			direct := directConn(t)
			deadline := time.Now().Add(5 * time.Second)
			for scalar(t, direct, unitLocksSQL(backend)) == "0" {
				if time.Now().After(deadline) {
					t.Fatal("the holder's backend holds no lock of the unit 5s after its first write")
				}
				time.Sleep(10 * time.Millisecond)
			}
			w := bed.connect(t, 2, "writer")
			wantCode(t, execErr(w, bed.insert("c1", "w2")), proxy.CodeEscapedWrite)
			exec(t, holder, "ROLLBACK")
			if got := bed.count(t, "true"); got != "0" {
				t.Fatalf("%s rows after the holder rolled back", got)
			}
		})
	}
}

// TestUnitsRerouteNotPastASavepoint: a write is not rerouted into a
// holder's transaction that has made a savepoint: the holder's ROLLBACK TO
// it would undo the write after its client was told it ran, and the
// transaction would then commit without it (an adversarial tester saw the
// row vanish). Refused (25L01) instead; the holder's savepoint and
// transaction go on as they were.
func TestUnitsRerouteNotPastASavepoint(t *testing.T) {
	bed := startUnitProxy(t, "reroute", nil)
	holder, writer := bed.connect(t), bed.connect(t)
	exec(t, holder, "BEGIN; "+bed.insert("u8", "holder"))
	exec(t, holder, "SAVEPOINT s")
	wantCode(t, execErr(writer, bed.insert("u8", "other")), proxy.CodeEscapedWrite)
	exec(t, holder, "ROLLBACK TO s")
	exec(t, holder, "COMMIT")
	if got := bed.count(t, "who = 'other'"); got != "0" {
		t.Fatalf("refused, yet %s rows written", got)
	}
	if got := bed.count(t, "who = 'holder'"); got != "1" {
		t.Fatalf("the holder's row: %s, want 1", got)
	}
	// The next transaction, without a savepoint, takes rerouted writes.
	exec(t, holder, "BEGIN; "+bed.insert("u8", "holder2"))
	exec(t, writer, bed.insert("u8", "other2"))
	exec(t, holder, "COMMIT")
	if got := bed.count(t, "who = 'other2'"); got != "1" {
		t.Fatalf("a write rerouted into a transaction without a savepoint: %s rows, want 1", got)
	}
}
