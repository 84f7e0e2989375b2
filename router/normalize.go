package router

import (
	"strings"

	"github.com/txlane/txlane/policy"
)

// normPrefix marks cache keys that are normalized texts, so that they never
// meet exact texts in the cache.
const normPrefix = "\x00"

// normalize returns sql with its constants replaced (string and dollar-quoted
// literals by ”, numbers by 0) and comments dropped, prefixed with
// normPrefix, and whether anything was replaced. Texts that differ only in
// constants and comments (a query sent with literal values, or tagged with a
// per-request sqlcommenter comment) then share one cache entry.
//
// The result is a cache key only: it need not parse.
func normalize(sql string) (string, bool) {
	var b strings.Builder
	changed := false
	last := 0 // sql[last:i] is still to be copied
	for i := 0; i < len(sql); {
		c := sql[i]
		start, end, repl := -1, -1, ""
		switch {
		case c == '\'':
			escapes := i > 0 && (sql[i-1] == 'E' || sql[i-1] == 'e') && (i < 2 || !isIdentChar(sql[i-2]))
			start, end, repl = i, skipQuoted(sql, i, '\'', escapes), "''"
		case c == '"':
			i = skipQuoted(sql, i, '"', false)
			continue
		case c == '$':
			j := skipDollar(sql, i)
			if j == i+1 {
				// A parameter ($1) or a lone '$': keep it and its digits.
				for j < len(sql) && sql[j] >= '0' && sql[j] <= '9' {
					j++
				}
				i = j
				continue
			}
			start, end, repl = i, j, "''"
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			end = len(sql)
			if nl := strings.IndexByte(sql[i:], '\n'); nl >= 0 {
				end = i + nl + 1
			}
			start, repl = i, " "
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			end = min(skipComment(sql, i), len(sql))
			start, repl = i, " "
		case c >= '0' && c <= '9':
			j := i
			for j < len(sql) && (sql[j] >= '0' && sql[j] <= '9' || sql[j] == '.' || sql[j] == '_' ||
				(sql[j] == 'e' || sql[j] == 'E') && j+1 < len(sql) && (sql[j+1] >= '0' && sql[j+1] <= '9' || sql[j+1] == '-' || sql[j+1] == '+')) {
				if sql[j] == 'e' || sql[j] == 'E' {
					j++ // the exponent's sign or first digit
				}
				j++
			}
			start, end, repl = i, j, "0"
		case isIdentChar(c):
			for i < len(sql) && (isIdentChar(sql[i]) || sql[i] == '$') {
				i++
			}
			continue
		default:
			i++
			continue
		}
		if !changed {
			b.Grow(len(sql) + 1)
			b.WriteString(normPrefix)
			changed = true
		}
		b.WriteString(sql[last:start])
		b.WriteString(repl)
		last, i = end, end
	}
	if !changed {
		return "", false
	}
	b.WriteString(sql[last:])
	return b.String(), true
}

// constantFree reports whether st can describe every text that normalizes
// like the one it was made from: nothing in it came from a constant. SET
// values, sequence names in nextval('s'), prepared-statement names and
// transaction-control options can; statements with them are cached under
// their exact text only.
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
