package router

import "strings"

// A scanner for PostgreSQL SQL text, after the server's own (src/backend/
// parser/scan.l): it finds where comments, string constants, quoted
// identifiers, numbers and operators begin and end, exactly where the server
// does. The normalizer (cache keys) and the unit-of-work comment reader rely
// on it. What it cannot scan as the server would, it reports (lexer.err,
// versionDependent, commentContinuation), and the normalizer then gives the
// text no shared key. TestLexMatchesPostgresScanner compares it with
// PostgreSQL's scanner (pg_query's) on random texts.
//
// Rules it follows, each as scan.l states it:
//
//   - white space is [ \t\n\r\f]; a -- comment runs to the next newline, and
//     a newline is \n or \r (scan.l: newline [\n\r], non_newline [^\n\r]);
//   - /* comments nest; an operator ends before -- or /* inside it;
//   - 'strings' double a quote to embed it; with standard_conforming_strings
//     off a backslash escapes the next byte in them too, as it always does in
//     E'...' strings; B'...' and X'...' end at the first quote; a string
//     continues after a closing quote when only white space and -- comments
//     with at least one newline separate it from the next opening quote;
//   - a prefix (E, B, X, N, U&) counts only at the start of a token: in
//     abcE'x' the E belongs to the identifier;
//   - $tag$ ... $tag$ strings end at the first identical tag; a tag is an
//     identifier without '$'; $1 is a parameter;
//   - "identifiers" double a quote to embed it; U&"..." likewise.
//
// Where the server versions txlane supports (PostgreSQL 15 and later) lex
// the same text differently, the scanner marks the text (versionDependent):
// a number or parameter followed directly by a letter (PostgreSQL 16 reads
// 0x1F, 1_000 and 1e as one token or an error, 15 as two tokens), and \v
// (white space from 16 on, an invalid character before).

// tokKind is what a token is.
type tokKind uint8

const (
	tkComment     tokKind = iota // -- ... or /* ... */
	tkIdent                      // identifier or keyword
	tkQuotedIdent                // "..." or U&"..."
	tkString                     // a string constant of any kind (strKind)
	tkNumber                     // integer, decimal or real
	tkParam                      // $n
	tkOp                         // a run of operator characters
	tkPunct                      // one of ,()[];:. :: := .. or any other byte
)

// strKind is the kind of a string constant.
type strKind uint8

const (
	strPlain  strKind = iota // '...'
	strE                     // E'...'
	strN                     // N'...' (NCHAR '...')
	strB                     // B'...'
	strX                     // X'...'
	strU                     // U&'...'
	strDollar                // $tag$...$tag$
)

// token is one token of a text: sql[start:end].
type token struct {
	kind       tokKind
	str        strKind // for tkString
	start, end int
	block      bool // for tkComment: a /* */ comment
}

// lexer scans a text into tokens. Create it with newLexer; call next until
// it returns false, then look at err.
type lexer struct {
	sql string
	pos int
	// backslashStrings: standard_conforming_strings is off, so a backslash
	// escapes in plain '...' and N'...' strings too.
	backslashStrings bool

	// err, when set, says why the text does not scan (an unterminated
	// string, quoted identifier or comment, ...): the server refuses it as a
	// whole. Scanning stops there.
	err string
	// plainBackslash: a plain or N string holds a backslash, so the text
	// scans differently with standard_conforming_strings off (only then).
	plainBackslash bool
	// versionDependent: the text has something server versions scan
	// differently (see above).
	versionDependent bool
	// commentContinuation: a string continues across a -- comment, as the
	// server reads it. pg_query's scanner (which returns comments as tokens)
	// does not continue it, so to pg_query the text is two adjacent string
	// constants, a syntax error: such texts are classified Unknown.
	commentContinuation bool
}

func newLexer(sql string, backslashStrings bool) *lexer {
	return &lexer{sql: sql, backslashStrings: backslashStrings}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' }

func isNewline(c byte) bool { return c == '\n' || c == '\r' }

// isIdentStart is scan.l's ident_start (and dolq_start).
func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

// isIdentChar is scan.l's dolq_cont: ident_cont without '$'.
func isIdentChar(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isOpChar is scan.l's op_chars.
func isOpChar(c byte) bool {
	switch c {
	case '~', '!', '@', '#', '^', '&', '|', '`', '?', '+', '-', '*', '/', '%', '<', '>', '=':
		return true
	}
	return false
}

// at reports whether the text at i starts with s.
func (l *lexer) at(i int, s string) bool {
	return len(l.sql)-i >= len(s) && l.sql[i:i+len(s)] == s
}

// next returns the next token, or false at the end of the text or at an
// error (err).
func (l *lexer) next() (token, bool) {
	sql := l.sql
	for l.pos < len(sql) && isSpace(sql[l.pos]) {
		l.pos++
	}
	if l.pos >= len(sql) || l.err != "" {
		return token{}, false
	}
	start := l.pos
	c := sql[start]
	tok := func(k tokKind, end int) (token, bool) {
		l.pos = end
		return token{kind: k, start: start, end: end}, true
	}
	str := func(k strKind, body int) (token, bool) {
		end := l.stringEnd(k, body)
		if l.err != "" {
			return token{}, false
		}
		l.pos = end
		return token{kind: tkString, str: k, start: start, end: end}, true
	}
	switch {
	case l.at(start, "--"):
		end := start + 2
		for end < len(sql) && !isNewline(sql[end]) {
			end++
		}
		return tok(tkComment, end)
	case l.at(start, "/*"):
		end := skipComment(sql, start)
		if end > len(sql) {
			l.err = "unterminated /* comment"
			return token{}, false
		}
		t, ok := tok(tkComment, end)
		t.block = true
		return t, ok
	case c == '\'':
		if l.backslashStrings {
			return str(strE, start+1)
		}
		return str(strPlain, start+1)
	case c == '"':
		return l.quotedIdent(start, start+1)
	case c == '$':
		return l.dollar(start)
	case (c == 'u' || c == 'U') && l.at(start+1, "&'"):
		if l.backslashStrings {
			// scan.l: "unsafe use of string constant with Unicode escapes".
			l.err = "U&'' with standard_conforming_strings off"
			return token{}, false
		}
		return str(strU, start+3)
	case (c == 'u' || c == 'U') && l.at(start+1, `&"`):
		return l.quotedIdent(start, start+3)
	case (c == 'e' || c == 'E') && l.at(start+1, "'"):
		return str(strE, start+2)
	case (c == 'b' || c == 'B') && l.at(start+1, "'"):
		return str(strB, start+2)
	case (c == 'x' || c == 'X') && l.at(start+1, "'"):
		return str(strX, start+2)
	case (c == 'n' || c == 'N') && l.at(start+1, "'"):
		if l.backslashStrings {
			return str(strE, start+2) // NCHAR, then an escaped string
		}
		return str(strN, start+2)
	case isIdentStart(c):
		end := start + 1
		for end < len(sql) && (isIdentChar(sql[end]) || sql[end] == '$') {
			end++
		}
		return tok(tkIdent, end)
	case isDigit(c) || c == '.' && start+1 < len(sql) && isDigit(sql[start+1]):
		return tok(tkNumber, l.number(start))
	case isOpChar(c):
		end := start
		for end < len(sql) && isOpChar(sql[end]) && !l.at(end, "--") && !l.at(end, "/*") {
			end++
		}
		return tok(tkOp, end)
	case l.at(start, "::"), l.at(start, ":="), l.at(start, ".."):
		return tok(tkPunct, start+2)
	}
	if c == '\v' {
		l.versionDependent = true
	}
	return tok(tkPunct, start+1)
}

// stringEnd returns the end of the string constant of kind k whose body
// starts at i (after the opening quote), continuation included.
func (l *lexer) stringEnd(k strKind, i int) int {
	sql := l.sql
	for {
		closed := false
		for i < len(sql) {
			c := sql[i]
			if c == '\\' {
				switch k {
				case strE:
					i += 2 // the escaped byte, whatever it is
					continue
				case strPlain, strN:
					l.plainBackslash = true
				}
			}
			if c == '\'' {
				if k != strB && k != strX && i+1 < len(sql) && sql[i+1] == '\'' {
					i += 2 // a doubled quote
					continue
				}
				i++
				closed = true
				break
			}
			i++
		}
		if !closed {
			l.err = "unterminated quoted string"
			return len(sql)
		}
		next, ok := l.continuation(i)
		if !ok {
			return i
		}
		i = next
	}
}

// continuation reports whether a string closed just before i continues
// (scan.l: quotecontinue, {whitespace_with_newline}{quote}), and where its
// body resumes.
func (l *lexer) continuation(i int) (int, bool) {
	sql := l.sql
	newline, comment := false, false
	for i < len(sql) {
		c := sql[i]
		switch {
		case isNewline(c):
			newline = true
			i++
		case c == ' ' || c == '\t' || c == '\f':
			i++
		case l.at(i, "--"):
			comment = true
			for i < len(sql) && !isNewline(sql[i]) {
				i++
			}
		case c == '\'' && newline:
			l.commentContinuation = l.commentContinuation || comment
			return i + 1, true
		default:
			return 0, false
		}
	}
	return 0, false
}

// quotedIdent scans "..." (or U&"...") whose body starts at i.
func (l *lexer) quotedIdent(start, i int) (token, bool) {
	sql := l.sql
	body := i
	for i < len(sql) {
		if sql[i] == '"' {
			if i+1 < len(sql) && sql[i+1] == '"' {
				i += 2
				continue
			}
			if i == body {
				l.err = "zero-length delimited identifier"
				return token{}, false
			}
			l.pos = i + 1
			return token{kind: tkQuotedIdent, start: start, end: i + 1}, true
		}
		i++
	}
	l.err = "unterminated quoted identifier"
	return token{}, false
}

// dollar scans what starts with '$': a parameter, a dollar-quoted string or
// a lone '$'.
func (l *lexer) dollar(start int) (token, bool) {
	sql := l.sql
	j := start + 1
	if j < len(sql) && isDigit(sql[j]) {
		for j < len(sql) && isDigit(sql[j]) {
			j++
		}
		if j < len(sql) && (isIdentChar(sql[j]) || sql[j] == '$') {
			l.versionDependent = true // PostgreSQL 16 on: "trailing junk"
		}
		l.pos = j
		return token{kind: tkParam, start: start, end: j}, true
	}
	if j < len(sql) && isIdentStart(sql[j]) {
		for j < len(sql) && isIdentChar(sql[j]) {
			j++
		}
	}
	if j >= len(sql) || sql[j] != '$' {
		// scan.l: dolqfailed, or a '$' alone: the '$' is a token of its own.
		l.pos = start + 1
		return token{kind: tkPunct, start: start, end: start + 1}, true
	}
	tag := sql[start : j+1]
	end := indexFrom(sql, tag, j+1)
	if end < 0 {
		l.err = "unterminated dollar-quoted string"
		return token{}, false
	}
	l.pos = end + len(tag)
	return token{kind: tkString, str: strDollar, start: start, end: l.pos}, true
}

func indexFrom(s, sub string, from int) int {
	if i := strings.Index(s[from:], sub); i >= 0 {
		return from + i
	}
	return -1
}

// number returns the end of the number starting at i: digits, an optional
// fraction, an optional exponent (scan.l: integer, decimal, real; "1..2" is
// 1 followed by "..").
func (l *lexer) number(i int) int {
	sql := l.sql
	for i < len(sql) && isDigit(sql[i]) {
		i++
	}
	if i < len(sql) && sql[i] == '.' && !l.at(i, "..") {
		i++
		for i < len(sql) && isDigit(sql[i]) {
			i++
		}
	}
	if i < len(sql) && (sql[i] == 'e' || sql[i] == 'E') {
		j := i + 1
		if j < len(sql) && (sql[j] == '+' || sql[j] == '-') {
			j++
		}
		if j < len(sql) && isDigit(sql[j]) {
			for j < len(sql) && isDigit(sql[j]) {
				j++
			}
			i = j
		}
	}
	if i < len(sql) && (isIdentStart(sql[i]) || sql[i] == '$') {
		// 0x1F, 1_000, 1e, 1abc: one token (or an error) from PostgreSQL 16
		// on, a number and an identifier before.
		l.versionDependent = true
	}
	return i
}

// skipComment returns the index after the (possibly nested) block comment
// opening at i, or len(sql)+1 if it is not terminated.
func skipComment(sql string, i int) int {
	depth := 0
	for j := i; j+1 < len(sql); j++ {
		switch {
		case sql[j] == '/' && sql[j+1] == '*':
			depth++
			j++
		case sql[j] == '*' && sql[j+1] == '/':
			depth--
			j++
			if depth == 0 {
				return j + 1
			}
		}
	}
	return len(sql) + 1
}
