package router

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/txlane/txlane/policy"
)

// vectorQuery is a realistic pgvector similarity search as an ORM sends it.
const vectorQuery = `SELECT "documents"."id", "documents"."title", "documents"."embedding" <=> $1 AS "distance" ` +
	`FROM "public"."documents" JOIN "public"."collections" ON "collections"."id" = "documents"."collection_id" ` +
	`WHERE "collections"."tenant_id" = $2 AND "documents"."deleted_at" IS NULL ` +
	`ORDER BY "documents"."embedding" <=> $1 LIMIT $3 /*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/`

func TestClassifyCaches(t *testing.T) {
	c := NewClassifier(Config{})
	a := c.Classify(vectorQuery)
	if b := c.Classify(vectorQuery); a != b {
		t.Fatal("second Classify of the same text did not hit the cache")
	}
	// The exact text, and its form without constants and comments.
	if c.Len() != 2 {
		t.Fatalf("Len = %d", c.Len())
	}
	c.Reset()
	if c.Len() != 0 {
		t.Fatalf("Len after Reset = %d", c.Len())
	}
	if b := c.Classify(vectorQuery); a == b {
		t.Fatal("Reset did not clear the cache")
	}
	// Update changes what classification depends on.
	c.Update(Config{WritingFunctions: []policy.Func{{Name: "f"}}})
	if st := c.Classify("SELECT f()"); st.Class != policy.Write {
		t.Fatalf("Update not applied: %v", st.Class)
	}
}

func TestClassifyBytesDoesNotRetainBuffer(t *testing.T) {
	c := NewClassifier(Config{})
	buf := []byte("SELECT id FROM items WHERE id = 1")
	st := c.ClassifyBytes(buf)
	copy(buf, "XXXXXX")
	if got := c.Classify("SELECT id FROM items WHERE id = 1"); got != st {
		t.Fatal("cache key aliased the caller's buffer")
	}
	if st := c.ClassifyBytes(nil); st.Class != policy.Utility {
		t.Fatalf("empty bytes: %v", st.Class)
	}
}

func TestCacheBounded(t *testing.T) {
	c := NewClassifier(Config{CacheEntries: 64})
	hot := "SELECT 1 FROM items"
	for i := 0; i < 2000; i++ {
		c.Classify(fmt.Sprintf("SELECT %d", i))
		c.Classify(hot) // keeps being promoted
	}
	if n := c.Len(); n > 64+numShards*2 {
		t.Fatalf("cache holds %d entries, bound 64", n)
	}
	a := c.Classify(hot)
	if b := c.Classify(hot); a != b {
		t.Fatal("hot entry evicted")
	}
	big := "SELECT 1 /*" + strings.Repeat("x", maxCachedText) + "*/"
	c.Classify(big)
	if _, ok := c.cur.Load().cache.get(big); ok {
		t.Fatal("oversized text cached")
	}
}

func TestClassifyConcurrent(t *testing.T) {
	c := NewClassifier(Config{CacheEntries: 100})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				st := c.Classify(fmt.Sprintf("SELECT id FROM items WHERE id = %d", i%50))
				if st.Class != policy.Read || len(st.Reads) != 1 {
					t.Errorf("bad classification: %+v", st)
					return
				}
				if i%97 == g {
					c.Reset()
				}
			}
		}(g)
	}
	wg.Wait()
}

func TestFunctionEffects(t *testing.T) {
	cat := NewCatalogSnapshot([]CatalogFunc{
		{Schema: "pg_catalog", Name: "lower", Volatility: Immutable},
		{Schema: "app", Name: "f", Volatility: Stable},
		{Schema: "other", Name: "f", Volatility: Volatile},
	})
	fr := funcRules{catalog: cat, readOnly: []policy.Func{{Schema: "other", Name: "f"}}}
	cases := []struct {
		schema, name string
		want         effect
	}{
		{"", "lower", 0},
		{"pg_catalog", "lower", 0},
		{"app", "f", 0},
		{"other", "f", 0},           // read-only list, same schema
		{"", "f", userWrites},       // unqualified: volatile somewhere, entry is qualified
		{"", "unknown", userWrites}, // catalog present, unknown
		{"pg_catalog", "unknown", 0},
		{"x", "nextval", effWrites | effSeqArg | effSeqState}, // writing built-ins match any schema
		{"", "lo_whatever", effWrites},
		{"", "now", effTx},
		{"x", "now", userWrites}, // read-only built-ins only for pg_catalog
	}
	for _, c := range cases {
		if got := fr.effect(c.schema, c.name); got != c.want {
			t.Errorf("effect(%q, %q) = %b, want %b", c.schema, c.name, got, c.want)
		}
	}
	var nilCat *CatalogSnapshot
	if _, known := nilCat.Volatile("", "x"); known {
		t.Error("nil snapshot knows things")
	}
}

func TestExplain(t *testing.T) {
	rules, err := policy.NewRules(policy.RulesConfig{VectorTables: []string{"public.documents"}})
	if err != nil {
		t.Fatal(err)
	}
	c := NewClassifier(Config{})
	st, _ := policy.ParseStateSpec("in_tx_wrote:collections")
	e := Explain(c, vectorQuery, &st, rules, nil)
	if e.Lane != "primary" || e.Reason != "read_your_writes" || e.Class != "Read" ||
		strings.Join(e.Reads, ",") != "public.documents,public.collections" ||
		strings.Join(e.VectorTables, ",") != "public.documents" || e.State != "in_tx_read_committed,wrote:collections" {
		t.Errorf("Explain = %+v", e)
	}
	e = Explain(c, "BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT 1 FROM documents", nil, rules, nil)
	if e.Lane != "primary" || e.Reason != "multi_statement_tx" || len(e.Parts) != 2 ||
		e.Parts[0].Tx == nil || e.Parts[0].Tx.Isolation != "serializable" || e.Parts[1].Lane != "vector" {
		t.Errorf("Explain multi = %+v", e)
	}
	e = Explain(c, "SELEC", nil, rules, nil)
	if e.Error == "" || e.Reason != "unparsed" {
		t.Errorf("Explain invalid = %+v", e)
	}
	b, err := json.Marshal(e)
	if err != nil || !strings.Contains(string(b), `"reads":[]`) || !strings.Contains(string(b), `"lane":"primary"`) {
		t.Errorf("JSON = %s, %v", b, err)
	}
}

// FuzzClassify checks that classification never panics and that its result
// is internally consistent. Seeds come from the golden files.
func FuzzClassify(f *testing.F) {
	for _, name := range []string{"classify.json", "route.json"} {
		var file struct {
			Cases []struct {
				SQL   string    `json:"sql"`
				Batch *[]string `json:"batch"`
			} `json:"cases"`
		}
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		if err := json.Unmarshal(b, &file); err != nil {
			f.Fatal(err)
		}
		for _, c := range file.Cases {
			f.Add(c.SQL)
			if c.Batch != nil {
				for _, q := range *c.Batch {
					f.Add(q)
				}
			}
		}
	}
	cat := NewCatalogSnapshot([]CatalogFunc{{Schema: "pg_catalog", Name: "count", Volatility: Immutable}})
	g := &generation{fr: funcRules{catalog: cat}}
	rules, _ := policy.NewRules(policy.RulesConfig{VectorTables: []string{"items", "public.documents"}})
	states := []string{"idle", "in_tx_read_committed", "in_tx_wrote:items", "failed", "temp:t"}
	f.Fuzz(func(t *testing.T, sql string) {
		// NOTE: classify, not classifySafe: a panic must fail the fuzzer.
		st, _ := g.classifyText(sql)
		if st.Class == policy.Unknown && st.Reason == "" {
			t.Fatalf("Unknown without reason for %q", sql)
		}
		if st.Class == policy.Read && (len(st.Writes) > 0 || st.Flags&(policy.FlagWritingFunction|policy.FlagWriteCommand|
			policy.FlagDataModifyingCTE|policy.FlagSelectInto|policy.FlagWritesUnknown|policy.FlagLocking) != 0) {
			t.Fatalf("Read with write evidence for %q: %+v", sql, st)
		}
		for _, spec := range states {
			s, _ := policy.ParseStateSpec(spec)
			d := policy.Decide(&s, st, rules, nil)
			if d.Lane == policy.Vector && (!st.IsPureRead() && !st.Flags.Has(policy.FlagMultiStatement) || s.Status == policy.TxFailed) {
				t.Fatalf("vector lane for %q in %s: %+v", sql, spec, st)
			}
			s.Apply(st)
			s.Ready(policy.TxInBlock)
		}
	})
}

func BenchmarkClassifyCold(b *testing.B) {
	g := NewClassifier(Config{}).cur.Load()
	b.ReportAllocs()
	for b.Loop() {
		g.classifyText(vectorQuery)
	}
}

func BenchmarkClassifyCached(b *testing.B) {
	c := NewClassifier(Config{})
	c.Classify(vectorQuery)
	b.ReportAllocs()
	for b.Loop() {
		c.Classify(vectorQuery)
	}
}

func BenchmarkClassifyCachedParallel(b *testing.B) {
	c := NewClassifier(Config{})
	c.Classify(vectorQuery)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Classify(vectorQuery)
		}
	})
}

func BenchmarkClassifyAndDecide(b *testing.B) {
	c := NewClassifier(Config{})
	rules, err := policy.NewRules(policy.RulesConfig{VectorTables: []string{"public.documents"}})
	if err != nil {
		b.Fatal(err)
	}
	st, _ := policy.ParseStateSpec("in_tx_wrote:orders")
	path := []string{"$user", "public"}
	c.Classify(vectorQuery)
	b.ReportAllocs()
	for b.Loop() {
		d := policy.Decide(&st, c.Classify(vectorQuery), rules, path)
		if d.Lane != policy.Vector {
			b.Fatal(d)
		}
	}
}
