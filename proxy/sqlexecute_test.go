package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// TestTxPoolExecuteChangesSession: an EXECUTE of a prepared statement that
// calls a function setting a custom setting txlane cannot name is planned as
// that statement: its client keeps its backend (pin set_config) until the
// setting is gone, so the next client never sees it. Every shape that runs
// a prepared statement: EXECUTE in the PREPARE's request and in a later one
// (the backend served another client in between, and had the PREPARE
// replayed), EXPLAIN ANALYZE EXECUTE, CREATE TABLE ... AS EXECUTE, and a
// protocol-level statement run by SQL EXECUTE.
func TestTxPoolExecuteChangesSession(t *testing.T) {
	fn, setting := uniqueName("exset"), "app."+uniqueName("x")
	pgtest.Exec(t, fmt.Sprintf("CREATE FUNCTION %s() RETURNS text LANGUAGE plpgsql AS $$BEGIN PERFORM set_config(%s, 'v', false); RETURN 'ok'; END$$", fn, quote(setting)))
	ctas := uniqueName("exctas")
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+ctas+"; DROP FUNCTION IF EXISTS "+fn+"()") })
	p := startSeqPool(t, true, func(o *proxy.Options) {
		o.QueryWaitTimeout = time.Second // B waits for A's pinned backend this long
	})
	ctx := context.Background()
	read := "SELECT coalesce(current_setting(" + quote(setting) + ", true), '')"
	shapes := []struct {
		name    string
		prepare string // a request before, "" for none
		run     func(a *pgconn.PgConn) error
	}{
		{"EXECUTE in the PREPARE's request", "", func(a *pgconn.PgConn) error {
			return execErr(a, "PREPARE sp AS SELECT "+fn+"(); EXECUTE sp")
		}},
		{"EXECUTE in a later transaction, replayed", "PREPARE sp AS SELECT " + fn + "()", func(a *pgconn.PgConn) error {
			return execErr(a, "EXECUTE sp")
		}},
		{"EXPLAIN ANALYZE EXECUTE", "PREPARE sp AS SELECT " + fn + "()", func(a *pgconn.PgConn) error {
			return execErr(a, "EXPLAIN ANALYZE EXECUTE sp")
		}},
		{"CREATE TABLE AS EXECUTE", "PREPARE sp AS SELECT " + fn + "()", func(a *pgconn.PgConn) error {
			return execErr(a, "CREATE TABLE "+ctas+" AS EXECUTE sp")
		}},
		{"a protocol-level statement run by EXECUTE", "", func(a *pgconn.PgConn) error {
			if _, err := a.Prepare(ctx, "sp", "SELECT "+fn+"()", nil); err != nil {
				return err
			}
			return execErr(a, "EXECUTE sp")
		}},
	}
	for _, sh := range shapes {
		a := p.connect(t)
		if sh.prepare != "" {
			exec(t, a, sh.prepare)
			// Another client takes the backend (its DEALLOCATE of A's sp),
			// A's next transaction has it prepared again.
			b := p.connect(t)
			exec(t, b, "SELECT 1")
			b.Close(ctx)
		}
		if err := sh.run(a); err != nil {
			t.Fatalf("%s: %v", sh.name, err)
		}
		if got := waitPinned(p, "set_config"); !strings.Contains(got, "set_config") {
			t.Errorf("%s: A not pinned by the setting its EXECUTE made (pinned %q)", sh.name, got)
		}
		b := p.connect(t)
		bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := b.Exec(bctx, read).ReadAll()
		cancel()
		if err == nil && string(res[0].Rows[0][0]) == "v" {
			t.Errorf("%s: another client sees the setting A's EXECUTE made", sh.name)
		}
		if got := scalar(t, a, read); got != "v" {
			t.Errorf("%s: A's own setting is %q", sh.name, got)
		}
		exec(t, a, "RESET ALL; DROP TABLE IF EXISTS "+ctas+"; DEALLOCATE ALL")
		deadline := time.Now().Add(5 * time.Second)
		for strings.Trim(pinnedReasons(p), ";") != "" && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := pinnedReasons(p); strings.Trim(got, ";") != "" {
			t.Errorf("%s: still pinned after RESET ALL: %q", sh.name, got)
		}
		a.Close(ctx)
	}
}

// TestTxPoolExecuteSetConfigMoves: an EXECUTE of a prepared statement that
// calls set_config with a constant name moves that setting with its client,
// as the statement's own text would: the next client on the backend does
// not see it, and its client does on its next transaction. EXECUTE of a
// name txlane cannot resolve stays fail safe (pins set_config).
func TestTxPoolExecuteSetConfigMoves(t *testing.T) {
	setting := "app." + uniqueName("y")
	p := startSeqPool(t, true)
	a, b := p.connect(t), p.connect(t)
	read := "SELECT coalesce(current_setting(" + quote(setting) + ", true), '')"
	exec(t, a, "PREPARE sc AS SELECT set_config("+quote(setting)+", 'w', false)")
	exec(t, a, "EXECUTE sc")
	if got := scalar(t, b, read); got == "w" {
		t.Error("B sees the setting A's EXECUTE set")
	}
	if got := scalar(t, a, read); got != "w" {
		t.Errorf("A's setting after B used the backend: %q", got)
	}
	if got := pinnedReasons(p); strings.Trim(got, ";") != "" {
		t.Errorf("pinned %q by a setting that moves", got)
	}
	// Defined twice (the second PREPARE fails): which one runs is not
	// known, so the EXECUTE counts as both, one of which sets a setting
	// txlane cannot tell the value of.
	exec(t, a, "PREPARE sd AS SELECT 1")
	wantCode(t, execErr(a, "PREPARE sd AS SELECT set_config("+quote(setting)+", 'z', false)"), "42P05")
	exec(t, a, "EXECUTE sd")
	if got := waitPinned(p, "set_config"); !strings.Contains(got, "set_config") {
		t.Errorf("an EXECUTE of a name with two texts did not pin: %q", got)
	}
}

// TestExecuteUnitsOfWork: an EXECUTE is checked against the units of work
// as the statement it runs, in both pool modes: an EXECUTE of a read
// carrying a held unit is let through (it was refused as a write of
// anything), one of a write of it is refused; both stay on the primary.
func TestExecuteUnitsOfWork(t *testing.T) {
	for _, mode := range []proxy.PoolMode{proxy.PoolSession, proxy.PoolTransaction} {
		bed := startUnitProxy(t, "reject", func(o *proxy.Options) {
			o.Pool = proxy.PoolOptions{Mode: mode, Size: 4}
		})
		holder, other := bed.connect(t), bed.connect(t)
		exec(t, holder, "BEGIN")
		exec(t, holder, bed.insert("u1", "holder"))
		exec(t, other, "PREPARE rd AS SELECT count(*) FROM "+bed.table+" /*unit='u1'*/")
		exec(t, other, "PREPARE wr AS "+bed.insert("u1", "other"))
		if err := execErr(other, "EXECUTE rd"); err != nil {
			t.Errorf("%v: EXECUTE of a read carrying the held unit: %v", mode, err)
		}
		var pe *pgconn.PgError
		if err := execErr(other, "EXECUTE wr"); !errors.As(err, &pe) || pe.Code != proxy.CodeEscapedWrite {
			t.Errorf("%v: EXECUTE of a write carrying the held unit: %v; want %s", mode, err, proxy.CodeEscapedWrite)
		}
		exec(t, holder, "ROLLBACK")
		if got := bed.count(t, "who = 'other'"); got != "0" {
			t.Errorf("%v: the refused EXECUTE wrote %s rows", mode, got)
		}
	}
}
