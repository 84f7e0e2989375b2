package policy

import "testing"

func TestEscapeFor(t *testing.T) {
	r, err := NewRules(RulesConfig{
		Escape: "reject",
		EscapeOverrides: []EscapeOverride{
			{Table: "audit.*", Escape: "allow"},
			{Table: "public.optimization_logs", Escape: "reroute"},
			{Table: "metrics_*", Escape: "log"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	tab := func(s string) Table { t, _ := ParseTable(s); return t }
	for _, tc := range []struct {
		tables []Table
		want   EscapeAction
	}{
		{nil, EscapeReject},
		{[]Table{tab("users")}, EscapeReject},
		{[]Table{tab("audit.events")}, EscapeAllow},
		{[]Table{tab("optimization_logs")}, EscapeReroute},
		{[]Table{tab("public.optimization_logs")}, EscapeReroute},
		{[]Table{tab("other.optimization_logs")}, EscapeReject},
		{[]Table{tab("metrics_daily")}, EscapeLog},
		{[]Table{tab("audit.events"), tab("metrics_daily")}, EscapeLog},
		{[]Table{tab("audit.events"), tab("users")}, EscapeReject},
		{[]Table{tab("optimization_logs"), tab("metrics_x")}, EscapeReroute},
	} {
		if got := r.EscapeFor(tc.tables); got != tc.want {
			t.Errorf("EscapeFor(%v) = %s, want %s", tc.tables, got, tc.want)
		}
	}
	if _, err := NewRules(RulesConfig{Escape: "sometimes"}); err == nil {
		t.Error("bad escape accepted")
	}
	if _, err := NewRules(RulesConfig{EscapeOverrides: []EscapeOverride{{Table: "[", Escape: "allow"}}}); err == nil {
		t.Error("bad pattern accepted")
	}
	def, _ := NewRules(RulesConfig{})
	if def.Escape() != EscapeReject || len(def.UnitCommentKeys()) != 1 || def.UnitCommentKeys()[0] != "unit" {
		t.Errorf("defaults: %s %v", def.Escape(), def.UnitCommentKeys())
	}
}
