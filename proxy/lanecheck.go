package proxy

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/puddle/v2"

	"github.com/txlane/txlane/proxy/wire"
)

// A vector-lane connection is shared: each read runs there as its client
// (role, settings, statements), and the next read of another client runs on
// the same session. Whatever a read runs (a function the classifier trusts
// may run any SQL that a read-only transaction allows) can change that
// session in ways PostgreSQL does not report: SET ROLE, set_config of a
// setting, PREPARE and DEALLOCATE. So after each read, in the same write as
// the read, the connection proves with laneCheckSQL that its session is
// exactly what txlane set (laneConn.verify); a connection that cannot is
// closed, never handed on, logged and counted
// (txlane_lane_connections_discarded_total{reason}).

// watchedSettings are settings the lane does not mirror but that change what a
// read returns, how the server treats it, or what its client receives, so a
// read must not change them for the next one. They keep the values the
// connection logged in with (read at dial: laneConn.base; NULL for a setting
// that does not exist there), unless a client set them (then they are
// mirrored as custom settings).
//
// The enable_*scan settings are here because for an approximate index
// (HNSW, IVFFlat) whether it is used changes which neighbours a search
// finds; pgvector's own settings because they do too. pgvector's library is
// loaded at dial (laneLoadVectorSQL), so that its settings exist from the
// start instead of appearing at a read's first use of the type.
//
// NOTE: not checked (each name costs about 1µs of server time a read) are
// the planner's cost settings (work_mem, the *_cost settings, jit,
// plan_cache_mode, ...: they change plans and speed, not results), other
// settings that rarely matter to a read (xmloption, quote_all_identifiers,
// gin_fuzzy_search_limit, the idle timeouts: those end the lane connection,
// which the next read survives on the primary, lane_lost) and settings of
// other extensions' libraries.
var watchedSettings = []string{
	"default_transaction_isolation", "default_transaction_deferrable",
	"transform_null_equals", "array_nulls", "client_min_messages",
	"lock_timeout", "exit_on_error",
	"enable_seqscan", "enable_indexscan", "enable_bitmapscan",
	"hnsw.ef_search", "hnsw.iterative_scan", "hnsw.max_scan_tuples",
	"ivfflat.probes", "ivfflat.iterative_scan", "ivfflat.max_probes",
}

// laneLoadVectorSQL loads pgvector's library on a new lane connection, when
// the database has the extension and the login may use it, by reading a
// vector value: its settings (hnsw.ef_search, ...) then exist with their
// defaults before any read runs (see watchedSettings). Failing is not an
// error: then they do not exist.
const laneLoadVectorSQL = `DO $txlane$ DECLARE s pg_catalog.name; BEGIN ` +
	`SELECT n.nspname INTO s FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace WHERE e.extname OPERATOR(pg_catalog.=) 'vector'; ` +
	`IF s IS NOT NULL THEN EXECUTE pg_catalog.format('SELECT %L::%I.vector', '[0]', s); END IF; ` +
	`EXCEPTION WHEN OTHERS THEN NULL; END $txlane$`

// laneCheckSQL is what a lane connection runs after each read (writeCheck):
//
//   - it releases session-level advisory locks a function hidden in the read
//     may have taken (allowed in a read-only transaction): on a shared
//     connection they would outlive the read and block other sessions for as
//     long as the connection lives. Such a read behaves as if it had taken a
//     transaction-level lock;
//   - it returns current_user and session_user, the values of the settings
//     named by $1 (text[]; the tracked and watched ones, then the custom ones
//     txlane applied or reset: checkExpect), each name and value as the hex
//     digits of its UTF-8 bytes (the connection's client_encoding is the
//     client's: hexUTF8, fromHexUTF8), and how many prepared
//     statements the session holds: made with SQL PREPARE (from_sql), and in
//     all.
//
// verify compares those with what txlane set. It runs as the unnamed
// statement, never a named one: SQL can list, DEALLOCATE and PREPARE any
// named statement (a read could replace a named check with one that reports
// what txlane expects), but it cannot reach the unnamed statement. It is
// parsed once and reused until something replaces the unnamed statement
// (any simple Query: a client's read sent as one, the health check,
// checkReady). Every name is schema-qualified and no operator is used, since
// the statement is analysed again under the search_path in force when it
// runs, which the read may have chosen. pg_prepared_statement() is the
// function behind the pg_prepared_statements view (parsing it directly is
// cheaper).
//
// NOTE: it is written to be cheap to parse as well as to run (the simple
// Query of a read replaces it): the values come in the order unnest gives
// the names (a function scan), without WITH ORDINALITY and ORDER BY, which
// cost about 70µs of planning; settings written out as literal calls would
// run faster (about 10µs for 31 names) but parse slower (about 150µs). The
// server time it costs is measured by BenchmarkLaneCheck.
var laneCheckSQL = `SELECT pg_catalog.pg_advisory_unlock_all(), ` + hexUTF8("current_user") + `, ` + hexUTF8("session_user") + `, ` +
	`ARRAY(SELECT ` + hexUTF8("pg_catalog.current_setting("+fromHexUTF8("a.n")+", true)") + ` FROM pg_catalog.unnest($1) AS a(n)), ` +
	`p.s, p.c FROM (SELECT pg_catalog.count(*) FILTER (WHERE q.from_sql), pg_catalog.count(*) ` +
	`FROM pg_catalog.pg_prepared_statement() AS q) AS p(s, c)`

// checkFixed are the settings laneCheckSQL reads on every connection:
// tracked, then watched.
var checkFixed = append(append([]string{}, trackedSettings...), watchedSettings...)

// textArrayOID is the type of laneCheckSQL's and laneApplySQL's parameters
// (text[]).
const textArrayOID = 1009

// Reasons a lane connection is discarded (the reason label of
// txlane_lane_connections_discarded_total).
const (
	discardRole       = "role"                // current_user or session_user is not what txlane set
	discardSettings   = "settings"            // a setting differs from what txlane set or the login value
	discardStatements = "prepared_statements" // a statement made by SQL PREPARE, or one of txlane's missing
	discardReported   = "reported_setting"    // the server reported a setting change (ParameterStatus)
	discardNotified   = "notification"        // a notification arrived: the session LISTENs
	discardTxOpen     = "transaction"         // the read left a transaction block open
	discardCheck      = "check_failed"        // laneCheckSQL failed or answered out of shape
)

// checkExpect is what laneCheckSQL must find on a connection: the settings
// it reads (checkFixed, then the custom ones) and the value of each.
type checkExpect struct {
	names []string
	want  []*string
	// param is names as laneCheckSQL's parameter (a text[]).
	param []byte
}

// expected says what laneCheckSQL must find on c: for each setting, the
// value txlane applied (c.settings), or for a custom setting txlane reset,
// the value the reset gave (c.resetTo), or else the value the connection
// logged in with (c.base); the custom settings are those of c.settings and
// c.resetTo that checkFixed lacks.
func (c *laneConn) expected() *checkExpect {
	if c.check != nil {
		return c.check
	}
	e := &checkExpect{names: append([]string{}, checkFixed...)}
	seen := map[string]bool{settingRole: true}
	for _, n := range checkFixed {
		seen[n] = true
	}
	var custom []string
	for _, m := range []map[string]string{c.settings, c.resetTo} {
		for n := range m {
			if !seen[n] {
				seen[n] = true
				custom = append(custom, n)
			}
		}
	}
	sort.Strings(custom)
	e.names = append(e.names, custom...)
	for _, n := range e.names {
		if v, ok := c.settings[n]; ok {
			e.want = append(e.want, &v)
		} else if v, ok := c.resetTo[n]; ok {
			e.want = append(e.want, &v)
		} else {
			e.want = append(e.want, c.base[n])
		}
	}
	e.param = textArray(hexed(e.names))
	c.check = e
	return e
}

// writeCheck writes laneCheckSQL's execution behind a read, in the same
// write and after the read's Sync, without flushing: parsed first when the
// unnamed statement does not hold it (simpleRead: the read was a simple
// Query, which replaced it). It returns what the check must find, for
// verify.
func (c *laneConn) writeCheck(simpleRead bool) *checkExpect {
	if simpleRead {
		c.checkReady = false
	}
	if !c.checkReady {
		wire.WriteMsg(c.w, &pgproto3.Parse{Query: laneCheckSQL, ParameterOIDs: []uint32{textArrayOID}})
	}
	e := c.expected()
	wire.WriteMsg(c.w, &pgproto3.Bind{
		Parameters: [][]byte{e.param},
		// The settings' values come as a binary array: no quoting to undo.
		ResultFormatCodes: []int16{0, 0, 0, 1, 0, 0},
	})
	wire.WriteMsg(c.w, &pgproto3.Execute{})
	wire.WriteMsg(c.w, &pgproto3.Sync{})
	return e
}

// verify reads the answer to writeCheck and compares it with what txlane
// set. It returns "" when the connection may go back to the pool, else the
// reason to discard it (discard*) and a detail: for settings, the names that
// differ (never values: they may be the client's data).
func (c *laneConn) verify(e *checkExpect) (reason, detail string) {
	var row [][]byte
	err := c.readAnswer(func(values [][]byte) {
		row = make([][]byte, len(values))
		for i, v := range values {
			if v != nil {
				row[i] = append([]byte{}, v...)
			}
		}
	})
	if err != nil {
		return discardCheck, err.Error()
	}
	c.checkReady = true
	if c.tainted {
		return discardNotified, ""
	}
	if len(row) != 6 || row[1] == nil || row[2] == nil || row[3] == nil || row[4] == nil || row[5] == nil {
		return discardCheck, fmt.Sprintf("answer of %d columns", len(row))
	}
	role := c.login
	if r, ok := c.settings[settingRole]; ok {
		role = r
	}
	cu, err1 := fromHex(string(row[1]))
	su, err2 := fromHex(string(row[2]))
	if err1 != nil || err2 != nil {
		return discardCheck, "current_user, session_user not in hex"
	}
	if cu != role || su != c.login {
		return discardRole, ""
	}
	got, err := decodeTextArray(row[3])
	if err == nil {
		err = unhexAll(got)
	}
	if err != nil || len(got) != len(e.names) {
		return discardCheck, fmt.Sprintf("settings: %v (%d values for %d names)", err, len(got), len(e.names))
	}
	var differ []string
	for i, n := range e.names {
		w, g := e.want[i], got[i]
		if (w == nil) != (g == nil) || w != nil && *w != *g {
			differ = append(differ, n)
		}
	}
	if len(differ) > 0 {
		return discardSettings, strings.Join(differ, ", ")
	}
	fromSQL, err1 := strconv.Atoi(string(row[4]))
	all, err2 := strconv.Atoi(string(row[5]))
	if err1 != nil || err2 != nil {
		return discardCheck, "statement counts"
	}
	want := c.stmts.order.Len()
	if c.applyReady {
		want++ // laneApplyStmt
	}
	if fromSQL != 0 || all != want {
		return discardStatements, fmt.Sprintf("%d made by SQL PREPARE; %d in all, %d expected", fromSQL, all, want)
	}
	return "", ""
}

// decodeTextArray decodes a one-dimensional text[] in binary format (NULL
// elements as nil).
func decodeTextArray(b []byte) ([]*string, error) {
	bad := errors.New("malformed array")
	if len(b) < 12 {
		return nil, bad
	}
	ndim := int32(binary.BigEndian.Uint32(b))
	b = b[12:] // ndim, has-null flag, element type
	if ndim == 0 {
		return nil, nil
	}
	if ndim != 1 || len(b) < 8 {
		return nil, bad
	}
	n := int(int32(binary.BigEndian.Uint32(b)))
	b = b[8:] // length, lower bound
	if n < 0 {
		return nil, bad
	}
	out := make([]*string, 0, n)
	for i := 0; i < n; i++ {
		if len(b) < 4 {
			return nil, bad
		}
		l := int(int32(binary.BigEndian.Uint32(b)))
		b = b[4:]
		if l < 0 {
			out = append(out, nil)
			continue
		}
		if l > len(b) {
			return nil, bad
		}
		v := string(b[:l])
		out = append(out, &v)
		b = b[l:]
	}
	return out, nil
}

// laneDialSQL reads, once per connection right after login, who the
// connection is and what it can become (see lanePrivileges), then the values
// of the tracked and watched settings at login (laneConn.base); the login
// user and the values in hex (hexUTF8), as laneCheckSQL reads them.
func laneDialSQL() string {
	var b strings.Builder
	b.WriteString(`SELECT ` + hexUTF8("session_user") + `, r.rolinherit, r.rolbypassrls, r.rolcreaterole, ` +
		`EXISTS (SELECT 1 FROM pg_catalog.pg_roles s WHERE s.rolsuper AND pg_catalog.pg_has_role(session_user, s.oid, 'MEMBER')), ` +
		`(SELECT pg_catalog.string_agg(p.rolname, ', ' ORDER BY p.rolname) FROM pg_catalog.pg_roles p ` +
		`WHERE pg_catalog.starts_with(p.rolname, 'pg_') AND pg_catalog.pg_has_role(session_user, p.oid, 'MEMBER'))`)
	for _, n := range checkFixed {
		b.WriteString(", ")
		b.WriteString(hexUTF8("pg_catalog.current_setting(" + quoteLiteral(n) + ", true)"))
	}
	b.WriteString(" FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) session_user")
	return b.String()
}

// laneDialValues decodes in place the values laneDialSQL read in hex (the
// login user, then the settings: row[6:]) and returns the login user.
func laneDialValues(row [][]byte) (login string, err error) {
	for i, v := range row {
		if v == nil || i > 0 && i < 6 {
			continue
		}
		if row[i], err = hex.DecodeString(string(v)); err != nil {
			return "", err
		}
	}
	return string(row[0]), nil
}

// lanePrivileges is what the read pool's login user can do beyond the client
// roles it takes with SET ROLE. A read's hidden code can return to the login
// user (set_config('role', 'none')) or take any role the login user is a
// member of, for the rest of its statement.
type lanePrivileges struct {
	// superuser: the login user is a superuser, or a member of a superuser
	// role (it can SET ROLE to one). Such a connection serves only clients
	// whose current role is a superuser (session.acquireLane).
	superuser bool
	// inherit: the login user has the privileges of the roles it is a member
	// of (INHERIT), so resetting the role in a read gives every client
	// role's privileges at once.
	inherit, bypassRLS, createRole bool
	// predefined lists the predefined roles (pg_read_server_files,
	// pg_execute_server_program, ...) the login user is a member of.
	predefined string
}

// warnings says what of p README's read-pool set-up advises against.
func (p lanePrivileges) warnings() []string {
	var out []string
	if p.inherit {
		out = append(out, "INHERIT (a read resetting its role has the privileges of every client role: use NOINHERIT)")
	}
	if p.bypassRLS {
		out = append(out, "BYPASSRLS")
	}
	if p.createRole {
		out = append(out, "CREATEROLE (it can grant itself other roles)")
	}
	if p.predefined != "" {
		out = append(out, "member of "+p.predefined)
	}
	return out
}

// apply runs laneApplySQL with names and values (see applyPlan) and records
// what the server reports: c.settings then holds each applied value as the
// server has it, and c.resetTo what each reset gave.
func (c *laneConn) apply(names []string, values []*string) error {
	if !c.applyReady {
		wire.WriteMsg(c.w, &pgproto3.Parse{Name: laneApplyStmt, Query: laneApplySQL,
			ParameterOIDs: []uint32{textArrayOID, textArrayOID}})
	}
	wire.WriteMsg(c.w, &pgproto3.Bind{PreparedStatement: laneApplyStmt,
		Parameters: [][]byte{textArray(hexed(names)), textArray(hexed(values))}})
	wire.WriteMsg(c.w, &pgproto3.Execute{})
	wire.WriteMsg(c.w, &pgproto3.Sync{})
	if err := c.w.Flush(); err != nil {
		return err
	}
	var got []string
	var bad error
	err := c.readAnswer(func(v [][]byte) {
		if len(v) == 1 {
			s, err := fromHex(string(v[0]))
			bad = cmp.Or(bad, err)
			got = append(got, s)
		}
	})
	err = cmp.Or(err, bad)
	if err != nil {
		return err
	}
	c.applyReady = true
	c.check = nil // settings and resetTo change below
	if len(got) != len(names) {
		return fmt.Errorf("applying %d settings: %d values back", len(names), len(got))
	}
	for i, n := range names {
		if values[i] == nil {
			delete(c.settings, n)
			c.resetTo[n] = got[i]
		} else {
			c.settings[n] = got[i]
			delete(c.resetTo, n)
		}
	}
	return nil
}

// acquireLane takes a vector-lane connection for the session's current
// read. A connection whose login user is (or can become) a superuser serves
// only a client whose current role is a superuser: any other client's read
// could take the superuser's powers by resetting its role in hidden code
// (set_config('role', 'none', ...)). And a connection without cannot take a
// superuser's role. Either mismatch is an unavailable lane for this client
// (read_pool.on_unavailable).
func (s *session) acquireLane() (*puddle.Resource[*laneConn], error) {
	res, err := s.srv.lanes.acquire(context.Background(), s.database())
	if err != nil {
		return nil, err
	}
	c := res.Value()
	switch {
	case c.priv.superuser && !s.snapshot.superuser:
		s.srv.lanes.release(res, false)
		return nil, fmt.Errorf("%w: the read pool's user %q is a superuser or a member of one, and the client's role is not: the lane serves it only superuser clients", errLaneRole, c.login)
	case !c.priv.superuser && s.snapshot.superuser:
		s.srv.lanes.release(res, false)
		return nil, fmt.Errorf("%w: the client's role is a superuser, which the read pool's user %q cannot take", errLaneRole, c.login)
	}
	return res, nil
}

// errLaneRole: the lane cannot serve the client's role, a matter of
// configuration logged once per pool at its connections' login (lane.go),
// not at each read.
var errLaneRole = errors.New("vector lane does not serve this role")

// unhexAll decodes in place values laneCheckSQL read in hex (nil stays nil).
func unhexAll(values []*string) error {
	for _, v := range values {
		if v == nil {
			continue
		}
		s, err := fromHex(*v)
		if err != nil {
			return err
		}
		*v = s
	}
	return nil
}
