package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/txlane/txlane/router"
)

func explainRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "txlane.yaml")
	yaml := goodConfig + "policy:\n  vector_tables: [optimization_logs, docs.\"Chunks\"]\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := explain(append([]string{"--config", cfg}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestExplain(t *testing.T) {
	for _, tc := range []struct {
		args        []string
		lane, route string
	}{
		{[]string{"SELECT id FROM optimization_logs ORDER BY embedding <-> $1 LIMIT 5"}, "vector", "vector_read_idle"},
		{[]string{"--in-transaction", "SELECT id FROM optimization_logs"}, "vector", "vector_read_in_tx"},
		{[]string{"--in-transaction=repeatable-read", "SELECT id FROM optimization_logs"}, "primary", "isolation_snapshot"},
		{[]string{"--state", "in_tx_wrote:optimization_logs", "SELECT id FROM optimization_logs"}, "primary", "read_your_writes"},
		{[]string{"SELECT * FROM docs.\"Chunks\" FOR UPDATE"}, "primary", "locking_read"},
		{[]string{"--search-path", "docs", "SELECT * FROM \"Chunks\""}, "vector", "vector_read_idle"},
		{[]string{"SELECT * FROM \"Chunks\""}, "primary", "not_vector_read"},
		{[]string{"INSERT INTO optimization_logs VALUES (1)"}, "primary", "not_read_only"},
		{[]string{"SELEC 1"}, "primary", "unparsed"},
	} {
		code, out, errOut := explainRun(t, append([]string{"--json"}, tc.args...)...)
		if code != 0 {
			t.Fatalf("explain %q: exit %d: %s", tc.args, code, errOut)
		}
		var e router.Explanation
		if err := json.Unmarshal([]byte(out), &e); err != nil {
			t.Fatalf("explain %q: %v\n%s", tc.args, err, out)
		}
		if e.Lane != tc.lane || e.Reason != tc.route {
			t.Errorf("explain %q: %s/%s, want %s/%s", tc.args, e.Lane, e.Reason, tc.lane, tc.route)
		}
	}
	code, out, _ := explainRun(t, "SELECT id FROM optimization_logs")
	for _, want := range []string{"class:         Read (SELECT)", "vector tables: optimization_logs", "route:         vector (vector_read_idle)"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
	if code, _, errOut := explainRun(t, "--in-transaction=sometimes", "SELECT 1"); code != exitUsageErr || !strings.Contains(errOut, "repeatable-read") {
		t.Errorf("bad level: exit %d, %q", code, errOut)
	}
	if code, _, _ := explainRun(t); code != exitUsageErr {
		t.Errorf("no SQL: exit %d", code)
	}
}
