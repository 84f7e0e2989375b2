package policy

import (
	"testing"
)

func mustRules(t testing.TB, cfg RulesConfig) *Rules {
	t.Helper()
	r, err := NewRules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func tbl(s string) Table {
	t, err := ParseTable(s)
	if err != nil {
		panic(err)
	}
	return t
}

func read(tables ...string) *Statement {
	s := &Statement{Class: Read, Command: "SELECT"}
	for _, t := range tables {
		s.Reads = append(s.Reads, tbl(t))
	}
	return s
}

func with(s *Statement, f func(*Statement)) *Statement { f(s); return s }

func state(t testing.TB, spec string) *TxState {
	t.Helper()
	s, err := ParseStateSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	return &s
}

func multi(parts ...*Statement) *Statement {
	ps := make([]Statement, len(parts))
	for i, p := range parts {
		ps[i] = *p
	}
	m := Merge(ps)
	return &m
}

// TestDecide walks the one-connection routing table (docs/semantics.md) row by row.
func TestDecide(t *testing.T) {
	rules := mustRules(t, RulesConfig{VectorTables: []string{"public.items", `"My Schema"."Vec"`, "chunks"}})
	anyRules := mustRules(t, RulesConfig{VectorTables: []string{"public.items"}, AfterWrite: "any"})

	vec := read("items")
	write := &Statement{Class: Write, Command: "UPDATE", Flags: FlagWriteCommand, Writes: []Table{tbl("items")}}

	cases := []struct {
		name   string
		state  string
		stmt   *Statement
		rules  *Rules
		path   []string
		want   Lane
		reason Reason
	}{
		// Row: anything that is not a pure read of at least one vector table.
		{"plain read", "idle", read("users"), rules, nil, Primary, ReasonNotVectorRead},
		{"read of nothing", "idle", read(), rules, nil, Primary, ReasonNotVectorRead},
		{"write of a vector table", "idle", write, rules, nil, Primary, ReasonNotReadOnly},
		{"DDL", "idle", &Statement{Class: DDL}, rules, nil, Primary, ReasonNotReadOnly},
		{"utility", "idle", &Statement{Class: Utility}, rules, nil, Primary, ReasonUtility},
		{"nil rules: no vector tables", "idle", vec, nil, nil, Primary, ReasonNotVectorRead},

		// Row: cannot be parsed or proven read-only.
		{"unknown", "idle", &Statement{Class: Unknown, Reason: "syntax error"}, rules, nil, Primary, ReasonUnparsed},
		{"zero statement is unknown", "idle", &Statement{}, rules, nil, Primary, ReasonUnparsed},
		{"nil statement", "idle", nil, rules, nil, Primary, ReasonUnparsed},
		{"out-of-range class", "idle", &Statement{Class: Class(200)}, rules, nil, Primary, ReasonUnparsed},

		// Row: pure vector read, idle.
		{"vector read idle", "idle", vec, rules, nil, Vector, ReasonVectorReadIdle},
		{"zero-value state is idle", "", vec, rules, nil, Vector, ReasonVectorReadIdle},
		{"join of vector and plain tables", "idle", read("items", "users"), rules, nil, Vector, ReasonVectorReadIdle},
		{"qualified vector read", "idle", read("public.items"), rules, nil, Vector, ReasonVectorReadIdle},
		{"quoted vector table", "idle", read(`"My Schema"."Vec"`), rules, nil, Vector, ReasonVectorReadIdle},
		{"any-schema vector table", "idle", read("x.chunks"), rules, nil, Vector, ReasonVectorReadIdle},
		{"not on the search path", "idle", read("items"), rules, []string{"app"}, Primary, ReasonNotVectorRead},

		// Row: pure vector read inside T, READ COMMITTED, no write of touched tables.
		{"in tx read committed", "in_tx_read_committed", vec, rules, nil, Vector, ReasonVectorReadInTx},
		{"in tx read uncommitted", "in_tx_read_uncommitted", vec, rules, nil, Vector, ReasonVectorReadInTx},
		{"in tx after writing another table", "in_tx_wrote:orders", vec, rules, nil, Vector, ReasonVectorReadInTx},
		{"other schema's table of the same name", "in_tx_wrote:archive.items", read("public.items"), rules, nil, Vector, ReasonVectorReadInTx},

		// Row: read inside T after the transaction wrote a table it touches.
		{"read your writes", "in_tx_wrote:items", vec, rules, nil, Primary, ReasonReadYourWrites},
		{"read your writes, qualified write", "in_tx_wrote:public.items", vec, rules, nil, Primary, ReasonReadYourWrites},
		{"read your writes, joined plain table", "in_tx_wrote:users", read("items", "users"), rules, nil, Primary, ReasonReadYourWrites},
		{"opaque write", "in_tx_read_committed,wrote_unknown", vec, rules, nil, Primary, ReasonReadYourWrites},
		{"DDL in the transaction", "in_tx_read_committed,ddl", vec, rules, nil, Primary, ReasonReadYourWrites},
		{"after_write=any", "in_tx_wrote:orders", vec, anyRules, nil, Primary, ReasonAfterWriteAny},
		{"after_write=any, nothing written", "in_tx_read_committed", vec, anyRules, nil, Vector, ReasonVectorReadInTx},

		// Row: REPEATABLE READ / SERIALIZABLE.
		{"repeatable read", "in_tx_repeatable_read", vec, rules, nil, Primary, ReasonIsolationSnapshot},
		{"serializable", "in_tx_serializable", vec, rules, nil, Primary, ReasonIsolationSnapshot},

		// Row: locking reads, data-modifying CTE, SELECT INTO, writing functions.
		{"locking read", "idle", with(read("items"), func(s *Statement) { s.Class, s.Flags = LockingRead, FlagLocking }), rules, nil, Primary, ReasonLockingRead},
		{"data-modifying CTE", "idle", with(read("items"), func(s *Statement) {
			s.Class, s.Flags, s.Writes = Write, FlagDataModifyingCTE, []Table{tbl("counters")}
		}), rules, nil, Primary, ReasonDataModifyingCTE},
		{"select into", "idle", with(read("items"), func(s *Statement) {
			s.Class, s.Flags, s.Writes = Write, FlagSelectInto, []Table{tbl("copy")}
		}), rules, nil, Primary, ReasonSelectInto},
		{"writing function", "idle", with(read("items"), func(s *Statement) {
			s.Class, s.Flags, s.Writes = Write, FlagWritingFunction, []Table{tbl("s")}
		}), rules, nil, Primary, ReasonWritingFunction},
		{"writing command wins over its functions", "idle", with(read("items"), func(s *Statement) {
			s.Class, s.Flags = Write, FlagWriteCommand|FlagWritingFunction
		}), rules, nil, Primary, ReasonNotReadOnly},
		{"write without a named cause", "idle", with(read("items"), func(s *Statement) {
			s.Class, s.Writes = Write, []Table{tbl("t")}
		}), rules, nil, Primary, ReasonNotReadOnly},

		// Row: cursors, LISTEN, SQL-level PREPARE/EXECUTE.
		{"cursor", "in_tx_read_committed", &Statement{Class: Utility, Flags: FlagCursor, Reads: []Table{tbl("items")}}, rules, nil, Primary, ReasonCursor},
		{"listen", "idle", &Statement{Class: Utility, Flags: FlagListen}, rules, nil, Primary, ReasonListen},
		{"sql prepare", "idle", &Statement{Class: Utility, Flags: FlagSQLPrepare}, rules, nil, Primary, ReasonSQLPrepare},

		// Row: failed transaction.
		{"failed", "failed", vec, rules, nil, Primary, ReasonTxFailed},
		{"failed, rollback", "failed", &Statement{Class: TxControl, Tx: TxCommand{Kind: TxRollback}}, rules, nil, Primary, ReasonTxFailed},

		// Transaction control and session state.
		{"tx control", "idle", &Statement{Class: TxControl, Tx: TxCommand{Kind: TxBegin}}, rules, nil, Primary, ReasonTxControl},
		{"session", "idle", &Statement{Class: Session}, rules, nil, Primary, ReasonSession},
		{"read that may change the session", "idle", with(read("items"), func(s *Statement) { s.Flags = FlagMayChangeSession }), rules, nil, Primary, ReasonSession},
		{"read that may open a dblink connection", "idle", with(read("items"), func(s *Statement) { s.Flags = FlagDblink | FlagReadsUnknown }), rules, nil, Primary, ReasonSession},

		// Temporary tables live on the client's own backend.
		{"temp table joined", "temp:tmp", read("items", "tmp"), rules, nil, Primary, ReasonTempTable},
		{"pg_temp qualified", "idle", read("items", "pg_temp.x"), rules, nil, Primary, ReasonTempTable},
		{"temp shadows vector name", "temp:items", read("items"), rules, nil, Primary, ReasonTempTable},
		{"temp does not shadow a qualified name", "temp:items", read("public.items"), rules, nil, Vector, ReasonVectorReadIdle},

		// Values tied to the transaction or the backend.
		{"tx dependent idle", "idle", with(read("items"), func(s *Statement) { s.Flags = FlagTxDependent }), rules, nil, Vector, ReasonVectorReadIdle},
		{"tx dependent in tx", "in_tx_read_committed", with(read("items"), func(s *Statement) { s.Flags = FlagTxDependent }), rules, nil, Primary, ReasonTxDependent},
		{"backend dependent", "idle", with(read("items"), func(s *Statement) { s.Flags = FlagBackendDependent }), rules, nil, Primary, ReasonBackendDependent},

		// Multi-statement texts: one implicit transaction, never split.
		{"multi: all vector", "idle", multi(vec, read("public.items")), rules, nil, Vector, ReasonVectorReadIdle},
		{"multi: all vector in tx", "in_tx_read_committed", multi(vec, vec), rules, nil, Vector, ReasonVectorReadInTx},
		{"multi: vector and plain", "idle", multi(vec, read("users")), rules, nil, Primary, ReasonMultiStatementTx},
		{"multi: vector and write", "idle", multi(write, vec), rules, nil, Primary, ReasonMultiStatementTx},
		{"multi: nothing vector", "idle", multi(read("users"), write), rules, nil, Primary, ReasonNotVectorRead},
		{"multi: failed", "failed", multi(vec, vec), rules, nil, Primary, ReasonTxFailed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var st *TxState
			if c.state != "" {
				st = state(t, c.state)
			}
			d := Decide(st, c.stmt, c.rules, c.path)
			if d.Lane != c.want || d.Reason != c.reason {
				t.Errorf("Decide = %s, want %s/%s", d, c.want, c.reason)
			}
		})
	}
}

func TestDecideBatch(t *testing.T) {
	rules := mustRules(t, RulesConfig{VectorTables: []string{"items"}})
	vec := read("items")
	write := &Statement{Class: Write, Flags: FlagWriteCommand, Writes: []Table{tbl("clicks")}}
	begin := &Statement{Class: TxControl, Tx: TxCommand{Kind: TxBegin}}
	cases := []struct {
		name   string
		state  string
		stmts  []*Statement
		want   Lane
		reason Reason
	}{
		{"all vector", "idle", []*Statement{vec, vec}, Vector, ReasonVectorReadIdle},
		{"all vector in tx", "in_tx_read_committed", []*Statement{vec}, Vector, ReasonVectorReadInTx},
		{"vector and write", "idle", []*Statement{vec, write}, Primary, ReasonMultiStatementTx},
		{"begin and vector", "idle", []*Statement{begin, vec}, Primary, ReasonMultiStatementTx},
		{"write and plain read", "idle", []*Statement{write, read("users")}, Primary, ReasonNotReadOnly},
		{"nil statement", "idle", []*Statement{vec, nil}, Primary, ReasonMultiStatementTx},
		{"empty", "idle", nil, Primary, ReasonEmpty},
		{"repeatable read", "in_tx_repeatable_read", []*Statement{vec, vec}, Primary, ReasonIsolationSnapshot},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := DecideBatch(state(t, c.state), c.stmts, rules, nil)
			if d.Lane != c.want || d.Reason != c.reason {
				t.Errorf("DecideBatch = %s, want %s/%s", d, c.want, c.reason)
			}
		})
	}
}

func TestOnVectorUnavailable(t *testing.T) {
	p := mustRules(t, RulesConfig{})
	if d, ok := p.OnVectorUnavailable(); !ok || d.Lane != Primary || d.Reason != ReasonVectorUnavailable {
		t.Errorf("primary fallback: %s %v", d, ok)
	}
	e := mustRules(t, RulesConfig{OnUnavailable: "error"})
	if _, ok := e.OnVectorUnavailable(); ok {
		t.Error("on_unavailable=error must not fall back")
	}
}

func TestReasonNames(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range AllReasons() {
		s := r.String()
		if s == "" || seen[s] {
			t.Errorf("reason %d: name %q empty or duplicate", r, s)
		}
		seen[s] = true
		for _, c := range s {
			if (c < 'a' || c > 'z') && c != '_' {
				t.Errorf("reason %q is not snake_case", s)
				break
			}
		}
		if back, ok := ParseReason(s); !ok || back != r {
			t.Errorf("ParseReason(%q) = %v, %v", s, back, ok)
		}
	}
	if Reason(250).String() != "reason_250" {
		t.Error(Reason(250).String())
	}
}

// TestDecideDoesNotAllocate pins the hot path: Decide runs for every request.
func TestDecideDoesNotAllocate(t *testing.T) {
	rules := mustRules(t, RulesConfig{VectorTables: []string{"public.items"}})
	st := state(t, "in_tx_wrote:orders")
	stmt := read("items", "users")
	m := multi(stmt, stmt)
	path := []string{"$user", "public"}
	if n := testing.AllocsPerRun(100, func() {
		Decide(st, stmt, rules, path)
		Decide(st, m, rules, path)
	}); n != 0 {
		t.Errorf("Decide allocates %v times", n)
	}
}

func BenchmarkDecide(b *testing.B) {
	rules := mustRules(b, RulesConfig{VectorTables: []string{"public.items", "public.documents", "search.embeddings"}})
	st := state(b, "in_tx_wrote:orders")
	stmt := read("items", "users")
	path := []string{"$user", "public"}
	b.ReportAllocs()
	for b.Loop() {
		d := Decide(st, stmt, rules, path)
		if d.Lane != Vector {
			b.Fatal(d)
		}
	}
}
