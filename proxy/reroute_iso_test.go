package proxy_test

import (
	"fmt"
	"testing"

	"github.com/txlane/txlane/proxy"
)

// TestUnitsRerouteOnlyIntoReadCommitted: a write is rerouted only into a
// READ COMMITTED, READ WRITE holder. Into a REPEATABLE READ or SERIALIZABLE
// one it ran in the holder's snapshot (an adversarial tester's UPDATE of a
// row its client had just committed answered UPDATE 0, and the row was
// never updated); into a READ ONLY one it failed with 25006. Refused with
// 25L01 instead, however the level was chosen (BEGIN, a default the holder
// and writer logged in with), the holder's transaction goes on, and nothing
// of the write is done; the same UPDATE rerouted into a READ COMMITTED
// holder updates the row.
func TestUnitsRerouteOnlyIntoReadCommitted(t *testing.T) {
	for _, pool := range []proxy.PoolOptions{{Mode: proxy.PoolSession}, {Mode: proxy.PoolTransaction, Size: 4}} {
		bed := startUnitProxy(t, "reroute", func(o *proxy.Options) { o.Pool = pool })
		cases := []struct {
			name, options, begin string
			ok                   bool
		}{
			{"repeatable read", "", "BEGIN ISOLATION LEVEL REPEATABLE READ", false},
			{"serializable", "", "BEGIN ISOLATION LEVEL SERIALIZABLE", false},
			{"read only", "", "BEGIN READ ONLY", false},
			{"login default serializable", "-c%20default_transaction_isolation%3Dserializable", "BEGIN", false},
			{"read committed", "", "BEGIN ISOLATION LEVEL READ COMMITTED", true},
		}
		for i, tc := range cases {
			t.Run(fmt.Sprintf("%s/%s", pool.Mode, tc.name), func(t *testing.T) {
				dsn := bed.DSN(t, "")
				if tc.options != "" {
					dsn += "&options=" + tc.options
				}
				holder, writer := connectDSN(t, dsn), connectDSN(t, dsn)
				u := fmt.Sprintf("iso%d", i)
				who := "w-" + u
				exec(t, holder, tc.begin)
				exec(t, holder, fmt.Sprintf("SELECT count(*) FROM %s /*unit='%s'*/", bed.table, u))
				// The writer's own row, committed after the holder's snapshot.
				exec(t, writer, fmt.Sprintf("INSERT INTO %s (unit, who) VALUES ('none', '%s')", bed.table, who))
				err := execErr(writer, fmt.Sprintf("UPDATE %s SET unit = '%s' WHERE who = '%s' /*unit='%s'*/", bed.table, u, who, u))
				if tc.ok {
					if err != nil {
						t.Fatalf("rerouted into a READ COMMITTED holder: %v", err)
					}
				} else {
					wantCode(t, err, proxy.CodeEscapedWrite)
				}
				if holder.TxStatus() != 'T' {
					t.Fatalf("the holder's status is %q, want T", holder.TxStatus())
				}
				exec(t, holder, "COMMIT")
				want := "0"
				if tc.ok {
					want = "1"
				}
				if got := bed.count(t, fmt.Sprintf("who = '%s' AND unit = '%s'", who, u)); got != want {
					t.Fatalf("rows updated: %s, want %s", got, want)
				}
			})
		}
	}
}
