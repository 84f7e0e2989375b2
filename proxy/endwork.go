package proxy

import "github.com/txlane/txlane/policy"

// Writes that PostgreSQL runs at a transaction's end (policy.EndWork):
// deferred constraint triggers fire, and cursors WITH HOLD run their query
// to its end, at COMMIT (END, COMMIT AND CHAIN) and PREPARE TRANSACTION;
// the triggers also at SET CONSTRAINTS ... IMMEDIATE. Those writes arrive
// with that statement, so it is checked as a write of the units of work it
// carries (a comment, SET LOCAL txlane.unit, the session's txlane.unit),
// when the transaction has such work pending: the planner gives the step an
// endWorkStmt to run (planStep.runs), which every check counts as a write of
// unknown tables. A transaction without pending end work commits as before:
// nothing is asked of the server, only the plan's steps are looked at.

// endWorkStmt stands for what a transaction's end runs: writes txlane cannot
// name (what deferred triggers and cursor queries write).
var endWorkStmt = &policy.Statement{Class: policy.Unknown, Command: "COMMIT",
	Flags: policy.FlagWritesUnknown, Reason: "work queued for the transaction's end"}

// noteEndWork records what part, a statement of step (the last planned),
// queues for its transaction's end, and marks the step as running that work
// when part runs it.
//
// NOTE: the pending work is an upper bound. It is recorded as the steps are
// planned, before the server runs them (a step that then fails or is
// skipped queued nothing), and it is dropped only when the server has
// reported the transaction ended (planner.begin at a safe point outside a
// transaction), never at a statement that runs it: a COMMIT the server skips
// after an error, or a SET CONSTRAINTS ... IMMEDIATE, may leave it pending
// (ROLLBACK TO SAVEPOINT can bring back a transaction whose COMMIT was
// skipped). So a COMMIT AND CHAIN's next transaction, and a COMMIT after SET
// CONSTRAINTS ALL IMMEDIATE, still count as running it: fail safe. Likewise
// a cursor WITH HOLD closed before COMMIT still counts.
func (p *planner) noteEndWork(part *policy.Statement, step *planStep) {
	if part.RunsEndWork(p.endWork) != 0 {
		if step.runs == nil {
			step.runs = endWorkStmt
		} else if step.runs != endWorkStmt {
			step.runs = opaqueStmt // more than one: anything
		}
	}
	p.endWork |= part.QueuesEndWork()
	if step.runs != nil && step.runs != endWorkStmt {
		// EXECUTE of a PREPAREd write, FETCH of a cursor whose query writes.
		eachPart(step.runs, func(r *policy.Statement) { p.endWork |= r.QueuesEndWork() })
	}
}

// writeStmts returns the classified statements of the steps, with what
// each runs besides itself (an EXECUTE's statement, a cursor's query, the
// work queued for a COMMIT), for the tables a request writes.
func (pl *requestPlan) writeStmts() []*policy.Statement {
	out := make([]*policy.Statement, 0, len(pl.steps))
	for _, st := range pl.steps {
		out = append(out, st.stmt)
		if st.runs != nil {
			out = append(out, st.runs)
		}
	}
	return out
}

// endWorkTables names what a transaction's end writes in messages (the
// 25L01 "write to … would escape", the log line, txlane_escapes_total's
// table label).
const endWorkTables = "(tables written at the transaction's end: deferred triggers, cursors WITH HOLD)"

// runsEndWork reports whether step i of the plan is a transaction's end
// that runs end work.
func (pl *requestPlan) runsEndWork(i int) bool {
	return i >= 0 && i < len(pl.steps) && pl.steps[i].runs == endWorkStmt
}
