package policy

import (
	"reflect"
	"testing"
)

func TestMayWriteAndWrittenTables(t *testing.T) {
	a, b := Table{Schema: "audit", Name: "log"}, Table{Name: "items"}
	read := &Statement{Class: Read, Reads: []Table{b}}
	insert := &Statement{Class: Write, Writes: []Table{a}}
	update := &Statement{Class: Write, Writes: []Table{b, a}}
	nextval := &Statement{Class: Read, Flags: FlagWritingFunction, Writes: []Table{{Name: "seq"}}}
	unknownFn := &Statement{Class: Read, Flags: FlagWritesUnknown}
	unparsed := &Statement{Class: Unknown}
	for _, tc := range []struct {
		st   *Statement
		want bool
	}{
		{read, false}, {insert, true}, {nextval, true}, {unknownFn, true}, {unparsed, true},
		{&Statement{Class: DDL}, true}, {&Statement{Class: Read, Flags: FlagSelectInto}, true},
		{&Statement{Class: Read, Flags: FlagDataModifyingCTE}, true}, {&Statement{Class: Session}, false},
	} {
		if got := tc.st.MayWrite(); got != tc.want {
			t.Errorf("MayWrite(%+v) = %v, want %v", tc.st, got, tc.want)
		}
	}
	for _, tc := range []struct {
		stmts []*Statement
		want  []Table
	}{
		{[]*Statement{read}, nil},
		{[]*Statement{read, insert, update}, []Table{a, b}},
		{[]*Statement{nextval}, []Table{{Name: "seq"}}},
		{[]*Statement{insert, unknownFn}, nil},
		{[]*Statement{insert, unparsed}, nil},
		{[]*Statement{{Class: Write}}, nil}, // a write naming no table
	} {
		if got := WrittenTables(tc.stmts); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("WrittenTables = %v, want %v", got, tc.want)
		}
	}
}
