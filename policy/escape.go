package policy

import (
	"errors"
	"fmt"
	"path"
)

// EscapeAction is what happens to a write carrying a unit of work that
// another connection holds in an open transaction: the write would commit
// outside that transaction and survive its rollback.
//
// NOTE: the zero value is EscapeReject, so that an unset action fails safe.
type EscapeAction uint8

const (
	// EscapeReject fails the write with a clear error; nothing is written.
	EscapeReject EscapeAction = iota
	// EscapeReroute runs the write on the holder's backend, inside its
	// transaction, so it commits or rolls back with it.
	EscapeReroute
	// EscapeLog allows the write, logs it and counts it (for rollout).
	EscapeLog
	// EscapeAllow allows the write.
	EscapeAllow
)

var escapeNames = [...]string{"reject", "reroute", "log", "allow"}

// String returns the action as the policy file spells it.
func (a EscapeAction) String() string {
	return nameOf(escapeNames[:], a, "escape(%d)")
}

// ParseEscapeAction parses reject, reroute, log or allow.
func ParseEscapeAction(s string) (EscapeAction, error) {
	if a, ok := parseName[EscapeAction](escapeNames[:], s); ok {
		return a, nil
	}
	return EscapeReject, fmt.Errorf("escape: %q is not one of reject, reroute, log, allow", s)
}

// EscapeOverride is one policy.escape_overrides entry: the action for writes
// to tables whose schema.table matches a glob (path.Match syntax).
type EscapeOverride struct {
	Table  string
	Escape string
}

// CheckTablePattern reports whether pattern can be an escape override's
// table: a non-empty glob in path.Match syntax (*, ?, [...]) matched against
// schema.table. The config file's check and [NewRules] both use it.
func CheckTablePattern(pattern string) error {
	if pattern == "" {
		return errors.New("empty table pattern")
	}
	if _, err := path.Match(pattern, ""); err != nil {
		return fmt.Errorf("bad table pattern %q: %w", pattern, err)
	}
	return nil
}

type escapeOverride struct {
	pattern string
	action  EscapeAction
}

// EscapeFor returns the action for a write to tables: the first override
// matching a table gives that table's action (the default otherwise), and the
// strictest of the tables' actions applies (reject, then reroute, log,
// allow). A write whose tables are unknown (no tables) gets the default.
//
// An unqualified table matches a pattern written for its name alone or for
// public.name: the proxy does not resolve it against the search path here,
// so an override meant for another schema's table of that name does not
// apply (the default, normally reject, does).
func (r *Rules) EscapeFor(tables []Table) EscapeAction {
	if r == nil {
		return EscapeReject
	}
	if len(tables) == 0 {
		return r.escape
	}
	action := EscapeAllow
	for _, t := range tables {
		a := r.escapeForTable(t)
		if a < action {
			action = a
		}
	}
	return action
}

func (r *Rules) escapeForTable(t Table) EscapeAction {
	for _, o := range r.escapeOverrides {
		if t.Schema != "" {
			if ok, _ := path.Match(o.pattern, t.Schema+"."+t.Name); ok {
				return o.action
			}
			continue
		}
		if ok, _ := path.Match(o.pattern, t.Name); ok {
			return o.action
		}
		if ok, _ := path.Match(o.pattern, "public."+t.Name); ok {
			return o.action
		}
	}
	return r.escape
}

// Escape returns the default escape action.
func (r *Rules) Escape() EscapeAction { return r.escape }

// UnitCommentKeys returns the sqlcommenter keys that name a unit of work.
func (r *Rules) UnitCommentKeys() []string { return r.unitKeys }

func (r *Rules) setEscape(cfg RulesConfig, errs *[]error) {
	if cfg.Escape != "" {
		a, err := ParseEscapeAction(cfg.Escape)
		if err != nil {
			*errs = append(*errs, err)
		}
		r.escape = a
	}
	for i, o := range cfg.EscapeOverrides {
		a, err := ParseEscapeAction(o.Escape)
		if err != nil {
			*errs = append(*errs, fmt.Errorf("escape_overrides[%d]: %w", i, err))
			continue
		}
		if err := CheckTablePattern(o.Table); err != nil {
			*errs = append(*errs, fmt.Errorf("escape_overrides[%d]: %w", i, err))
			continue
		}
		r.escapeOverrides = append(r.escapeOverrides, escapeOverride{pattern: o.Table, action: a})
	}
	r.unitKeys = cfg.UnitCommentKeys
	if r.unitKeys == nil {
		r.unitKeys = []string{"unit"}
	}
}
