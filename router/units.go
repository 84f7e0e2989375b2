package router

import (
	"net/url"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// UnitKeys are the sqlcommenter keys whose values name a unit of work.
// traceparent is always read in addition: its trace-id is the unit.
type UnitKeys []string

// traceparentKey is the W3C trace context key sqlcommenter emits.
const traceparentKey = "traceparent"

// ExtractUnits returns the units of work that the sqlcommenter comments of
// sql carry, in order of appearance and without duplicates, and sql without
// a trailing comment (the text to classify: comments never change what a
// statement does, and a per-request comment would defeat the classification
// cache).
//
// A comment is read as sqlcommenter key='value' pairs separated by commas,
// keys and values URL-encoded, quotes inside values escaped with a backslash.
// A traceparent ('00-<32 hex trace-id>-<16 hex span-id>-<2 hex flags>')
// gives its trace-id; a key in keys gives its value. Comments are /* */
// comments where the server's scanner finds them (lex.go): not inside string
// literals, quoted identifiers or dollar-quoted strings, and a -- comment
// ends at a newline, \n or \r. A text with a backslash is read twice, with
// standard_conforming_strings on and off (the session's setting is not
// known here), and carries the units of both readings. Malformed comments
// and values are ignored, never an error.
func ExtractUnits(sql string, keys UnitKeys) (units []string, stripped string) {
	return extractAll(nil, sql, keys)
}

// AppendUnits appends to dst the units of work sql's comments carry (as
// ExtractUnits reads them) that dst does not hold yet. It allocates only for
// the units it adds (and dst's growth).
func AppendUnits(dst []string, sql string, keys UnitKeys) []string {
	dst, _ = extractAll(dst, sql, keys)
	return dst
}

func extractAll(units []string, sql string, keys UnitKeys) ([]string, string) {
	if !strings.Contains(sql, "/*") {
		return units, sql
	}
	units, stripped := extractUnits(sql, keys, false, units)
	if strings.IndexByte(sql, '\\') >= 0 {
		units, _ = extractUnits(sql, keys, true, units)
	}
	return units, stripped
}

// extractUnits is ExtractUnits under one setting of
// standard_conforming_strings (backslashStrings: off), adding to units.
func extractUnits(sql string, keys UnitKeys, backslashStrings bool, units []string) ([]string, string) {
	stripped := sql
	lastEnd, lastStart := -1, -1
	l := newLexer(sql, backslashStrings)
	for {
		t, ok := l.next()
		if !ok {
			break
		}
		if t.kind == tkComment && t.block {
			units = appendCommentUnits(units, sql[t.start+2:t.end-2], keys)
			lastStart, lastEnd = t.start, t.end
		}
	}
	if l.err != "" {
		return units, stripped // the server will refuse the text
	}
	if lastEnd >= 0 && strings.TrimRight(sql[lastEnd:], " \t\r\n;") == "" {
		stripped = strings.TrimRight(sql[:lastStart], " \t\r\n")
		if strings.HasSuffix(strings.TrimRight(sql[lastEnd:], " \t\r\n"), ";") {
			stripped += ";"
		}
	}
	return units, stripped
}

// appendCommentUnits parses one comment's sqlcommenter pairs.
func appendCommentUnits(units []string, comment string, keys UnitKeys) []string {
	rest := strings.TrimSpace(comment)
	for rest != "" {
		eq := strings.IndexByte(rest, '=')
		if eq < 0 {
			return units
		}
		key, err := url.QueryUnescape(strings.TrimSpace(rest[:eq]))
		if err != nil {
			return units
		}
		rest = strings.TrimLeft(rest[eq+1:], " ")
		if rest == "" || rest[0] != '\'' {
			return units // not sqlcommenter
		}
		j, escaped := 1, false
		for ; j < len(rest) && rest[j] != '\''; j++ {
			if rest[j] == '\\' && j+1 < len(rest) {
				j++
				escaped = true
			}
		}
		if j >= len(rest) {
			return units
		}
		raw := rest[1:j]
		if escaped {
			raw = unescapeQuotes(raw)
		}
		rest = strings.TrimLeft(rest[j+1:], " ")
		if rest != "" {
			if rest[0] != ',' {
				return units
			}
			rest = strings.TrimLeft(rest[1:], " ")
		}
		value, err := url.QueryUnescape(raw)
		if err != nil || value == "" {
			continue
		}
		var unit string
		switch {
		case key == traceparentKey:
			unit = traceID(value)
		case keys.has(key):
			unit = value
		}
		if unit != "" && !contains(units, unit) {
			// NOTE: a copy: the value may be part of the query text, which a
			// unit held for a transaction would otherwise keep alive.
			units = append(units, strings.Clone(unit))
		}
	}
	return units
}

func (k UnitKeys) has(key string) bool {
	for _, x := range k {
		if x == key {
			return true
		}
	}
	return false
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// unescapeQuotes drops the backslash of each backslash-escaped byte of a
// sqlcommenter value.
func unescapeQuotes(raw string) string {
	var b strings.Builder
	b.Grow(len(raw))
	for j := 0; j < len(raw); j++ {
		if raw[j] == '\\' && j+1 < len(raw) {
			j++
		}
		b.WriteByte(raw[j])
	}
	return b.String()
}

// traceID returns the trace-id of a W3C traceparent value
// ("00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>", later versions
// adding "-..." fields), lower-cased, or "" when it is malformed, of version
// ff, or the all-zero (invalid) id.
func traceID(v string) string {
	const idLen = 2 + 1 + 32 + 1 + 16 + 1 + 2
	if len(v) < idLen || len(v) > idLen && v[idLen] != '-' || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return ""
	}
	version, id, parent, flags := v[:2], v[3:35], v[36:52], v[53:55]
	if version == "ff" || !isHex(version) || !isHex(id) || !isHex(parent) || !isHex(flags) {
		return ""
	}
	if id == "00000000000000000000000000000000" {
		return ""
	}
	return strings.ToLower(id)
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// Fingerprint identifies the shape of the statements in sqls, ignoring
// constants and comments (pg_query's fingerprint), for logs that must never
// show parameter values. Unparsable text gets "unparsed".
func Fingerprint(sqls []string) string {
	var out []string
	for _, sql := range sqls {
		fp, err := pg_query.Fingerprint(sql)
		if err != nil {
			fp = "unparsed"
		}
		out = append(out, fp)
	}
	return strings.Join(out, ",")
}
