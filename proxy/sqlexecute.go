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
// of a name with exactly one known text is planned as that text's
// statement (executeAs): its writes, units of work, what it may leave in
// the session (the pin check, set_config names, sequence state) count as
// the statement's own, and it stays on the primary (FlagSQLPrepare: the
// prepared statement lives in the client's backend). A name with no known
// text, or with several (a PREPARE that may have failed, a name defined
// again after DEALLOCATE), keeps the classifier's presumption: fail safe.

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
// one known text, with part's command, name and own flags (FlagSQLPrepare,
// EXPLAIN's; CREATE TABLE AS: its class and the table it writes). ok is
// false when the name has no known text or several.
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
	if texts = slices.Compact(texts); len(texts) != 1 {
		return policy.Statement{}, false
	}
	eff := *p.rt.classifier.Classify(texts[0])
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
