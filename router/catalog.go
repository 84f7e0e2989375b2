package router

import (
	"strings"

	"github.com/txlane/txlane/policy"
)

// Events are the kinds of write a statement makes to a table: the events
// that fire triggers and rules.
type Events uint8

const (
	// EvInsert: INSERT, COPY FROM, MERGE ... INSERT.
	EvInsert Events = 1 << iota
	// EvUpdate: UPDATE, INSERT ... ON CONFLICT DO UPDATE, MERGE ... UPDATE.
	EvUpdate
	// EvDelete: DELETE, MERGE ... DELETE.
	EvDelete
	// EvTruncate: TRUNCATE.
	EvTruncate

	// EvAll is every event.
	EvAll = EvInsert | EvUpdate | EvDelete | EvTruncate
)

// ParseEvents reads events written as letters: i (insert), u (update),
// d (delete), t (truncate), e.g. "iud". Other letters are ignored.
func ParseEvents(s string) Events {
	var e Events
	for _, c := range s {
		switch c {
		case 'i':
			e |= EvInsert
		case 'u':
			e |= EvUpdate
		case 'd':
			e |= EvDelete
		case 't':
			e |= EvTruncate
		}
	}
	return e
}

// String writes e as ParseEvents reads it ("iud").
func (e Events) String() string {
	var b strings.Builder
	for i, c := range "iudt" {
		if e&(1<<i) != 0 {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// words writes e for messages: "insert, update".
func (e Events) words() string {
	var out []string
	for i, w := range []string{"insert", "update", "delete", "truncate"} {
		if e&(1<<i) != 0 {
			out = append(out, w)
		}
	}
	return strings.Join(out, ", ")
}

// UseWhen says when something a relation uses runs.
type UseWhen uint8

const (
	// UseAlways: whenever the relation is read or written (a view's
	// definition, a row-level security policy).
	UseAlways UseWhen = iota
	// UseWrite: when rows are inserted or updated (a column default, a
	// check constraint).
	UseWrite
	// UseRefresh: when a materialized view is refreshed (its definition;
	// reading it reads stored rows).
	UseRefresh
)

// CatalogUse is one function or relation that a relation's definition,
// policies, defaults or constraints use (pg_depend). Exactly one of Func and
// Table is set.
type CatalogUse struct {
	// Via names the user: "definition", "row-level security policy NAME",
	// "default of column NAME", "constraint NAME", "index NAME".
	Via   string
	When  UseWhen
	Func  policy.Func
	Table policy.Table
}

// CatalogTrigger is a user trigger: pg_trigger rows that are not internal
// (foreign-key triggers are, see CatalogForeignKey) and not disabled.
type CatalogTrigger struct {
	Name   string
	Events Events
	// Func is the trigger function. What it writes is unknown.
	Func policy.Func
}

// CatalogDeferrable is a deferrable trigger of a relation (pg_trigger rows
// with tgdeferrable, internal ones included): a write with one of its Events
// may queue an event PostgreSQL checks only at the transaction's end (a
// DEFERRABLE foreign key, unique or exclusion constraint, a deferrable
// constraint trigger; see proxy/catalog's objectsSQL).
type CatalogDeferrable struct {
	// Name is the constraint's name (the trigger's when it has none).
	Name   string
	Events Events
}

// CatalogRule is a non-SELECT rule (pg_rewrite, ev_type insert, update or
// delete).
type CatalogRule struct {
	Name   string
	Events Events
	// Funcs and Tables are what its condition and actions call and name;
	// every table named counts as written.
	Funcs  []policy.Func
	Tables []policy.Table
}

// CatalogForeignKey is a foreign key that references a relation.
type CatalogForeignKey struct {
	Name string
	// Table is the referencing table, which the key's actions write.
	Table policy.Table
	// OnDelete and OnUpdate are pg_constraint.confdeltype / confupdtype:
	// 'a' no action, 'r' restrict, 'c' cascade, 'n' set null,
	// 'd' set default.
	OnDelete, OnUpdate byte
}

// CatalogRelation is one relation (pg_class: tables, partitioned tables,
// views, materialized views, foreign tables, sequences) and what reading or
// writing it runs besides itself.
type CatalogRelation struct {
	Schema string
	Name   string
	// Kind is pg_class.relkind: 'r' table, 'p' partitioned table, 'v' view,
	// 'm' materialized view, 'f' foreign table, 'S' sequence.
	Kind byte
	// Opaque, when not empty, says why what reading or writing the relation
	// runs cannot be proven ("foreign table"); it is then presumed to write.
	Opaque string
	// Uses are what its definition, row-level security policies (only when
	// row security is enabled), defaults, generated columns, check
	// constraints and index expressions call or read.
	Uses []CatalogUse
	// Triggers are its user triggers.
	Triggers []CatalogTrigger
	// Deferrable are its deferrable triggers.
	Deferrable []CatalogDeferrable
	// Rules are its non-SELECT rules.
	Rules []CatalogRule
	// Referenced lists the foreign keys that reference it.
	Referenced []CatalogForeignKey
	// Children are its partitions and inheritance children.
	Children []policy.Table
}

// CatalogOperator is one operator (pg_operator; all operators of a name in a
// schema share a row).
type CatalogOperator struct {
	Schema string
	Name   string
	// Funcs are the functions using the operator runs: oprcode, and the
	// planner's oprrest and oprjoin estimators.
	Funcs []policy.Func
}

// CatalogCast is a cast with a function (pg_cast.castfunc).
type CatalogCast struct {
	// TargetSchema and Target name the type cast to, as pg_type does.
	TargetSchema string
	Target       string
	// Source is the type cast from, for explanations.
	Source string
	// Context is pg_cast.castcontext: 'e' explicit only, 'a' also in
	// assignments, 'i' also implicitly. Assignment and implicit casts can
	// run where the text names no type, so a writing one is a hazard.
	Context byte
	Func    policy.Func
}

// CatalogHazard is a function that may run in any statement without the text
// naming anything that leads to it: an operator or support function of an
// operator family (sorting, grouping, hashing, joins and index scans use
// them), a type's input or output function, a domain's check constraint.
// A hazard that may write makes every statement presumed to write.
type CatalogHazard struct {
	// What says where the function runs, for explanations.
	What string
	Func policy.Func
	// Check: the function is a domain's check constraint, whose value
	// decides only whether the statement fails. What it writes or sets
	// counts; that its value is the transaction's or the backend's (now(),
	// current_setting()) does not make every statement tied to them.
	Check bool
}

// CatalogObjects is what a catalog read found: the input of [NewCatalog].
// Names are as the catalog spells them (schema-qualified, case kept).
type CatalogObjects struct {
	Functions []CatalogFunc
	Relations []CatalogRelation
	Operators []CatalogOperator
	Casts     []CatalogCast
	Hazards   []CatalogHazard
	// DeferrableTriggers: the database has a deferrable trigger that is not
	// a foreign key's own check (pg_trigger.tgdeferrable). Without one no
	// write queues deferred trigger events (see
	// policy.Statement.NoDeferrableTriggers).
	DeferrableTriggers bool
}

// funcInfo is one function name in one schema, its overloads merged.
type funcInfo struct {
	volatile  bool
	aggregate bool
	window    bool
	// opaqueBody: not volatile and its body is opaque (it may read any
	// table and change the session).
	opaqueBody bool
	// opaqueAny: the body is opaque, whatever the volatility.
	opaqueAny bool
	calls     []policy.Func
	reads     []policy.Table
	// ops, casts and attrs: what a body read as text uses besides.
	ops   []policy.Func
	casts []string
	attrs []string
}

// relInfo is one relation with the derived parents.
type relInfo struct {
	CatalogRelation
	parents []policy.Table
}

// castInfo is a cast to one type.
type castInfo struct {
	source string
	fn     policy.Func
}

// NewCatalog builds a snapshot from a full catalog read. Unlike
// [NewCatalogSnapshot], the snapshot knows relations, operators and casts, so
// classification with it also checks what views, policies, operators,
// aggregates, casts, triggers, rules and foreign keys run or write; a
// relation or operator it does not know is then presumed to write.
func NewCatalog(o CatalogObjects) *CatalogSnapshot {
	c := NewCatalogSnapshot(o.Functions)
	c.objects = true
	c.rels = make(map[policy.Table]*relInfo, len(o.Relations))
	c.relByName = make(map[string][]policy.Table, len(o.Relations))
	for i := range o.Relations {
		r := &o.Relations[i]
		k := policy.Table{Schema: r.Schema, Name: r.Name}
		if old, ok := c.rels[k]; ok {
			mergeRelation(&old.CatalogRelation, r)
			continue
		}
		c.rels[k] = &relInfo{CatalogRelation: *r}
		c.relByName[r.Name] = append(c.relByName[r.Name], k)
	}
	for k, r := range c.rels {
		for _, ch := range r.Children {
			if cr, ok := c.rels[ch]; ok {
				cr.parents = policy.AppendTable(cr.parents, k)
			}
		}
	}
	c.ops = make(map[policy.Func][]policy.Func, len(o.Operators))
	c.opByName = make(map[string][]policy.Func, len(o.Operators))
	for _, op := range o.Operators {
		k := policy.Func{Schema: op.Schema, Name: op.Name}
		fs, ok := c.ops[k]
		if !ok {
			c.opByName[op.Name] = append(c.opByName[op.Name], k)
		}
		for _, f := range op.Funcs {
			fs = appendFunc(fs, f)
		}
		c.ops[k] = fs
	}
	c.casts = make(map[string][]castInfo, len(o.Casts))
	for _, ca := range o.Casts {
		c.casts[ca.Target] = append(c.casts[ca.Target], castInfo{source: ca.Source, fn: ca.Func})
		switch ca.Context {
		case 'a', 'i':
			what := "implicit cast from " + ca.Source + " to " + policy.Table{Schema: ca.TargetSchema, Name: ca.Target}.String()
			if ca.Context == 'a' {
				what = "assignment cast from " + ca.Source + " to " + policy.Table{Schema: ca.TargetSchema, Name: ca.Target}.String()
			}
			c.hazards = append(c.hazards, CatalogHazard{What: what, Func: ca.Func})
		}
	}
	c.hazards = append(c.hazards, o.Hazards...)
	c.deferrable = o.DeferrableTriggers
	return c
}

func mergeRelation(dst, src *CatalogRelation) {
	if dst.Opaque == "" {
		dst.Opaque = src.Opaque
	}
	dst.Uses = append(dst.Uses, src.Uses...)
	dst.Triggers = append(dst.Triggers, src.Triggers...)
	dst.Deferrable = append(dst.Deferrable, src.Deferrable...)
	dst.Rules = append(dst.Rules, src.Rules...)
	dst.Referenced = append(dst.Referenced, src.Referenced...)
	for _, t := range src.Children {
		dst.Children = policy.AppendTable(dst.Children, t)
	}
}

func appendFunc(fs []policy.Func, f policy.Func) []policy.Func {
	for _, g := range fs {
		if g == f {
			return fs
		}
	}
	return append(fs, f)
}

// UnreadCatalog is the snapshot to classify with while a catalog that
// should be read has not been (the first read failed): it knows nothing, so
// every relation, operator and function is presumed to write and every
// statement goes to the primary (fail safe).
func UnreadCatalog() *CatalogSnapshot {
	c := NewCatalog(CatalogObjects{})
	c.unread = true
	return c
}

// Objects reports whether the snapshot came from a full catalog read
// ([NewCatalog]) rather than from functions alone.
func (c *CatalogSnapshot) Objects() bool { return c != nil && c.objects }

// noDeferrable reports whether a full catalog showed no deferrable trigger
// other than foreign keys' own checks.
func (c *CatalogSnapshot) noDeferrable() bool { return c.Objects() && !c.deferrable }

// dblinkInstalled reports whether the catalog holds a function that opens
// a dblink connection (dblink_connect, dblink_connect_u: the dblink
// extension, in any schema); false without a catalog.
func (c *CatalogSnapshot) dblinkInstalled() bool {
	return c != nil && (len(c.byName["dblink_connect"]) > 0 || len(c.byName["dblink_connect_u"]) > 0)
}

// relation returns the relations schema.name may name: the one relation when
// qualified, every relation of that name when not (the classifier does not
// know the search path). None when the catalog does not know it.
func (c *CatalogSnapshot) relation(t policy.Table) []policy.Table {
	if t.Schema == "pg_temp" {
		// The session's temporary schema is pg_temp_N: any of them.
		var out []policy.Table
		for _, k := range c.relByName[t.Name] {
			if strings.HasPrefix(k.Schema, "pg_temp_") {
				out = append(out, k)
			}
		}
		return out
	}
	return named(c.rels, c.relByName, t.Schema != "", t, t.Name)
}

// funcKeys returns the functions schema.name may name (see relation).
func (c *CatalogSnapshot) funcKeys(schema, name string) []policy.Func {
	return named(c.exact, c.byName, schema != "", policy.Func{Schema: schema, Name: name}, name)
}

// operators returns the operators schema.name may name (see relation).
func (c *CatalogSnapshot) operators(schema, name string) []policy.Func {
	return named(c.ops, c.opByName, schema != "", policy.Func{Schema: schema, Name: name}, name)
}

// named returns what a catalog name may name: when qualified, key itself if
// exact holds it (else nothing); when not, every object called name in
// byName, whatever its schema.
func named[K comparable, V any](exact map[K]V, byName map[string][]K, qualified bool, key K, name string) []K {
	if !qualified {
		return byName[name]
	}
	if _, ok := exact[key]; ok {
		return []K{key}
	}
	return nil
}
