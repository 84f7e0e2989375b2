package proxy

import (
	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/proxy/wire"
)

// Transactions and server errors per lane: txlane_transactions_total,
// txlane_errors_total and txlane_deadlocks_total.
//
// A transaction's end is read from what the server reported about the
// request that ended it, without a query of txlane's own: the transaction
// status before the request (the client's last ReadyForQuery), the
// statements the server reported complete (CommandComplete, in order),
// where among them an ErrorResponse came (request.failedAt), and the status
// of the ReadyForQuery that ends the request. PostgreSQL's rules
// ("Transactions" in the SQL commands BEGIN, COMMIT, ROLLBACK; the
// protocol's "Multiple Statements in a Simple Query" and "Pipelining"):
//
//   - COMMIT (END) of a block in status T commits it; COMMIT of a failed
//     block (status E) rolls it back (the server's command tag then says
//     ROLLBACK); ROLLBACK (ABORT) rolls back; a COMMIT that fails (a deferred
//     constraint, a serialization failure) leaves status I after an error:
//     a rollback.
//   - PREPARE TRANSACTION ends a block without an outcome; the COMMIT
//     PREPARED or ROLLBACK PREPARED that finishes it counts as the explicit
//     transaction's commit or rollback.
//   - Outside a block, a request that runs statements is an implicit
//     transaction (a multi-statement Query, or the Executes up to a Sync): it
//     commits at its ReadyForQuery, or rolls back at an error (a statement
//     that fails, and what ran before it in the same request). A COMMIT or
//     ROLLBACK inside it ends it as said; BEGIN makes it an explicit block.
//     Requests that run no statement (a Sync alone, Parse and Describe, an
//     empty query) count nothing.
//   - A ReadyForQuery the statements do not explain (a transaction control
//     txlane could not parse) is believed: a block that ended without a
//     visible COMMIT or ROLLBACK counts as a commit from T and a rollback
//     from E.
//
// Not counted: txlane's own queries, and transactions whose backend closed
// before they ended (the client or the backend went away: the server rolls
// them back; the backend's error, if it sent one, is in
// txlane_errors_total). On the vector lane every read is one implicit
// transaction of its own (read-only), also when the client's transaction on
// the primary is open; a read the lane refused and the primary ran again
// counts on the primary only.

// Label values of the transaction and error metrics.
const (
	lanePrimary     = "primary"
	laneVector      = "vector"
	outcomeCommit   = "commit"
	outcomeRollback = "rollback"
	blockExplicit   = "explicit"
	blockImplicit   = "implicit"
)

// codeDeadlock is SQLSTATE deadlock_detected (PostgreSQL's Appendix A).
const codeDeadlock = "40P01"

// txEnd is one transaction a request ended.
type txEnd struct{ explicit, commit bool }

// txEnds appends to ends the transactions a request ended, in order. prev
// is the transaction status before the request (0: idle), done the
// statements the server reported complete, failedAt one more than the number
// of done statements that completed before the server's ErrorResponse (0:
// none), status the status of the ReadyForQuery that ended the request.
func txEnds(ends []txEnd, prev policy.TxStatus, done []*policy.Statement, failedAt int, status TxStatus) []txEnd {
	state := prev
	if state == 0 {
		state = policy.TxIdle
	}
	implicit := false // outside a block, a statement ran since the last end
	end := func(explicit, commit bool) { ends = append(ends, txEnd{explicit: explicit, commit: commit}) }
	fail := func() {
		switch state {
		case policy.TxIdle:
			// The failing statement's implicit transaction rolls back.
			end(false, false)
			implicit = false
		case policy.TxInBlock:
			state = policy.TxFailed
		}
	}
	step := func(st *policy.Statement) {
		kind := policy.TxNone
		if st.Class == policy.TxControl {
			kind = st.Tx.Kind
		}
		switch kind {
		case policy.TxBegin:
			if state == policy.TxIdle {
				state, implicit = policy.TxInBlock, false
			}
		case policy.TxCommit, policy.TxRollback:
			commit := kind == policy.TxCommit
			switch state {
			case policy.TxIdle:
				// Ends an implicit block of several statements; alone it
				// only warns ("there is no transaction in progress").
				if implicit {
					end(false, commit)
					implicit = false
				}
				return
			case policy.TxFailed:
				commit = false
			}
			end(true, commit)
			state = policy.TxIdle
			if st.Tx.Chain {
				state = policy.TxInBlock
			}
		case policy.TxPrepareTransaction:
			switch state {
			case policy.TxInBlock:
				state = policy.TxIdle // prepared: its outcome comes later
			case policy.TxFailed:
				end(true, false)
				state = policy.TxIdle
			}
		case policy.TxCommitPrepared, policy.TxRollbackPrepared:
			end(true, kind == policy.TxCommitPrepared)
		case policy.TxRollbackTo:
			if state == policy.TxFailed {
				state = policy.TxInBlock
			}
		default:
			if state == policy.TxIdle && st.Command != "EMPTY" {
				implicit = true
			}
		}
	}
	errAt := failedAt - 1
	for i, st := range done {
		if i == errAt {
			fail()
		}
		if st.Flags.Has(policy.FlagMultiStatement) && len(st.Parts) > 0 {
			for j := range st.Parts {
				step(&st.Parts[j])
			}
			continue
		}
		step(st)
	}
	if errAt >= len(done) {
		fail()
	}
	if TxStatus(status) != TxIdle {
		return ends // a block is open (one begun where txlane could not see it included)
	}
	switch state {
	case policy.TxIdle:
		if implicit {
			end(false, true)
		}
	case policy.TxInBlock:
		end(true, true)
	case policy.TxFailed:
		end(true, false)
	}
	return ends
}

// primaryRequestDone counts the transactions a primary request ended (see
// txEnds); prev is the client's transaction status before it. Called with
// the session's mu held.
func (m *Metrics) primaryRequestDone(prev policy.TxStatus, req *request, status TxStatus) {
	if req == nil || req.internal != nil {
		return
	}
	var buf [2]txEnd
	for _, e := range txEnds(buf[:0], prev, req.replies.done, req.failedAt, status) {
		m.transactionEnded(lanePrimary, e)
	}
}

// laneReadDone counts a read the vector lane answered: an implicit
// transaction that committed, or rolled back when failed.
func (m *Metrics) laneReadDone(failed bool) {
	m.transactionEnded(laneVector, txEnd{commit: !failed})
}

func (m *Metrics) transactionEnded(lane string, e txEnd) {
	i := 0
	if lane == laneVector {
		i = 1
	}
	m.txCounters[i][b2i(e.commit)][b2i(e.explicit)].Inc()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// serverError counts an ErrorResponse with SQLSTATE code that a server of
// lane sent to a client.
func (m *Metrics) serverError(lane, code string) {
	m.serverErrors.WithLabelValues(lane, sqlstateClass(code)).Inc()
	if code == codeDeadlock {
		m.deadlocks.WithLabelValues(lane).Inc()
	}
}

// sqlstateClass is the class of a SQLSTATE: its first two characters
// (PostgreSQL's Appendix A), or XX (internal_error, the code txlane gives
// such a message: wire.WithSQLState) when code is not five digits or
// upper-case letters.
func sqlstateClass(code string) string {
	if len(code) != 5 {
		return "XX"
	}
	for i := 0; i < len(code); i++ {
		if c := code[i]; (c < '0' || c > '9') && (c < 'A' || c > 'Z') {
			return "XX"
		}
	}
	return code[:2]
}

// serverError counts an ErrorResponse (body) of the primary that reaches a
// client, and marks the request it answers as failed at this point of its
// statements (request.failedAt: see txEnds).
func (p *primaryConn) serverError(body []byte) {
	p.mu.Lock()
	o := p.mu.owner
	if len(p.mu.pending) > 0 {
		if req := p.mu.pending[0]; req.failedAt == 0 {
			req.failedAt = len(req.replies.done) + 1
		}
	}
	p.mu.Unlock()
	if s, ok := o.(*session); ok {
		s.srv.metrics.serverError(lanePrimary, wire.ErrorCode(body))
	}
}

// Transactions returns how many transactions of lane ended with outcome
// ("commit", "rollback") in block ("explicit", "implicit")
// (txlane_transactions_total).
func (m *Metrics) Transactions(lane, outcome, block string) float64 {
	return labeledValue(m.transactions, lane, outcome, block)
}

// Errors returns how many ErrorResponses of SQLSTATE class the servers of
// lane sent to clients (txlane_errors_total).
func (m *Metrics) Errors(lane, class string) float64 {
	return labeledValue(m.serverErrors, lane, class)
}

// Deadlocks returns how many deadlock errors (40P01) the servers of lane
// sent to clients (txlane_deadlocks_total).
func (m *Metrics) Deadlocks(lane string) float64 {
	return labeledValue(m.deadlocks, lane)
}
