package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/txlane/txlane/internal/pgtest"
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

// TestExplainDiscoverHidden: with --discover, explain reads the catalog and
// says which hidden object makes a read a write.
func TestExplainDiscoverHidden(t *testing.T) {
	schema := fmt.Sprintf("explain_hidden_%d", time.Now().UnixNano()%1_000_000_000)
	pgtest.Exec(t, fmt.Sprintf(`CREATE SCHEMA %[1]s;
CREATE TABLE %[1]s.items (id int PRIMARY KEY, embedding vector(3));
CREATE TABLE %[1]s.audit (what text);
CREATE FUNCTION %[1]s.logit() RETURNS int LANGUAGE sql VOLATILE AS $$ INSERT INTO %[1]s.audit VALUES ('view') RETURNING 1 $$;
CREATE VIEW %[1]s.v_items AS SELECT id, embedding, %[1]s.logit() AS l FROM %[1]s.items;
CREATE TABLE %[1]s.other (id int);
CREATE FUNCTION %[1]s.trg_f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN new; END $$;
CREATE TRIGGER t_other AFTER INSERT ON %[1]s.other FOR EACH ROW EXECUTE FUNCTION %[1]s.trg_f()`, schema))
	t.Cleanup(func() { pgtest.Exec(t, "DROP SCHEMA "+schema+" CASCADE") })
	cfg := filepath.Join(t.TempDir(), "txlane.yaml")
	if err := os.WriteFile(cfg, []byte("primary: "+pgtest.DSN(t)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sql  string
		want []string
	}{
		// Qualified: other packages' tests may hold tables of the same names
		// in other schemas meanwhile, and the catalog matches unqualified
		// names in every schema.
		{"SELECT id, l FROM " + schema + ".v_items", []string{
			"hidden:        view " + schema + ".v_items calls volatile " + schema + ".logit()",
			"reads through: " + schema + ".items",
			"route:         primary (writing_function)"}},
		{"SELECT id FROM " + schema + ".items ORDER BY embedding <-> '[1,2,3]'", []string{"route:         vector (vector_read_idle)"}},
		{"INSERT INTO " + schema + ".other VALUES (1)", []string{
			"hidden:        table " + schema + ".other has trigger t_other (" + schema + ".trg_f()), whose writes are unknown",
			"flags:         write_command, reaches_unknown"}},
	} {
		var out, errOut bytes.Buffer
		code := explain([]string{"--config", cfg, "--discover", "--search-path", schema + ", public", tc.sql}, &out, &errOut)
		if code != 0 {
			t.Fatalf("explain %q: exit %d: %s", tc.sql, code, errOut.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("explain --discover %q lacks %q:\n%s", tc.sql, w, out.String())
			}
		}
	}
}
