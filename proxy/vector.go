package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/router"

	"github.com/txlane/txlane/proxy/wire"
)

// poisonSQL makes the primary's transaction fail after a read that ran on the
// vector lane failed inside it: PostgreSQL would have aborted the transaction,
// so from here the server's own state machine answers 25P02 and turns COMMIT
// into ROLLBACK, and ROLLBACK TO SAVEPOINT recovers exactly as it would have.
const poisonSQL = "DO $txlane$BEGIN RAISE EXCEPTION 'txlane: a read of this transaction failed on the vector lane' USING ERRCODE = 'XX000'; END$txlane$"

// tryVectorLane runs request b on the vector lane when policy allows it. handled
// is false when b must go to the primary lane instead.
func (s *session) tryVectorLane(b *batch) (handled bool, err error) {
	pl := &s.plans.cur
	switch {
	case !pl.laneShape:
		s.routed(policy.Primary, policy.ReasonRequestShape)
		return false, nil
	case pl.parsedPrimary:
		s.routed(policy.Primary, pl.parsedReason)
		return false, nil
	}
	stmts := pl.stmts(0)
	rt := s.routing()
	// NOTE: no primary request is in flight when the state is read (checked
	// below before any offload), so relay does not change it meanwhile.
	decide := func() policy.Decision {
		s.mu.Lock()
		defer s.mu.Unlock()
		return policy.DecideBatch(&s.mu.tx, stmts, rt.rules, s.searchPath)
	}
	d := decide()
	if d.Lane != policy.Vector && s.primaryFinal(d, stmts, rt.rules) {
		// Final: no search_path makes these reads vector reads, so the
		// session's settings need no fresh read (a round trip).
		s.routed(d.Lane, d.Reason)
		return false, nil
	}
	// Only at a safe point, when the primary has answered everything, is the
	// transaction state known.
	if s.inFlight() > 0 {
		s.routed(policy.Primary, policy.ReasonPipelined)
		return false, nil
	}
	if s.snap.dirty.Load() {
		serverErr, err := s.refreshSnapshot()
		if err != nil {
			return false, err
		}
		if serverErr != nil {
			// The read of the session's settings failed on the server: a
			// cancel the client sent for this request arrived first, say. It is
			// the request's answer; inside a transaction the server has failed
			// the transaction, as the client's own statement would have.
			return true, s.answerServerError(serverErr)
		}
		d = decide()
	}
	if d.Lane == policy.Vector && !s.laneHasCustoms(stmts) { // lane_customs.go
		d = policy.Decision{Lane: policy.Primary, Reason: policy.ReasonBackendDependent}
	}
	if d.Lane != policy.Vector {
		s.routed(d.Lane, d.Reason)
		return false, nil
	}
	if s.refusedBefore() { // the lane refused one of its texts as a write
		return false, nil
	}

	res, err := s.acquireLane()
	if err != nil {
		fd, fallback := rt.rules.OnVectorUnavailable()
		var tables []string
		for _, st := range stmts {
			for _, t := range st.Reads {
				tables = append(tables, t.String())
			}
		}
		level := zap.WarnLevel
		if errors.Is(err, errLaneRole) {
			level = zap.DebugLevel // logged once per pool already
		}
		s.log.Log(level, "vector lane unavailable", zap.Error(err), zap.Bool("fallback_to_primary", fallback),
			zap.Strings("tables", tables), zap.Strings("units_of_work", s.unitsOfWork(pl)),
			zap.String("fingerprint", router.Fingerprint(pl.sqlTexts())))
		s.routed(fd.Lane, fd.Reason)
		if fallback {
			return false, nil
		}
		return true, s.refuseUnit(&wire.Error{Severity: "ERROR", Code: CodeCannotConnectNow,
			Message: "vector lane unavailable",
			Detail:  fmt.Sprintf("No vector-lane connection could be had within read_pool.acquire_timeout (%s).", s.srv.lanes.live().AcquireTimeout),
			Hint:    "Raise read_pool.max_conns or acquire_timeout, or set read_pool.on_unavailable: primary."})
	}
	s.routed(d.Lane, d.Reason)
	start := time.Now()
	res.Value().use.serve(s.id, start)
	broken, err := s.runOnLane(res.Value(), b)
	s.srv.metrics.observeRequest("vector", time.Since(start))
	s.srv.lanes.release(res, broken)
	if errors.Is(err, errLaneRetry) {
		s.log.Warn("vector-lane connection failed; the read runs on the primary", zap.Error(err))
		s.routed(policy.Primary, policy.ReasonLaneLost)
		return false, nil
	}
	if refusal := (*laneRefusal)(nil); errors.As(err, &refusal) {
		s.laneRefused(refusal, refusedRerun) // the read wrote: it runs on the primary
		// It is a write now, for the units of work too.
		s.plans.cur.wroteOnLane()
		return false, nil
	}
	return true, err
}

// routed counts a routing decision: one per request.
func (s *session) routed(lane policy.Lane, reason policy.Reason) {
	s.srv.metrics.route(lane, reason)
}

// runOnLane sends request b to lane connection c, after giving c the client's
// settings and role, and relays the answer to the client (statements are
// rewritten as writeShared says). broken is true when c's state is no
// longer known: it must not go back to the pool. Behind the request c proves
// its session is what txlane set (writeCheck, verify); if it cannot,
// c.discard says why and c is closed on release.
func (s *session) runOnLane(c *laneConn, b *batch) (broken bool, err error) {
	c.discard = ""
	if c.fitted != s.snapshot.id {
		if refused, err := s.fitLane(c); refused || err != nil {
			return true, err
		}
	}
	return s.readOnLane(c, b)
}

// fitLane gives lane connection c the client's settings and role (those of
// s.snapshot that differ from what c has). An error wrapping errLaneRetry
// means c is broken and the read may still run on the primary; refused, that
// c cannot take them and the client got a refusal instead of its answer (err
// is then what writing that returned).
func (s *session) fitLane(c *laneConn) (refused bool, err error) {
	c.fitted = 0
	if names, values := applyPlan(c.settings, s.snapshot.values); names != nil {
		if err := c.apply(names, values); err != nil {
			var se *laneServerError
			if !errors.As(err, &se) {
				return false, fmt.Errorf("%w: %v", errLaneRetry, err)
			}
			// NOTE: the lane could not take the client's settings or role (a
			// read-pool user not granted the client's role, say). Running the
			// read with other settings or privileges is not an option.
			s.log.Warn("vector lane cannot take the client's session settings", zap.Error(err))
			return true, s.refuseUnit(&wire.Error{Severity: "ERROR", Code: CodeCannotConnectNow,
				Message: "vector lane cannot take this session's settings or role",
				Detail:  err.Error(),
				Hint:    "Grant the client's role to the read pool's user (GRANT role TO read_pool_user), or remove the table from the vector lane."})
		}
	}
	c.fitted = s.snapshot.id
	return false, nil
}

// readOnLane sends request b to lane connection c, which has the client's
// settings, and relays the answer (see runOnLane).
func (s *session) readOnLane(c *laneConn, b *batch) (broken bool, err error) {

	w := c.w
	var tr replyTracker
	names := s.writeShared(w, b, s.plans.cur.steps, c.stmts, nil, &tr, false)
	// The lane session is checked right behind the request, in the same
	// write: its answer is read after the client has had its own.
	expect := c.writeCheck(b.sql != "")
	if err := w.Flush(); err != nil {
		return true, fmt.Errorf("%w: %v", errLaneRetry, err)
	}

	s.mu.Lock()
	s.mu.running = &c.target
	s.mu.Unlock()
	defer s.restorePrimary()
	s.lane.Store(c)
	defer s.lane.Store(nil)
	broken, err = s.relayLane(c, b, &tr, names)
	var refusal *laneRefusal
	if errors.Is(err, errLaneRetry) || errors.As(err, &refusal) {
		// The request runs on the primary, which parses the client's named
		// statements again: the lane's ParseComplete (held back, never
		// shown) must not make them look defined already.
		s.forgetLaneParses()
	}
	detail := ""
	if !broken {
		c.discard, detail = c.verify(expect)
		broken = c.discard == discardCheck // the connection's state is unknown
	}
	if c.discard != "" { // verify, or relayLane, saw the session changed
		s.srv.lanes.discarded(s.database(), c, c.discard, detail, router.Fingerprint(s.plans.cur.sqlTexts()))
	}
	return broken, err
}

// writeShared writes request b to a backend shared with other clients (a
// vector-lane connection, or a holder's primary taking a rerouted write), on
// which statements live under content-derived names: held lists those the
// backend has, guarded by heldMu when not nil. What was sent goes to tr; the
// returned map names the client's statement behind each content name, for
// error messages.
//
// A statement the request binds or describes is prepared right before the first
// message that needs it if the backend lacks it (hidden from the client).
// The client's own Parse messages are sent under the content name, after
// closing any copy the backend has (so a plan made before DDL is not reused,
// and the client's Parse errors where and as it would have). Bind and
// Describe are rewritten to the content names. With guest the request is a
// write rerouted into another client's transaction: it runs on guestPortal,
// a simple Query in extended form, and the savepoint's RELEASE goes before
// its Sync (guest_wrap.go).
func (s *session) writeShared(w *bufio.Writer, b *batch, steps []planStep, held *stmtLRU, heldMu *sync.Mutex, tr *replyTracker, guest bool) map[stmtKey]string {
	if b.sql != "" && len(b.msgs) == 1 {
		if guest {
			s.writeGuestQuery(w, b, steps, tr)
			return nil
		}
		s.dropStmt("") // a simple Query replaces the unnamed statement
		wire.WriteRaw(w, wire.Query, b.buf[5:])
		tr.add(sentMsg{typ: wire.Query, exec: steps[0].stmt})
		return nil
	}
	lock := func() {
		if heldMu != nil {
			heldMu.Lock()
		}
	}
	unlock := func() {
		if heldMu != nil {
			heldMu.Unlock()
		}
	}
	names := map[stmtKey]string{}
	// present: content names the backend holds at this point of the request.
	present := map[stmtKey]bool{}
	var used []stmtKey
	for i := range b.msgs {
		m := &b.msgs[i]
		switch {
		case m.typ == wire.Parse:
			s.stampEnv(m.stmt, nil) // parseenv.go
			used = append(used, m.stmt.key)
		case m.typ == wire.Bind || m.typ == wire.Describe && m.kind == wire.ObjectStatement:
			if st := m.resolved; st != nil {
				used = append(used, st.key)
			}
		}
	}
	lock()
	fresh := 0
	for _, k := range used {
		if held.has(k) {
			present[k] = true
			held.touch(k)
		} else if !present[k] {
			fresh++
		}
	}
	// Room for what this request adds, closing the least recently used.
	evict := held.trimTo(held.max-fresh, present)
	for k := range present {
		present[k] = held.has(k)
	}
	unlock()
	for _, k := range evict {
		// First in the request, so nothing before can make the server skip it.
		w.Write(wire.AppendCloseStatement(nil, string(k)))
		tr.add(sentMsg{typ: wire.Close, kind: wire.ObjectStatement, hidden: true})
	}
	sharedChange := func(st *preparedStmt, add bool) *regChange {
		c := &regChange{shared: held, sharedMu: heldMu, key: st.key}
		if add {
			c.stmt = st
		}
		return c
	}
	next := 0 // the step the next Execute runs
	for i := range b.msgs {
		m := &b.msgs[i]
		raw := b.buf[m.start:m.end]
		switch {
		case m.typ == wire.Parse:
			st := m.stmt
			names[st.key] = m.name
			if m.name == "" {
				// Parsing the unnamed statement drops the old one, even if the
				// new one fails.
				s.dropStmt("")
			}
			lock()
			has := held.has(st.key)
			unlock()
			if has || present[st.key] {
				w.Write(wire.AppendCloseStatement(nil, string(st.key)))
				tr.add(sentMsg{typ: wire.Close, kind: wire.ObjectStatement, hidden: true, change: sharedChange(st, false)})
			}
			w.Write(wire.AppendParse(nil, string(st.key), st.sql, st.paramOIDs))
			ch := sharedChange(st, true)
			ch.reg, ch.name, ch.client = s.reg, m.name, true
			tr.add(sentMsg{typ: wire.Parse, change: ch})
			present[st.key] = true
		case m.typ == wire.Bind || m.typ == wire.Describe && m.kind == wire.ObjectStatement:
			st := m.resolved
			if st == nil && (!guest || m.typ != wire.Bind) {
				// Unknown to the client: let the server say so, by name.
				w.Write(raw)
				tr.add(sentMsg{typ: m.typ, kind: m.kind})
				continue
			}
			if st == nil {
				// The same, on a rerouted write's own portal.
				closeGuestPortal(w, tr)
				writeBind(w, raw, guestPortal, m.name)
				tr.add(sentMsg{typ: m.typ})
				continue
			}
			names[st.key] = m.name
			if !present[st.key] {
				w.Write(wire.AppendParse(nil, string(st.key), st.sql, st.paramOIDs))
				tr.add(sentMsg{typ: wire.Parse, hidden: true, change: sharedChange(st, true)})
				present[st.key] = true
			}
			if m.typ == wire.Bind {
				portal := "" // the unnamed portal
				if guest {
					closeGuestPortal(w, tr)
					portal = guestPortal
				}
				writeBind(w, raw, portal, string(st.key))
			} else {
				out, _ := (&pgproto3.Describe{ObjectType: wire.ObjectStatement, Name: string(st.key)}).Encode(nil)
				w.Write(out)
			}
			tr.add(sentMsg{typ: m.typ, kind: m.kind})
		default:
			sm := sentMsg{typ: m.typ, kind: m.kind}
			if m.typ == wire.Execute {
				sm.exec = steps[next].stmt
				next++
			}
			if guest && writeGuestMsg(w, m, tr, sm) {
				continue
			}
			w.Write(raw)
			tr.add(sm)
		}
	}
	return names
}

// writeBind writes raw, a client's Bind, to portal and statement stmt; its
// parameters and formats go on untouched.
func writeBind(w *bufio.Writer, raw []byte, portal, stmt string) {
	// Bind body: portal, statement, then the rest.
	_, rest, _ := wire.CString(raw[5:])
	_, rest, _ = wire.CString(rest)
	w.WriteByte(byte(wire.Bind))
	var l [4]byte
	wire.PutLength(l[:], len(portal)+1+len(stmt)+1+len(rest))
	w.Write(l[:])
	w.WriteString(portal)
	w.WriteByte(0)
	w.WriteString(stmt)
	w.WriteByte(0)
	w.Write(rest)
}

// clientNames rewrites content-derived statement names in an ErrorResponse
// body into the client's own names ("" for the unnamed statement), so that an
// error reads as PostgreSQL would have written it.
func clientNames(body []byte, names map[stmtKey]string) []byte {
	if len(names) == 0 || !bytes.Contains(body, []byte("txlane_")) {
		return body
	}
	var e pgproto3.ErrorResponse
	if e.Decode(body) != nil {
		return body
	}
	for k, n := range names {
		e.Message = strings.ReplaceAll(e.Message, `"`+string(k)+`"`, `"`+n+`"`)
		e.Detail = strings.ReplaceAll(e.Detail, `"`+string(k)+`"`, `"`+n+`"`)
	}
	out, err := e.Encode(nil)
	if err != nil {
		return body
	}
	return out[5:]
}

// relayLane forwards the lane's answer to the client up to ReadyForQuery,
// which it rewrites to the client's own status. An error inside the client's
// transaction fails the primary's transaction too before the client hears
// ReadyForQuery.
//
// The first messages of an answer (ParseComplete, BindComplete,
// CloseComplete, ParameterDescription, RowDescription, NoData, notices) are
// held back until a row, a command completion or an error other than a
// refusal comes: until then the client has received nothing, so a write the
// lane refuses (laneRefusalCodes) can still run on the primary instead, and
// relayLane returns a *laneRefusal without a word to the client. Once any of
// the answer was passed on, a refusal reaches the client as the server wrote
// it (and is remembered: laneRefused).
//
// A ParameterStatus or NotificationResponse from the lane is not the client's
// (its session lives on the primary): the read changed the lane session, so
// the connection is not handed on (broken).
func (s *session) relayLane(c *laneConn, b *batch, tr *replyTracker, names map[stmtKey]string) (broken bool, err error) {
	failed := false
	forwarded := false       // whether any of the answer reached the client
	var held []byte          // the answer's first messages, not yet passed on
	var refusal *laneRefusal // a refusal before anything was passed on
	executed := 0            // Execute messages completed
	sessionChanged := false
	// NOTE: when a write to the client fails, the client is gone and the
	// lane connection is given up at once (broken): draining the rest of
	// the answer could mean reading gigabytes for nobody, and after a
	// message forwarded in part the reader stands inside that message.
	for {
		typ, _, err := c.r.Next()
		if err != nil {
			if refusal != nil {
				return true, refusal
			}
			if !forwarded {
				// Nothing of the answer reached the client: the read can run
				// on the primary instead.
				return true, fmt.Errorf("%w: %v", errLaneRetry, err)
			}
			return true, s.laneLostMidway(err)
		}
		if tr.reply(typ) {
			if err := c.r.Skip(); err != nil {
				return true, s.laneLostMidway(err)
			}
			continue
		}
		switch typ {
		case wire.ReadyForQuery:
			laneStatus, err := c.r.Status()
			if err != nil {
				if refusal != nil {
					return true, refusal
				}
				return true, s.laneLostMidway(err)
			}
			// A lane connection only ever runs reads outside a transaction
			// block: any other status means it is not fit for the next client.
			if laneStatus != wire.TxIdle {
				c.discard = discardTxOpen
			}
			broken = laneStatus != wire.TxIdle || sessionChanged
			if refusal != nil {
				return broken, refusal
			}
			s.srv.metrics.laneReadDone(failed)
			status := s.TxStatus()
			if failed && status == TxActive {
				if err := s.poisonPrimary(); err != nil {
					return broken, err
				}
				status = s.TxStatus()
			}
			s.out.mu.Lock()
			s.out.w.Write(held)
			wire.WriteRaw(s.out.w, wire.ReadyForQuery, []byte{byte(status)})
			err = s.out.w.Flush()
			s.out.mu.Unlock()
			return broken, err
		case wire.ParameterStatus, wire.NotificationResponse:
			if !sessionChanged {
				c.discard = discardReported
				if typ == wire.NotificationResponse {
					c.discard = discardNotified
				}
			}
			sessionChanged = true
			if err := c.r.Skip(); err != nil {
				return true, s.laneLostMidway(err)
			}
			continue
		case wire.CommandComplete, wire.EmptyQueryResponse, wire.PortalSuspended:
			executed++
		}
		if refusal != nil {
			if typ == wire.ErrorResponse {
				failed = true
			}
			if err := c.r.Skip(); err != nil {
				return true, s.laneLostMidway(err)
			}
			continue
		}
		if !forwarded && heldBack(typ) {
			body, err := c.r.Body()
			if err != nil {
				return true, fmt.Errorf("%w: %v", errLaneRetry, err)
			}
			held = appendMsg(held, typ, body)
			continue
		}
		if typ == wire.ErrorResponse {
			body, err := c.r.Body()
			if err != nil {
				if !forwarded {
					return true, fmt.Errorf("%w: %v", errLaneRetry, err)
				}
				return true, s.laneLostMidway(err)
			}
			code := wire.ErrorCode(body)
			if laneRefusalCodes[code] {
				ref := &laneRefusal{code: code, exec: executed}
				if !forwarded {
					// Nothing reached the client: the statement runs again on
					// the primary. Drain the lane up to its ReadyForQuery.
					refusal = ref
					continue
				}
				// NOTE: part of the answer is with the client: it gets the
				// server's error, which fails its transaction as a write
				// would have if it failed. Nothing was written.
				s.laneRefused(ref, refusedError)
			}
			s.srv.metrics.serverError(laneVector, code)
			failed = true
			forwarded = true
			s.out.mu.Lock()
			s.out.w.Write(held)
			held = nil
			wire.WriteRaw(s.out.w, typ, clientNames(wire.WithSQLState(body), names))
			if !c.r.Buffered() {
				err = s.out.w.Flush()
			}
			s.out.mu.Unlock()
			if err != nil {
				return true, err
			}
			continue
		}
		forwarded = true
		s.out.mu.Lock()
		if held != nil {
			s.out.w.Write(held)
			held = nil
		}
		err = c.r.Forward(s.out.w)
		if err == nil && !c.r.Buffered() {
			err = s.out.w.Flush()
		}
		s.out.mu.Unlock()
		if err != nil {
			// NOTE: a failed Forward may also be the lane's side (the body
			// arrives as it is forwarded): either way the lane connection
			// goes, and the client, whose answer was cut, is closed.
			return true, err
		}
	}
}

// heldBack reports whether a lane message of type typ opens an answer
// without being part of its result, so that relayLane may hold it back.
func heldBack(typ wire.Backend) bool {
	switch typ {
	case wire.ParseComplete, wire.BindComplete, wire.CloseComplete, wire.ParameterDescription,
		wire.RowDescription, wire.NoData, wire.NoticeResponse:
		return true
	}
	return false
}

// appendMsg appends a message of type typ with body to buf.
func appendMsg(buf []byte, typ wire.Backend, body []byte) []byte {
	var l [4]byte
	wire.PutLength(l[:], len(body))
	buf = append(buf, byte(typ))
	buf = append(buf, l[:]...)
	return append(buf, body...)
}

// poisonPrimary fails the primary's open transaction (see poisonSQL) and
// waits until the primary has answered.
func (s *session) poisonPrimary() error {
	q, err := s.query(poisonSQL)
	if err != nil {
		return err
	}
	if q.err == nil {
		return errors.New("BUG: the poison statement did not fail the transaction")
	}
	return nil
}

// query runs sql on the lane connection as a simple Query and reads its
// answer as readAnswer does.
func (c *laneConn) query(sql string, row func(values [][]byte)) error {
	wire.WriteMsg(c.w, &pgproto3.Query{String: sql})
	c.checkReady = false // a simple Query replaces the unnamed statement
	if err := c.w.Flush(); err != nil {
		return err
	}
	return c.readAnswer(row)
}

// readAnswer reads the answer to txlane's own request, already sent, up to
// ReadyForQuery, passing each row's values (valid during the call) to row.
// An ErrorResponse becomes the returned error.
func (c *laneConn) readAnswer(row func(values [][]byte)) error {
	var qerr error
	for {
		typ, _, err := c.r.Next()
		if err != nil {
			return err
		}
		switch typ {
		case wire.ErrorResponse, wire.DataRow, wire.ReadyForQuery:
			body, err := c.r.Body()
			if err != nil {
				return err
			}
			switch typ {
			case wire.ErrorResponse:
				var e pgproto3.ErrorResponse
				e.Decode(body)
				qerr = &laneServerError{msg: fmt.Sprintf("%s (SQLSTATE %s)", e.Message, e.Code)}
			case wire.DataRow:
				if row != nil {
					var dr pgproto3.DataRow
					if err := dr.Decode(body); err != nil {
						return err
					}
					row(dr.Values)
				}
			default:
				return qerr
			}
		default:
			if typ == wire.NotificationResponse {
				c.tainted = true // see laneConn.tainted
			}
			if err := c.r.Skip(); err != nil {
				return err
			}
		}
	}
}

// refuseUnit answers the current request, none of which was sent, with an
// error the way the server would: an ErrorResponse, then ReadyForQuery with
// the client's status (an error inside a transaction fails it, so the
// primary's transaction is failed too).
func (s *session) refuseUnit(e *wire.Error) error {
	status := s.TxStatus()
	if status == TxActive {
		if err := s.poisonPrimary(); err != nil {
			return err
		}
		status = s.TxStatus()
	}
	s.out.mu.Lock()
	defer s.out.mu.Unlock()
	wire.WriteError(s.out.w, e)
	wire.WriteRaw(s.out.w, wire.ReadyForQuery, []byte{byte(status)})
	return s.out.w.Flush()
}

// errLaneRetry reports a vector-lane connection that failed before any of
// the request's answer reached the client: the request, a pure read, runs on the
// primary lane instead.
var errLaneRetry = errors.New("vector-lane connection failed before answering")

// laneServerError is an ErrorResponse a vector-lane connection returned to a
// query of txlane's own.
type laneServerError struct{ msg string }

func (e *laneServerError) Error() string { return e.msg }

// laneLostMidway handles a lane connection that failed while answering: the
// client may have seen part of an answer, so it is closed with an error.
func (s *session) laneLostMidway(err error) error {
	s.log.Warn("vector-lane connection lost mid-answer", zap.Error(err))
	return &wire.Error{Severity: "FATAL", Code: CodeConnectionFailure,
		Message: "vector-lane connection lost", Detail: "The connection running a read for this session failed while answering."}
}

// refreshSnapshot re-reads the client's session settings, the isolation of
// its transaction and its temporary relations from the primary (one query; a
// second lists the temporary relations of a session that has a temporary
// schema), for the next offload.
//
// serverErr is the server's error if the query failed there (the session
// carries on); err is a failure of the connection.
func (s *session) refreshSnapshot() (serverErr *pgproto3.ErrorResponse, err error) {
	// NOTE: cleared before the read: a change reported while it runs marks
	// the snapshot dirty again.
	s.snap.dirty.Store(false)
	s.srv.metrics.stateReads.Inc()
	sql, names := snapshotQuery(s.customSettings())
	q, err := s.query(sql)
	if err != nil {
		// Not read (a cancel may have ended the wait for a backend, and
		// the session carries on): still to be read.
		s.snap.dirty.Store(true)
		return nil, err
	}
	if q.err != nil {
		s.snap.dirty.Store(true)
		return q.err, nil
	}
	if len(q.rows) != 1 {
		return nil, fmt.Errorf("reading session settings from the primary: %d rows", len(q.rows))
	}
	snap, ok := parseSnapshot(names, q.rows[0])
	if !ok {
		return nil, errors.New("reading session settings from the primary: a value not in hex")
	}
	snap.id = snapshotIDs.Add(1)
	if snap.tempSchema {
		tq, err := s.query(tempRelationsSQL)
		if err != nil {
			s.snap.dirty.Store(true)
			return nil, err
		}
		if tq.err != nil {
			s.snap.dirty.Store(true)
			return tq.err, nil
		}
		var list []byte
		if len(tq.rows) == 1 && len(tq.rows[0]) == 1 {
			list = tq.rows[0][0]
		}
		snap.temp, snap.tempOverflow = parseTempList(list)
	}
	s.snapshot = snap
	s.searchPath = searchPathOf(s.snapshot)
	s.mu.Lock()
	// The server's temporary relations replace what the classifier noted:
	// nothing ran on the primary since (no request is in flight).
	s.mu.tx.SetTemp(s.snapshot.temp, s.snapshot.tempOverflow)
	if iso, ok := policy.ParseIsolation(s.snapshot.isolation); ok && s.mu.tx.InBlock() {
		s.mu.tx.Isolation = iso
	}
	if s.snapshot.defaultsOK {
		// The next BEGIN's characteristics, without a read of its own
		// (snapstate.go): a role's or database's default (ALTER ROLE … SET)
		// is none of txlane's parsing.
		s.mu.tx.ServerDefaults(s.snapshot.defaults)
	}
	s.mu.Unlock()
	return nil, nil
}

// answerServerError answers the current request with an error the server
// returned to one of txlane's own queries, then ReadyForQuery with the
// client's status (which the server's error has already set).
func (s *session) answerServerError(e *pgproto3.ErrorResponse) error {
	status := s.TxStatus()
	s.out.mu.Lock()
	defer s.out.mu.Unlock()
	wire.WriteMsg(s.out.w, e)
	wire.WriteRaw(s.out.w, wire.ReadyForQuery, []byte{byte(status)})
	return s.out.w.Flush()
}

// customSettings lists the custom settings the client has set, sorted.
func (s *session) customSettings() []string {
	out := make([]string, 0, len(s.customs))
	for n := range s.customs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// routing returns the session's routing snapshot.
func (s *session) routing() *routing {
	dr := s.dbRouting.Load()
	if dr == nil {
		// Looked up once (the map's lock is global), always the same.
		dr = s.srv.dbRoutingFor(s.database())
		s.dbRouting.Store(dr)
	}
	return s.srv.currentRouting(s.database(), dr)
}

// mayReadVector reports whether some read of stmts names a vector table
// under some search_path (policy.Rules.MayBeVector): only then can a fresh
// search_path turn a read that is not a vector read into one.
func mayReadVector(stmts []*policy.Statement, rules *policy.Rules) bool {
	for _, st := range stmts {
		if mayReadVectorStmt(st, rules) {
			return true
		}
	}
	return false
}

func mayReadVectorStmt(st *policy.Statement, rules *policy.Rules) bool {
	for _, t := range st.Reads {
		if rules.MayBeVector(t) {
			return true
		}
	}
	for i := range st.Parts {
		if mayReadVectorStmt(&st.Parts[i], rules) {
			return true
		}
	}
	return false
}

// database is the database the client logged in to.
func (s *session) database() string {
	if s.db != "" {
		return s.db
	}
	return startupDatabase(s.startup.Parameters) // a session made without server.go's handle
}

// startupDatabase is the database a login with startup parameters params
// asks for: "database", else the user name (PostgreSQL's default).
func startupDatabase(params map[string]string) string {
	if db := params["database"]; db != "" {
		return db
	}
	return params["user"]
}

// searchPathOf returns the schemas of the snapshot's search_path, "$user"
// expanded to the current user.
func searchPathOf(snap sessionSnapshot) []string {
	v := snap.values["search_path"]
	if v == nil {
		return nil
	}
	path, err := policy.ParseSearchPath(*v)
	if err != nil {
		return nil
	}
	user := ""
	if u := snap.values[settingRole]; u != nil {
		user = *u
	}
	return policy.ExpandSearchPath(path, user)
}
