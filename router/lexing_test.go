package router

import (
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/txlane/txlane/policy"
)

// TestParseBackslashStrings checks that the second reading is PostgreSQL's
// with standard_conforming_strings off: a backslash escapes the quote, so the
// INSERT is a statement of its own.
func TestParseBackslashStrings(t *testing.T) {
	sql := `SELECT '\' AS a, ' ; INSERT INTO t VALUES (1); --' AS b`
	off, err := parseBackslashStrings(sql)
	if err != nil {
		t.Fatal(err)
	}
	on, err := pg.Parse(sql)
	if err != nil {
		t.Fatal(err)
	}
	if len(off.Stmts) != 2 || off.Stmts[1].Stmt.GetInsertStmt() == nil || len(on.Stmts) != 1 {
		t.Errorf("off: %d statements (%v), on: %d; want 2 (SELECT, INSERT) and 1", len(off.Stmts), off.Stmts, len(on.Stmts))
	}
	if _, err := parseBackslashStrings(`SELECT '\'`); err == nil {
		t.Error(`SELECT '\' parsed with standard_conforming_strings off (an unterminated string)`)
	}
}

// TestBackslashTextsClassifiedForEverySession checks that a text with a
// backslash gets one classification that holds whatever the session's
// standard_conforming_strings and client_encoding are: the parser's when both
// readings agree, opaque (a write that may reach anything) otherwise.
func TestBackslashTextsClassifiedForEverySession(t *testing.T) {
	c := NewClassifier(Config{})
	for _, tc := range []struct {
		sql    string
		opaque bool
	}{
		{`SELECT '\' AS a, ' ; INSERT INTO t VALUES (1); --' AS b`, true},
		{`SELECT id FROM items WHERE note = '\' OR note = ' ; DELETE FROM items; --'`, true},
		{`SELECT * FROM items WHERE title ~ '\d+' AND note LIKE 'a\_b'`, false},
		{`SELECT * FROM items WHERE title = E'it\'s'`, false},
		{`SELECT $$\$$ FROM items`, false},
		{"SELECT id FROM items WHERE note <> E'\x95\\'; DELETE FROM items; --'", true}, // SJIS: 0x95 0x5C is one character
		{"SELECT id FROM items WHERE note <> E'caf\xc3\xa9\\n'", true},                 // UTF-8, but an SJIS reader may differ
		{`SET txlane.unit = 'u\1'`, true},                                              // the value differs
	} {
		st := c.Classify(tc.sql)
		isOpaque := st.Class == policy.Unknown && st.Flags.Has(policy.FlagWritesUnknown)
		if isOpaque != tc.opaque {
			t.Errorf("%q: %v %v (%s), want opaque %v", tc.sql, st.Class, st.Flags.Names(), st.Reason, tc.opaque)
		}
		if !tc.opaque && st.Class != policy.Read && st.Class != policy.Session {
			t.Errorf("%q: %v, want the parser's reading", tc.sql, st.Class)
		}
	}
}
