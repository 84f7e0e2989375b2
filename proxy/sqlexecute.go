package proxy

import (
	"slices"

	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/router"
)

// SQL-level EXECUTE runs a prepared statement whose text is not in the
// EXECUTE: the classifier alone presumes it writes anything and may change
// the session (router, ExecuteStmt). The planner knows the texts of the
// client's prepared statements: the SQL PREPAREs it saw (in any earlier
// request, whichever backend ran them: txlane replays them on the next),
// the protocol-level statements of its registry (EXECUTE runs those too:
// both kinds share one namespace in a server session), and those the
// pin check read from the server (pg_prepared_statements, transaction
// mode). An EXECUTE, EXPLAIN ANALYZE EXECUTE or CREATE TABLE ... AS EXECUTE
// of a name with a known text is planned as that text's statement
// (executeAs): its writes, units of work, what it may leave in the session
// (the pin check, set_config names, sequence state) count as the
// statement's own, and it stays on the primary (FlagSQLPrepare: the
// prepared statement lives in the client's backend). A name with several
// possible texts (a PREPARE that may have failed, a name defined again
// after a DEALLOCATE) counts as all of them at once; one with no known text
// keeps the classifier's presumption: fail safe.

// resolveExecutes returns st with each part that executes a prepared
// statement txlane knows replaced by executeAs; st itself when there is
// none. It also records, in order, the SQL PREPAREs and DISCARD ALLs of st
// (sql is its text), so that "PREPARE p AS …; EXECUTE p" resolves.
func (p *planner) resolveExecutes(st *policy.Statement, sql string) *policy.Statement {
	var parts []policy.Statement
	changed := false
	each := st.Parts
	if len(each) == 0 {
		each = []policy.Statement{*st}
	}
	for i := range each {
		part := &each[i]
		switch {
		case part.Command == "PREPARE" && part.PrepareName != "":
			if !slices.Contains(p.sqlPrepared[part.PrepareName], sql) {
				p.sqlPrepared[part.PrepareName] = append(p.sqlPrepared[part.PrepareName], sql)
			}
		case part.Discard == policy.DiscardAll:
			clear(p.sqlPrepared)
		case part.ExecutesPrepared():
			if eff, ok := p.executeAs(part); ok {
				if parts == nil {
					parts = slices.Clone(each)
				}
				parts[i], changed = eff, true
			}
		}
	}
	if !changed {
		return st
	}
	if len(st.Parts) == 0 {
		return &parts[0]
	}
	m := policy.Merge(parts)
	return &m
}

// executeAs is part, a statement that executes prepared statement
// part.PrepareName, as the statement that runs: the classification of its
// known texts (their union when several), with part's command, name and
// own flags (FlagSQLPrepare, EXPLAIN's; CREATE TABLE AS: its class and the
// table it writes). ok is false when the name has no known text.
func (p *planner) executeAs(part *policy.Statement) (policy.Statement, bool) {
	name := part.PrepareName
	var texts []string // the queries the name may run
	for _, t := range p.sqlPrepared[name] {
		p.units(t) // comments of the PREPARE's text name units too
		q, ok := router.PreparedQuery(t, name)
		if !ok {
			return policy.Statement{}, false
		}
		texts = append(texts, q)
	}
	if p.serverPrepared != nil {
		if t := p.serverPrepared(name); t != "" {
			q, ok := router.PreparedQuery(t, name)
			if !ok {
				return policy.Statement{}, false
			}
			texts = append(texts, q)
		}
	}
	st, alts, _ := p.lookup(name)
	for _, ps := range append(alts, st) {
		if ps != nil {
			texts = append(texts, ps.sql)
		}
	}
	slices.Sort(texts)
	if texts = slices.Compact(texts); len(texts) == 0 {
		return policy.Statement{}, false
	}
	eff := *p.rt.classifier.Classify(texts[0])
	if len(texts) > 1 {
		// Any of them may run: their union, with nothing that names what
		// they change (SetConfig, ConfigCalls stay with the parts Merge
		// drops), no catalog check claimed.
		runs := make([]policy.Statement, len(texts))
		for i, t := range texts {
			runs[i] = *p.rt.classifier.Classify(t)
		}
		eff = policy.Merge(runs)
		eff.Parts, eff.Flags = nil, eff.Flags&^policy.FlagMultiStatement
		eff.CatalogChecked, eff.NoDeferrableTriggers = false, false
	}
	eff.Command, eff.PrepareName = part.Command, name
	eff.Flags |= policy.FlagSQLPrepare | part.Flags&^(policy.FlagWritesUnknown|policy.FlagMayChangeSession)
	if part.Class != policy.Utility {
		// CREATE TABLE ... AS EXECUTE: a write of the new table too.
		eff.Class = policy.MorePrimaryBound(eff.Class, part.Class)
		eff.Writes = slices.Clone(eff.Writes)
		for _, t := range part.Writes {
			eff.Writes = policy.AppendTable(eff.Writes, t)
		}
		eff.Temp = append(slices.Clone(eff.Temp), part.Temp...)
		eff.WritesSettingsOnly = false
	}
	if len(eff.ConfigCalls) > 0 {
		// $n there is the EXECUTE's argument, not a bind parameter.
		calls := slices.Clone(eff.ConfigCalls)
		for i := range calls {
			if calls[i].Param > 0 {
				calls[i].Param, calls[i].Known = 0, false
			}
		}
		eff.ConfigCalls = calls
	}
	return eff, true
}

// executeUnseen reports whether st, a part that executes a prepared
// statement, may run code txlane cannot see into: a name it could not
// resolve (the classifier's presumption), or a statement that calls such
// code. notePin does not count it as a setter of hidden custom settings
// when it is sent; noteExecuteDone does once the server reports it
// complete: settings are transactional, so an EXECUTE that failed (of a
// name the session does not have: 26000) set nothing that lasts, and must
// not pin its client.
func executeUnseen(st *policy.Statement) bool {
	return st.ExecutesPrepared() && st.Flags.Has(policy.FlagWritesUnknown|policy.FlagMayChangeSession)
}

// noteExecuteDone counts, in transaction mode, a completed statement that
// executed a prepared statement with unseen code (executeUnseen) as a
// setter of hidden custom settings: the client keeps its backend (pin
// set_config) until RESET ALL or DISCARD ALL. Called in relay, before the
// connection may be found idle.
func (s *session) noteExecuteDone(st *policy.Statement) {
	if !s.txMode {
		return
	}
	eachPart(st, func(p *policy.Statement) {
		if executeUnseen(p) && !p.SetConfigLocal {
			s.hidden.sent.Add(1)
			s.dirtyGen.Add(1)
		}
	})
}
