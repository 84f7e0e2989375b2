package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/proxy/console"
	"github.com/txlane/txlane/router"

	"github.com/txlane/txlane/proxy/wire"
)

// CodeEscapedWrite is the SQLSTATE of a write refused because it would escape
// another connection's open transaction for the same unit of work. Class 25
// (invalid transaction state); the subclass is txlane's own.
const CodeEscapedWrite = "25L01"

// UnitHolder describes a connection that holds a unit of work: it has an
// open transaction whose statements carried the request.
type UnitHolder struct {
	// Unit is the unit's name ("" for a unit another instance holds that
	// this one has not seen: pg_locks shows only its Key).
	Unit string
	// Local: a client of this instance holds it (ClientID, ClientAddr
	// describe the client). Otherwise the holder was found through its
	// advisory lock (policy.shared_units): Instance and BackendPID say
	// where (BackendPID 0: a prepared transaction).
	Local bool
	// Key is the unit's advisory lock key (unitKey); Instance the holder's
	// instance_id; BackendPID the process ID of the backend running its
	// transaction.
	Key        uint32
	Instance   int
	BackendPID uint32
	// Prepared: the holder is a prepared transaction (PREPARE TRANSACTION
	// keeps its locks until COMMIT PREPARED or ROLLBACK PREPARED).
	Prepared        bool
	ClientID        uint64
	ClientAddr      string
	ApplicationName string
	User            string
	Database        string
	// Since is when the holder's transaction first carried the request
	// (for a holder on another instance: when its transaction began, if
	// pg_stat_activity shows it).
	Since time.Time
	// Failed is true when the holder's transaction is in the failed state (E).
	Failed bool
	// Others counts the other transactions of this instance's clients that
	// hold the unit too (in a 25L01 refusal: the holder named is the
	// oldest).
	Others int
}

// unitRegistry maps units of work to the sessions holding them. It is safe
// for concurrent use; no lock is held across I/O.
//
// Several transactions may carry one unit at once (a read carrying it is
// allowed while another holds it, and it holds the unit too from then on):
// each is a holder, and a write of the unit from any other connection
// escapes at least one of them. A session whose unit txlane has not read
// back yet (units_stale.go) holds an unknown unit until it has.
type unitRegistry struct {
	mu      sync.Mutex
	holders map[string][]*unitHold // by unit, oldest first
	// unknown: sessions that may hold a unit txlane does not know yet
	// (units_stale.go).
	unknown map[*session]*unknownHold
	// writing: sessions with writes in flight outside a transaction, of
	// units nobody held when they were checked (units_inflight.go).
	writing map[*session]*writeMark
}

// unitHold is one unit held by one session's transaction.
type unitHold struct {
	unit string
	sess *session // the holder, as an identity only
	// who describes the holder as it was when it took the unit. The
	// connection its transaction runs on (rerouted writes go there) is the
	// holder's primary connection of the moment (see holderBackend).
	who   UnitHolder
	since time.Time
	// txEnds is the holder's session.txEnds when it took the unit: once
	// the session has sent a transaction end since, the transaction it runs
	// may be another (COMMIT; BEGIN in one request keeps the hold until the
	// request ends), and nothing is rerouted into it (rerouteBar).
	txEnds uint64
	// rerouted lists tables written by writes rerouted into the holder's
	// transaction (reroutedUnknown: some write named none); guarded by the
	// registry's mu.
	rerouted        []policy.Table
	reroutedUnknown bool
}

func newUnitRegistry() *unitRegistry {
	return &unitRegistry{holders: make(map[string][]*unitHold), unknown: make(map[*session]*unknownHold),
		writing: make(map[*session]*writeMark)}
}

// Units lists the units of work currently held, sorted by unit (a unit
// several transactions hold is listed once per holder, oldest first).
func (s *Server) Units() []UnitHolder {
	r := s.units
	r.mu.Lock()
	var holds []*unitHold
	for _, hs := range r.holders {
		holds = append(holds, hs...)
	}
	r.mu.Unlock()
	out := make([]UnitHolder, 0, len(holds))
	for _, h := range holds {
		out = append(out, h.describe())
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Unit != out[j].Unit {
			return out[i].Unit < out[j].Unit
		}
		return out[i].Since.Before(out[j].Since)
	})
	return out
}

func (h *unitHold) describe() UnitHolder {
	d := h.who
	d.Failed = h.sess.TxStatus() == TxFailed
	d.BackendPID = h.sess.serverPID()
	return d
}

// holderDesc describes s as the holder of unit u since t.
func (s *session) holderDesc(u string, t time.Time) UnitHolder {
	return UnitHolder{
		Unit:            u,
		Local:           true,
		Key:             unitKey(u),
		Instance:        s.srv.opts.Instances.ID,
		ClientID:        s.id,
		ClientAddr:      clientAddr(s.client),
		ApplicationName: s.startup.Parameters["application_name"],
		User:            s.startup.Parameters["user"],
		Database:        s.database(),
		Since:           t,
	}
}

// any reports whether some connection holds a unit (or may hold one txlane
// does not know yet).
func (r *unitRegistry) any() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.holders) > 0 || len(r.unknown) > 0
}

// others returns the holds on unit u of sessions other than s, oldest
// first.
func (r *unitRegistry) others(u string, s *session) []*unitHold {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*unitHold
	for _, h := range r.holders[u] {
		if h.sess != s {
			out = append(out, h)
		}
	}
	return out
}

// withHeld returns units plus those s holds that it lacks (units itself
// when s holds none: the common case costs one atomic load).
func (r *unitRegistry) withHeld(units []string, s *session) []string {
	if s.unitsHeld.Load() == 0 {
		return units
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := units
	for u := range r.holders {
		if r.holdsLocked(u, s) && !slices.Contains(out, u) {
			if len(out) == len(units) {
				out = slices.Clone(units) // units may be the plan's own
			}
			out = append(out, u)
		}
	}
	slices.Sort(out[len(units):]) // map order: a stable order for the checks
	return out
}

// sole reports whether h is the only hold on u.
func (r *unitRegistry) sole(u string, h *unitHold) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	hs := r.holders[u]
	return len(hs) == 1 && hs[0] == h
}

// hold makes s a holder of u (if it is not one already).
func (r *unitRegistry) hold(u string, s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.holdLocked(u, s)
}

// holds reports whether s holds u; r.mu must be held.
func (r *unitRegistry) holdsLocked(u string, s *session) bool {
	for _, h := range r.holders[u] {
		if h.sess == s {
			return true
		}
	}
	return false
}

// holdLocked is hold with r.mu held.
func (r *unitRegistry) holdLocked(u string, s *session) {
	if r.holdsLocked(u, s) {
		return
	}
	now := time.Now()
	r.holders[u] = append(r.holders[u], &unitHold{unit: u, sess: s, who: s.holderDesc(u, now), since: now, txEnds: s.txEnds.Load()})
	s.unitsHeld.Add(1)
}

// releaseAll drops every unit s holds, its unknown one, and its writes in
// flight (units_inflight.go): called when its backend is idle outside a
// transaction with nothing in flight, and when it ends.
func (r *unitRegistry) releaseAll(s *session) {
	if s.srv.shared != nil {
		s.releaseIdle(nil) // held for its transaction before its first snapshot
	}
	if s.unitsHeld.Load() == 0 && !s.unitPending.Load() && !s.unitWriting.Load() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resolveLocked(s)
	r.unmarkLocked(s)
	for u, hs := range r.holders {
		kept := hs[:0]
		for _, h := range hs {
			if h.sess == s {
				s.unitsHeld.Add(-1)
			} else {
				kept = append(kept, h)
			}
		}
		if len(kept) == 0 {
			delete(r.holders, u)
		} else {
			clear(hs[len(kept):])
			r.holders[u] = kept
		}
	}
}

// noteRerouted records that a write rerouted into h wrote tables: later reads
// of them carrying the request follow the write into the holder's transaction.
func (r *unitRegistry) noteRerouted(h *unitHold, tables []policy.Table) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range tables {
		h.rerouted = policy.AppendTable(h.rerouted, t)
	}
	if len(tables) == 0 {
		h.reroutedUnknown = true
	}
}

// followsReroute reports whether a read of tables must join h's transaction
// because writes rerouted into it touched them.
func (r *unitRegistry) followsReroute(h *unitHold, reads []policy.Table) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h.reroutedUnknown && len(reads) > 0 {
		return true
	}
	for _, t := range reads {
		for _, w := range h.rerouted {
			if w.Name == t.Name && (w.Schema == "" || t.Schema == "" || w.Schema == t.Schema) {
				return true
			}
		}
	}
	return false
}

// beginsTx reports whether st (or a part of a multi-statement st) opens a
// transaction block.
func beginsTx(st *policy.Statement) bool {
	if st.Tx.Kind == policy.TxBegin {
		return true
	}
	for i := range st.Parts {
		if st.Parts[i].Tx.Kind == policy.TxBegin {
			return true
		}
	}
	return false
}

// isWrite reports whether st may write, for the units of work: what must
// not escape a transaction (data: not a setting set_config sets). Besides
// what policy counts as a write, code the catalog cannot see into (an IMMUTABLE or STABLE function with an opaque body may call a
// volatile one that writes; an unproven object) counts (fail safe).
func isWrite(st *policy.Statement) bool {
	if len(st.Parts) > 0 {
		// Several statements: the whole's flags are the union of theirs.
		for i := range st.Parts {
			if isWrite(&st.Parts[i]) {
				return true
			}
		}
		return false
	}
	if st.Flags&(policy.FlagReadsUnknown|policy.FlagUnproven) != 0 {
		return true
	}
	// A set_config writes a setting of the session's own, which cannot
	// escape a transaction (settings are transactional).
	return st.MayWrite() && !st.WritesSettingsOnly
}

// writtenTables returns the tables stmts write, or nil when some statement
// may write tables it does not name.
func writtenTables(stmts []*policy.Statement) []policy.Table {
	return policy.WrittenTables(stmts)
}

// checkUnits enforces the unit-of-work rules on the steps of the current
// request not checked yet, before any of them is sent. final says the
// request is complete and nothing of it was sent, so it may still be
// rerouted whole. handled is true when the request was answered here
// (rerouted); rej names a step to refuse: the caller makes the server raise
// its error in the step's place (or refuses a simple Query whole).
func (s *session) checkUnits(final bool) (handled bool, rej *rejection, err error) {
	pl := &s.plans.cur
	from := pl.checked
	pl.checked = len(pl.steps)
	idle := s.TxStatus() == TxIdle && s.inFlight() == 0 && s.open == nil
	if idle && s.unitWriting.Load() {
		// A write marked in flight that never went out (or whose answer
		// came without the idle that ends the mark).
		s.srv.units.unmark(s)
	}
	firstWrite, begins := -1, false
	ownWrite := false // a write of the request's own, not only end work (endwork.go)
	for i, st := range pl.steps[from:] {
		if firstWrite < 0 && (isWrite(st.stmt) || st.runs != nil && isWrite(st.runs)) {
			firstWrite = from + i
		}
		ownWrite = ownWrite || isWrite(st.stmt) || st.runs != nil && st.runs != endWorkStmt && isWrite(st.runs)
		begins = begins || beginsTx(st.stmt)
	}
	if pl.sentEarly {
		// A unit set after writes already sent (units_request.go). The
		// setter may write itself (a DO block): checked as a setter all the
		// same.
		setter := unitSetAfterWrites(pl.steps, from)
		if rej := s.checkUnseenSetterAfterWrites(setter); rej != nil {
			return false, rej, nil
		}
		if firstWrite < 0 {
			firstWrite = setter
		}
	}
	// The session's units matter when another connection holds one, or when
	// this request opens a transaction (explicit or implicit) that will;
	// with policy.shared_units, also for any write: its holder may be a
	// client of another instance, which units.any() does not see.
	if idle && (begins || pl.statements() > 1 || s.srv.units.any() || s.srv.shared != nil && firstWrite >= 0) {
		if err := s.freshUnits(); err != nil {
			return false, nil, err
		}
	}
	s.mergeUnitSeen()
	units := s.unitsOfWork(pl)
	if rej := s.checkUnknown(firstWrite, units, idle); rej != nil {
		return false, rej, nil
	}
	if firstWrite >= 0 {
		if rej := s.checkUnitSetInRequest(from); rej != nil {
			return false, rej, nil
		}
	}
	units = s.unitsOfWork(pl)
	if ownWrite && !idle {
		// NOTE: a write inside a transaction that holds units is a write of
		// each of them, whatever unit its own text or SET LOCAL names now:
		// it commits with that transaction, outside any other holder's. Not
		// the end work a COMMIT runs (deferred triggers, cursors WITH HOLD):
		// the writes that queued it were checked when they arrived, and a
		// holder must be able to end its own transaction while another
		// holds its unit too; a COMMIT that names a unit is still checked.
		units = s.srv.units.withHeld(units, s)
	}
	if len(units) == 0 {
		return false, nil, nil
	}
	// deferred: units other sessions here hold that this request writes,
	// with policy.shared_units: whether another instance's client holds
	// them too is asked first (sharedCheck), and decides between the local
	// rules and a refusal (a write is never rerouted into one holder's
	// transaction while another instance's client holds the unit too).
	var deferred []string
	escaped := false // a write of a unit others hold was let through (allow, log)
	for _, u := range units {
		others := s.srv.units.others(u, s)
		if len(others) == 0 {
			continue
		}
		if s.srv.shared != nil && firstWrite >= 0 {
			deferred = append(deferred, u)
			continue
		}
		switch {
		case firstWrite >= 0:
			// NOTE: an allowed escape (allow, log) goes on to the other
			// units: the writer holds them all, this one included.
			escaped = true
			if handled, rej, err := s.escapeHolds(final && idle, firstWrite, u, others); handled || rej != nil || err != nil {
				return handled, rej, err
			}
		case final && idle && len(others) == 1 && s.srv.units.followsReroute(others[0], stepReads(pl.steps[from:])) && s.rerouteBar(others[0]) == "" && s.rerouteCodeBar() == "":
			// Read-your-writes across connections: the tables were written
			// inside the holder's transaction, so the read runs there too.
			return true, nil, s.reroute(&s.cur, u, others[0], false)
		}
	}
	// NOTE: several statements in one request outside a transaction block
	// are one implicit transaction for as long as the request runs: it
	// holds its units until its ReadyForQuery, so that a write of the unit
	// elsewhere cannot commit while this one may still roll back. A single
	// autocommit statement commits or fails alone: it holds nothing.
	holds := !idle || begins || pl.statements() > 1 && !pl.sentEarly
	if s.srv.shared != nil {
		if handled, rej, err := s.sharedCheck(pl, from, units, deferred, idle, holds, firstWrite, final && idle); handled || rej != nil || err != nil {
			return handled, rej, err
		}
		for _, u := range deferred {
			if others := s.srv.units.others(u, s); len(others) > 0 {
				escaped = true
				if handled, rej, err := s.escapeHolds(final && idle, firstWrite, u, others); handled || rej != nil || err != nil {
					return handled, rej, err
				}
			}
		}
	}
	if holds {
		if s.pc.Load() == nil {
			// Transaction mode, between transactions: the hold is the
			// transaction's on the backend it runs on, which is taken now
			// (a rerouted write needs it; idle keeps it while units are
			// held).
			p, err := s.attach()
			if err != nil {
				return false, nil, err
			}
			p.release()
		}
		// After the writes of its units in flight elsewhere.
		if rej := s.takeHolds(units, from); rej != nil {
			return false, rej, nil
		}
	} else if firstWrite >= 0 && !escaped {
		// A write outside a transaction: marked in flight (a transaction
		// beginning to hold its unit waits for it), unless a holder came
		// since the look above.
		if u, others := s.srv.units.markWriting(s, units); others != nil {
			return s.escapeHolds(final && idle, firstWrite, u, others)
		}
	}
	return false, nil, nil
}

// freshUnits reads txlane.unit from the server when a statement may have
// changed it in a way the text does not show (see session.unitStale), before
// a check that needs it. The caller calls it only at a safe point outside a
// transaction block; until then every value the unit may have had counts.
func (s *session) freshUnits() error {
	// NOTE: read only outside a transaction block (the caller's idle):
	// inside one, a rollback may bring back a value the server no longer
	// shows (every value seen counts until then).
	if !s.unitStale {
		return nil
	}
	var v string
	known := false
	if s.unitLogin {
		// NOTE: a login's value is that of every login of its pool (same
		// database, user and startup options): read once per backend, and
		// kept for the pool, whose clients without a backend take it.
		var login *string
		if p := s.pc.Load(); p != nil {
			login = p.loginUnit.Load()
		} else if s.pool != nil {
			login = s.pool.loginUnit.Load()
		}
		if login != nil {
			v, known = *login, true
		}
	}
	if !known {
		p, err := s.attach()
		if err != nil {
			return err
		}
		q, err := p.query(unitReadSQL)
		if err != nil {
			return err
		}
		if q.err != nil || len(q.rows) != 1 || len(q.rows[0]) != 1 {
			return nil // kept stale: every value seen still counts
		}
		if v, known = unitFromRow(q.rows[0][0]); !known {
			return nil
		}
		if s.unitLogin {
			p.loginUnit.Store(&v)
			if s.pool != nil {
				s.pool.loginUnit.Store(&v)
			}
		}
	}
	s.unitStale, s.unitUnknown = false, false
	s.unitVals = s.unitVals[:0]
	if v != "" {
		s.unitVals = append(s.unitVals, v)
	}
	return nil
}

// escape applies the escape action to the current request, whose step
// carries unit u held by holder and writes: a client of this instance (h),
// or with h nil a transaction found through its lock (policy.shared_units),
// which cannot be rerouted into. whole says the request may still be
// rerouted whole (it is complete, nothing of it was sent, and the writer is
// idle).
func (s *session) escape(whole bool, step int, u string, holder UnitHolder, h *unitHold) (bool, *rejection, error) {
	pl := &s.plans.cur
	rules := s.routing().rules
	tables := writtenTables(pl.writeStmts())
	action := rules.EscapeFor(tables)
	table := "(unknown tables)"
	if len(tables) > 0 {
		table = tables[0].String()
	} else if pl.runsEndWork(step) {
		table = endWorkTables
	}
	log := s.log.With(zap.String("unit", u), zap.String("table", table), zap.String("action", action.String()),
		zap.String("fingerprint", router.Fingerprint(pl.sqlTexts())))
	if holder.Local {
		log = log.With(zap.Uint64("holder_client", holder.ClientID), zap.String("holder_addr", holder.ClientAddr))
	} else {
		log = log.With(zap.Int("holder_instance", holder.Instance), zap.Uint32("holder_pid", holder.BackendPID))
	}
	// NOTE: the escape is counted by what happens to it: a reroute the
	// writer's request cannot take counts as a rejection.
	refuseErr := func(e *wire.Error) (bool, *rejection, error) {
		s.srv.metrics.Escape(policy.EscapeReject.String(), table)
		return false, &rejection{step: step, err: e}, nil
	}
	refuse := func(why string) (bool, *rejection, error) {
		return refuseErr(escapeError(u, table, holder, action, why))
	}
	switch action {
	case policy.EscapeAllow:
		s.srv.metrics.Escape(action.String(), table)
		return false, nil, nil
	case policy.EscapeLog:
		s.srv.metrics.Escape(action.String(), table)
		log.Warn("write escapes the open transaction of its unit of work (allowed by policy)")
		return false, nil, nil
	case policy.EscapeReroute:
		switch {
		case holder.Others > 0:
			log.Warn("write not rerouted: several transactions hold the unit")
			return refuse(fmt.Sprintf("%d other transactions hold the unit too: a write is rerouted only into the transaction of a unit's only holder.", holder.Others))
		case h == nil:
			log.Warn("write not rerouted: the holder is on another txlane instance")
			return refuse("The holder is a client of another txlane instance: a write is rerouted only into a transaction of a client of the same instance.")
		case pl.sentEarly:
			log.Warn("write not rerouted: the request was already partly sent")
			return refuse("Part of the request had already gone to this connection's own backend (a Flush before Sync, or a very large request), so it cannot move to the holder's.")
		case pl.mixed:
			log.Warn("write not rerouted: the request mixes extended messages and a simple Query")
			return refuse("The request mixes extended-protocol messages and a simple Query without a Sync between them; it cannot move to the holder's.")
		case pl.namedPortal:
			log.Warn("write not rerouted: the request uses a named portal")
			return refuse("The request uses a named portal, which lives in the writer's own transaction; it cannot move to the holder's.")
		case !whole:
			log.Warn("write not rerouted: the writer is in a transaction of its own")
			return refuse("The write comes from a connection that is itself in a transaction, so it cannot join the holder's.")
		case holder.Failed:
			log.Warn("write not rerouted: the holder's transaction has failed")
			return refuse("The holder's transaction has failed.")
		}
		if why := s.rerouteBar(h); why != "" {
			log.Warn("write not rerouted", zap.String("why", why))
			return refuse(why)
		}
		if why := s.rerouteCodeBar(); why != "" {
			log.Warn("write not rerouted: what it runs besides its text", zap.String("why", why))
			return refuseErr(codeBarError(escapeError(u, table, holder, action, why)))
		}
		log.Info("write rerouted into the holder's transaction")
		s.srv.metrics.Escape(action.String(), table)
		return true, nil, s.reroute(&s.cur, u, h, true)
	default:
		log.Warn("write rejected: it would escape the open transaction of its unit of work")
		return refuse("")
	}
}

// escapeHolds applies the escape action to the current request, whose step
// carries unit u that the transactions of others hold (see escape). With
// several holders the oldest is named, and the write is never rerouted:
// joining one holder's transaction would still escape the others'.
func (s *session) escapeHolds(whole bool, step int, u string, others []*unitHold) (bool, *rejection, error) {
	d := others[0].describe()
	d.Others = len(others) - 1
	return s.escape(whole, step, u, d, others[0])
}

// escapeError is the error a rejected escaping write gets; action is the
// escape action in force (a reroute that could not be made gets a hint of
// its own).
func escapeError(u, table string, h UnitHolder, action policy.EscapeAction, why string) *wire.Error {
	detail := fmt.Sprintf("Unit %q is held by client %d at %s (application_name %q, user %q) in a transaction open since %s. ",
		u, h.ClientID, h.ClientAddr, h.ApplicationName, h.User, console.Timestamp(h.Since))
	if !h.Local {
		detail = fmt.Sprintf("Unit %q is held by %s. ", u, h.remoteText())
	}
	if h.Others > 0 {
		detail += fmt.Sprintf("%d other transactions hold it too. ", h.Others)
	}
	detail += "A write from another connection would commit outside that transaction and survive its rollback; nothing was written."
	if why != "" {
		detail += " " + why
	}
	hint := "Run the write inside the holder's transaction (the same pool or connection), give it a unit of its own, " +
		"or set policy.escape (or an escape_overrides entry for this table) to reroute."
	switch {
	case !h.Local:
		hint = "Run the write inside the holder's transaction (through the holder's txlane instance), give it a unit of its own, " +
			"or retry once that transaction has ended; escape: reroute works only within one txlane instance."
	case action == policy.EscapeReroute:
		hint = "Send the write as one request from a connection outside a transaction (no Flush before Sync, no named portal), " +
			"run it inside the holder's transaction, or give it a unit of its own."
	}
	return &wire.Error{Severity: "ERROR", Code: CodeEscapedWrite,
		Message: fmt.Sprintf("write to %s would escape the open transaction of unit %q", table, u),
		Detail:  detail,
		Hint:    hint}
}

// errRerouteGone is the writer's error when the holder's transaction ended
// (or its connection went) before the write could join it.
func rerouteGoneError(u string, h UnitHolder, why string) *wire.Error {
	return &wire.Error{Severity: "ERROR", Code: CodeEscapedWrite,
		Message: fmt.Sprintf("the transaction holding unit %q ended before the rerouted write could join it", u),
		Detail:  fmt.Sprintf("Holder: client %d at %s (application_name %q). %s Nothing was written.", h.ClientID, h.ClientAddr, h.ApplicationName, why),
		Hint:    "Retry the write: it will run on its own connection now that no transaction holds the unit."}
}

// reroute runs unit b, which carries unit u, on the backend of u's holder
// h, inside h's transaction, as soon as that backend is idle (at most
// policy reroute_wait_timeout): the holder's primary connection queues it
// (runWhenIdle). The answer goes to this session's client, with this
// session's own ReadyForQuery status. write says b writes (else it is a read
// following earlier rerouted writes).
func (s *session) reroute(b *batch, u string, h *unitHold, write bool) error {
	pl := &s.plans.cur
	stmts := pl.stmts(0)
	desc := h.describe()
	// wake ends the wait for the holder's backend: closed at the deadline
	// or at the client's cancel (guestCancel), whichever comes first.
	wake := make(chan time.Time)
	var wakeOnce sync.Once
	stop := func() { wakeOnce.Do(func() { close(wake) }) }
	deadline := time.AfterFunc(s.srv.live().RerouteWaitTimeout, stop)
	defer deadline.Stop()

	// The request runs between a savepoint of txlane's own and its
	// RELEASE, on a portal of txlane's own: its failure fails neither the
	// holder's transaction nor its unnamed portal (guest_wrap.go).
	pre, preMsgs := guestSavepoint()
	guard := isoGuardSQL(isoGuardError(u, stmts, desc), write)
	req := &request{stmts: stmts, extended: true,
		guest: &guestRoute{out: &s.out, status: s.TxStatus, done: make(chan struct{}), onCancel: stop,
			pre: pre, keepWrite: true}}
	host, err := s.srv.units.holderBackend(u, h)
	if err == nil {
		// From here the client's cancels go to the holder's backend while
		// the write runs there, and end its wait before (cancel_gate.go).
		// A write canceled there is rolled back to txlane's savepoint,
		// as any failure of it is (guest_wrap.go); the savepoint itself
		// runs before the write's request heads the queue, so no cancel
		// reaches it.
		s.mu.Lock()
		s.mu.running, s.mu.guest = &host.target, &guestRun{host: host, req: req}
		s.mu.Unlock()
		defer func() {
			s.restorePrimary()
			s.mu.Lock()
			s.mu.guest = nil
			s.mu.Unlock()
		}()
		// NOTE: asked again with the holder's backend idle and its write
		// right taken: what the holder sent while the write waited counts
		// (a savepoint, SET LOCAL).
		still := func() bool { return s.srv.units.holdsOn(u, h, host) && holderBar(h) == "" }
		err = host.runWhenIdle(wake, still, req, func(w *bufio.Writer, held *heldStmts) {
			w.Write(preMsgs)
			writeIsoGuard(w, &req.replies, guard)
			s.writeShared(w, b, pl.steps, held.content, &held.mu, &req.replies, true)
		})
	}
	if err != nil && host != nil && host.guestCanceled(req) {
		err = errGuestCanceled
	}
	switch {
	case errors.Is(err, errGuestCanceled):
		return s.refuseUnit(&wire.Error{Severity: "ERROR", Code: CodeQueryCanceled,
			Message: "canceling statement due to user request",
			Detail:  fmt.Sprintf("The write waited to be rerouted into the transaction holding unit %q. Nothing was written.", u)})
	case errors.Is(err, errGuestWaited):
		return s.refuseUnit(&wire.Error{Severity: "ERROR", Code: CodeQueryCanceled,
			Message: fmt.Sprintf("rerouted write waited too long for the transaction holding unit %q", u),
			Detail:  fmt.Sprintf("Holder: client %d at %s stayed busy longer than policy.reroute_wait_timeout (%s). Nothing was written.", desc.ClientID, desc.ClientAddr, s.srv.live().RerouteWaitTimeout),
			Hint:    "Raise policy.reroute_wait_timeout, or run the write inside the holder's transaction."})
	case errors.Is(err, errGuestNotWelcome) && h.sess.txEnds.Load() == h.txEnds && holderBar(h) != "":
		return s.refuseUnit(escapeError(u, describeTables(stmts), desc, policy.EscapeReroute, holderBar(h)))
	case errors.Is(err, errGuestNotWelcome):
		return s.refuseUnit(rerouteGoneError(u, desc, "Its transaction ended while the write waited."))
	case errors.Is(err, errGuestTxFailed):
		return s.refuseUnit(escapeError(u, describeTables(stmts), desc, policy.EscapeReroute, "The holder's transaction has failed."))
	case errors.Is(err, errPrimaryGone):
		return s.refuseUnit(rerouteGoneError(u, desc, "Its connection closed while the write waited."))
	}
	// The write right is ours until the answer is in and a failed write is
	// undone.
	defer s.rerouteCleanup(host)
	if write {
		s.srv.units.noteRerouted(h, reroutedTables(stmts))
	}
	select {
	case <-req.guest.done:
		return nil
	case <-host.gone:
		// The holder's backend is gone, and its transaction with the write.
		return s.refuseUnit(rerouteGoneError(u, desc, "Its connection closed before the write completed; the transaction rolled back."))
	}
}

// describeTables names the first table stmts write, for messages.
func describeTables(stmts []*policy.Statement) string {
	if t := writtenTables(stmts); len(t) > 0 {
		return t[0].String()
	}
	return "(unknown tables)"
}

// stepReads lists the tables steps read, directly or through what they
// reach (made only where a decision needs it: most requests never do).
func stepReads(steps []planStep) []policy.Table {
	var reads []policy.Table
	for _, st := range steps {
		reads = append(append(reads, st.stmt.Reads...), st.stmt.ReadsReached...)
	}
	return reads
}
