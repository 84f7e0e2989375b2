package router

import (
	"testing"
)

func TestNormalize(t *testing.T) {
	same := [][]string{
		{"SELECT * FROM t WHERE id = 1", "SELECT * FROM t WHERE id = 42", "SELECT * FROM t WHERE id = 3.5e10"},
		{"SELECT 'a' FROM t", "SELECT 'b''c' FROM t", "SELECT $$x$$ FROM t", "SELECT $q$x$q$ FROM t"},
		{"SELECT * FROM items ORDER BY embedding <-> '[1,2,3]' LIMIT 5", "SELECT * FROM items ORDER BY embedding <-> '[4,5,6]' LIMIT 10"},
		{"SELECT 1 /*unit='a'*/", "SELECT 2 /*traceparent='00-x'*/", "SELECT 3 -- note\n"},
	}
	for _, group := range same {
		first, ok := normalize(group[0])
		if !ok {
			t.Fatalf("%q: not normalized", group[0])
		}
		for _, sql := range group[1:] {
			if got, _ := normalize(sql); got != first {
				t.Errorf("normalize(%q) = %q, want %q (as %q)", sql, got, first, group[0])
			}
		}
	}
	different := [][2]string{
		{"SELECT * FROM t1", "SELECT * FROM t2"},
		{"SELECT $1 FROM t", "SELECT $2 FROM t"},
		{`SELECT "a1" FROM t WHERE x = 1`, `SELECT "a2" FROM t WHERE x = 1`},
		{"SELECT a$1 FROM t WHERE x = 1", "SELECT a$2 FROM t WHERE x = 1"},
	}
	for _, d := range different {
		a, _ := normalize(d[0])
		b, _ := normalize(d[1])
		if a == b && a != "" {
			t.Errorf("%q and %q normalize alike: %q", d[0], d[1], a)
		}
	}
	if _, ok := normalize("SELECT * FROM t WHERE id = $1"); ok {
		t.Error("a text without constants was changed")
	}
}

// TestNormalizedCacheKeepsConstantsApart checks that statements whose
// description depends on a constant are not shared through normalization.
func TestNormalizedCacheKeepsConstantsApart(t *testing.T) {
	c := NewClassifier(Config{})
	for _, pair := range [][2]string{
		{"SET search_path = 'a'", "SET search_path = 'b'"},
		{"SET txlane.unit = 'u1'", "SET txlane.unit = 'u2'"},
		{"SELECT nextval('s1')", "SELECT nextval('s2')"},
	} {
		a, b := c.Classify(pair[0]), c.Classify(pair[1])
		if a == b {
			t.Errorf("%q and %q share a cache entry", pair[0], pair[1])
		}
	}
	a := c.Classify("SELECT * FROM items WHERE id = 1 /*unit='x'*/")
	b := c.Classify("SELECT * FROM items WHERE id = 2 /*unit='y'*/")
	if a != b {
		t.Error("texts differing in constants and comments do not share an entry")
	}
	if len(a.Reads) != 1 || a.Reads[0].Name != "items" {
		t.Errorf("reads %v", a.Reads)
	}
	if c.Classify("SET txlane.unit = 'u2'").Settings[0].Value != "u2" {
		t.Error("a SET value came from another text")
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"SELECT 1", "SELECT 'a' /* c */", "$$x$$", "$1", "1e", "'", "/*", "--"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		normalize(sql)
	})
}

func BenchmarkClassifyLiteralVariants(b *testing.B) {
	c := NewClassifier(Config{})
	sqls := make([]string, 1000)
	for i := range sqls {
		sqls[i] = "SELECT abalance FROM pgbench_accounts WHERE aid = " + itoa(i*7919%100000)
	}
	c.Classify(sqls[0])
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.Classify(sqls[i%len(sqls)])
		i++
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var buf [20]byte
	n := len(buf)
	for i > 0 {
		n--
		buf[n] = byte('0' + i%10)
		i /= 10
	}
	return string(buf[n:])
}
