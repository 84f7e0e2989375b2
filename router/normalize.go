package router

import (
	"strings"

	"github.com/txlane/txlane/policy"
)

// normPrefix marks cache keys that are normalized texts, so that they never
// meet exact texts in the cache.
const normPrefix = "\x00"

// normalize returns the cache key that sql shares with every text that is
// the same statement but for its constants and comments, and whether there
// is one worth using (the text has a constant or a comment).
//
// The key is the text's tokens, as the server's scanner splits them (see
// lex.go), joined by single spaces, with each constant replaced by a
// placeholder of its kind (strPlaceholder, and 0 for numbers) and comments
// dropped. Identifiers, keywords, parameters and operators stay as written. So two texts share a key only if the server
// reads the same tokens from both but for the values of constants: the key,
// scanned again, gives back exactly those tokens (a space never joins or
// splits them, and no placeholder continues a string). Invariant: a cache hit
// through a key never returns another text's classification unless both are
// that same statement.
//
// normalize refuses (returns false) a text it cannot prove that of:
//   - one that does not scan (unterminated string, comment, identifier);
//   - one holding a backslash anywhere: how the server reads it may depend
//     on standard_conforming_strings and, after a non-ASCII byte, on the
//     client encoding (see lexing.go), which differ between sessions;
//   - one that server versions scan differently (lexer.versionDependent);
//   - one with a string continued across a -- comment, which pg_query reads
//     as two constants (lexer.commentContinuation): its classification
//     (Unknown) is not that of the texts the key stands for;
//   - one holding a NUL byte (no query text can; the parser would stop there).
//
// The result is a cache key only: it need not parse.
func normalize(sql string) (string, bool) {
	if strings.IndexByte(sql, '\\') >= 0 || strings.IndexByte(sql, 0) >= 0 {
		return "", false
	}
	l := newLexer(sql, false)
	var b strings.Builder
	b.Grow(len(sql) + 1)
	b.WriteString(normPrefix)
	changed := false
	first := true
	for {
		t, ok := l.next()
		if !ok {
			break
		}
		if t.kind == tkComment {
			changed = true
			continue
		}
		if !first {
			b.WriteByte(' ')
		}
		first = false
		switch t.kind {
		case tkString:
			changed = true
			b.WriteString(strPlaceholder[t.str])
		case tkNumber:
			changed = true
			b.WriteByte('0')
		default:
			b.WriteString(sql[t.start:t.end])
		}
	}
	if l.err != "" || l.versionDependent || l.commentContinuation || !changed {
		return "", false
	}
	return b.String(), true
}

// strPlaceholder is what a string constant of each kind becomes in a key.
// Dollar-quoted strings are the same constant as plain ones.
var strPlaceholder = [...]string{
	strPlain:  "''",
	strE:      "E''",
	strN:      "N''",
	strB:      "B''",
	strX:      "X''",
	strU:      "U&''",
	strDollar: "''",
}

// constantFree reports whether st can describe every text that normalizes
// like the one it was made from: nothing in it came from a constant. SET
// values, sequence names in nextval('s'), prepared-statement names and
// transaction-control options can; statements with them are cached under
// their exact text only. (What the walker read from a constant besides,
// such as the setting current_setting('x') names, it reports itself:
// walker.constDependent.)
func constantFree(st *policy.Statement) bool {
	switch st.Class {
	case policy.Session, policy.TxControl, policy.Unknown:
		return false
	}
	if len(st.Settings) > 0 || st.Deallocate != nil || st.PrepareName != "" ||
		st.Flags&(policy.FlagWritingFunction|policy.FlagMayChangeSession|policy.FlagCopy) != 0 {
		return false
	}
	for i := range st.Parts {
		if !constantFree(&st.Parts[i]) {
			return false
		}
	}
	return true
}
