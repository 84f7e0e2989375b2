// Package policy decides which lane runs a request: the client's own primary
// connection, or the shared vector-lane pool.
//
// The package is pure: it performs no I/O and holds no globals. The router
// turns SQL into a [Statement]; the proxy keeps a [TxState] per client from
// the ReadyForQuery byte and the statements that ran; configuration arrives
// as an immutable [Rules] value. [Decide] combines the three and returns a
// [Decision] with a stable [Reason].
//
// Fail-safe defaults run through the package: the zero [Lane] is [Primary],
// the zero [Class] is [Unknown], and every doubt resolves to the primary lane,
// because a read wrongly kept on the primary costs throughput while a read
// wrongly offloaded can return data the transaction must not see.
//
// Files:
//
//	statement.go  Statement, Class, Flags, TxCommand, Merge: what a query
//	              text is, as the router describes it
//	decide.go     Lane, Reason, Decision, Decide
//	state.go      TxState: a client's transaction as ReadyForQuery and the
//	              statements that ran leave it
//	rules.go      RulesConfig → Rules: vector tables, after_write,
//	              on_unavailable, function lists
//	escape.go     EscapeAction and per-table overrides (escape_overrides)
//	writes.go     MayWrite and the tables a statement writes
//	endwork.go    EndWork: writes PostgreSQL runs at a transaction's end
//	              (deferred triggers, cursors WITH HOLD), what queues and
//	              what runs them
//	table.go      Table, Func, ParseTable, ParseFunc: names as PostgreSQL
//	              reads a regclass literal
//	lane.go       the settings the vector lane mirrors from a session
//	names.go      the names of enum values (String and Parse*)
//
// No goroutines, no locks.
package policy
