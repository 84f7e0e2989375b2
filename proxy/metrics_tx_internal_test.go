package proxy

import (
	"reflect"
	"testing"

	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/router"
)

// TestTxEnds: the transactions a request ended, from the status before it,
// the statements the server completed, where its error came and the status
// after it (PostgreSQL's rules, as metrics_tx.go states them).
func TestTxEnds(t *testing.T) {
	cl := router.NewClassifier(router.Config{})
	var (
		implicitCommit   = txEnd{commit: true}
		implicitRollback = txEnd{}
		explicitCommit   = txEnd{explicit: true, commit: true}
		explicitRollback = txEnd{explicit: true}
	)
	for _, c := range []struct {
		name     string
		prev     policy.TxStatus
		done     []string // statements the server completed, in order
		failedAt int
		status   TxStatus
		want     []txEnd
	}{
		{"autocommit statement", 0, []string{"SELECT 1"}, 0, TxIdle, []txEnd{implicitCommit}},
		{"autocommit statement, prev I", policy.TxIdle, []string{"INSERT INTO t VALUES (1)"}, 0, TxIdle, []txEnd{implicitCommit}},
		{"failing autocommit statement", policy.TxIdle, nil, 1, TxIdle, []txEnd{implicitRollback}},
		{"multi-statement Query failing in its second part", policy.TxIdle, []string{"INSERT INTO t VALUES (1)"}, 2, TxIdle, []txEnd{implicitRollback}},
		{"BEGIN", policy.TxIdle, []string{"BEGIN"}, 0, TxActive, nil},
		{"statement in a block", policy.TxInBlock, []string{"UPDATE t SET a = 1"}, 0, TxActive, nil},
		{"error in a block", policy.TxInBlock, nil, 1, TxFailed, nil},
		{"COMMIT", policy.TxInBlock, []string{"COMMIT"}, 0, TxIdle, []txEnd{explicitCommit}},
		{"END", policy.TxInBlock, []string{"END"}, 0, TxIdle, []txEnd{explicitCommit}},
		{"ROLLBACK", policy.TxInBlock, []string{"ROLLBACK"}, 0, TxIdle, []txEnd{explicitRollback}},
		{"ABORT of a failed block", policy.TxFailed, []string{"ABORT"}, 0, TxIdle, []txEnd{explicitRollback}},
		{"COMMIT of a failed block rolls back", policy.TxFailed, []string{"COMMIT"}, 0, TxIdle, []txEnd{explicitRollback}},
		{"COMMIT that fails (deferred constraint)", policy.TxInBlock, nil, 1, TxIdle, []txEnd{explicitRollback}},
		{"COMMIT AND CHAIN", policy.TxInBlock, []string{"COMMIT AND CHAIN"}, 0, TxActive, []txEnd{explicitCommit}},
		{"ROLLBACK AND CHAIN of a failed block", policy.TxFailed, []string{"ROLLBACK AND CHAIN"}, 0, TxActive, []txEnd{explicitRollback}},
		{"ROLLBACK TO SAVEPOINT", policy.TxFailed, []string{"ROLLBACK TO SAVEPOINT a"}, 0, TxActive, nil},
		{"pipelined block", policy.TxIdle, []string{"BEGIN", "INSERT INTO t VALUES (1)", "COMMIT"}, 0, TxIdle, []txEnd{explicitCommit}},
		{"Query with a block", policy.TxIdle, []string{"BEGIN; INSERT INTO t VALUES (1); COMMIT"}, 0, TxIdle, []txEnd{explicitCommit}},
		{"COMMIT inside an implicit block, then more", policy.TxIdle, []string{"INSERT INTO t VALUES (1); COMMIT; SELECT 1"}, 0, TxIdle, []txEnd{implicitCommit, implicitCommit}},
		{"ROLLBACK inside an implicit block", policy.TxIdle, []string{"INSERT INTO t VALUES (1); ROLLBACK"}, 0, TxIdle, []txEnd{implicitRollback}},
		{"ROLLBACK outside a block only warns", policy.TxIdle, []string{"ROLLBACK"}, 0, TxIdle, nil},
		{"BEGIN takes the implicit block in", policy.TxIdle, []string{"SELECT 1; BEGIN; SELECT 2"}, 0, TxActive, nil},
		{"commit, then a failing autocommit statement", policy.TxInBlock, []string{"COMMIT"}, 2, TxIdle, []txEnd{explicitCommit, implicitRollback}},
		{"PREPARE TRANSACTION", policy.TxInBlock, []string{"PREPARE TRANSACTION 'g'"}, 0, TxIdle, nil},
		{"PREPARE TRANSACTION of a failed block", policy.TxFailed, []string{"PREPARE TRANSACTION 'g'"}, 0, TxIdle, []txEnd{explicitRollback}},
		{"COMMIT PREPARED", policy.TxIdle, []string{"COMMIT PREPARED 'g'"}, 0, TxIdle, []txEnd{explicitCommit}},
		{"ROLLBACK PREPARED", policy.TxIdle, []string{"ROLLBACK PREPARED 'g'"}, 0, TxIdle, []txEnd{explicitRollback}},
		{"nothing ran (Sync alone, Parse and Describe)", policy.TxIdle, nil, 0, TxIdle, nil},
		{"empty query", policy.TxIdle, []string{""}, 0, TxIdle, nil},
		{"a block ends unseen from T", policy.TxInBlock, []string{"SELECT 1"}, 0, TxIdle, []txEnd{explicitCommit}},
		{"a block ends unseen from E", policy.TxFailed, nil, 0, TxIdle, []txEnd{explicitRollback}},
		{"a block begins unseen", policy.TxIdle, []string{"SELECT 1"}, 0, TxActive, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			var done []*policy.Statement
			for _, sql := range c.done {
				done = append(done, cl.Classify(sql))
			}
			if got := txEnds(nil, c.prev, done, c.failedAt, c.status); !reflect.DeepEqual(got, c.want) {
				t.Errorf("txEnds(%q, %q, failedAt %d, %q) = %+v, want %+v", string(rune(c.prev)), c.done, c.failedAt, string(rune(c.status)), got, c.want)
			}
		})
	}
}

// TestSQLStateClass: the first two characters of a well-formed code, XX
// otherwise.
func TestSQLStateClass(t *testing.T) {
	for code, want := range map[string]string{"40P01": "40", "23505": "23", "XX000": "XX", "": "XX", "4": "XX", "40p01": "XX", "40P0\x00": "XX", "400011": "XX"} {
		if got := sqlstateClass(code); got != want {
			t.Errorf("sqlstateClass(%q) = %q, want %q", code, got, want)
		}
	}
	m := NewMetrics()
	m.serverError(lanePrimary, "40P01")
	m.serverError(lanePrimary, "40001")
	m.serverError(laneVector, "22012")
	for name, c := range map[string]struct{ got, want float64 }{
		"deadlocks primary": {m.Deadlocks(lanePrimary), 1}, "deadlocks vector": {m.Deadlocks(laneVector), 0},
		"errors primary 40": {m.Errors(lanePrimary, "40"), 2}, "errors vector 22": {m.Errors(laneVector, "22"), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", name, c.got, c.want)
		}
	}
}

// BenchmarkTransactionMetrics is what counting transactions costs the relay
// per request (primaryRequestDone), for an autocommit statement and for
// the COMMIT of a block. Needs no PostgreSQL:
// go test -run '^$' -bench TransactionMetrics -benchmem ./proxy
func BenchmarkTransactionMetrics(b *testing.B) {
	cl := router.NewClassifier(router.Config{})
	m := NewMetrics()
	for _, bc := range []struct {
		name string
		prev policy.TxStatus
		sql  string
	}{
		{"autocommit", policy.TxIdle, "SELECT abalance FROM pgbench_accounts WHERE aid = $1"},
		{"commit", policy.TxInBlock, "COMMIT"},
	} {
		req := &request{}
		req.replies.done = []*policy.Statement{cl.Classify(bc.sql)}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m.primaryRequestDone(bc.prev, req, TxIdle)
			}
		})
	}
}
