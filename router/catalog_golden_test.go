package router

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/txlane/txlane/policy"
)

// catalogFile is testdata/catalog.json: what classification reads from a full
// catalog (views, policies, operators, aggregates, casts, triggers, rules,
// foreign keys, partitions), pinned without PostgreSQL.
type catalogFile struct {
	Comment      string        `json:"comment"`
	VectorTables []string      `json:"vector_tables"`
	Catalog      goldenCatalog `json:"catalog"`
	Cases        []catalogCase `json:"cases"`
}

// goldenCatalog is a catalog snapshot: functions (schema → name → "v" or an
// object), relations (schema → name → object), operators (schema → name →
// functions), casts and hazards.
type goldenCatalog struct {
	Comment   string                               `json:"comment,omitempty"`
	Functions map[string]map[string]goldenFunc     `json:"functions"`
	Relations map[string]map[string]goldenRelation `json:"relations"`
	Operators map[string]map[string][]string       `json:"operators"`
	Casts     []goldenCast                         `json:"casts,omitempty"`
	Hazards   []goldenHazard                       `json:"hazards,omitempty"`
}

// goldenFunc is "i" / "s" / "v", or an object for what that cannot say.
type goldenFunc struct {
	Volatility string   `json:"volatility"`
	Kind       string   `json:"kind,omitempty"`
	Opaque     bool     `json:"opaque,omitempty"`
	Calls      []string `json:"calls,omitempty"`
	Reads      []string `json:"reads,omitempty"`
}

func (g *goldenFunc) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*g = goldenFunc{Volatility: s}
		return nil
	}
	type plain goldenFunc
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode((*plain)(g))
}

func (g goldenFunc) MarshalJSON() ([]byte, error) {
	if g.Kind == "" && !g.Opaque && len(g.Calls) == 0 && len(g.Reads) == 0 {
		return json.Marshal(g.Volatility)
	}
	type plain goldenFunc
	return json.Marshal(plain(g))
}

type goldenRelation struct {
	Kind     string          `json:"kind"`
	Opaque   string          `json:"opaque,omitempty"`
	Uses     []goldenUse     `json:"uses,omitempty"`
	Triggers []goldenTrigger `json:"triggers,omitempty"`
	Rules    []goldenRule    `json:"rules,omitempty"`
	// Referenced: foreign keys referencing the relation.
	Referenced []goldenFK `json:"referenced,omitempty"`
	Children   []string   `json:"children,omitempty"`
}

type goldenUse struct {
	Via string `json:"via"`
	// When: "" (always), "write", "refresh".
	When  string `json:"when,omitempty"`
	Func  string `json:"func,omitempty"`
	Table string `json:"table,omitempty"`
}

type goldenTrigger struct {
	Name   string `json:"name"`
	Events string `json:"events"`
	Func   string `json:"func"`
}

type goldenRule struct {
	Name   string   `json:"name"`
	Events string   `json:"events"`
	Funcs  []string `json:"funcs,omitempty"`
	Tables []string `json:"tables,omitempty"`
}

type goldenFK struct {
	Name     string `json:"name"`
	Table    string `json:"table"`
	OnDelete string `json:"on_delete"`
	OnUpdate string `json:"on_update"`
}

type goldenCast struct {
	Target  string `json:"target"`
	Source  string `json:"source"`
	Context string `json:"context"`
	Func    string `json:"func"`
}

type goldenHazard struct {
	What string `json:"what"`
	Func string `json:"func"`
}

func mustTable(t testing.TB, s string) policy.Table {
	t.Helper()
	tb, err := policy.ParseTable(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return tb
}

func mustFunc(t testing.TB, s string) policy.Func { return policy.Func(mustTable(t, s)) }

func firstByte(s string) byte {
	if s == "" {
		return 0
	}
	return s[0]
}

// objects turns the golden catalog into NewCatalog's input.
func (g *goldenCatalog) objects(t testing.TB) CatalogObjects {
	t.Helper()
	var o CatalogObjects
	for _, schema := range sortedKeys(g.Functions) {
		for _, name := range sortedKeys(g.Functions[schema]) {
			f := g.Functions[schema][name]
			if len(f.Volatility) != 1 || !strings.Contains("isv", f.Volatility) {
				t.Fatalf("function %s.%s: volatility %q is not i, s or v", schema, name, f.Volatility)
			}
			cf := CatalogFunc{Schema: schema, Name: name, Volatility: Volatility(f.Volatility[0]),
				Kind: firstByte(f.Kind), OpaqueBody: f.Opaque}
			for _, c := range f.Calls {
				cf.Calls = append(cf.Calls, mustFunc(t, c))
			}
			for _, r := range f.Reads {
				cf.Reads = append(cf.Reads, mustTable(t, r))
			}
			o.Functions = append(o.Functions, cf)
		}
	}
	for _, schema := range sortedKeys(g.Relations) {
		for _, name := range sortedKeys(g.Relations[schema]) {
			r := g.Relations[schema][name]
			cr := CatalogRelation{Schema: schema, Name: name, Kind: firstByte(r.Kind), Opaque: r.Opaque}
			for _, u := range r.Uses {
				cu := CatalogUse{Via: u.Via}
				switch u.When {
				case "":
				case "write":
					cu.When = UseWrite
				case "refresh":
					cu.When = UseRefresh
				default:
					t.Fatalf("relation %s.%s: when %q", schema, name, u.When)
				}
				if u.Func != "" {
					cu.Func = mustFunc(t, u.Func)
				}
				if u.Table != "" {
					cu.Table = mustTable(t, u.Table)
				}
				cr.Uses = append(cr.Uses, cu)
			}
			for _, tr := range r.Triggers {
				cr.Triggers = append(cr.Triggers, CatalogTrigger{Name: tr.Name, Events: ParseEvents(tr.Events), Func: mustFunc(t, tr.Func)})
			}
			for _, ru := range r.Rules {
				cru := CatalogRule{Name: ru.Name, Events: ParseEvents(ru.Events)}
				for _, f := range ru.Funcs {
					cru.Funcs = append(cru.Funcs, mustFunc(t, f))
				}
				for _, tb := range ru.Tables {
					cru.Tables = append(cru.Tables, mustTable(t, tb))
				}
				cr.Rules = append(cr.Rules, cru)
			}
			for _, fk := range r.Referenced {
				cr.Referenced = append(cr.Referenced, CatalogForeignKey{Name: fk.Name, Table: mustTable(t, fk.Table),
					OnDelete: firstByte(fk.OnDelete), OnUpdate: firstByte(fk.OnUpdate)})
			}
			for _, c := range r.Children {
				cr.Children = append(cr.Children, mustTable(t, c))
			}
			o.Relations = append(o.Relations, cr)
		}
	}
	for _, schema := range sortedKeys(g.Operators) {
		for _, name := range sortedKeys(g.Operators[schema]) {
			op := CatalogOperator{Schema: schema, Name: name}
			for _, f := range g.Operators[schema][name] {
				op.Funcs = append(op.Funcs, mustFunc(t, f))
			}
			o.Operators = append(o.Operators, op)
		}
	}
	for _, c := range g.Casts {
		tt := mustTable(t, c.Target)
		o.Casts = append(o.Casts, CatalogCast{TargetSchema: tt.Schema, Target: tt.Name, Source: c.Source,
			Context: firstByte(c.Context), Func: mustFunc(t, c.Func)})
	}
	for _, h := range g.Hazards {
		o.Hazards = append(o.Hazards, CatalogHazard{What: h.What, Func: mustFunc(t, h.Func)})
	}
	return o
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

type catalogCase struct {
	Comment string `json:"comment"`
	SQL     string `json:"sql"`
	// Before are statements run first, in one session: each is classified
	// and applied to the transaction state as the proxy does (BEGIN opens a
	// READ COMMITTED transaction). State then describes the result.
	Before     []string `json:"before,omitempty"`
	AfterWrite string   `json:"after_write,omitempty"`
	// Hazards classifies with the environment's hazards; without it they
	// are left out (they would apply to every case).
	Hazards bool         `json:"hazards,omitempty"`
	Want    *catalogWant `json:"want"`
}

type catalogWant struct {
	Class         string   `json:"class"`
	Reads         []string `json:"reads,omitempty"`
	Writes        []string `json:"writes,omitempty"`
	ReadsReached  []string `json:"reads_reached,omitempty"`
	WritesReached []string `json:"writes_reached,omitempty"`
	Flags         []string `json:"flags,omitempty"`
	Hidden        []string `json:"hidden,omitempty"`
	State         string   `json:"state"`
	Lane          string   `json:"lane"`
	Reason        string   `json:"reason"`
}

func TestCatalogGolden(t *testing.T) {
	path := filepath.Join("testdata", "catalog.json")
	var f catalogFile
	readJSON(t, path, &f)
	objs := f.Catalog.objects(t)
	withHazards := NewClassifier(Config{Catalog: NewCatalog(objs)})
	objs.Hazards, objs.Casts = nil, keepExplicit(objs.Casts)
	plain := NewClassifier(Config{Catalog: NewCatalog(objs)})
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
	reasons := map[string]bool{}
	seen := map[string]bool{}
	for i := range f.Cases {
		c := &f.Cases[i]
		key := fmt.Sprintf("%v|%q|%s|%s", c.Hazards, c.Before, c.AfterWrite, c.SQL)
		if seen[key] {
			t.Errorf("case %d (%s): duplicate", i, c.Comment)
		}
		seen[key] = true
		cl := plain
		if c.Hazards {
			cl = withHazards
		}
		r := rulesFor(c.AfterWrite)
		state := &policy.TxState{Status: policy.TxIdle}
		for _, q := range c.Before {
			st := cl.Classify(q)
			state.Apply(st)
			switch {
			case st.Tx.Kind == policy.TxBegin || state.InBlock():
				state.Ready(policy.TxInBlock)
			default:
				state.Ready(policy.TxIdle)
			}
		}
		st := cl.Classify(c.SQL)
		d := policy.Decide(state, st, r, nil)
		got := &catalogWant{
			Class:         st.Class.String(),
			Reads:         tableStrings(st.Reads),
			Writes:        tableStrings(st.Writes),
			ReadsReached:  tableStrings(st.ReadsReached),
			WritesReached: tableStrings(st.WritesReached),
			Flags:         st.Flags.Names(),
			Hidden:        st.Hidden,
			State:         state.Spec(),
			Lane:          d.Lane.String(),
			Reason:        d.Reason.String(),
		}
		reasons[got.Reason] = true
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
		writeCatalogGolden(t, path, &f)
		return
	}
	for _, r := range []policy.Reason{policy.ReasonUnproven, policy.ReasonWritingFunction, policy.ReasonReadYourWrites,
		policy.ReasonVectorReadInTx, policy.ReasonVectorReadIdle, policy.ReasonTxDependent} {
		if !reasons[r.String()] {
			t.Errorf("%s: no case yields reason %s", path, r)
		}
	}
}

// keepExplicit drops assignment and implicit casts: NewCatalog makes them
// hazards.
func keepExplicit(cs []CatalogCast) []CatalogCast {
	var out []CatalogCast
	for _, c := range cs {
		if c.Context == 'e' {
			out = append(out, c)
		}
	}
	return out
}

func tableStrings(ts []policy.Table) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.String())
	}
	return out
}

// writeCatalogGolden rewrites the file with one line per case field.
func writeCatalogGolden(t *testing.T, path string, f *catalogFile) {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("{\n  \"comment\": " + canon(t, f.Comment) + ",\n")
	for _, kv := range []struct {
		k string
		v any
	}{{"vector_tables", f.VectorTables}, {"catalog", f.Catalog}} {
		ind, err := json.MarshalIndent(kv.v, "  ", "  ")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "  %q: %s,\n", kv.k, unescape(ind))
	}
	b.WriteString("  \"cases\": [\n")
	for i, c := range f.Cases {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(canon(t, c)), &m); err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, k := range []string{"comment", "sql", "before", "after_write", "hazards", "want"} {
			if v, ok := m[k]; ok {
				lines = append(lines, fmt.Sprintf("      %q: %s", k, v))
			}
		}
		b.WriteString("    {\n" + strings.Join(lines, ",\n") + "\n    }")
		if i < len(f.Cases)-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString("  ]\n}\n")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
