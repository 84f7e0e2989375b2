package router

import (
	"slices"
	"strings"
	"testing"

	"github.com/txlane/txlane/policy"
)

// normalize returns sql's normalized key (sharedKeys.build) and whether it
// has one worth using.
func normalize(sql string) (string, bool) {
	var k sharedKeys
	_, ok := k.build(sql)
	return string(k.norm), ok
}

// bareKey returns sql's bare key and whether it has one worth using.
func bareKey(sql string) (string, bool) {
	var k sharedKeys
	ok, _ := k.build(sql)
	return string(k.bare), ok
}

// traceparents are sqlcommenter comments as OpenTelemetry writes them, one
// trace per request, and other comments a statement may carry.
var traceparents = []string{
	" /*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/",
	" /*traceparent='00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'*/",
	"/*traceparent='00-ffffffffffffffffffffffffffffffff-0000000000000001-00',unit='req-7'*/",
	" -- traceparent='00-11111111111111111111111111111111-2222222222222222-01'\n",
	"\n/* /* nested */ unit='u9' */ ",
}

// TestBareKeyHasNoComments: the key a text is cached under besides its
// exact text is the same for every comment it may carry, and holds none of
// them. A key that kept a per-request comment would make every request a
// cache miss.
func TestBareKeyHasNoComments(t *testing.T) {
	for _, base := range []string{
		"SELECT abalance FROM pgbench_accounts WHERE aid = $1",
		"SELECT nextval('s')",
		"SET search_path = 'app'",
		"SELECT * FROM items ORDER BY embedding <-> '[1,2,3]' LIMIT 5",
	} {
		want, ok := bareKey(base + traceparents[0])
		if !ok {
			t.Fatalf("%q: no bare key", base+traceparents[0])
		}
		if strings.Contains(want, "traceparent") || strings.Contains(want, "/*") || strings.Contains(want, "--") {
			t.Errorf("%q: bare key %q holds the comment", base, want)
		}
		for _, c := range traceparents[1:] {
			for _, sql := range []string{base + c, c + base} {
				if got, ok := bareKey(sql); !ok || got != want {
					t.Errorf("bareKey(%q) = %q, %v; want %q", sql, got, ok, want)
				}
			}
		}
		// Without a comment the exact text is the key.
		if _, ok := bareKey(base); ok {
			t.Errorf("%q: a bare key without a comment", base)
		}
	}
}

// TestFreshCommentIsCacheHit: a text that differs from a cached one only in
// its comments is answered from the cache (the same entry), also when its
// description depends on a constant and so cannot be shared through the
// normalized key, and adds nothing to the cache. The units of work are
// still read from each text's own comments.
func TestFreshCommentIsCacheHit(t *testing.T) {
	rules, err := policy.NewRules(policy.RulesConfig{UnitCommentKeys: []string{"unit"}})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, base := range []string{
		"SELECT abalance FROM pgbench_accounts WHERE aid = $1",
		"SELECT abalance FROM pgbench_accounts WHERE aid = 42",
		"SELECT nextval('s')",
		"SET search_path = 'app'",
		"INSERT INTO t VALUES (1); SELECT current_setting('work_mem')",
	} {
		c := NewClassifier(Config{})
		first := c.Classify(base + traceparents[0])
		n := c.Len()
		for _, tp := range traceparents[1:] {
			sql := base + tp
			if got := c.Classify(sql); got != first {
				t.Errorf("%q: not the cached entry of %q", sql, base+traceparents[0])
			}
			if c.Len() != n {
				t.Errorf("%q: the cache grew from %d to %d entries", sql, n, c.Len())
			}
			e := Explain(c, sql, nil, rules, nil)
			want, _ := ExtractUnits(sql, UnitKeys{"unit"})
			if !slices.Equal(e.Units, want) {
				t.Errorf("%q: units %v, want %v (its own comments)", sql, e.Units, want)
			}
			seen[strings.Join(want, ",")] = true
		}
	}
	if len(seen) < 3 {
		t.Errorf("the comments carried only the units %v: the test exercises little", seen)
	}
}

// TestBareKeyKeepsStatementsApart: texts that differ in more than comments
// and white space never share an entry through their bare keys, even when
// a comment is what separates their tokens.
func TestBareKeyKeepsStatementsApart(t *testing.T) {
	for _, pair := range [][2]string{
		{"SELECT nextval('s1') /*x*/", "SELECT nextval('s2') /*x*/"},
		{"SET search_path = 'a' -- x\n", "SET search_path = 'b' -- x\n"},
		// An operator ends before a comment: +/**/- is two operators.
		{"SELECT 1 +/**/- 2", "SELECT 1 +- 2 /**/"},
		// A block comment does not continue a string; a newline does.
		{"SELECT 'a' /* c */\n'b' /**/", "SELECT 'a'\n'b' /**/"},
		// A -- comment ends at \r: what follows it is a statement.
		{"SELECT 1 --\r; DELETE FROM t", "SELECT 1 -- ; DELETE FROM t"},
	} {
		a, aok := bareKey(pair[0])
		b, bok := bareKey(pair[1])
		if aok && bok && a == b {
			t.Errorf("%q and %q share the bare key %q", pair[0], pair[1], a)
		}
		c := NewClassifier(Config{})
		if c.Classify(pair[0]) == c.Classify(pair[1]) {
			t.Errorf("%q and %q share a cache entry", pair[0], pair[1])
		}
	}
}

// BenchmarkClassifyFreshTraceparent classifies a statement that carries a
// traceparent fresh per request (a new trace-id each time, never seen
// before), as sqlcommenter integrations send it: each must be one cache hit
// through the bare or normalized key, not a parse (compare
// BenchmarkClassifyCold), and allocate nothing. nextval('s') depends on its
// constant, so only the bare key can serve it.
func BenchmarkClassifyFreshTraceparent(b *testing.B) {
	for _, bc := range []struct{ name, sql string }{
		{"param", "SELECT abalance FROM pgbench_accounts WHERE aid = $1"},
		{"literal", "SELECT abalance FROM pgbench_accounts WHERE aid = 42"},
		{"nextval", "SELECT nextval('s')"},
		{"vector", strings.TrimSuffix(vectorQuery, traceparents[0][1:])},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := NewClassifier(Config{})
			buf := []byte(bc.sql + " /*traceparent='00-00000000000000000000000000000000-00f067aa0ba902b7-01'*/")
			id := buf[len(bc.sql)+len(" /*traceparent='00-"):][:32]
			next := func(n uint64) {
				for i := len(id) - 1; i >= 0; i-- {
					id[i] = "0123456789abcdef"[n&15]
					n >>= 4
				}
			}
			next(1)
			first := c.ClassifyBytes(buf)
			entries := c.Len()
			b.ReportAllocs()
			var n uint64 = 1
			for b.Loop() {
				n++
				next(n)
				if c.ClassifyBytes(buf) != first {
					b.Fatal("not a cache hit")
				}
			}
			if c.Len() != entries {
				b.Fatalf("the cache grew from %d to %d entries: texts were parsed", entries, c.Len())
			}
		})
	}
}
