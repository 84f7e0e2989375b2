package proxy_test

import (
	"testing"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// BenchmarkReroutedWrite measures one unit-tagged INSERT from a client
// outside a transaction: "rerouted" into another client's open transaction
// holding the unit (escape: reroute, with txlane's savepoint around it; the
// holder's transaction is renewed every 50 writes, in the timing), and
// "own" on the writer's own connection with no holder, for comparison.
func BenchmarkReroutedWrite(b *testing.B) {
	for _, mode := range []string{"own", "rerouted"} {
		b.Run(mode, func(b *testing.B) {
			p := startProxy(b, func(o *proxy.Options) { o.Rules.Escape = "reroute" })
			table := uniqueName("bench_uow")
			pgtest.Exec(b, "CREATE TABLE "+table+" (id serial PRIMARY KEY, unit text, who text)")
			b.Cleanup(func() { pgtest.Exec(b, "DROP TABLE IF EXISTS "+table) })
			holder, writer := p.connect(b), p.connect(b)
			ins := "INSERT INTO " + table + " (unit, who) VALUES ('u1', 'writer') /*unit='u1'*/"
			hold := "BEGIN; INSERT INTO " + table + " (unit, who) VALUES ('u1', 'holder') /*unit='u1'*/"
			if mode == "rerouted" {
				exec(b, holder, hold)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				exec(b, writer, ins)
				if mode == "rerouted" && i%50 == 49 {
					exec(b, holder, "COMMIT")
					exec(b, holder, hold)
				}
			}
			b.StopTimer()
			if mode == "rerouted" {
				exec(b, holder, "COMMIT")
			}
		})
	}
}
