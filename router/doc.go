// Package router classifies SQL text for routing: it parses with PostgreSQL's
// own parser (pg_query_go), walks the tree, and returns a typed
// [policy.Statement] (class, tables read and written, flags, transaction
// control and session-setting details). Results are cached by exact text.
//
// Classification is independent of the vector-table set and the transaction
// state; [policy.Decide] combines them. Every doubt resolves toward the
// primary lane: a statement is a pure read only when the parser proves it.
//
// Limits, by design: the walker sees the SQL text only. Views are tables as
// written; what a view's definition, a trigger, a rule, or an operator's
// function does is invisible (use after_write=any, the writing-function
// lists, or the catalog snapshot to cover them).
package router
