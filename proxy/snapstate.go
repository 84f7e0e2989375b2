package proxy

import (
	"sync/atomic"

	"github.com/txlane/txlane/policy"
)

// snapState says whether a session's snapshot (its settings, role,
// transaction characteristics and temporary relations, as read from the
// primary by refreshSnapshot) may differ from what the server holds now.
//
// Invariant: when dirty is clear, no statement that may change the session's
// state has been sent since the snapshot was read, and no transaction end has
// undone a change made before the read. A transaction end undoes only changes
// made inside the transaction block (ROLLBACK all of them, COMMIT its SET
// LOCALs, ROLLBACK TO those after the savepoint: PostgreSQL docs, SET), so a
// transaction that changed nothing leaves the snapshot good: BEGIN and COMMIT
// alone cost no read. Refreshes run only when no primary request is in flight,
// so an implicit transaction block (a multi-statement Query, an extended
// request up to Sync) has always ended before one.
type snapState struct {
	dirty atomic.Bool
	// changed: something may have changed the session's state since the last
	// transaction end (so inside the open block, if one is open). It is
	// cleared only at a transaction end, never at BEGIN: a BEGIN inside a
	// block is a no-op to the server.
	changed atomic.Bool
}

// mark records a possible change of the session's state.
func (s *snapState) mark() {
	s.changed.Store(true)
	s.dirty.Store(true)
}

// txControl records transaction-control statement kind k.
func (s *snapState) txControl(k policy.TxKind) {
	switch k {
	case policy.TxBegin, policy.TxSavepoint, policy.TxRelease, policy.TxCommitPrepared, policy.TxRollbackPrepared:
		// The isolation of a transaction that opens follows from BEGIN's
		// intent and the session defaults (read with the snapshot); the
		// others touch no session state.
	case policy.TxCommit, policy.TxRollback, policy.TxPrepareTransaction:
		if s.changed.Swap(false) {
			s.dirty.Store(true)
		}
	case policy.TxRollbackTo:
		if s.changed.Load() {
			s.dirty.Store(true)
		}
	default: // SET TRANSACTION, and any kind not known here
		s.mark()
	}
}

// primaryFinal reports whether decision d, for the primary lane, stands
// whatever a fresh read of the session's state would show. Three reasons may
// turn while the snapshot is dirty: not_vector_read (a fresh search_path may
// make a read of a table that may be a vector table one), temp_table (the
// temporary relation may be gone) and isolation_snapshot (the defaults the
// transaction took may have changed since they were read: set_config of
// default_transaction_isolation, a rollback).
func (s *session) primaryFinal(d policy.Decision, stmts []*policy.Statement, rules *policy.Rules) bool {
	switch d.Reason {
	case policy.ReasonNotVectorRead:
		return !s.snap.dirty.Load() || !mayReadVector(stmts, rules)
	case policy.ReasonTempTable, policy.ReasonIsolationSnapshot:
		return !s.snap.dirty.Load()
	}
	return true
}

// noteSnap records what statement st, sent to the primary, may do to the
// session's snapshot: the parts of a multi-statement text one by one, in
// order (BEGIN; … ; COMMIT in one Query is a transaction like any other).
func (s *session) noteSnap(st *policy.Statement) {
	if len(st.Parts) > 0 {
		for i := range st.Parts {
			s.noteSnap(&st.Parts[i])
		}
		return
	}
	s.noteLocalState(st) // in order: a COMMIT before it ends the transaction
	switch {
	case st.Class == policy.Session, st.Class == policy.Unknown,
		st.Flags.Has(policy.FlagMayChangeSession), st.Discard != policy.DiscardNone,
		mayChangeTemp(st), st.RunsUnknownCode():
		// Code the text does not show runs (a STABLE function with an
		// opaque body may call set_config, a trigger anything), as mayPin
		// counts it; hidden code the catalog names sets the flags above.
		s.snap.mark()
	case st.Class == policy.TxControl:
		s.snap.txControl(st.Tx.Kind)
		switch st.Tx.Kind {
		case policy.TxCommit, policy.TxRollback, policy.TxPrepareTransaction:
			s.txEnds.Add(1) // see unitHold.txEnds
		case policy.TxSavepoint:
			s.savepointAt.Store(s.txEnds.Load() + 1) // see rerouteBar
		}
	}
}

// mayChangeUnseen reports whether statement p (one statement, not several)
// may change the session's settings in ways its text does not name: DO,
// CALL, a function that may set a setting by a name that is not a constant,
// code whose effects the catalog cannot name (RunsUnknownCode), or a
// statement the classifier could not read.
func mayChangeUnseen(p *policy.Statement) bool {
	return p.Class == policy.Unknown || p.RunsUnknownCode() ||
		p.Flags.Has(policy.FlagMayChangeSession) && len(p.SetConfig) == 0 && !p.SetConfigLocal
}
