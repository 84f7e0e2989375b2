package proxy

import (
	"reflect"
	"strings"
	"testing"

	"github.com/txlane/txlane/policy"
)

// TestApplyPlanNeverTouchesReadOnly: whatever a snapshot holds, the settings
// that mirror a client's on a lane connection never include the lane's
// read-only mode.
func TestApplyPlanNeverTouchesReadOnly(t *testing.T) {
	off := "off"
	tz := "UTC"
	have := map[string]string{}
	names, _ := applyPlan(have, map[string]*string{
		"default_transaction_read_only": &off,
		"DEFAULT_TRANSACTION_READ_ONLY": &off,
		"transaction_read_only":         &off,
		"TimeZone":                      &tz,
	})
	if !reflect.DeepEqual(names, []string{"TimeZone"}) {
		t.Fatalf("applyPlan = %q", names)
	}
	// Nor RESET it, when a connection somehow recorded a value.
	have = map[string]string{"default_transaction_read_only": "on"}
	if names, _ := applyPlan(have, map[string]*string{}); names != nil {
		t.Fatalf("applyPlan with a recorded read-only value = %q", names)
	}
}

// TestApplyPlan: only what differs, resets (nil) for custom settings the
// client lacks or has empty (a placeholder of a library its session has not
// loaded), the role last.
func TestApplyPlan(t *testing.T) {
	s := func(v string) *string { return &v }
	have := map[string]string{"search_path": "public", "TimeZone": "UTC", "app.x": "1", "role": "alice", "hnsw.ef_search": "5"}
	want := map[string]*string{"search_path": s("public"), "TimeZone": s("Asia/Tokyo"), "role": s("bob"), "app.y": s("2"),
		"hnsw.ef_search": s(""), "app.empty": s("")}
	names, values := applyPlan(have, want)
	var got []string
	for i, n := range names {
		v := "RESET"
		if values[i] != nil {
			v = *values[i]
		}
		got = append(got, n+"="+v)
	}
	if w := []string{"TimeZone=Asia/Tokyo", "app.x=RESET", "app.y=2", "hnsw.ef_search=RESET", "role=bob"}; !reflect.DeepEqual(got, w) {
		t.Fatalf("applyPlan = %q, want %q", got, w)
	}
	if names, _ := applyPlan(map[string]string{"role": "bob"}, map[string]*string{"role": s("bob")}); names != nil {
		t.Fatalf("nothing differs, yet applyPlan = %q", names)
	}
}

// TestTextArray: elements quoted so that any text survives, nil as NULL.
func TestTextArray(t *testing.T) {
	a, q := "a", `x"y\z,{}`
	if got := string(textArray([]*string{&a, nil, &q})); got != `{"a",NULL,"x\"y\\z,{}"}` {
		t.Fatalf("textArray = %s", got)
	}
	if got := string(textArray([]string{})); got != "{}" {
		t.Fatalf("empty textArray = %s", got)
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
		snap, _ := parseSnapshot(names, row)
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
		{policy.Statement{Class: policy.TxControl}, false}, // snapState.txControl
		{policy.Statement{Class: policy.Unknown}, true},
	} {
		if got := mayChangeTemp(&c.st); got != c.want {
			t.Errorf("mayChangeTemp(%s %s %v) = %v", c.st.Class, c.st.Command, c.st.Flags, got)
		}
	}
}
