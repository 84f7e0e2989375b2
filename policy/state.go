package policy

import (
	"fmt"
	"strings"
)

// TxStatus is the transaction status byte of ReadyForQuery.
type TxStatus byte

const (
	// TxIdle: not in a transaction block ('I').
	TxIdle TxStatus = 'I'
	// TxInBlock: in a transaction block ('T').
	TxInBlock TxStatus = 'T'
	// TxFailed: in a failed transaction block ('E'); the server rejects every
	// statement with 25P02 until ROLLBACK.
	TxFailed TxStatus = 'E'
)

// String returns "I", "T", "E", or "?" for the zero value (treated as idle).
func (s TxStatus) String() string {
	switch s {
	case TxIdle, TxInBlock, TxFailed:
		return string(rune(s))
	}
	return "?"
}

// TxDefaults are the session's default transaction characteristics
// (default_transaction_isolation / _read_only / _deferrable).
type TxDefaults struct {
	Isolation  Isolation
	ReadOnly   bool
	Deferrable bool
}

// merge returns the stricter of d and e, for when we cannot tell which of
// them the server holds.
func (d TxDefaults) merge(e TxDefaults) TxDefaults {
	return TxDefaults{
		Isolation:  max(d.Isolation, e.Isolation),
		ReadOnly:   d.ReadOnly || e.ReadOnly,
		Deferrable: d.Deferrable || e.Deferrable,
	}
}

// maxTemp bounds TxState.Temp; past it every unqualified read is presumed to
// possibly name a temporary table.
const maxTemp = 256

// TxState is what the proxy knows about one client's transaction, plus the
// two pieces of session state that routing depends on (default transaction
// characteristics and temporary tables).
//
// The ReadyForQuery byte is the truth: call [TxState.Apply] for each
// statement that completed, then [TxState.Ready] with the status byte that
// followed. BEGIN / SET TRANSACTION / default_transaction_* are parsed only
// for intent (the isolation level of the transaction that opens).
//
// The zero value is an idle session with PostgreSQL's built-in defaults. A
// TxState is owned by one client connection and is not safe for concurrent
// use. It holds slices: share it by pointer, do not copy it once in use.
type TxState struct {
	// Status is the last ReadyForQuery status (zero = idle).
	Status TxStatus
	// Isolation of the open transaction. IsolationDefault (zero) and
	// ReadUncommitted behave as ReadCommitted.
	Isolation Isolation
	// ReadOnly and Deferrable of the open transaction.
	ReadOnly   bool
	Deferrable bool
	// WroteAny: the transaction has written something (any write, writing
	// function, DDL, or table lock).
	WroteAny bool
	// WroteUnknown: the transaction ran something that may write tables it
	// does not name (user functions, DO, CALL, EXECUTE, a write that fires a
	// user trigger).
	WroteUnknown bool
	// SchemaChanged: the transaction ran DDL. Uncommitted DDL can change what
	// any later read means (and holds ACCESS EXCLUSIVE locks), so every later
	// read of the transaction stays on the primary.
	SchemaChanged bool
	// Wrote lists tables the transaction wrote, locked or altered, as written
	// in the SQL, plus those its writes reached (Statement.WritesReached,
	// schema-qualified); see [TxState.WroteTable] for how they are matched.
	Wrote []Table

	// Defaults are the session's current default transaction
	// characteristics. Session-scoped: kept across transactions.
	Defaults TxDefaults
	// ResetTo are the characteristics RESET / RESET ALL / DISCARD ALL return
	// to: PostgreSQL's built-ins unless the proxy learned otherwise at
	// connect time (startup options, role or database settings).
	ResetTo TxDefaults
	// Temp lists temporary tables the session created. Session-scoped: kept
	// across transactions (even rolled-back ones, conservatively) until
	// DISCARD TEMP / DISCARD ALL.
	Temp []Table
	// TempOverflow: more than maxTemp temporary tables were created; every
	// unqualified name is then presumed to possibly be one.
	TempOverflow bool

	// began: a BEGIN was applied and its ReadyForQuery not yet seen.
	began bool
	// pending holds session defaults changed inside the open transaction
	// block; they take effect only if it commits, as in PostgreSQL.
	pending    TxDefaults
	hasPending bool
	// pendingUncertain: a ROLLBACK TO SAVEPOINT may have undone part of
	// pending; at commit the stricter of old and new is kept.
	pendingUncertain bool
}

// InBlock reports whether a transaction block is open (T or E).
func (s *TxState) InBlock() bool {
	return s.Status == TxInBlock || s.Status == TxFailed
}

// inBlockNow also counts a BEGIN applied in the current request.
func (s *TxState) inBlockNow() bool { return s.InBlock() || s.began }

// Apply updates s after stmt ran on the primary (after its CommandComplete,
// before the ReadyForQuery that follows the request). For a multi-statement
// text the parts are applied in order.
//
// Applying a statement that did not in fact run (skipped after an error in
// the same request) errs toward the primary lane: writes are noted that did
// not happen, and the status byte from Ready still rules.
func (s *TxState) Apply(stmt *Statement) {
	if stmt == nil {
		return
	}
	if stmt.Flags.Has(FlagMultiStatement) && len(stmt.Parts) > 0 {
		for i := range stmt.Parts {
			s.apply(&stmt.Parts[i])
		}
		return
	}
	s.apply(stmt)
}

func (s *TxState) apply(st *Statement) {
	inBlock := s.inBlockNow()
	switch st.Tx.Kind {
	case TxBegin:
		// BEGIN inside a block only warns; its options are ignored.
		if !inBlock {
			s.began = true
			s.startTx(st.Tx.Intent)
		}
		return
	case TxSetTransaction:
		if inBlock {
			s.applyIntent(st.Tx.Intent)
		}
		return
	case TxCommit, TxPrepareTransaction:
		if inBlock {
			// COMMIT of a failed transaction rolls it back.
			s.endTx(s.Status != TxFailed, st.Tx.Chain)
		}
		return
	case TxRollback:
		if inBlock {
			s.endTx(false, st.Tx.Chain)
		}
		return
	case TxRollbackTo:
		if s.hasPending {
			s.pendingUncertain = true
		}
		return
	}

	for i := range st.Settings {
		s.applySetting(&st.Settings[i], inBlock)
	}
	for _, t := range st.Temp {
		s.NoteTemp(t)
	}
	switch st.Discard {
	case DiscardAll:
		// DISCARD ALL cannot run inside a transaction block.
		s.Temp, s.TempOverflow = nil, false
		s.Defaults = s.ResetTo
	case DiscardTemp:
		// Inside a block the drop could still roll back: keep the list.
		if !inBlock {
			s.Temp, s.TempOverflow = nil, false
		}
	}

	if !inBlock {
		// Autocommit: the write is committed before anything else runs.
		return
	}
	for _, t := range st.Writes {
		s.NoteWrite(t)
	}
	// What the writes reach without naming it (cascades, rules, writable
	// views, partitions) was written as well.
	for _, t := range st.WritesReached {
		s.NoteWrite(t)
	}
	if st.Flags&(FlagWritesUnknown|FlagReachesUnknown) != 0 {
		s.WroteUnknown = true
		s.WroteAny = true
	}
	if st.Class == DDL {
		s.SchemaChanged = true
		s.WroteAny = true
	}
	if st.Class == Write || st.Flags&(FlagWritingFunction|FlagWriteCommand|FlagDataModifyingCTE|FlagSelectInto) != 0 {
		s.WroteAny = true
	}
	// NOTE: a locking read (FOR UPDATE/SHARE) is not a write here: row locks
	// change no data another snapshot could see and do not block plain
	// readers, so later reads of those rows may still be offloaded.
}

// startTx sets the characteristics of a transaction that is opening.
func (s *TxState) startTx(in TxIntent) {
	s.Isolation = s.Defaults.Isolation
	s.ReadOnly = s.Defaults.ReadOnly
	s.Deferrable = s.Defaults.Deferrable
	s.applyIntent(in)
}

func (s *TxState) applyIntent(in TxIntent) {
	if in.Isolation != IsolationDefault {
		s.Isolation = in.Isolation
	}
	s.ReadOnly = in.ReadOnly.Or(s.ReadOnly)
	s.Deferrable = in.Deferrable.Or(s.Deferrable)
}

func (s *TxState) applySetting(set *Setting, inBlock bool) {
	if set.ResetAll {
		if !set.Local {
			s.setDefaults(inBlock, func(d *TxDefaults) { *d = s.ResetTo })
		}
		return
	}
	switch set.Name {
	case "transaction_isolation", "transaction_read_only", "transaction_deferrable":
		// Same as SET TRANSACTION: the current transaction only.
		if !inBlock || set.Reset {
			return
		}
		var in TxIntent
		switch set.Name {
		case "transaction_isolation":
			in.Isolation, _ = ParseIsolation(set.Value)
		case "transaction_read_only":
			in.ReadOnly = parseOptBool(set.Value)
		default:
			in.Deferrable = parseOptBool(set.Value)
		}
		s.applyIntent(in)
	case "default_transaction_isolation", "default_transaction_read_only", "default_transaction_deferrable":
		// SET LOCAL of a default only affects transactions that start before
		// this one ends: none.
		if set.Local {
			return
		}
		s.setDefaults(inBlock, func(d *TxDefaults) {
			switch set.Name {
			case "default_transaction_isolation":
				if set.Reset {
					d.Isolation = s.ResetTo.Isolation
				} else if iso, ok := ParseIsolation(set.Value); ok {
					d.Isolation = iso
				}
			case "default_transaction_read_only":
				if set.Reset {
					d.ReadOnly = s.ResetTo.ReadOnly
				} else {
					d.ReadOnly = parseOptBool(set.Value).Or(d.ReadOnly)
				}
			default:
				if set.Reset {
					d.Deferrable = s.ResetTo.Deferrable
				} else {
					d.Deferrable = parseOptBool(set.Value).Or(d.Deferrable)
				}
			}
		})
	}
}

// ServerDefaults records the session's default transaction characteristics
// as the server shows them (current_setting of default_transaction_isolation,
// _read_only, _deferrable), which a transaction that opens without naming
// its own takes. Inside a block where a change of them is pending (SET
// default_transaction_isolation …) the server shows that change, which
// COMMIT keeps and ROLLBACK undoes: the defaults are left as they are.
func (s *TxState) ServerDefaults(d TxDefaults) {
	if s.hasPending {
		return
	}
	s.Defaults = d
}

// setDefaults changes the session defaults now, or, inside a block, in
// pending (a rollback undoes a SET made inside the block).
func (s *TxState) setDefaults(inBlock bool, f func(*TxDefaults)) {
	if !inBlock {
		f(&s.Defaults)
		return
	}
	if !s.hasPending {
		s.pending, s.hasPending = s.Defaults, true
	}
	f(&s.pending)
}

// endTx ends the open transaction. chain starts a new one at once with the
// same characteristics (COMMIT/ROLLBACK AND CHAIN).
func (s *TxState) endTx(committed, chain bool) {
	if s.hasPending && committed {
		if s.pendingUncertain {
			s.Defaults = s.Defaults.merge(s.pending)
		} else {
			s.Defaults = s.pending
		}
	}
	// Applied or, on rollback, undone: either way nothing is pending now.
	s.hasPending = false
	iso, ro, def := s.Isolation, s.ReadOnly, s.Deferrable
	s.EndTransaction()
	if chain {
		s.began = true
		s.Isolation, s.ReadOnly, s.Deferrable = iso, ro, def
	}
}

// EndTransaction forgets everything about the current transaction (status,
// characteristics, writes, pending setting changes) and keeps the session
// state (Defaults, ResetTo, Temp). [TxState.Ready] calls it when the status
// becomes idle.
//
// NOTE: when the transaction ended without a COMMIT or ROLLBACK being applied
// (e.g. the proxy did not see it), pending default changes are merged with
// the stricter-wins rule rather than dropped: thinking a session is
// SERIALIZABLE when it is not only costs offloads.
func (s *TxState) EndTransaction() {
	if s.hasPending {
		s.Defaults = s.Defaults.merge(s.pending)
	}
	s.Status = TxIdle
	s.Isolation = IsolationDefault
	s.ReadOnly, s.Deferrable = false, false
	s.WroteAny, s.WroteUnknown, s.SchemaChanged = false, false, false
	s.Wrote = nil
	s.began = false
	s.pending, s.hasPending, s.pendingUncertain = TxDefaults{}, false, false
}

// Ready records the status byte of a ReadyForQuery: the ground truth.
func (s *TxState) Ready(status TxStatus) {
	switch status {
	case TxIdle:
		s.EndTransaction()
	case TxInBlock, TxFailed:
		if !s.InBlock() && !s.began {
			// A transaction opened without a BEGIN we understood (e.g. syntax
			// newer than our parser). Its isolation is unknown: presume the
			// strictest so that nothing leaves the primary.
			s.Isolation = Serializable
		}
		s.began = false
		s.Status = status
	}
}

// NoteWrite records that the open transaction wrote (or locked, or altered) t.
func (s *TxState) NoteWrite(t Table) {
	s.WroteAny = true
	s.Wrote = AppendTable(s.Wrote, t)
}

// NoteTemp records that the session created temporary table t.
func (s *TxState) NoteTemp(t Table) {
	if isTempSchema(t.Schema) {
		t.Schema = ""
	}
	for _, u := range s.Temp {
		if u.Name == t.Name {
			return
		}
	}
	if len(s.Temp) >= maxTemp {
		s.TempOverflow = true
		return
	}
	s.Temp = append(s.Temp, Table{Name: t.Name})
}

// SetTemp replaces the session's temporary relations with names, the
// relations the server reports in the session's temporary schema (tables,
// views, sequences, ...; not indexes), read when no statement of the session
// was in flight. The server's list is the truth at that moment: it includes
// relations made where the classifier cannot see (DO blocks, functions,
// EXECUTE) and drops those that DROP, DISCARD or a rollback removed. More
// than maxTemp names, or overflow (the server's list was cut short), set
// TempOverflow.
func (s *TxState) SetTemp(names []string, overflow bool) {
	s.Temp, s.TempOverflow = nil, overflow
	for _, n := range names {
		s.NoteTemp(Table{Name: n})
	}
}

// WroteTable reports whether the transaction may have written t. Names match
// conservatively (an unqualified name on either side matches any schema; see
// sameRelation), and a transaction that ran DDL or an opaque write is
// presumed to have written everything.
func (s *TxState) WroteTable(t Table) bool {
	if s.SchemaChanged || s.WroteUnknown {
		return true
	}
	for _, w := range s.Wrote {
		if sameRelation(w, t) {
			return true
		}
	}
	return false
}

// IsTemp reports whether t may name one of the session's temporary tables:
// it is in pg_temp, or unqualified and named like one (temporary tables come
// first in the search path for relations).
func (s *TxState) IsTemp(t Table) bool {
	if isTempSchema(t.Schema) {
		return true
	}
	if t.Schema != "" {
		return false
	}
	if s.TempOverflow {
		return true
	}
	for _, u := range s.Temp {
		if u.Name == t.Name {
			return true
		}
	}
	return false
}

// parseOptBool parses a PostgreSQL boolean GUC value.
func parseOptBool(v string) OptBool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "on", "true", "yes", "1", "t", "y":
		return OptTrue
	case "off", "false", "no", "0", "f", "n":
		return OptFalse
	}
	return OptUnset
}

// ParseStateSpec builds a TxState from a compact description, for tests and
// `txlane explain --state`. Comma-separated tokens:
//
//	idle | in_tx_read_committed | in_tx_read_uncommitted | in_tx_repeatable_read |
//	in_tx_serializable | failed
//	in_tx_wrote:<table>   in a READ COMMITTED transaction that wrote <table>
//	wrote:<table>         (repeatable) the transaction wrote <table>
//	wrote_unknown         the transaction ran an opaque write
//	ddl                   the transaction ran DDL
//	temp:<table>          the session created temporary table <table>
//
// Tables use SQL identifier syntax ([ParseTable]).
func ParseStateSpec(spec string) (TxState, error) {
	var s TxState
	s.Status = TxIdle
	for _, tok := range strings.Split(spec, ",") {
		tok = strings.TrimSpace(tok)
		name, arg, hasArg := strings.Cut(tok, ":")
		var t Table
		if hasArg {
			var err error
			if t, err = ParseTable(arg); err != nil {
				return TxState{}, fmt.Errorf("state %q: %w", tok, err)
			}
		}
		switch name {
		case "", "idle":
		case "in_tx", "in_tx_read_committed":
			s.Status, s.Isolation = TxInBlock, ReadCommitted
		case "in_tx_read_uncommitted":
			s.Status, s.Isolation = TxInBlock, ReadUncommitted
		case "in_tx_repeatable_read":
			s.Status, s.Isolation = TxInBlock, RepeatableRead
		case "in_tx_serializable":
			s.Status, s.Isolation = TxInBlock, Serializable
		case "failed":
			s.Status = TxFailed
		case "in_tx_wrote":
			s.Status, s.Isolation = TxInBlock, ReadCommitted
			fallthrough
		case "wrote":
			if !hasArg {
				return TxState{}, fmt.Errorf("state %q: want %s:<table>", tok, name)
			}
			s.NoteWrite(t)
		case "wrote_unknown":
			s.WroteUnknown, s.WroteAny = true, true
		case "ddl":
			s.SchemaChanged, s.WroteAny = true, true
		case "temp":
			if !hasArg {
				return TxState{}, fmt.Errorf("state %q: want temp:<table>", tok)
			}
			s.NoteTemp(t)
		default:
			return TxState{}, fmt.Errorf("state %q: unknown token", tok)
		}
	}
	return s, nil
}

// Spec describes s in the [ParseStateSpec] syntax.
func (s *TxState) Spec() string {
	var parts []string
	switch s.Status {
	case TxInBlock:
		switch {
		case s.Isolation == RepeatableRead:
			parts = append(parts, "in_tx_repeatable_read")
		case s.Isolation == Serializable:
			parts = append(parts, "in_tx_serializable")
		case s.Isolation == ReadUncommitted:
			parts = append(parts, "in_tx_read_uncommitted")
		default:
			parts = append(parts, "in_tx_read_committed")
		}
	case TxFailed:
		parts = append(parts, "failed")
	default:
		parts = append(parts, "idle")
	}
	for _, t := range s.Wrote {
		parts = append(parts, "wrote:"+t.String())
	}
	if s.WroteUnknown {
		parts = append(parts, "wrote_unknown")
	}
	if s.SchemaChanged {
		parts = append(parts, "ddl")
	}
	for _, t := range s.Temp {
		parts = append(parts, "temp:"+t.String())
	}
	return strings.Join(parts, ",")
}
