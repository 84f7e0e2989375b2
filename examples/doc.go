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
//	monitoring         Prometheus alert rules and a Grafana dashboard on
//	                   txlane's metrics
//	examples_test.go   the tests: each example against its own database
//	monitoring_test.go the monitoring example: rules and dashboard parsed
//	                   (YAML, JSON, PromQL) and checked against a running
//	                   txlane's /metrics
//
// Goroutines and locks: none here; the tests run the examples as processes.
package examples
