package router

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	same := [][]string{
		{"SELECT * FROM t WHERE id = 1", "SELECT * FROM t WHERE id = 42", "SELECT * FROM t WHERE id = 3.5e10"},
		{"SELECT 'a' FROM t", "SELECT 'b''c' FROM t", "SELECT $$x$$ FROM t", "SELECT $q$x$q$ FROM t", "SELECT 'a'\n'b' FROM t"},
		{"SELECT * FROM items ORDER BY embedding <-> '[1,2,3]' LIMIT 5", "SELECT * FROM items ORDER BY embedding <-> '[4,5,6]' LIMIT 10"},
		{"SELECT 1 /*unit='a'*/", "SELECT 2 /*traceparent='00-x'*/", "SELECT 3 -- note\n", "SELECT 4 -- note\r", "SELECT /* /* nested */ */ 5"},
		{"SELECT a+-b, 1", "SELECT a+-b, /**/ 2"},
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
		// A -- comment ends at \r as well as \n (scan.l: non_newline [^\n\r]).
		{"SELECT 1 -- x", "SELECT 1 --\r; DELETE FROM t"},
		{"SELECT 1 -- x\n", "SELECT 1 -- x\r; DELETE FROM t --\n"},
		// An operator ends before -- and /*: the comment is not part of it.
		{"SELECT 1 +-- x\n 2", "SELECT 1 + -- x\n- 2"},
		// A continued string is one constant; two strings are two.
		{"SELECT 'a'\n'b' FROM t", "SELECT 'a' 'b' FROM t"},
		{"SELECT 'a' /* c */\n'b' FROM t", "SELECT 'a'\n'b' FROM t"},
		// B'' ends at its first quote: B'1''x' is B'1' then 'x'.
		{"SELECT B'1''0'", "SELECT B'10'"},
		// The kind of a constant is kept.
		{"SELECT B'1'", "SELECT X'1'"},
		{"SELECT E'x'", "SELECT U&'x'"},
		{"SELECT 1 FROM t", "SELECT '1' FROM t"},
		// A prefix belongs to the identifier it ends: abE'x' is abE then 'x'.
		{"SELECT abE'x'", "SELECT ab E'x'"},
		// A dollar quote ends at its own tag only.
		{"SELECT $a$ $b$ $a$, 1", "SELECT $a$ $b$ $a$, 1 $b$"},
	}
	for _, d := range different {
		a, aok := normalize(d[0])
		b, bok := normalize(d[1])
		if aok && bok && a == b {
			t.Errorf("%q and %q normalize alike: %q", d[0], d[1], a)
		}
	}
	for _, sql := range []string{
		"SELECT * FROM t WHERE id = $1", // nothing to replace
		`SELECT '\' AS a, ' ; x' AS b`,  // a backslash: standard_conforming_strings decides
		`SELECT E'\\' FROM t`,           // a backslash: the client encoding may decide
		"SELECT 'unterminated",          // does not scan
		"SELECT 1 /* unterminated",      // does not scan
		"SELECT 0x1F, 1 FROM t",         // PostgreSQL 15 and 16 scan it differently
		"SELECT 1_000 FROM t",           // likewise
		"SELECT $1abc, 1 FROM t",        // likewise
		"SELECT 1\v, 2 FROM t",          // likewise (\v is white space from 16 on)
		"SELECT 'a\x00' FROM t",         // no query text holds a NUL
		`SELECT "" , 1 FROM t`,          // zero-length identifier: the server refuses it
		"SELECT 'a' --c\r'b' FROM t",    // one string to the server, two to pg_query
	} {
		if k, ok := normalize(sql); ok {
			t.Errorf("normalize(%q) = %q, want no key", sql, k)
		}
	}
}

// TestNormalizedKeyRescansToItsTokens checks the argument for the key's
// soundness on every text TestNormalize and the corpus below use: the key,
// scanned again, gives exactly the text's tokens with constants replaced by
// placeholders and comments dropped, so two texts with one key have the same
// tokens.
func TestNormalizedKeyRescansToItsTokens(t *testing.T) {
	for _, sql := range normCorpus() {
		key, ok := normalize(sql)
		if !ok {
			continue
		}
		want := abstractTokens(sql)
		got := abstractTokens(key[len(normPrefix):])
		if got != want {
			t.Errorf("%q: key %q scans to %s, the text to %s", sql, key, got, want)
		}
	}
}

// abstractTokens lists sql's tokens, constants as their kind, comments left
// out.
func abstractTokens(sql string) string {
	l := newLexer(sql, false)
	var out []string
	for {
		tk, ok := l.next()
		if !ok {
			break
		}
		switch tk.kind {
		case tkComment:
		case tkString:
			out = append(out, "str:"+strPlaceholder[tk.str])
		case tkNumber:
			out = append(out, "num")
		default:
			out = append(out, fmt.Sprintf("%d:%s", tk.kind, sql[tk.start:tk.end]))
		}
	}
	if l.err != "" {
		out = append(out, "error:"+l.err)
	}
	return strings.Join(out, " ")
}

// Fillers of the statement templates of normCorpus: constants and comments
// (with the texts adversaries hide in them).
var (
	normConstants = []string{
		"1", "42", "1.5", ".5", "1e3", "'x'", "'a''b'", "''", "$$x$$", "$q$ ; DELETE FROM t; $q$", "E'x'", "e'y'",
		"B'01'", "X'ff'", "N'x'", "U&'x'", "'a'\n'b'", "'a' --c\r'b'", "'--'", "'/*'", "'; DELETE FROM t; --'",
		"'a'\r'; DELETE FROM t; --'", "$a$ $b$ $a$",
	}
	normComments = []string{
		"", " ", "\n", "/* c */", "/* /* n */ */", "-- c\n", "-- x\r", "--\r; DELETE FROM t; --\n",
		"/*unit='u1'*/", "/*/**/*/", "--\r\n", "/* -- */", "-- /* \n", "\r", "--\r", "-- '\n",
	}
	normTemplates = []string{
		"SELECT{k} {c}{k} FROM{k} t{k} WHERE{k} a{k} ={k} {c}{k}",
		"SELECT {c}{k}, {c}{k}",
		"INSERT INTO t VALUES ({c}){k}",
		"DELETE FROM t WHERE id = {c}{k}",
		"UPDATE t SET a = {c}{k} WHERE b = {c}",
		"SELECT * FROM items{k} ORDER BY embedding <->{k} {c} LIMIT {c}{k}",
		"{k}SELECT{k} {c}{k};{k} SELECT {c}{k}",
		"SELECT a{k}+{k}-{k}{c} FROM t",
		"EXPLAIN (ANALYZE {c}) INSERT INTO t VALUES (1)",
		"SELECT current_setting({c}) FROM items",
		"SELECT nextval({c}){k}",
		"SET x = {c}{k}",
		"SELECT {c}::regclass{k}",
	}
)

// fill makes a text of template with random fillers.
func fill(r *rand.Rand, template string) string {
	var b strings.Builder
	for i := 0; i < len(template); i++ {
		switch {
		case strings.HasPrefix(template[i:], "{c}"):
			b.WriteString(normConstants[r.Intn(len(normConstants))])
			i += 2
		case strings.HasPrefix(template[i:], "{k}"):
			b.WriteString(normComments[r.Intn(len(normComments))])
			i += 2
		default:
			b.WriteByte(template[i])
		}
	}
	return b.String()
}

// normCorpus is a deterministic set of filled templates.
func normCorpus() []string {
	r := rand.New(rand.NewSource(7))
	var out []string
	for range 3000 {
		out = append(out, fill(r, normTemplates[r.Intn(len(normTemplates))]))
	}
	return out
}

// cacheHitIsSameStatement checks the cache's invariant on a pair of texts:
// after a classifies, b's classification (which may come from a's entry)
// is the one a fresh classifier gives b.
func cacheHitIsSameStatement(t *testing.T, a, b string) {
	t.Helper()
	c := NewClassifier(Config{})
	c.Classify(a)
	got := c.Classify(b)
	want := NewClassifier(Config{}).Classify(b)
	if !sameStatement(got, want) {
		na, _ := normalize(a)
		t.Errorf("after %q (key %q), %q is classified\n  %s %s %v reads %v writes %v\nfresh:\n  %s %s %v reads %v writes %v",
			a, na, b, got.Class, got.Command, got.Flags.Names(), got.Reads, got.Writes,
			want.Class, want.Command, want.Flags.Names(), want.Reads, want.Writes)
	}
}

// TestCacheHitIsSameStatement is the differential test of the shared cache
// keys (bare and normalized): for pairs of texts made from one template with random constants and
// comments (some hiding statements behind a carriage return), a text
// classified after the other gets what a fresh classifier gives it. Pairs
// whose keys differ pass trivially; the test counts those that share one.
func TestCacheHitIsSameStatement(t *testing.T) {
	r := rand.New(rand.NewSource(11))
	shared := 0
	for range 4000 {
		tpl := normTemplates[r.Intn(len(normTemplates))]
		a, b := fill(r, tpl), fill(r, tpl)
		ka, oka := normalize(a)
		kb, okb := normalize(b)
		ba, boka := bareKey(a)
		bb, bokb := bareKey(b)
		if oka && okb && ka == kb || boka && bokb && ba == bb {
			shared++
		}
		cacheHitIsSameStatement(t, a, b)
	}
	if shared < 500 {
		t.Errorf("only %d pairs share a key: the test exercises little", shared)
	}
	t.Logf("%d pairs shared a key", shared)
}

// FuzzCacheHitIsSameStatement is TestCacheHitIsSameStatement on fuzzed pairs.
func FuzzCacheHitIsSameStatement(f *testing.F) {
	for _, p := range [][2]string{
		{"/*unit='u1'*/ SELECT 1 -- x", "/*unit='u1'*/ SELECT 1 --\r; INSERT INTO t VALUES (1)"},
		{"SELECT 1 -- a comment", "SELECT 1 --\r; DELETE FROM t"},
		{"SELECT 'x' AS a, 'y' AS b", `SELECT '\' AS a, ' ; INSERT INTO t VALUES (1); --' AS b`},
		{"EXPLAIN (ANALYZE 0) INSERT INTO t VALUES (1)", "EXPLAIN (ANALYZE 1) INSERT INTO t VALUES (1)"},
		{"SELECT current_setting('search_path') FROM items", "SELECT current_setting('work_mem') FROM items"},
		{"SELECT 1 +-- c\n 2", "SELECT 1 + -- c\n- 2"},
		{"SELECT 0 x1F FROM t", "SELECT 0x1F FROM t"},
	} {
		f.Add(p[0], p[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if strings.IndexByte(a, 0) >= 0 || strings.IndexByte(b, 0) >= 0 {
			return
		}
		cacheHitIsSameStatement(t, a, b)
	})
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
	for _, s := range []string{"SELECT 1", "SELECT 'a' /* c */", "$$x$$", "$1", "1e", "'", "/*", "--", "SELECT 1 --\r; x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		key, ok := normalize(sql)
		if !ok {
			return
		}
		// The key scans to the text's tokens (TestNormalizedKeyRescansToItsTokens).
		if got, want := abstractTokens(key[len(normPrefix):]), abstractTokens(sql); got != want {
			t.Fatalf("%q: key %q scans to %s, the text to %s", sql, key, got, want)
		}
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
