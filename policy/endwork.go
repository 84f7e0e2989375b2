package policy

// EndWork is work a transaction block has queued for its end that may write
// tables: PostgreSQL runs it at COMMIT (also END and COMMIT AND CHAIN) and at
// PREPARE TRANSACTION, in the committing session, as part of that statement
// (CommitTransaction and PrepareTransaction in xact.c: deferred triggers
// fire, then holdable portals are materialized). A write it makes arrives
// with that statement, so the statement is checked as a write of the units
// of work it carries (see [Statement.EndWork]).
//
// ROLLBACK discards it; RELEASE SAVEPOINT only hands it to the parent
// transaction, running nothing; COMMIT PREPARED of a transaction prepared
// earlier runs nothing either (PREPARE TRANSACTION already did).
type EndWork uint8

const (
	// EndDeferredTriggers: a write that may have queued deferred trigger
	// events (a DEFERRABLE INITIALLY DEFERRED constraint trigger, or one SET
	// CONSTRAINTS made deferred). They fire at COMMIT, or at SET CONSTRAINTS
	// ... IMMEDIATE (the CREATE TRIGGER documentation, "CONSTRAINT").
	EndDeferredTriggers EndWork = 1 << iota
	// EndHoldCursor: a cursor WITH HOLD whose query may write. COMMIT runs
	// the query to its end to keep the rows (the DECLARE documentation).
	EndHoldCursor
)

// QueuesEndWork returns the end work s, one statement (a part of a
// multi-statement text, not the whole), may leave its transaction block.
//
// A write may queue deferred trigger events unless the catalog vouches that
// it fires no user trigger: s was checked against a full catalog
// (CatalogChecked) and neither calls a function that writes tables it does
// not name (or a STABLE one whose body the catalog cannot read, which may
// call a volatile one), nor reaches a user trigger or an unproven relation. What the
// catalog cannot vouch for counts (fail safe): the catalog knows a table's
// user triggers but not what their functions write, so any user trigger
// fired may queue deferred events through the tables its function writes.
// A DDL statement counts only through the functions it calls: DDL fires no
// user trigger itself (event triggers run at its own end).
func (s *Statement) QueuesEndWork() EndWork {
	var w EndWork
	hidden := s.Flags&(FlagWritesUnknown|FlagReachesUnknown|FlagUnproven|FlagReadsUnknown) != 0
	// NOTE: a database without deferrable triggers (NoDeferrableTriggers)
	// queues no deferred events, whatever a write runs, unless it reaches a
	// relation the catalog read does not know (made since, with a trigger
	// of its own perhaps).
	noneToQueue := s.CatalogChecked && s.NoDeferrableTriggers && s.Flags&FlagUnproven == 0
	if !noneToQueue && (hidden || s.mayWriteData() && (s.Class == Unknown || s.Class != DDL && !s.CatalogChecked)) {
		w |= EndDeferredTriggers
	}
	if s.CursorHold && (hidden || s.mayWriteData()) {
		// The query a DECLARE names is classified as the DECLARE itself.
		w |= EndHoldCursor
	}
	return w
}

// RunsEndWork returns the part of pending, the end work the transaction has
// queued, that s, one statement, runs: everything at COMMIT, END, COMMIT AND
// CHAIN and PREPARE TRANSACTION; the deferred trigger events at SET
// CONSTRAINTS ... IMMEDIATE (whichever constraints it names: txlane does not
// know which constraint a queued event belongs to).
func (s *Statement) RunsEndWork(pending EndWork) EndWork {
	switch {
	case s.Tx.Kind == TxCommit || s.Tx.Kind == TxPrepareTransaction:
		return pending
	case s.ConstraintsImmediate:
		return pending & EndDeferredTriggers
	}
	return 0
}

// mayWriteData is MayWrite without set_config calls, which write only the
// session's own settings.
func (s *Statement) mayWriteData() bool {
	return s.MayWrite() && !s.WritesSettingsOnly
}
