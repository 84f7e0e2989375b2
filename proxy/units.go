package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/router"
)

// CodeEscapedWrite is the SQLSTATE of a write refused because it would escape
// another connection's open transaction for the same unit of work. Class 25
// (invalid transaction state); the subclass is txlane's own.
const CodeEscapedWrite = "25L01"

// UnitHolder describes a connection that holds a unit of work: it has an
// open transaction whose statements carried the unit.
type UnitHolder struct {
	Unit            string
	ClientID        uint64
	ClientAddr      string
	ApplicationName string
	User            string
	Database        string
	// Since is when the holder's transaction first carried the unit.
	Since time.Time
	// Failed is true when the holder's transaction is in the failed state (E).
	Failed bool
}

// unitRegistry maps units of work to the sessions holding them. It is safe
// for concurrent use; no lock is held across I/O.
type unitRegistry struct {
	mu      sync.Mutex
	holders map[string]*unitHold // by unit
}

// unitHold is one unit held by one session.
type unitHold struct {
	unit  string
	sess  *session
	since time.Time
	// rerouted lists tables written by writes rerouted into the holder's
	// transaction (reroutedUnknown: some write named none); guarded by the
	// registry's mu.
	rerouted        []policy.Table
	reroutedUnknown bool
}

func newUnitRegistry() *unitRegistry {
	return &unitRegistry{holders: make(map[string]*unitHold)}
}

// Units lists the units of work currently held, sorted by unit.
func (s *Server) Units() []UnitHolder {
	r := s.units
	r.mu.Lock()
	holds := make([]*unitHold, 0, len(r.holders))
	for _, h := range r.holders {
		holds = append(holds, h)
	}
	r.mu.Unlock()
	out := make([]UnitHolder, 0, len(holds))
	for _, h := range holds {
		out = append(out, h.describe())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Unit < out[j].Unit })
	return out
}

func (h *unitHold) describe() UnitHolder {
	s := h.sess
	return UnitHolder{
		Unit:            h.unit,
		ClientID:        s.id,
		ClientAddr:      s.client.RemoteAddr().String(),
		ApplicationName: s.startup.Parameters["application_name"],
		User:            s.startup.Parameters["user"],
		Database:        s.database(),
		Since:           h.since,
		Failed:          s.TxStatus() == TxFailed,
	}
}

// holderOf returns the hold on unit u, or nil.
func (r *unitRegistry) holderOf(u string) *unitHold {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.holders[u]
}

// hold makes s the holder of u unless another session holds it. It reports
// the hold in force afterwards.
func (r *unitRegistry) hold(u string, s *session) *unitHold {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h := r.holders[u]; h != nil {
		return h
	}
	h := &unitHold{unit: u, sess: s, since: time.Now()}
	r.holders[u] = h
	s.unitsHeld.Add(1)
	return h
}

// releaseAll drops every unit s holds.
func (r *unitRegistry) releaseAll(s *session) {
	if s.unitsHeld.Load() == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for u, h := range r.holders {
		if h.sess == s {
			delete(r.holders, u)
			s.unitsHeld.Add(-1)
		}
	}
}

// noteRerouted records that a write rerouted into h wrote tables: later reads
// of them carrying the unit follow the write into the holder's transaction.
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

// isWrite reports whether st may write: what must not escape a transaction.
// Statements txlane cannot classify count as writes (fail safe).
func isWrite(st *policy.Statement) bool {
	switch st.Class {
	case policy.Write, policy.DDL, policy.Unknown:
		return true
	}
	return st.Flags&(policy.FlagWriteCommand|policy.FlagWritingFunction|policy.FlagDataModifyingCTE|
		policy.FlagSelectInto|policy.FlagWritesUnknown) != 0
}

// writtenTables returns the tables stmts write, or nil when some statement
// may write tables it does not name.
func writtenTables(stmts []*policy.Statement) []policy.Table {
	var out []policy.Table
	for _, st := range stmts {
		if !isWrite(st) {
			continue
		}
		if st.Class == policy.Unknown || st.Flags.Has(policy.FlagWritesUnknown) || len(st.Writes) == 0 {
			return nil
		}
		for _, t := range st.Writes {
			out = policy.AppendTable(out, t)
		}
	}
	return out
}

// unitSQL returns the SQL texts unit b runs: the simple Query, or the
// statements its Parse and Bind messages name.
func (s *session) unitSQL(b *batch) []string {
	var out []string
	s.eachUnitSQL(b, func(sql string) { out = append(out, sql) })
	return out
}

// eachUnitSQL calls f with each SQL text unit b runs (see unitSQL), without
// allocating: it runs for every unit.
func (s *session) eachUnitSQL(b *batch, f func(sql string)) {
	if b.sql != "" {
		f(b.sql)
		return
	}
	for i := range b.msgs {
		m := &b.msgs[i]
		switch m.typ {
		case msgParse:
			f(m.stmt.sql)
		case msgBind:
			// A statement this unit parses is already counted; the registry
			// would still name the one it replaces.
			if !b.parsesBefore(i, m.name) {
				if st := s.reg.get(m.name); st != nil {
					f(st.sql)
				}
			}
		}
	}
}

// unitsOf returns the units of work unit b carries: from sqlcommenter
// comments, else from SET [LOCAL] txlane.unit.
func (s *session) unitsOf(b *batch, rules *policy.Rules) []string {
	var units []string
	s.eachUnitSQL(b, func(sql string) {
		us, _ := router.ExtractUnits(sql, rules.UnitCommentKeys())
		for _, u := range us {
			if !slices.Contains(units, u) {
				units = append(units, u)
			}
		}
	})
	if len(units) == 0 {
		if s.unitLocal != "" {
			units = append(units, s.unitLocal)
		} else if s.unitSession != "" {
			units = append(units, s.unitSession)
		}
	}
	return units
}

// checkUnits enforces the unit-of-work rules on unit b before it is sent.
// handled is true when b was answered here (rejected or rerouted).
func (s *session) checkUnits(b *batch) (handled bool, err error) {
	if s.TxStatus() == TxIdle && s.inFlight() == 0 {
		s.unitLocal = "" // SET LOCAL ended with its transaction
	}
	rules := s.routing().rules
	units := s.unitsOf(b, rules)
	if len(units) == 0 {
		return false, nil
	}
	stmts := s.unitStatementsAll(b)
	write, begins := false, false
	var reads []policy.Table
	for _, st := range stmts {
		write = write || isWrite(st)
		begins = begins || beginsTx(st)
		reads = append(append(reads, st.Reads...), st.ReadsReached...)
	}
	for _, u := range units {
		h := s.srv.units.holderOf(u)
		if h == nil || h.sess == s {
			continue
		}
		switch {
		case write:
			return s.escape(b, stmts, u, h, rules)
		case s.srv.units.followsReroute(h, reads) && s.TxStatus() == TxIdle && s.inFlight() == 0:
			// Read-your-writes across connections: the tables were written
			// inside the holder's transaction, so the read runs there too.
			return true, s.reroute(b, stmts, u, h, false)
		}
	}
	if s.TxStatus() != TxIdle || begins || s.inFlight() > 0 {
		for _, u := range units {
			s.srv.units.hold(u, s)
		}
	}
	return false, nil
}

// unitStatementsAll classifies every statement unit b executes; what cannot
// be attributed is opaque (a possible write).
func (s *session) unitStatementsAll(b *batch) []*policy.Statement {
	cl := s.routing().classifier
	if b.sql != "" {
		return []*policy.Statement{cl.Classify(b.sql)}
	}
	var out []*policy.Statement
	defined := map[string]*preparedStmt{}
	var bound *preparedStmt
	for i := range b.msgs {
		m := &b.msgs[i]
		switch m.typ {
		case msgParse:
			defined[m.name] = m.stmt
		case msgBind:
			bound = defined[m.name]
			if bound == nil {
				bound = s.reg.get(m.name)
			}
		case msgExecute:
			if bound == nil {
				out = append(out, opaqueStmt)
				continue
			}
			out = append(out, cl.Classify(bound.sql))
		case msgFunctionCall:
			out = append(out, opaqueStmt)
		}
	}
	return out
}

// escape applies the escape action to write unit b, which carries unit u
// held by h.
func (s *session) escape(b *batch, stmts []*policy.Statement, u string, h *unitHold, rules *policy.Rules) (bool, error) {
	tables := writtenTables(stmts)
	action := rules.EscapeFor(tables)
	table := "(unknown tables)"
	if len(tables) > 0 {
		table = tables[0].String()
	}
	holder := h.describe()
	s.srv.metrics.Escape(action.String(), table)
	log := s.log.With(zap.String("unit", u), zap.String("table", table), zap.String("action", action.String()),
		zap.String("fingerprint", router.Fingerprint(s.unitSQL(b))),
		zap.Uint64("holder_client", holder.ClientID), zap.String("holder_addr", holder.ClientAddr))
	switch action {
	case policy.EscapeAllow:
		return false, nil
	case policy.EscapeLog:
		log.Warn("write escapes the open transaction of its unit of work (allowed by policy)")
		return false, nil
	case policy.EscapeReroute:
		if s.TxStatus() != TxIdle || s.inFlight() > 0 {
			log.Warn("write not rerouted: the writer is in a transaction of its own")
			return true, s.refuseUnit(b, escapeError(u, table, holder,
				"The write comes from a connection that is itself in a transaction, so it cannot join the holder's."))
		}
		if holder.Failed {
			log.Warn("write not rerouted: the holder's transaction has failed")
			return true, s.refuseUnit(b, escapeError(u, table, holder, "The holder's transaction has failed."))
		}
		log.Info("write rerouted into the holder's transaction")
		return true, s.reroute(b, stmts, u, h, true)
	default:
		log.Warn("write rejected: it would escape the open transaction of its unit of work")
		return true, s.refuseUnit(b, escapeError(u, table, holder, ""))
	}
}

// escapeError is the error a rejected escaping write gets.
func escapeError(u, table string, h UnitHolder, why string) *pgError {
	detail := fmt.Sprintf("Unit %q is held by client %d at %s (application_name %q, user %q) in a transaction open since %s. "+
		"A write from another connection would commit outside that transaction and survive its rollback; nothing was written.",
		u, h.ClientID, h.ClientAddr, h.ApplicationName, h.User, h.Since.UTC().Format(time.RFC3339Nano))
	if why != "" {
		detail += " " + why
	}
	return &pgError{Severity: "ERROR", Code: CodeEscapedWrite,
		Message: fmt.Sprintf("write to %s would escape the open transaction of unit %q", table, u),
		Detail:  detail,
		Hint: "Run the write inside the holder's transaction (the same pool or connection), give it a unit of its own, " +
			"or set policy.escape (or an escape_overrides entry for this table) to reroute."}
}

// errRerouteGone is the writer's error when the holder's transaction ended
// (or its connection went) before the write could join it.
func rerouteGoneError(u string, h UnitHolder, why string) *pgError {
	return &pgError{Severity: "ERROR", Code: CodeEscapedWrite,
		Message: fmt.Sprintf("the transaction holding unit %q ended before the rerouted write could join it", u),
		Detail:  fmt.Sprintf("Holder: client %d at %s (application_name %q). %s Nothing was written.", h.ClientID, h.ClientAddr, h.ApplicationName, why),
		Hint:    "Retry the write: it will run on its own connection now that no transaction holds the unit."}
}

// reroute runs unit b, which carries unit u, on the backend of u's holder
// h, inside h's transaction, as soon as that backend is idle (at most
// policy reroute_wait_timeout). The answer goes to this session's client,
// with this session's own ReadyForQuery status. write says b writes (else it
// is a read following earlier rerouted writes).
//
// NOTE: the holder is idle when it has no request in flight and is not in the
// middle of sending one (its wsem is free); taking its wsem keeps it so while
// the write is sent, and its relay delivers the answer here. The write then
// runs before anything the holder sends later, COMMIT included.
func (s *session) reroute(b *batch, stmts []*policy.Statement, u string, h *unitHold, write bool) error {
	holder := h.sess
	desc := h.describe()
	deadline := time.NewTimer(s.srv.live().RerouteWaitTimeout)
	defer deadline.Stop()
	for {
		if s.srv.units.holderOf(u) != h {
			return s.refuseUnit(b, rerouteGoneError(u, desc, "Its transaction ended while the write waited."))
		}
		select {
		case holder.wsem <- struct{}{}:
		case <-holder.relayGone:
			return s.refuseUnit(b, rerouteGoneError(u, desc, "Its connection closed while the write waited."))
		case <-deadline.C:
			return s.refuseUnit(b, &pgError{Severity: "ERROR", Code: CodeQueryCanceled,
				Message: fmt.Sprintf("rerouted write waited too long for the transaction holding unit %q", u),
				Detail:  fmt.Sprintf("Holder: client %d at %s stayed busy longer than policy.reroute_wait_timeout (%s). Nothing was written.", desc.ClientID, desc.ClientAddr, s.srv.live().RerouteWaitTimeout),
				Hint:    "Raise policy.reroute_wait_timeout, or run the write inside the holder's transaction."})
		}
		status := holder.TxStatus()
		if holder.inFlight() == 0 && status == TxActive && s.srv.units.holderOf(u) == h {
			break // holding the holder's wsem: it stays idle
		}
		<-holder.wsem
		if status == TxFailed {
			return s.refuseUnit(b, escapeError(u, b.describeTables(stmts), desc, "The holder's transaction has failed."))
		}
		select {
		case <-time.After(time.Millisecond):
		case <-deadline.C:
			return s.refuseUnit(b, &pgError{Severity: "ERROR", Code: CodeQueryCanceled,
				Message: fmt.Sprintf("rerouted write waited too long for the transaction holding unit %q", u),
				Detail:  fmt.Sprintf("Holder: client %d at %s stayed busy longer than policy.reroute_wait_timeout (%s). Nothing was written.", desc.ClientID, desc.ClientAddr, s.srv.live().RerouteWaitTimeout),
				Hint:    "Raise policy.reroute_wait_timeout, or run the write inside the holder's transaction."})
		}
	}

	done := make(chan struct{})
	req := &request{guest: s, guestDone: done, stmts: stmts, extended: b.sql == ""}
	w := holder.primary.w
	// NOTE: the unit is assembled, and the tracker filled, before the request
	// is queued and anything reaches the server: the holder's relay reads the
	// tracker as soon as replies come.
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	s.writeUnitShared(bw, b, holder.guestStmts, &holder.reg.mu, &req.replies)
	bw.Flush()
	holder.push(req)
	w.Write(buf.Bytes())
	err := w.Flush()
	holder.unnamedClobbered.Store(true)
	<-holder.wsem
	if err != nil {
		return s.refuseUnit(b, rerouteGoneError(u, desc, "Its connection failed."))
	}
	if write {
		s.srv.units.noteRerouted(h, reroutedTables(stmts))
	}
	s.mu.Lock()
	s.mu.running = &holder.primary.target
	s.mu.Unlock()
	defer s.restorePrimary()
	select {
	case <-done:
		return nil
	case <-holder.relayGone:
		// The holder's backend is gone, and its transaction with the write.
		return s.refuseUnit(b, rerouteGoneError(u, desc, "Its connection closed before the write completed; the transaction rolled back."))
	}
}

// describeTables names the first table stmts write, for messages.
func (b *batch) describeTables(stmts []*policy.Statement) string {
	if t := writtenTables(stmts); len(t) > 0 {
		return t[0].String()
	}
	return "(unknown tables)"
}
