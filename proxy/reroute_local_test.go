package proxy_test

import (
	"fmt"
	"testing"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// TestUnitsRerouteNotUnderLocalSettings: a write is not rerouted into a
// holder's transaction that has set transaction-local state: there it would
// run under the holder's search_path (an adversarial tester saw a rerouted
// INSERT land in another schema's table of the same name after the holder's
// set_config('search_path', …, true)). Each way of setting it is refused
// (25L01), before the hold and after it, and nothing is written anywhere;
// a transaction that sets only txlane.unit locally still takes the write.
func TestUnitsRerouteNotUnderLocalSettings(t *testing.T) {
	for _, pool := range []proxy.PoolOptions{{Mode: proxy.PoolSession}, {Mode: proxy.PoolTransaction, Size: 4}} {
		schema := uniqueName("s2")
		bed := startUnitProxy(t, "reroute", func(o *proxy.Options) { o.Pool = pool })
		pgtest.Exec(t, fmt.Sprintf("CREATE SCHEMA %[1]s; CREATE TABLE %[1]s.%[2]s (id serial PRIMARY KEY, unit text, who text); GRANT ALL ON SCHEMA %[1]s TO PUBLIC; GRANT ALL ON %[1]s.%[2]s TO PUBLIC", schema, bed.table))
		pgtest.Exec(t, fmt.Sprintf("CREATE FUNCTION %[1]s.local_path() RETURNS text LANGUAGE sql AS $$ SELECT pg_catalog.set_config('search_path', '%[1]s, public', true) $$", schema))
		t.Cleanup(func() { pgtest.Exec(t, "DROP SCHEMA IF EXISTS "+schema+" CASCADE") })
		setters := []string{
			"SELECT set_config('search_path', '" + schema + ", public', true)",
			"SELECT pg_catalog.set_config('search_path', '" + schema + ", public', true) /*unit='u1'*/",
			"SET LOCAL search_path = " + schema + ", public",
			"SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
			"SELECT " + schema + ".local_path()",
		}
		for _, set := range setters {
			for _, after := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/after=%v", pool.Mode, set, after), func(t *testing.T) {
					holder, writer := bed.connect(t), bed.connect(t)
					exec(t, holder, "BEGIN")
					if !after {
						exec(t, holder, set)
					}
					exec(t, holder, bed.insert("u1", "holder"))
					if after {
						exec(t, holder, set)
					}
					wantCode(t, execErr(writer, bed.insert("u1", "other")), proxy.CodeEscapedWrite)
					if holder.TxStatus() != 'T' {
						t.Fatalf("the holder's status is %q, want T", holder.TxStatus())
					}
					exec(t, holder, "COMMIT")
					direct := directConn(t)
					for _, table := range []string{bed.table, schema + "." + bed.table} {
						if got := scalar(t, direct, "SELECT count(*) FROM "+table+" WHERE who = 'other'"); got != "0" {
							t.Fatalf("refused, yet %s rows in %s", got, table)
						}
					}
				})
			}
		}
		t.Run(fmt.Sprintf("%s/unit only", pool.Mode), func(t *testing.T) {
			holder, writer := bed.connect(t), bed.connect(t)
			exec(t, holder, "BEGIN")
			exec(t, holder, "SELECT set_config('txlane.unit', 'u2', true)")
			exec(t, holder, fmt.Sprintf("INSERT INTO %s (unit, who) VALUES ('u2', 'holder')", bed.table))
			exec(t, writer, bed.insert("u2", "other-u2"))
			exec(t, holder, "COMMIT")
			if got := bed.count(t, "who = 'other-u2'"); got != "1" {
				t.Fatalf("a write rerouted into a transaction that set only txlane.unit: %s rows, want 1", got)
			}
		})
		// The next transaction of the same client takes rerouted writes.
		t.Run(fmt.Sprintf("%s/next transaction", pool.Mode), func(t *testing.T) {
			holder, writer := bed.connect(t), bed.connect(t)
			exec(t, holder, "BEGIN; SELECT set_config('search_path', '"+schema+", public', true); COMMIT")
			exec(t, holder, "BEGIN; "+bed.insert("u3", "holder"))
			exec(t, writer, bed.insert("u3", "other-u3"))
			exec(t, holder, "COMMIT")
			if got := bed.count(t, "who = 'other-u3'"); got != "1" {
				t.Fatalf("a write rerouted into the next transaction: %s rows, want 1", got)
			}
		})
	}
}
