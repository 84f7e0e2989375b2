package policy

import (
	"errors"
	"fmt"
	"strings"
)

// Table names a relation as the SQL text wrote it.
//
// Names are case-folded the way PostgreSQL folds identifiers: unquoted
// identifiers are lower-cased, quoted identifiers are kept verbatim. Schema is
// empty when the name was written unqualified; it is then resolved against a
// search path (see [Rules.IsVector]) or matched conservatively (see
// [TxState.WroteTable]).
type Table struct {
	Schema string
	Name   string
}

// String renders t as PostgreSQL would accept it back: each part is quoted
// only when needed (see [QuoteIdent]).
func (t Table) String() string {
	if t.Schema == "" {
		return QuoteIdent(t.Name)
	}
	return QuoteIdent(t.Schema) + "." + QuoteIdent(t.Name)
}

// Func names a function by optional schema and name, folded like [Table].
type Func struct {
	Schema string
	Name   string
}

// String renders f like [Table.String].
func (f Func) String() string { return Table(f).String() }

// isTempSchema reports whether schema names the session's temporary schema.
func isTempSchema(schema string) bool {
	return schema == "pg_temp" || strings.HasPrefix(schema, "pg_temp_")
}

// sameRelation reports whether a and b may name the same relation.
//
// NOTE: it is deliberately conservative. Without a catalog we cannot resolve
// an unqualified name, so an unqualified name matches the same name in any
// schema; only two qualified names with different schemas are told apart.
// Callers use it where a false "same" costs a primary-lane read and a false
// "different" could offload a read that must see the transaction's writes.
func sameRelation(a, b Table) bool {
	return a.Name == b.Name && (a.Schema == "" || b.Schema == "" || a.Schema == b.Schema)
}

// QuoteIdent quotes s as an SQL identifier when PostgreSQL's quote_ident would:
// unless it is made only of lower-case ASCII letters, digits and underscores
// and does not start with a digit. Keywords are not quoted (PostgreSQL would
// quote reserved ones); the result still names the same object when re-read
// as an identifier list.
func QuoteIdent(s string) string {
	safe := s != ""
	for i := 0; i < len(s) && safe; i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c == '_':
		case c >= '0' && c <= '9':
			safe = i > 0
		default:
			safe = false
		}
	}
	if safe {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// ParseTable parses a possibly schema-qualified name as PostgreSQL reads a
// regclass literal (stringToQualifiedNameList): items, public.items,
// "My Schema"."Vec". It is the one grammar for table names: the config file
// (policy.vector_tables, checked by `txlane check`), the running policy and
// nextval('seq') arguments all use it.
//
// A part is either double-quoted (kept verbatim; "" stands for one quote;
// not empty) or unquoted: then it runs up to '.' or white space, may hold
// any other character but '"' (my-table and 1abc are names, as in
// 'my-table'::regclass) and is lower-cased (ASCII letters only, as
// PostgreSQL's downcase_identifier). White space around parts is ignored.
// More than two parts, an empty part and stray characters after a part are
// errors.
func ParseTable(s string) (Table, error) {
	parts, err := splitIdentifiers(s, '.')
	if err != nil {
		return Table{}, err
	}
	switch len(parts) {
	case 1:
		return Table{Name: parts[0]}, nil
	case 2:
		return Table{Schema: parts[0], Name: parts[1]}, nil
	default:
		return Table{}, fmt.Errorf("%q: want name or schema.name", s)
	}
}

// ParseFunc parses a function name like [ParseTable], without an argument
// list: an unquoted '(' or ')' is an error (nextval() is a mistake for
// nextval; double-quote a name that really contains parentheses), so that a
// function list entry that could never match a call is refused rather than
// silently ignored.
func ParseFunc(s string) (Func, error) {
	inQuotes := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			inQuotes = !inQuotes // a doubled "" toggles twice
		case !inQuotes && (c == '(' || c == ')'):
			return Func{}, fmt.Errorf("%q: want a function name without an argument list (double-quote a name that contains parentheses)", s)
		}
	}
	t, err := ParseTable(s)
	return Func(t), err
}

// ParseSearchPath splits a search_path value (as SHOW search_path prints it,
// or as a client set it) into schema names, following PostgreSQL's
// SplitIdentifierString: elements are comma-separated, unquoted ones are
// lower-cased and trimmed, quoted ones are kept. "$user" is returned as is;
// see [ExpandSearchPath].
func ParseSearchPath(value string) ([]string, error) {
	if strings.TrimSpace(value) == "" {
		return nil, nil
	}
	return splitIdentifiers(value, ',')
}

// ExpandSearchPath returns path with "$user" replaced by user, as PostgreSQL
// does when it resolves names. The input is not modified. PostgreSQL skips
// "$user" when no schema of that name exists; keeping it is harmless here
// because a missing schema holds no vector tables.
func ExpandSearchPath(path []string, user string) []string {
	out := make([]string, 0, len(path))
	for _, s := range path {
		if s == "$user" {
			if user == "" {
				continue
			}
			s = user
		}
		out = append(out, s)
	}
	return out
}

// splitIdentifiers splits s on sep into identifiers with SQL quoting rules.
func splitIdentifiers(s string, sep byte) ([]string, error) {
	var out []string
	i := 0
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		var part string
		if i < len(s) && s[i] == '"' {
			var b strings.Builder
			i++
			closed := false
			for i < len(s) {
				if s[i] == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						b.WriteByte('"')
						i += 2
						continue
					}
					i++
					closed = true
					break
				}
				b.WriteByte(s[i])
				i++
			}
			if !closed {
				return nil, fmt.Errorf("%q: unterminated quoted identifier", s)
			}
			part = b.String()
			if part == "" {
				return nil, fmt.Errorf("%q: zero-length quoted identifier", s)
			}
		} else {
			start := i
			for i < len(s) && s[i] != sep && !isSpace(s[i]) {
				if s[i] == '"' {
					return nil, fmt.Errorf("%q: quote inside unquoted identifier", s)
				}
				i++
			}
			part = asciiLower(s[start:i])
			if part == "" {
				return nil, errors.New("empty identifier in " + fmt.Sprintf("%q", s))
			}
		}
		out = append(out, part)
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i == len(s) {
			return out, nil
		}
		if s[i] != sep {
			return nil, fmt.Errorf("%q: unexpected %q after identifier", s, s[i])
		}
		i++
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// asciiLower folds like PostgreSQL's downcase_identifier in a multibyte
// encoding: only ASCII letters change.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
