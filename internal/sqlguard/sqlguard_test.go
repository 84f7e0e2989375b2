package sqlguard

import (
	"slices"
	"testing"
)

func TestUnqualified(t *testing.T) {
	cases := []struct {
		sql  string
		want []string
	}{
		{"SELECT 1", nil},
		{"SELECT a = b", []string{"operator ="}},
		{"SELECT a OPERATOR(pg_catalog.=) b, a OPERATOR(evil.=) b", []string{"operator evil.="}},
		{"SELECT x IN (1, 2), x NOT IN (1), x LIKE 'a', x IS DISTINCT FROM y, NULLIF(x, y), x BETWEEN 1 AND 2",
			[]string{"IN (operator =)", "IN (operator <>)", "LIKE (operator ~~)", "DISTINCT (operator =)", "NULLIF (operator =)", "BETWEEN (operator BETWEEN)"}},
		{"SELECT x OPERATOR(pg_catalog.=) ANY (SELECT 1), x IN (SELECT 1), x = ANY (SELECT 1)", []string{"IN subquery (operator =)", "subquery operator ="}},
		{"SELECT CASE x WHEN 1 THEN 2 END, CASE WHEN true THEN 1 END", []string{"CASE x WHEN (operator =)"}},
		{"SELECT count(*), pg_catalog.count(*), EXTRACT(epoch FROM now())", []string{"function count", "function now"}},
		{"SELECT 1::text, 1::pg_catalog.text, 1::int, 1::boolean, 'x'::pg_catalog.\"char\"", []string{"type text"}},
		{"SELECT 'pg_class'::pg_catalog.regclass, 'pg_catalog.pg_class'::pg_catalog.regclass, 'pg_catalog'::pg_catalog.regnamespace",
			[]string{`pg_catalog.regclass literal "pg_class"`}},
		{"WITH c AS (SELECT 1) SELECT * FROM c, pg_catalog.pg_class, t", []string{"relation t"}},
		{"SELECT * FROM pg_catalog.pg_class ORDER BY relname USING <", []string{"ORDER BY USING <"}},
		{"SELECT current_user, session_user, COALESCE(1, 2), GREATEST(1, 2)", nil},
		{"DO $x$ DECLARE s name; n pg_catalog.int8; BEGIN SELECT 1 INTO n FROM pg_catalog.pg_class WHERE relname = 'x'; " +
			"IF s IS NOT NULL THEN PERFORM lower(s); END IF; RAISE EXCEPTION 'e' USING ERRCODE = 'XX000'; END $x$",
			[]string{"PL/pgSQL type name", "operator =", "function lower"}},
	}
	for _, tc := range cases {
		got, err := Unqualified(tc.sql)
		if err != nil {
			t.Fatalf("%s: %v", tc.sql, err)
		}
		// NOTE: compared as sets: the order of findings is no contract (a DO
		// block's PL/pgSQL tree is walked from a decoded JSON map).
		got, want := slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(tc.want))
		if !slices.Equal(got, want) {
			t.Errorf("%s:\n got %q\nwant %q", tc.sql, got, tc.want)
		}
	}
	if _, err := Unqualified("SELECT FROM WHERE"); err == nil {
		t.Error("a text that does not parse: no error")
	}
}
