package proxy_test

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/proxy"
)

// TestUnitsSetAfterAFlushedWrite: an untagged write sent before a Flush,
// then txlane.unit set later in the same request (SET, set_config), while
// another client's transaction holds that unit: the write is in the
// request's implicit transaction, not committed yet, so the request fails
// before its Sync (25L01 in the setter's place) and the write rolls back
// (an adversarial tester saw it commit). Inside an explicit block the
// block fails, and its rollback takes the write. Without a holder the same
// request commits.
func TestUnitsSetAfterAFlushedWrite(t *testing.T) {
	for _, escape := range []string{"reject", "reroute"} {
		for _, pool := range []proxy.PoolOptions{{Mode: proxy.PoolSession}, {Mode: proxy.PoolTransaction, Size: 4}} {
			bed := startUnitProxy(t, escape, func(o *proxy.Options) { o.Pool = pool })
			for _, setter := range []string{"SET txlane.unit = 'u1'", "SELECT set_config('txlane.unit', 'u1', false)", "SET LOCAL txlane.unit = 'u1'"} {
				for _, block := range []bool{false, true} {
					t.Run(fmt.Sprintf("%s/%s/%s/block=%v", escape, pool.Mode, setter, block), func(t *testing.T) {
						holder, writer := bed.connect(t), bed.connect(t)
						exec(t, holder, "BEGIN; "+bed.insert("u1", "holder"))
						who := fmt.Sprintf("w-%s-%s-%v", escape, pool.Mode, block)
						var msgs []pgproto3.FrontendMessage
						if block {
							msgs = append(msgs, &pgproto3.Parse{Query: "BEGIN"}, &pgproto3.Bind{}, &pgproto3.Execute{})
						}
						msgs = append(msgs,
							&pgproto3.Parse{Query: fmt.Sprintf("INSERT INTO %s (unit, who) VALUES ('none', '%s')", bed.table, who)}, &pgproto3.Bind{}, &pgproto3.Execute{},
							&pgproto3.Flush{},
							&pgproto3.Parse{Query: setter}, &pgproto3.Bind{}, &pgproto3.Execute{},
							&pgproto3.Sync{})
						wantCode(t, rawRequest(writer, msgs...), proxy.CodeEscapedWrite)
						if block {
							// The block failed (rawRequest reads past pgconn's status).
							wantCode(t, execErr(writer, "SELECT 1"), "25P02")
							exec(t, writer, "ROLLBACK")
						}
						exec(t, holder, "ROLLBACK")
						if got := bed.count(t, "who = '"+who+"'"); got != "0" {
							t.Fatalf("%s rows of the write the request carried into unit u1", got)
						}
						resetUnit(t, writer)
					})
				}
			}
			t.Run(fmt.Sprintf("%s/%s/no holder", escape, pool.Mode), func(t *testing.T) {
				writer := bed.connect(t)
				who := fmt.Sprintf("free-%s-%s", escape, pool.Mode)
				err := rawRequest(writer,
					&pgproto3.Parse{Query: fmt.Sprintf("INSERT INTO %s (unit, who) VALUES ('none', '%s')", bed.table, who)}, &pgproto3.Bind{}, &pgproto3.Execute{},
					&pgproto3.Flush{},
					&pgproto3.Parse{Query: "SET txlane.unit = 'u1'"}, &pgproto3.Bind{}, &pgproto3.Execute{},
					&pgproto3.Sync{})
				if err != nil {
					t.Fatal(err)
				}
				if got := bed.count(t, "who = '"+who+"'"); got != "1" {
					t.Fatalf("%s rows, want 1", got)
				}
			})
		}
	}
}

// resetUnit clears the session's txlane.unit.
func resetUnit(t *testing.T, c *pgconn.PgConn) {
	t.Helper()
	exec(t, c, "RESET txlane.unit")
}
