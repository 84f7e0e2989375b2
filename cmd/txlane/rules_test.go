package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"go.uber.org/zap"

	"github.com/txlane/txlane/config"
	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/router"
)

// everyRule sets every configuration key that reaches the routing policy to
// a value other than its default.
const everyRule = goodConfig + `read_pool: {on_unavailable: error}
policy:
  vector_tables: [docs, app."My-Vec", my-table]
  discover_vector_tables: false
  after_write: any
  escape: reroute
  escape_overrides: [{table: "audit.*", escape: allow}, {table: "public.items", escape: log}]
  unit_comment_keys: [request_id]
  writing_functions: [app.bump]
  read_only_functions: [app.pure]
`

// TestExplainRulesAreTheServers: `txlane explain` decides under exactly the
// rules the server builds from the same file, at start and on reload (both
// go through proxyOptions). Before the one mapping existed, explain ignored
// escape, escape_overrides and unit_comment_keys.
func TestExplainRulesAreTheServers(t *testing.T) {
	example, err := config.Load("../../examples/txlane.yaml")
	if err != nil {
		t.Fatal(err)
	}
	full, err := config.Parse("every-rule.yaml", []byte(everyRule))
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]*config.Config{"example": example, "every rule": full} {
		opts, err := proxyOptions(cfg, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		server, err := policy.NewRules(opts.Rules)
		if err != nil {
			t.Fatal(err)
		}
		explained, err := explainRules(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(explained, server) {
			t.Errorf("%s: explain's rules differ from the server's:\nexplain %+v\n server %+v", name, explained, server)
		}
	}
	// The full configuration really differs from the defaults in every rule.
	def, _ := policy.NewRules(policy.RulesConfig{})
	r, _ := explainRules(full, nil)
	if r.Escape() == def.Escape() || r.AfterWrite() == def.AfterWrite() || r.OnUnavailable() == def.OnUnavailable() ||
		reflect.DeepEqual(r.UnitCommentKeys(), def.UnitCommentKeys()) || len(r.WritingFunctions()) == 0 ||
		len(r.ReadOnlyFunctions()) == 0 || len(r.VectorTables()) != 3 {
		t.Errorf("the every-rule configuration leaves rules at their defaults: %+v", r)
	}
}

// TestExplainHonoursEscapeAndUnits runs `txlane explain` on a file with
// escape overrides and unit comment keys.
func TestExplainHonoursEscapeAndUnits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "txlane.yaml")
	if err := os.WriteFile(path, []byte(everyRule), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sql, escape string
		units       []string
		lane        string
	}{
		{"INSERT INTO audit.log VALUES (1) /*request_id='r1'*/", "allow", []string{"r1"}, "primary"},
		{"UPDATE items SET a = 1 /*unit='u1'*/", "log", nil, "primary"},
		{"SELECT app.bump() FROM docs /*request_id='r2'*/", "reroute", []string{"r2"}, "primary"},
		{"SELECT app.pure() FROM docs", "", nil, "vector"},
		{`SELECT * FROM "my-table"`, "", nil, "vector"},
		{`SELECT * FROM app."My-Vec"`, "", nil, "vector"},
	} {
		var out, errOut bytes.Buffer
		if code := explain([]string{"--config", path, "--json", tc.sql}, &out, &errOut); code != 0 {
			t.Fatalf("explain %q: exit %d: %s", tc.sql, code, &errOut)
		}
		var e router.Explanation
		if err := json.Unmarshal(out.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		if e.Escape != tc.escape || !reflect.DeepEqual(e.Units, tc.units) || e.Lane != tc.lane {
			t.Errorf("%s: escape %q units %q lane %s, want %q %q %s", tc.sql, e.Escape, e.Units, e.Lane, tc.escape, tc.units, tc.lane)
		}
	}
}
