package proxy

import (
	"slices"
	"sync"

	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/router"

	"github.com/txlane/txlane/proxy/wire"
)

// A request is what txlane routes as one piece: a simple Query, a fast-path
// FunctionCall, or an extended-protocol batch (every message from the one
// after a Sync up to and including the next Sync). Its messages may reach
// the primary in several parts (a Flush, the size cap, or a request that
// cannot go to the vector lane being forwarded as it arrives), but it is
// resolved once, message by message, into a requestPlan.
//
// NOTE: the plan is the only reading of a request's messages. The
// unit-of-work check, the PAUSE gate, the lane choice, the primary and
// shared-backend senders, the rerouted writer, the transaction state and the
// statistics all read it; nothing else walks a request's messages to find
// out what it executes.

// requestPlan is one request resolved: the statements it executes in order,
// the units of work they carry, and what the request may run on. The
// client goroutine owns it.
type requestPlan struct {
	// steps are the statements the request executes, in order, assuming
	// every message succeeds (an error makes the server skip the rest, so
	// this is an upper bound: what the checks must allow for).
	steps []planStep
	// units are the units of work the steps carry: from sqlcommenter
	// comments in their texts, else the session's SET [LOCAL] txlane.unit.
	units []string
	// laneShape is false when the request's shape keeps it on the primary
	// whatever its statements (see planner.add), with shapeWhy saying which
	// message did it.
	laneShape bool
	// parsedPrimary: the request parses a statement that is not a candidate
	// for the vector lane (for parsedReason). The request stays on the
	// primary (so that it can be forwarded as it arrives) even if it never
	// executes that statement.
	parsedPrimary bool
	parsedReason  policy.Reason
	// msgs counts the request's messages so far, over all its parts.
	msgs int
	// sent and checked count the steps already sent to the primary and
	// already checked against the units of work.
	sent, checked int
	// sentEarly: part of the request went to the primary before it was
	// complete, for reason early (flushed, or why it could not go to the
	// vector lane).
	sentEarly bool
	early     policy.Reason
	// parsed names the named statements the request parses.
	parsed []string
	// mixed: extended-protocol messages and a simple Query in one request.
	mixed bool
	// namedPortal: the request binds or executes a named portal.
	namedPortal bool
	// rejected: the server was made to raise an error for one of the steps
	// (see session.appendRaise); it skips the rest up to the Sync.
	rejected bool
}

// planStep is one statement a request executes.
type planStep struct {
	stmt *policy.Statement
	// sql is the statement's text ("" for a fast-path function call or an
	// Execute of a portal txlane cannot attribute).
	sql string
	// prep is the prepared statement an Execute runs (nil for a simple
	// Query or a function call).
	prep *preparedStmt
	// unitUnread: the statement sets txlane.unit to a bind parameter
	// txlane could not read (see bindUnits).
	unitUnread bool
	// runs, for a statement that runs another txlane saw earlier (SQL
	// EXECUTE of a PREPAREd statement, FETCH or MOVE of a cursor or a
	// protocol portal), is that statement: the checks count what it does.
	runs *policy.Statement
}

// portalChange is what a Bind or Close of a portal, sent to the primary,
// does once the server confirms it.
type portalChange struct {
	p    *planner
	name string
	ref  portalRef
	drop bool // Close, or a simple Query (which drops the unnamed portal)
}

// apply records the change as confirmed. relay calls it.
func (c *portalChange) apply() {
	c.p.confirmedMu.Lock()
	defer c.p.confirmedMu.Unlock()
	if c.drop {
		delete(c.p.confirmed, c.name)
	} else {
		c.p.confirmed[c.name] = c.ref
	}
}

// opaqueStmt stands for what txlane cannot attribute (a function call, an
// Execute of an unknown portal): it may have written anything and changed
// the session.
var opaqueStmt = &policy.Statement{Class: policy.Unknown,
	Flags: policy.FlagWritesUnknown | policy.FlagMayChangeSession, Reason: "not attributable"}

// planner resolves the client's messages into request plans. It keeps the
// client's protocol objects as they will be once everything sent so far has
// run: prepared statements (the confirmed registry overlaid with the
// definitions of requests the primary has not answered yet) and portals.
// The client goroutine owns it.
type planner struct {
	reg *registry // the client's confirmed statements
	// env returns the client's parse environment now and whether it is
	// known (transaction mode; nil otherwise): see laneEnvOK.
	env     func() (string, bool)
	routing func() *routing // the rules and classifier in force
	// rt is routing() as the current request began: one snapshot per request.
	rt  *routing
	cur requestPlan
	// defs are statement definitions (Parse, Close, DEALLOCATE, DISCARD ALL)
	// of requests not yet confirmed by the server, oldest first; dropped at a
	// safe point, when the registry is the truth again. Those from curStart
	// on are the current request's.
	defs     []stmtDef
	curStart int
	// portals are the client's portals ("" the unnamed one) and the
	// statements bound to them; nil for a portal txlane cannot attribute.
	// Named portals live until their transaction ends, so they are dropped
	// at a safe point outside a transaction.
	portals map[string]portalRef
	// boundHere names the portals bound by the current request.
	boundHere map[string]bool
	// confirmed holds the portals the primary confirmed (BindComplete,
	// CloseComplete), applied by relay through portalChange; at a safe point
	// inside a transaction the tentative portals are these, so that a Bind
	// the server refused leaves the portal it had. Guarded by confirmedMu.
	confirmedMu sync.Mutex
	confirmed   map[string]portalRef
	// sqlPrepared maps SQL-level PREPAREd statements to the texts that
	// defined them (sqlexecute.go), and cursors DECLAREd cursors to the text
	// that defined them (entries outlive their object at worst: they only
	// add what a later EXECUTE or FETCH may do).
	sqlPrepared map[string][]string
	cursors     map[string]string
	// serverPrepared returns the PREPARE query string of a SQL prepared
	// statement the server reported for the client ("" for none).
	serverPrepared func(name string) string
	// endWork is what the client's transaction may have queued for its end
	// (endwork.go); dropped when the server reports the transaction ended.
	endWork policy.EndWork
}

// portalRef is what a portal was bound to; uncertain as for lookup.
// units are the values its Bind gave set_config('txlane.unit', $n, …);
// unitUnread: a value there txlane could not read (see bindUnits).
type portalRef struct {
	stmt       *preparedStmt
	alts       []*preparedStmt
	units      []string
	unitUnread bool
}

// stmtDef is one tentative change of the client's prepared statements: name
// defined as stmt (nil: closed), or, with all, every statement dropped.
type stmtDef struct {
	name string
	stmt *preparedStmt
	all  bool
	// maybe: the definition may not have happened (a Parse of a name that
	// may or may not exist at the server).
	maybe bool
}

func newPlanner(reg *registry, routing func() *routing) *planner {
	return &planner{reg: reg, routing: routing, portals: make(map[string]portalRef), boundHere: make(map[string]bool),
		confirmed:   make(map[string]portalRef),
		sqlPrepared: make(map[string][]string), cursors: make(map[string]string)}
}

// lookup returns the statement the client has under name at this point of
// the pipeline, or nil. alts lists other statements the server may have
// under name instead: an earlier request that the server has not answered
// yet may have failed before its definition ran, leaving an older one. sure
// is true when st is certain: defined by this request, or confirmed by the
// server with nothing pending since.
func (p *planner) lookup(name string) (st *preparedStmt, alts []*preparedStmt, sure bool) {
	found := false
	add := func(v *preparedStmt) {
		switch {
		case !found:
			st, found = v, true
		case v != nil && v != st && !slices.Contains(alts, v):
			alts = append(alts, v)
		}
	}
	for i := len(p.defs) - 1; i >= 0; i-- {
		d := &p.defs[i]
		if !d.all && d.name != name {
			continue
		}
		var v *preparedStmt
		if !d.all {
			v = d.stmt
		}
		certain := i >= p.curStart && !d.maybe
		if certain && !found {
			// Defined by this request: whatever failed before it, the server
			// skips this request's later messages too.
			return v, nil, true
		}
		add(v)
		if certain {
			return st, alts, false
		}
	}
	confirmed := p.reg.get(name)
	if !found {
		return confirmed, nil, true
	}
	add(confirmed)
	return st, alts, false
}

func (p *planner) define(name string, st *preparedStmt) {
	p.defs = append(p.defs, stmtDef{name: name, stmt: st})
}

// begin starts the plan of a new request. At a safe point (safe: nothing
// in flight) the registry is the truth about statements, and outside a
// transaction (idle) no portal survives.
func (p *planner) begin(safe, idle bool) {
	if safe {
		p.defs = p.defs[:0]
		p.confirmedMu.Lock()
		if idle {
			// The transaction ended: no portal survives it, nor work
			// queued for its end.
			clear(p.confirmed)
			p.endWork = 0
		}
		clear(p.portals)
		for name, ref := range p.confirmed {
			p.portals[name] = ref
		}
		p.confirmedMu.Unlock()
	}
	p.curStart = len(p.defs)
	p.rt = p.routing()
	clear(p.boundHere)
	steps := p.cur.steps[:0]
	clear(p.cur.steps)
	p.cur = requestPlan{steps: steps, units: p.cur.units[:0], parsed: p.cur.parsed[:0], laneShape: true}
}

// add resolves message m, the next of the current request.
func (p *planner) add(m *batchMsg, sql string) {
	pl := &p.cur
	pl.msgs++
	rt := p.rt
	cl := rt.classifier
	switch m.typ {
	case wire.Query:
		if pl.msgs > 1 {
			// Extended messages, then a Query without a Sync between them:
			// legal, but only the client's own backend takes it as sent.
			pl.laneShape, pl.mixed = false, true
		}
		// A simple Query replaces the unnamed statement and portal.
		p.define("", nil)
		delete(p.portals, "")
		p.step(cl.Classify(sql), sql, nil)
	case wire.FunctionCall:
		pl.laneShape = false
		p.step(opaqueStmt, "", nil)
	case wire.Parse:
		if m.name != "" {
			pl.parsed = append(pl.parsed, m.name)
		}
		old, alts, sure := p.lookup(m.name)
		switch exists := old != nil || len(alts) > 0; {
		case m.name == "" || !exists:
			p.define(m.name, m.stmt)
		case sure:
			// Redefining a statement is an error the server reports; the
			// old definition stays.
			pl.laneShape = false
		default:
			// It may or may not exist by now: either may be in force after.
			pl.laneShape = false
			p.defs = append(p.defs, stmtDef{name: m.name, stmt: m.stmt, maybe: true})
		}
		if !pl.parsedPrimary {
			pl.parsedReason, pl.parsedPrimary = primaryOnly(cl.Classify(m.stmt.sql), rt.rules)
		}
		if !p.laneEnvOK(nil) {
			pl.laneShape = false
		}
	case wire.Bind:
		st, alts, _ := p.lookup(m.name)
		m.resolved = st
		if st == nil || len(alts) > 0 || m.portal != "" || !p.laneEnvOK(st) {
			// Named portals live for the whole transaction: they stay on
			// the primary, which keeps them.
			pl.laneShape = false
		}
		m.bound = portalRef{stmt: st, alts: alts}
		if st != nil && len(alts) == 0 {
			m.bound.units, m.bound.unitUnread = bindUnits(cl, st, m.params)
		}
		p.portals[m.portal] = m.bound
		pl.namedPortal = pl.namedPortal || m.portal != ""
		p.boundHere[m.portal] = true
	case wire.Describe:
		if m.kind == wire.ObjectStatement {
			st, alts, _ := p.lookup(m.name)
			m.resolved = st
			if st == nil || len(alts) > 0 || !p.laneEnvOK(st) {
				pl.laneShape = false
			}
		} else if m.portal != "" || !p.boundHere[""] {
			pl.laneShape = false
		}
	case wire.Close:
		pl.laneShape = false
		if m.kind == wire.ObjectStatement {
			p.define(m.name, nil)
		} else {
			delete(p.portals, m.portal)
		}
	case wire.Execute:
		ref, known := p.portals[m.portal]
		pl.namedPortal = pl.namedPortal || m.portal != ""
		if m.portal != "" || !p.boundHere[""] || m.maxRows != 0 {
			// A named portal, one bound by an earlier request, or a partial
			// execution: the portal must outlive this request, so it runs
			// where the portal lives, the primary.
			pl.laneShape = false
		}
		switch {
		case !known || ref.stmt == nil && len(ref.alts) == 0:
			pl.laneShape = false
			p.step(opaqueStmt, "", nil)
		case len(ref.alts) > 0 || ref.stmt == nil:
			// Perhaps another statement runs: count it as anything, but keep
			// the units of work every candidate's text carries.
			for _, alt := range ref.alts {
				p.units(alt.sql)
			}
			sql := ""
			if ref.stmt != nil {
				sql = ref.stmt.sql
			}
			p.step(opaqueStmt, sql, ref.stmt)
		default:
			p.step(cl.Classify(ref.stmt.sql), ref.stmt.sql, ref.stmt)
			p.boundUnits(ref)
		}
	}
}

// step appends a statement the request executes, with what it does to the
// client's prepared statements in pipeline order.
func (p *planner) step(st *policy.Statement, sql string, prep *preparedStmt) {
	st = p.resolveExecutes(st, sql) // sqlexecute.go
	pl := &p.cur
	pl.steps = append(pl.steps, planStep{stmt: st, sql: sql, prep: prep})
	last := &pl.steps[len(pl.steps)-1]
	eachPart(st, func(part *policy.Statement) {
		p.namedObjects(part, sql, last)
		p.noteEndWork(part, last)
		p.configUnits(part) // set_config('txlane.unit', constant, …)
		for _, set := range part.Settings {
			// A SET txlane.unit in the request carries its unit for the
			// whole request (so for the write it precedes).
			if set.Name == unitSetting {
				if u := unitValue(set); u != "" && !slices.Contains(pl.units, u) {
					pl.units = append(pl.units, u)
				}
			}
		}
		if d := part.Deallocate; d != nil {
			if d.All {
				p.defs = append(p.defs, stmtDef{all: true})
			} else {
				p.define(d.Name, nil)
			}
		}
		if part.Discard == policy.DiscardAll {
			p.defs = append(p.defs, stmtDef{all: true})
			clear(p.portals)
		}
	})
	p.units(sql)
}

// units adds the units of work sql carries to the current plan.
func (p *planner) units(sql string) {
	if sql == "" {
		return
	}
	pl := &p.cur
	pl.units = router.AppendUnits(pl.units, sql, p.rt.rules.UnitCommentKeys())
}

// namedObjects follows DECLARE / FETCH / MOVE / CLOSE in part, a statement
// of text sql: a FETCH runs the statement its cursor was defined with, whose
// units of work and writes count for step. (SQL-level EXECUTE: see
// resolveExecutes.)
func (p *planner) namedObjects(part *policy.Statement, sql string, step *planStep) {
	runs := func(text string) {
		if text == "" {
			return
		}
		p.units(text)
		if step.runs == nil {
			step.runs = p.rt.classifier.Classify(text)
		} else {
			step.runs = opaqueStmt // more than one: anything
		}
	}
	switch part.Command {
	case "DECLARE CURSOR":
		p.cursors[part.CursorName] = sql
	case "FETCH", "MOVE":
		text := p.cursors[part.CursorName]
		if ref, ok := p.portals[part.CursorName]; ok && text == "" && ref.stmt != nil {
			// A protocol-level named portal is a cursor to SQL.
			text = ref.stmt.sql
			for _, alt := range ref.alts {
				p.units(alt.sql)
			}
		}
		runs(text)
	}
	if part.Discard == policy.DiscardAll {
		clear(p.cursors)
	}
}

// eachPart calls f with st, or with each part of a multi-statement st.
func eachPart(st *policy.Statement, f func(*policy.Statement)) {
	if len(st.Parts) == 0 {
		f(st)
		return
	}
	for i := range st.Parts {
		f(&st.Parts[i])
	}
}

// primaryOnly reports whether st can only ever run on the primary, whatever
// the transaction state and search_path, and why: it is not a plain read, or
// it reads nothing that could be a vector table.
func primaryOnly(st *policy.Statement, rules *policy.Rules) (policy.Reason, bool) {
	d := policy.Decide(nil, st, nil, nil)
	if d.Reason != policy.ReasonNotVectorRead {
		return d.Reason, true
	}
	for _, t := range st.Reads {
		if rules.MayBeVector(t) {
			return 0, false
		}
	}
	return d.Reason, true
}

// wroteOnLane records that the vector lane refused the request as a write
// (see refusal.go): every step counts as one that may write anything, and
// the steps are to be checked against the units of work again.
func (pl *requestPlan) wroteOnLane() {
	for i := range pl.steps {
		pl.steps[i].runs = opaqueStmt
	}
	pl.checked = 0
}

// statements counts the SQL statements the request runs: a simple Query may
// hold several. More than one outside a transaction block is an implicit
// transaction.
func (pl *requestPlan) statements() int {
	n := 0
	for _, st := range pl.steps {
		n += max(1, len(st.stmt.Parts))
	}
	return n
}

// stmts returns the classified statements of the steps from i on.
func (pl *requestPlan) stmts(i int) []*policy.Statement {
	return pl.appendStmts(make([]*policy.Statement, 0, len(pl.steps)-i), i)
}

// appendStmts appends the statements of steps i and later to dst.
func (pl *requestPlan) appendStmts(dst []*policy.Statement, i int) []*policy.Statement {
	for _, st := range pl.steps[i:] {
		dst = append(dst, st.stmt)
	}
	return dst
}

// sqlTexts returns the texts of the steps, for fingerprints in logs.
func (pl *requestPlan) sqlTexts() []string {
	out := make([]string, 0, len(pl.steps))
	for _, st := range pl.steps {
		if st.sql != "" {
			out = append(out, st.sql)
		}
	}
	return out
}

// unitsOfWork returns the units of work the plan carries: those of its
// comments and of the SET txlane.unit it runs, with every value the session's
// txlane.unit may have (fail safe: a unit too many only adds a check).
func (s *session) unitsOfWork(pl *requestPlan) []string {
	if len(s.unitVals) == 0 {
		return pl.units
	}
	out := slices.Clone(pl.units)
	for _, u := range s.unitVals {
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}
