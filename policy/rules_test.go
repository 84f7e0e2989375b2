package policy

import (
	"reflect"
	"strings"
	"testing"
)

func TestNewRulesValidation(t *testing.T) {
	_, err := NewRules(RulesConfig{
		VectorTables:      []string{"ok.items", `"unterminated`, "a.b.c"},
		AfterWrite:        "sometimes",
		OnUnavailable:     "panic",
		WritingFunctions:  []string{"f", ""},
		ReadOnlyFunctions: []string{"f"},
		Discovered:        []Table{{Schema: "s"}},
	})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"vector_tables[1]", "vector_tables[2]", "after_write", "on_unavailable",
		"writing_functions[1]", "both writing and read-only", "discovered vector table 0"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	r, err := NewRules(RulesConfig{})
	if err != nil || r.AfterWrite() != AfterWriteTable || r.OnUnavailable() != FallbackPrimary {
		t.Fatalf("defaults: %v %v", r, err)
	}
}

func TestRulesAccessors(t *testing.T) {
	r := mustRules(t, RulesConfig{
		VectorTables:      []string{"public.items", "Chunks", `"My Schema"."Vec"`},
		Discovered:        []Table{{Schema: "search", Name: "embeddings"}, {Schema: "public", Name: "items"}},
		AfterWrite:        "any",
		OnUnavailable:     "error",
		WritingFunctions:  []string{"audit.log", "audit.log"},
		ReadOnlyFunctions: []string{"ml.embed"},
	})
	want := []Table{{Name: "chunks"}, {Schema: "My Schema", Name: "Vec"}, {Schema: "public", Name: "items"}, {Schema: "search", Name: "embeddings"}}
	if got := r.VectorTables(); !reflect.DeepEqual(got, want) {
		t.Errorf("VectorTables = %v", got)
	}
	if r.AfterWrite() != AfterWriteAny || r.AfterWrite().String() != "any" || r.OnUnavailable().String() != "error" {
		t.Error("knobs")
	}
	if got := r.WritingFunctions(); !reflect.DeepEqual(got, []Func{{Schema: "audit", Name: "log"}}) {
		t.Errorf("WritingFunctions = %v", got)
	}
	// Accessors return copies: the value stays immutable.
	r.WritingFunctions()[0].Name = "changed"
	if r.WritingFunctions()[0].Name != "log" {
		t.Error("WritingFunctions exposes internal state")
	}
}

func TestIsVector(t *testing.T) {
	r := mustRules(t, RulesConfig{VectorTables: []string{"public.items", "search.embeddings", "chunks", `"My Schema"."Vec"`, "pg_catalog.weird"}})
	cases := []struct {
		table string
		path  []string
		want  bool
	}{
		{"items", nil, true},                              // default path: $user, public
		{"public.items", nil, true},                       // exact
		{"other.items", nil, false},                       // qualified: exact only
		{"items", []string{"app"}, false},                 // not on the path
		{"items", []string{"app", "public"}, true},        // later on the path
		{"embeddings", nil, false},                        // search not on the default path
		{"embeddings", []string{"search"}, true},          //
		{"chunks", []string{"x"}, true},                   // any schema
		{"anywhere.chunks", nil, true},                    // any schema
		{`"My Schema"."Vec"`, nil, true},                  //
		{`"my schema"."vec"`, nil, false},                 // case matters
		{"Vec", []string{"My Schema"}, false},             // unquoted Vec folds to vec
		{`"Vec"`, []string{"My Schema"}, true},            //
		{"items", []string{"$user"}, false},               // unexpanded $user skipped
		{"items", []string{"pg_temp", "public"}, true},    //
		{"weird", []string{"public"}, true},               // pg_catalog implicitly first
		{"weird", []string{"public", "pg_catalog"}, true}, // listed explicitly: searched where listed
	}
	for _, c := range cases {
		if got := r.IsVector(tbl(c.table), c.path); got != c.want {
			t.Errorf("IsVector(%s, %q) = %v, want %v", c.table, c.path, got, c.want)
		}
	}
	var nilRules *Rules
	if nilRules.IsVector(tbl("items"), nil) {
		t.Error("nil rules")
	}
}
