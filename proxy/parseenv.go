package proxy

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/proxy/wire"
)

// A prepared statement keeps what the settings in force when it was parsed
// made of its text: PostgreSQL's lexer reads string constants with
// standard_conforming_strings and backslash_quote, the analyzer folds typed
// constants with their input functions ('01/02/2026'::date under DateStyle,
// a timestamptz under TimeZone and timezone_abbreviations, an interval under
// IntervalStyle, an array under array_nulls, xml under xmloption, money
// under lc_monetary), rewrites "x = NULL" under transform_null_equals, and
// the server converts the text itself from client_encoding when the Parse
// message arrives. Executing the statement later uses that parse whatever
// these settings are by then (PostgreSQL "PREPARE": "the prepared statement
// is parsed, analyzed, and rewritten" when PREPARE runs). In transaction
// mode a client's statement can meet a backend where another client's
// statement of the same name and text was parsed under other settings, or
// must be parsed again on another backend after the client changed them: so
// txlane records these settings with each statement (its parse
// environment), shares a statement only between equal environments, and
// parses a statement again under the environment it was first parsed in.
//
// search_path, the role and row_security are not part of it: PostgreSQL
// itself analyzes a cached statement again when they differ from those it
// was analyzed under (plancache.c, RevalidateCachedQuery), so any backend
// gives the same answer under the client's current values.
var parseParams = []string{
	"client_encoding", "DateStyle", "IntervalStyle", "TimeZone", "timezone_abbreviations",
	"standard_conforming_strings", "backslash_quote", "transform_null_equals",
	"array_nulls", "xmloption", "lc_monetary",
}

// envSep separates the values of a parse environment string: one value per
// parseParams entry, in order; "" is the pool's login value (the setting
// is not among the client's session settings; for the movable parameters
// the client's own login value is used instead, which is never "").
const envSep = "\x00"

// isParseParam reports whether name (any letter case, as PostgreSQL's
// setting names) is one of parseParams.
func isParseParam(name string) bool {
	for _, p := range parseParams {
		if strings.EqualFold(p, name) {
			return true
		}
	}
	return false
}

// envChange says what statement st (all its parts) may do to the client's
// parse environment: local, a change that ends with the transaction (SET
// LOCAL, set_config(…, true)); session, one that outlives it (SET, RESET,
// RESET ALL, DISCARD ALL, set_config(…, false), or code txlane cannot see
// into: DO, CALL, a function that may set a setting by a name that is no
// constant, a statement it cannot classify).
func envChange(st *policy.Statement) (local, session bool) {
	eachPart(st, func(p *policy.Statement) {
		// NOTE: a text the classifier could not parse (Unknown without
		// FlagMayChangeSession: PostgreSQL's own parser refuses it too, so
		// it runs nothing) changes nothing; what txlane cannot attribute
		// (opaqueStmt: an Execute of an unknown portal, a function call)
		// may change anything.
		if p.Class == policy.Unknown && p.Flags.Has(policy.FlagMayChangeSession) || p.RunsUnknownCode() || p.Discard == policy.DiscardAll {
			session = true
		}
		for _, set := range p.Settings {
			switch {
			case set.ResetAll:
				session = true
			case isParseParam(set.Name) && set.Local:
				local = true
			case isParseParam(set.Name):
				session = true
			}
		}
		if p.Flags.Has(policy.FlagMayChangeSession) {
			switch {
			case p.SetConfigLocal:
				for _, c := range p.ConfigCalls {
					if isParseParam(c.Name) {
						local = true
					}
				}
			case len(p.SetConfig) > 0:
				for _, n := range p.SetConfig {
					if isParseParam(n) {
						session = true
					}
				}
			case p.Class != policy.Session:
				session = true // a function, DO, CALL: any setting
			}
		}
	})
	return local, session
}

// envState tracks whether txlane knows the client's parse environment
// (transaction mode).
//
// Invariant: the environment is known when gen equals clean and local is
// clear: no statement that may change one of parseParams has been sent since
// the pin check last read the session's settings (s.settings), and none
// changed one for the current transaction only.
type envState struct {
	gen, clean atomic.Uint64
	local      atomic.Bool
	cache      atomic.Pointer[envCache]

	// mu guards prep, freed and recs: the SQL-level PREPAREs sent that no
	// pin check answered has seen yet: name → the environment they were
	// sent under ("" and known false when it was not known); freed: names
	// DEALLOCATE or DISCARD ALL dropped since. Each entry carries recs as
	// it was made, so that a check sent before it leaves it in place.
	mu    sync.Mutex
	prep  map[string]stmtEnv
	freed map[string]uint64
	recs  uint64
	// sqlUnknown: the last pin check found an SQL-level statement whose
	// environment is not known.
	sqlUnknown atomic.Bool

	// checkMu guards checking, checked and checkRec: the env.gen a pin
	// check sent and not yet answered covers (0: none), a channel closed
	// when it is answered, and recs as it was sent.
	checkMu  sync.Mutex
	checking uint64
	checked  chan struct{}
	checkRec uint64
}

// checkSent records that a pin check covering gen was sent.
func (e *envState) checkSent(gen uint64) {
	e.mu.Lock()
	rec := e.recs
	e.mu.Unlock()
	e.checkMu.Lock()
	defer e.checkMu.Unlock()
	e.checking = gen
	e.checkRec = rec
	if e.checked == nil {
		e.checked = make(chan struct{})
	}
}

// checkDone records that the pin check in flight was answered (or failed).
func (e *envState) checkDone() {
	e.checkMu.Lock()
	defer e.checkMu.Unlock()
	e.checking = 0
	if e.checked != nil {
		close(e.checked)
		e.checked = nil
	}
}

// pending returns the channel closed when the pin check in flight answers,
// if it covers gen; nil otherwise.
func (e *envState) pending(gen uint64) <-chan struct{} {
	e.checkMu.Lock()
	defer e.checkMu.Unlock()
	if e.checked != nil && e.checking >= gen {
		return e.checked
	}
	return nil
}

// envWaitLimit bounds how long a request waits for a pin check in flight
// to tell its client's parse environment.
const envWaitLimit = 5 * time.Second

// envMark is the client's parse environment as a request found it before
// any of its statements were noted (sendPrimary), resolved on first use:
// what the request's own statements change counts only from the message
// that runs them on (moved).
type envMark struct {
	s     *session
	gen   uint64
	local bool
	moved bool
	done  bool
	env   string
	known bool
	// fresh: nothing of the client's request has been written yet, and it
	// began on a backend idle outside a transaction block (see
	// appendReparse).
	fresh bool
	// parsing: the statement is made to exist only for the client's Parse
	// of its name, which fails there (see appendReparse).
	parsing bool
	// block: the request began alone on a backend inside a transaction
	// block, and nothing of it sent so far may have ended that block or
	// changed its savepoints (see appendReparse).
	block bool
}

// at records where the request starts: fresh, nothing of it has been
// written yet; p is the backend it goes to, with it in flight.
func (m *envMark) at(p *primaryConn, fresh bool) {
	m.fresh = fresh && p.TxStatus() == TxIdle && p.inFlight() == 1
	// NOTE: txlane's own queries may be in flight ahead (the read of
	// txlane.unit behind a request, a pin check): none ends a transaction
	// block or leaves a savepoint of its own behind.
	m.block = fresh && p.TxStatus() == TxActive && p.ownAhead()
}

// ownAhead reports whether every request in flight on p but the last (the
// one being sent) is a query of txlane's own.
func (p *primaryConn) ownAhead() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, r := range p.mu.pending {
		if i < len(p.mu.pending)-1 && r.internal == nil {
			return false
		}
	}
	return true
}

// markEnv takes the client's envMark; call it before noting the request's
// statements.
func (s *session) markEnv() envMark {
	return envMark{s: s, gen: s.env.gen.Load(), local: s.env.local.Load()}
}

// step records that the message about to be sent runs st.
func (m *envMark) step(st *policy.Statement) {
	if st != nil && m.s.txMode && !m.moved {
		local, session := envChange(st)
		m.moved = local || session
	}
	if st != nil && m.block {
		eachPart(st, func(p *policy.Statement) {
			m.block = m.block && p.Class != policy.TxControl && p.Class != policy.Unknown && !p.RunsUnknownCode()
		})
	}
}

// get returns the environment a Parse sent now runs under, and whether
// txlane knows it. When it is unknown only because the pin check that
// reads it back is still in flight (txlane sends it when the client is
// idle, and the client's next request follows it on the same connection),
// it waits for that answer first (the caller holds the backend's wsem:
// nothing else of the client's is sent meanwhile).
func (m *envMark) get() (string, bool) {
	s := m.s
	if !s.txMode {
		return "", true
	}
	if m.moved || m.local {
		return "", false
	}
	if !m.done {
		m.done = true
		if s.env.clean.Load() != m.gen {
			if ch := s.env.pending(m.gen); ch != nil {
				t := time.NewTimer(envWaitLimit)
				select {
				case <-ch:
				case <-t.C:
				}
				t.Stop()
			}
		}
		if s.env.clean.Load() == m.gen {
			m.env, m.known = s.envOfCached(s.settings.Load()), true
		}
	}
	return m.env, m.known
}

type envCache struct {
	ss  *sessionSettings
	env string
}

// stmtEnv is the parse environment of one statement (rec: see envState.mu).
type stmtEnv struct {
	env   string
	known bool
	rec   uint64
}

// noteEnv records what st, sent to the client's backend, may do to its
// parse environment, and the environment of the SQL-level PREPAREs it runs
// (client goroutine, or a rerouted write's, before st is sent).
func (s *session) noteEnv(st *policy.Statement) {
	if !s.txMode {
		return
	}
	local, session := envChange(st)
	if local {
		s.env.local.Store(true)
	}
	if session {
		s.env.gen.Add(1)
		// The pin check reads the settings back (it follows any statement
		// that may change a session-level setting; once more is harmless).
		s.dirtyGen.Add(1)
	}
}

// notePrepares records the environment of the SQL-level PREPAREs st runs,
// and the statements its DEALLOCATE or DISCARD ALL drop (client goroutine,
// after notePin, before st is sent: it may wait for a pin check in
// flight, see parseEnvWait).
func (s *session) notePrepares(st *policy.Statement) {
	if !s.txMode {
		return
	}
	eachPart(st, func(p *policy.Statement) {
		if d := p.Deallocate; d != nil {
			s.freeSQLPrepared(d.Name, d.All)
		}
		if p.Discard == policy.DiscardAll {
			s.freeSQLPrepared("", true)
		}
		if p.Command == "PREPARE" && p.PrepareName != "" {
			s.notePrepare(p.PrepareName)
		}
	})
}

func (s *session) freeSQLPrepared(name string, all bool) {
	s.env.mu.Lock()
	defer s.env.mu.Unlock()
	if s.env.freed == nil {
		s.env.freed = map[string]uint64{}
	}
	s.env.recs++
	if all {
		for n := range s.settings.Load().preparedMap() {
			s.env.freed[n] = s.env.recs
		}
		for n := range s.env.prep {
			s.env.freed[n] = s.env.recs
		}
		clear(s.env.prep)
		return
	}
	s.env.freed[name] = s.env.recs
	delete(s.env.prep, name)
}

// notePrepare records the environment a PREPARE of name runs under. A name
// the session holds already (and has not dropped since) makes the PREPARE
// fail (42P05): the statement it has keeps its environment.
func (s *session) notePrepare(name string) {
	m := s.markEnv()
	env, known := m.get()
	s.env.mu.Lock()
	defer s.env.mu.Unlock()
	if _, has := s.settings.Load().preparedMap()[name]; has && s.env.freed[name] == 0 {
		return
	}
	if _, has := s.env.prep[name]; has {
		return
	}
	if s.env.prep == nil {
		s.env.prep = map[string]stmtEnv{}
	}
	s.env.recs++
	s.env.prep[name] = stmtEnv{env: env, known: known, rec: s.env.recs}
}

// settleEnv gives ss, the session's settings the pin check just read (old
// before it), the parse environment of each SQL-level statement, and its
// own current one; it says whether a statement's is unknown (the client is
// pinned: parse_settings). gen is env.gen as it was when the check was
// sent. Relay goroutine.
func (s *session) settleEnv(old, ss *sessionSettings, gen uint64) (unknown bool) {
	ss.env = s.envOf(ss)
	s.env.checkMu.Lock()
	seen := s.env.checkRec
	s.env.checkMu.Unlock()
	s.env.mu.Lock()
	defer s.env.mu.Unlock()
	for name := range ss.prepared {
		if e, ok := s.env.prep[name]; ok && e.rec <= seen {
			if e.known {
				ss.setPrepEnv(name, e.env)
			}
		} else if e, ok := old.prepEnvOf(name); ok && s.env.freed[name] == 0 && old.preparedMap()[name] == ss.prepared[name] {
			ss.setPrepEnv(name, e)
		}
		if _, ok := ss.prepEnvOf(name); !ok {
			unknown = true
		}
	}
	// What the check saw is settled; what came after it stays for the next.
	for name, e := range s.env.prep {
		if e.rec <= seen {
			delete(s.env.prep, name)
		}
	}
	for name, rec := range s.env.freed {
		if rec <= seen {
			delete(s.env.freed, name)
		}
	}
	s.env.clean.Store(gen)
	return unknown
}

func (ss *sessionSettings) setPrepEnv(name, env string) {
	if ss.prepEnv == nil {
		ss.prepEnv = map[string]string{}
	}
	ss.prepEnv[name] = env
}

// prepEnvOf returns the parse environment of SQL-level statement name.
func (ss *sessionSettings) prepEnvOf(name string) (string, bool) {
	if ss == nil {
		return "", false
	}
	e, ok := ss.prepEnv[name]
	return e, ok
}

// envOf returns the parse environment of a session whose settings are ss.
func (s *session) envOf(ss *sessionSettings) string {
	var b strings.Builder
	for i, p := range parseParams {
		if i > 0 {
			b.WriteString(envSep)
		}
		v, ok := ss.get(p)
		if !ok {
			v = s.own[p]
		}
		b.WriteString(v)
	}
	return b.String()
}

// parseEnvNow returns the client's parse environment as it is now, and
// whether txlane knows it (see envState). In session mode it is "": a
// client's statements never meet another's on its backend, nor move.
func (s *session) parseEnvNow() (string, bool) {
	if !s.txMode {
		return "", true
	}
	if s.env.local.Load() || s.env.gen.Load() != s.env.clean.Load() {
		return "", false
	}
	return s.envOfCached(s.settings.Load()), true
}

// envOfCached is envOf, remembered for the last ss.
func (s *session) envOfCached(ss *sessionSettings) string {
	if c := s.env.cache.Load(); c != nil && c.ss == ss {
		return c.env
	}
	env := s.envOf(ss)
	s.env.cache.Store(&envCache{ss: ss, env: env})
	return env
}

// unknownEnvs numbers the statements parsed under an environment txlane
// does not know: each gets a key of its own, which no other statement
// shares.
var unknownEnvs atomic.Uint64

// stampEnv records the environment st is parsed under (em's; nil: the
// client's now) and gives it the key of its text in that environment. A
// statement parsed under an unknown environment pins the client while it
// exists (parse_settings).
func (s *session) stampEnv(st *preparedStmt, em *envMark) {
	if st.stamped {
		return
	}
	st.stamped = true
	var env string
	var known bool
	if em != nil {
		env, known = em.get()
	} else {
		env, known = s.parseEnvNow()
	}
	st.env, st.envUnknown = env, !known
	if !known {
		// The pin check after the request counts the pin (parse_settings).
		s.dirtyGen.Add(1)
		env = "\x01unknown" + strconv.FormatUint(unknownEnvs.Add(1), 10)
	}
	if env != "" {
		// NOTE: from the text's key, not the text: a text may carry a long
		// inline vector literal, hashed once already.
		m := &s.envKeys
		if m.env != env || m.text != st.key {
			m.env, m.text, m.key = env, st.key, makeStmtKeyEnv(env, string(st.key), nil)
		}
		st.key = m.key
	}
}

// envKeyMemo is the last key stampEnv made: a client that parses the same
// text under the same environment again (an unnamed statement per
// request) gets it without a hash and an allocation. The client goroutine
// owns it.
type envKeyMemo struct {
	env       string
	text, key stmtKey
}

// envPinned reports whether the client holds a statement whose parse
// environment txlane does not know: a protocol-level one in its registry
// (parsed while a change of one of parseParams was unread), or an SQL-level
// one (the last pin check said so). Such a client keeps its backend.
func (s *session) envPinned() bool {
	if !s.txMode {
		return false
	}
	return s.reg.unknownEnvs() > 0 || s.env.sqlUnknown.Load()
}

// envSetSQL returns set_config calls (comma-separated; "" when nothing
// differs) that make the value of each of parseParams whose value differs
// between from and to that of to, for the current transaction only with
// local. A value "" (the pool's login value) is read from pg_settings'
// reset_val.
func envSetSQL(from, to string, local bool) string {
	fv, tv := strings.Split(from, envSep), strings.Split(to, envSep)
	if len(fv) != len(parseParams) || len(tv) != len(parseParams) {
		return ""
	}
	var sets []string
	for i, p := range parseParams {
		if fv[i] == tv[i] {
			continue
		}
		v := textLiteral(tv[i])
		if tv[i] == "" {
			v = "(SELECT reset_val FROM pg_catalog.pg_settings WHERE name OPERATOR(pg_catalog.=) " + quoteLiteral(p) + ")"
		}
		sets = append(sets, "pg_catalog.set_config("+quoteLiteral(p)+", "+v+", "+strconv.FormatBool(local)+")")
	}
	return strings.Join(sets, ", ")
}

// envAnyValues is a parse environment none of whose values is a setting's:
// envSetSQL from it sets every one.
var envAnyValues = strings.Repeat("\x01"+envSep, len(parseParams)-1) + "\x01"

// envStmt is the statement name txlane's transaction-local set_config calls
// around a Parse run through (not the unnamed statement: the Parse they
// surround may be the client's unnamed one).
const envStmt = "txlane_parse_env"

// appendEnvRun appends, hidden from the client, the messages that run
// "SELECT sets" on txlane's own statement and portal (see appendRun), and
// closes both. The first Closes drop what an earlier run left when the
// server skipped the rest of its request after an error.
func appendEnvRun(out []byte, sent []sentMsg, sets string) ([]byte, []sentMsg) {
	return appendOwnSQL(out, sent, "SELECT "+sets)
}

// envSavepoint is the savepoint txlane prepares a statement again under
// inside a client's transaction block (see appendReparse).
const envSavepoint = "txlane_parse_env"

// appendOwnSQL is appendEnvRun for any one statement sql.
func appendOwnSQL(out []byte, sent []sentMsg, sql string) ([]byte, []sentMsg) {
	out = appendClosePortal(out, ownPortal)
	sent = append(sent, sentMsg{typ: wire.Close, kind: wire.ObjectPortal, hidden: true})
	out = wire.AppendCloseStatement(out, envStmt)
	sent = append(sent, sentMsg{typ: wire.Close, kind: wire.ObjectStatement, hidden: true})
	out = wire.AppendParse(out, envStmt, sql, nil)
	sent = append(sent, sentMsg{typ: wire.Parse, hidden: true})
	out = appendBindExecute(out, envStmt, ownPortal)
	sent = append(sent, sentMsg{typ: wire.Bind, hidden: true}, sentMsg{typ: wire.Execute, hidden: true})
	out = appendClosePortal(out, ownPortal)
	sent = append(sent, sentMsg{typ: wire.Close, kind: wire.ObjectPortal, hidden: true})
	out = wire.AppendCloseStatement(out, envStmt)
	sent = append(sent, sentMsg{typ: wire.Close, kind: wire.ObjectStatement, hidden: true})
	return out, sent
}

func appendBindExecute(out []byte, stmt, portal string) []byte {
	out, _ = (&pgproto3.Bind{DestinationPortal: portal, PreparedStatement: stmt}).Encode(out)
	out, _ = (&pgproto3.Execute{Portal: portal}).Encode(out)
	return out
}

func appendClosePortal(out []byte, portal string) []byte {
	out, _ = (&pgproto3.Close{ObjectType: wire.ObjectPortal, Name: portal}).Encode(out)
	return out
}

// put sets the client's statement name to st (nil: removes it).
func (r *registry) put(name string, st *preparedStmt) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delLocked(name)
	if st != nil {
		r.stmts[name] = st
		if st.envUnknown {
			r.unknown++
		}
	}
}

func (r *registry) delLocked(name string) {
	if old := r.stmts[name]; old != nil && old.envUnknown {
		r.unknown--
	}
	delete(r.stmts, name)
}

// unknownEnvs counts the client's statements whose parse environment is
// unknown.
func (r *registry) unknownEnvs() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unknown
}

// laneEnvOK reports whether a read may parse st (nil: a statement the
// request parses) on a vector-lane connection, which has the client's
// current settings: the client's parse environment is known, and st, if
// parsed already, was parsed under it. Otherwise the request goes to the
// primary, where appendReparse prepares st under its own environment.
func (p *planner) laneEnvOK(st *preparedStmt) bool {
	if p.env == nil {
		return true
	}
	env, known := p.env()
	if !known {
		return false
	}
	return st == nil || !st.stamped || !st.envUnknown && st.env == env
}

// appendReparse appends, hidden from the client, the Parse that prepares
// st under the client's name *name on a backend that lacks it. A statement
// parsed under another environment than the client's current one is parsed
// between transaction-local set_config calls that give it its own and then
// restore the client's (ParameterStatus reports only values that differ at
// ReadyForQuery, so the client sees none). When txlane knows either
// environment not, no Parse can be exact: the server is made to raise
// 0A000 instead, and the request fails there. parsed says whether a Parse
// was appended (the caller records the statement as the backend's only
// then).
func (s *session) appendReparse(p *primaryConn, out []byte, sent []sentMsg, name *string, st *preparedStmt, em *envMark) (_ []byte, _ []sentMsg, parsed bool) {
	parse := func() {
		parsed = true
		out = wire.AppendParse(out, *name, st.sql, st.paramOIDs)
		sent = append(sent, sentMsg{typ: wire.Parse, hidden: true, injected: name})
	}
	if !s.txMode || !st.stamped {
		parse()
		return out, sent, parsed
	}
	env, known := em.get()
	switch {
	case known && !st.envUnknown && st.env == env:
		parse()
	case known && !st.envUnknown:
		reparses.Add(1)
		out, sent = appendEnvRun(out, sent, envSetSQL(env, st.env, true))
		parse()
		out, sent = appendEnvRun(out, sent, envSetSQL(st.env, env, true))
	case !st.envUnknown && em.fresh:
		// The client's current values are unknown, so they cannot be set
		// back: the Parse runs in an implicit transaction of its own,
		// before anything of the request, whose end (a hidden Sync) ends
		// the transaction-local values.
		reparses.Add(1)
		out, sent = appendEnvRun(out, sent, envSetSQL(envAnyValues, st.env, true))
		parse()
		out = wire.AppendSync(out)
		sent = append(sent, sentMsg{typ: wire.Sync, hidden: true})
	case !st.envUnknown && em.block && !em.parsing:
		// Inside a transaction block whose current values txlane has not
		// read: the Parse runs between a savepoint of txlane's and a
		// rollback to it, which gives every setting back the value it had
		// (a change inside a subtransaction ends with it, SET LOCAL and
		// set_config(…, true) too: PostgreSQL "SET", "ROLLBACK TO
		// SAVEPOINT"), while the statement stays (prepared statements are
		// not transactional). The savepoint is released after.
		reparses.Add(1)
		out, sent = appendOwnSQL(out, sent, "SAVEPOINT "+envSavepoint)
		out, sent = appendEnvRun(out, sent, envSetSQL(envAnyValues, st.env, true))
		parse()
		out, sent = appendOwnSQL(out, sent, "ROLLBACK TO SAVEPOINT "+envSavepoint)
		out, sent = appendOwnSQL(out, sent, "RELEASE SAVEPOINT "+envSavepoint)
	case em.parsing:
		// The client parses a name it holds, which fails: PostgreSQL parses
		// and analyses the new text, and only then finds the name taken
		// (exec_parse_message, StorePreparedStatement: 42P05). Any
		// statement under the name gets the client the answer its own
		// backend gives, so a placeholder stands in, parsed under any
		// settings. The backend is recorded as holding something unknown
		// under the name: its next use closes it and prepares the client's.
		out = wire.AppendParse(out, *name, parsePlaceholderSQL, nil)
		sent = append(sent, sentMsg{typ: wire.Parse, hidden: true, injected: name})
		p.held.set(*name, unknownStmt)
	default:
		out, sent = s.appendRaise(p, out, sent, &wire.Error{Severity: "ERROR", Code: CodeFeatureNotSupported,
			Message: "txlane cannot prepare statement " + quoteIdent(*name) + " again under the settings it was parsed with",
			Detail:  "The statement must be prepared again on this server connection, and a change of DateStyle, TimeZone or another setting that decides how a statement is parsed has not been read back from the server yet.",
			Hint:    "Wait for the result of a statement that changes such a setting before sending the next request, or prepare the statement again."})
	}
	// NOTE: without a Parse the backend does not hold the statement (a stale
	// one was closed): the caller records nothing, so that the next request
	// that needs it prepares it.
	return out, sent, parsed
}

// parsePlaceholderSQL is the statement that holds a client's statement
// name on a backend for a Parse of that name that must fail (see
// appendReparse): it parses under any settings, and runs nothing.
const parsePlaceholderSQL = "SELECT /* txlane: a placeholder for a statement name the client holds */"

// reparses counts the statements txlane prepared again under the parse
// environment they were first parsed in, other than the client's current
// one (tests).
var reparses atomic.Int64

// samePrepared reports whether have and want hold SQL-level statement name
// with the same text, parsed under the same known environment.
func samePrepared(have, want *sessionSettings, name string) bool {
	if have.preparedMap()[name] != want.preparedMap()[name] {
		return false
	}
	he, hok := have.prepEnvOf(name)
	we, wok := want.prepEnvOf(name)
	return hok && wok && he == we
}

// preparesSQL returns the PREPAREs (";"-separated) that give a backend whose
// settings are have the SQL-level statements of want it lacks and that ran
// under the session's own environment (want.env, which the backend has
// once the rest of moveState's query ran). apart are the queries, each to
// be sent alone and in order, that prepare the others under the
// environment their client's PREPARE ran under: session-level set_config
// calls of what differs, the PREPARE, and set_config calls back to
// want.env. Alone, since PostgreSQL lexes a whole query string before it
// runs any of it (standard_conforming_strings, backslash_quote) and
// converts it from client_encoding when it arrives.
func preparesSQL(have, want *sessionSettings) (same string, apart []string) {
	if want == nil {
		return "", nil
	}
	var out []string
	for _, name := range sortedKeys(want.preparedMap()) {
		if _, ok := have.preparedMap()[name]; ok && samePrepared(have, want, name) {
			continue
		}
		text := asciiStmt(want.prepared[name])
		if e, ok := want.prepEnvOf(name); ok && want.env != "" && e != want.env {
			if sets := envSetSQL(want.env, e, false); sets != "" {
				apart = append(apart, "SELECT "+sets, text, "SELECT "+envSetSQL(e, want.env, false))
				continue
			}
		}
		out = append(out, text)
	}
	return strings.Join(out, "; "), apart
}

// Reparses returns how many statements txlane prepared again under the
// settings they were first parsed under, other than their client's current
// ones, since the process started (transaction mode).
func Reparses() int64 { return reparses.Load() }
