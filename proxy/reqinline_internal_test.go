package proxy

import "testing"

// TestRequestInlineRoom: a request's first Parse and Bind records and its
// first sent list come from the room inside it, without an allocation, the
// rest from the heap, and each record keeps its value where it was put.
func TestRequestInlineRoom(t *testing.T) {
	in := &(&request{}).inline
	var got []*regChange
	for _, name := range []string{"a", "b", "c"} {
		got = append(got, in.regChange(regChange{name: name}))
	}
	for i, c := range got {
		inside := i < len(in.regs) && c == &in.regs[i]
		if inside != (i < len(in.regs)) || c.name != string(rune('a'+i)) {
			t.Errorf("record %d: %q, in the room %v", i, c.name, inside)
		}
	}
	if n := testing.AllocsPerRun(100, func() { in.nregs = 0; recordSink = in.regChange(regChange{name: "x"}) }); n != 0 {
		t.Errorf("a record with room left: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { in.nportals = 0; portalSink = in.portalChange(portalChange{name: "x"}) }); n != 0 {
		t.Errorf("a portal record with room left: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { in.nregs = len(in.regs); recordSink = in.regChange(regChange{name: "x"}) }); n != 1 {
		t.Errorf("a record past the room: %v allocations, want 1", n)
	}
	sent := in.sentList(5)
	if cap(sent) != len(in.sent) || len(sent) != 0 {
		t.Errorf("first sent list: len %d cap %d, want the room (0, %d)", len(sent), cap(sent), len(in.sent))
	}
	if again := in.sentList(5); &again[:1][0] == &in.sent[0] {
		t.Error("the room was handed out twice")
	}
}

// The records the allocation counts above make are kept here, as the
// sent list keeps them, so that the compiler cannot drop them.
var (
	recordSink *regChange
	portalSink *portalChange
)
