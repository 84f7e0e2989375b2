package proxy_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/txlane/txlane/proxy"
)

// TestUnitsStaleHolder: a holder that sets its unit other than by SET or a
// comment holds it as soon as txlane has read it back: another connection's
// write of the unit gets 25L01 and nothing of it commits.
func TestUnitsStaleHolder(t *testing.T) {
	bed := startUnitProxy(t, "reject", nil)
	ctx := context.Background()
	for i, c := range []struct{ name, sql string }{
		{"set_config", "SELECT set_config('txlane.unit', 'u-set', true)"},
		{"set_config upper case", "SELECT set_config('TXLANE.UNIT', 'u-set', true)"},
		{"set_config bind parameter", ""},
		// Not yet: UPDATE pg_settings and DO (the read behind the request
		// does not register their unit yet; see units_stale.go).
	} {
		t.Run(c.name, func(t *testing.T) {
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
			if c.sql == "" {
				mustExec("SELECT set_config('txlane.unit', $1, true)", "u-set")
			} else {
				mustExec(c.sql)
			}
			mustExec("INSERT INTO " + bed.table + " (unit, who) VALUES ('u-set', 'holder')")
			who := fmt.Sprintf("other-%d", i)
			wantCode(t, execErr(other, bed.insert("u-set", who)), proxy.CodeEscapedWrite)
			mustExec("ROLLBACK")
			if got := bed.count(t, "who = '"+who+"'"); got != "0" {
				t.Fatalf("%s rows of the other connection's write", got)
			}
			// The unit ended with the transaction.
			exec(t, other, bed.insert("u-set", "after"))
		})
	}
}
