package router

import (
	"strconv"
	"strings"

	"github.com/txlane/txlane/policy"
)

// Explanation is what `txlane explain "SQL"` shows: the classification, the
// tables, which of them are vector tables, and the route with its reason.
// Field names are stable JSON.
type Explanation struct {
	// SQL is the text explained (empty for the parts of a multi-statement text).
	SQL string `json:"sql,omitempty"`
	// Command is the command name ("SELECT", "SET", "DECLARE CURSOR", ...).
	Command string `json:"command"`
	// Class is the policy.Class name ("Read", "LockingRead", ...).
	Class string `json:"class"`
	// Error is the parse error of an Unknown statement.
	Error string `json:"error,omitempty"`
	// Reads and Writes list tables as written (schema-qualified only if
	// the SQL qualified them), quoted where needed.
	Reads  []string `json:"reads"`
	Writes []string `json:"writes"`
	// VectorTables are the tables read that resolve to vector tables under
	// the given search path.
	VectorTables []string `json:"vector_tables"`
	// Temp lists temporary tables the statement creates.
	Temp []string `json:"temp,omitempty"`
	// ReadsReached and WritesReached list the relations the catalog shows
	// the statement reads and writes besides those it names (views' base
	// tables and policies' relations; cascades, rules, writable views,
	// partitions).
	ReadsReached  []string `json:"reads_reached,omitempty"`
	WritesReached []string `json:"writes_reached,omitempty"`
	// Hidden explains what the statement runs or writes that its text does
	// not name, e.g. "view public.v_items calls volatile public.logit()".
	Hidden []string `json:"hidden,omitempty"`
	// Flags are policy.Flags names ("locking", "has_params", ...).
	Flags []string `json:"flags"`
	// Tx describes a transaction-control statement.
	Tx *ExplainTx `json:"tx,omitempty"`
	// Settings lists SET / RESET changes.
	Settings []policy.Setting `json:"settings,omitempty"`
	// Units are the units of work the text carries in sqlcommenter
	// comments, read with the rules' unit_comment_keys (traceparent always),
	// as the server reads them. A unit set with SET txlane.unit is session
	// state and not shown.
	Units []string `json:"units,omitempty"`
	// Escape is what happens to the text when it may write and another
	// connection holds one of its units in an open transaction: the
	// policy.escape action, or the first matching policy.escape_overrides
	// entry's (policy.Rules.EscapeFor of the tables written). Empty when
	// the text does not write.
	Escape string `json:"escape,omitempty"`
	// State is the transaction state the decision assumed
	// (policy.ParseStateSpec syntax).
	State string `json:"state"`
	// Lane is "primary" or "vector"; Reason the policy.Reason identifier.
	Lane   string `json:"lane"`
	Reason string `json:"reason"`
	// Parts explains each statement of a multi-statement text on its own.
	Parts []Explanation `json:"parts,omitempty"`
}

// ExplainTx shows a transaction-control statement.
type ExplainTx struct {
	// Kind is the policy.TxKind name ("begin", "rollback_to", ...).
	Kind string `json:"kind"`
	// Isolation, ReadOnly and Deferrable are the stated intent; empty when
	// not stated ("true"/"false" otherwise for the last two).
	Isolation  string `json:"isolation,omitempty"`
	ReadOnly   string `json:"read_only,omitempty"`
	Deferrable string `json:"deferrable,omitempty"`
	// Chain: AND CHAIN.
	Chain bool `json:"chain,omitempty"`
	// Savepoint and GID name the savepoint or two-phase transaction.
	Savepoint string `json:"savepoint,omitempty"`
	GID       string `json:"gid,omitempty"`
}

// Explain classifies sql with c and decides its lane for state (nil = idle)
// under rules and searchPath.
func Explain(c *Classifier, sql string, state *policy.TxState, rules *policy.Rules, searchPath []string) Explanation {
	st := c.Classify(sql)
	if state == nil {
		state = &policy.TxState{Status: policy.TxIdle}
	}
	e := explainStatement(st, state, rules, searchPath)
	e.SQL = sql
	if rules != nil {
		e.Units, _ = ExtractUnits(sql, rules.UnitCommentKeys())
	}
	if st.MayWrite() {
		e.Escape = rules.EscapeFor(policy.WrittenTables([]*policy.Statement{st})).String()
	}
	return e
}

func explainStatement(st *policy.Statement, state *policy.TxState, rules *policy.Rules, searchPath []string) Explanation {
	d := policy.Decide(state, st, rules, searchPath)
	e := Explanation{
		Command:      st.Command,
		Class:        st.Class.String(),
		Reads:        tableNames(st.Reads),
		Writes:       tableNames(st.Writes),
		VectorTables: []string{},
		Temp:         tableNames(st.Temp),
		Flags:        st.Flags.Names(),
		Settings:     st.Settings,
		State:        state.Spec(),
		Lane:         d.Lane.String(),
		Reason:       d.Reason.String(),
	}
	if e.Flags == nil {
		e.Flags = []string{}
	}
	if len(e.Temp) == 0 {
		e.Temp = nil
	}
	if len(st.ReadsReached) > 0 {
		e.ReadsReached = tableNames(st.ReadsReached)
	}
	if len(st.WritesReached) > 0 {
		e.WritesReached = tableNames(st.WritesReached)
	}
	e.Hidden = st.Hidden
	if st.Class == policy.Unknown {
		e.Error = st.Reason
	}
	for _, t := range st.Reads {
		if rules.IsVector(t, searchPath) {
			e.VectorTables = append(e.VectorTables, t.String())
		}
	}
	if st.Tx.Kind != policy.TxNone {
		e.Tx = &ExplainTx{
			Kind:       st.Tx.Kind.String(),
			ReadOnly:   st.Tx.Intent.ReadOnly.String(),
			Deferrable: st.Tx.Intent.Deferrable.String(),
			Chain:      st.Tx.Chain,
			Savepoint:  st.Tx.Savepoint,
			GID:        st.Tx.GID,
		}
		if st.Tx.Intent.Isolation != policy.IsolationDefault {
			e.Tx.Isolation = st.Tx.Intent.Isolation.String()
		}
	}
	if st.Flags.Has(policy.FlagMultiStatement) {
		for i := range st.Parts {
			e.Parts = append(e.Parts, explainStatement(&st.Parts[i], state, rules, searchPath))
		}
	}
	return e
}

func tableNames(ts []policy.Table) []string {
	out := make([]string, 0, len(ts))
	for _, t := range ts {
		out = append(out, t.String())
	}
	return out
}

// Lines lays the explanation out as key/value lines, parts of a
// multi-statement text last with their keys prefixed "part N: ": what
// `txlane explain` prints and the admin console's EXPLAIN returns.
func (e Explanation) Lines() [][2]string {
	return e.lines("")
}

func (e Explanation) lines(prefix string) [][2]string {
	var out [][2]string
	add := func(k, v string) { out = append(out, [2]string{prefix + k, v}) }
	list := func(xs []string) string {
		if len(xs) == 0 {
			return "-"
		}
		return strings.Join(xs, ", ")
	}
	add("class", e.Class+" ("+e.Command+")")
	if e.Error != "" {
		add("error", e.Error)
	}
	add("reads", list(e.Reads))
	add("writes", list(e.Writes))
	add("vector tables", list(e.VectorTables))
	if len(e.ReadsReached) > 0 {
		add("reads through", list(e.ReadsReached))
	}
	if len(e.WritesReached) > 0 {
		add("writes reach", list(e.WritesReached))
	}
	add("flags", list(e.Flags))
	for _, h := range e.Hidden {
		add("hidden", h)
	}
	if e.Tx != nil {
		tx := e.Tx.Kind
		if e.Tx.Isolation != "" {
			tx += ", isolation " + e.Tx.Isolation
		}
		add("transaction", tx)
	}
	for _, s := range e.Settings {
		switch {
		case s.ResetAll:
			add("setting", "RESET ALL")
		case s.Reset:
			add("setting", "RESET "+s.Name)
		case s.Local:
			add("setting", s.Name+" = "+s.Value+" (local)")
		default:
			add("setting", s.Name+" = "+s.Value)
		}
	}
	if len(e.Units) > 0 {
		add("units", list(e.Units))
	}
	if e.Escape != "" {
		add("escape", e.Escape+" (if another connection holds its unit of work)")
	}
	add("state", e.State)
	add("route", e.Lane+" ("+e.Reason+")")
	for i, p := range e.Parts {
		out = append(out, p.lines(prefix+"part "+strconv.Itoa(i+1)+": ")...)
	}
	return out
}
