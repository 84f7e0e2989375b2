package policy

import (
	"strings"
)

// Class is the coarse kind of a statement, ordered for routing: a class later
// in the list below is "more primary-bound" than an earlier one, and a
// multi-statement query is described by its most primary-bound part.
//
//	Read < LockingRead < Write < DDL < Utility < Session < TxControl < Unknown
//
// NOTE: the zero value is Unknown so that a Statement nobody filled in routes
// to the primary lane.
type Class uint8

const (
	// Unknown: the text could not be parsed or classified.
	Unknown Class = iota
	// Read: SELECT, VALUES, TABLE, COPY ... TO STDOUT, EXPLAIN ANALYZE of a
	// read, with no locking clause and no writing function.
	Read
	// LockingRead: a read with FOR UPDATE / FOR NO KEY UPDATE / FOR SHARE /
	// FOR KEY SHARE anywhere in it. It takes row locks, so it is a write for
	// routing purposes.
	LockingRead
	// Write: INSERT, UPDATE, DELETE, MERGE, COPY FROM, TRUNCATE, SELECT INTO,
	// CREATE TABLE AS, REFRESH MATERIALIZED VIEW, DO, CALL, and any query with
	// a data-modifying CTE or a writing function.
	Write
	// DDL: CREATE / ALTER / DROP / GRANT / COMMENT / REINDEX / CLUSTER and
	// every other statement not listed elsewhere.
	DDL
	// Utility: LISTEN / UNLISTEN / NOTIFY, DECLARE / FETCH / MOVE / CLOSE,
	// PREPARE / EXECUTE / DEALLOCATE, DISCARD, VACUUM / ANALYZE, LOCK, SHOW,
	// CHECKPOINT, LOAD, plain EXPLAIN, SET CONSTRAINTS, COPY TO a server file,
	// and the empty query.
	Utility
	// Session: SET / RESET / SET ROLE / SET SESSION AUTHORIZATION /
	// SET SESSION CHARACTERISTICS.
	Session
	// TxControl: BEGIN / START TRANSACTION, COMMIT / END, ROLLBACK / ABORT,
	// SAVEPOINT, RELEASE, ROLLBACK TO, two-phase commit, SET TRANSACTION.
	TxControl
)

var classNames = [...]string{
	Unknown:     "Unknown",
	Read:        "Read",
	LockingRead: "LockingRead",
	Write:       "Write",
	DDL:         "DDL",
	Utility:     "Utility",
	Session:     "Session",
	TxControl:   "TxControl",
}

// String returns the class name, e.g. "LockingRead".
func (c Class) String() string {
	return nameOf(classNames[:], c, "Class(%d)")
}

// ParseClass is the inverse of [Class.String].
func ParseClass(s string) (Class, bool) {
	return parseName[Class](classNames[:], s)
}

// rank orders classes from least to most primary-bound (see [Class]).
func (c Class) rank() int {
	if c == Unknown || int(c) >= len(classNames) {
		return len(classNames)
	}
	return int(c)
}

// MorePrimaryBound returns whichever of a and b is more primary-bound.
func MorePrimaryBound(a, b Class) Class {
	if b.rank() > a.rank() {
		return b
	}
	return a
}

// Flags are facts about a statement that matter to routing or to the proxy's
// bookkeeping. A multi-statement query carries the union of its parts' flags.
type Flags uint32

const (
	// FlagLocking: a locking clause (FOR UPDATE/SHARE/...) appears anywhere.
	FlagLocking Flags = 1 << iota
	// FlagWriteCommand: the statement itself is a writing command (INSERT,
	// UPDATE, DELETE, MERGE, COPY FROM, TRUNCATE, CREATE TABLE AS, REFRESH,
	// DO, CALL), as opposed to a query that writes through a CTE, INTO or a
	// function.
	FlagWriteCommand
	// FlagWritingFunction: a function that writes or takes locks is called
	// (nextval, setval, advisory locks, lo_*, set_config, configured or
	// catalog-volatile user functions, ...).
	FlagWritingFunction
	// FlagDataModifyingCTE: WITH x AS (INSERT/UPDATE/DELETE/MERGE ...).
	FlagDataModifyingCTE
	// FlagSelectInto: SELECT ... INTO new_table.
	FlagSelectInto
	// FlagWritesUnknown: the statement may write tables it does not name
	// (user functions, DO, CALL, EXECUTE of a prepared statement). A
	// transaction that ran it must keep all later reads (see TxState).
	FlagWritesUnknown
	// FlagCursor: DECLARE / FETCH / MOVE / CLOSE.
	FlagCursor
	// FlagListen: LISTEN / UNLISTEN.
	FlagListen
	// FlagSQLPrepare: SQL-level PREPARE / EXECUTE / DEALLOCATE.
	FlagSQLPrepare
	// FlagMultiStatement: the query text holds more than one statement.
	FlagMultiStatement
	// FlagHasParams: $n parameter references appear.
	FlagHasParams
	// FlagMayChangeSession: the statement may change session state in a way
	// the classifier cannot see (set_config, DISCARD, DO, CALL, writing
	// functions, LOAD, SET ... FROM CURRENT). The proxy re-reads the tracked
	// settings from the primary before the next offload.
	FlagMayChangeSession
	// FlagTxDependent: the result depends on the transaction's identity
	// (now(), CURRENT_TIMESTAMP, txid_current_if_assigned(), ...): inside a
	// transaction block another backend would answer differently.
	FlagTxDependent
	// FlagBackendDependent: the result depends on the backend session itself
	// (currval(), lastval(), session_user, pg_my_temp_schema(), ...): another
	// backend would answer differently even outside a transaction.
	FlagBackendDependent
	// FlagCopy: a COPY statement.
	FlagCopy
	// FlagExplain: an EXPLAIN. Without ANALYZE nothing executes and the
	// statement is Utility with no tables; with ANALYZE it is classified as
	// the statement it runs.
	FlagExplain
	// FlagUnproven: the statement names a relation (or other object) whose
	// hidden behaviour the catalog cannot prove harmless: a relation the
	// catalog snapshot does not know (created since it was read, a temporary
	// table), a foreign table, a view whose definition was not found. It is
	// presumed to call a writing function (FlagWritesUnknown is set too).
	FlagUnproven
	// FlagReachesUnknown: a write of the statement may reach tables that
	// neither it nor the catalog names: a user trigger fires, a rule or a
	// column default calls a function that may write, or the written
	// relation is not in the catalog. The statement's Writes still list only
	// the tables it names; a transaction that ran it keeps all later reads
	// on the primary (see TxState).
	FlagReachesUnknown
	// FlagReadsUnknown: the statement calls (directly or through a view, an
	// operator, an aggregate, a policy) a STABLE user function whose body
	// the catalog does not describe, so it may read any table. Inside a
	// transaction that has written, it stays on the primary.
	FlagReadsUnknown
	// FlagDblink: the statement calls a dblink function (in its text or
	// hidden: a view, a function whose body the catalog reads), or runs
	// code whose body txlane cannot read while the database has dblink
	// installed. dblink_connect (and dblink_connect_u, and the unnamed
	// connection the others may open) keeps a connection, with its remote
	// session and transaction, in the backend's memory until
	// dblink_disconnect or the backend's end; DISCARD ALL does not close it.
	FlagDblink
)

var flagNames = [...]string{
	"locking", "write_command", "writing_function", "data_modifying_cte",
	"select_into", "writes_unknown", "cursor", "listen", "sql_prepare",
	"multi_statement", "has_params", "may_change_session", "tx_dependent",
	"backend_dependent", "copy", "explain", "unproven", "reaches_unknown",
	"reads_unknown", "dblink",
}

// Has reports whether every flag in g is set in f.
func (f Flags) Has(g Flags) bool { return f&g == g }

// Names lists the set flags as stable snake_case names, in bit order.
func (f Flags) Names() []string {
	var out []string
	for i, n := range flagNames {
		if f&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// String joins [Flags.Names] with "|".
func (f Flags) String() string { return strings.Join(f.Names(), "|") }

// ParseFlag returns the flag named n (see [Flags.Names]).
func ParseFlag(n string) (Flags, bool) {
	for i, s := range flagNames {
		if s == n {
			return 1 << i, true
		}
	}
	return 0, false
}

// TxKind says which transaction-control statement ran.
type TxKind uint8

const (
	// TxNone: not a transaction-control statement.
	TxNone TxKind = iota
	// TxBegin: BEGIN or START TRANSACTION.
	TxBegin
	// TxCommit: COMMIT or END (possibly AND CHAIN).
	TxCommit
	// TxRollback: ROLLBACK or ABORT (possibly AND CHAIN).
	TxRollback
	// TxSavepoint: SAVEPOINT name.
	TxSavepoint
	// TxRelease: RELEASE [SAVEPOINT] name.
	TxRelease
	// TxRollbackTo: ROLLBACK TO [SAVEPOINT] name.
	TxRollbackTo
	// TxPrepareTransaction: PREPARE TRANSACTION 'gid'.
	TxPrepareTransaction
	// TxCommitPrepared: COMMIT PREPARED 'gid'.
	TxCommitPrepared
	// TxRollbackPrepared: ROLLBACK PREPARED 'gid'.
	TxRollbackPrepared
	// TxSetTransaction: SET TRANSACTION ... (characteristics of the current
	// transaction; also SET TRANSACTION SNAPSHOT).
	TxSetTransaction
)

var txKindNames = [...]string{
	"", "begin", "commit", "rollback", "savepoint", "release", "rollback_to",
	"prepare_transaction", "commit_prepared", "rollback_prepared", "set_transaction",
}

// String returns a snake_case name ("" for TxNone).
func (k TxKind) String() string {
	return nameOf(txKindNames[:], k, "txkind(%d)")
}

// Isolation is a transaction isolation level.
type Isolation uint8

const (
	// IsolationDefault: not stated; the session default applies.
	IsolationDefault Isolation = iota
	// ReadUncommitted behaves exactly as ReadCommitted in PostgreSQL.
	ReadUncommitted
	// ReadCommitted: each statement takes a fresh snapshot.
	ReadCommitted
	// RepeatableRead: one snapshot for the whole transaction.
	RepeatableRead
	// Serializable: one snapshot plus predicate locks.
	Serializable
)

var isolationNames = [...]string{"default", "read uncommitted", "read committed", "repeatable read", "serializable"}

// String returns the level as PostgreSQL spells it ("repeatable read").
func (i Isolation) String() string {
	return nameOf(isolationNames[:], i, "isolation(%d)")
}

// Snapshot reports whether the level keeps one snapshot for the whole
// transaction, so that no statement of it may run on another backend.
func (i Isolation) Snapshot() bool { return i >= RepeatableRead }

// ParseIsolation parses a level as written in SQL or a GUC value,
// case-insensitively ("REPEATABLE READ", "repeatable read").
func ParseIsolation(s string) (Isolation, bool) {
	s = strings.Join(strings.Fields(strings.ToLower(s)), " ")
	if i, ok := parseName[Isolation](isolationNames[:], s); ok && i != IsolationDefault {
		return i, true
	}
	return IsolationDefault, false
}

// OptBool is a boolean that may be left unstated.
type OptBool uint8

const (
	// OptUnset: not stated.
	OptUnset OptBool = iota
	// OptFalse: stated false.
	OptFalse
	// OptTrue: stated true.
	OptTrue
)

// Or returns the stated value, or def when unset.
func (o OptBool) Or(def bool) bool {
	switch o {
	case OptTrue:
		return true
	case OptFalse:
		return false
	}
	return def
}

// String returns "", "false" or "true".
func (o OptBool) String() string {
	switch o {
	case OptTrue:
		return "true"
	case OptFalse:
		return "false"
	}
	return ""
}

// TxIntent is what a BEGIN or SET TRANSACTION asked for. It is intent only:
// the ReadyForQuery status byte remains the truth about whether a transaction
// is open.
type TxIntent struct {
	Isolation  Isolation
	ReadOnly   OptBool
	Deferrable OptBool
}

// TxCommand describes a transaction-control statement (class TxControl).
type TxCommand struct {
	Kind   TxKind
	Intent TxIntent
	// Chain: COMMIT/ROLLBACK AND CHAIN, which opens a new transaction with
	// the same characteristics at once.
	Chain bool
	// Savepoint names the savepoint of SAVEPOINT / RELEASE / ROLLBACK TO.
	Savepoint string
	// GID is the two-phase transaction identifier.
	GID string
}

// Setting is one change to a session setting (GUC) made by SET or RESET.
//
// Name is lower-case; SET ROLE is "role", SET SESSION AUTHORIZATION is
// "session_authorization", SET TIME ZONE is "timezone", SET NAMES is
// "client_encoding", SET SCHEMA is "search_path", SET SESSION CHARACTERISTICS
// AS TRANSACTION becomes "default_transaction_isolation" /
// "default_transaction_read_only" / "default_transaction_deferrable".
//
// Value is the text PostgreSQL receives after flattening the argument list
// (list items joined with ", ", identifiers of list-valued settings such as
// search_path quoted when needed), suitable to re-apply as a string literal.
// It is empty for Reset and ResetAll, and when the value could not be
// reproduced exactly (then the statement carries FlagMayChangeSession).
type Setting struct {
	Name  string `json:"name,omitempty"`
	Value string `json:"value,omitempty"`
	// Local: SET LOCAL; the change ends with the transaction.
	Local bool `json:"local,omitempty"`
	// Reset: RESET name or SET name TO DEFAULT.
	Reset bool `json:"reset,omitempty"`
	// ResetAll: RESET ALL (Name is empty).
	ResetAll bool `json:"reset_all,omitempty"`
}

// ConfigCall is a call of set_config(name, value, is_local) whose name is a
// constant (lower case, as PostgreSQL compares setting names). Known: the
// value is Value, a constant, or with Param > 0 the Param-th bind parameter
// ($n, 1-based); otherwise it is computed (unknown before it runs).
type ConfigCall struct {
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
	Param int    `json:"param,omitempty"`
	Known bool   `json:"known,omitempty"`
	Local bool   `json:"local,omitempty"`
}

// Deallocate describes DEALLOCATE [PREPARE] name | ALL. SQL-level and
// protocol-level prepared statements share one namespace in PostgreSQL, so
// the proxy's registry must follow it.
type Deallocate struct {
	Name string `json:"name,omitempty"`
	All  bool   `json:"all,omitempty"`
}

// DiscardKind is the target of a DISCARD statement.
type DiscardKind uint8

const (
	// DiscardNone: not a DISCARD.
	DiscardNone DiscardKind = iota
	// DiscardAll: DISCARD ALL (also drops prepared statements, temp tables,
	// settings, advisory locks, listeners).
	DiscardAll
	// DiscardPlans: DISCARD PLANS.
	DiscardPlans
	// DiscardSequences: DISCARD SEQUENCES.
	DiscardSequences
	// DiscardTemp: DISCARD TEMP.
	DiscardTemp
)

var discardNames = [...]string{"", "all", "plans", "sequences", "temp"}

// String returns "all", "plans", "sequences", "temp" or "".
func (d DiscardKind) String() string {
	return nameOf(discardNames[:], d, "discard(%d)")
}

// Statement is the typed description of one query text. When the text holds
// several statements (a simple Query may), it describes them as a whole and
// Parts holds each one in order.
//
// NOTE: Statements are shared through the classifier's cache; treat one you
// did not build as read-only.
type Statement struct {
	// Class of the statement; for several, the most primary-bound part's.
	Class Class
	// Command is the command name, e.g. "SELECT", "INSERT", "SET",
	// "DECLARE CURSOR"; for several statements, their commands joined by "; ".
	Command string
	// Flags: facts used by routing and bookkeeping; for several, the union.
	Flags Flags
	// Reads lists tables read, schema-qualified as written, in order of first
	// appearance, without duplicates. CTE names are not tables.
	Reads []Table
	// Writes lists tables written (or created, truncated, locked, or altered)
	// as the statement names them. Escape overrides match these names and the
	// unit-of-work reject message names them; see WritesReached for the rest.
	Writes []Table
	// WritesReached lists tables, schema-qualified as the catalog names them,
	// that the statement's writes reach without naming them: through
	// cascading foreign keys, rules, writable views (their base tables) and
	// partitions or inheritance children. Read-your-writes counts them (see
	// [TxState.Apply]); what triggers write is not listed but flagged
	// (FlagReachesUnknown).
	WritesReached []Table
	// ReadsReached lists relations, schema-qualified, that reading the named
	// ones reads as well: the relations views and row-level security
	// policies read, through nested views. Read-your-writes checks them as
	// it checks Reads; they do not make a read a vector read.
	ReadsReached []Table
	// Hidden explains, one finding per line, what the statement runs or
	// writes that its text does not name, as the catalog showed it, e.g.
	// "view public.v_items calls volatile public.logit()". At most a few
	// findings are kept; empty when the catalog showed nothing.
	Hidden []string
	// Temp lists temporary relations the statement creates; they live for
	// the session, so reads of them must stay on the primary lane.
	Temp []Table
	// Tx describes transaction control; Kind is TxNone otherwise.
	// For several statements see Parts.
	Tx TxCommand
	// Settings lists SET/RESET changes in order (for several statements, the
	// parts' settings concatenated).
	Settings []Setting
	// SetConfig names (in lower case, as PostgreSQL compares setting names)
	// the settings that calls of pg_catalog.set_config with a constant name
	// may change, when those calls are all that may change the session's
	// settings (the statement carries FlagMayChangeSession); empty when
	// anything else may too (another function, a name that is not a
	// constant, DO, CALL, hidden code). Several statements keep theirs in
	// their Parts.
	SetConfig []string
	// SetConfigLocal: the statement calls pg_catalog.set_config with a
	// constant name and a constant is_local true, and those calls are all
	// that may write or change settings (FlagWritingFunction and
	// FlagMayChangeSession come from them alone): what it changes lasts
	// until its transaction ends ("set_config", PostgreSQL's "System
	// Administration Functions"), like SET LOCAL.
	SetConfigLocal bool
	// ConfigCalls lists the calls of pg_catalog.set_config with a constant
	// setting name, in the order of the text, with the value each sets
	// when that is a constant or a bind parameter (a call inside a CASE or
	// a query may run any number of times, none included: a value listed is
	// one the setting may take). Several statements keep theirs in their
	// Parts.
	ConfigCalls []ConfigCall `json:"config_calls,omitempty"`
	// CustomSettings lists the custom (dotted) settings the statement reads
	// with current_setting and a constant name, lower case. The vector
	// lane sets the client's value of one with set_config, which is exact
	// only for a value that is not empty: whether the name exists at all
	// (NULL from current_setting(name, true), an error without it) or as
	// a placeholder ('', what a RESET or the end of a SET LOCAL leaves:
	// PostgreSQL keeps a custom setting once it was set) is state of the
	// backend's session, which a lane connection that served other
	// clients does not share.
	CustomSettings []string `json:"custom_settings,omitempty"`
	// WritesSettingsOnly: what makes the statement a write is set_config
	// calls with constant names alone: it writes settings of its own
	// session (transactional, as every setting), no data. For the units of
	// work it writes nothing; routing still counts it a write.
	WritesSettingsOnly bool `json:"writes_settings_only,omitempty"`
	// Seeds: the statement seeds the session's random sequence (random(),
	// random_normal()): setseed(), or the setting seed given a value (SET
	// [LOCAL] seed, SET seed FROM CURRENT, pg_catalog.set_config('seed',
	// ...) with a constant name, local or not). The sequence is state of the
	// backend that no setting shows (pg_settings does not list seed; SHOW
	// seed reads "unavailable") and that outlives even SET LOCAL: each such
	// SET calls setseed (PostgreSQL's guc.c, assign_random_seed), and
	// neither RESET, the transaction's end, RESET ALL nor DISCARD ALL takes
	// it back.
	Seeds bool
	// Sequences: the statement calls nextval or setval, in its text or in
	// code the catalog shows it runs (a column default, a view, a function
	// body, a policy), and so may set the session's sequence state: what
	// currval() and lastval() read, kept per backend until the session ends
	// or DISCARD SEQUENCES (PostgreSQL's "Sequence Manipulation
	// Functions"). See [Statement.MaySetSequences] for the statements that
	// may do so unseen.
	Sequences bool `json:"sequences,omitempty"`
	// Deallocate is set for DEALLOCATE.
	Deallocate *Deallocate
	// Discard is set for DISCARD.
	Discard DiscardKind
	// PrepareName is the statement name of SQL-level PREPARE / EXECUTE.
	PrepareName string
	// CursorName is the cursor (or portal) of DECLARE, FETCH, MOVE and CLOSE
	// ("" for CLOSE ALL).
	CursorName string
	// CursorHold: a DECLARE ... WITH HOLD. PostgreSQL runs such a cursor's
	// query to its end when its transaction commits, to keep the rows past
	// it (the DECLARE documentation, "WITH HOLD"); see [Statement.EndWork].
	CursorHold bool `json:"cursor_hold,omitempty"`
	// ConstraintsImmediate: a SET CONSTRAINTS ... IMMEDIATE, which fires the
	// deferred constraint-trigger events its constraints queued so far (the
	// SET CONSTRAINTS documentation).
	ConstraintsImmediate bool `json:"constraints_immediate,omitempty"`
	// CatalogChecked: a full catalog showed what the statement runs besides
	// what it names (its views, policies, operators and casts; for a write,
	// the triggers, rules, defaults and constraints of what it writes). With
	// neither FlagReachesUnknown nor FlagUnproven its writes fire no user
	// trigger, and every function it runs shows in Flags. False without a
	// full catalog, and for statements other than DML, COPY and queries.
	CatalogChecked bool
	// NoDeferrableTriggers: with CatalogChecked, the catalog showed the
	// database holds no deferrable trigger other than foreign keys' own
	// checks (which write nothing), so no write of the statement can queue
	// deferred trigger events (see [Statement.QueuesEndWork]). As fresh as
	// the catalog's read: a relation the catalog does not know still counts.
	NoDeferrableTriggers bool `json:"-"`
	// DeferredCheck, with CatalogChecked, says why a write of the statement
	// may queue an event PostgreSQL checks only at the end of the
	// transaction it runs in (or at SET CONSTRAINTS ... IMMEDIATE): a
	// relation it writes, or reaches through rules, cascades, views and
	// partitions, has a deferrable trigger for that kind of write (a
	// DEFERRABLE foreign key on either side, unique or exclusion
	// constraint, constraint trigger), e.g. "table public.child has
	// deferrable constraint child_pid_fkey (checked on insert, update)".
	// "" when the catalog showed none; what a user trigger's function
	// writes is not looked into (FlagReachesUnknown says it runs).
	DeferredCheck string `json:"deferred_check,omitempty"`
	// FiresCode, with CatalogChecked, says which code the statement's
	// writes run that its text does not name and that may change the
	// session it runs in: a column default, check constraint, index
	// expression or rule that calls a function that writes, locks or sets
	// settings (pg_advisory_lock, set_config), or a user function whose
	// body the catalog cannot describe. "" when none; user triggers and
	// volatile user functions are FlagReachesUnknown instead, and a
	// sequence's nextval counts for nothing.
	FiresCode string `json:"fires_code,omitempty"`
	// SessionCall names the first function the statement itself runs
	// (called in its text, or hidden in what it reads: a view, an
	// operator, a cast, a policy) that writes, takes a lock or changes
	// session state beyond the statement: a session or transaction
	// advisory lock, set_config, a large object descriptor, dblink, a
	// volatile user function. A sequence function called by name in the
	// text (nextval, setval) is not named: it changes only the session's
	// currval and lastval. "" for none. A statement run in another
	// client's transaction (escape: reroute) must not call one: what it
	// leaves would be that client's session's.
	SessionCall string `json:"session_call,omitempty"`
	// Parts holds each statement of a multi-statement text (FlagMultiStatement).
	Parts []Statement
	// Reason explains Unknown: the parse error text.
	Reason string
}

// RunsUnknownCode reports whether the statement runs code whose effects on
// the session txlane cannot name: an IMMUTABLE or STABLE function whose
// body the catalog cannot read (which may call set_config), a trigger or a rule or default calling a
// function that may write, a relation the catalog cannot account for.
// What else the catalog shows a statement runs (Hidden) is in its flags: a
// hidden set_config or volatile user function sets FlagMayChangeSession,
// an advisory lock FlagWritingFunction; a hidden read of the backend's
// own state (pg_settings, current_setting in a view) or of the
// transaction's time changes nothing.
func (s *Statement) RunsUnknownCode() bool {
	return s.Flags&(FlagReadsUnknown|FlagReachesUnknown|FlagUnproven) != 0
}

// MaySetSequences reports whether running the statement may set the
// session's sequence state (currval, lastval): it calls nextval or setval
// where txlane sees it (Sequences), or it runs code txlane cannot see
// into (RunsUnknownCode, FlagWritesUnknown: a function, DO, CALL, a
// trigger), or it is a write without a full catalog (a column default
// may call nextval), DDL (ALTER TABLE ... ADD COLUMN of a serial fills
// its rows from nextval) or a statement txlane could not classify. Fail
// safe: only reads, transaction control, SET and the utility statements
// that run no query (SHOW, LISTEN, DISCARD, PREPARE, ...) are known not
// to.
func (s *Statement) MaySetSequences() bool {
	if len(s.Parts) > 0 {
		for i := range s.Parts {
			if s.Parts[i].MaySetSequences() {
				return true
			}
		}
		return false
	}
	if s.Sequences || s.RunsUnknownCode() || s.Flags&FlagWritesUnknown != 0 {
		return true
	}
	switch s.Class {
	case Read, LockingRead, Session, TxControl:
		// Without a full catalog a read may name a view whose query
		// calls nextval.
		return !s.CatalogChecked && (s.Class == Read || s.Class == LockingRead)
	case Write:
		return !s.CatalogChecked
	case Utility:
		switch s.Command {
		case "SHOW", "LISTEN", "UNLISTEN", "NOTIFY", "DISCARD", "PREPARE", "DEALLOCATE",
			"CHECKPOINT", "CLOSE", "EXPLAIN", "LOCK", "":
			return false
		}
		// DECLARE counts what its query runs (Sequences); FETCH and MOVE
		// run that query.
		return s.Flags&FlagCursor == 0
	}
	return true
}

// ExecutesPrepared reports whether the statement runs a prepared statement
// named PrepareName: EXECUTE, EXPLAIN ANALYZE EXECUTE, CREATE TABLE ... AS
// EXECUTE (not PREPARE, which names the statement it defines).
func (s *Statement) ExecutesPrepared() bool {
	return s.PrepareName != "" && s.Command != "PREPARE"
}

// IsPureRead reports whether the statement is a read with nothing that makes
// it primary-bound by itself (no locks, no writes, no session change, no
// dependence on the backend). Whether it touches a vector table is a
// separate question (see [Decide]).
func (s *Statement) IsPureRead() bool {
	return s.Class == Read && s.Flags&(FlagMayChangeSession|FlagBackendDependent) == 0
}

// Merge describes several statements, run as one query text, as a whole:
// Reads, Writes, Temp, WritesReached, ReadsReached, Hidden and Settings are
// concatenated (tables de-duplicated), DeferredCheck, FiresCode and SessionCall
// are the first part's that has one,
// Flags are unioned plus FlagMultiStatement, Class is the most primary-bound
// part's. A single part is returned as is (copied).
func Merge(parts []Statement) Statement {
	if len(parts) == 1 {
		return parts[0]
	}
	out := Statement{Class: Read, Parts: parts, Flags: FlagMultiStatement}
	if len(parts) == 0 {
		out.Class = Utility
		return out
	}
	cmds := make([]string, 0, len(parts))
	for i := range parts {
		p := &parts[i]
		out.Class = MorePrimaryBound(out.Class, p.Class)
		out.Flags |= p.Flags
		for _, t := range p.Reads {
			out.Reads = AppendTable(out.Reads, t)
		}
		for _, t := range p.Writes {
			out.Writes = AppendTable(out.Writes, t)
		}
		for _, t := range p.Temp {
			out.Temp = AppendTable(out.Temp, t)
		}
		for _, t := range p.WritesReached {
			out.WritesReached = AppendTable(out.WritesReached, t)
		}
		for _, t := range p.ReadsReached {
			out.ReadsReached = AppendTable(out.ReadsReached, t)
		}
		for _, h := range p.Hidden {
			if len(out.Hidden) < maxMergedHidden {
				out.Hidden = append(out.Hidden, h)
			}
		}
		out.Settings = append(out.Settings, p.Settings...)
		out.Seeds = out.Seeds || p.Seeds
		out.Sequences = out.Sequences || p.Sequences
		if p.Deallocate != nil {
			out.Deallocate = p.Deallocate
		}
		if p.Discard != DiscardNone {
			out.Discard = p.Discard
		}
		if out.Reason == "" {
			out.Reason = p.Reason
		}
		if out.DeferredCheck == "" {
			out.DeferredCheck = p.DeferredCheck
		}
		if out.FiresCode == "" {
			out.FiresCode = p.FiresCode
		}
		if out.SessionCall == "" {
			out.SessionCall = p.SessionCall
		}
		cmds = append(cmds, p.Command)
	}
	out.Command = strings.Join(cmds, "; ")
	return out
}

// maxMergedHidden bounds the explanations a multi-statement text keeps.
const maxMergedHidden = 8

// AppendTable appends t to ts unless an identical entry is present.
func AppendTable(ts []Table, t Table) []Table {
	for _, u := range ts {
		if u == t {
			return ts
		}
	}
	return append(ts, t)
}
