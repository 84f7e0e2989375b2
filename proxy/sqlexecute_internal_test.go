package proxy

import (
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/policy"
)

// TestPlanExecuteAs: the planner plans a statement that executes a prepared
// statement of one known text as that text's statement, keeping it on the
// primary (several texts: all at once), and leaves one it cannot resolve as the classifier's presumption
// (a write of anything that may change the session).
func TestPlanExecuteAs(t *testing.T) {
	p := newPlanner(newRegistry(), testRouting(t))
	server := map[string]string{"srv": "PREPARE srv AS INSERT INTO s VALUES (1)"}
	p.serverPrepared = func(name string) string { return server[name] }
	plan := func(sql string) *policy.Statement {
		t.Helper()
		return planMsgs(t, p, true, &pgproto3.Query{String: sql}).steps[0].stmt
	}
	opaque := func(st *policy.Statement) bool {
		return st.Class == policy.Utility && st.Flags.Has(policy.FlagWritesUnknown|policy.FlagMayChangeSession)
	}
	plan("PREPARE rd AS SELECT count(*) FROM items")
	plan("PREPARE wr(int) AS INSERT INTO t VALUES ($1)")
	plan("PREPARE cfg(text) AS SELECT set_config('txlane.unit', $1, false)")
	plan("PREPARE two AS SELECT 1")
	plan("PREPARE two AS SELECT nextval('s')") // fails at the server (42P05), or not: unknown

	for _, sql := range []string{"EXECUTE rd", "EXPLAIN ANALYZE EXECUTE rd"} {
		st := plan(sql)
		if st.Class != policy.Read || !st.Flags.Has(policy.FlagSQLPrepare) || !slices.Contains(st.Reads, policy.Table{Name: "items"}) {
			t.Errorf("%s: %v %v reads %v; want a read of items, sql_prepare", sql, st.Class, st.Flags, st.Reads)
		}
		if d := policy.Decide(nil, st, testRouting(t)().rules, nil); d.Lane != policy.Primary || d.Reason != policy.ReasonSQLPrepare {
			t.Errorf("%s: routed %v (%v); want the primary (sql_prepare): the vector table is read through the client's own statement", sql, d.Lane, d.Reason)
		}
	}
	if st := plan("EXECUTE wr(1)"); st.Class != policy.Write || !slices.Contains(st.Writes, policy.Table{Name: "t"}) || st.Flags.Has(policy.FlagWritesUnknown) {
		t.Errorf("EXECUTE wr: %v %v writes %v; want a write of t alone", st.Class, st.Flags, st.Writes)
	}
	if st := plan("CREATE TABLE c AS EXECUTE rd"); st.Class != policy.Write || !slices.Contains(st.Writes, policy.Table{Name: "c"}) || st.Flags.Has(policy.FlagWritesUnknown) {
		t.Errorf("CREATE TABLE AS EXECUTE: %v %v writes %v; want a write of c", st.Class, st.Flags, st.Writes)
	}
	if st := plan("EXECUTE srv"); st.Class != policy.Write || !slices.Contains(st.Writes, policy.Table{Name: "s"}) {
		t.Errorf("EXECUTE of a statement the server reported: %v writes %v", st.Class, st.Writes)
	}
	if st := plan("EXECUTE cfg('u1')"); len(st.ConfigCalls) != 1 || st.ConfigCalls[0].Known || st.ConfigCalls[0].Param != 0 {
		t.Errorf("EXECUTE cfg: config calls %+v; want the value unknown ($1 is the EXECUTE's argument, no bind parameter)", st.ConfigCalls)
	}
	if st := plan("EXECUTE two"); st.Class != policy.Write || !st.Sequences || len(st.Parts) > 0 {
		t.Errorf("EXECUTE of a name with two texts: %v %v sequences %v; want both at once", st.Class, st.Flags, st.Sequences)
	}
	for _, sql := range []string{"EXECUTE nobody", "CREATE TABLE c AS EXECUTE nobody"} {
		if st := plan(sql); !st.Flags.Has(policy.FlagWritesUnknown | policy.FlagMayChangeSession) {
			t.Errorf("%s: %v %v; want the presumption kept (fail safe)", sql, st.Class, st.Flags)
		}
	}
	if st := plan("EXECUTE nobody"); !opaque(st) {
		t.Errorf("EXECUTE nobody: %v %v", st.Class, st.Flags)
	}
	// In the PREPARE's own request, and a protocol-level statement.
	st := plan("PREPARE x AS DELETE FROM d; EXECUTE x")
	if len(st.Parts) != 2 || !slices.Contains(st.Parts[1].Writes, policy.Table{Name: "d"}) {
		t.Errorf("PREPARE; EXECUTE: %+v", st.Parts)
	}
	planMsgs(t, p, true, &pgproto3.Parse{Name: "proto", Query: "UPDATE u SET a = 1"}, &pgproto3.Sync{})
	// (not confirmed by a server: planned as pipelined behind it)
	pl := planMsgs(t, p, false, &pgproto3.Query{String: "EXECUTE proto"})
	if st := pl.steps[0].stmt; !slices.Contains(st.Writes, policy.Table{Name: "u"}) {
		t.Errorf("EXECUTE of a protocol-level statement: writes %v", st.Writes)
	}
	// DISCARD ALL forgets the texts.
	plan("DISCARD ALL")
	if st := plan("EXECUTE rd"); !opaque(st) {
		t.Errorf("EXECUTE after DISCARD ALL: %v %v", st.Class, st.Flags)
	}
}
