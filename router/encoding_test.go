package router

import (
	"testing"

	"github.com/txlane/txlane/policy"
)

// TestNotUTF8Texts: a text in a client encoding other than UTF8 (here
// LATIN1 and GB18030 bytes) is classified by its Latin-1 image when its
// non-ASCII bytes are inside string constants and name nothing; otherwise
// it is opaque (a write of anything that may change the session). Before,
// every such text was Unknown without flags: a SET of a custom setting
// with a LATIN1 value was not seen, and the setting stayed on the backend.
func TestNotUTF8Texts(t *testing.T) {
	c := NewClassifier(Config{})
	for _, tc := range []struct {
		sql     string
		class   policy.Class
		setting string // a SET's setting name
		opaque  bool
	}{
		{sql: "set app.tenant='acm\xe9'", class: policy.Session, setting: "app.tenant"},
		{sql: "SET search_path = 'sch\xe9ma', public", class: policy.Session, setting: "search_path"},
		{sql: "prepare pe as select 'caf\xe9'", class: policy.Utility},
		{sql: "select '\xd6\xd0'", class: policy.Read},
		{sql: "select $$\xd6\xd0$$, E'\xe9'", class: policy.Read},
		{sql: "set app.t\xe9 = 'x'", opaque: true},                             // a setting's name
		{sql: "select * from \"t\xe9\"", opaque: true},                         // a quoted identifier
		{sql: "select * from t\xe9", opaque: true},                             // an identifier
		{sql: "select 1 /* unit='\xe9' */", opaque: true},                      // a comment
		{sql: "select set_config('app.\xe9', 'x', false)", opaque: true},       // a set_config name
		{sql: "select set_config('txlane.unit', '\xe9', false)", opaque: true}, // a unit
		{sql: "set txlane.unit = '\xe9'", opaque: true},                        // a unit
		{sql: "select '\xd6\\'", opaque: true},                                 // GBK: a backslash second byte
		{sql: "select '\xe9", opaque: true},                                    // does not scan
	} {
		st := c.Classify(tc.sql)
		if tc.opaque {
			if st.Class != policy.Unknown || st.Flags&policy.FlagMayChangeSession == 0 || st.Flags&policy.FlagWritesUnknown == 0 {
				t.Errorf("%q: %v %v (%s), want opaque", tc.sql, st.Class, st.Flags, st.Reason)
			}
			continue
		}
		if st.Class != tc.class {
			t.Errorf("%q: class %v (%s), want %v", tc.sql, st.Class, st.Reason, tc.class)
		}
		if tc.setting != "" && (len(st.Settings) != 1 || st.Settings[0].Name != tc.setting) {
			t.Errorf("%q: settings %v, want %s", tc.sql, st.Settings, tc.setting)
		}
	}
}

// TestPreparedQueryNotUTF8: the query of a PREPARE in a text that is not
// UTF-8 is the text's own bytes after AS, which Classify then reads by the
// rules for such texts (before, PreparedQuery found no PREPARE in it, so an
// EXECUTE of it counted as code that may set anything, and pinned its
// client).
func TestPreparedQueryNotUTF8(t *testing.T) {
	for _, tc := range []struct{ text, name, want string }{
		{"PREPARE pe AS SELECT 'acm\xe9'::text", "pe", "SELECT 'acm\xe9'::text"},
		{"SELECT 1; PREPARE p (int, text) AS\n  SELECT $1, '\xd6\xd0' ; ", "p", "SELECT $1, '\xd6\xd0'"},
		{"PREPARE p AS SELECT 1; PREPARE p /* as */ AS SELECT '\xe9'", "p", "SELECT '\xe9'"},
	} {
		got, ok := PreparedQuery(tc.text, tc.name)
		if !ok || got != tc.want {
			t.Errorf("PreparedQuery(%q, %q) = %q, %v; want %q", tc.text, tc.name, got, ok, tc.want)
		}
	}
	if got, ok := PreparedQuery("PREPARE q AS SELECT '\xe9'", "p"); ok {
		t.Errorf("found %q for another name", got)
	}
}
