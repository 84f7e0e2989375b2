package proxy_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/proxy"
)

// TestUnitsNamedLate: a client opens a transaction, writes without a unit,
// and names unit u1 in a later request of the transaction (or in the same
// request, after the write); another client then writes under u1. The
// first client holds u1 from the statement that names it, whichever way it
// does, in both pool modes: the second write is refused (reject) or runs
// inside the first client's transaction (reroute), and the first client's
// ROLLBACK leaves no row of either. Naming the unit by going back to the
// login's value (the session logged in with options -c txlane.unit=u1 and
// set another since: RESET txlane.unit, SET [LOCAL] txlane.unit TO
// DEFAULT, RESET ALL, set_config to NULL) let the second write commit:
// txlane took the reset for "no unit" and the transaction held only the
// unit it had before.
func TestUnitsNamedLate(t *testing.T) {
	bindSet := func(value []byte) func(t *testing.T, c *pgconn.PgConn, _, _ string) {
		return func(t *testing.T, c *pgconn.PgConn, _, _ string) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if r := c.ExecParams(ctx, "SELECT set_config('txlane.unit', $1, true)", [][]byte{value}, nil, nil, nil).Read(); r.Err != nil {
				t.Fatal(r.Err)
			}
		}
	}
	sql := func(text string) func(t *testing.T, c *pgconn.PgConn, _, _ string) {
		return func(t *testing.T, c *pgconn.PgConn, _, _ string) { exec(t, c, text) }
	}
	namers := []struct {
		name string
		// login: the first client logs in with txlane.unit u1 and sets
		// another unit before its transaction.
		login bool
		run   func(t *testing.T, c *pgconn.PgConn, table, who string)
	}{
		{"SET", false, sql("SET txlane.unit = 'u1'")},
		{"SET LOCAL", false, sql("SET LOCAL txlane.unit = 'u1'")},
		{"a read's comment", false, sql("SELECT 1 /*unit='u1'*/")},
		{"set_config", false, sql("SELECT set_config('txlane.unit', 'u1', true)")},
		{"set_config bind parameter", false, bindSet([]byte("u1"))},
		{"DO block", false, sql("DO $$BEGIN PERFORM set_config('txlane.unit', 'u1', true); END$$")},
		{"same request, after the write", false, func(t *testing.T, c *pgconn.PgConn, table, who string) {
			exec(t, c, fmt.Sprintf("INSERT INTO %s (unit, who) VALUES ('none', '%ssame'); SET LOCAL txlane.unit = 'u1'", table, who))
		}},
		{"same request, bind parameter after the write", false, func(t *testing.T, c *pgconn.PgConn, table, who string) {
			if err := rawRequest(c,
				&pgproto3.Parse{Query: fmt.Sprintf("INSERT INTO %s (unit, who) VALUES ('none', '%ssame')", table, who)}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.Parse{Query: "SELECT set_config('txlane.unit', $1, true)"}, &pgproto3.Bind{Parameters: [][]byte{[]byte("u1")}}, &pgproto3.Execute{},
				&pgproto3.Sync{}); err != nil {
				t.Fatal(err)
			}
		}},
		{"RESET to the login's", true, sql("RESET txlane.unit")},
		{"SET TO DEFAULT", true, sql("SET txlane.unit TO DEFAULT")},
		{"SET LOCAL TO DEFAULT", true, sql("SET LOCAL txlane.unit TO DEFAULT")},
		{"RESET ALL", true, sql("RESET ALL")},
		{"set_config NULL", true, sql("SELECT set_config('txlane.unit', NULL, true)")},
		{"set_config NULL bind parameter", true, bindSet(nil)},
	}
	for _, escape := range []string{"reject", "reroute"} {
		for _, pool := range []proxy.PoolOptions{{Mode: proxy.PoolSession}, {Mode: proxy.PoolTransaction, Size: 4}} {
			bed := startUnitProxy(t, escape, func(o *proxy.Options) { o.Pool = pool })
			for i, nm := range namers {
				t.Run(fmt.Sprintf("%s/%s/%s", escape, pool.Mode, nm.name), func(t *testing.T) {
					a, b := bed.connect(t), bed.connect(t)
					if nm.login {
						a = connectDSN(t, bed.DSN(t, "")+"&options=-c%20txlane.unit%3Du1")
						exec(t, a, "SET txlane.unit = 'other'")
					}
					who := fmt.Sprintf("c%02d-%s-%s-", i, escape, pool.Mode)
					exec(t, a, "BEGIN")
					exec(t, a, fmt.Sprintf("INSERT INTO %s (unit, who) VALUES ('none', '%searly')", bed.table, who))
					nm.run(t, a, bed.table, who)
					err := execErr(b, fmt.Sprintf("INSERT INTO %s (unit, who) VALUES ('u1', '%sother') /*unit='u1'*/", bed.table, who))
					switch {
					case escape == "reject" || err != nil:
						wantCode(t, err, proxy.CodeEscapedWrite)
					case bed.count(t, "who = '"+who+"other'") != "0":
						t.Fatal("the rerouted write committed on its own")
					}
					exec(t, a, "ROLLBACK")
					if n := bed.count(t, "who LIKE '"+who+"%'"); n != "0" {
						t.Fatalf("%s rows after the first client's ROLLBACK (the other write: %v)", n, err)
					}
				})
			}
		}
	}
}

// TestUnitsResetThenWrite: a client that logged in with txlane.unit u1 and
// set another unit goes back to u1 (RESET, SET TO DEFAULT, RESET ALL,
// set_config to NULL, constant or bind parameter) and writes in the same
// request, while another client's transaction holds u1. Its write runs
// under u1 and would commit outside that transaction: txlane cannot read
// the login's value before the request runs, so the write is of an unknown
// unit and refused (25L01), in and outside a transaction block, and
// nothing is written. Before, txlane took the reset for "no unit" and let
// the write through.
func TestUnitsResetThenWrite(t *testing.T) {
	for _, pool := range []proxy.PoolOptions{{Mode: proxy.PoolSession}, {Mode: proxy.PoolTransaction, Size: 4}} {
		bed := startUnitProxy(t, "reject", func(o *proxy.Options) { o.Pool = pool })
		write := func(who string) string {
			return fmt.Sprintf("INSERT INTO %s (unit, who) VALUES ('u1', '%s')", bed.table, who)
		}
		for _, block := range []bool{false, true} {
			for i, reset := range []string{"RESET txlane.unit", "SET txlane.unit TO DEFAULT", "SET LOCAL txlane.unit TO DEFAULT", "RESET ALL",
				"SELECT set_config('txlane.unit', NULL, true)", "SELECT set_config('txlane.unit', $1, false)"} {
				t.Run(fmt.Sprintf("%s/block=%v/%s", pool.Mode, block, reset), func(t *testing.T) {
					holder, w := loginUnitPair(t, bed)
					who := fmt.Sprintf("w%d-%v-%s", i, block, pool.Mode)
					var msgs []pgproto3.FrontendMessage
					if block {
						msgs = append(msgs, &pgproto3.Parse{Query: "BEGIN"}, &pgproto3.Bind{}, &pgproto3.Execute{})
					}
					// A NULL bind parameter for $1.
					msgs = append(msgs, &pgproto3.Parse{Query: reset}, &pgproto3.Bind{Parameters: [][]byte{nil}[:countParams(reset)]}, &pgproto3.Execute{},
						&pgproto3.Parse{Query: write(who)}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
					wantCode(t, rawRequest(w, msgs...), proxy.CodeEscapedWrite)
					if block {
						exec(t, w, "ROLLBACK")
					}
					exec(t, holder, "ROLLBACK")
					if n := bed.count(t, "who = '"+who+"'"); n != "0" {
						t.Fatalf("%s rows of the write made under the login's unit", n)
					}
				})
			}
		}
	}
}

// loginUnitPair returns a client whose open transaction holds u1 (it wrote
// a row of it) and another that logged in with txlane.unit u1 and has set
// another unit since.
func loginUnitPair(t *testing.T, bed *unitBed) (holder, w *pgconn.PgConn) {
	t.Helper()
	holder = bed.connect(t)
	exec(t, holder, "BEGIN")
	exec(t, holder, bed.insert("u1", "holder"))
	w = connectDSN(t, bed.DSN(t, "")+"&options=-c%20txlane.unit%3Du1")
	exec(t, w, "SET txlane.unit = 'other'")
	return holder, w
}

// countParams is 1 when sql has the bind parameter $1, else 0.
func countParams(sql string) int {
	if strings.Contains(sql, "$1") {
		return 1
	}
	return 0
}

// TestUnitsWriteFlushedThenReset: a client that logged in with txlane.unit
// u1 and set another unit writes, sends a Flush (the write goes out at
// once), then goes back to u1 (RESET, SET TO DEFAULT, RESET ALL, set_config
// to NULL, a function that sets it) before the Sync, while another client's
// transaction holds u1. The write would commit under u1 outside that
// transaction: the setter is refused (25L01), as a SET naming u1 there is,
// and nothing is written. Before, it went through and the row stayed after
// the holder's ROLLBACK.
func TestUnitsWriteFlushedThenReset(t *testing.T) {
	for _, pool := range []proxy.PoolOptions{{Mode: proxy.PoolSession}, {Mode: proxy.PoolTransaction, Size: 4}} {
		bed := startUnitProxy(t, "reject", func(o *proxy.Options) { o.Pool = pool })
		for _, block := range []bool{false, true} {
			for i, reset := range []string{"RESET txlane.unit", "SET txlane.unit TO DEFAULT", "RESET ALL",
				"SELECT set_config('txlane.unit', $1, false)", "DO $$BEGIN PERFORM set_config('txlane.unit', 'u' || '1', false); END$$",
				"SET txlane.unit = 'u1'"} {
				t.Run(fmt.Sprintf("%s/block=%v/%s", pool.Mode, block, reset), func(t *testing.T) {
					holder, w := loginUnitPair(t, bed)
					who := fmt.Sprintf("f%d-%v-%s", i, block, pool.Mode)
					var msgs []pgproto3.FrontendMessage
					if block {
						msgs = append(msgs, &pgproto3.Parse{Query: "BEGIN"}, &pgproto3.Bind{}, &pgproto3.Execute{})
					}
					msgs = append(msgs, &pgproto3.Parse{Query: bed.insert("other", who)}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{},
						&pgproto3.Parse{Query: reset}, &pgproto3.Bind{Parameters: [][]byte{nil}[:countParams(reset)]}, &pgproto3.Execute{})
					if block {
						msgs = append(msgs, &pgproto3.Parse{Query: "COMMIT"}, &pgproto3.Bind{}, &pgproto3.Execute{})
					}
					wantCode(t, rawRequest(w, append(msgs, &pgproto3.Sync{})...), proxy.CodeEscapedWrite)
					if block {
						exec(t, w, "ROLLBACK")
					}
					exec(t, holder, "ROLLBACK")
					if n := bed.count(t, "who = '"+who+"'"); n != "0" {
						t.Fatalf("%s rows of the write made before the unit went back to the login's", n)
					}
				})
			}
		}
	}
}
