// Package catalog reads from a PostgreSQL database what routing needs to know
// beyond SQL text: which tables are vector tables (a column of type vector,
// halfvec or sparsevec) and what classification must see that a statement's
// text hides (functions and their volatility, views, row-level-security
// policies, triggers and deferrable triggers, rules, foreign keys, partitions,
// operators, casts; see objectsSQL). The proxy reads it over a vector-lane
// connection; `txlane explain --discover` over a connection of its own. Both
// read the same statements through Read.
//
// Files:
//
//	catalog.go   Read, Discover, the vector-table query
//	objects.go   the objects query and its decoding into router.CatalogObjects
//	             (function bodies stored as text are read there with
//	             router.ReadFunctionBody)
//
// The package holds no state, starts no goroutines and takes no locks.
package catalog
