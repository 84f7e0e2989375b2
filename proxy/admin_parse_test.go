package proxy

import (
	"reflect"
	"testing"
)

func TestSplitAdminCommands(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"SHOW CLIENTS", []string{"SHOW CLIENTS"}},
		{" SHOW CLIENTS; show pools ;", []string{"SHOW CLIENTS", "show pools"}},
		{"-- ping", nil},
		{";;", nil},
		{"/* a /* nested */ comment */ SHOW HELP -- trailing", []string{"SHOW HELP"}},
		{"RELOAD; EXPLAIN SELECT 1; SELECT 2", []string{"RELOAD", "EXPLAIN SELECT 1; SELECT 2"}},
		{"EXPLAIN /*unit='u'*/ SELECT 1", []string{"EXPLAIN /*unit='u'*/ SELECT 1"}},
	} {
		if got := splitAdminCommands(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitAdminCommands(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseAdminCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		verb string
		code string
	}{
		{"show clients", "SHOW", ""},
		{"SHOW POLICY -- why", "SHOW", ""},
		{"reload", "RELOAD", ""},
		{"PAUSE mydb", "", CodeFeatureNotSupported},
		{"RESUME;", "RESUME", ""},
		{"EXPLAIN", "", codeSyntaxError},
		{"EXPLAIN select * from t", "EXPLAIN", ""},
		{"SHOW", "", codeSyntaxError},
		{"SHOW LISTS", "", CodeFeatureNotSupported},
		{"SHOW CLIENTS extra", "", codeSyntaxError},
		{"SELECT 1", "", CodeFeatureNotSupported},
		{"SET x = 1", "SET", ""},
	} {
		cmd, pe := parseAdminCommand(tc.in)
		switch {
		case tc.code != "" && (pe == nil || pe.Code != tc.code):
			t.Errorf("%q: error %v, want code %s", tc.in, pe, tc.code)
		case tc.code == "" && pe != nil:
			t.Errorf("%q: %v", tc.in, pe)
		case tc.code == "" && cmd.verb != tc.verb:
			t.Errorf("%q: verb %q, want %q", tc.in, cmd.verb, tc.verb)
		}
	}
}
