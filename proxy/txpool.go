package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/proxy/wire"
	"github.com/txlane/txlane/router"
)

// attach returns the client's primary connection with its write right
// (wsem) held. In transaction mode a client that holds none takes one from
// its pool first, waiting up to query_wait_timeout (then FATAL 08P01, as
// PgBouncer closes such a client).
func (s *session) attach() (*primaryConn, error) {
	for {
		if p := s.pc.Load(); p != nil {
			p.acquire()
			if s.pc.Load() == p {
				s.pinCheckFirst(p)
				return p, nil
			}
			// Given back to the pool while we waited: not ours to write.
			p.release()
			continue
		}
		if s.pool == nil {
			return nil, errPrimaryGone
		}
		// A CancelRequest of the client ends the wait (txwait.go).
		s.wait.begin()
		waitFor := s.srv.live().QueryWaitTimeout
		p, err := s.poolGet(&s.wait, s.pool, waitFor)
		if err != nil && s.wait.canceled() {
			s.wait.end()
			return nil, errWaitCanceled
		}
		if err != nil {
			s.wait.end()
		}
		if errors.Is(err, errPoolEmpty) {
			return nil, &wire.Error{Severity: "FATAL", Code: CodeConnectionFailure,
				Message: "no server connection left in this pool",
				Detail:  "pool_mode is transaction and every server connection of this pool has closed.",
				Hint:    "Reconnect: a new login opens a server connection for the pool."}
		}
		if e := s.backendLoginError(err, s.startup.Parameters["user"]); e != nil {
			return nil, e // a backend the pool opened for the client failed to log in
		}
		if err != nil {
			s.srv.metrics.timeout("query_wait")
			return nil, &wire.Error{Severity: "FATAL", Code: CodeProtocolViolation,
				Message: "query_wait_timeout: no server connection became free in time",
				Detail: fmt.Sprintf("pool_mode is transaction and every server connection of this pool (pool_size %d) stayed busy for query_wait_timeout (%s).",
					s.pool.size, waitFor),
				Hint: "Raise pool_size (applies after a restart) or query_wait_timeout (applies at a reload, to waits that begin afterwards) in txlane's configuration."}
		}
		p.setOwner(s)
		p.acquire()
		s.pc.Store(p)
		if err := s.moveState(p); err != nil {
			s.wait.end()
			return nil, err
		}
		s.firstAttach(p)
		// NOTE: p becomes the target of the client's cancels only now, once
		// txlane's own statements there are done (a cancel must not cut
		// moveState's). A cancel that came meanwhile ended the wait: p goes
		// back unused. cancelMu makes this one step for forwardCancel.
		s.cancelMu.Lock()
		gave := s.wait.canceled()
		if !gave {
			s.mu.Lock()
			s.mu.running = &p.target
			s.mu.Unlock()
		}
		s.wait.end()
		s.cancelMu.Unlock()
		if gave {
			s.detach(p)
			return nil, errWaitCanceled
		}
		return p, nil
	}
}

// moveState makes p's session settings the client's (a difference: RESET
// what p has and the client has not, set_config what differs), before any
// request of the client runs on p. The caller holds p's wsem, and still
// does on return. If the server refuses, the client is closed (FATAL
// 08006) and p too: neither may run with settings that are not the
// client's.
func (s *session) moveState(p *primaryConn) error {
	want := s.settings.Load()
	sql, prepares, apart := stateDiff(p.settings, want)
	clash := protocolClashes(p, p.settings, want)
	if len(clash) > 0 {
		// Before the PREPAREs: see protocolClashes.
		dealloc := make([]string, len(clash))
		for i, name := range clash {
			dealloc[i] = deallocate(name)
		}
		sql = strings.Join(dealloc, "; ") + "; " + sql
	}
	if sets := s.movableSets(p, p.settings, want, sql != ""); sets != "" {
		if sql != "" {
			sql += "; "
		}
		sql += "SELECT " + sets
	}
	if prepares != "" {
		if sql != "" {
			sql += "; "
		}
		sql += prepares
	}
	s.resetsFixed.Store(s.resets.Load()) // the values below are the client's
	discard := false
	if sql != "" || len(apart) > 0 || !s.sequencesAhead(p) {
		sql, discard = s.withSequenceDiscard(p, sql) // seqstate.go
	}
	if sql == "" && len(apart) == 0 {
		return nil
	}
	moveQueries.Add(1)
	var q *internalQuery
	var err error
	// NOTE: the backend's own statement_timeout (the previous client's) runs
	// until protectSQL's first statement has turned it off: a short one may
	// cancel that statement on a busy machine (57014; the client's own
	// cancels do not reach p before attach returns). More tries (see
	// canceledTries).
	for _, sql := range append([]string{sql}, apart...) {
		if sql == "" {
			continue
		}
		for try := 1; ; try++ {
			q, err = p.queryKeep(protectSQL+sql, true)
			if err != nil || q.err == nil || q.err.Code != CodeQueryCanceled || try == canceledTries {
				break
			}
		}
		if err == nil && q.err != nil {
			err = errors.New(q.err.Message)
		}
		if err != nil {
			break
		}
	}
	for _, name := range clash {
		if err == nil {
			p.held.forget(name)
		} else {
			// Gone or not: the next to need the name closes it first.
			p.held.set(name, unknownStmt)
		}
	}
	if err != nil {
		s.log.Warn("could not move the session's settings to a pooled backend", zap.Error(err))
		s.pc.Store(nil)
		// NOTE: nothing of p's end may reach the client, which gets the
		// error below. A statement the server refused changed nothing (it
		// ran as one implicit transaction): p goes back to the pool as it
		// was.
		p.setIdle()
		p.release()
		if q != nil && p.usable() && p.inFlight() == 0 && p.TxStatus() == TxIdle {
			p.pooled.pool.put(p)
		} else {
			p.conn.Close()
		}
		return &wire.Error{Severity: "FATAL", Code: CodeConnectionFailure,
			Message: "txlane could not restore this session's settings on a server connection",
			Detail:  err.Error()}
	}
	p.settings = want
	if discard {
		p.seqClient.Store(0)
	}
	return nil
}

// protocolClashes returns the names of protocol-level statements p holds
// (another client's, left there) under which the diff from have to want
// PREPAREs one of the client's SQL-level statements. PostgreSQL keeps both
// kinds in one namespace per session, so the PREPARE would fail (42P05) and
// the client be closed; moveState DEALLOCATEs them first (DEALLOCATE drops a
// protocol-level statement too), and their owners get them prepared again
// where they next need them.
func protocolClashes(p *primaryConn, have, want *sessionSettings) []string {
	var out []string
	for name := range want.preparedMap() {
		if _, ok := have.preparedMap()[name]; ok && samePrepared(have, want, name) {
			continue
		}
		if _, ok := p.held.has(name); ok {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// stateDiffSQL is the statement that turns a backend whose session
// settings are have into one whose settings are want ("" when they are
// equal).
//
// NOTE: the settings other than the identity (session_authorization, role)
// are changed as the login user, and the identity is set last: a setting
// the client changed while privileged (a superuser-only one) and then took
// a lesser role could not be set under that role. Setting or resetting
// session_authorization sets the role back to none (PostgreSQL's
// SetSessionAuthorization), so the role is set after it, and again
// whenever the identity was touched.
func stateDiffSQL(have, want *sessionSettings) string {
	sql, prepares, _ := stateDiff(have, want)
	if prepares == "" || sql == "" {
		return sql + prepares
	}
	return sql + "; " + prepares
}

// stateDiff is stateDiffSQL in parts: the settings, and the PREPAREs, which
// must run last, once the backend has all the client's settings; apart are
// queries to send one by one after both (parseenv.go: preparesSQL).
func stateDiff(have, want *sessionSettings) (sql, prepares string, apart []string) {
	if have == want {
		return "", "", nil // the backend last served this client, or both are the login's
	}
	identity := func(n string) bool { return n == "session_authorization" || n == "role" }
	var resets, sets []string
	for _, name := range orderedSettings(have) {
		if _, ok := want.get(name); !ok && !identity(name) {
			resets = append(resets, resetSetting(name))
		}
	}
	// SQL-level prepared statements: what the backend holds and the client
	// has not (or holds otherwise) goes; what the client has comes, last
	// (a PREPARE resolves names with the search_path, whose "$user" is the
	// current user's).
	for _, name := range sortedKeys(have.preparedMap()) {
		if _, ok := want.preparedMap()[name]; !ok || !samePrepared(have, want, name) {
			resets = append(resets, deallocate(name))
		}
	}
	prepares, apart = preparesSQL(have, want)
	for _, name := range orderedSettings(want) {
		v, _ := want.get(name)
		if hv, ok := have.get(name); identity(name) || ok && hv == v {
			continue
		}
		if v == "" && strings.Contains(name, ".") {
			// NOTE: a custom setting reads '' where the client's backend
			// had only a placeholder (set and reset, or never loaded). RESET
			// makes the same placeholder on a backend without one, and the
			// default on one where an extension defines the name (where ''
			// may be no valid value: ivfflat.probes is an integer).
			resets = append(resets, resetSetting(name))
			continue
		}
		sets = append(sets, setConfig(name, v))
	}
	same := func(n string) bool {
		hv, hok := have.get(n)
		wv, wok := want.get(n)
		return hok == wok && hv == wv
	}
	_, hasAuth := have.get("session_authorization")
	_, hasRole := have.get("role")
	touch := !same("session_authorization") || !same("role") || (len(resets)+len(sets) > 0 && (hasAuth || hasRole))
	var stmts []string
	if touch {
		// Back to the login user (RESET SESSION AUTHORIZATION resets the
		// role too).
		switch {
		case hasAuth:
			stmts = append(stmts, "RESET session_authorization")
		case hasRole:
			stmts = append(stmts, "RESET role")
		}
	}
	stmts = append(stmts, resets...)
	if len(sets) > 0 {
		stmts = append(stmts, "SELECT "+strings.Join(sets, ", "))
	}
	if touch {
		var ids []string
		for _, n := range []string{"session_authorization", "role"} {
			if v, ok := want.get(n); ok {
				ids = append(ids, setConfig(n, v))
			}
		}
		if len(ids) > 0 {
			stmts = append(stmts, "SELECT "+strings.Join(ids, ", "))
		}
	}
	return strings.Join(stmts, "; "), prepares, apart
}

func setConfig(name, value string) string {
	return "pg_catalog.set_config(" + textLiteral(name) + ", " + textLiteral(value) + ", false)"
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// quoteIdent quotes an identifier.
func quoteIdent(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

// sessionSettings are a server session's settings that differ from those its
// login gave it: pg_settings rows of source 'session', and role and
// session_authorization when set. nil is none. Never modified once made.
type sessionSettings struct {
	values map[string]string
	// prepared are the session's SQL-level prepared statements: name (as
	// the server stores it) → the PREPARE statement that defines it.
	prepared map[string]string
	// prepEnv is the parse environment each of prepared ran under, where
	// txlane knows it; env is the session's own (parseenv.go).
	prepEnv map[string]string
	env     string
}

// preparedMap returns ss's prepared statements (nil for none).
func (ss *sessionSettings) preparedMap() map[string]string {
	if ss == nil {
		return nil
	}
	return ss.prepared
}

func (ss *sessionSettings) get(name string) (string, bool) {
	if ss == nil {
		return "", false
	}
	v, ok := ss.values[name]
	return v, ok
}

// orderedSettings lists the names of ss, session_authorization first and
// role second, then by name.
func orderedSettings(ss *sessionSettings) []string {
	if ss == nil {
		return nil
	}
	rank := func(n string) int {
		switch n {
		case "session_authorization":
			return 0
		case "role":
			return 1
		}
		return 2
	}
	names := make([]string, 0, len(ss.values))
	for n := range ss.values {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if ri, rj := rank(names[i]), rank(names[j]); ri != rj {
			return ri < rj
		}
		return names[i] < names[j]
	})
	return names
}

// parseSessionSettings reads the state columns of pinCheckSQL: the SQL
// prepared statements (a JSON array of [name, query string]), the settings
// (a JSON array of [name, setting] pairs; NULL for none), the role, the
// session user and the custom settings, each string in hex (hexUTF8); login is the user the backend
// logged in as. errUnmovablePrepare says a prepared statement's PREPARE
// could not be found in its query string.
func parseSessionSettings(prepared, pairs, role, auth, customs []byte, login string) (*sessionSettings, error) {
	ss := &sessionSettings{values: map[string]string{}}
	if prepared != nil {
		list, err := hexPairs(prepared)
		if err != nil {
			return nil, err
		}
		ss.prepared = map[string]string{}
		for _, np := range list {
			text, ok := router.PrepareText(np[1], np[0])
			if !ok {
				return nil, errUnmovablePrepare
			}
			ss.prepared[np[0]] = text
		}
	}
	for _, js := range [][]byte{pairs, customs} {
		if js == nil {
			continue
		}
		list, err := hexPairs(js)
		if err != nil {
			return nil, err
		}
		for _, kv := range list {
			ss.values[kv[0]] = kv[1]
		}
	}
	r, err := fromHex(string(role))
	if err != nil {
		return nil, err
	}
	if r != "none" {
		ss.values["role"] = r
	}
	a, err := fromHex(string(auth))
	if err != nil {
		return nil, err
	}
	if a != login {
		ss.values["session_authorization"] = a
	}
	return ss, nil
}

// hexPairs decodes a JSON array of [name, value] pairs, each as hexUTF8 read
// it.
func hexPairs(js []byte) ([][2]string, error) {
	var list [][2]string
	if err := json.Unmarshal(js, &list); err != nil {
		return nil, err
	}
	for i := range list {
		for j := range list[i] {
			v, err := fromHex(list[i][j])
			if err != nil {
				return nil, err
			}
			list[i][j] = v
		}
	}
	return list, nil
}

// errUnmovablePrepare: a SQL-level prepared statement whose PREPARE txlane
// cannot find in the query string the server reports for it.
var errUnmovablePrepare = errors.New("a prepared statement's PREPARE could not be recovered")

// holderBackend returns the backend the transaction holding u (hold h)
// runs on: the holder's primary connection. A client takes a unit only
// once it holds a backend (checkUnits attaches one first in transaction
// mode) and keeps that backend while it holds a unit (idle), so a holder
// without one is leaving (errPrimaryGone); a hold that is gone gives
// errGuestNotWelcome.
func (r *unitRegistry) holderBackend(u string, h *unitHold) (*primaryConn, error) {
	if !r.sole(u, h) {
		return nil, errGuestNotWelcome
	}
	if p := h.sess.pc.Load(); p != nil {
		return p, nil
	}
	return nil, errPrimaryGone
}

// holdsOn reports whether hold h still holds u, alone (a write rerouted into
// one holder's transaction would escape another's), and its holder's backend
// is p. Asked with p's wsem held (runWhenIdle), the answer stays true until
// wsem is released: a client takes and gives back a backend holding its
// wsem (attach, detach), and keeps it while it holds a unit.
func (r *unitRegistry) holdsOn(u string, h *unitHold, p *primaryConn) bool {
	return r.sole(u, h) && h.sess.pc.Load() == p
}

// forwardCopy streams a CopyData, CopyDone or CopyFail message of the
// client to its backend, or drops it when no request is in flight there:
// no COPY is in progress, and the server would ignore it too (PostgreSQL
// accepts and ignores these messages outside COPY, which pgconn relies on:
// it sends COPY data without waiting for CopyInResponse, so a COPY that
// fails at once is followed by data).
//
// NOTE: in transaction mode a backend with nothing in flight may be given
// back to the pool, and to another client, at any moment; the write right
// (wsem) keeps it this client's while the message is written. A client
// sending a request in parts holds it already (s.open).
func (s *session) forwardCopy() error {
	p := s.pc.Load()
	if p == nil {
		return s.cr.Skip()
	}
	if s.open == nil {
		p.acquire()
		defer func() {
			p.release()
			// The relay may have found the backend idle while we held
			// wsem, and left it to us.
			s.idle(p)
		}()
		if s.pc.Load() != p || p.inFlight() == 0 {
			return s.cr.Skip()
		}
	}
	if err := s.cr.Forward(p.w); err != nil {
		return err
	}
	if !s.cr.Buffered() {
		return p.w.Flush()
	}
	return nil
}

// query runs sql on the client's primary connection as txlane's own query
// (see primaryConn.query).
func (s *session) query(sql string) (*internalQuery, error) {
	p, err := s.attach()
	if err != nil {
		return nil, err
	}
	return p.query(sql)
}

// primaryGone returns a channel closed when the client's primary
// connection fails (never, while it holds none).
func (s *session) primaryGone() <-chan struct{} {
	if p := s.pc.Load(); p != nil {
		return p.gone
	}
	return nil
}

// idle is called (primaryOwner) when p is idle outside a transaction block
// with nothing in flight. In transaction mode the client gives p back to its
// pool, unless it holds units of work or state that cannot move to another
// backend pins it. What pins it is asked of the server (pinCheckSQL) when a
// statement since the last answer may have changed it (mayPin).
//
// NOTE: idle runs in the relay (afterReady) and in other goroutines (the
// client's after a request, serve after the login), and only the one that
// takes wsem acts; one that finds wsem taken leaves the work to its holder.
// When the holder is an idle call itself, it may have looked before the
// other's reason arose: the answer to the request it saw in flight, or to
// the pin check it just sent, can arrive and the relay's idle find wsem
// taken before the holder releases it. Nobody would then give p back, and
// the pool's other clients wait for it up to query_wait_timeout. So each
// call counts itself before it tries wsem (idleCalls), and a holder goes
// round again when a call came while it held wsem.
func (s *session) idle(p *primaryConn) {
	if testIdleEnterHook != nil {
		testIdleEnterHook(s, p)
	}
	for {
		n := s.idleCalls.Add(1)
		if !s.idleOnce(p) || s.idleCalls.Load() == n {
			return
		}
	}
}

// idleOnce is one round of idle; it reports whether it took wsem (and has
// given it up, or p with it).
func (s *session) idleOnce(p *primaryConn) bool {
	if !s.txMode || s.pc.Load() != p {
		return false
	}
	select {
	case p.wsem <- struct{}{}:
	default:
		if testIdleHook != nil {
			testIdleHook(s, true)
		}
		return false // the client is sending a request, or an idle call runs
	}
	if p.inFlight() > 0 || p.TxStatus() != TxIdle || s.unitsHeld.Load() > 0 || s.shared.pending.Load() > 0 || s.pc.Load() != p {
		if testIdleHook != nil {
			testIdleHook(s, false)
		}
		p.release()
		return true
	}
	if p.pooled.pool != nil && p.unchecked.Swap(false) {
		// A pooled backend's first time idle: checked as after a statement
		// that may pin (see pinCheckQuery: a role or database default of
		// idle_session_timeout must not end it while idle in the pool). One
		// the pool did not take is closed at detach.
		s.dirtyGen.Add(1)
	}
	// Idle outside a transaction: SET LOCAL values have ended.
	s.env.local.Store(false)
	if s.sendPinCheck(p) {
		p.release()
		return true // its ReadyForQuery calls idle again
	}
	if r := s.pin.Load(); r != nil && *r != "" || s.envPinned() {
		p.release()
		return true
	}
	s.detach(p)
	return true
}

// sendPinCheck sends the pin check (pinCheckQuery) when a statement since
// the last answer may have changed what it reads, and reports whether it
// did. The caller holds p's wsem (and keeps it), p idle outside a
// transaction block with nothing in flight.
func (s *session) sendPinCheck(p *primaryConn) bool {
	if gen := s.dirtyGen.Load(); gen != s.cleanGen.Load() {
		envGen := s.env.gen.Load()
		setters := s.hidden.sent.Load()
		canary := s.hidden.pending(setters)
		s.srv.metrics.pinChecks.Inc()
		fix, resets := s.resetFixSQL(p)
		q := &internalQuery{done: make(chan struct{}), then: func(q *internalQuery) {
			// NOTE: the backend's statement_timeout (the client's) runs until
			// protectSQL's first statement turns it off, and may cancel it
			// on a busy machine (57014): the idle that its ReadyForQuery
			// calls asks again at once, up to canceledTries times, rather
			// than pin the client for good ("unknown").
			if q.err != nil && q.err.Code == CodeQueryCanceled && s.pinRetries < canceledTries-1 {
				s.pinRetries++
				return
			}
			s.pinRetries = 0
			if q.err == nil {
				s.resetsFixed.Store(resets)
			}
			s.pinChecked(p, q, gen, envGen, setters, canary)
		}}
		s.env.checkSent(envGen)
		if err := p.write(q, pinCheckQuery(*s.customList.Load(), canary, s.named.list(s.settings.Load()))+fix); err != nil {
			s.log.Debug("pin check not sent", zap.Error(err))
			s.env.checkDone()
		}
		return true
	}
	return false
}

// pinCheckFirst sends the pin check an idle call would have sent before the
// client's next request, when the client takes p for it (attach) with p idle
// outside a transaction block, nothing in flight and a check due. The relay
// calls idle only after it has flushed a ReadyForQuery to the client, so a
// client that answers at once may take wsem first, and the relay's idle
// call leaves the work to it. Without the check ahead of it, a Parse or
// PREPARE of that request found its parse settings unknown (a SET of one in
// the request before, answered) and pinned the client (parse_settings) for
// as long as the statement existed: with pool_size 1 the pool's other
// clients waited for its backend (TestParseEnvSharedSQLPrepare hung 30 s
// once). Sent here, the request goes right behind it, and what needs the
// check's answer waits for it (envMark.get).
func (s *session) pinCheckFirst(p *primaryConn) {
	if !s.txMode || p.inFlight() > 0 || p.TxStatus() != TxIdle {
		return
	}
	s.env.local.Store(false)
	s.sendPinCheck(p)
}

// testIdleHook, set by tests only, is called by idleOnce when it finds wsem
// taken (busy), and when it holds wsem and found p busy, just before it
// gives wsem up.
var testIdleHook func(s *session, busy bool)

// testIdleEnterHook, set by tests only, is called as idle begins.
var testIdleEnterHook func(s *session, p *primaryConn)

// detach gives p, whose wsem the caller holds, back to the pool (or closes
// it when it never joined the pool: a login's backend the full pool had no
// room for).
func (s *session) detach(p *primaryConn) {
	if !s.pc.CompareAndSwap(p, nil) {
		p.release()
		return
	}
	// NOTE: cancelMu waits for a cancel being forwarded to p. SendCancel
	// returns once the server has closed the cancel connection, that is once
	// the postmaster's child has signalled the backend; a signal that finds
	// the backend idle is discarded (PostgreSQL ignores a cancel while it
	// reads a command). So a cancel of this client never reaches the next
	// (PgBouncer's rule too: a server is not reused until the cancel request
	// it was sent has completed).
	// The client may have taken another backend meanwhile (pc is nil from
	// the swap above, and a cancel being forwarded holds cancelMu): its
	// cancel target is then that backend's, not to be cleared.
	s.cancelMu.Lock()
	s.mu.Lock()
	if s.mu.running == &p.target {
		s.mu.running = nil
	}
	s.mu.Unlock()
	s.cancelMu.Unlock()
	p.setIdle()
	p.release()
	if p.pooled.pool == nil {
		p.conn.Close()
		return
	}
	p.pooled.pool.put(p)
}

// leavePrimary ends the client's use of its primary connection when the
// client leaves: a backend idle outside a transaction with nothing pinning
// it goes back to the pool (transaction mode), or in session mode is reset
// (server_reset_query) and then goes back. In transaction mode so does one
// with nothing in flight once ROLLBACK and DISCARD ALL have made it a fresh
// session again (resetLeft: the pool may not be able to open a backend to
// replace it). Any other is closed, its running statement cancelled first so
// that its locks go now.
func (s *session) leavePrimary(err error) {
	if s.txMode && s.pool != nil {
		s.pool.leave()
	}
	p := s.pc.Load()
	if p == nil {
		return
	}
	if !s.txMode && s.pool != nil && p.pooled.pool != nil && !errors.Is(err, errPrimaryGone) && s.resetForPool(p) {
		return
	}
	if s.txMode && s.pool != nil {
		s.srv.units.releaseAll(s)
		if !s.ownForLeave(p) {
			return // given back to the pool meanwhile
		}
		// Holding wsem with pc p: p is this client's until detached.
		keep := p.pooled.pool != nil && !errors.Is(err, errPrimaryGone) && p.usable()
		if keep && p.inFlight() > 0 {
			keep = s.settle(p)
		}
		if keep {
			r := s.pin.Load()
			clean := p.TxStatus() == TxIdle && s.dirtyGen.Load() == s.cleanGen.Load() && (r == nil || *r == "") && s.shared.pending.Load() == 0
			if clean || s.resetLeft(p) {
				s.detach(p)
				return
			}
		}
		// wsem stays held: nothing may be written to p any more.
	}
	if p.inFlight() > 0 && !errors.Is(err, errClientTerminated) {
		// NOTE: closing the socket alone does not stop a running statement
		// (the server notices only when it next writes); cancel it so its
		// locks go now, not when it finishes.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if cerr := wire.SendCancel(ctx, p.target); cerr != nil {
			s.log.Debug("cancel on disconnect failed", zap.Error(cerr))
		}
		cancel()
	}
	p.conn.Close()
	<-p.gone
	if pl := p.pooled.pool; pl != nil {
		pl.drop(p)
	}
}

// resetForPool hands p, the backend of a session-mode client leaving, back
// to its pool after server_reset_query (DISCARD ALL) has wiped the
// session; it reports false when p cannot go back (busy, in a
// transaction, or holding a library the client loaded with LOAD, which
// nothing unloads), leaving it to the caller to close.
func (s *session) resetForPool(p *primaryConn) bool {
	if s.loaded.Load() || s.dblink.Load() {
		return false // DISCARD ALL does not unload a library, nor close dblink's connections
	}
	select {
	case p.wsem <- struct{}{}:
	default:
		return false
	}
	s.cancelMu.Lock()
	s.mu.Lock()
	s.mu.running = nil
	s.mu.Unlock()
	s.cancelMu.Unlock()
	if !p.usable() || p.inFlight() > 0 || p.TxStatus() != TxIdle || !s.pc.CompareAndSwap(p, nil) {
		p.release()
		return false
	}
	// Nothing of the reset reaches the client, which is leaving.
	p.setIdle()
	pool := p.pooled.pool
	pool.resetStarted(1)
	reseeded := s.reseed(p)
	q := &internalQuery{done: make(chan struct{}), then: func(q *internalQuery) {
		pool.resetStarted(-1)
		if q.err != nil || !reseeded() {
			s.log.Warn("server_reset_query (or the reseed before it) failed; closing the backend", zap.String("error", errText(q)))
			p.conn.Close()
			return
		}
		p.held.drop("", true)
		p.settings = nil
		if resetDiscardsSequences(s.srv.opts.Pool.ServerResetQuery) {
			p.seqClient.Store(0)
		}
		pool.put(p)
	}}
	if err := p.send(q, s.srv.opts.Pool.ServerResetQuery); err != nil {
		pool.resetStarted(-1)
		p.conn.Close()
	}
	return true
}

// ownForLeave takes p's wsem for a client that leaves, and reports whether
// p is still the client's (false: the relay gave it back meanwhile, and
// wsem is not held). A client that leaves mid-request (after a Flush) holds
// wsem already. Queries of txlane's own in flight (a pin check) are waited
// for, up to internalQueryTimeout, so that they do not cost the backend.
//
// NOTE: the relay may be giving p back at this very moment (idle, detach);
// whoever holds wsem while pc is p owns p, so leavePrimary must not close p
// without it (a backend handed to another client would be closed under it).
func (s *session) ownForLeave(p *primaryConn) bool {
	deadline := time.After(internalQueryTimeout)
	for {
		if s.open == nil {
			p.acquire()
		}
		if s.pc.Load() != p {
			p.release()
			return false
		}
		if s.open != nil || p.inFlight() == 0 || !p.internalOnly() {
			return true
		}
		changed := p.nextChange()
		p.release()
		select {
		case <-changed:
			continue
		case <-p.gone:
			// Nothing will answer any more (and release signals a change
			// at once: waiting for one would spin): the caller closes p.
		case <-deadline:
		}
		p.acquire()
		if s.pc.Load() != p {
			p.release()
			return false
		}
		return true
	}
}

// settleTimeout bounds how long a client that left waits for the request it
// left in flight to end (settle).
const settleTimeout = 5 * time.Second

// settle ends the request a client that left had in flight on p, whose
// wsem the caller holds, and reports whether p is idle afterwards (then to
// be reset and pooled rather than closed): the answers go nowhere, a
// request sent in part gets its Sync, a COPY FROM STDIN a CopyFail, and a
// running statement a cancel (forwarded and taken by the server before p
// can go to another client, as for a client's own cancel: see detach).
func (s *session) settle(p *primaryConn) bool {
	p.setIdle()
	copyIn, copyExtended := false, false
	p.mu.Lock()
	for _, r := range p.mu.pending {
		if r.copyIn {
			copyIn, copyExtended = true, r.extended
		}
	}
	p.mu.Unlock()
	var out []byte
	if copyIn {
		out, _ = (&pgproto3.CopyFail{Message: "the client left"}).Encode(out)
	}
	if s.open != nil && !copyIn {
		// NOTE: a Sync alone would commit what the request sent in part
		// has done (its implicit transaction); PostgreSQL rolls it back
		// when the client vanishes. An Execute of a portal that does not
		// exist fails it first (34000): the server skips to the Sync and
		// rolls back.
		out, _ = (&pgproto3.Execute{Portal: "txlane: the client left"}).Encode(out)
	}
	if s.open != nil || copyExtended {
		// A request sent in part needs its Sync. After the CopyFail's error
		// a COPY of the extended protocol waits for a Sync too (one the
		// client sent during the COPY was ignored): this Sync's
		// ReadyForQuery ends that request. A simple-protocol COPY is ended
		// by the CopyFail alone: a Sync would get a ReadyForQuery no request
		// waits for.
		out = wire.AppendSync(out)
	}
	if len(out) > 0 {
		p.w.Write(out)
		if err := p.w.Flush(); err != nil {
			return false
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	if err := wire.SendCancel(ctx, p.target); err != nil {
		return false
	}
	for p.inFlight() > 0 {
		changed := p.nextChange()
		if p.inFlight() == 0 {
			break
		}
		select {
		case <-changed:
		case <-p.gone:
			return false
		case <-ctx.Done():
			return false
		}
	}
	return p.usable()
}

// requestsInFlight counts the requests in flight on p other than txlane's
// own queries (a pin check, moving settings): those change nothing of the
// client's, so a client whose backend runs one is still idle for planning,
// units of work and PAUSE.
func (p *primaryConn) requestsInFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, r := range p.mu.pending {
		if r.internal == nil {
			n++
		}
	}
	return n
}

// internalOnly reports whether every request in flight on p is a query of
// txlane's own.
func (p *primaryConn) internalOnly() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.mu.pending {
		if r.internal == nil {
			return false
		}
	}
	return true
}

// backendFrom takes a backend from pool for a login (waiting up to the
// login's deadline), with the session settings of the pool's logins: a
// backend another client left with settings of its own has them reset
// first. Its owner swallows what it says until the caller hands it on.
func (s *session) backendFrom(ctx context.Context, pool *serverPool) (*primaryConn, error) {
	for {
		p, err := s.poolGetCtx(ctx, pool)
		if errors.Is(err, errPoolEmpty) || errors.Is(err, context.DeadlineExceeded) {
			return nil, &wire.Error{Severity: "FATAL", Code: CodeCannotConnectNow,
				Message: "no server connection became free for this login",
				Detail:  "Every server connection of the pool (pool_size) stayed busy: for client_login_timeout, or in pool_mode transaction for query_wait_timeout.",
				Hint:    "Raise pool_size in txlane's configuration."}
		}
		if err != nil {
			return nil, err
		}
		sql, discard := s.withSequenceDiscard(p, stateDiffSQL(p.settings, nil))
		if sql == "" {
			return p, nil
		}
		p.acquire()
		q, err := p.queryKeep(sql, true)
		p.release()
		if err == nil && q.err == nil {
			p.settings = nil
			if discard {
				p.seqClient.Store(0)
			}
			return p, nil
		}
		p.conn.Close() // its state is unknown: try another
		pool.drop(p)
	}
}

// resetLeft makes p, the backend of a client that left with nothing in
// flight but inside a transaction or with session state, a fresh session:
// ROLLBACK, then DISCARD ALL (PostgreSQL's reset of everything a session
// holds: cursors, settings, role and session authorization, prepared
// statements, LISTEN, advisory locks, temporary objects, sequences' state).
// The caller holds p's wsem. It reports false when p cannot be reset (the
// client ran LOAD, which nothing undoes; the server refused or did not
// answer): p is then to be closed.
func (s *session) resetLeft(p *primaryConn) bool {
	if s.loaded.Load() || s.dblink.Load() {
		return false
	}
	// Nothing of the answers may reach the client that left.
	p.setIdle()
	queries := resetLeftSQL
	if s.seeded.Load() {
		queries = append(queries[:len(queries):len(queries)], reseedSQL())
	}
	for _, sql := range queries {
		q, err := p.queryKeep(sql, true)
		if err != nil || q.err != nil || p.TxStatus() != TxIdle {
			return false
		}
	}
	p.settings = nil
	p.seqClient.Store(0) // DISCARD ALL
	p.held.drop("", true)
	return true
}

// resetLeftSQL are resetLeft's queries, in order.
var resetLeftSQL = []string{"ROLLBACK", "SET statement_timeout = 0; SET lock_timeout = 0", "DISCARD ALL"}

// notePin records what st, sent to the client's backend (by the client, or
// by another client's write rerouted into its transaction), may leave in
// the server session that a pool must not move (transaction mode; see
// mayPin). Safe to call from any goroutine.
func (s *session) notePin(st *policy.Statement) {
	s.noteEnv(st)
	s.noteSeed(st)
	s.noteLoad(st)
	s.noteSequences(st)
	s.noteDblink(st)
	s.named.note(st)
	if !s.txMode || !mayPin(st) {
		return
	}
	s.noteReset(st)
	eachPart(st, func(p *policy.Statement) {
		switch {
		case p.Command == "LOAD":
			// noteLoad has recorded it: the backend is closed at leave.
		case p.Flags&policy.FlagMayChangeSession != 0 && p.Class != policy.Session && p.Discard == policy.DiscardNone &&
			(p.Flags&policy.FlagSQLPrepare == 0 || p.ExecutesPrepared() && !executeUnseen(p)) && !p.SetConfigLocal && !s.settingsSeen(p),
			p.RunsUnknownCode():
			// A function, DO or CALL, or code the text hides (a trigger,
			// a rule, a default, a function behind a view), may have set
			// a custom setting by a name txlane does not see (pg_settings
			// does not list them): the client keeps its backend (pin
			// "set_config"). Hidden code the catalog names counts by its
			// flags: a read of pg_settings or of a view calling
			// current_setting sets nothing.
			s.hidden.sent.Add(1)
		}
	})
	s.dirtyGen.Add(1)
}

// noteSetConfig adds the custom settings that set_config calls with a
// constant name in st set (policy.Statement.SetConfig) to the client's
// customs, which the pin check reads and moves with the client as it does
// those SET set (client goroutine, before notePin).
func (s *session) noteSetConfig(st *policy.Statement) {
	added := false
	eachPart(st, func(p *policy.Statement) {
		for _, name := range p.SetConfig {
			if strings.Contains(name, ".") && !s.customs[name] {
				s.customs[name] = true
				added = true
			}
		}
	})
	if added {
		list := s.customSettings()
		s.customList.Store(&list)
	}
}

// settingsSeen reports whether every session setting p may change is one
// the pin check reads: p's changes are all set_config calls with constant
// names (policy.Statement.SetConfig), of settings pg_settings lists or of
// custom settings among the client's customs. A rerouted write's
// set_config of a name the holder never set is not seen.
func (s *session) settingsSeen(p *policy.Statement) bool {
	if len(p.SetConfig) == 0 {
		return false
	}
	customs := *s.customList.Load()
	for _, name := range p.SetConfig {
		if _, ok := slices.BinarySearch(customs, name); strings.Contains(name, ".") && !ok {
			return false
		}
	}
	return true
}

// mayPin reports whether st may leave state in the server session that
// another backend would not have: temporary relations, session advisory
// locks, LISTEN, cursors WITH HOLD, SQL-level prepared statements, session
// settings, a role, a loaded library. Plain reads and writes, transaction
// control and SET LOCAL cannot.
//
// NOTE: it trusts the classifier, which does not look into an IMMUTABLE
// function with an opaque body, nor, without a catalog, into any function
// or trigger: what such code does to the session is not asked of the
// server (README, "What the pin check does not see"). Asking after every
// transaction instead costs the server a pin check (about 4 ms against 0.1
// ms for SELECT 1) each time.
func mayPin(st *policy.Statement) bool {
	const flags = policy.FlagWritingFunction | policy.FlagWritesUnknown | policy.FlagCursor | policy.FlagListen |
		policy.FlagSQLPrepare | policy.FlagMayChangeSession | policy.FlagUnproven | policy.FlagDblink
	pin := false
	eachPart(st, func(p *policy.Statement) {
		f := p.Flags
		if p.SetConfigLocal {
			// Transaction-local set_config calls wrote and changed what
			// these flags say: nothing that outlives the transaction.
			f &^= policy.FlagWritingFunction | policy.FlagMayChangeSession
		}
		// NOTE: a statement that runs code whose effects are unknown
		// (triggers, non-volatile functions with opaque bodies) or creates
		// anything may change the session in ways the text does not show:
		// ask the server. Hidden code the catalog names sets the flags.
		if f&(flags|policy.FlagSelectInto) != 0 || p.Discard != policy.DiscardNone || len(p.Temp) > 0 ||
			p.RunsUnknownCode() || strings.HasPrefix(p.Command, "CREATE") || p.Seeds {
			pin = true
		}
		switch p.Class {
		case policy.Read, policy.LockingRead, policy.Write, policy.TxControl:
		case policy.Session:
			for _, set := range p.Settings {
				pin = pin || !set.Local
			}
		default:
			pin = true
		}
	})
	return pin
}

// pinCheckSQL starts the pin check (pinCheckQuery), which asks the server
// what in the session would not follow the client to another backend (one
// boolean per reason in pinReasons' order: these, then hiddenSettingsSQL's),
// and the session's settings (pinStateSQL).
//
// NOTE: temporary objects are read from pg_depend, where every object made
// in the session's temporary schema records its dependency on that schema:
// functions, types, operators, collations, text search configurations… as
// well as relations (pg_class alone misses all but relations).
const pinCheckSQL = `SELECT pg_catalog.pg_my_temp_schema() OPERATOR(pg_catalog.<>) 0 AND (EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE relnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()) ` +
	`OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend WHERE refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass AND refobjid OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema())), ` +
	`EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid() AND locktype OPERATOR(pg_catalog.=) 'advisory'), ` +
	`EXISTS (SELECT 1 FROM pg_catalog.pg_listening_channels()), ` +
	`EXISTS (SELECT 1 FROM pg_catalog.pg_cursors WHERE is_holdable), `

// pinStateSQL are the columns of the pin check after its reasons: the
// session's SQL prepared statements, settings, role and session
// authorization (see parseSessionSettings), every name and value as the
// hex digits of its UTF-8 bytes (hexUTF8): the backend's client_encoding
// may be any client's.
var pinStateSQL = `(SELECT pg_catalog.json_agg(pg_catalog.json_build_array(` + hexUTF8("name") + `, ` + hexUTF8("statement") + `) ORDER BY name) FROM pg_catalog.pg_prepared_statements WHERE from_sql), ` +
	`(SELECT pg_catalog.json_agg(pg_catalog.json_build_array(` + hexUTF8("name") + `, ` + hexUTF8("setting") + `) ORDER BY name) FROM pg_catalog.pg_settings WHERE source OPERATOR(pg_catalog.=) 'session' AND name OPERATOR(pg_catalog.<>) ALL (ARRAY['statement_timeout', 'lock_timeout', 'idle_session_timeout'])), ` +
	hexUTF8("pg_catalog.current_setting('role')") + `, ` + hexUTF8("pg_catalog.current_setting('session_authorization')")

// customsSQL is the last column of the pin check: the client's custom
// (dotted) settings that exist in its session, as a JSON array of [name,
// value] pairs in hex (hexUTF8; NULL for none). One reset to an empty string counts: PostgreSQL keeps it
// as a placeholder, and a backend without it would call the name
// unrecognized (SHOW). pg_settings does not list custom settings.
func customsSQL(names []string) string {
	if len(names) == 0 {
		return ", NULL"
	}
	vals := make([]string, len(names))
	for i, n := range names {
		vals[i] = "(" + textLiteral(n) + ")"
	}
	return `, (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(` + hexUTF8("n") + `, ` + hexUTF8("v") + `) ORDER BY n) FROM ` +
		`(SELECT n, pg_catalog.current_setting(n, true) AS v FROM (VALUES ` + strings.Join(vals, ", ") + `) AS c(n)) AS s WHERE v IS NOT NULL)`
}

// pinReasons name, in the pin check's column order, what keeps a client on
// its backend in transaction mode (SHOW CLIENTS pinned, and the pins metric).
// The columns after them are the session's SQL prepared statements and
// settings, which move with the client instead (see moveState); a prepared
// statement that cannot move pins it (sql_prepare).
var pinReasons = []string{"temp_table", "advisory_lock", "listen", "hold_cursor", "hidden_settings"}

// pinCheckQuery is the pin check for a client whose custom settings are
// customs, as one Query: the client's statement_timeout and lock_timeout
// (first, read with a statement too short for them to cut); then, under
// protectSQL, pinCheckSQL with the customs' values and the canary (see
// hiddenCustoms), idle_session_timeout off (see below), and with setCanary
// a statement that sets the canary after it has been read.
//
// NOTE: idle_session_timeout does not hold on a pooled backend: PostgreSQL
// would end a backend idle in the pool, which a pool that cannot open
// backends cannot replace. The pin check turns it off on the client's
// backend (on every backend's first time idle, too: a role or database
// default) and it does not move.
func pinCheckQuery(customs []string, setCanary bool, named []string) string {
	sql := "SELECT pg_catalog.current_setting('statement_timeout'), pg_catalog.current_setting('lock_timeout'); " + protectSQL +
		"SET idle_session_timeout = 0; " +
		pinCheckSQL + hiddenSettingsSQL(named) + ", " + pinStateSQL + customsSQL(customs) + ", pg_catalog.current_setting(" + quoteLiteral(canaryName) + ", true)"
	if setCanary {
		sql += "; SELECT pg_catalog.set_config(" + quoteLiteral(canaryName) + ", '1', false)"
	}
	return sql
}

// canceledTries bounds how many times txlane sends a query of its own that
// the backend's statement_timeout cancelled before protectSQL turned it off.
// Only its first statement is exposed, a few microseconds of work, so a try
// fails only when the server process loses its CPU for longer than the
// client's timeout (1 ms on a loaded machine: a CI run saw four in a row
// fail); the tries follow each other at once.
const canceledTries = 16

// protectSQL starts a query of txlane's own that is sent as one Query (one
// implicit transaction): a client's statement_timeout or lock_timeout, in
// force on its backend, must not cut it (a pin check cut short would pin
// the client for good).
const protectSQL = "SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0; "

// hiddenCustoms tracks the statements of a client that may have set custom
// settings under names txlane cannot see (a function, DO, CALL, a trigger):
// pg_settings does not list custom settings and nothing else names them, so
// such a client keeps its backend (pin "set_config") until they are gone.
//
// NOTE: whether they are gone is asked of the server, not inferred from the
// statements sent: a RESET ALL or DISCARD ALL may fail, or be rolled back
// with its transaction. While setters may have left values, each pin check
// sets a canary, a custom setting of a name no client knows (canaryName),
// after reading it. A canary found reset by a later check proves that the
// setters that ran before it was set are gone: only RESET ALL and DISCARD
// ALL reset a setting without naming it.
type hiddenCustoms struct {
	// sent counts the setters sent (notePin, from any goroutine).
	sent atomic.Uint64
	mu   sync.Mutex
	// cleared: the setters up to this count are known gone. canary: the
	// setters up to this count had run when the canary was last set (0:
	// never set).
	cleared, canary uint64
}

// pending reports whether setters up to sent may have left values: the
// pin check must set the canary.
func (h *hiddenCustoms) pending(sent uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return sent > h.cleared
}

// checked records a pin check's answer for the setters up to sent: gone says
// the check found the canary reset, set that the check set it afresh. It
// reports whether setters may still have left values.
func (h *hiddenCustoms) checked(sent uint64, gone, set bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if gone {
		h.cleared = max(h.cleared, h.canary)
	}
	if set {
		h.canary = sent
	}
	return sent > h.cleared
}

// canaryName is the custom setting hiddenCustoms sets: random per process,
// so that no client can reset it by name.
var canaryName = func() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "txlane.pin_" + hex.EncodeToString(b)
}()

// pinChecked records the server's answer to the pin check (pinCheckQuery)
// for the statements up to gen, and for the setters of hidden custom
// settings up to setters, canary saying whether it set the canary (in
// relay, before the connection is looked at again).
func (s *session) pinChecked(p *primaryConn, q *internalQuery, gen, envGen, setters uint64, canary bool) {
	var why []string
	n := len(pinReasons)
	var ss *sessionSettings
	var err error
	ok := q.err == nil && len(q.rows) >= 2 && len(q.rows[0]) == 2 && len(q.rows[1]) == n+6
	hidden := s.hidden.pending(setters)
	if ok {
		row := q.rows[1]
		ss, err = parseSessionSettings(row[n], row[n+1], row[n+2], row[n+3], row[n+4], s.startup.Parameters["user"])
		hidden = s.hidden.checked(setters, len(row[n+5]) == 0, canary)
	}
	if ss != nil {
		// Read before protectSQL changed them; they move whatever their
		// source (a value equal to the login's moves as a no-op).
		ss.values["statement_timeout"] = string(q.rows[0][0])
		ss.values["lock_timeout"] = string(q.rows[0][1])
		s.dropOwnValues(ss)
	}
	switch {
	case errors.Is(err, errUnmovablePrepare):
		why = append(why, "sql_prepare")
	case !ok || err != nil:
		// Unknown: stay pinned (fail safe).
		why = append(why, "unknown")
	default:
		for i, v := range q.rows[1][:n] {
			if string(v) == "t" {
				why = append(why, pinReasons[i])
			}
		}
		unknown := s.settleEnv(s.settings.Load(), ss, envGen)
		s.env.sqlUnknown.Store(unknown)
		if unknown || s.reg.unknownEnvs() > 0 {
			why = append(why, "parse_settings")
		}
		// The settings move with the client: this backend holds them now.
		s.settings.Store(ss)
		p.settings = ss
	}
	if s.loaded.Load() {
		why = append(why, "load")
	}
	if s.dblink.Load() {
		why = append(why, "dblink")
	}
	if s.seeded.Load() {
		why = append(why, "seed")
	}
	if hidden {
		why = append(why, "set_config")
	}
	r := strings.Join(why, ",")
	for _, w := range newPins(s.pin.Swap(&r), why) {
		s.srv.metrics.pinned(w)
	}
	s.cleanGen.Store(gen)
	s.env.checkDone()
}

// serverPID is the process ID of the backend serving the client (0 for none).
func (s *session) serverPID() uint32 {
	if p := s.pc.Load(); p != nil {
		return p.target.PID
	}
	return 0
}

// pinnedBy is what pins the client to its backend ("" for nothing).
func (s *session) pinnedBy() string {
	r := ""
	if p := s.pin.Load(); p != nil {
		r = *p
	}
	if s.reg.unknownEnvs() > 0 && !strings.Contains(r, "parse_settings") {
		r = strings.TrimPrefix(r+",parse_settings", ",")
	}
	return r
}

// quoteGUC quotes a setting name for RESET: each dot-separated part as an
// identifier, so that a custom setting's name reads back as itself.
func quoteGUC(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = quoteIdent(p)
	}
	return strings.Join(parts, ".")
}

// unknownStmt is what a backend holds under a name when txlane cannot tell
// (an injected Parse or Close the server failed or skipped): it matches no
// statement, so the next use closes the name and prepares it again.
const unknownStmt stmtKey = "\x00unknown"
