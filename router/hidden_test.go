package router

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/txlane/txlane/policy"
)

// smallCatalog has a table t, a volatile "=" in schema app next to the
// built-in one, and an immutable "+".
func smallCatalog(extra ...CatalogRelation) *CatalogSnapshot {
	return NewCatalog(CatalogObjects{
		Functions: []CatalogFunc{
			{Schema: "pg_catalog", Name: "int4eq", Volatility: Immutable},
			{Schema: "pg_catalog", Name: "int4pl", Volatility: Immutable},
			{Schema: "pg_catalog", Name: "count", Volatility: Immutable},
			{Schema: "app", Name: "eq_writes", Volatility: Volatile},
		},
		Relations: append([]CatalogRelation{
			{Schema: "public", Name: "t", Kind: 'r'},
			{Schema: "public", Name: "u", Kind: 'r'},
		}, extra...),
		Operators: []CatalogOperator{
			{Schema: "pg_catalog", Name: "=", Funcs: []policy.Func{{Schema: "pg_catalog", Name: "int4eq"}}},
			{Schema: "app", Name: "=", Funcs: []policy.Func{{Schema: "app", Name: "eq_writes"}}},
			{Schema: "pg_catalog", Name: "+", Funcs: []policy.Func{{Schema: "pg_catalog", Name: "int4pl"}}},
		},
	})
}

// TestImpliedOperators: syntax that uses "=" without writing it counts the
// equality operators (one of which writes); syntax without it does not.
func TestImpliedOperators(t *testing.T) {
	c := NewClassifier(Config{Catalog: smallCatalog()})
	for _, sql := range []string{
		"SELECT a FROM t WHERE a = 1",
		"SELECT a FROM t WHERE a IN (1, 2)",
		"SELECT a FROM t WHERE a IN (SELECT b FROM u)",
		"SELECT a FROM t WHERE a = ANY (ARRAY[1, 2])",
		"SELECT CASE a WHEN 1 THEN 'x' END FROM t",
		"SELECT a FROM t JOIN u USING (a)",
		"SELECT a FROM t NATURAL JOIN u",
		"SELECT a FROM t WHERE a IS DISTINCT FROM 1",
		"SELECT NULLIF(a, 1) FROM t",
		"SELECT a FROM t ORDER BY a USING =",
		"SELECT a FROM t WHERE a OPERATOR(app.=) 1",
	} {
		st := c.Classify(sql)
		if !st.Flags.Has(policy.FlagWritingFunction) || len(st.Hidden) == 0 || !strings.Contains(st.Hidden[0], "app.eq_writes") {
			t.Errorf("%s: flags %v hidden %q, want the writing app.= counted", sql, st.Flags, st.Hidden)
		}
	}
	for _, sql := range []string{
		"SELECT a + 1 FROM t",
		"SELECT a FROM t WHERE a OPERATOR(pg_catalog.=) 1",
		"SELECT a FROM t JOIN u ON true",
	} {
		if st := c.Classify(sql); st.Class != policy.Read {
			t.Errorf("%s: %v %v %q, want a read", sql, st.Class, st.Flags, st.Hidden)
		}
	}
	// Operators the catalog does not know: unproven ("<>" for NOT IN).
	for _, sql := range []string{
		"SELECT a FROM t WHERE a NOT IN (1, 2)",
		"SELECT CASE WHEN a > 0 THEN 1 END FROM t",
	} {
		if st := c.Classify(sql); !st.Flags.Has(policy.FlagUnproven) {
			t.Errorf("%s: %v, want unproven", sql, st.Flags)
		}
	}
}

// TestTempRelations: pg_temp.x names the session's temporary schema, which
// the catalog spells pg_temp_N.
func TestTempRelations(t *testing.T) {
	c := NewClassifier(Config{Catalog: smallCatalog(CatalogRelation{Schema: "pg_temp_3", Name: "scratch", Kind: 'r',
		Triggers: []CatalogTrigger{{Name: "tr", Events: EvInsert, Func: policy.Func{Schema: "public", Name: "f"}}}})})
	for _, sql := range []string{"SELECT * FROM scratch", "SELECT * FROM pg_temp.scratch"} {
		if st := c.Classify(sql); st.Class != policy.Read {
			t.Errorf("%s: %v %q", sql, st.Class, st.Hidden)
		}
	}
	if st := c.Classify("INSERT INTO pg_temp.scratch VALUES (1)"); !st.Flags.Has(policy.FlagReachesUnknown) {
		t.Errorf("insert into a temporary table with a trigger: %v", st.Flags)
	}
	if st := c.Classify("SELECT * FROM pg_temp.nothere"); !st.Flags.Has(policy.FlagUnproven) {
		t.Errorf("unknown temporary table: %v", st.Flags)
	}
}

// TestReachCycleAndBound: cascades that loop end; writes that reach too many
// tables reach everything.
func TestReachCycleAndBound(t *testing.T) {
	a := CatalogRelation{Schema: "public", Name: "a", Kind: 'r',
		Referenced: []CatalogForeignKey{{Name: "ba", Table: policy.Table{Schema: "public", Name: "b"}, OnDelete: 'c'}}}
	b := CatalogRelation{Schema: "public", Name: "b", Kind: 'r',
		Referenced: []CatalogForeignKey{{Name: "ab", Table: policy.Table{Schema: "public", Name: "a"}, OnDelete: 'c'}}}
	wide := CatalogRelation{Schema: "public", Name: "wide", Kind: 'p'}
	var parts []CatalogRelation
	for i := 0; i <= maxReached; i++ {
		p := policy.Table{Schema: "public", Name: fmt.Sprintf("wide_%d", i)}
		wide.Children = append(wide.Children, p)
		parts = append(parts, CatalogRelation{Schema: p.Schema, Name: p.Name, Kind: 'r'})
	}
	c := NewClassifier(Config{Catalog: smallCatalog(append([]CatalogRelation{a, b, wide}, parts...)...)})
	st := c.Classify("DELETE FROM a")
	if !slices.Equal(tableStrings(st.WritesReached), []string{"public.b"}) || st.Flags.Has(policy.FlagReachesUnknown) {
		t.Errorf("cycle: reached %v flags %v", st.WritesReached, st.Flags)
	}
	st = c.Classify("INSERT INTO wide VALUES (1)")
	if !st.Flags.Has(policy.FlagReachesUnknown) || len(st.WritesReached) > maxReached {
		t.Errorf("%d partitions: reached %d, flags %v", maxReached+1, len(st.WritesReached), st.Flags)
	}
}

// TestFunctionOnlySnapshot: a snapshot of functions alone (NewCatalogSnapshot)
// checks no relation, but still sees an aggregate's support functions.
func TestFunctionOnlySnapshot(t *testing.T) {
	c := NewClassifier(Config{Catalog: NewCatalogSnapshot([]CatalogFunc{
		{Schema: "public", Name: "sfn", Volatility: Volatile},
		{Schema: "public", Name: "wsum", Volatility: Immutable, Kind: 'a', Calls: []policy.Func{{Schema: "public", Name: "sfn"}}},
	})})
	if st := c.Classify("SELECT * FROM anything WHERE a ### b"); st.Class != policy.Read {
		t.Errorf("relations and operators are not checked without objects: %v %q", st.Class, st.Hidden)
	}
	st := c.Classify("SELECT wsum(x) FROM anything")
	if !st.Flags.Has(policy.FlagWritingFunction) || len(st.Hidden) != 1 || st.Hidden[0] != "aggregate public.wsum calls volatile public.sfn()" {
		t.Errorf("aggregate: %v %q", st.Flags, st.Hidden)
	}
}

// TestReadOnlyListTrustsHidden: a function listed in read_only_functions is
// trusted with what it runs.
func TestReadOnlyListTrustsHidden(t *testing.T) {
	cat := NewCatalogSnapshot([]CatalogFunc{
		{Schema: "public", Name: "sfn", Volatility: Volatile},
		{Schema: "public", Name: "wsum", Volatility: Immutable, Kind: 'a', Calls: []policy.Func{{Schema: "public", Name: "sfn"}}},
	})
	c := NewClassifier(Config{Catalog: cat, ReadOnlyFunctions: []policy.Func{{Name: "wsum"}}})
	if st := c.Classify("SELECT wsum(x) FROM t"); st.Class != policy.Read {
		t.Errorf("listed read-only: %v %q", st.Class, st.Hidden)
	}
}

// benchCatalog is a catalog of about the size of a fresh database with
// pgvector (3,000 functions, 400 relations, 200 operators) plus the
// relations vectorQuery reads.
func benchCatalog() *CatalogSnapshot {
	var o CatalogObjects
	for i := 0; i < 3000; i++ {
		o.Functions = append(o.Functions, CatalogFunc{Schema: "pg_catalog", Name: fmt.Sprintf("f%d", i), Volatility: Immutable})
	}
	o.Functions = append(o.Functions, CatalogFunc{Schema: "public", Name: "cosine_distance", Volatility: Immutable},
		CatalogFunc{Schema: "pg_catalog", Name: "int4eq", Volatility: Immutable})
	for i := 0; i < 400; i++ {
		o.Relations = append(o.Relations, CatalogRelation{Schema: "pg_catalog", Name: fmt.Sprintf("r%d", i), Kind: 'r'})
	}
	o.Relations = append(o.Relations,
		CatalogRelation{Schema: "public", Name: "documents", Kind: 'r'},
		CatalogRelation{Schema: "public", Name: "collections", Kind: 'r'})
	for i := 0; i < 200; i++ {
		o.Operators = append(o.Operators, CatalogOperator{Schema: "pg_catalog", Name: fmt.Sprintf("op%d", i)})
	}
	o.Operators = append(o.Operators,
		CatalogOperator{Schema: "pg_catalog", Name: "=", Funcs: []policy.Func{{Schema: "pg_catalog", Name: "int4eq"}}},
		CatalogOperator{Schema: "public", Name: "<=>", Funcs: []policy.Func{{Schema: "public", Name: "cosine_distance"}}})
	return NewCatalog(o)
}

// BenchmarkClassifyColdCatalog is BenchmarkClassifyCold with a full catalog:
// a text not classified before, objects already evaluated once.
func BenchmarkClassifyColdCatalog(b *testing.B) {
	g := NewClassifier(Config{Catalog: benchCatalog()}).cur.Load()
	if st, _ := g.classifyText(vectorQuery); st.Class != policy.Read {
		b.Fatalf("%v %q", st.Class, st.Hidden)
	}
	b.ReportAllocs()
	for b.Loop() {
		g.classifyText(vectorQuery)
	}
}

// BenchmarkClassifyColdCatalogFirst is the first classification after a
// catalog read: the relations and operators are evaluated too.
func BenchmarkClassifyColdCatalogFirst(b *testing.B) {
	cat := benchCatalog()
	b.ReportAllocs()
	for b.Loop() {
		NewClassifier(Config{Catalog: cat}).cur.Load().classifyText(vectorQuery)
	}
}

// FuzzClassifyCatalog is FuzzClassify with the full catalog of
// testdata/catalog.json: classification never panics, a read carries no
// evidence of a write (hidden ones included), and the vector lane gets pure
// reads only.
func FuzzClassifyCatalog(f *testing.F) {
	var file catalogFile
	readJSON(f, filepath.Join("testdata", "catalog.json"), &file)
	for _, c := range file.Cases {
		f.Add(c.SQL)
		for _, q := range c.Before {
			f.Add(q)
		}
	}
	g := NewClassifier(Config{Catalog: NewCatalog(file.Catalog.objects(f))}).cur.Load()
	rules, _ := policy.NewRules(policy.RulesConfig{VectorTables: file.VectorTables})
	f.Fuzz(func(t *testing.T, sql string) {
		st, _ := g.classifyText(sql)
		if st.Class == policy.Read && (len(st.Writes) > 0 || st.Flags&(policy.FlagWritingFunction|policy.FlagWritesUnknown|
			policy.FlagUnproven|policy.FlagReachesUnknown|policy.FlagLocking) != 0) {
			t.Fatalf("Read with write evidence for %q: %+v", sql, st)
		}
		for _, spec := range []string{"idle", "in_tx_read_committed", "in_tx_wrote:items"} {
			s, _ := policy.ParseStateSpec(spec)
			if d := policy.Decide(&s, st, rules, nil); d.Lane == policy.Vector && !st.IsPureRead() && !st.Flags.Has(policy.FlagMultiStatement) {
				t.Fatalf("vector lane for %q in %s: %+v", sql, spec, st)
			}
		}
	})
}
