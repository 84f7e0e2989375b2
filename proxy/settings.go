package proxy

import (
	"sort"
	"strings"
)

// trackedSettings are the settings that can change what a read returns or how
// its values are rendered. The vector lane mirrors the client's values of
// these, plus every custom (dotted) setting the client has set, such as
// hnsw.ef_search, before it runs the client's reads.
var trackedSettings = []string{
	"search_path", "TimeZone", "DateStyle", "IntervalStyle", "extra_float_digits",
	"bytea_output", "client_encoding", "standard_conforming_strings",
	"lc_monetary", "lc_numeric", "lc_time", "default_text_search_config",
	"timezone_abbreviations", "row_security", "statement_timeout",
}

// settingRole is the pseudo-setting for the client's current_user, which the
// lane takes with SET ROLE.
const settingRole = "role"

// sessionSnapshot is what the vector lane needs to know of the client's
// session, read from the primary in one query.
type sessionSnapshot struct {
	// values maps a setting to its value; a custom setting the client's
	// session does not define maps to nil.
	values map[string]*string
	// isolation is transaction_isolation as the primary reported it: inside a
	// transaction, that of the transaction.
	isolation string
}

// snapshotQuery returns the query that reads a sessionSnapshot for the
// tracked settings and the given custom ones, and the names in column order.
func snapshotQuery(custom []string) (sql string, names []string) {
	var b strings.Builder
	b.WriteString("SELECT current_setting('transaction_isolation'), current_user")
	names = append(names, "transaction_isolation", settingRole)
	for _, n := range trackedSettings {
		b.WriteString(", current_setting(")
		b.WriteString(quoteLiteral(n))
		b.WriteString(")")
		names = append(names, n)
	}
	for _, n := range custom {
		b.WriteString(", current_setting(")
		b.WriteString(quoteLiteral(n))
		b.WriteString(", true)")
		names = append(names, n)
	}
	return b.String(), names
}

// parseSnapshot turns the row read by snapshotQuery into a snapshot. row holds
// the raw text values (nil for NULL).
func parseSnapshot(names []string, row [][]byte) sessionSnapshot {
	snap := sessionSnapshot{values: make(map[string]*string, len(names))}
	for i, n := range names {
		if i >= len(row) {
			break
		}
		if n == "transaction_isolation" {
			snap.isolation = string(row[i])
			continue
		}
		if row[i] == nil {
			snap.values[n] = nil
			continue
		}
		v := string(row[i])
		snap.values[n] = &v
	}
	return snap
}

// applySQL returns the statements that bring a lane connection whose applied
// settings are have to the client's values want, or "" when nothing differs.
// It updates have to the result. The role comes last: settings are applied
// with the previous holder's privileges, and the client's role must be in
// force when the client's statements run.
func applySQL(have map[string]string, want map[string]*string) string {
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	for n := range have {
		if _, ok := want[n]; !ok {
			names = append(names, n) // a custom setting the client lacks
		}
	}
	sort.Slice(names, func(i, j int) bool {
		if (names[i] == settingRole) != (names[j] == settingRole) {
			return names[j] == settingRole
		}
		return names[i] < names[j]
	})
	var sets []string
	var resets []string
	for _, n := range names {
		w := want[n]
		h, applied := have[n]
		switch {
		case w == nil && applied:
			resets = append(resets, "RESET "+quoteIdent(n))
			delete(have, n)
		case w != nil && (!applied || h != *w):
			sets = append(sets, "set_config("+quoteLiteral(n)+", "+quoteLiteral(*w)+", false)")
			have[n] = *w
		}
	}
	var b strings.Builder
	if len(resets) > 0 {
		b.WriteString(strings.Join(resets, "; "))
	}
	if len(sets) > 0 {
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString("SELECT ")
		b.WriteString(strings.Join(sets, ", "))
	}
	return b.String()
}

// quoteLiteral quotes s as an SQL string literal that means the same whatever
// standard_conforming_strings says.
func quoteLiteral(s string) string {
	if strings.ContainsRune(s, '\\') {
		return "E'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", "''") + "'"
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// quoteIdent quotes a setting name for RESET: each dotted part as an identifier.
func quoteIdent(s string) string {
	parts := strings.Split(s, ".")
	for i, p := range parts {
		parts[i] = `"` + strings.ReplaceAll(p, `"`, `""`) + `"`
	}
	return strings.Join(parts, ".")
}

// startupCustomSettings returns the custom (dotted) settings a client set at
// startup: as startup parameters, or as -c name=value (--name=value) in the
// options parameter.
func startupCustomSettings(params map[string]string) []string {
	var out []string
	for k := range params {
		if strings.Contains(k, ".") {
			out = append(out, k)
		}
	}
	fields := strings.Fields(params["options"])
	for i := 0; i < len(fields); i++ {
		f := fields[i]
		switch {
		case f == "-c" && i+1 < len(fields):
			i++
			f = fields[i]
		case strings.HasPrefix(f, "-c"):
			f = f[2:]
		case strings.HasPrefix(f, "--"):
			f = f[2:]
		default:
			continue
		}
		name, _, _ := strings.Cut(f, "=")
		if strings.Contains(name, ".") {
			out = append(out, strings.ToLower(name))
		}
	}
	return out
}
