// Package router classifies SQL text for routing: it parses with PostgreSQL's
// own parser (pg_query_go), walks the tree, and returns a typed
// [policy.Statement] (class, tables read and written, flags, transaction
// control and session-setting details). Results are cached by exact text and
// shared with texts that differ only in comments and white space, or also in
// constants when the description owes nothing to them (normalize.go).
//
// Classification is independent of the vector-table set and the transaction
// state; [policy.Decide] combines them. Every doubt resolves toward the
// primary lane: a statement is a pure read only when the parser proves it.
//
// The walker sees the SQL text; what the text hides comes from a catalog
// snapshot built by [NewCatalog] (no database access here): what views,
// row-level security policies, operators, aggregates and casts run, and the
// tables writes reach through triggers, cascading foreign keys, rules,
// writable views and partitions (hidden.go). What the snapshot cannot prove
// is presumed to write. Without a snapshot, or with functions alone
// ([NewCatalogSnapshot]), only function calls are judged.
package router
