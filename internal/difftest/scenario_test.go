package difftest

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseKinds(t *testing.T) {
	sc, err := ParseFile("testdata/kinds.txt")
	if err != nil {
		t.Fatal(err)
	}
	type brief struct {
		Line int
		Kind StepKind
		Conn string
		Name string
	}
	var got []brief
	for _, s := range sc.Steps {
		got = append(got, brief{s.Line, s.Kind, s.Conn, s.Name})
	}
	want := []brief{
		{2, StepSimple, "main", ""},
		{3, StepSimple, "main", ""},
		{5, StepSimple, "main", ""},
		{8, StepExtended, "main", ""},
		{11, StepExtended, "main", ""},
		{14, StepPrepare, "main", "get_{{id}}"},
		{16, StepExecPrepared, "main", "get_{{id}}"},
		{17, StepDeallocate, "main", "get_{{id}}"},
		{19, StepCopyIn, "main", ""},
		{23, StepCopyOut, "main", ""},
		{25, StepPipeline, "main", ""},
		{40, StepSimple, "main", ""},
		{46, StepSimple, "main", ""},
		{49, StepSimple, "other", ""},
		{51, StepSimple, "main", ""},
		{53, StepNotifications, "other", ""},
		{54, StepSimple, "other", ""},
		{55, StepClose, "other", ""},
		{59, StepSimple, "main", ""},
		{60, StepSimple, "main", ""},
		{62, StepRaw, "main", ""},
		{80, StepPipeline, "main", ""},
		{86, StepSleep, "main", ""},
		{87, StepSimple, "main", ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("steps:\n got %v\nwant %v", got, want)
	}
	s := sc.Steps
	if s[3].ParamsText != "2, 'two'" || len(s[3].Params) != 2 || *s[3].Params[1] != "two" {
		t.Errorf("params of step 4: %q %v", s[3].ParamsText, s[3].Params)
	}
	if !s[4].Binary {
		t.Error("step 5 should ask for binary results")
	}
	if s[8].Data != "3,three,3.25\n4,\"a, b\",\n" {
		t.Errorf("copy data %q", s[8].Data)
	}
	var items []StepKind
	for _, it := range s[10].Items {
		items = append(items, it.Kind)
	}
	wantItems := []StepKind{StepExtended, StepSync, StepExtended, StepExtended, StepSync,
		StepPrepare, StepExecPrepared, StepDeallocate, StepSync}
	if !reflect.DeepEqual(items, wantItems) {
		t.Errorf("pipeline items %v, want %v", items, wantItems)
	}
	if !strings.HasPrefix(s[11].SQL, "DO $$\nBEGIN\n  RAISE NOTICE") || !strings.HasSuffix(s[11].SQL, "$$;") {
		t.Errorf("DO block split wrongly: %q", s[11].SQL)
	}
	if s[12].SQL != "" {
		t.Errorf("-- empty has SQL %q", s[12].SQL)
	}
	if s[13].ConnParams["TimeZone"] != "UTC" {
		t.Errorf("conn params %v", s[13].ConnParams)
	}
	if s[18].Timeout != 200*time.Millisecond || s[19].Timeout != 0 {
		t.Errorf("timeouts %v %v", s[18].Timeout, s[19].Timeout)
	}
	var raw []string
	for _, m := range s[20].Raw {
		raw = append(raw, fmt.Sprintf("%s:%q/%q/%q/%d/%d/%d", m.Type, m.Name, m.Stmt, m.SQL, len(m.Params), m.MaxRows, m.OID))
	}
	wantRaw := []string{
		`parse:""/""/"SELECT id FROM kinds_{{id}} WHERE id > $1::int ORDER BY id"/0/0/0`,
		`bind:""/""/""/1/0/0`,
		`execute:""/""/""/0/2/0`,
		`flush:""/""/""/0/0/0`,
		`execute:""/""/""/0/0/0`,
		`sync:""/""/""/0/0/0`,
		`query:""/""/"COPY kinds_{{id}} (id) FROM STDIN"/0/0/0`,
		`copydata:""/""/"9"/0/0/0`,
		`copydone:""/""/""/0/0/0`,
		`fcall:""/""/""/1/0/2311`,
		`parse:"s1"/""/"SET LOCAL statement_timeout = 0"/0/0/0`,
		`describe:"s1"/""/""/0/0/0`,
		`close:"s1"/""/""/0/0/0`,
		`sync:""/""/""/0/0/0`,
		`query:""/""/"COPY (SELECT 1) TO STDOUT"/0/0/0`,
	}
	if !reflect.DeepEqual(raw, wantRaw) {
		t.Errorf("raw messages:\n got %q\nwant %q", raw, wantRaw)
	}
	var flushItems []StepKind
	for _, it := range s[21].Items {
		flushItems = append(flushItems, it.Kind)
	}
	if want := []StepKind{StepExtended, StepFlush, StepExtended, StepSync}; !reflect.DeepEqual(flushItems, want) {
		t.Errorf("pipeline with flush: %v, want %v", flushItems, want)
	}
	if s[22].Timeout != 10*time.Millisecond {
		t.Errorf("sleep %v", s[22].Timeout)
	}
}

func TestParseRaw(t *testing.T) {
	good := map[string]string{
		"parse s SELECT 1":      "parse s",
		"bind p s 1, 'x', null": "bind p s",
		"bind - - ":             "bind  ",
		"describe statement s":  "describe s",
		"close portal -":        "close ",
		"execute p 10":          "execute p",
		"fcall 177 1, 2":        "fcall ",
		"copyfail stop it":      "copyfail ",
	}
	for line, want := range good {
		m, err := parseRaw(line)
		if err != nil {
			t.Errorf("%q: %v", line, err)
			continue
		}
		if got := m.Type + " " + m.Name + map[bool]string{true: " " + m.Stmt}[m.Type == "bind"]; got != want {
			t.Errorf("%q: got %q, want %q", line, got, want)
		}
	}
	for _, bad := range []string{"parse", "bind p", "describe thing x", "describe portal", "execute p many",
		"sync now", "fcall upper 'x'", "copydone x", "frobnicate", "bind p s 'unterminated"} {
		if _, err := parseRaw(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if _, err := Parse("bad", "-- raw\nparse - SELECT 1\n-- end\n"); err == nil || !strings.Contains(err.Error(), "must end with sync") {
		t.Errorf("raw block without sync: %v", err)
	}
	if _, err := Parse("bad", "-- raw\nsync\n"); err == nil || !strings.Contains(err.Error(), "without -- end") {
		t.Errorf("unterminated raw block: %v", err)
	}
}

// TestStatementBoundaries pins where a statement ends.
func TestStatementBoundaries(t *testing.T) {
	cases := []struct {
		name string
		src  string
		want []string
	}{
		{"semicolon ends", "SELECT 1;\nSELECT 2;", []string{"SELECT 1;", "SELECT 2;"}},
		{"blank line ends", "SELECT 1\n\nSELECT 2", []string{"SELECT 1", "SELECT 2"}},
		{"multi-line", "SELECT 1\n  + 2;", []string{"SELECT 1\n  + 2;"}},
		{"several statements on a line", "SELECT 1; SELECT 2;", []string{"SELECT 1; SELECT 2;"}},
		{"trailing comment", "SELECT 1; -- one\nSELECT 2;", []string{"SELECT 1; -- one", "SELECT 2;"}},
		{"semicolon in string", "SELECT ';\n\n;'\n;", []string{"SELECT ';\n\n;'\n;"}},
		{"doubled quote", "SELECT 'it''s;'\n;", []string{"SELECT 'it''s;'\n;"}},
		{"E string", "SELECT E'\\';\n';", []string{"SELECT E'\\';\n';"}},
		{"quoted identifier", "SELECT 1 AS \"a;\n\"\n;", []string{"SELECT 1 AS \"a;\n\"\n;"}},
		{"dollar quote", "DO $$\nBEGIN\n  NULL;\n\nEND\n$$;", []string{"DO $$\nBEGIN\n  NULL;\n\nEND\n$$;"}},
		{"tagged dollar quote", "SELECT $f$ $$; $f$;", []string{"SELECT $f$ $$; $f$;"}},
		{"parameter is not a quote", "SELECT $1;\nSELECT 2;", []string{"SELECT $1;", "SELECT 2;"}},
		{"block comment", "SELECT /* ;\n/* ; */ ;\n*/ 1;", []string{"SELECT /* ;\n/* ; */ ;\n*/ 1;"}},
		{"semicolon only", ";", []string{";"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sc, err := Parse(c.name, c.src)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range sc.Steps {
				got = append(got, s.SQL)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %q\nwant %q", got, c.want)
			}
		})
	}
}

func TestParseParams(t *testing.T) {
	str := func(s string) *string { return &s }
	cases := []struct {
		in   string
		want []*string
	}{
		{"", []*string{}},
		{"1", []*string{str("1")}},
		{"1, 'x', null, NULL", []*string{str("1"), str("x"), nil, nil}},
		{"'a, b', 'it''s', ''", []*string{str("a, b"), str("it's"), str("")}},
		{"'null', {1,2}", []*string{str("null"), str("{1"), str("2}")}},
		{`'\x0102', 2024-01-02 03:04:05+00`, []*string{str(`\x0102`), str("2024-01-02 03:04:05+00")}},
	}
	for _, c := range cases {
		got, err := parseParams(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if len(got) != len(c.want) {
			t.Errorf("%q: %d params, want %d", c.in, len(got), len(c.want))
			continue
		}
		for i := range got {
			if (got[i] == nil) != (c.want[i] == nil) || got[i] != nil && *got[i] != *c.want[i] {
				t.Errorf("%q: param %d = %v, want %v", c.in, i, deref(got[i]), deref(c.want[i]))
			}
		}
	}
	for _, bad := range []string{"'x", "'x''", "1,,2", "'x' y", "1,"} {
		if _, err := parseParams(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return "NULL"
	}
	return "'" + *s + "'"
}

func TestParseErrors(t *testing.T) {
	cases := []struct{ src, want string }{
		{"-- parms: 1\nSELECT 1;", `1: unknown directive "parms"`},
		{"SELECT 'x;\n", "1: statement ends inside a quoted string"},
		{"-- pipeline\nSELECT 1;\n-- end", "3: a pipeline must end with -- sync"},
		{"-- pipeline\nSELECT 1;\n-- sync", "1: pipeline without -- end"},
		{"-- sync", "1: -- sync outside a pipeline"},
		{"SELECT 1;\n-- params: 1", "2: directive applies to no step"},
		{"COPY t FROM STDIN;\n1\n", `1: COPY FROM STDIN data without a closing line "\."`},
		{"-- mode: fast", `1: -- mode: want simple or extended, got "fast"`},
		{"-- timeout: soon", `1: -- timeout: bad duration "soon"`},
		{"-- sleep: 0s", `1: -- sleep: bad duration "0s"`},
		{"-- end of the file", "1: -- end takes no argument"},
		{"-- pipeline\n-- conn b\n", "2: -- conn inside a pipeline"},
		{"-- params: 1\n-- pipeline\n", "2: -- pipeline cannot use the directives pending since line 1"},
		{"-- prepare: s\n-- exec: s\n", "2: -- exec after -- prepare without a statement"},
		{"-- conn a b\n", `1: -- conn: "b" is not key=value`},
	}
	for _, c := range cases {
		_, err := Parse("bad", c.src)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want an error starting %q", c.src, err, c.want)
		}
	}
	// Comments that merely start with a capital or hold no colon stay comments.
	if _, err := Parse("ok", "-- Note: capitalised prose\n-- plain prose, no directive\nSELECT 1;"); err != nil {
		t.Error(err)
	}
}
