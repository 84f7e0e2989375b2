package proxy_test

import (
	"testing"

	"github.com/txlane/txlane/proxy"
)

// TestUnitsWriteOfAHoldingTransaction: a write inside a transaction that
// holds a unit is a write of that unit, whatever its own text or SET LOCAL
// names: it commits with that transaction, outside another holder's. So a
// co-holder's untagged write, or one tagged or SET LOCAL to another unit,
// is refused while another transaction holds the unit too, in both pool
// modes; a transaction that holds no unit others hold writes freely.
// Before, only a write naming the unit was refused (found by an
// adversarial tester).
func TestUnitsWriteOfAHoldingTransaction(t *testing.T) {
	for _, mode := range []proxy.PoolMode{proxy.PoolSession, proxy.PoolTransaction} {
		t.Run(string(mode), func(t *testing.T) {
			b := startEscapeBed(t, func(o *proxy.Options) { o.Pool = proxy.PoolOptions{Mode: mode, Size: 4} })
			h := b.hold(t) // holds u1
			w := b.connect(t)
			for _, tc := range []struct{ name, before, write string }{
				{"untagged", "", b.ins("x", "other")},
				{"tagged with another unit", "", b.ins("u2", "other") + " /*unit='u2'*/"},
				{"after SET LOCAL of another unit", "SET LOCAL txlane.unit = 'u3'", b.ins("u3", "other")},
			} {
				exec(t, w, "BEGIN")
				exec(t, w, "SELECT 1 /*unit='u1'*/") // w's transaction holds u1 too
				if tc.before != "" {
					exec(t, w, tc.before)
				}
				err := escapeErr(w, tc.write)
				exec(t, w, "ROLLBACK")
				b.wantRejected(t, tc.name, err)
			}
			// A transaction that holds only its own unit writes.
			exec(t, w, "BEGIN")
			exec(t, w, "SELECT 1 /*unit='u9'*/")
			exec(t, w, b.ins("u9", "free"))
			exec(t, w, "COMMIT")
			exec(t, h, "ROLLBACK")
			if n := b.count(t, "who = 'free'"); n != "1" {
				t.Fatalf("a write of a transaction holding only its own unit: %s rows, want 1", n)
			}
		})
	}
}
