package proxy_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// TestUnitsSeveralHolders: a second transaction that carries a unit (here
// by a read, which is allowed) while another holds it holds it too: once
// the first ends, a write of the unit from a third connection is still
// refused, and nothing of it commits. A write is rerouted only into the
// transaction of a unit's only holder.
func TestUnitsSeveralHolders(t *testing.T) {
	t.Run("reject", func(t *testing.T) {
		bed := startUnitProxy(t, "reject", nil)
		a, b, c := bed.connect(t), bed.connect(t), bed.connect(t)
		read := "SELECT count(*) FROM " + bed.table + " /*unit='two'*/"
		exec(t, a, "BEGIN")
		exec(t, a, bed.insert("two", "a"))
		exec(t, b, "BEGIN")
		exec(t, b, read)
		err := execErr(c, bed.insert("two", "c"))
		wantCode(t, err, proxy.CodeEscapedWrite)
		if d := err.(*pgconn.PgError).Detail; !strings.Contains(d, "1 other transactions hold it too") {
			t.Errorf("detail %q does not count the other holder", d)
		}
		exec(t, a, "COMMIT")
		wantCode(t, execErr(c, bed.insert("two", "c")), proxy.CodeEscapedWrite) // b holds it still
		exec(t, b, bed.insert("two", "b"))                                      // b holds it alone now
		exec(t, b, "ROLLBACK")
		if got := bed.count(t, "who IN ('b', 'c')"); got != "0" {
			t.Fatalf("%s rows of b and c after b rolled back, want 0", got)
		}
		exec(t, c, bed.insert("two", "c")) // free
	})
	t.Run("a holder's write while another holds the unit", func(t *testing.T) {
		bed := startUnitProxy(t, "reject", nil)
		a, b := bed.connect(t), bed.connect(t)
		exec(t, a, "BEGIN")
		exec(t, a, bed.insert("two", "a"))
		exec(t, b, "BEGIN")
		exec(t, b, "SELECT 1 /*unit='two'*/")
		// a's write would commit with a, and survive b's rollback.
		wantCode(t, execErr(a, bed.insert("two", "a")), proxy.CodeEscapedWrite)
		exec(t, a, "ROLLBACK")
		exec(t, b, "ROLLBACK")
	})
	t.Run("reroute", func(t *testing.T) {
		bed := startUnitProxy(t, "reroute", nil)
		a, b, c := bed.connect(t), bed.connect(t), bed.connect(t)
		exec(t, a, "BEGIN")
		exec(t, a, bed.insert("two", "a"))
		exec(t, b, "BEGIN")
		exec(t, b, "SELECT 1 /*unit='two'*/")
		err := execErr(c, bed.insert("two", "c"))
		wantCode(t, err, proxy.CodeEscapedWrite)
		if d := err.(*pgconn.PgError).Detail; !strings.Contains(d, "only holder") {
			t.Errorf("detail %q does not say why the write was not rerouted", d)
		}
		exec(t, b, "COMMIT")
		exec(t, c, bed.insert("two", "c")) // a holds it alone: rerouted into a's transaction
		exec(t, a, "ROLLBACK")
		if got := bed.count(t, "true"); got != "0" {
			t.Fatalf("%s rows after a rolled back, want 0 (c's write was rerouted into it)", got)
		}
	})
}

// TestSharedUnitsSeveralHolders: with policy.shared_units every holder of a
// unit holds its lock (shared), so that a second holder on another
// instance keeps the unit held after the first ends; two units whose keys
// collide only ever refuse more, never let a write through that a holder
// of either should stop.
func TestSharedUnitsSeveralHolders(t *testing.T) {
	bed := startInstances(t, 3, "reject", nil)
	t.Run("second holder on another instance", func(t *testing.T) {
		h1, h2, w := bed.connect(t, 1, "h1"), bed.connect(t, 2, "h2"), bed.connect(t, 3, "writer")
		exec(t, h1, "BEGIN")
		exec(t, h1, bed.insert("sh2", "h1"))
		exec(t, h2, "BEGIN")
		exec(t, h2, "SELECT count(*) FROM "+bed.table+" /*unit='sh2'*/")
		exec(t, h1, "COMMIT")
		wantHeldElsewhereCode(t, execErr(w, bed.insert("sh2", "writer")))
		exec(t, h2, "ROLLBACK")
		if got := bed.count(t, "who = 'writer'"); got != "0" {
			t.Fatalf("%s rows of the writer", got)
		}
		waitFree(t, w, bed.insert("sh2", "writer"))
	})
	t.Run("colliding keys", func(t *testing.T) {
		x, y := collidingUnits()
		w, h := bed.connect(t, 1, "writer"), bed.connect(t, 2, "holder")
		exec(t, w, "BEGIN")
		exec(t, w, bed.insert(x, "writer")) // w holds x: its backend holds the key
		exec(t, h, "BEGIN")
		exec(t, h, "SELECT count(*) FROM "+bed.table+" /*unit='"+y+"'*/") // h holds y, same key
		// w's write of y would escape h's transaction.
		wantHeldElsewhereCode(t, execErr(w, bed.insert(y, "writer")))
		exec(t, w, "ROLLBACK")
		exec(t, h, "ROLLBACK")
		if got := bed.count(t, "unit IN ('"+x+"', '"+y+"')"); got != "0" {
			t.Fatalf("%s rows of the writer", got)
		}
	})
}

// TestSharedUnitsRerouteCoHolder: with escape reroute, a write is not
// rerouted into its instance's holder's transaction while a client of
// another instance holds the unit too: joining the one would still escape
// the other. It is refused, and runs once only the local holder is left.
func TestSharedUnitsRerouteCoHolder(t *testing.T) {
	bed := startInstances(t, 2, "reroute", nil)
	local, remote, w := bed.connect(t, 1, "local"), bed.connect(t, 2, "remote"), bed.connect(t, 1, "writer")
	exec(t, local, "BEGIN")
	exec(t, local, bed.insert("co", "local"))
	exec(t, remote, "BEGIN")
	exec(t, remote, "SELECT count(*) FROM "+bed.table+" /*unit='co'*/")
	pgErr := wantHeldElsewhereCode(t, execErr(w, bed.insert("co", "writer")))
	if !strings.Contains(pgErr.Detail, "txlane instance 2") {
		t.Errorf("detail %q does not name the holder on instance 2", pgErr.Detail)
	}
	exec(t, remote, "ROLLBACK")
	exec(t, w, bed.insert("co", "writer")) // rerouted into local's transaction
	exec(t, local, "ROLLBACK")
	if got := bed.count(t, "unit = 'co'"); got != "0" {
		t.Fatalf("%s rows after the local holder rolled back, want 0", got)
	}
}

// collidingUnits returns two unit names whose advisory lock keys (the first
// 32 bits of SHA-256) are equal.
func collidingUnits() (string, string) {
	seen := map[uint32]string{}
	for i := 0; ; i++ {
		u := fmt.Sprintf("c%d", i)
		sum := sha256.Sum256([]byte(u))
		k := binary.BigEndian.Uint32(sum[:4])
		if v, ok := seen[k]; ok {
			return v, u
		}
		seen[k] = u
	}
}

// TestUnitsStaleHolder: a transaction that sets its unit other than by SET
// or a comment (set_config, with a constant or a bind parameter, local or
// not; a DO block; a function) holds it: another connection's write of the
// unit gets 25L01 and nothing of it commits.
func TestUnitsStaleHolder(t *testing.T) {
	bed := startUnitProxy(t, "reject", func(o *proxy.Options) {
		// The catalog shows what a function does (without it a function
		// txlane does not know is taken for a read).
		o.ReadPool = proxy.ReadPoolOptions{Config: pgtest.Config(t), MaxConns: 1, AcquireTimeout: time.Second}
		o.Discover = true
	})
	fn := uniqueName("setunit")
	pgtest.Exec(t, "CREATE FUNCTION "+fn+"(u text) RETURNS void LANGUAGE plpgsql AS $$BEGIN PERFORM set_config('txlane.unit', u, true); END$$")
	t.Cleanup(func() { pgtest.Exec(t, "DROP FUNCTION IF EXISTS "+fn+"(text)") })
	ctx := context.Background()
	cases := []struct {
		name, sql string
		args      []any
	}{
		{"set_config", "SELECT set_config('txlane.unit', '@U@', true)", nil},
		{"set_config upper case", "SELECT set_config('TXLANE.UNIT', '@U@', true)", nil},
		{"set_config for the session", "SELECT set_config('txlane.unit', '@U@', false)", nil},
		{"set_config bind parameter", "SELECT set_config('txlane.unit', $1, true)", []any{"@U@"}},
		{"set_config name and value parameters", "SELECT set_config($1, $2, true)", []any{"txlane.unit", "@U@"}},
		{"DO block", "DO $$BEGIN PERFORM set_config('txlane.unit', '@U@', true); END$$", nil},
		{"function", "SELECT " + fn + "('@U@')", nil},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			unit := fmt.Sprintf("stale%d", i)
			hc, err := pgx.Connect(ctx, bed.DSN(t, ""))
			if err != nil {
				t.Fatal(err)
			}
			defer hc.Close(ctx)
			other := bed.connect(t)
			mustExec := func(sql string, args ...any) {
				t.Helper()
				if _, err := hc.Exec(ctx, sql, args...); err != nil {
					t.Fatal(err)
				}
			}
			mustExec("BEGIN")
			args := c.args
			for j, a := range args {
				if a == "@U@" {
					args[j] = unit
				}
			}
			mustExec(strings.ReplaceAll(c.sql, "@U@", unit), args...)
			wantCode(t, execErr(other, bed.insert(unit, "other")), proxy.CodeEscapedWrite)
			mustExec("ROLLBACK")
			if got := bed.count(t, "unit = '"+unit+"' AND who = 'other'"); got != "0" {
				t.Fatalf("%s rows of the other connection's write", got)
			}
			exec(t, other, bed.insert(unit, "after")) // the unit ended with the transaction
		})
	}
	// PostgreSQL does not list custom settings in pg_settings: an UPDATE of
	// it cannot set txlane.unit (UPDATE 0), and the transaction holds no unit.
	t.Run("UPDATE pg_settings", func(t *testing.T) {
		h, other := bed.connect(t), bed.connect(t)
		exec(t, h, "BEGIN")
		exec(t, h, "UPDATE pg_settings SET setting = 'stale-pgs' WHERE name = 'txlane.unit'")
		if got := scalar(t, h, "SELECT coalesce(current_setting('txlane.unit', true), '')"); got != "" {
			t.Fatalf("txlane.unit %q after UPDATE pg_settings: it can set custom settings; txlane must read it back", got)
		}
		exec(t, other, bed.insert("stale-pgs", "other"))
		exec(t, h, "ROLLBACK")
	})
	// Until txlane has read the unit back the transaction holds an unknown
	// unit: a write carrying a unit waits for the read (here behind a
	// statement that sleeps), and is then refused.
	t.Run("while the read is pending", func(t *testing.T) {
		h, other := bed.connect(t), bed.connect(t)
		exec(t, h, "BEGIN")
		done := make(chan error, 1)
		go func() {
			done <- execErr(h, "SELECT set_config('txlane.unit', 'stale-slow', true), pg_sleep(0.5)")
		}()
		time.Sleep(100 * time.Millisecond)
		wantCode(t, execErr(other, bed.insert("stale-slow", "other")), proxy.CodeEscapedWrite)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		exec(t, h, "ROLLBACK")
		if got := bed.count(t, "unit = 'stale-slow'"); got != "0" {
			t.Fatalf("%s rows of the other connection's write", got)
		}
	})
}

// TestUnitsUnknownPipelined: an untagged write pipelined behind a request of
// the client in flight, after its txlane.unit was set in a way the SQL text
// does not show, cannot be checked (its unit cannot be read first): it is
// refused while a unit is held, on one instance and with
// policy.shared_units, and nothing is written.
func TestUnitsUnknownPipelined(t *testing.T) {
	bed := startInstances(t, 2, "reject", nil)
	for _, id := range []int{1, 2} {
		t.Run(fmt.Sprintf("holder on instance %d", id), func(t *testing.T) {
			unit := fmt.Sprintf("pipe-unknown-%d", id)
			holder, w := bed.connect(t, id, "holder"), bed.connect(t, 1, "writer")
			exec(t, holder, "BEGIN")
			exec(t, holder, bed.insert(unit, "holder"))
			exec(t, w, "SELECT set_config('txlane.unit', '"+unit+"', false)")
			untagged := fmt.Sprintf("INSERT INTO %s (unit, who) VALUES ('%s', 'escape')", bed.table, unit)
			errs := pipelineResults(t, w, "SELECT pg_sleep(0.2)", untagged)
			if errs[0] != nil {
				t.Fatal(errs[0])
			}
			wantCode(t, errs[1], proxy.CodeEscapedWrite)
			exec(t, holder, "ROLLBACK")
			if got := bed.count(t, "who = 'escape'"); got != "0" {
				t.Fatalf("%s rows of the pipelined write", got)
			}
		})
	}
}
