package proxy

import (
	"reflect"
	"strings"
	"testing"

	"github.com/txlane/txlane/policy"
)

// TestApplySQLNeverTouchesReadOnly: whatever a snapshot holds, the statements
// that mirror a client's settings on a lane connection never change the
// lane's read-only mode.
func TestApplySQLNeverTouchesReadOnly(t *testing.T) {
	off := "off"
	tz := "UTC"
	have := map[string]string{}
	sql := applySQL(have, map[string]*string{
		"default_transaction_read_only": &off,
		"DEFAULT_TRANSACTION_READ_ONLY": &off,
		"transaction_read_only":         &off,
		"TimeZone":                      &tz,
	})
	if strings.Contains(strings.ToLower(sql), "read_only") || !strings.Contains(sql, "TimeZone") {
		t.Fatalf("applySQL = %q", sql)
	}
	// Nor RESET it, when a connection somehow recorded a value.
	have = map[string]string{"default_transaction_read_only": "on"}
	if sql := applySQL(have, map[string]*string{}); sql != "" {
		t.Fatalf("applySQL with a recorded read-only value = %q", sql)
	}
}

func TestParseTempList(t *testing.T) {
	for _, c := range []struct {
		in       []byte
		names    []string
		overflow bool
	}{
		{nil, nil, false},
		{[]byte("items"), []string{"items"}, false},
		{[]byte(`a,"B c","x""y",items`), []string{"a", "B c", `x"y`, "items"}, false},
		{[]byte(`"unterminated`), nil, true},
		{[]byte(strings.Repeat("t,", maxSnapshotTemp) + "last"), nil, true},
	} {
		names, overflow := parseTempList(c.in)
		if overflow != c.overflow || !c.overflow && !reflect.DeepEqual(names, c.names) {
			t.Errorf("parseTempList(%q) = %q, %v; want %q, %v", c.in, names, overflow, c.names, c.overflow)
		}
	}
	// Whether the session has a temporary schema comes with the settings.
	sql, names := snapshotQuery(nil)
	if !strings.Contains(sql, "pg_my_temp_schema()") || names[2] != colTempSchema {
		t.Fatalf("snapshot query %q, names %q", sql, names)
	}
	for v, want := range map[string]bool{"t": true, "f": false} {
		row := make([][]byte, len(names))
		row[0], row[2] = []byte("read committed"), []byte(v)
		snap := parseSnapshot(names, row)
		if snap.tempSchema != want || snap.isolation != "read committed" {
			t.Fatalf("parsed snapshot of %q: %+v", v, snap)
		}
		if _, ok := snap.values[colTempSchema]; ok {
			t.Fatal("the temporary schema is not a setting to mirror")
		}
	}
}

func TestMayChangeTemp(t *testing.T) {
	for _, c := range []struct {
		st   policy.Statement
		want bool
	}{
		{policy.Statement{Class: policy.Read}, false},
		{policy.Statement{Class: policy.LockingRead}, false},
		{policy.Statement{Class: policy.Utility, Command: "SHOW"}, false},
		{policy.Statement{Class: policy.Read, Flags: policy.FlagWritingFunction}, true},
		{policy.Statement{Class: policy.Read, Flags: policy.FlagMayChangeSession}, true},
		{policy.Statement{Class: policy.Utility, Flags: policy.FlagSQLPrepare}, true},
		{policy.Statement{Class: policy.Utility, Flags: policy.FlagCursor}, true},
		{policy.Statement{Class: policy.Utility, Discard: policy.DiscardTemp}, true},
		{policy.Statement{Class: policy.Write, Flags: policy.FlagWriteCommand}, true}, // a trigger may
		{policy.Statement{Class: policy.DDL}, true},
		{policy.Statement{Class: policy.TxControl}, true},
		{policy.Statement{Class: policy.Unknown}, true},
	} {
		if got := mayChangeTemp(&c.st); got != c.want {
			t.Errorf("mayChangeTemp(%s %s %v) = %v", c.st.Class, c.st.Command, c.st.Flags, got)
		}
	}
}
