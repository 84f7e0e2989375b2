package router

import "testing"

func TestPrepareText(t *testing.T) {
	for _, tc := range []struct {
		query, name, want string
		ok                bool
	}{
		{"PREPARE p AS SELECT 1", "p", "PREPARE p AS SELECT 1", true},
		{"SELECT 1; PREPARE pp(int) AS SELECT $1 + 1; SELECT 2", "pp", "PREPARE pp(int) AS SELECT $1 + 1", true},
		{`PREPARE "Mixed" AS SELECT 'a;b'`, "Mixed", `PREPARE "Mixed" AS SELECT 'a;b'`, true},
		{"PREPARE Folded AS SELECT 1", "folded", "PREPARE Folded AS SELECT 1", true},
		{"PREPARE a AS SELECT 1; PREPARE b AS SELECT 2", "b", "PREPARE b AS SELECT 2", true},
		{"SELECT 1", "p", "", false},
		{"PREPARE p AS SELECT (", "p", "", false},
	} {
		got, ok := PrepareText(tc.query, tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("PrepareText(%q, %q) = %q, %v; want %q, %v", tc.query, tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
