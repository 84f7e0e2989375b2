package router

import (
	"strings"
	"sync"

	"github.com/txlane/txlane/policy"
)

// Prefixes of the cache keys that are not exact texts, so that the three
// kinds of key never meet in the cache.
const (
	// bareKeyPrefix marks a text's key without its comments (bare key).
	bareKeyPrefix = "\x01"
	// normPrefix marks a text's key without its comments and constants
	// (normalized key).
	normPrefix = "\x00"
)

// sharedKeys holds the two cache keys a text shares with other texts, built
// by build into buffers reused across calls (keyBufs), so that looking a
// text up by them allocates nothing.
//
// The bare key is the text's tokens, as the server's scanner splits them
// (see lex.go), joined by single spaces, comments dropped. Every text with
// the same tokens has it, whatever its comments and white space: a
// per-request comment (a sqlcommenter traceparent) does not defeat the
// cache. It stands for texts that are the same statement to the server, so
// every classification may be shared through it.
//
// The normalized key is the bare key with each constant replaced by a
// placeholder of its kind (strPlaceholder, and 0 for numbers). Identifiers,
// keywords, parameters and operators stay as written. Only classifications
// that owe nothing to a constant are shared through it (constantFree).
//
// Both keys, scanned again, give back exactly the text's tokens (a space
// never joins or splits them, and no placeholder continues a string), so two
// texts share a key only if the server reads the same tokens from both (but
// for the values of constants, for the normalized key). Invariant: a cache
// hit through a key never returns another text's classification unless both
// are that same statement.
//
// build gives a text no shared key when it cannot prove that of it:
//   - one that does not scan (unterminated string, comment, identifier);
//   - one holding a backslash anywhere: how the server reads it may depend
//     on standard_conforming_strings and, after a non-ASCII byte, on the
//     client encoding (see lexing.go), which differ between sessions;
//   - one that server versions scan differently (lexer.versionDependent);
//   - one with a string continued across a -- comment, which pg_query reads
//     as two constants (lexer.commentContinuation): its classification
//     (Unknown) is not that of the texts the keys stand for;
//   - one holding a NUL byte (no query text can; the parser would stop there).
//
// The keys are cache keys only: they need not parse.
type sharedKeys struct {
	bare, norm []byte
}

// keyBufs recycles sharedKeys between classifications.
var keyBufs = sync.Pool{New: func() any { return new(sharedKeys) }}

// build sets k's keys for sql. hasBare reports a bare key worth using (the
// text has a comment: without one the exact text is as good a key), hasNorm
// a normalized one (the text has a constant: without one the bare key is as
// good).
func (k *sharedKeys) build(sql string) (hasBare, hasNorm bool) {
	k.bare, k.norm = append(k.bare[:0], bareKeyPrefix...), append(k.norm[:0], normPrefix...)
	if strings.IndexByte(sql, '\\') >= 0 || strings.IndexByte(sql, 0) >= 0 {
		return false, false
	}
	l := newLexer(sql, false)
	comment, constant := false, false
	first := true
	for {
		t, ok := l.next()
		if !ok {
			break
		}
		if t.kind == tkComment {
			comment = true
			continue
		}
		if !first {
			k.bare = append(k.bare, ' ')
			k.norm = append(k.norm, ' ')
		}
		first = false
		text := sql[t.start:t.end]
		k.bare = append(k.bare, text...)
		switch t.kind {
		case tkString:
			constant = true
			k.norm = append(k.norm, strPlaceholder[t.str]...)
		case tkNumber:
			constant = true
			k.norm = append(k.norm, '0')
		default:
			k.norm = append(k.norm, text...)
		}
	}
	if l.err != "" || l.versionDependent || l.commentContinuation {
		return false, false
	}
	return comment, constant
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
// transaction-control options can; statements with them are shared only
// through their bare key (texts that differ from theirs in comments and
// white space). (What the walker read from a constant besides, such as the
// setting current_setting('x') names, it reports itself:
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
