package policy

import (
	"strconv"
	"testing"
)

func begin(iso Isolation) *Statement {
	return &Statement{Class: TxControl, Tx: TxCommand{Kind: TxBegin, Intent: TxIntent{Isolation: iso}}}
}

func txStmt(k TxKind) *Statement { return &Statement{Class: TxControl, Tx: TxCommand{Kind: k}} }

func set(name, value string, local bool) *Statement {
	return &Statement{Class: Session, Settings: []Setting{{Name: name, Value: value, Local: local}}}
}

func upd(table string) *Statement {
	return &Statement{Class: Write, Flags: FlagWriteCommand, Writes: []Table{tbl(table)}}
}

// step is one request: statements that completed, then the ReadyForQuery byte.
type step struct {
	stmts  []*Statement
	status TxStatus
}

func run(s *TxState, steps ...step) {
	for _, st := range steps {
		for _, x := range st.stmts {
			s.Apply(x)
		}
		s.Ready(st.status)
	}
}

func TestTxStateLifecycle(t *testing.T) {
	var s TxState
	run(&s, step{[]*Statement{begin(IsolationDefault)}, TxInBlock})
	if s.Status != TxInBlock || s.Isolation.Snapshot() {
		t.Fatalf("after BEGIN: %+v", s)
	}
	run(&s, step{[]*Statement{upd("items")}, TxInBlock})
	if !s.WroteAny || !s.WroteTable(tbl("public.items")) || s.WroteTable(tbl("users")) {
		t.Fatalf("after UPDATE: %+v", s)
	}
	run(&s, step{[]*Statement{txStmt(TxCommit)}, TxIdle})
	if s.Status != TxIdle || s.WroteAny || len(s.Wrote) != 0 {
		t.Fatalf("after COMMIT: %+v", s)
	}
	// Autocommit writes leave nothing behind.
	run(&s, step{[]*Statement{upd("items")}, TxIdle})
	if s.WroteAny {
		t.Fatalf("autocommit write tracked: %+v", s)
	}
}

func TestTxStateIsolationIntent(t *testing.T) {
	var s TxState
	run(&s, step{[]*Statement{begin(RepeatableRead)}, TxInBlock})
	if s.Isolation != RepeatableRead {
		t.Fatalf("BEGIN ISOLATION LEVEL REPEATABLE READ: %v", s.Isolation)
	}
	run(&s, step{[]*Statement{txStmt(TxRollback)}, TxIdle})

	// SET TRANSACTION after BEGIN.
	setTx := &Statement{Class: TxControl, Tx: TxCommand{Kind: TxSetTransaction, Intent: TxIntent{Isolation: Serializable, ReadOnly: OptTrue}}}
	run(&s, step{[]*Statement{begin(IsolationDefault), setTx}, TxInBlock})
	if s.Isolation != Serializable || !s.ReadOnly {
		t.Fatalf("SET TRANSACTION: %+v", s)
	}
	run(&s, step{[]*Statement{txStmt(TxCommit)}, TxIdle})

	// SET TRANSACTION outside a block has no effect.
	run(&s, step{[]*Statement{setTx}, TxIdle}, step{[]*Statement{begin(IsolationDefault)}, TxInBlock})
	if s.Isolation.Snapshot() {
		t.Fatalf("SET TRANSACTION outside a block leaked: %v", s.Isolation)
	}
	run(&s, step{[]*Statement{txStmt(TxCommit)}, TxIdle})

	// SET transaction_isolation inside a block = SET TRANSACTION.
	run(&s, step{[]*Statement{begin(IsolationDefault), set("transaction_isolation", "repeatable read", false)}, TxInBlock})
	if s.Isolation != RepeatableRead {
		t.Fatalf("SET transaction_isolation: %v", s.Isolation)
	}
}

func TestTxStateSessionDefaults(t *testing.T) {
	var s TxState
	// Outside a block: immediate.
	run(&s, step{[]*Statement{set("default_transaction_isolation", "serializable", false)}, TxIdle})
	if s.Defaults.Isolation != Serializable {
		t.Fatalf("default not applied: %+v", s.Defaults)
	}
	run(&s, step{[]*Statement{begin(IsolationDefault)}, TxInBlock})
	if s.Isolation != Serializable {
		t.Fatalf("BEGIN did not take the session default: %v", s.Isolation)
	}
	// BEGIN's own level wins over the default.
	run(&s, step{[]*Statement{txStmt(TxCommit)}, TxIdle}, step{[]*Statement{begin(ReadCommitted)}, TxInBlock})
	if s.Isolation != ReadCommitted {
		t.Fatalf("BEGIN ISOLATION LEVEL READ COMMITTED: %v", s.Isolation)
	}
	// Inside a block: only at commit; a rollback undoes it.
	run(&s, step{[]*Statement{&Statement{Class: Session, Settings: []Setting{{Name: "default_transaction_isolation", Reset: true}}}}, TxInBlock})
	if s.Defaults.Isolation != Serializable {
		t.Fatalf("in-block RESET applied before commit: %+v", s.Defaults)
	}
	run(&s, step{[]*Statement{txStmt(TxRollback)}, TxIdle})
	if s.Defaults.Isolation != Serializable {
		t.Fatalf("rolled-back RESET applied: %+v", s.Defaults)
	}
	run(&s,
		step{[]*Statement{begin(IsolationDefault), &Statement{Class: Session, Settings: []Setting{{Name: "default_transaction_isolation", Reset: true}}}}, TxInBlock},
		step{[]*Statement{txStmt(TxCommit)}, TxIdle})
	if s.Defaults.Isolation != IsolationDefault {
		t.Fatalf("committed RESET not applied: %+v", s.Defaults)
	}
	// SET LOCAL of a default affects nothing.
	run(&s, step{[]*Statement{begin(IsolationDefault), set("default_transaction_isolation", "serializable", true)}, TxInBlock},
		step{[]*Statement{txStmt(TxCommit)}, TxIdle})
	if s.Defaults.Isolation != IsolationDefault {
		t.Fatalf("SET LOCAL default applied: %+v", s.Defaults)
	}
	// ROLLBACK TO SAVEPOINT makes a pending change uncertain: the stricter
	// level is kept.
	run(&s,
		step{[]*Statement{begin(IsolationDefault), txStmt(TxSavepoint), set("default_transaction_isolation", "repeatable read", false)}, TxInBlock},
		step{[]*Statement{txStmt(TxRollbackTo)}, TxInBlock},
		step{[]*Statement{txStmt(TxCommit)}, TxIdle})
	if s.Defaults.Isolation != RepeatableRead {
		t.Fatalf("uncertain pending default: %+v", s.Defaults)
	}
	// RESET ALL goes back to ResetTo; DISCARD ALL too.
	s.ResetTo = TxDefaults{Isolation: ReadCommitted}
	run(&s, step{[]*Statement{{Class: Session, Settings: []Setting{{ResetAll: true}}}}, TxIdle})
	if s.Defaults.Isolation != ReadCommitted {
		t.Fatalf("RESET ALL: %+v", s.Defaults)
	}
	// SET SESSION CHARACTERISTICS arrives as default_transaction_* settings.
	run(&s, step{[]*Statement{set("default_transaction_read_only", "on", false)}, TxIdle},
		step{[]*Statement{begin(IsolationDefault)}, TxInBlock})
	if !s.ReadOnly {
		t.Fatalf("default read only: %+v", s)
	}
	run(&s, step{[]*Statement{txStmt(TxCommit), {Class: Utility, Discard: DiscardAll}}, TxIdle})
	if s.Defaults != s.ResetTo {
		t.Fatalf("DISCARD ALL: %+v", s.Defaults)
	}
}

func TestTxStateCommitInFailedTransaction(t *testing.T) {
	var s TxState
	run(&s, step{[]*Statement{begin(IsolationDefault), set("default_transaction_isolation", "serializable", false)}, TxInBlock})
	s.Ready(TxFailed)
	// COMMIT of a failed transaction is a ROLLBACK: the SET is undone.
	run(&s, step{[]*Statement{txStmt(TxCommit)}, TxIdle})
	if s.Defaults.Isolation != IsolationDefault {
		t.Fatalf("COMMIT of failed transaction applied SET: %+v", s.Defaults)
	}
}

func TestTxStateChain(t *testing.T) {
	var s TxState
	run(&s, step{[]*Statement{begin(RepeatableRead), upd("items")}, TxInBlock})
	chain := &Statement{Class: TxControl, Tx: TxCommand{Kind: TxCommit, Chain: true}}
	run(&s, step{[]*Statement{chain}, TxInBlock})
	if s.Status != TxInBlock || s.Isolation != RepeatableRead || s.WroteAny {
		t.Fatalf("COMMIT AND CHAIN: %+v", s)
	}
}

func TestTxStateMultiStatement(t *testing.T) {
	var s TxState
	m := multi(begin(IsolationDefault), upd("items"))
	run(&s, step{[]*Statement{m}, TxInBlock})
	if s.Status != TxInBlock || !s.WroteTable(tbl("items")) {
		t.Fatalf("BEGIN; UPDATE: %+v", s)
	}
	run(&s, step{[]*Statement{multi(upd("users"), txStmt(TxCommit))}, TxIdle})
	if s.WroteAny {
		t.Fatalf("UPDATE; COMMIT: %+v", s)
	}
}

func TestTxStateUnknownBegin(t *testing.T) {
	// The server says T but we saw no BEGIN: presume the strictest level.
	var s TxState
	s.Ready(TxInBlock)
	if !s.Isolation.Snapshot() {
		t.Fatalf("unexplained transaction: %+v", s)
	}
	s.Ready(TxIdle)
	if s.Isolation != IsolationDefault {
		t.Fatalf("not reset: %+v", s)
	}
}

func TestTxStateOpaqueAndDDL(t *testing.T) {
	var s TxState
	run(&s, step{[]*Statement{begin(IsolationDefault), {Class: Write, Flags: FlagWritesUnknown}}, TxInBlock})
	if !s.WroteUnknown || !s.WroteTable(tbl("anything")) {
		t.Fatalf("opaque write: %+v", s)
	}
	run(&s, step{[]*Statement{txStmt(TxRollback)}, TxIdle},
		step{[]*Statement{begin(IsolationDefault), {Class: DDL, Writes: []Table{tbl("t")}}}, TxInBlock})
	if !s.SchemaChanged || !s.WroteTable(tbl("other")) {
		t.Fatalf("DDL: %+v", s)
	}
}

func TestTxStateTemp(t *testing.T) {
	var s TxState
	run(&s, step{[]*Statement{{Class: DDL, Temp: []Table{{Name: "tmp"}}}}, TxIdle})
	if !s.IsTemp(tbl("tmp")) || s.IsTemp(tbl("public.tmp")) || !s.IsTemp(tbl("pg_temp.x")) {
		t.Fatalf("temp: %+v", s)
	}
	// Survives transaction end.
	run(&s, step{[]*Statement{begin(IsolationDefault)}, TxInBlock}, step{[]*Statement{txStmt(TxCommit)}, TxIdle})
	if !s.IsTemp(tbl("tmp")) {
		t.Fatal("temp forgotten at transaction end")
	}
	// DISCARD TEMP inside a block could roll back: kept.
	run(&s, step{[]*Statement{begin(IsolationDefault), {Class: Utility, Discard: DiscardTemp}}, TxInBlock},
		step{[]*Statement{txStmt(TxRollback)}, TxIdle})
	if !s.IsTemp(tbl("tmp")) {
		t.Fatal("temp forgotten by in-block DISCARD TEMP")
	}
	run(&s, step{[]*Statement{{Class: Utility, Discard: DiscardTemp}}, TxIdle})
	if s.IsTemp(tbl("tmp")) {
		t.Fatal("DISCARD TEMP ignored")
	}
	// Bounded.
	for i := 0; i < maxTemp+1; i++ {
		s.NoteTemp(Table{Name: "t" + strconv.Itoa(i)})
	}
	if len(s.Temp) != maxTemp || !s.TempOverflow || !s.IsTemp(tbl("anything")) || s.IsTemp(tbl("s.anything")) {
		t.Fatalf("overflow: %d %v", len(s.Temp), s.TempOverflow)
	}
}

func TestParseStateSpec(t *testing.T) {
	for _, spec := range []string{
		"idle", "in_tx_read_committed", "in_tx_read_uncommitted", "in_tx_repeatable_read",
		"in_tx_serializable", "failed", "in_tx_read_committed,wrote:items", "in_tx_read_committed,wrote:\"My Schema\".\"Vec\"",
		"in_tx_read_committed,wrote_unknown,ddl", "idle,temp:tmp",
	} {
		s, err := ParseStateSpec(spec)
		if err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
		if got := s.Spec(); got != spec {
			t.Errorf("Spec(ParseStateSpec(%q)) = %q", spec, got)
		}
	}
	s, err := ParseStateSpec("in_tx_wrote:public.items")
	if err != nil || s.Status != TxInBlock || !s.WroteTable(tbl("items")) {
		t.Errorf("in_tx_wrote: %+v %v", s, err)
	}
	for _, bad := range []string{"bogus", "wrote", "temp", "wrote:\"x", "in_tx_wrote:"} {
		if _, err := ParseStateSpec(bad); err == nil {
			t.Errorf("ParseStateSpec(%q): no error", bad)
		}
	}
}

func TestTxStateSetTemp(t *testing.T) {
	var s TxState
	s.NoteTemp(tbl("parsed"))
	for i := 0; i < maxTemp+1; i++ {
		s.NoteTemp(Table{Name: "t" + strconv.Itoa(i)})
	}
	// The server's list replaces what the parser noted, overflow included.
	s.SetTemp([]string{"from_do", "Mixed Case"}, false)
	if !s.IsTemp(tbl("from_do")) || !s.IsTemp(Table{Name: "Mixed Case"}) || s.IsTemp(tbl("parsed")) ||
		s.TempOverflow || s.IsTemp(tbl("anything")) || s.IsTemp(tbl("public.from_do")) {
		t.Fatalf("after SetTemp: %+v", s.Temp)
	}
	// A relation dropped on the server stops shadowing.
	s.SetTemp(nil, false)
	if s.IsTemp(tbl("from_do")) || len(s.Temp) != 0 {
		t.Fatalf("after an empty SetTemp: %+v", s.Temp)
	}
	// A list cut short, or longer than maxTemp, presumes every name temporary.
	s.SetTemp([]string{"a"}, true)
	if !s.TempOverflow || !s.IsTemp(tbl("anything")) {
		t.Fatal("overflow from the server ignored")
	}
	names := make([]string, maxTemp+1)
	for i := range names {
		names[i] = "n" + strconv.Itoa(i)
	}
	s.SetTemp(names, false)
	if !s.TempOverflow || len(s.Temp) != maxTemp {
		t.Fatalf("more than maxTemp names: %d %v", len(s.Temp), s.TempOverflow)
	}
	// Parsed creations after the read still count.
	s.SetTemp(nil, false)
	s.Apply(&Statement{Class: DDL, Temp: []Table{{Name: "later"}}})
	if !s.IsTemp(tbl("later")) {
		t.Fatal("NoteTemp after SetTemp lost")
	}
}
