package router

import (
	"strings"
	"testing"

	"github.com/txlane/txlane/policy"
)

// TestDeferredCheckAndFiresCode: what a write may queue for its
// transaction's end (a deferrable trigger of a relation it writes or
// reaches, for that kind of write) and the code it fires that may change
// the session (defaults and rules calling what writes, locks or sets, or a
// user function with an opaque body), as classified against a catalog.
// par is referenced by chi (ON DELETE CASCADE, not deferrable), chi by gchi
// (DEFERRABLE, NO ACTION).
func TestDeferredCheckAndFiresCode(t *testing.T) {
	pub := func(n string) policy.Func { return policy.Func{Schema: "public", Name: n} }
	sys := func(n string) policy.Func { return policy.Func{Schema: "pg_catalog", Name: n} }
	def := func(col string, f policy.Func) CatalogUse {
		return CatalogUse{Via: "default of column " + col, When: UseWrite, Func: f}
	}
	cat := NewCatalog(CatalogObjects{
		Functions: []CatalogFunc{
			{Schema: "pg_catalog", Name: "nextval", Volatility: Volatile},
			{Schema: "pg_catalog", Name: "now", Volatility: Stable},
			{Schema: "pg_catalog", Name: "pg_try_advisory_lock", Volatility: Volatile},
			{Schema: "public", Name: "imm", Volatility: Immutable, OpaqueBody: true},
			{Schema: "public", Name: "imsql", Volatility: Immutable},
			{Schema: "public", Name: "calls_imm", Volatility: Immutable, Calls: []policy.Func{pub("imm")}},
		},
		Relations: []CatalogRelation{
			{Schema: "public", Name: "par", Kind: 'r', Referenced: []CatalogForeignKey{
				{Name: "chi_fk", Table: policy.Table{Schema: "public", Name: "chi"}, OnDelete: 'c', OnUpdate: 'a'}}},
			{Schema: "public", Name: "chi", Kind: 'r',
				Referenced: []CatalogForeignKey{{Name: "gchi_fk", Table: policy.Table{Schema: "public", Name: "gchi"}, OnDelete: 'a', OnUpdate: 'a'}},
				Deferrable: []CatalogDeferrable{{Name: "gchi_fk", Events: ParseEvents("ud")}}},
			{Schema: "public", Name: "gchi", Kind: 'r', Deferrable: []CatalogDeferrable{{Name: "gchi_fk", Events: ParseEvents("iu")}}},
			{Schema: "public", Name: "ser", Kind: 'r', Uses: []CatalogUse{def("id", sys("nextval")), def("at", sys("now"))}},
			{Schema: "public", Name: "lk", Kind: 'r', Uses: []CatalogUse{def("l", sys("pg_try_advisory_lock"))}},
			{Schema: "public", Name: "im", Kind: 'r', Uses: []CatalogUse{def("v", pub("imm"))}},
			{Schema: "public", Name: "im2", Kind: 'r', Uses: []CatalogUse{def("v", pub("calls_imm"))}},
			{Schema: "public", Name: "imsql", Kind: 'r', Uses: []CatalogUse{def("v", pub("imsql"))}},
			{Schema: "public", Name: "ruled", Kind: 'r', Rules: []CatalogRule{
				{Name: "lock_rule", Events: EvInsert, Funcs: []policy.Func{sys("pg_try_advisory_lock")}}}},
		},
	})
	cl := NewClassifier(Config{Catalog: cat})
	for _, c := range []struct {
		sql             string
		deferred, fires string // substrings; "" wants none
	}{
		{"DELETE FROM par", "table public.chi has deferrable constraint gchi_fk (checked on update, delete)", ""}, // through the cascade
		{"INSERT INTO par VALUES (1)", "", ""},
		{"UPDATE par SET id = 2", "", ""}, // ON UPDATE NO ACTION, not deferrable
		{"INSERT INTO gchi VALUES (1)", "gchi_fk", ""},
		{"DELETE FROM gchi", "", ""}, // deleting a referencing row breaks nothing
		{"UPDATE chi SET x = 1", "gchi_fk", ""},
		{"INSERT INTO ser DEFAULT VALUES", "", ""}, // nextval, now(): no session change counted
		{"INSERT INTO lk DEFAULT VALUES", "", "default of column l, which calls pg_catalog.pg_try_advisory_lock()"},
		{"DELETE FROM lk", "", ""}, // defaults run on insert and update only
		{"INSERT INTO im DEFAULT VALUES", "", "public.imm(), whose body txlane cannot read"},
		{"INSERT INTO im2 DEFAULT VALUES", "", "public.calls_imm(), which calls public.imm()"},
		{"INSERT INTO imsql DEFAULT VALUES", "", ""},
		{"INSERT INTO ruled VALUES (1)", "", "rule lock_rule"},
		{"INSERT INTO par VALUES (1); INSERT INTO gchi VALUES (1)", "gchi_fk", ""},
	} {
		st := cl.Classify(c.sql)
		check := func(what, got, want string) {
			if want == "" && got != "" || want != "" && !strings.Contains(got, want) {
				t.Errorf("%q: %s %q, want %q", c.sql, what, got, want)
			}
		}
		check("DeferredCheck", st.DeferredCheck, c.deferred)
		check("FiresCode", st.FiresCode, c.fires)
	}
}
