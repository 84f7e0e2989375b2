package policy

import (
	"slices"
	"testing"
)

// TestReachedWrites: the tables a write reaches count for read-your-writes,
// a write that reaches unknown tables counts as writing everything, and the
// statement's Writes stay what it names.
func TestReachedWrites(t *testing.T) {
	rules, err := NewRules(RulesConfig{VectorTables: []string{"public.items", "public.chi"}})
	if err != nil {
		t.Fatal(err)
	}
	read := func(tbl string) *Statement { return &Statement{Class: Read, Reads: []Table{{Name: tbl}}} }
	begin := &Statement{Class: TxControl, Tx: TxCommand{Kind: TxBegin}}

	var s TxState
	s.Apply(begin)
	s.Ready(TxInBlock)
	del := &Statement{Class: Write, Flags: FlagWriteCommand, Writes: []Table{{Name: "par"}},
		WritesReached: []Table{{Schema: "public", Name: "chi"}}}
	s.Apply(del)
	s.Ready(TxInBlock)
	if d := Decide(&s, read("chi"), rules, nil); d.Reason != ReasonReadYourWrites {
		t.Errorf("read of a table a cascade wrote: %v", d)
	}
	if d := Decide(&s, read("items"), rules, nil); d.Lane != Vector {
		t.Errorf("read of a table nothing reached: %v", d)
	}
	if !slices.Equal(del.Writes, []Table{{Name: "par"}}) {
		t.Errorf("Writes changed: %v", del.Writes)
	}

	s.Apply(&Statement{Class: Write, Flags: FlagWriteCommand | FlagReachesUnknown, Writes: []Table{{Name: "other"}}})
	s.Ready(TxInBlock)
	if !s.WroteUnknown {
		t.Fatal("a write that fired a user trigger did not count as an opaque write")
	}
	if d := Decide(&s, read("items"), rules, nil); d.Reason != ReasonReadYourWrites {
		t.Errorf("after a trigger: %v", d)
	}
	s.Apply(&Statement{Class: TxControl, Tx: TxCommand{Kind: TxRollback}})
	s.Ready(TxIdle)
	if s.WroteUnknown || len(s.Wrote) != 0 {
		t.Errorf("rollback kept %v %v", s.WroteUnknown, s.Wrote)
	}
}

// TestReachedReads: what a read reads through views counts, and a read with
// an opaque STABLE function stays once the transaction wrote anything.
func TestReachedReads(t *testing.T) {
	rules, err := NewRules(RulesConfig{VectorTables: []string{"v_plain", "items"}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := ParseStateSpec("in_tx_wrote:public.items")
	if err != nil {
		t.Fatal(err)
	}
	view := &Statement{Class: Read, Reads: []Table{{Name: "v_plain"}}, ReadsReached: []Table{{Schema: "public", Name: "items"}}}
	if d := Decide(&st, view, rules, nil); d.Reason != ReasonReadYourWrites {
		t.Errorf("view over a written table: %v", d)
	}
	st2, _ := ParseStateSpec("in_tx_wrote:audit")
	opaque := &Statement{Class: Read, Reads: []Table{{Name: "items"}}, Flags: FlagReadsUnknown}
	if d := Decide(&st2, opaque, rules, nil); d.Reason != ReasonReadYourWrites {
		t.Errorf("opaque STABLE function after a write: %v", d)
	}
	st3, _ := ParseStateSpec("in_tx_read_committed")
	if d := Decide(&st3, opaque, rules, nil); d.Lane != Vector {
		t.Errorf("opaque STABLE function before any write: %v", d)
	}
	unproven := &Statement{Class: Write, Reads: []Table{{Name: "items"}}, Flags: FlagUnproven | FlagWritesUnknown}
	if d := Decide(nil, unproven, rules, nil); d.Reason != ReasonUnproven {
		t.Errorf("unproven: %v", d)
	}
}

// TestMergeReached: a multi-statement text carries what its parts reach.
func TestMergeReached(t *testing.T) {
	m := Merge([]Statement{
		{Class: Write, WritesReached: []Table{{Name: "a"}}, Hidden: []string{"x"}},
		{Class: Read, ReadsReached: []Table{{Name: "b"}}, WritesReached: []Table{{Name: "a"}}, Hidden: []string{"y"}},
	})
	if !slices.Equal(m.WritesReached, []Table{{Name: "a"}}) || !slices.Equal(m.ReadsReached, []Table{{Name: "b"}}) ||
		!slices.Equal(m.Hidden, []string{"x", "y"}) {
		t.Errorf("merged: %+v", m)
	}
}
