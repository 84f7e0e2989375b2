package router

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/txlane/txlane/policy"
)

// lexFragments are the pieces random texts are made of: every character
// and prefix that starts, ends or continues a token in scan.l, and a few
// words.
var lexFragments = []string{
	"'", "''", "E'", "e'", "B'", "x'", "N'", "n'", "U&'", "u&\"", "U&", "\"", "\"\"",
	"$$", "$a$", "$b$", "$a", "$1", "$12", "a$", "--", "-", "/*", "*/", "/", "*",
	"\n", "\r", "\r\n", "\t", " ", "  ", "\f", "\\", "\\'", "\\\\",
	"+", "<", ">", "=", "!", "~", "@", "#", "%", "^", "&", "|", "`", "?",
	":", "::", ":=", ".", "..", ",", ";", "(", ")", "[", "]", "{",
	"0", "1", "42", "1.5", ".5", "1.", "1e5", "1e-3", "1E+2",
	"abc", "E", "U", "N", "B", "X", "e", "é", "_", "select", "from", "t", "nchar", "UESCAPE",
}

// randomText joins n random fragments.
func randomText(r *rand.Rand, n int) string {
	var b strings.Builder
	for range n {
		b.WriteString(lexFragments[r.Intn(len(lexFragments))])
	}
	return b.String()
}

// span is one token as both scanners are compared: a class and its bytes.
type span struct {
	class      string
	start, end int
}

func (s span) String() string { return fmt.Sprintf("%s[%d:%d]", s.class, s.start, s.end) }

// lexSpans scans sql with the lexer.
func lexSpans(sql string) (out []span, l *lexer) {
	l = newLexer(sql, false)
	for {
		t, ok := l.next()
		if !ok {
			return out, l
		}
		c := map[tokKind]string{tkComment: "comment", tkIdent: "ident", tkQuotedIdent: "qident",
			tkString: "string", tkNumber: "number", tkParam: "param", tkOp: "op", tkPunct: "punct"}[t.kind]
		if t.kind == tkString {
			c += "/" + strPlaceholder[t.str]
		}
		out = append(out, span{c, t.start, t.end})
	}
}

// pgSpans scans sql with PostgreSQL's scanner (pg_query's) and groups its
// tokens as the lexer does: an operator run is one span, N'...' is one
// string.
func pgSpans(sql string) ([]span, error) {
	res, err := pg.Scan(sql)
	if err != nil {
		return nil, err
	}
	var out []span
	toks := res.Tokens
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		s, e := int(t.Start), int(t.End)
		var c string
		switch t.Token {
		case pg.Token_SQL_COMMENT, pg.Token_C_COMMENT:
			c = "comment"
		case pg.Token_SCONST, pg.Token_USCONST, pg.Token_BCONST, pg.Token_XCONST:
			c = "string/" + strPrefix(sql[s:e])
		case pg.Token_IDENT, pg.Token_UIDENT:
			c = "ident"
			if sql[s] == '"' || t.Token == pg.Token_UIDENT {
				c = "qident"
			}
		case pg.Token_ICONST, pg.Token_FCONST:
			c = "number"
		case pg.Token_PARAM:
			c = "param"
		case pg.Token_Op, pg.Token_EQUALS_GREATER, pg.Token_LESS_EQUALS, pg.Token_GREATER_EQUALS,
			pg.Token_NOT_EQUALS:
			c = "op"
		case pg.Token_TYPECAST, pg.Token_DOT_DOT, pg.Token_COLON_EQUALS:
			c = "punct"
		default:
			switch {
			case t.Token == pg.Token_NCHAR && e-s == 1 && i+1 < len(toks) && toks[i+1].Start == t.End &&
				toks[i+1].Token == pg.Token_SCONST:
				i++
				e, c = int(toks[i].End), "string/N''"
			case t.KeywordKind != pg.KeywordKind_NO_KEYWORD:
				c = "ident"
			case e-s == 1 && isOpChar(sql[s]):
				c = "op"
			default:
				c = "punct"
			}
		}
		if c == "op" && len(out) > 0 && out[len(out)-1].class == "op" && out[len(out)-1].end == s {
			out[len(out)-1].end = e
			continue
		}
		out = append(out, span{c, s, e})
	}
	return out, nil
}

// strPrefix names a string constant's kind by how it starts, as
// strPlaceholder does.
func strPrefix(s string) string {
	switch {
	case strings.HasPrefix(s, "$"):
		return "''"
	case len(s) > 2 && (s[0] == 'u' || s[0] == 'U') && s[1] == '&':
		return "U&''"
	case s[0] == '\'':
		return "''"
	}
	return strings.ToUpper(s[:1]) + "''"
}

// TestLexMatchesPostgresScanner checks the lexer against PostgreSQL's own
// scanner on random texts: where PostgreSQL scans a text, the lexer scans it
// too, into tokens with the same boundaries (an operator run covering
// exactly the operators PostgreSQL splits it into); where PostgreSQL refuses
// a text without a backslash, the lexer refuses it or marks it as scanned
// differently by server versions.
func TestLexMatchesPostgresScanner(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	n := 20000
	if testing.Short() {
		n = 2000
	}
	compared := 0
	for i := range n {
		sql := randomText(r, 1+r.Intn(12))
		if i%3 == 0 {
			// Mostly well-formed: a statement around the fragments.
			sql = "SELECT " + sql + " FROM t"
		}
		compareWithPostgres(t, sql)
		compared++
	}
	t.Logf("%d texts", compared)
}

func compareWithPostgres(t *testing.T, sql string) {
	t.Helper()
	mine, l := lexSpans(sql)
	theirs, err := pgSpans(sql)
	switch {
	case err != nil && l.err == "" && !l.versionDependent && !strings.Contains(sql, "\\") &&
		!strings.Contains(err.Error(), "operator too long"):
		t.Errorf("%q: PostgreSQL refuses it (%v), the lexer scans it: %v", sql, err, mine)
	case err == nil && l.err != "" && !l.versionDependent:
		t.Errorf("%q: the lexer refuses it (%s), PostgreSQL scans it: %v", sql, l.err, theirs)
	case err == nil && l.err == "" && !l.versionDependent && !l.commentContinuation:
		if fmt.Sprint(mine) != fmt.Sprint(theirs) {
			t.Errorf("%q:\n  lexer:      %v\n  PostgreSQL: %v", sql, mine, theirs)
		}
	}
}

// FuzzLexMatchesPostgresScanner is TestLexMatchesPostgresScanner on fuzzed
// texts.
func FuzzLexMatchesPostgresScanner(f *testing.F) {
	for _, s := range []string{
		"SELECT 1 --\r; DELETE FROM t", "SELECT 'a'\n'b'", "SELECT 'a' -- c\n 'b'", "SELECT 'a' /* c */\n'b'",
		"SELECT B'01''10'", "SELECT E'\\'' ", "SELECT $a$ $b$ $a$", "SELECT 1 +/* c */- 2", "SELECT 1 *--c\n2",
		"SELECT N'x'", "SELECT U&'d\\0061t' UESCAPE '!'", `SELECT U&"a""b"`, "SELECT 1..2", "SELECT a$b$c",
		"SELECT $1::int", "SELECT /* /* */ */ 1", "SELECT 1 /**/", "SELECT 0x1F", "SELECT 1\v", "SELECT x'1f'",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		if strings.IndexByte(sql, 0) >= 0 {
			return // no query text holds a NUL; the C scanner stops there
		}
		compareWithPostgres(t, sql)
	})
}

// TestCommentContinuationIsUnknown checks the one place pg_query's scanner
// departs from the server's: a string continued across a -- comment (the
// server reads 'a' -- c<newline> 'b' as 'ab'). pg_query reads two adjacent
// constants, a syntax error, so the classification is Unknown (the primary
// lane, presumed to write): never less than the server runs.
func TestCommentContinuationIsUnknown(t *testing.T) {
	c := NewClassifier(Config{})
	for _, sql := range []string{
		"SELECT 'a' -- c\n 'b'",
		"SELECT 'a' --c\r'b' FROM t",
		"SELECT E'a' --c\n'\\'';DELETE FROM t;--'",
		"SELECT B'1' --c\n'0'';DELETE FROM t;--'",
	} {
		l := newLexer(sql, false)
		for _, ok := l.next(); ok; _, ok = l.next() {
		}
		if !l.commentContinuation {
			t.Errorf("%q: the lexer does not see a string continued across a comment", sql)
		}
		if st := c.Classify(sql); st.Class != policy.Unknown {
			t.Errorf("%q: classified %v, want Unknown (pg_query does not continue the string)", sql, st.Class)
		}
	}
}

// TestLexCases pins the rules the normalizer and the comment reader rely on.
func TestLexCases(t *testing.T) {
	for _, c := range []struct {
		sql     string
		backsl  bool
		want    string // the spans, or "error"
		version bool
	}{
		{sql: "SELECT 1 --\r; DELETE FROM t", want: "[ident[0:6] number[7:8] comment[9:11] punct[12:13] ident[14:20] ident[21:25] ident[26:27]]"},
		{sql: "a 'x'\r'y' b", want: "[ident[0:1] string/''[2:9] ident[10:11]]"},
		{sql: "a 'x' --c\r'y' b", want: "[ident[0:1] string/''[2:13] ident[14:15]]"},
		{sql: "a 'x' /*c*/\n'y' b", want: "[ident[0:1] string/''[2:5] comment[6:11] string/''[12:15] ident[16:17]]"},
		{sql: `'\' ; x`, want: `[string/''[0:3] punct[4:5] ident[6:7]]`},
		{sql: `'\' ; x`, backsl: true, want: "error"},
		{sql: `'\'' x`, backsl: true, want: `[string/E''[0:4] ident[5:6]]`},
		{sql: `E'\'' x`, want: `[string/E''[0:5] ident[6:7]]`},
		{sql: `U&'\' x`, backsl: true, want: "error"},
		{sql: "B'1''0'", want: "[string/B''[0:4] string/''[4:7]]"},
		{sql: "abE'x'", want: "[ident[0:3] string/''[3:6]]"},
		{sql: "+/*c*/-", want: "[op[0:1] comment[1:6] op[6:7]]"},
		{sql: "*--c\n/", want: "[op[0:1] comment[1:4] op[5:6]]"},
		{sql: "$a$ $b$ $a$ x", want: "[string/''[0:11] ident[12:13]]"},
		{sql: "$a x", want: "[punct[0:1] ident[1:2] ident[3:4]]"},
		{sql: "a$1", want: "[ident[0:3]]"},
		{sql: "1..2", want: "[number[0:1] punct[1:3] number[3:4]]"},
		{sql: "0x1F", want: "[number[0:1] ident[1:4]]", version: true},
		{sql: "$1a", want: "[param[0:2] ident[2:3]]", version: true},
		{sql: "1\v", want: "[number[0:1] punct[1:2]]", version: true},
		{sql: `"a""b" ""`, want: "error"},
		{sql: "/* /* */", want: "error"},
	} {
		l := newLexer(c.sql, c.backsl)
		var got []span
		for {
			tk, ok := l.next()
			if !ok {
				break
			}
			s, _ := lexSpans(c.sql[tk.start:tk.end])
			_ = s
			cl := map[tokKind]string{tkComment: "comment", tkIdent: "ident", tkQuotedIdent: "qident",
				tkString: "string", tkNumber: "number", tkParam: "param", tkOp: "op", tkPunct: "punct"}[tk.kind]
			if tk.kind == tkString {
				cl += "/" + strPlaceholder[tk.str]
			}
			got = append(got, span{cl, tk.start, tk.end})
		}
		g := fmt.Sprint(got)
		if l.err != "" {
			g = "error"
		}
		if g != c.want || l.versionDependent != c.version {
			t.Errorf("%q (backslash strings %v): got %s (version dependent %v), want %s (%v)", c.sql, c.backsl, g, l.versionDependent, c.want, c.version)
		}
	}
}
