package router

import (
	"strings"
	"unicode/utf8"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/txlane/txlane/policy"
)

// Texts that are not UTF-8.
//
// A client whose client_encoding is not UTF8 (LATIN1, WIN1252, GB18030, …)
// sends its texts in that encoding, and the server converts them before it
// parses them (PostgreSQL docs, "Character Set Support", 24.3.3). pg_query
// parses bytes as the server's scanner does, but its parse tree carries
// strings that must be UTF-8, so such a text does not parse at all; txlane
// would know nothing of it (not even that it SETs a setting, so that the
// setting would not move with the client, and would stay behind on the
// backend for the next client).
//
// txlane classifies such a text by its Latin-1 image instead: each byte of
// 0x80 or above becomes the character of that code point (two bytes of 0x80
// or above in UTF-8), and every ASCII byte stays. The scanner (scan.l) takes
// every byte of 0x80 or above for a letter, so the image has the same tokens
// as the text, as long as no character of the client's encoding has a byte
// below 0x80 that the scanner reads otherwise: in GB18030, GBK, BIG5 and SJIS
// a second byte may be 0x40 to 0x7E (a backslash, '[', '|', '{', …). Such a
// byte inside a string constant only ends it if it is a backslash
// (ambiguousEncoding already makes such a text opaque), and a quote is never
// a second byte.
//
// The image differs from the server's text in the characters themselves,
// so txlane takes from it only what does not depend on them: a text whose
// non-ASCII bytes are anywhere but inside string constants (an identifier, a
// quoted identifier, a comment, which may carry a unit of work), or whose
// description names a setting, a table, a function or a statement with
// them, or sets txlane.unit to them, is opaque (it may write anything and
// change the session; a custom setting it sets pins the client, see the
// proxy's hiddenCustoms). The values of other settings may be anything: what
// follows a client to another backend is read from the server, not from the
// text.

// reasonNotUTF8 is the reason of an opaque text that is not UTF-8.
const reasonNotUTF8 = "the text is not UTF-8 and has non-ASCII bytes outside string constants, or names something with them"

// classifyNotUTF8 classifies sql, a text that is not valid UTF-8, by its
// Latin-1 image (see above).
func (g *generation) classifyNotUTF8(sql string) (*policy.Statement, bool) {
	if !highBytesInStrings(sql) {
		return opaque(reasonNotUTF8), true
	}
	st, _ := g.classifyText(latin1Image(sql))
	if st.Class != policy.Unknown && namesNonASCII(st) {
		return opaque(reasonNotUTF8), true
	}
	return st, true
}

// highBytesInStrings reports whether every byte of 0x80 or above in sql lies
// inside a string constant (plain, E, N, U& or dollar-quoted), as the
// scanner reads the text (standard_conforming_strings on and off alike).
func highBytesInStrings(sql string) bool {
	for _, backslash := range []bool{false, true} {
		l := newLexer(sql, backslash)
		pos := 0
		for {
			tok, ok := l.next()
			if !ok {
				break
			}
			if hasHigh(sql[pos:tok.start]) || tok.kind != tkString && hasHigh(sql[tok.start:tok.end]) {
				return false
			}
			pos = tok.end
		}
		if l.err != "" || hasHigh(sql[pos:]) {
			return false
		}
	}
	return true
}

// hasHigh reports whether s has a byte of 0x80 or above.
func hasHigh(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return true
		}
	}
	return false
}

// latin1Image returns sql with each byte of 0x80 or above replaced by the
// UTF-8 encoding of the code point of that value.
func latin1Image(sql string) string {
	var b strings.Builder
	b.Grow(len(sql) + len(sql)/4)
	for i := 0; i < len(sql); i++ {
		if c := sql[i]; c < utf8.RuneSelf {
			b.WriteByte(c)
		} else {
			b.WriteRune(rune(c))
		}
	}
	return b.String()
}

// namesNonASCII reports whether st (or a part of it) names a table, a
// function, a setting, a prepared statement or a cursor with non-ASCII
// characters, or gives the unit of work a non-ASCII value.
func namesNonASCII(st *policy.Statement) bool {
	tables := func(ts []policy.Table) bool {
		for _, t := range ts {
			if hasHigh(t.Schema) || hasHigh(t.Name) {
				return true
			}
		}
		return false
	}
	if tables(st.Reads) || tables(st.Writes) || tables(st.WritesReached) || tables(st.ReadsReached) || tables(st.Temp) ||
		hasHigh(st.PrepareName) || hasHigh(st.CursorName) || st.Deallocate != nil && hasHigh(st.Deallocate.Name) {
		return true
	}
	for _, s := range st.Hidden {
		if hasHigh(s) {
			return true
		}
	}
	for _, s := range st.SetConfig {
		if hasHigh(s) {
			return true
		}
	}
	for _, s := range st.Settings {
		if hasHigh(s.Name) || strings.EqualFold(s.Name, unitSettingName) && hasHigh(s.Value) {
			return true
		}
	}
	for _, c := range st.ConfigCalls {
		if hasHigh(c.Name) || strings.EqualFold(c.Name, unitSettingName) && hasHigh(c.Value) {
			return true
		}
	}
	for i := range st.Parts {
		if namesNonASCII(&st.Parts[i]) {
			return true
		}
	}
	return false
}

// unitSettingName is the session setting that carries a unit of work.
const unitSettingName = "txlane.unit"

// preparedQueryNotUTF8 is PreparedQuery for a text that is not UTF-8: the
// PREPARE is found by its Latin-1 image, and the query is the text's own
// bytes after its AS (not a deparse of the image, which is UTF-8), so that
// classifying it applies the rules above.
func preparedQueryNotUTF8(text, name string) (query string, ok bool) {
	parts, err := pg.SplitWithParser(text, true)
	if err != nil {
		return "", false
	}
	for _, part := range parts {
		tree, err := pg.Parse(latin1Image(part))
		if err != nil || len(tree.Stmts) != 1 {
			continue
		}
		if ps := tree.Stmts[0].GetStmt().GetPrepareStmt(); ps != nil && ps.Name == name && ps.Query != nil {
			query, ok = prepareTail(part) // the last definition is the one in force
		}
	}
	return query, ok
}

// prepareTail returns what follows the AS of a PREPARE statement's text
// (PREPARE name [ ( type, ... ) ] AS query), without white space around it.
func prepareTail(part string) (string, bool) {
	l := newLexer(part, false)
	depth, n := 0, 0
	for {
		tok, ok := l.next()
		if !ok {
			return "", false
		}
		if tok.kind == tkComment {
			continue
		}
		s := part[tok.start:tok.end]
		switch {
		case tok.kind == tkPunct && s == "(":
			depth++
		case tok.kind == tkPunct && s == ")":
			depth--
		case depth == 0 && n >= 2 && tok.kind == tkIdent && strings.EqualFold(s, "AS"):
			return strings.TrimSpace(part[tok.end:]), true
		}
		n++
	}
}
