package policy

import (
	"reflect"
	"testing"
)

func TestParseTable(t *testing.T) {
	cases := []struct {
		in   string
		want Table
		str  string
	}{
		{"items", Table{Name: "items"}, "items"},
		{"Public.ITEMS", Table{Schema: "public", Name: "items"}, "public.items"},
		{` "My Schema" . "Vec" `, Table{Schema: "My Schema", Name: "Vec"}, `"My Schema"."Vec"`},
		{`"a""b"`, Table{Name: `a"b`}, `"a""b"`},
		{`"1st"`, Table{Name: "1st"}, `"1st"`},
		{`"x.y"`, Table{Name: "x.y"}, `"x.y"`},
		{"ÄBC", Table{Name: "Äbc"}, `"Äbc"`},
		// Unquoted parts run up to '.' or white space, as in a regclass
		// literal ('my-table'::regclass names the table "my-table").
		{"my-table", Table{Name: "my-table"}, `"my-table"`},
		{"1abc", Table{Name: "1abc"}, `"1abc"`},
		{"App.My-Table", Table{Schema: "app", Name: "my-table"}, `app."my-table"`},
		{`"My-Table"`, Table{Name: "My-Table"}, `"My-Table"`},
		{"s.$x", Table{Schema: "s", Name: "$x"}, `s."$x"`},
	}
	for _, c := range cases {
		got, err := ParseTable(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseTable(%q) = %#v, %v; want %#v", c.in, got, err, c.want)
			continue
		}
		if s := got.String(); s != c.str {
			t.Errorf("%#v.String() = %q, want %q", got, s, c.str)
		}
		if back, err := ParseTable(got.String()); err != nil || back != got {
			t.Errorf("round trip of %q: %#v, %v", got.String(), back, err)
		}
	}
	for _, bad := range []string{"", ".", "a.", `"`, `""`, `a"b`, "a.b.c", `"a"b`, "a b", ".a", "a..b", `"unterminated`, "  "} {
		if got, err := ParseTable(bad); err == nil {
			t.Errorf("ParseTable(%q) = %#v, want error", bad, got)
		}
	}
}

func TestParseFunc(t *testing.T) {
	for in, want := range map[string]Func{
		"nextval":          {Name: "nextval"},
		"App.Bump":         {Schema: "app", Name: "bump"},
		"my-fn":            {Name: "my-fn"},
		`"f()"`:            {Name: "f()"},
		`s."odd""(name)"`:  {Schema: "s", Name: `odd"(name)`},
		` public . lo_put`: {Schema: "public", Name: "lo_put"},
	} {
		if got, err := ParseFunc(in); err != nil || got != want {
			t.Errorf("ParseFunc(%q) = %#v, %v; want %#v", in, got, err, want)
		}
	}
	for _, bad := range []string{"nextval()", "f(int)", "s.f(", `"a"()`, "", "a.b.c"} {
		if got, err := ParseFunc(bad); err == nil {
			t.Errorf("ParseFunc(%q) = %#v, want error", bad, got)
		}
	}
}

func TestCheckTablePattern(t *testing.T) {
	for _, ok := range []string{"public.*", "*.embeddings", "audit.log_[0-9]", "items"} {
		if err := CheckTablePattern(ok); err != nil {
			t.Errorf("CheckTablePattern(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "[abc", `x\`} {
		if err := CheckTablePattern(bad); err == nil {
			t.Errorf("CheckTablePattern(%q) = nil, want an error", bad)
		}
	}
	if _, err := NewRules(RulesConfig{EscapeOverrides: []EscapeOverride{{Table: "[abc", Escape: "allow"}}}); err == nil {
		t.Error("NewRules accepted a bad pattern")
	}
}

func TestQuoteIdent(t *testing.T) {
	for in, want := range map[string]string{
		"abc": "abc", "a_1": "a_1", "_x": "_x", "Abc": `"Abc"`, "1a": `"1a"`,
		"a b": `"a b"`, `a"b`: `"a""b"`, "$user": `"$user"`, "": `""`,
	} {
		if got := QuoteIdent(in); got != want {
			t.Errorf("QuoteIdent(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSearchPath(t *testing.T) {
	got, err := ParseSearchPath(`"$user", Public, "My Schema"`)
	if err != nil || !reflect.DeepEqual(got, []string{"$user", "public", "My Schema"}) {
		t.Fatalf("ParseSearchPath = %q, %v", got, err)
	}
	if got, err := ParseSearchPath("  "); err != nil || got != nil {
		t.Fatalf("empty: %q %v", got, err)
	}
	if _, err := ParseSearchPath("a,,b"); err == nil {
		t.Fatal("empty element accepted")
	}
	exp := ExpandSearchPath([]string{"$user", "public"}, "alice")
	if !reflect.DeepEqual(exp, []string{"alice", "public"}) {
		t.Fatalf("ExpandSearchPath = %q", exp)
	}
	if exp := ExpandSearchPath([]string{"$user", "public"}, ""); !reflect.DeepEqual(exp, []string{"public"}) {
		t.Fatalf("ExpandSearchPath without user = %q", exp)
	}
}

func TestMergeAndClass(t *testing.T) {
	if Unknown.String() != "Unknown" || LockingRead.String() != "LockingRead" || Class(99).String() != "Class(99)" {
		t.Error("Class.String")
	}
	for c := Unknown; c <= TxControl; c++ {
		if back, ok := ParseClass(c.String()); !ok || back != c {
			t.Errorf("ParseClass(%s)", c)
		}
	}
	order := []Class{Read, LockingRead, Write, DDL, Utility, Session, TxControl, Unknown}
	for i := 1; i < len(order); i++ {
		if MorePrimaryBound(order[i-1], order[i]) != order[i] || MorePrimaryBound(order[i], order[i-1]) != order[i] {
			t.Errorf("%s should be more primary-bound than %s", order[i], order[i-1])
		}
	}
	m := Merge([]Statement{
		{Class: Read, Command: "SELECT", Reads: []Table{{Name: "a"}}, Flags: FlagHasParams},
		{Class: Write, Command: "UPDATE", Reads: []Table{{Name: "a"}}, Writes: []Table{{Name: "b"}}, Settings: []Setting{{Name: "x"}}},
	})
	if m.Class != Write || m.Command != "SELECT; UPDATE" || !m.Flags.Has(FlagMultiStatement|FlagHasParams) ||
		len(m.Reads) != 1 || len(m.Writes) != 1 || len(m.Settings) != 1 || len(m.Parts) != 2 {
		t.Errorf("Merge = %+v", m)
	}
	if one := Merge([]Statement{{Class: Read}}); one.Flags.Has(FlagMultiStatement) {
		t.Error("single statement marked multi")
	}
	if f, ok := ParseFlag("select_into"); !ok || f != FlagSelectInto || (FlagCursor|FlagListen).String() != "cursor|listen" {
		t.Error("flag names")
	}
	if iso, ok := ParseIsolation("  REPEATABLE   Read "); !ok || iso != RepeatableRead {
		t.Error("ParseIsolation")
	}
	// "default" names IsolationDefault's String, not a level SQL accepts.
	if iso, ok := ParseIsolation("default"); ok {
		t.Errorf("ParseIsolation(default) = %v, true", iso)
	}
	if a, err := ParseEscapeAction("log"); err != nil || a != EscapeLog || EscapeAction(9).String() != "escape(9)" {
		t.Errorf("escape names: %v, %v, %s", a, err, EscapeAction(9))
	}
	if _, err := ParseEscapeAction("Reject"); err == nil {
		t.Error("ParseEscapeAction is case-sensitive, as the policy file is")
	}
}
