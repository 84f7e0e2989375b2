// Command go-semantic-cache is a semantic cache in Go behind txlane: pgx with
// github.com/pgvector/pgvector-go, and two connection pools to one database.
//
//   - "business" runs the application's transactions on the users table;
//   - "cache" stores and finds similar optimizations in optimization_logs, a
//     table with a vector(3) column.
//
// Both pools point at txlane (DATABASE_URL). Every statement of one request
// carries the request's unit of work as a sqlcommenter comment,
// /*unit='req-…'*/, appended by the Tagged helper from the request's context,
// so txlane can tell that a write on the cache pool belongs to a transaction
// that is open on the business pool.
//
// It runs the approved and forbidden patterns (see README.md) and prints a JSON
// summary; the exit status is 1 when an outcome differs from what the txlane
// configuration in front of it should produce (-escape, or $TXLANE_ESCAPE):
//
//	reject   (default) a write that would escape the transaction fails, SQLSTATE 25L01
//	reroute  such a write runs inside the holder's transaction
//	allow    txlane lets it through, or DATABASE_URL points at PostgreSQL itself:
//	         the write commits on its own and survives the holder's rollback
//
// The tables come from examples/setup.sql, run against the database beforehand.
//
// Files: main.go (the Tagged helper, the scenarios, the summary); the tables
// are in ../setup.sql.
//
// Goroutines: main, and in the concurrency scenario a holder transaction and
// six clients working beside it. No locks.
package main
