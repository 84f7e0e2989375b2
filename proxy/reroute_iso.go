package proxy

import (
	"bufio"
	"strings"

	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/proxy/wire"
)

// A rerouted request sees what the holder's transaction sees. Under READ
// COMMITTED "each command sees a snapshot of the database as of the instant
// that command starts" (PostgreSQL "Transaction Isolation"), as the write
// would on its own connection. Under REPEATABLE READ and SERIALIZABLE every
// command of the transaction sees the snapshot of its first: a write
// rerouted there misses what committed since, the writer's own earlier
// writes included (an adversarial tester's UPDATE of a row its client had
// just committed answered UPDATE 0). A READ ONLY transaction refuses the
// write (25006), which its own connection would have run.
//
// txlane does not always know a transaction's level (a role's or database's
// default_transaction_isolation, set_config of it, a BEGIN it could not
// read), so the holder's backend is asked, inside the rerouted request and
// before any of it runs: isoGuardSQL raises 25L01 there unless the
// transaction is READ COMMITTED (or READ UNCOMMITTED, which PostgreSQL runs
// as READ COMMITTED) and, for a write, READ WRITE. The error fails the
// request as a failure of the write would: txlane's savepoint is rolled back
// to (rerouteCleanup), and the holder's transaction goes on as it was.

// isoGuardSQL is the DO block that raises e unless the transaction it runs
// in is READ COMMITTED (and READ WRITE when write).
func isoGuardSQL(e *wire.Error, write bool) string {
	cond := "pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.<>) ALL ('{read committed,read uncommitted}'::pg_catalog.text[])"
	if write {
		cond += " OR pg_catalog.current_setting('transaction_read_only') OPERATOR(pg_catalog.<>) 'off'"
	}
	raise := strings.TrimSuffix(strings.TrimPrefix(raiseSQL(e), "DO $txlane$BEGIN "), " END$txlane$")
	return "DO $txlane$BEGIN IF " + cond + " THEN " + raise + " END IF; END$txlane$"
}

// isoGuardError is the error isoGuardSQL raises for a write of unit u into
// holder h's transaction.
func isoGuardError(u string, stmts []*policy.Statement, h UnitHolder) *wire.Error {
	return escapeError(u, describeTables(stmts), h, policy.EscapeReroute,
		"The holder's transaction is REPEATABLE READ, SERIALIZABLE or READ ONLY: the write would see the holder's snapshot, not what has committed since, or be refused; a write is rerouted only into a READ COMMITTED, READ WRITE transaction.")
}

// writeIsoGuard writes isoGuardSQL, hidden but for its error, at the head of
// a rerouted request (tracked in tr).
func writeIsoGuard(w *bufio.Writer, tr *replyTracker, sql string) {
	w.Write(appendRun(nil, sql, ownPortal))
	trackRun(tr)
}
