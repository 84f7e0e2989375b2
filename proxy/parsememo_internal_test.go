package proxy

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// parseBody is the body of a Parse message (after the type and length).
func parseBody(t testing.TB, name, sql string, oids []uint32) []byte {
	t.Helper()
	b, err := (&pgproto3.Parse{Name: name, Query: sql, ParameterOIDs: oids}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b[5:]
}

// TestTextMemoParse pins what the memo decodes against pgproto3's decoder,
// for texts seen before and not, and that a text sent again costs only
// the statement it defines: no copy of the text, no hash.
func TestTextMemoParse(t *testing.T) {
	var m textMemo
	cases := []struct {
		name, sql string
		oids      []uint32
	}{
		{"", "SELECT abalance FROM pgbench_accounts WHERE aid = $1", nil},
		{"P_0", "SELECT $1::int, $2::text", []uint32{23, 25}},
		{"", "SELECT 1", []uint32{}},
	}
	for round := 0; round < 2; round++ { // the second round hits the memo
		for _, c := range cases {
			name, st, ok := m.parse(parseBody(t, c.name, c.sql, c.oids))
			if !ok {
				t.Fatalf("round %d: %q not decoded", round, c.sql)
			}
			if name != c.name || st.sql != c.sql || len(st.paramOIDs) != len(c.oids) || st.key != makeStmtKey(c.sql, c.oids) {
				t.Errorf("round %d: got (%q, %q, %v, %s), want (%q, %q, %v, %s)", round, name, st.sql, st.paramOIDs, st.key,
					c.name, c.sql, c.oids, makeStmtKey(c.sql, c.oids))
			}
			for i := range c.oids {
				if st.paramOIDs[i] != c.oids[i] {
					t.Errorf("round %d: %q: parameter type %d = %d, want %d", round, c.sql, i, st.paramOIDs[i], c.oids[i])
				}
			}
		}
	}
	body := parseBody(t, "P_0", cases[1].sql, cases[1].oids)
	if n := testing.AllocsPerRun(100, func() { m.parse(body) }); n != 1 {
		t.Errorf("a text sent again: %v allocations, want 1 (the statement)", n)
	}
	// More texts than the memo holds: the oldest is forgotten, and still
	// decoded right when it comes back.
	for i := range memoTexts + 1 {
		m.parse(parseBody(t, "", "SELECT "+string(rune('a'+i)), nil))
	}
	if _, st, ok := m.parse(parseBody(t, "", cases[0].sql, nil)); !ok || st.sql != cases[0].sql {
		t.Errorf("a forgotten text came back as %v", st)
	}
}

// TestTextMemoMalformed: a Parse body the protocol does not allow is
// refused (PostgreSQL answers it with 08P01), never read past its end.
func TestTextMemoMalformed(t *testing.T) {
	good := parseBody(t, "s", "SELECT $1", []uint32{23})
	for _, c := range []struct {
		what string
		body []byte
	}{
		{"no name terminator", []byte("s")},
		{"no text terminator", []byte("s\x00SELECT")},
		{"no type count", []byte("s\x00SELECT\x00")},
		{"a type count the body does not hold", append([]byte(nil), good[:len(good)-4]...)},
		{"bytes after the types", append(append([]byte(nil), good...), 0)},
	} {
		var m textMemo
		if _, _, ok := m.parse(c.body); ok {
			t.Errorf("%s: decoded", c.what)
		}
	}
}

// TestTextMemoNames: names come back equal to the bytes, from the memo
// when seen lately (no allocation), and the empty name never allocates.
func TestTextMemoNames(t *testing.T) {
	var m textMemo
	for _, in := range []string{"P_0", "", "portal_1", "P_0"} {
		s, rest, ok := m.cstring([]byte(in + "\x00rest"))
		if !ok || s != in || string(rest) != "rest" {
			t.Errorf("cstring(%q) = %q, %q, %v", in, s, rest, ok)
		}
	}
	b := []byte("P_0\x00")
	if n := testing.AllocsPerRun(100, func() { m.cstring(b) }); n != 0 {
		t.Errorf("a name seen lately: %v allocations, want 0", n)
	}
	if _, _, ok := m.cstring([]byte("no terminator")); ok {
		t.Error("a name without its terminator was decoded")
	}
}
