package router

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/txlane/txlane/policy"
)

// update rewrites the want fields of the golden files from the current
// output. Use only deliberately, then review the diff case by case: each
// want states what PostgreSQL semantics require, not what the code does.
var update = flag.Bool("update", false, "rewrite want fields in testdata/*.json")

// goldenFunctions is the function environment of the golden files: the
// policy lists and a catalog snapshot (schema → name → provolatile).
type goldenFunctions struct {
	Comment  string                       `json:"comment,omitempty"`
	Writing  []string                     `json:"writing"`
	ReadOnly []string                     `json:"read_only"`
	Catalog  map[string]map[string]string `json:"catalog"`
}

func (f *goldenFunctions) config(t testing.TB, withCatalog bool) Config {
	t.Helper()
	var cfg Config
	for _, s := range f.Writing {
		fn, err := policy.ParseFunc(s)
		if err != nil {
			t.Fatal(err)
		}
		cfg.WritingFunctions = append(cfg.WritingFunctions, fn)
	}
	for _, s := range f.ReadOnly {
		fn, err := policy.ParseFunc(s)
		if err != nil {
			t.Fatal(err)
		}
		cfg.ReadOnlyFunctions = append(cfg.ReadOnlyFunctions, fn)
	}
	if withCatalog {
		var rows []CatalogFunc
		for schema, fns := range f.Catalog {
			for name, v := range fns {
				if len(v) != 1 || !strings.Contains("isv", v) {
					t.Fatalf("catalog %s.%s: volatility %q is not i, s or v", schema, name, v)
				}
				rows = append(rows, CatalogFunc{Schema: schema, Name: name, Volatility: Volatility(v[0])})
			}
		}
		cfg.Catalog = NewCatalogSnapshot(rows)
	}
	return cfg
}

// classifyFile is testdata/classify.json.
type classifyFile struct {
	Comment   string          `json:"comment"`
	Functions goldenFunctions `json:"functions"`
	Cases     []classifyCase  `json:"cases"`
}

type classifyCase struct {
	Comment string `json:"comment"`
	SQL     string `json:"sql"`
	// NoCatalog classifies without the catalog snapshot (lists only).
	NoCatalog bool          `json:"no_catalog,omitempty"`
	Want      *classifyWant `json:"want"`
}

// classifyWant is the part of a policy.Statement the golden file pins.
type classifyWant struct {
	Class      string             `json:"class"`
	Command    string             `json:"command,omitempty"`
	Reads      []string           `json:"reads,omitempty"`
	Writes     []string           `json:"writes,omitempty"`
	Temp       []string           `json:"temp,omitempty"`
	Flags      []string           `json:"flags,omitempty"`
	Tx         *ExplainTx         `json:"tx,omitempty"`
	Settings   []policy.Setting   `json:"settings,omitempty"`
	SetConfig  []string           `json:"set_config,omitempty"`
	SetLocal   bool               `json:"set_config_local,omitempty"`
	Seeds      bool               `json:"seeds,omitempty"`
	Sequences  bool               `json:"sequences,omitempty"`
	Deallocate *policy.Deallocate `json:"deallocate,omitempty"`
	Discard    string             `json:"discard,omitempty"`
	Prepare    string             `json:"prepare,omitempty"`
	Parts      []string           `json:"parts,omitempty"`
	Error      string             `json:"error,omitempty"`
}

func wantOf(st *policy.Statement) *classifyWant {
	w := &classifyWant{
		Class:      st.Class.String(),
		Command:    st.Command,
		Flags:      st.Flags.Names(),
		Settings:   st.Settings,
		SetConfig:  st.SetConfig,
		SetLocal:   st.SetConfigLocal,
		Seeds:      st.Seeds,
		Sequences:  st.Sequences,
		Deallocate: st.Deallocate,
		Discard:    st.Discard.String(),
		Prepare:    st.PrepareName,
	}
	for _, t := range st.Reads {
		w.Reads = append(w.Reads, t.String())
	}
	for _, t := range st.Writes {
		w.Writes = append(w.Writes, t.String())
	}
	for _, t := range st.Temp {
		w.Temp = append(w.Temp, t.String())
	}
	if st.Tx.Kind != policy.TxNone {
		e := explainStatement(st, &policy.TxState{}, nil, nil)
		w.Tx = e.Tx
	}
	for i := range st.Parts {
		w.Parts = append(w.Parts, st.Parts[i].Class.String())
	}
	if st.Class == policy.Unknown {
		w.Error = st.Reason
	}
	return w
}

func TestClassifyGolden(t *testing.T) {
	path := filepath.Join("testdata", "classify.json")
	var f classifyFile
	readJSON(t, path, &f)
	if len(f.Cases) < 120 {
		t.Errorf("%s: %d cases, want at least 120", path, len(f.Cases))
	}
	withCat := NewClassifier(f.Functions.config(t, true))
	noCat := NewClassifier(f.Functions.config(t, false))
	seen := map[string]bool{}
	for i := range f.Cases {
		c := &f.Cases[i]
		key := fmt.Sprintf("%v|%s", c.NoCatalog, c.SQL)
		if seen[key] {
			t.Errorf("case %d (%s): duplicate sql %q", i, c.Comment, c.SQL)
		}
		seen[key] = true
		cl := withCat
		if c.NoCatalog {
			cl = noCat
		}
		got := wantOf(cl.Classify(c.SQL))
		if *update {
			c.Want = got
			continue
		}
		if c.Want == nil {
			t.Errorf("case %d (%s): no want; run with -update and review", i, c.Comment)
			continue
		}
		if g, w := canon(t, got), canon(t, c.Want); g != w {
			t.Errorf("case %d: %s\n  sql:  %s\n  got:  %s\n  want: %s", i, c.Comment, c.SQL, g, w)
		}
	}
	if *update {
		writeGolden(t, path, f.Comment, "functions", f.Functions, f.Cases)
	}
}

// routeFile is testdata/route.json.
type routeFile struct {
	Comment      string          `json:"comment"`
	VectorTables []string        `json:"vector_tables"`
	Functions    goldenFunctions `json:"functions"`
	Cases        []routeCase     `json:"cases"`
}

type routeCase struct {
	Comment string `json:"comment"`
	// SQL is one query text; Batch instead lists the statements of one
	// extended-protocol batch (up to Sync).
	SQL string `json:"sql,omitempty"`
	// Batch is a pointer so that an empty batch (a lone Sync) survives -update.
	Batch *[]string `json:"batch,omitempty"`
	// State in policy.ParseStateSpec syntax (idle, in_tx_read_committed,
	// in_tx_repeatable_read, in_tx_serializable, failed, in_tx_wrote:<t>, ...).
	State      string     `json:"state"`
	AfterWrite string     `json:"after_write,omitempty"`
	SearchPath string     `json:"search_path,omitempty"`
	Want       *routeWant `json:"want"`
}

type routeWant struct {
	Lane   string `json:"lane"`
	Reason string `json:"reason"`
}

func TestRouteGolden(t *testing.T) {
	path := filepath.Join("testdata", "route.json")
	var f routeFile
	readJSON(t, path, &f)
	cl := NewClassifier(f.Functions.config(t, true))
	rules := map[string]*policy.Rules{}
	rulesFor := func(afterWrite string) *policy.Rules {
		if r, ok := rules[afterWrite]; ok {
			return r
		}
		r, err := policy.NewRules(policy.RulesConfig{VectorTables: f.VectorTables, AfterWrite: afterWrite})
		if err != nil {
			t.Fatal(err)
		}
		rules[afterWrite] = r
		return r
	}
	covered := map[string]bool{}
	for i := range f.Cases {
		c := &f.Cases[i]
		state, err := policy.ParseStateSpec(c.State)
		if err != nil {
			t.Fatalf("case %d (%s): %v", i, c.Comment, err)
		}
		var sp []string
		if c.SearchPath != "" {
			if sp, err = policy.ParseSearchPath(c.SearchPath); err != nil {
				t.Fatalf("case %d (%s): %v", i, c.Comment, err)
			}
		}
		r := rulesFor(c.AfterWrite)
		var d policy.Decision
		if c.Batch != nil {
			stmts := make([]*policy.Statement, len(*c.Batch))
			for j, q := range *c.Batch {
				stmts[j] = cl.Classify(q)
			}
			d = policy.DecideBatch(&state, stmts, r, sp)
		} else {
			d = policy.Decide(&state, cl.Classify(c.SQL), r, sp)
		}
		got := &routeWant{Lane: d.Lane.String(), Reason: d.Reason.String()}
		covered[got.Reason] = true
		if *update {
			c.Want = got
			continue
		}
		if c.Want == nil {
			t.Errorf("case %d (%s): no want; run with -update and review", i, c.Comment)
			continue
		}
		if *got != *c.Want {
			t.Errorf("case %d: %s\n  sql:   %s%v\n  state: %s\n  got:   %s/%s\n  want:  %s/%s",
				i, c.Comment, c.SQL, batchText(c.Batch), c.State, got.Lane, got.Reason, c.Want.Lane, c.Want.Reason)
		}
	}
	if *update {
		writeGolden(t, path, f.Comment, "vector_tables", f.VectorTables, f.Cases, "functions", f.Functions)
		return
	}
	// Every reason Decide can produce is exercised (unproven needs a full
	// catalog: testdata/catalog.json covers it).
	for _, r := range policy.AllReasons() {
		if r.SetByProxy() || r == policy.ReasonUnproven {
			continue
		}
		if !covered[r.String()] {
			t.Errorf("%s: no case yields reason %s", path, r)
		}
	}
}

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func canon(t *testing.T, v any) string {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(b.String())
}

// writeGolden writes a golden file with one line per case field, so that a
// diff shows exactly which case changed. extra holds name/value pairs of
// top-level fields after "comment" and before "cases"; after "cases" only
// the cases slice itself is passed, then optionally more pairs.
func writeGolden[C any](t *testing.T, path, comment, name string, value any, cases []C, more ...any) {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("{\n  \"comment\": " + canon(t, comment) + ",\n")
	top := []any{name, value}
	top = append(top, more...)
	for i := 0; i+1 < len(top); i += 2 {
		ind, err := json.MarshalIndent(top[i+1], "  ", "  ")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "  %q: %s,\n", top[i], unescape(ind))
	}
	b.WriteString("  \"cases\": [\n")
	for i, c := range cases {
		// Re-encode field by field through a map to keep one line each.
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(canon(t, c)), &m); err != nil {
			t.Fatal(err)
		}
		b.WriteString("    {\n")
		keys := []string{"comment", "sql", "batch", "state", "after_write", "search_path", "no_catalog", "want"}
		var lines []string
		for _, k := range keys {
			if v, ok := m[k]; ok {
				lines = append(lines, fmt.Sprintf("      %q: %s", k, v))
			}
		}
		b.WriteString(strings.Join(lines, ",\n"))
		b.WriteString("\n    }")
		if i < len(cases)-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString("  ]\n}\n")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// unescape undoes json.Marshal's HTML escaping for readability (<-> etc.).
func unescape(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte(`\u003c`), []byte("<"))
	b = bytes.ReplaceAll(b, []byte(`\u003e`), []byte(">"))
	return bytes.ReplaceAll(b, []byte(`\u0026`), []byte("&"))
}

func batchText(b *[]string) string {
	if b == nil {
		return ""
	}
	return fmt.Sprintf("%q", *b)
}
