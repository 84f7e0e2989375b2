package proxy

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/router"
)

// catalogRouting is testRouting with a catalog: table plain has no trigger,
// table trg has one, wf is a volatile user function; the database has a
// deferrable trigger.
func catalogRouting(t testing.TB) func() *routing {
	cat := router.NewCatalog(router.CatalogObjects{
		Functions: []router.CatalogFunc{{Schema: "public", Name: "wf", Volatility: router.Volatile},
			{Schema: "public", Name: "trg_fn", Volatility: router.Volatile}},
		Relations: []router.CatalogRelation{{Schema: "public", Name: "plain", Kind: 'r'},
			{Schema: "public", Name: "trg", Kind: 'r', Triggers: []router.CatalogTrigger{
				{Name: "t", Events: router.ParseEvents("iud"), Func: policy.Func{Schema: "public", Name: "trg_fn"}}}}},
		// A database with a deferrable trigger: writes that fire user
		// triggers may queue deferred events.
		DeferrableTriggers: true,
	})
	rt := *testRouting(t)()
	rt.classifier = router.NewClassifier(router.ConfigFromRules(rt.rules, cat))
	return func() *routing { return &rt }
}

// planTx plans each text as one simple Query of a client inside a
// transaction block (the first at a safe point outside one) and returns the
// last plan's first step.
func planTx(t *testing.T, p *planner, texts ...string) planStep {
	t.Helper()
	for i, sql := range texts {
		planMsgs(t, p, i == 0, &pgproto3.Query{String: sql})
	}
	return p.cur.steps[0]
}

// TestPlanEndWork: the step that ends a transaction runs the work queued
// for its end (a write for the units of work) only when the transaction
// queued some; otherwise the plan is as before: no step to check as a write,
// so checkUnits asks the server nothing (with policy.shared_units a write
// is what makes it ask).
func TestPlanEndWork(t *testing.T) {
	for _, c := range []struct {
		texts  []string
		writes bool
	}{
		{[]string{"BEGIN", "INSERT INTO plain VALUES (1)", "COMMIT /*unit='u'*/"}, false},
		{[]string{"BEGIN", "UPDATE plain SET a = 1", "DECLARE c CURSOR WITH HOLD FOR SELECT a FROM plain", "COMMIT"}, false},
		{[]string{"BEGIN", "SELECT a FROM plain", "SET CONSTRAINTS ALL IMMEDIATE"}, false},
		{[]string{"BEGIN", "INSERT INTO trg VALUES (1)", "COMMIT"}, true},
		{[]string{"BEGIN", "INSERT INTO trg VALUES (1)", "SAVEPOINT s", "COMMIT AND CHAIN"}, true},
		{[]string{"BEGIN", "INSERT INTO trg VALUES (1)", "SET CONSTRAINTS ALL IMMEDIATE"}, true},
		{[]string{"BEGIN", "INSERT INTO trg VALUES (1)", "RELEASE SAVEPOINT s"}, false},
		{[]string{"BEGIN", "DECLARE c CURSOR WITH HOLD FOR SELECT wf(1)", "PREPARE TRANSACTION 'x'"}, true},
		{[]string{"BEGIN", "DECLARE c CURSOR WITH HOLD FOR SELECT wf(1)", "SET CONSTRAINTS ALL IMMEDIATE"}, true}, // wf may write trg
		{[]string{"BEGIN", "PREPARE w AS INSERT INTO trg VALUES (1)", "EXECUTE w", "END"}, true},
		{[]string{"BEGIN", "INSERT INTO trg VALUES (1); COMMIT"}, true}, // the INSERT itself
		{[]string{"BEGIN", "COMMIT PREPARED 'x'"}, false},
	} {
		p := newPlanner(newRegistry(), catalogRouting(t))
		last := planTx(t, p, c.texts...)
		got := isWrite(last.stmt) || last.runs != nil && isWrite(last.runs)
		if got != c.writes {
			t.Errorf("%q: the last step writes %v, want %v", c.texts, got, c.writes)
		}
	}
	// A transaction's end work ends with it: the next transaction, begun at
	// a safe point outside a block, starts with none.
	p := newPlanner(newRegistry(), catalogRouting(t))
	planTx(t, p, "BEGIN", "INSERT INTO trg VALUES (1)", "ROLLBACK")
	planMsgs(t, p, true, &pgproto3.Query{String: "BEGIN"})
	planMsgs(t, p, false, &pgproto3.Query{String: "COMMIT"})
	if st := p.cur.steps[0]; st.runs != nil {
		t.Error("a COMMIT runs end work queued by an earlier, ended transaction")
	}
}
