package router

import (
	"strings"
	"testing"
)

func TestExtractUnits(t *testing.T) {
	keys := UnitKeys{"unit", "request_id"}
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	cases := []struct {
		comment, sql string
		units        []string
		stripped     string
	}{
		{"no comment", "SELECT 1", nil, "SELECT 1"},
		{"prisma query tag", "SELECT * FROM users /*unit='req-42'*/", []string{"req-42"}, "SELECT * FROM users"},
		{"traceparent gives the trace-id", "SELECT 1 /*traceparent='" + tp + "'*/", []string{"4bf92f3577b34da6a3ce929d0e0e4736"}, "SELECT 1"},
		{"sqlcommenter with several keys, url-encoded", "UPDATE t SET a = 1 /*action='%2Fparam%2Ad',controller='index',traceparent='" + strings.ReplaceAll(tp, "-", "%2D") + "'*/",
			[]string{"4bf92f3577b34da6a3ce929d0e0e4736"}, "UPDATE t SET a = 1"},
		{"configured key, encoded value", "SELECT 1 /*request_id='a%20b%27c'*/", []string{"a b'c"}, "SELECT 1"},
		{"escaped quote inside a value", `SELECT 1 /*unit='it\'s'*/`, []string{"it's"}, "SELECT 1"},
		{"trailing semicolon kept", "SELECT 1 /*unit='u1'*/;", []string{"u1"}, "SELECT 1;"},
		{"comment before the semicolon's statement end", "SELECT 1; /*unit='u1'*/", []string{"u1"}, "SELECT 1;"},
		{"comment at the start is read but not stripped", "/*unit='u1'*/ SELECT 1", []string{"u1"}, "/*unit='u1'*/ SELECT 1"},
		{"two comments, two units", "/*unit='a'*/ SELECT 1 /*unit='b'*/", []string{"a", "b"}, "/*unit='a'*/ SELECT 1"},
		{"duplicates collapse", "SELECT /*unit='a'*/ 1 /*unit='a'*/", []string{"a"}, "SELECT /*unit='a'*/ 1"},
		{"unknown keys ignored", "SELECT 1 /*route='x',db_driver='pg'*/", nil, "SELECT 1"},
		{"comment inside a string literal is not a comment", "SELECT '/*unit=''x''*/'", nil, "SELECT '/*unit=''x''*/'"},
		{"comment inside an E string", `SELECT E'\' /*unit=''x''*/'`, nil, `SELECT E'\' /*unit=''x''*/'`},
		{"comment inside a quoted identifier", `SELECT 1 AS "/*unit='x'*/"`, nil, `SELECT 1 AS "/*unit='x'*/"`},
		{"comment inside a dollar quote", "DO $$BEGIN /*unit='x'*/ END$$", nil, "DO $$BEGIN /*unit='x'*/ END$$"},
		{"comment inside a tagged dollar quote", "SELECT $f$ /*unit='x'*/ $f$ /*unit='y'*/", []string{"y"}, "SELECT $f$ /*unit='x'*/ $f$"},
		{"parameters are not dollar quotes", "SELECT $1 /*unit='y'*/", []string{"y"}, "SELECT $1"},
		{"line comment hides a block comment", "SELECT 1 -- /*unit='x'*/\n", nil, "SELECT 1 -- /*unit='x'*/\n"},
		{"nested comment", "SELECT 1 /* a /* b */ unit='x' */", nil, "SELECT 1"},
		{"malformed traceparent ignored", "SELECT 1 /*traceparent='00-xyz-00f067aa0ba902b7-01'*/", nil, "SELECT 1"},
		{"all-zero trace-id ignored", "SELECT 1 /*traceparent='00-00000000000000000000000000000000-00f067aa0ba902b7-01'*/", nil, "SELECT 1"},
		{"bad percent-encoding ignored", "SELECT 1 /*unit='%zz'*/", nil, "SELECT 1"},
		{"unterminated comment", "SELECT 1 /*unit='x'", nil, "SELECT 1 /*unit='x'"},
		{"not sqlcommenter", "SELECT 1 /* plain words */", nil, "SELECT 1"},
		{"identifier with a dollar", "SELECT a$b /*unit='z'*/ FROM t", []string{"z"}, "SELECT a$b /*unit='z'*/ FROM t"},
		{"a line comment ends at a carriage return", "INSERT INTO t VALUES (1) --\r/*unit='u1'*/", []string{"u1"}, "INSERT INTO t VALUES (1) --"},
		{"a line comment ends at a carriage return, mid-text", "INSERT INTO t VALUES (1) -- x\r/*unit='u1'*/ RETURNING 1", []string{"u1"}, "INSERT INTO t VALUES (1) -- x\r/*unit='u1'*/ RETURNING 1"},
		{"a comment only standard_conforming_strings off shows", `SELECT '\', ' /*unit='u1'*/ '`, []string{"u1"}, `SELECT '\', ' /*unit='u1'*/ '`},
		{"a comment either setting shows", `SELECT '\' /*unit='u1'*/`, []string{"u1"}, `SELECT '\'`},
		{"a string continued across a line comment", "SELECT 'a' --c\r'/*unit=''x''*/' /*unit='y'*/", []string{"y"}, "SELECT 'a' --c\r'/*unit=''x''*/'"},
	}
	for _, tc := range cases {
		units, stripped := ExtractUnits(tc.sql, keys)
		if strings.Join(units, "|") != strings.Join(tc.units, "|") || stripped != tc.stripped {
			t.Errorf("%s:\n  sql %q\n  got  %q %q\n  want %q %q", tc.comment, tc.sql, units, stripped, tc.units, tc.stripped)
		}
	}
}

func FuzzExtractUnits(f *testing.F) {
	for _, s := range []string{"SELECT 1 /*unit='a'*/", "SELECT '/*'", "$$/*$$", "/*/*", `E'\'`, "--/*\n/*unit='x'*/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		units, stripped := ExtractUnits(sql, UnitKeys{"unit"})
		if len(stripped) > len(sql) {
			t.Fatalf("stripped text grew: %q -> %q", sql, stripped)
		}
		for _, u := range units {
			if u == "" {
				t.Fatalf("empty unit from %q", sql)
			}
		}
	})
}

func BenchmarkExtractUnits(b *testing.B) {
	sql := "SELECT id, prompt FROM optimization_logs WHERE user_id = $1 ORDER BY embedding <-> $2 LIMIT 5 /*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/"
	b.ReportAllocs()
	for b.Loop() {
		ExtractUnits(sql, UnitKeys{"unit"})
	}
}
