package console

import (
	"reflect"
	"strings"
	"testing"
)

func TestSplitCommands(t *testing.T) {
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
		// A -- comment ends at \r as well as \n, as PostgreSQL reads it.
		{"SHOW CLIENTS --\r; SHOW POOLS", []string{"SHOW CLIENTS", "SHOW POOLS"}},
		{"-- ping\rSHOW HELP", []string{"SHOW HELP"}},
	} {
		if got := splitCommands(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitCommands(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseCommand(t *testing.T) {
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
		{"EXPLAIN", "", CodeSyntaxError},
		{"EXPLAIN ; /* nothing */ -- to explain", "", CodeSyntaxError},
		{"EXPLAIN select * from t", "EXPLAIN", ""},
		{"SHOW", "", CodeSyntaxError},
		{"SHOW LISTS", "", CodeFeatureNotSupported},
		{"SHOW CLIENTS extra", "", CodeSyntaxError},
		{"SELECT 1", "", CodeFeatureNotSupported},
		{"SET x = 1", "SET", ""},
	} {
		cmd, _, pe := parse(tc.in)
		switch {
		case tc.code != "" && (pe == nil || pe.Code != tc.code):
			t.Errorf("%q: error %v, want code %s", tc.in, pe, tc.code)
		case tc.code == "" && pe != nil:
			t.Errorf("%q: %v", tc.in, pe)
		case tc.code == "" && cmd.tag() != tc.verb:
			t.Errorf("%q: verb %q, want %q", tc.in, cmd.tag(), tc.verb)
		}
	}
}

// TestCommandTable: every entry of the table is found by its name (any
// case, with a trailing semicolon and a comment) and by its example, has
// a handler and a description, and is listed by SHOW HELP; wrong arguments
// give the SQLSTATE its argument rule promises.
func TestCommandTable(t *testing.T) {
	help := map[string]string{}
	for _, row := range showHelp(nil) {
		if len(row) != len(byName["SHOW HELP"].columns) {
			t.Fatalf("SHOW HELP row %q does not match its columns", row)
		}
		help[row[0]] = row[1]
	}
	if len(help) != len(commands) {
		t.Errorf("SHOW HELP lists %d commands, the table has %d", len(help), len(commands))
	}
	for _, info := range Commands() {
		c := byName[info.Name]
		if c == nil || c.run == nil || c.help == "" || c.name != strings.ToUpper(c.name) {
			t.Errorf("%s: incomplete entry %+v", info.Name, c)
			continue
		}
		if help[info.Usage] != c.help {
			t.Errorf("SHOW HELP does not list %q", info.Usage)
		}
		for _, text := range []string{info.Example, strings.ToLower(info.Example) + " -- comment", info.Example + ";"} {
			got, _, e := parse(text)
			if e != nil || got != c {
				t.Errorf("%q: %v, %v; want %s", text, got, e, c.name)
			}
		}
		extra := info.Name + " everything"
		want := map[argSpec]string{noArgs: CodeSyntaxError, noDatabaseArg: CodeFeatureNotSupported}[c.args]
		_, arg, e := parse(extra)
		switch {
		case want != "" && (e == nil || e.Code != want):
			t.Errorf("%q: %v, want SQLSTATE %s", extra, e, want)
		case want == "" && (e != nil || arg != "everything"):
			t.Errorf("%q: argument %q, %v", extra, arg, e)
		}
		if c.args == sqlArg {
			if _, _, e := parse(info.Name); e == nil || e.Code != CodeSyntaxError || e.Hint != info.Example {
				t.Errorf("%q without its statement: %v, want 42601 with the example as hint", info.Name, e)
			}
		}
	}
	// Every word that starts two-word names needs an item (42601) and
	// rejects unknown ones (0A000), naming the known ones.
	for verb, its := range items {
		if _, _, e := parse(verb); e == nil || e.Code != CodeSyntaxError || !strings.Contains(e.Hint, its[0]) {
			t.Errorf("%q: %v, want 42601 naming the items", verb, e)
		}
		if _, _, e := parse(verb + " NOTHING"); e == nil || e.Code != CodeFeatureNotSupported {
			t.Errorf("%s NOTHING: %v, want 0A000", verb, e)
		}
	}
	if got := itemHint("SHOW"); got != "SHOW CLIENTS, POOLS, SERVERS, STATS, POLICY, UNITS, VERSION or HELP." {
		t.Errorf("SHOW's hint: %q", got)
	}
}
