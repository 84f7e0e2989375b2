package policy

// Lane is where a request runs.
type Lane uint8

const (
	// Primary is the client's own backend connection. The zero value, so
	// that an undecided request stays there.
	Primary Lane = iota
	// Vector is the shared read pool.
	Vector
)

// String returns "primary" or "vector".
func (l Lane) String() string {
	if l == Vector {
		return "vector"
	}
	return "primary"
}

// Reason says why a [Decision] was made. String gives a short stable
// snake_case identifier, used as a metric label and by `txlane explain`.
type Reason uint8

// Reasons. Identifiers are stable: dashboards and alerts depend on them.
const (
	// ReasonUnparsed: the statement could not be parsed or classified.
	ReasonUnparsed Reason = iota
	// ReasonNotVectorRead: a pure read that touches no vector table.
	ReasonNotVectorRead
	// ReasonNotReadOnly: a write, DDL, or other statement that changes data.
	ReasonNotReadOnly
	// ReasonVectorReadIdle: a pure vector read outside a transaction block.
	ReasonVectorReadIdle
	// ReasonVectorReadInTx: a pure vector read inside a READ COMMITTED block
	// that has not written what it reads.
	ReasonVectorReadInTx
	// ReasonReadYourWrites: the transaction wrote a table the read touches
	// (or ran DDL or an opaque write).
	ReasonReadYourWrites
	// ReasonAfterWriteAny: after_write=any and the transaction has written.
	ReasonAfterWriteAny
	// ReasonIsolationSnapshot: REPEATABLE READ / SERIALIZABLE transaction.
	ReasonIsolationSnapshot
	// ReasonLockingRead: FOR UPDATE / FOR SHARE / ...
	ReasonLockingRead
	// ReasonWritingFunction: a query that calls a writing function.
	ReasonWritingFunction
	// ReasonDataModifyingCTE: WITH x AS (INSERT/UPDATE/DELETE/MERGE ...).
	ReasonDataModifyingCTE
	// ReasonSelectInto: SELECT ... INTO creates a table.
	ReasonSelectInto
	// ReasonCursor: DECLARE / FETCH / MOVE / CLOSE.
	ReasonCursor
	// ReasonListen: LISTEN / UNLISTEN.
	ReasonListen
	// ReasonSQLPrepare: SQL-level PREPARE / EXECUTE / DEALLOCATE.
	ReasonSQLPrepare
	// ReasonTxFailed: the transaction is failed (E); the server answers 25P02.
	ReasonTxFailed
	// ReasonTxControl: BEGIN / COMMIT / ROLLBACK / SAVEPOINT / ...
	ReasonTxControl
	// ReasonSession: SET / RESET / anything that may change session state.
	ReasonSession
	// ReasonUtility: other utility statements (SHOW, VACUUM, NOTIFY, LOCK,
	// plain EXPLAIN, DISCARD, the empty query, ...).
	ReasonUtility
	// ReasonMultiStatementTx: a multi-statement text or extended batch that
	// mixes vector reads with statements that must stay on the primary; it
	// runs as one implicit transaction and cannot be split.
	ReasonMultiStatementTx
	// ReasonTempTable: the read touches a session temporary table, which
	// exists only on the client's own backend.
	ReasonTempTable
	// ReasonTxDependent: inside a block, the read uses a value tied to the
	// transaction (now(), CURRENT_TIMESTAMP, txid_current_if_assigned(), ...).
	ReasonTxDependent
	// ReasonBackendDependent: the read uses a value tied to the backend
	// (currval(), lastval(), session_user, pg_my_temp_schema(), ...).
	ReasonBackendDependent
	// ReasonVectorUnavailable: the vector lane could not serve in time and
	// on_unavailable=primary. Set by the proxy via [Rules.OnVectorUnavailable].
	ReasonVectorUnavailable
	// ReasonEmpty: an empty batch.
	ReasonEmpty
	// ReasonPipelined: the request was queued behind requests the primary
	// has not answered yet, so the transaction state it would run in is not
	// known. Set by the proxy.
	ReasonPipelined
	// ReasonRequestShape: the request's shape keeps it on the primary whatever
	// its statements: a named portal, a portal bound by an earlier request or
	// executed in part, Close, a fast-path function call, a statement txlane
	// does not know, or a Parse that redefines a name. Set by the proxy.
	ReasonRequestShape
	// ReasonLaneLost: the vector-lane connection failed before any of the
	// answer reached the client; the read ran again on the primary. Set by
	// the proxy.
	ReasonLaneLost
	// ReasonFlushed: the client sent Flush before Sync and waited for answers
	// (or the request outgrew the size txlane holds back), so the request
	// went to the primary as it arrived. Set by the proxy.
	ReasonFlushed
	// ReasonLaneRefusedWrite: the vector lane, which runs every read in a
	// read-only transaction, refused this statement text as a write (SQLSTATE
	// 25006 or 25001) once; it runs on the primary from then on. Set by the
	// proxy, which remembers such texts per database.
	ReasonLaneRefusedWrite
	// ReasonUnproven: the statement names an object whose hidden behaviour
	// the catalog cannot prove harmless (a relation it does not know, a
	// foreign table, a view without a definition): it is presumed to write.
	// Many of these usually mean the catalog snapshot is stale.
	ReasonUnproven

	numReasons
)

var reasonNames = [numReasons]string{
	ReasonUnparsed:          "unparsed",
	ReasonNotVectorRead:     "not_vector_read",
	ReasonNotReadOnly:       "not_read_only",
	ReasonVectorReadIdle:    "vector_read_idle",
	ReasonVectorReadInTx:    "vector_read_in_tx",
	ReasonReadYourWrites:    "read_your_writes",
	ReasonAfterWriteAny:     "after_write_any",
	ReasonIsolationSnapshot: "isolation_snapshot",
	ReasonLockingRead:       "locking_read",
	ReasonWritingFunction:   "writing_function",
	ReasonDataModifyingCTE:  "data_modifying_cte",
	ReasonSelectInto:        "select_into",
	ReasonCursor:            "cursor",
	ReasonListen:            "listen",
	ReasonSQLPrepare:        "sql_prepare",
	ReasonTxFailed:          "tx_failed",
	ReasonTxControl:         "tx_control",
	ReasonSession:           "session",
	ReasonUtility:           "utility",
	ReasonMultiStatementTx:  "multi_statement_tx",
	ReasonTempTable:         "temp_table",
	ReasonTxDependent:       "tx_dependent",
	ReasonBackendDependent:  "backend_dependent",
	ReasonVectorUnavailable: "vector_unavailable",
	ReasonEmpty:             "empty",
	ReasonPipelined:         "pipelined",
	ReasonRequestShape:      "request_shape",
	ReasonLaneLost:          "lane_lost",
	ReasonFlushed:           "flushed",
	ReasonLaneRefusedWrite:  "lane_refused_write",
	ReasonUnproven:          "unproven",
}

// String returns the stable identifier, e.g. "read_your_writes".
func (r Reason) String() string {
	return nameOf(reasonNames[:], r, "reason_%d")
}

// SetByProxy reports whether r is decided by the proxy as it carries a
// request out (the lane was unavailable or lost, the request was pipelined,
// flushed or of a shape only the primary takes), never by [Decide].
func (r Reason) SetByProxy() bool {
	switch r {
	case ReasonVectorUnavailable, ReasonPipelined, ReasonRequestShape, ReasonLaneLost, ReasonFlushed, ReasonLaneRefusedWrite:
		return true
	}
	return false
}

// ParseReason is the inverse of [Reason.String].
func ParseReason(s string) (Reason, bool) {
	return parseName[Reason](reasonNames[:], s)
}

// AllReasons lists every reason, for pre-registering metric label values.
func AllReasons() []Reason {
	out := make([]Reason, numReasons)
	for i := range out {
		out[i] = Reason(i)
	}
	return out
}

// Decision is a lane with the reason it was chosen.
type Decision struct {
	// Lane is where the request runs.
	Lane Lane
	// Reason is why; stable, for metrics and explain.
	Reason Reason
}

// String returns "lane/reason".
func (d Decision) String() string { return d.Lane.String() + "/" + d.Reason.String() }

func primary(r Reason) Decision { return Decision{Lane: Primary, Reason: r} }

// OnVectorUnavailable returns what to do with a request decided for the
// vector lane when that lane cannot serve it: run it on the primary
// (ok=true, reason vector_unavailable), or fail it (ok=false).
//
// NOTE: falling back is always safe for the request itself: every statement
// Decide sends to the vector lane is a read-only READ COMMITTED read that
// the primary may run too.
func (r *Rules) OnVectorUnavailable() (d Decision, ok bool) {
	return primary(ReasonVectorUnavailable), r == nil || r.onUnavailable == FallbackPrimary
}

// Decide returns the lane for one request (a simple Query's text) given the
// client's transaction state, following the one-connection routing table
// (docs/semantics.md):
//
//   - failed transaction (E): primary, tx_failed;
//   - unparsable: primary, unparsed;
//   - transaction control, SET/RESET, cursors, LISTEN, SQL PREPARE/EXECUTE,
//     other utilities: primary;
//   - writes, DDL, locking reads, data-modifying CTEs, SELECT INTO, writing
//     functions (named, or hidden in views, policies, operators, aggregates,
//     casts), objects the catalog cannot prove harmless (unproven): primary;
//   - a read that may change session state or depends on the backend:
//     primary;
//   - a read touching no vector table: primary, not_vector_read (a read that
//     joins vector and plain tables counts as a vector read: it is still
//     read-only, and READ COMMITTED sees only committed data either way);
//   - a read of a session temporary table: primary, temp_table;
//   - idle: vector, vector_read_idle;
//   - inside a REPEATABLE READ / SERIALIZABLE block: primary;
//   - inside a block, a transaction-dependent value (now()): primary;
//   - inside a block that wrote what the read touches (after_write=table;
//     the read touches its Reads and ReadsReached, and anything when it
//     reads through a function with an unknown body) or wrote anything
//     (after_write=any): primary;
//   - otherwise: vector, vector_read_in_tx.
//
// A multi-statement text goes to the vector lane only if every statement
// would; otherwise the whole text stays on the primary (it is one implicit
// transaction and must not be split).
//
// Decide is pure and does not allocate. nil state means idle; nil rules
// means no vector tables; nil stmt is unparsed. searchPath resolves
// unqualified names (see [Rules.IsVector]).
func Decide(state *TxState, stmt *Statement, rules *Rules, searchPath []string) Decision {
	if stmt == nil {
		return primary(ReasonUnparsed)
	}
	if stmt.Flags.Has(FlagMultiStatement) && len(stmt.Parts) > 0 {
		var b batch
		for i := range stmt.Parts {
			b.add(decide(state, &stmt.Parts[i], rules, searchPath))
		}
		return b.result()
	}
	return decide(state, stmt, rules, searchPath)
}

// DecideBatch returns the lane for an extended-protocol batch: every
// statement from the one after a Sync up to the next Sync. It goes to the
// vector lane only if every statement in it would; otherwise the whole batch
// stays on the primary. The reason is then multi_statement_tx when some
// statements would have gone to the vector lane, or else the reason of the
// first statement. An empty batch stays on the primary.
//
// The state is the one at the start of the batch: statements inside a batch
// that goes to the vector lane are all pure reads, so none changes it.
func DecideBatch(state *TxState, stmts []*Statement, rules *Rules, searchPath []string) Decision {
	var b batch
	for _, s := range stmts {
		b.add(Decide(state, s, rules, searchPath))
	}
	return b.result()
}

// batch combines the decisions of statements that must share a lane.
type batch struct {
	n         int
	first     Decision
	anyVector bool
	firstPrim Decision
	anyPrim   bool
}

func (b *batch) add(d Decision) {
	if b.n == 0 {
		b.first = d
	}
	b.n++
	if d.Lane == Vector {
		b.anyVector = true
	} else if !b.anyPrim {
		b.anyPrim, b.firstPrim = true, d
	}
}

func (b *batch) result() Decision {
	switch {
	case b.n == 0:
		return primary(ReasonEmpty)
	case !b.anyPrim:
		return b.first
	case b.anyVector:
		return primary(ReasonMultiStatementTx)
	default:
		return b.firstPrim
	}
}

// decide handles one statement (not a multi-statement text).
func decide(state *TxState, s *Statement, rules *Rules, searchPath []string) Decision {
	status := TxIdle
	if state != nil && state.Status != 0 {
		status = state.Status
	}
	if status == TxFailed {
		return primary(ReasonTxFailed)
	}
	if s.Class == Read && s.Flags.Has(FlagSQLPrepare) {
		// An EXECUTE the proxy resolved to the read its prepared statement
		// runs: the statement lives in the client's own backend.
		return primary(ReasonSQLPrepare)
	}

	switch s.Class {
	case Read:
		// handled below
	case LockingRead:
		return primary(ReasonLockingRead)
	case Write:
		// Name the most specific cause. A writing command (UPDATE ...) is
		// not_read_only whatever else it contains.
		switch f := s.Flags; {
		case f.Has(FlagWriteCommand):
			return primary(ReasonNotReadOnly)
		case f.Has(FlagDataModifyingCTE):
			return primary(ReasonDataModifyingCTE)
		case f.Has(FlagSelectInto):
			return primary(ReasonSelectInto)
		case f.Has(FlagWritingFunction):
			return primary(ReasonWritingFunction)
		case f.Has(FlagUnproven):
			return primary(ReasonUnproven)
		}
		return primary(ReasonNotReadOnly)
	case DDL:
		return primary(ReasonNotReadOnly)
	case Utility:
		switch f := s.Flags; {
		case f.Has(FlagCursor):
			return primary(ReasonCursor)
		case f.Has(FlagListen):
			return primary(ReasonListen)
		case f.Has(FlagSQLPrepare):
			return primary(ReasonSQLPrepare)
		}
		return primary(ReasonUtility)
	case Session:
		return primary(ReasonSession)
	case TxControl:
		return primary(ReasonTxControl)
	default:
		return primary(ReasonUnparsed)
	}

	// A read. It must not change session state (that lives on the primary
	// backend, and the vector lane must not leak it to the next client) nor
	// depend on which backend runs it.
	if s.Flags.Has(FlagMayChangeSession) || s.Flags.Has(FlagDblink) {
		// A dblink connection would stay on the shared lane connection.
		return primary(ReasonSession)
	}
	if s.Flags.Has(FlagBackendDependent) {
		return primary(ReasonBackendDependent)
	}
	vector, temp := false, false
	for _, t := range s.Reads {
		if !vector && rules.IsVector(t, searchPath) {
			vector = true
		}
		if !temp && state != nil && state.IsTemp(t) {
			temp = true
		}
	}
	if !vector {
		return primary(ReasonNotVectorRead)
	}
	if temp {
		return primary(ReasonTempTable)
	}
	if status != TxInBlock {
		return Decision{Lane: Vector, Reason: ReasonVectorReadIdle}
	}

	// Inside a transaction block (state is non-nil here).
	if state.Isolation.Snapshot() {
		return primary(ReasonIsolationSnapshot)
	}
	if s.Flags.Has(FlagTxDependent) {
		return primary(ReasonTxDependent)
	}
	if rules != nil && rules.afterWrite == AfterWriteAny && state.WroteAny {
		return primary(ReasonAfterWriteAny)
	}
	for _, t := range s.Reads {
		if state.WroteTable(t) {
			return primary(ReasonReadYourWrites)
		}
	}
	// What views and policies read is read too; a function whose body is
	// unknown may read anything.
	for _, t := range s.ReadsReached {
		if state.WroteTable(t) {
			return primary(ReasonReadYourWrites)
		}
	}
	if state.WroteAny && s.Flags.Has(FlagReadsUnknown) {
		return primary(ReasonReadYourWrites)
	}
	return Decision{Lane: Vector, Reason: ReasonVectorReadInTx}
}
