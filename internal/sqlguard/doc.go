// Package sqlguard checks that a SQL text txlane sends inside a client's
// session resolves every name the same way whatever that session's
// search_path (PostgreSQL's "Schema Search Path": operators, functions and
// types are looked up through it, and the session's temporary schema comes
// first for relations and types). Tests of the packages that build such texts
// use it; no product package imports it.
//
// Files: sqlguard.go (Unqualified: the names a text leaves to the
// search_path, read from pg_query's parse tree, PL/pgSQL bodies of DO blocks
// included).
//
// No goroutines, no locks.
package sqlguard
