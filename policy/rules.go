package policy

import (
	"errors"
	"fmt"
	"slices"
)

// AfterWrite is the after_write policy knob: which reads inside a
// transaction must stay on the primary lane once the transaction has written.
type AfterWrite uint8

const (
	// AfterWriteTable (default): a read stays on the primary only if the
	// transaction wrote a table the read touches.
	AfterWriteTable AfterWrite = iota
	// AfterWriteAny: after the first write every read stays on the primary.
	// The safe choice when triggers or cascades write vector tables behind
	// the statement's back.
	AfterWriteAny
)

// String returns "table" or "any".
func (a AfterWrite) String() string {
	if a == AfterWriteAny {
		return "any"
	}
	return "table"
}

// OnUnavailable says what to do when the vector lane is unreachable or
// exhausted past its acquire timeout.
type OnUnavailable uint8

const (
	// FallbackPrimary (default): run the read on the primary lane.
	FallbackPrimary OnUnavailable = iota
	// FallbackError: fail the request.
	FallbackError
)

// String returns "primary" or "error".
func (o OnUnavailable) String() string {
	if o == FallbackError {
		return "error"
	}
	return "primary"
}

// RulesConfig is the routing part of the policy file, as people write it.
// [NewRules] validates it into [Rules].
type RulesConfig struct {
	// VectorTables lists tables whose reads go to the vector lane, in SQL
	// identifier syntax: "public.items", "\"My Schema\".\"Vec\"". An
	// unqualified entry ("items") matches a table of that name in any schema.
	VectorTables []string
	// Discovered adds tables found in the catalog (a column of type vector,
	// halfvec or sparsevec), already schema-qualified and case-exact.
	Discovered []Table
	// AfterWrite is "table" (default) or "any".
	AfterWrite string
	// OnUnavailable is "primary" (default) or "error".
	OnUnavailable string
	// WritingFunctions lists extra functions that write ("schema.name" or
	// "name" for any schema).
	WritingFunctions []string
	// ReadOnlyFunctions lists functions known not to write even though the
	// catalog marks them volatile. An entry matches a call only if the entry
	// is unqualified or the call names the same schema (fail safe).
	ReadOnlyFunctions []string
	// Escape is the default action for writes that would escape another
	// connection's transaction for the same unit of work: reject (default),
	// reroute, log or allow.
	Escape string
	// EscapeOverrides replace Escape for matching tables; first match wins.
	EscapeOverrides []EscapeOverride
	// UnitCommentKeys are the sqlcommenter keys naming a unit of work
	// (default [unit]; traceparent is always read).
	UnitCommentKeys []string
}

// Rules is the validated, immutable routing policy. Build it once per config
// load with [NewRules] and share it; reload swaps in a new value.
type Rules struct {
	// qualified holds schema-qualified vector tables.
	qualified map[Table]struct{}
	// anySchema holds names of vector tables configured without a schema.
	anySchema     map[string]struct{}
	afterWrite    AfterWrite
	onUnavailable OnUnavailable
	writing       []Func
	readOnly      []Func

	escape          EscapeAction
	escapeOverrides []escapeOverride
	unitKeys        []string
}

// NewRules validates cfg. All problems are reported, joined.
func NewRules(cfg RulesConfig) (*Rules, error) {
	r := &Rules{
		qualified: make(map[Table]struct{}),
		anySchema: make(map[string]struct{}),
	}
	var errs []error
	for i, s := range cfg.VectorTables {
		t, err := ParseTable(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("vector_tables[%d]: %w", i, err))
			continue
		}
		r.addVector(t)
	}
	for i, t := range cfg.Discovered {
		if t.Name == "" {
			errs = append(errs, fmt.Errorf("discovered vector table %d: empty name", i))
			continue
		}
		r.addVector(t)
	}
	switch cfg.AfterWrite {
	case "", "table":
		r.afterWrite = AfterWriteTable
	case "any":
		r.afterWrite = AfterWriteAny
	default:
		errs = append(errs, fmt.Errorf("after_write: %q is not one of table, any", cfg.AfterWrite))
	}
	switch cfg.OnUnavailable {
	case "", "primary":
		r.onUnavailable = FallbackPrimary
	case "error":
		r.onUnavailable = FallbackError
	default:
		errs = append(errs, fmt.Errorf("on_unavailable: %q is not one of primary, error", cfg.OnUnavailable))
	}
	parseFuncs := func(field string, in []string) []Func {
		var out []Func
		for i, s := range in {
			f, err := ParseFunc(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s[%d]: %w", field, i, err))
				continue
			}
			if !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
		return out
	}
	r.setEscape(cfg, &errs)
	r.writing = parseFuncs("writing_functions", cfg.WritingFunctions)
	r.readOnly = parseFuncs("read_only_functions", cfg.ReadOnlyFunctions)
	for _, f := range r.readOnly {
		if slices.Contains(r.writing, f) {
			errs = append(errs, fmt.Errorf("function %s is listed as both writing and read-only", f))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return r, nil
}

func (r *Rules) addVector(t Table) {
	if t.Schema == "" {
		r.anySchema[t.Name] = struct{}{}
		return
	}
	r.qualified[t] = struct{}{}
}

// AfterWrite returns the after_write knob.
func (r *Rules) AfterWrite() AfterWrite { return r.afterWrite }

// OnUnavailable returns what to do when the vector lane cannot serve.
func (r *Rules) OnUnavailable() OnUnavailable { return r.onUnavailable }

// VectorTables returns the configured and discovered vector tables, sorted;
// an entry with an empty Schema matches any schema. The slice is a copy.
func (r *Rules) VectorTables() []Table {
	out := make([]Table, 0, len(r.qualified)+len(r.anySchema))
	for n := range r.anySchema {
		out = append(out, Table{Name: n})
	}
	for t := range r.qualified {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b Table) int {
		if a.Schema != b.Schema {
			if a.Schema < b.Schema {
				return -1
			}
			return 1
		}
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// WritingFunctions returns the configured writing functions (a copy).
func (r *Rules) WritingFunctions() []Func { return slices.Clone(r.writing) }

// ReadOnlyFunctions returns the configured read-only functions (a copy).
func (r *Rules) ReadOnlyFunctions() []Func { return slices.Clone(r.readOnly) }

// defaultSearchPath is PostgreSQL's default search_path.
var defaultSearchPath = []string{"$user", "public"}

// IsVector reports whether t names a vector table.
//
// A qualified name matches exactly. An unqualified name matches if a vector
// table of that name was configured without a schema, or exists in a schema
// of searchPath, pg_catalog implicitly first as in PostgreSQL. An empty
// searchPath means PostgreSQL's default ("$user", public). "$user" entries
// must be expanded by the caller ([ExpandSearchPath]); unexpanded ones, and
// pg_temp, are skipped.
//
// NOTE: only vector tables are known here, so the first schema of the path
// holding a vector table of that name wins even if an earlier schema holds a
// plain table of the same name. That only affects which lane serves a read,
// never its result: the vector lane applies the same search_path and role and
// resolves the name exactly as the primary would.
func (r *Rules) IsVector(t Table, searchPath []string) bool {
	return r.isVector(t, searchPath)
}

// MayBeVector reports whether t names a vector table under some search_path:
// IsVector of an unqualified name can change with the session's search_path
// only when MayBeVector holds.
func (r *Rules) MayBeVector(t Table) bool {
	if r == nil || t.Name == "" {
		return false
	}
	if _, ok := r.anySchema[t.Name]; ok {
		return true
	}
	if t.Schema != "" {
		_, ok := r.qualified[t]
		return ok
	}
	for q := range r.qualified {
		if q.Name == t.Name {
			return true
		}
	}
	return false
}

func (r *Rules) isVector(t Table, searchPath []string) bool {
	if r == nil || t.Name == "" {
		return false
	}
	if _, ok := r.anySchema[t.Name]; ok {
		return true
	}
	if len(r.qualified) == 0 {
		return false
	}
	if t.Schema != "" {
		_, ok := r.qualified[t]
		return ok
	}
	if len(searchPath) == 0 {
		searchPath = defaultSearchPath
	}
	if !slices.Contains(searchPath, "pg_catalog") {
		if _, ok := r.qualified[Table{Schema: "pg_catalog", Name: t.Name}]; ok {
			return true
		}
	}
	for _, s := range searchPath {
		if s == "" || s == "$user" || isTempSchema(s) {
			continue
		}
		if _, ok := r.qualified[Table{Schema: s, Name: t.Name}]; ok {
			return true
		}
	}
	return false
}
