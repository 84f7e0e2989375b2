package proxy

import (
	"sort"
	"strings"
	"sync/atomic"

	"github.com/txlane/txlane/policy"
)

// trackedSettings are the settings that can change what a read returns or how
// its values are rendered. The vector lane mirrors the client's values of
// these, plus every custom (dotted) setting the client has set, such as
// hnsw.ef_search, before it runs the client's reads. The list is policy's,
// so that classification knows which current_setting() calls the lane
// answers as the client's backend would (policy.MirroredSetting).
var trackedSettings = policy.LaneSettings()

// settingRole is the pseudo-setting for the client's current_user, which the
// lane takes with SET ROLE.
const settingRole = "role"

// sessionSnapshot is what the vector lane needs to know of the client's
// session, read from the primary in one query.
type sessionSnapshot struct {
	// id names this read among all sessions' (snapshotIDs; 0: never read),
	// so that a lane connection knows whose settings it has (laneConn.fitted).
	id uint64
	// values maps a setting to its value; a custom setting the client's
	// session does not define maps to nil.
	values map[string]*string
	// isolation is transaction_isolation as the primary reported it: inside a
	// transaction, that of the transaction.
	isolation string
	// tempSchema: the session has a temporary schema (it created a
	// temporary object at some point), so it may have temporary relations.
	tempSchema bool
	// temp lists the relations in the session's temporary schema (names as
	// stored, case-exact), at most maxSnapshotTemp; tempOverflow says there
	// were more (or the list could not be read), so that every unqualified
	// name must be presumed to be one. Read with tempRelationsSQL, only when
	// tempSchema is set.
	temp         []string
	tempOverflow bool
	// defaults are the session's default_transaction_isolation, _read_only
	// and _deferrable (defaultsOK: read and understood).
	defaults   policy.TxDefaults
	defaultsOK bool
	// superuser: the client's current role is a superuser (is_superuser).
	// A lane connection logged in with superuser powers serves only such
	// clients, and one without serves only other clients (see
	// session.acquireLane).
	superuser bool
}

// snapshotIDs numbers session snapshots, from 1.
var snapshotIDs atomic.Uint64

// maxSnapshotTemp bounds the temporary relations the snapshot lists. Past it
// the session is presumed to shadow every unqualified name (see
// policy.TxState.SetTemp), which keeps its unqualified reads on the primary.
const maxSnapshotTemp = 256

// tempRelationsSQL lists the session's temporary relations that a FROM item
// can name (tables, views, sequences, ...; not indexes or TOAST tables), as a
// comma-separated list of quote_ident names, NULL when there are none. One
// more than maxSnapshotTemp is read so that an overflow shows.
//
// NOTE: it is a query of its own, run only for sessions that have a
// temporary schema: pg_class has no index on relnamespace, and planning and
// scanning it cost about 200µs of server time, against about 5µs for the
// pg_my_temp_schema() column of the settings query, which every refresh
// reads.
const tempRelationsSQL = `SELECT pg_catalog.string_agg(pg_catalog.quote_ident(t.relname), ',') FROM (` +
	`SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema() ` +
	`AND c.relkind OPERATOR(pg_catalog.<>) ALL ('{i,I,t}'::pg_catalog."char"[]) ORDER BY c.relname LIMIT 257) t`

// Snapshot columns that are not settings.
const (
	colIsolation = "transaction_isolation"
	// colDefaults reads the session's default transaction characteristics,
	// which a BEGIN that names none gives its transaction.
	colDefaults   = "\x00defaults"
	colTempSchema = "\x00temp schema" // not a setting name: no setting can collide with it
	colSuperuser  = "\x00superuser"   // likewise
)

// snapshotQuery returns the query that reads a sessionSnapshot for the
// tracked settings and the given custom ones, and the names in column order.
// The role and the settings are read in hex (hexUTF8): the lane connection
// gets them in UTF-8, whatever the client's client_encoding and the lane
// connection's (see laneApplySQL).
func snapshotQuery(custom []string) (sql string, names []string) {
	var b strings.Builder
	b.WriteString("SELECT pg_catalog.current_setting('transaction_isolation'), " + hexUTF8("current_user") + ", pg_catalog.pg_my_temp_schema() OPERATOR(pg_catalog.<>) 0, pg_catalog.current_setting('is_superuser'), " +
		"pg_catalog.concat_ws(',', pg_catalog.current_setting('default_transaction_isolation'), pg_catalog.current_setting('default_transaction_read_only'), pg_catalog.current_setting('default_transaction_deferrable'))")
	names = append(names, colIsolation, settingRole, colTempSchema, colSuperuser, colDefaults)
	for _, n := range trackedSettings {
		b.WriteString(", ")
		b.WriteString(hexUTF8("pg_catalog.current_setting(" + quoteLiteral(n) + ")"))
		names = append(names, n)
	}
	for _, n := range custom {
		b.WriteString(", ")
		b.WriteString(hexUTF8("pg_catalog.current_setting(" + textLiteral(n) + ", true)"))
		names = append(names, n)
	}
	return b.String(), names
}

// parseSnapshot turns the row read by snapshotQuery into a snapshot. row holds
// the raw text values (nil for NULL). ok is false when a value is not hex:
// the snapshot must not be used.
func parseSnapshot(names []string, row [][]byte) (snap sessionSnapshot, ok bool) {
	snap = sessionSnapshot{values: make(map[string]*string, len(names))}
	for i, n := range names {
		if i >= len(row) {
			break
		}
		switch n {
		case colIsolation:
			snap.isolation = string(row[i])
			continue
		case colTempSchema:
			snap.tempSchema = string(row[i]) != "f"
			continue
		case colSuperuser:
			snap.superuser = string(row[i]) == "on"
			continue
		case colDefaults:
			snap.defaults, snap.defaultsOK = parseDefaults(string(row[i]))
			continue
		}
		if row[i] == nil {
			snap.values[n] = nil
			continue
		}
		v, err := fromHex(string(row[i]))
		if err != nil {
			return snap, false
		}
		snap.values[n] = &v
	}
	return snap, true
}

// mayChangeTemp reports whether st, run on the primary, may create or drop a
// temporary relation of the session, so that the snapshot (which lists them)
// must be read again before the next offload. Anything but a read or a plain
// utility statement may: DDL (CREATE TEMP ..., DROP), CREATE TABLE AS and
// SELECT INTO, DML (a trigger may, unless the catalog showed it fires none),
// DO, CALL, EXECUTE, and any statement
// calling a function the classifier presumes to write or to change the
// session. Transaction control does not itself (a rollback undoes a creation
// only if the transaction made one, which marked it: snapState.txControl).
//
// NOTE: a read whose hidden user code (a function the classifier does not
// know, without a catalog; one listed in policy.read_only_functions) creates
// a temporary relation is not seen until the next statement that dirties the
// snapshot.
func mayChangeTemp(st *policy.Statement) bool {
	if st.Flags&(policy.FlagWritingFunction|policy.FlagWritesUnknown|policy.FlagMayChangeSession|
		policy.FlagCursor|policy.FlagSQLPrepare) != 0 || st.Discard != policy.DiscardNone {
		return true
	}
	switch st.Class {
	case policy.Read, policy.LockingRead, policy.Utility, policy.TxControl:
		return false
	case policy.Write:
		// DML whose writes the catalog showed fire no user trigger, and
		// that calls nothing presumed to write or change the session
		// (checked above), runs no user code that could create one.
		const unproven = policy.FlagReachesUnknown | policy.FlagUnproven | policy.FlagSelectInto
		return !st.CatalogChecked || st.Flags&unproven != 0 || len(st.Temp) > 0
	}
	return true
}

// parseTempList parses tempRelationsSQL's value (nil: no temporary
// relations). A list that cannot be parsed, or that is longer than
// maxSnapshotTemp, is an overflow.
func parseTempList(v []byte) (names []string, overflow bool) {
	if v == nil {
		return nil, false
	}
	names, err := policy.ParseSearchPath(string(v))
	if err != nil {
		return nil, true
	}
	if len(names) > maxSnapshotTemp {
		return names[:maxSnapshotTemp], true
	}
	return names, false
}

// laneFixed are settings applyPlan never changes on a lane connection,
// whatever a snapshot holds: the lane's read-only mode is what makes the
// server refuse a write hidden in a read (see readOnlyLaneParam).
var laneFixed = map[string]bool{
	"default_transaction_read_only": true,
	"transaction_read_only":         true,
}

// laneApplySQL brings a lane connection to a client's settings and role: $1
// names the settings, $2 their values (text[]s of the hex digits of their
// UTF-8 bytes, as the values it returns: a Bind's text is converted
// from the connection's client_encoding, which may be another client's, or
// change in the statement; a NULL element resets the setting, as set_config
// does). It is prepared once per connection as
// laneApplyStmt and runs as one statement, so that one that fails changes
// nothing. It returns each setting's value afterwards, in order: what the
// connection holds from then on, and what laneCheckSQL expects.
//
// Every name is schema-qualified: the statement is analysed again under the
// search_path in force when it runs, which the previous read chose.
var laneApplySQL = `SELECT ` + hexUTF8("pg_catalog.set_config("+fromHexUTF8("a.n")+", "+fromHexUTF8("a.v")+", false)") + ` FROM ROWS FROM ` +
	`(pg_catalog.unnest($1), pg_catalog.unnest($2)) WITH ORDINALITY AS a(n, v, i) ORDER BY a.i`

// laneApplyStmt names laneApplySQL on a lane connection. Client statements
// live there under content-derived names (txlane_<hash>) only, so it cannot
// collide with them.
const laneApplyStmt = "lane_apply"

// applyPlan returns the settings to change on a lane connection whose
// settings are have so that it holds the client's values want: names and
// their values, nil meaning RESET (a custom setting the client lacks, or has
// empty). The
// role comes last: the client's role must be in force when the client's
// statements run, and the other settings are applied before it with the
// privileges the connection already has. Nothing to change: nil.
func applyPlan(have map[string]string, want map[string]*string) (names []string, values []*string) {
	all := make([]string, 0, len(want))
	for n := range want {
		all = append(all, n)
	}
	for n := range have {
		if _, ok := want[n]; !ok {
			all = append(all, n) // a custom setting the client lacks
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if (all[i] == settingRole) != (all[j] == settingRole) {
			return all[j] == settingRole
		}
		return all[i] < all[j]
	})
	for _, n := range all {
		if laneFixed[strings.ToLower(n)] {
			continue
		}
		w := want[n]
		if w != nil && *w == "" && strings.Contains(n, ".") {
			// An empty custom setting is what a reset leaves (or a library's
			// setting the primary's session has not loaded: a placeholder,
			// which stands for the library's default). Where the lane has
			// loaded the library an empty value is invalid; a reset means the
			// same everywhere.
			w = nil
		}
		h, applied := have[n]
		switch {
		case w == nil && applied:
			names, values = append(names, n), append(values, nil)
		case w != nil && (!applied || h != *w):
			names, values = append(names, n), append(values, w)
		}
	}
	return names, values
}

// textArray encodes values as a text-format text[] parameter: each element
// double-quoted (backslash and quote escaped), nil as NULL.
func textArray[T string | *string](values []T) []byte {
	b := []byte{'{'}
	for i, v := range values {
		if i > 0 {
			b = append(b, ',')
		}
		s, ok := strOf(v)
		if !ok {
			b = append(b, "NULL"...)
			continue
		}
		b = append(b, '"')
		for j := 0; j < len(s); j++ {
			if s[j] == '"' || s[j] == '\\' {
				b = append(b, '\\')
			}
			b = append(b, s[j])
		}
		b = append(b, '"')
	}
	return append(b, '}')
}

// strOf returns the string v is or points to; ok is false for nil.
func strOf[T string | *string](v T) (s string, ok bool) {
	switch v := any(v).(type) {
	case string:
		return v, true
	case *string:
		if v != nil {
			return *v, true
		}
	}
	return "", false
}

// quoteLiteral quotes s as an SQL string literal that means the same whatever
// standard_conforming_strings says.
func quoteLiteral(s string) string {
	if strings.ContainsRune(s, '\\') {
		return "E'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", "''") + "'"
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
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

// parseDefaults parses the colDefaults column: the three default_transaction_*
// values, comma-separated, as current_setting shows them ("read committed",
// "off", "off").
func parseDefaults(v string) (d policy.TxDefaults, ok bool) {
	parts := strings.Split(v, ",")
	if len(parts) != 3 {
		return d, false
	}
	if d.Isolation, ok = policy.ParseIsolation(parts[0]); !ok {
		return d, false
	}
	d.ReadOnly, d.Deferrable = parts[1] == "on", parts[2] == "on"
	return d, true
}
