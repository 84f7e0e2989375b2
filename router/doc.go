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
//
// Files:
//
//	classify.go   Classifier, Config: parse, cache, and the statement kinds
//	              (DML, transaction control, settings, utility)
//	walk.go       walker: every node of the parse tree through protobuf
//	              reflection; tables read and written, functions called
//	functions.go  FuncCatalog: function volatility and known writing,
//	              session-, transaction- and backend-dependent functions
//	catalog.go    CatalogSnapshot, NewCatalog: the catalog's objects by name
//	bodies.go     ReadFunctionBody: what a PL/pgSQL or SQL string function
//	              body calls and reads (dynamic SQL and the rest stay opaque)
//	hidden.go     what the catalog shows a statement runs and writes beyond
//	              its text (views, policies, operators, casts, triggers, ...)
//	backend.go    relations whose rows are the backend session's own
//	lex.go        a scanner after PostgreSQL's scan.l: where comments,
//	              strings and statements end
//	lexing.go     classification that holds under every
//	              standard_conforming_strings setting and client encoding
//	              (cgo: pg_query's C API with parser options)
//	encoding.go   texts that are not UTF-8 (a client encoding such as
//	              LATIN1 or GB18030): classified by their Latin-1 image
//	normalize.go  cache keys shared by texts that differ only in constants
//	cache.go      the sharded two-generation statement cache
//	units.go      ExtractUnits (sqlcommenter unit keys, traceparent),
//	              Fingerprint
//	prepare.go    PrepareText: a PREPARE within a client's query string
//	explain.go    Explanation: what `txlane explain` prints
//
// Goroutines: none; a Classifier is safe for concurrent use. Locks: each
// cache shard's mu (cache.go), taken one at a time and never while
// classifying; bodyMemo.mu (bodies.go), the process-wide memo of function
// bodies read, never held while parsing or with another lock.
package router
