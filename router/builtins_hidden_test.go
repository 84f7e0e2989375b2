package router

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/txlane/txlane/policy"
)

// TestNotableBuiltinPattern: the names and pattern the catalog read keeps
// non-volatile pg_catalog functions by cover every built-in whose call
// routing reads (so a view calling now() or a policy calling current_user
// is seen), and not the plain ones (which would only make the read larger).
func TestNotableBuiltinPattern(t *testing.T) {
	re := regexp.MustCompile(NotableBuiltinPattern())
	names := NotableBuiltinNames()
	notable := func(n string) bool { return slices.Contains(names, n) || re.MatchString(n) }
	want := []string{"lo_from_bytea", "lo_import", "pg_stat_get_xact_tuples_inserted", "pg_table_is_visible", "now",
		"current_setting", "current_user", "session_user", "table_to_xml", "schema_to_xml", "txid_current"}
	for _, m := range []map[string]effect{builtinWriting, builtinReadOnly} {
		for n, e := range m {
			if e != 0 {
				want = append(want, n)
			}
		}
	}
	for _, n := range want {
		if !notable(n) {
			t.Errorf("%s is not notable", n)
		}
	}
	for _, n := range []string{"lower", "texteq", "int4pl", "count", "xlo_x", "nowhere", "set_config2", "pg_backend_pid", "random"} {
		if notable(n) {
			t.Errorf("%s is notable: the catalog read would keep its calls", n)
		}
	}
}

// builtinCatalog: tables whose default, check constraint, index and rule
// call built-ins, a serial-like table, pg_settings with its UPDATE rule,
// row-level security policies, and functions of every body kind.
func builtinCatalog() *CatalogSnapshot {
	setConfig := policy.Func{Schema: "pg_catalog", Name: "set_config"}
	nextval := policy.Func{Schema: "pg_catalog", Name: "nextval"}
	pol := func(name string, f policy.Func) CatalogUse {
		return CatalogUse{Via: "row-level security policy " + name, Func: f}
	}
	return NewCatalog(CatalogObjects{
		Functions: []CatalogFunc{
			{Schema: "pg_catalog", Name: "set_config", Volatility: Volatile},
			{Schema: "pg_catalog", Name: "nextval", Volatility: Volatile},
			{Schema: "pg_catalog", Name: "now", Volatility: Stable},
			{Schema: "pg_catalog", Name: "current_user", Volatility: Stable},
			{Schema: "pg_catalog", Name: "current_setting", Volatility: Stable},
			{Schema: "pg_catalog", Name: "upper", Volatility: Immutable},
			{Schema: "pg_catalog", Name: "count", Volatility: Immutable, Kind: 'a'},
			{Schema: "pg_catalog", Name: "table_to_xml", Volatility: Stable},
			{Schema: "public", Name: "who_pl", Volatility: Stable, OpaqueBody: true},
			{Schema: "public", Name: "who_atomic", Volatility: Stable, Calls: []policy.Func{{Schema: "pg_catalog", Name: "current_user"}}},
			{Schema: "public", Name: "outer_atomic", Volatility: Immutable, Calls: []policy.Func{{Schema: "public", Name: "who_pl"}}},
			{Schema: "public", Name: "plain_atomic", Volatility: Immutable, Calls: []policy.Func{{Schema: "pg_catalog", Name: "upper"}}},
			{Schema: "public", Name: "c_fn", Volatility: Immutable},
		},
		Relations: []CatalogRelation{
			{Schema: "public", Name: "t_default", Kind: 'r', Uses: []CatalogUse{{Via: "default of column d", When: UseWrite, Func: setConfig}}},
			{Schema: "public", Name: "t_check", Kind: 'r', Uses: []CatalogUse{{Via: "constraint c", When: UseWrite, Func: setConfig}}},
			{Schema: "public", Name: "t_index", Kind: 'r', Uses: []CatalogUse{{Via: "index i", When: UseWrite, Func: setConfig}}},
			{Schema: "public", Name: "t_serial", Kind: 'r', Uses: []CatalogUse{{Via: "default of column id", When: UseWrite, Func: nextval},
				{Via: "default of column at", When: UseWrite, Func: policy.Func{Schema: "pg_catalog", Name: "now"}}}},
			{Schema: "public", Name: "t_rule", Kind: 'r', Rules: []CatalogRule{{Name: "r", Events: EvInsert, Funcs: []policy.Func{setConfig}}}},
			{Schema: "pg_catalog", Name: "pg_settings", Kind: 'v', Rules: []CatalogRule{{Name: "pg_settings_u", Events: EvUpdate, Funcs: []policy.Func{setConfig}}}},
			{Schema: "public", Name: "v_cur", Kind: 'v', Uses: []CatalogUse{{Via: "definition", Func: policy.Func{Schema: "pg_catalog", Name: "current_setting"}}}},
			{Schema: "public", Name: "v_user", Kind: 'v', Uses: []CatalogUse{{Via: "definition", Func: policy.Func{Schema: "pg_catalog", Name: "current_user"}}}},
			{Schema: "public", Name: "r_user", Kind: 'r', Uses: []CatalogUse{pol("p", policy.Func{Schema: "pg_catalog", Name: "current_user"})}},
			{Schema: "public", Name: "r_pl", Kind: 'r', Uses: []CatalogUse{pol("p", policy.Func{Schema: "public", Name: "who_pl"})}},
			{Schema: "public", Name: "r_atomic", Kind: 'r', Uses: []CatalogUse{pol("p", policy.Func{Schema: "public", Name: "who_atomic"})}},
			{Schema: "public", Name: "r_outer", Kind: 'r', Uses: []CatalogUse{pol("p", policy.Func{Schema: "public", Name: "outer_atomic"})}},
			{Schema: "public", Name: "r_plain", Kind: 'r', Uses: []CatalogUse{pol("p", policy.Func{Schema: "public", Name: "plain_atomic"}),
				pol("q", policy.Func{Schema: "public", Name: "c_fn"})}},
		},
	})
}

// TestHiddenBuiltins: what a built-in hidden in a default, check, index
// expression, rule or view does counts in the statement's flags, as it
// would written in the text; a sequence function in a default adds nothing
// to a write; rules count only for their command.
func TestHiddenBuiltins(t *testing.T) {
	c := NewClassifier(Config{Catalog: builtinCatalog()})
	const setter = policy.FlagWritingFunction | policy.FlagMayChangeSession
	for _, tc := range []struct {
		sql        string
		want, not  policy.Flags
		hiddenWord string
	}{
		{"INSERT INTO t_default(v) VALUES ('x')", setter, 0, "default of column d"},
		{"INSERT INTO t_check VALUES ('x')", setter, 0, "constraint c"},
		{"INSERT INTO t_index VALUES ('x')", setter, 0, "index i"},
		{"UPDATE t_index SET v = 'y'", setter, 0, "index i"},
		{"DELETE FROM t_index", 0, setter, ""},
		{"INSERT INTO t_rule VALUES ('x')", setter, 0, "rule r"},
		{"UPDATE t_rule SET v = 'y'", 0, setter, ""},
		{"UPDATE pg_settings SET setting = '1MB' WHERE name = 'work_mem'", setter, 0, "pg_settings_u"},
		{"SELECT count(*) FROM pg_settings", policy.FlagBackendDependent, setter, ""},
		{"INSERT INTO t_serial(v) VALUES ('x')", policy.FlagTxDependent, setter, "now()"},
		{"SELECT * FROM v_cur", policy.FlagBackendDependent, setter, "current_setting"},
		{"SELECT current_setting('app.x') FROM t_serial", 0, policy.FlagBackendDependent | setter, ""},
		{"SELECT current_setting('work_mem') FROM t_serial", policy.FlagBackendDependent, setter, ""},
		{"SELECT * FROM v_user", 0, policy.FlagBackendDependent | setter, ""},
		{"SELECT table_to_xml('t_check', false, false, '')", 0, setter | policy.FlagUnproven, ""},
		{"SELECT table_to_xml(c.oid, false, false, '') FROM pg_class c", policy.FlagUnproven | policy.FlagMayChangeSession, 0, ""},
		{"SELECT * FROM r_user", policy.FlagBackendDependent, setter, "current_user()"},
		{"SELECT * FROM r_pl", policy.FlagBackendDependent, setter, "cannot read"},
		{"SELECT * FROM r_atomic", policy.FlagBackendDependent, setter, "current_user()"},
		{"SELECT * FROM r_outer", policy.FlagBackendDependent, setter, "who_pl"},
		{"SELECT * FROM r_plain", 0, policy.FlagBackendDependent | setter, ""},
	} {
		st := c.Classify(tc.sql)
		if st.Flags&tc.want != tc.want || st.Flags&tc.not != 0 {
			t.Errorf("%s: flags %v, want %v and none of %v", tc.sql, st.Flags, tc.want, tc.not)
		}
		if tc.hiddenWord != "" && !strings.Contains(strings.Join(st.Hidden, "\n"), tc.hiddenWord) {
			t.Errorf("%s: hidden %q, want it to name %q", tc.sql, st.Hidden, tc.hiddenWord)
		}
	}
}

// TestDomainCheckHazards: a domain check that sets a setting is a hazard of
// every statement; one whose value is the transaction's or the backend's
// (now(), current_setting()) is not: it decides only whether a statement
// fails, and would otherwise keep every read off the lane.
func TestDomainCheckHazards(t *testing.T) {
	funcs := []CatalogFunc{
		{Schema: "pg_catalog", Name: "set_config", Volatility: Volatile},
		{Schema: "pg_catalog", Name: "now", Volatility: Stable},
		{Schema: "pg_catalog", Name: "current_setting", Volatility: Stable},
	}
	rels := []CatalogRelation{{Schema: "public", Name: "t", Kind: 'r'}}
	for _, tc := range []struct {
		fn   string
		want policy.Flags
	}{
		{"set_config", policy.FlagWritingFunction | policy.FlagMayChangeSession},
		{"now", 0},
		{"current_setting", 0},
	} {
		c := NewClassifier(Config{Catalog: NewCatalog(CatalogObjects{Functions: funcs, Relations: rels,
			Hazards: []CatalogHazard{{What: "constraint c of domain d", Func: policy.Func{Schema: "pg_catalog", Name: tc.fn}, Check: true}}})})
		if st := c.Classify("SELECT * FROM t"); st.Flags != tc.want {
			t.Errorf("domain check calling %s(): SELECT * FROM t has flags %v, want %v", tc.fn, st.Flags, tc.want)
		}
	}
}
