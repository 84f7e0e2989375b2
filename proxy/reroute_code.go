package proxy

import (
	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/proxy/wire"
)

// What a rerouted request runs besides its text (escape: reroute). A
// rerouted write runs inside the holder's transaction, between a savepoint of
// txlane's and its RELEASE (guest_wrap.go). Two things escape that wrap:
//
//   - a deferred check. PostgreSQL runs the events of deferrable triggers (a
//     DEFERRABLE foreign key on either side, unique or exclusion constraint,
//     constraint trigger) at the end of the transaction, or at SET
//     CONSTRAINTS ... IMMEDIATE ("SET CONSTRAINTS"; INITIALLY IMMEDIATE ones
//     too once the holder has run SET CONSTRAINTS ... DEFERRED). Released with
//     the savepoint, they fail the holder's COMMIT after the writer was told
//     its write succeeded, and the holder loses its transaction. Running SET
//     CONSTRAINTS ALL IMMEDIATE inside the savepoint is no way out: it fires
//     the holder's own pending events too (a check of the holder's that
//     would pass at its COMMIT, once its transaction has inserted the row
//     referenced, fails the writer's write), and a SET CONSTRAINTS the
//     savepoint's RELEASE keeps changes the holder's constraint modes;
//   - session state. A trigger, a column default, a check constraint, an
//     index expression or a rule runs on the holder's connection, so what it
//     leaves in the session (a setting, a temporary table, a session
//     advisory lock, a LISTEN, a prepared statement) is the holder's, and the
//     writer's session lacks it. A RELEASE keeps all of it.
//
// So a request goes to the holder only when the catalog shows its writes
// queue no deferred check and fire no such code (fail safe: a relation the
// catalog does not know, created since it was read, and any write with the
// catalog off, count as both). Elsewhere the write is refused with 25L01 and
// codeBarHint. A sequence's nextval (serial and identity columns) does not
// count: it changes only the holder's currval and lastval, and refusing it
// would refuse nearly every INSERT (README: Known gaps).

// codeBarHint is the 25L01 HINT of a write refused because of what it runs
// besides its text.
const codeBarHint = "Run the write inside the holder's transaction (the same pool or connection), or give it a unit of its own: " +
	"txlane reroutes a write only when the catalog shows that it calls no function that locks or changes the session, fires no trigger and no session-changing default or rule, " +
	"and queues no deferred constraint check."

// codeBarError is e, a 25L01 refusal of a write rerouteCodeBar keeps from
// the holder's transaction, with codeBarHint.
func codeBarError(e *wire.Error) *wire.Error {
	e.Hint = codeBarHint
	return e
}

// rerouteCodeBar returns why the current request may not run in another
// client's transaction because of what its statements run besides their
// text ("" when it may).
func (s *session) rerouteCodeBar() string {
	for _, st := range s.plans.cur.steps {
		if why := codeBar(st.stmt); why != "" {
			return why
		}
		if st.runs != nil && st.runs != endWorkStmt {
			if why := codeBar(st.runs); why != "" {
				return why
			}
		}
	}
	return ""
}

// codeBar is rerouteCodeBar for one statement (each part of a
// multi-statement one).
func codeBar(st *policy.Statement) string {
	bar := ""
	eachPart(st, func(p *policy.Statement) {
		if bar != "" {
			return
		}
		bar = partCodeBar(p)
	})
	return bar
}

func partCodeBar(p *policy.Statement) string {
	hidden := ""
	if len(p.Hidden) > 0 {
		hidden = " (" + p.Hidden[0] + ")"
	}
	switch {
	case p.Command == "SET CONSTRAINTS":
		// NOTE: DEFERRED would outlive the savepoint's RELEASE in the
		// holder's transaction; IMMEDIATE fires the holder's own pending
		// checks.
		return "The request has SET CONSTRAINTS, which would change the holder's constraint modes or run the holder's own deferred checks."
	case p.DeferredCheck != "":
		return "The write may queue a deferred check (" + p.DeferredCheck + "), which PostgreSQL runs at the holder's COMMIT, outside txlane's savepoint: a violation would fail the holder's whole transaction after the writer was told its write ran."
	case p.Flags.Has(policy.FlagUnproven):
		return "The request names a relation whose triggers, defaults and constraints txlane cannot show" + hidden + ": on the holder's connection they could change the holder's session or queue a check for the holder's COMMIT."
	case p.Flags&(policy.FlagReachesUnknown|policy.FlagReadsUnknown) != 0:
		return "The request runs code its text does not show" + hidden + ", which on the holder's connection could change the holder's session (a setting, a temporary table, an advisory lock) or queue a check for the holder's COMMIT."
	case p.FiresCode != "":
		return "The write runs code its text does not show (" + p.FiresCode + "), which on the holder's connection may change the holder's session."
	case p.SessionCall != "":
		// NOTE: a session advisory lock taken there would be held by the
		// holder's session (and an unlock would release the holder's); a
		// transaction-level one until the holder's transaction ends.
		return "The request calls " + p.SessionCall + ", which writes, locks or changes session state beyond the statement (an advisory lock, a large object, dblink): on the holder's connection that would be the holder's."
	case isWrite(p) && !p.CatalogChecked:
		return "txlane cannot show what the write fires (triggers, defaults, deferrable constraints): it reads no catalog (policy.discover_vector_tables: false), or the statement is not DML (DDL fires event triggers)."
	}
	return ""
}
