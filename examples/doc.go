// Package examples holds txlane's examples; its tests (examples_test.go,
// package examples_test) run each of them through the real txlane binary.
// The package has no code: the examples are programs and walkthroughs of
// their own.
//
// Files:
//
//	txlane.yaml        every configuration key with its default (tests keep
//	                   it equal to config.Keys and the README)
//	setup.sql          the tables of go-semantic-cache and prisma-drizzle
//	go-semantic-cache  pgx + pgvector-go: a semantic cache in Go
//	prisma-drizzle     Node: Prisma 7 + Drizzle + pgvector
//	psql               the walkthrough: two psql sessions and txlane explain
//	examples_test.go   the tests: each example against its own database
//
// Goroutines and locks: none here; the tests run the examples as processes.
package examples
