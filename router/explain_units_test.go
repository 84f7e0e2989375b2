package router

import (
	"reflect"
	"strings"
	"testing"

	"github.com/txlane/txlane/policy"
)

// TestExplainUnitsAndEscape: the explanation reads units of work with the
// rules' comment keys and gives the escape action the rules give the
// statement's written tables.
func TestExplainUnitsAndEscape(t *testing.T) {
	rules, err := policy.NewRules(policy.RulesConfig{
		Escape:          "reroute",
		EscapeOverrides: []policy.EscapeOverride{{Table: "audit.*", Escape: "allow"}, {Table: "public.items", Escape: "log"}},
		UnitCommentKeys: []string{"request_id"},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := NewClassifier(Config{})
	for _, tc := range []struct {
		sql    string
		units  []string
		escape string
	}{
		{"INSERT INTO audit.log VALUES (1) /*request_id='r1'*/", []string{"r1"}, "allow"},
		{"UPDATE items SET a = 1 /*unit='u1'*/", nil, "log"}, // unit is not a configured key here
		{"DELETE FROM other /*request_id='r2',unit='u2'*/", []string{"r2"}, "reroute"},
		{"INSERT INTO audit.log VALUES (1); INSERT INTO other VALUES (2)", nil, "reroute"}, // the strictest applies
		{"SELECT 1 /*request_id='r3'*/", []string{"r3"}, ""},
		{"SELEC 1 /*request_id='r4'*/", []string{"r4"}, "reroute"}, // unparsable counts as a write of unknown tables
	} {
		e := Explain(c, tc.sql, nil, rules, nil)
		if !reflect.DeepEqual(e.Units, tc.units) || e.Escape != tc.escape {
			t.Errorf("%s: units %q escape %q, want %q %q", tc.sql, e.Units, e.Escape, tc.units, tc.escape)
		}
		var lines []string
		for _, kv := range e.Lines() {
			lines = append(lines, kv[0]+": "+kv[1])
		}
		text := strings.Join(lines, "\n")
		if tc.escape != "" && !strings.Contains(text, "escape: "+tc.escape+" (") {
			t.Errorf("%s: lines lack the escape action:\n%s", tc.sql, text)
		}
		if len(tc.units) > 0 && !strings.Contains(text, "units: "+strings.Join(tc.units, ", ")) {
			t.Errorf("%s: lines lack the units:\n%s", tc.sql, text)
		}
	}
}
