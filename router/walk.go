package router

import (
	"slices"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/txlane/txlane/policy"
)

// walker collects the tables, functions and flags of one statement.
//
// It visits every field of every node through protobuf reflection, so a node
// kind it has no special case for is still searched (for sub-selects,
// function calls, parameters); the special cases only add context: which
// RangeVars are written, which names are CTEs, which fields are not tables
// (FOR UPDATE OF alias lists).
type walker struct {
	// fields is walkExcept's stack of populated fields.
	fields []fieldValue

	fr     *funcRules
	flags  policy.Flags
	reads  []policy.Table
	writes []policy.Table
	temp   []policy.Table
	// scopes holds the CTE names visible at this point, innermost last.
	scopes [][]string
	// writeMode: RangeVars reached by the generic walk are written (inside
	// DDL). Queries nested in DDL switch it off again.
	writeMode bool

	// collect: the catalog describes relations, operators and casts
	// (NewCatalog), so what the text uses besides functions is collected for
	// applyHidden (hidden.go).
	collect bool
	// ops are operators used, named or implied (IN, CASE x WHEN, JOIN
	// USING, BETWEEN, ...); casts the type names cast to explicitly; attrs
	// names that may be attribute notation for a function (x.f, (x).f).
	ops   []policy.Func
	casts []string
	attrs []string
	// wev are the tables written by DML commands, with their events;
	// refreshes the materialized views refreshed.
	wev       []writeEv
	refreshes []policy.Table
	// constDep: what the walker found depends on the value of a constant
	// (the setting current_setting('name') reads), so the statement must
	// not be shared with texts that differ in constants (normalize).
	constDep bool
	// customReads: the custom settings current_setting reads by a constant
	// name (see policy.Statement.CustomSettings).
	customReads []string
	// Results of applyHidden (and of hidden function calls).
	readsReached  []policy.Table
	writesReached []policy.Table
	hidden        []string
	// deferredCheck and firesCode: the first of its writes' (see
	// policy.Statement.DeferredCheck and FiresCode).
	deferredCheck, firesCode string
	// sessionCall: see policy.Statement.SessionCall.
	sessionCall string
	// setConfig are the setting names of set_config calls with a constant
	// name (lower case), whose session effect is not in flags (see
	// policy.Statement.SetConfig).
	setConfig []string
	// localSetConfig: a set_config call with a constant name and a
	// constant is_local true was seen; localFlags are its flags, kept
	// apart from flags until the statement is complete (see
	// policy.Statement.SetConfigLocal).
	localSetConfig bool
	localFlags     policy.Flags
	// configCalls are the set_config calls with a constant name (see
	// policy.Statement.ConfigCalls); configFlags the flags of those that
	// are not transaction-local (see policy.Statement.WritesSettingsOnly).
	configCalls []policy.ConfigCall
	configFlags policy.Flags
	// seeds: setseed() or a set_config of seed was called (see
	// policy.Statement.Seeds).
	seeds bool
	// sequences: nextval or setval is called, in the text or in hidden
	// code (see policy.Statement.Sequences).
	sequences bool
	// body: the walker reads a function body (bodies.go) and records in
	// calls every function it calls, SQL value functions as the function
	// they stand for (CURRENT_USER as current_user()).
	body  bool
	calls []policy.Func
}

// visit dispatches on the concrete node type.
func (w *walker) visit(m protoreflect.Message) {
	switch n := m.Interface().(type) {
	case *pg.Node:
		// A oneof wrapper: the walk reaches its single set member.
		w.walk(m)
	case *pg.SelectStmt:
		w.selectStmt(n, m)
	case *pg.InsertStmt:
		ev := EvInsert
		if n.OnConflictClause != nil && n.OnConflictClause.Action == pg.OnConflictAction_ONCONFLICT_UPDATE {
			ev |= EvUpdate
		}
		w.dml(m, n.WithClause, n.Relation, ev)
	case *pg.UpdateStmt:
		w.dml(m, n.WithClause, n.Relation, EvUpdate)
	case *pg.DeleteStmt:
		w.dml(m, n.WithClause, n.Relation, EvDelete)
	case *pg.MergeStmt:
		w.dml(m, n.WithClause, n.Relation, mergeEvents(n))
	case *pg.WithClause:
		// Owners handle their WITH; one met elsewhere is searched as is.
		for _, c := range n.Ctes {
			w.visitNode(c)
		}
	case *pg.IntoClause:
		w.into(n)
	case *pg.LockingClause:
		// NOTE: LockedRels are FOR UPDATE OF alias names, not tables.
		w.flags |= policy.FlagLocking
	case *pg.RangeVar:
		w.rangeVar(n, w.writeMode)
	case *pg.FuncCall:
		w.funcCall(n)
		w.walk(m)
	case *pg.SQLValueFunction:
		if w.body {
			w.valueCall(n.Op)
		}
		switch {
		case txTimeValue(n.Op):
			// The transaction's start time.
			w.flags |= policy.FlagTxDependent
		case n.Op == pg.SQLValueFunctionOp_SVFOP_SESSION_USER:
			// The vector lane logs in as the pool's user and only SET ROLEs
			// to the client's role: current_user matches, session_user not.
			w.flags |= policy.FlagBackendDependent
		}
	case *pg.ParamRef:
		w.flags |= policy.FlagHasParams
	case *pg.A_Expr:
		if w.collect {
			w.aExpr(n)
		}
		w.walk(m)
	case *pg.SubLink:
		if w.collect {
			switch {
			case len(n.OperName) > 0:
				w.operator(n.OperName)
			case n.SubLinkType == pg.SubLinkType_ANY_SUBLINK:
				w.ops = appendOp(w.ops, policy.Func{Name: "="}) // x IN (SELECT ...)
			}
		}
		w.walk(m)
	case *pg.CaseExpr:
		if w.collect && n.Arg != nil {
			w.ops = appendOp(w.ops, policy.Func{Name: "="}) // CASE x WHEN y
		}
		w.walk(m)
	case *pg.JoinExpr:
		if w.collect && (n.IsNatural || len(n.UsingClause) > 0) {
			w.ops = appendOp(w.ops, policy.Func{Name: "="})
		}
		w.walk(m)
	case *pg.SortBy:
		if w.collect && len(n.UseOp) > 0 {
			w.operator(n.UseOp)
		}
		w.walk(m)
	case *pg.TypeCast:
		if w.collect && n.TypeName != nil {
			if _, name := qualifiedName(n.TypeName.Names); name != "" {
				w.casts = appendName(w.casts, name)
			}
		}
		w.walk(m)
	case *pg.ColumnRef:
		// x.f may be f(x): attribute notation. Its fields are names (String,
		// A_Star) only: nothing below to walk.
		if w.collect && len(n.Fields) >= 2 {
			if s := n.Fields[len(n.Fields)-1].GetString_(); s != nil {
				w.attrs = appendName(w.attrs, s.Sval)
			}
		}
	case *pg.A_Indirection:
		if w.collect {
			for _, i := range n.Indirection {
				if s := i.GetString_(); s != nil {
					w.attrs = appendName(w.attrs, s.Sval)
				}
			}
		}
		w.walk(m)
	case *pg.DropStmt:
		w.drop(n)
		w.walk(m)
	default:
		w.walk(m)
	}
}

func (w *walker) visitNode(n *pg.Node) {
	if n != nil {
		w.visit(n.ProtoReflect())
	}
}

// walk visits every message-valued field of m.
func (w *walker) walk(m protoreflect.Message) { w.walkExcept(m) }

// walkExcept is walk minus the named fields, which the caller handled.
//
// NOTE: Message.Range visits fields in an unspecified order; they are
// sorted into declaration order so that tables are reported in a stable
// order. The fields of each level go on w.fields, a stack shared by the
// recursion.
func (w *walker) walkExcept(m protoreflect.Message, skip ...protoreflect.Name) {
	start := len(w.fields)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return true
		}
		for _, s := range skip {
			if fd.Name() == s {
				return true
			}
		}
		w.fields = append(w.fields, fieldValue{fd, v})
		return true
	})
	set := w.fields[start:]
	// Insertion sort: a handful of fields, usually in order already.
	for i := 1; i < len(set); i++ {
		for j := i; j > 0 && set[j].fd.Index() < set[j-1].fd.Index(); j-- {
			set[j], set[j-1] = set[j-1], set[j]
		}
	}
	for _, f := range set {
		w.field(f.fd, f.v)
	}
	w.fields = w.fields[:start]
}

// fieldValue is one populated field of a message being walked.
type fieldValue struct {
	fd protoreflect.FieldDescriptor
	v  protoreflect.Value
}

func (w *walker) field(fd protoreflect.FieldDescriptor, v protoreflect.Value) {
	if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
		return
	}
	switch {
	case fd.IsMap():
		// pg_query has no map fields.
	case fd.IsList():
		l := v.List()
		for i := 0; i < l.Len(); i++ {
			w.visit(l.Get(i).Message())
		}
	default:
		w.visit(v.Message())
	}
}

// selectStmt handles SELECT / VALUES / set operations.
func (w *walker) selectStmt(n *pg.SelectStmt, m protoreflect.Message) {
	pushed := w.with(n.WithClause)
	saved := w.writeMode
	w.writeMode = false
	if n.IntoClause != nil {
		w.flags |= policy.FlagSelectInto
		w.into(n.IntoClause)
	}
	if len(n.LockingClause) > 0 {
		w.flags |= policy.FlagLocking
	}
	w.walkExcept(m, "with_clause", "into_clause", "locking_clause")
	w.writeMode = saved
	w.pop(pushed)
}

// dml handles INSERT / UPDATE / DELETE / MERGE: the target is written with
// events ev, everything else (source, USING, FROM, sub-selects, RETURNING)
// is read.
func (w *walker) dml(m protoreflect.Message, wc *pg.WithClause, target *pg.RangeVar, ev Events) {
	pushed := w.with(wc)
	if target != nil {
		w.rangeVar(target, true)
		w.noteWrite(target, ev, false)
	}
	saved := w.writeMode
	w.writeMode = false
	w.walkExcept(m, "with_clause", "relation")
	w.writeMode = saved
	w.pop(pushed)
}

// with walks the CTEs of wc and pushes their names for the body that
// follows; the caller pops with w.pop. PostgreSQL scoping: in a plain WITH,
// each CTE sees only the CTEs before it (a CTE named like a table it reads
// refers to the table); in WITH RECURSIVE every CTE sees all of them.
func (w *walker) with(wc *pg.WithClause) bool {
	if wc == nil {
		return false
	}
	names := make([]string, 0, len(wc.Ctes))
	if wc.Recursive {
		for _, c := range wc.Ctes {
			if cte := c.GetCommonTableExpr(); cte != nil {
				names = append(names, cte.Ctename)
			}
		}
	}
	w.scopes = append(w.scopes, names)
	top := len(w.scopes) - 1
	saved := w.writeMode
	w.writeMode = false
	for _, c := range wc.Ctes {
		cte := c.GetCommonTableExpr()
		if cte == nil {
			w.visitNode(c)
			continue
		}
		if q := cte.Ctequery; q != nil {
			if q.GetInsertStmt() != nil || q.GetUpdateStmt() != nil || q.GetDeleteStmt() != nil || q.GetMergeStmt() != nil {
				w.flags |= policy.FlagDataModifyingCTE
			}
		}
		w.visit(cte.ProtoReflect())
		if !wc.Recursive {
			w.scopes[top] = append(w.scopes[top], cte.Ctename)
		}
	}
	w.writeMode = saved
	return true
}

func (w *walker) pop(pushed bool) {
	if pushed {
		w.scopes = w.scopes[:len(w.scopes)-1]
	}
}

func (w *walker) isCTE(name string) bool {
	for i := len(w.scopes) - 1; i >= 0; i-- {
		for _, n := range w.scopes[i] {
			if n == name {
				return true
			}
		}
	}
	return false
}

// rangeVar records a table reference.
func (w *walker) rangeVar(rv *pg.RangeVar, write bool) {
	t := policy.Table{Schema: rv.Schemaname, Name: rv.Relname}
	if t.Name == "" {
		return
	}
	// NOTE: a CTE hides a table of the same name only where a table is
	// read. Write targets (INSERT INTO x, UPDATE x, ...) always name a
	// table: PostgreSQL's setTargetTable ignores CTEs.
	if !write && t.Schema == "" && w.isCTE(t.Name) {
		return
	}
	if !write {
		w.reads = policy.AppendTable(w.reads, t)
		if backendRelation(t) {
			w.flags |= policy.FlagBackendDependent
		}
		return
	}
	w.writes = policy.AppendTable(w.writes, t)
	if rv.Relpersistence == "t" || t.Schema == "pg_temp" {
		w.temp = policy.AppendTable(w.temp, policy.Table{Name: t.Name})
	}
}

// into handles SELECT ... INTO and CREATE TABLE AS targets: a new table.
func (w *walker) into(ic *pg.IntoClause) {
	if ic.Rel != nil {
		w.rangeVar(ic.Rel, true)
	}
	if ic.ViewQuery != nil {
		saved := w.writeMode
		w.writeMode = false
		w.visitNode(ic.ViewQuery)
		w.writeMode = saved
	}
}

// drop records the relations a DROP removes (names, not RangeVars).
func (w *walker) drop(n *pg.DropStmt) {
	switch n.RemoveType {
	case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_VIEW, pg.ObjectType_OBJECT_MATVIEW,
		pg.ObjectType_OBJECT_SEQUENCE, pg.ObjectType_OBJECT_INDEX, pg.ObjectType_OBJECT_FOREIGN_TABLE:
	default:
		return
	}
	for _, o := range n.Objects {
		l := o.GetList()
		if l == nil {
			continue
		}
		var parts []string
		for _, it := range l.Items {
			parts = append(parts, it.GetString_().GetSval())
		}
		switch len(parts) {
		case 0:
		case 1:
			w.writes = policy.AppendTable(w.writes, policy.Table{Name: parts[0]})
		default:
			w.writes = policy.AppendTable(w.writes, policy.Table{Schema: parts[len(parts)-2], Name: parts[len(parts)-1]})
		}
	}
}

// funcCall applies the effect of calling a function, with what it runs
// besides (an aggregate's support functions, ...; see hidden.go).
func (w *walker) funcCall(n *pg.FuncCall) {
	schema, name := qualifiedName(n.Funcname)
	if name == "" {
		return
	}
	if w.body {
		w.calls = appendOp(w.calls, policy.Func{Schema: schema, Name: name})
	}
	if name == "current_setting" && (schema == "" || schema == "pg_catalog") {
		w.currentSetting(n)
	}
	h := w.fr.callHidden(schema, name)
	e := h.eff
	w.sequences = w.sequences || e&effSeqState != 0
	if e&(effWrites|effSession) != 0 && e&effSeqArg == 0 && w.sessionCall == "" {
		w.sessionCall = name + "()"
		if h.why != "" {
			w.sessionCall = h.why
		}
	}
	configWrite := false
	if schema == "" || schema == "pg_catalog" {
		switch {
		case name == "current_setting":
			// Judged by its argument above; hidden calls are the backend's.
			e &^= effBackend
		case builtinRunsRelations[name] && w.relationArg(n):
			e &^= unproven
		case name == "setseed":
			w.seeds = true
		}
	}
	if name == "set_config" && (schema == "" || schema == "pg_catalog") && len(n.Args) > 0 {
		// NOTE: an unqualified set_config is pg_catalog's unless the
		// search_path puts a schema holding another set_config(text, text,
		// boolean) before pg_catalog, which nothing else in txlane guards
		// against either.
		if s, ok := constString(n.Args[0]); ok {
			w.constDep = true
			w.configCall(strings.ToLower(s), n.Args)
			// seed, even set transaction-locally, reseeds for the session.
			w.seeds = w.seeds || strings.EqualFold(s, "seed")
			if len(n.Args) == 3 && constTrue(n.Args[2]) {
				// Transaction-local: as SET LOCAL.
				w.localSetConfig = true
				w.localFlags |= flagsOf(e)
				return
			}
			w.setConfig = append(w.setConfig, strings.ToLower(s))
			e &^= effSession
			configWrite = true
		}
	}
	if configWrite {
		// What it writes is a setting: kept apart until the statement is
		// complete (policy.Statement.WritesSettingsOnly).
		w.configFlags |= flagsOf(e)
	} else {
		w.flags |= flagsOf(e)
	}
	for _, t := range h.reads {
		w.readsReached = policy.AppendTable(w.readsReached, t)
	}
	if e != 0 {
		w.noteHidden(h.why)
	}
	if e&effSeqArg != 0 && len(n.Args) > 0 {
		// nextval('s') / setval('s', ...): the sequence, when written as a
		// literal (regclass input syntax).
		if s, ok := constString(n.Args[0]); ok {
			if t, err := policy.ParseTable(s); err == nil {
				w.writes = policy.AppendTable(w.writes, t)
			}
		}
	}
}

// relationArg handles the relation a call of table_to_xml and kin reads
// (builtinRunsRelations): when its first argument is a constant relation
// name (regclass input syntax), that relation is read as a FROM item would
// be, so its views and policies count. It reports whether it was.
func (w *walker) relationArg(n *pg.FuncCall) bool {
	if !strings.HasPrefix(n.Funcname[len(n.Funcname)-1].GetString_().GetSval(), "table_") || len(n.Args) == 0 {
		return false
	}
	s, ok := constString(n.Args[0])
	if !ok {
		return false
	}
	t, err := policy.ParseTable(s)
	if err != nil {
		return false
	}
	w.constDep = true
	w.reads = policy.AppendTable(w.reads, t)
	return true
}

// currentSetting handles current_setting(name [, missing_ok]): the vector
// lane answers it as the client's backend would only for a setting it
// mirrors (policy.MirroredSetting); for any other, or a name that is not a
// constant, the value is the backend's. The result depends on the constant,
// so the statement is not shared with texts that differ in it.
func (w *walker) currentSetting(n *pg.FuncCall) {
	if len(n.Args) == 0 {
		return
	}
	s, ok := constString(n.Args[0])
	if ok {
		w.constDep = true
	}
	switch {
	case !ok || !policy.MirroredSetting(s):
		w.flags |= policy.FlagBackendDependent
	case strings.Contains(s, "."):
		if n := strings.ToLower(s); !slices.Contains(w.customReads, n) {
			w.customReads = append(w.customReads, n)
		}
	}
}

// qualifiedName returns the last two parts of a name list (schema, name).
func qualifiedName(names []*pg.Node) (schema, name string) {
	switch len(names) {
	case 0:
		return "", ""
	case 1:
		return "", names[0].GetString_().GetSval()
	}
	return names[len(names)-2].GetString_().GetSval(), names[len(names)-1].GetString_().GetSval()
}

// configCall records a call of set_config(name, value, is_local) with a
// constant name: its value when a constant or a bind parameter.
func (w *walker) configCall(name string, args []*pg.Node) {
	c := policy.ConfigCall{Name: name, Local: len(args) == 3 && constTrue(args[2])}
	if len(args) > 1 {
		if v, ok := constString(args[1]); ok {
			c.Value, c.Known = v, true
		} else if p := paramNumber(args[1]); p > 0 {
			c.Param, c.Known = p, true
		}
	}
	w.configCalls = append(w.configCalls, c)
}

// paramNumber returns n's bind parameter number ($n, through casts), or 0.
func paramNumber(n *pg.Node) int {
	for n != nil {
		if tc := n.GetTypeCast(); tc != nil {
			n = tc.Arg
			continue
		}
		if p := n.GetParamRef(); p != nil {
			return int(p.Number)
		}
		return 0
	}
	return 0
}

// constTrue reports whether n is a constant that PostgreSQL reads as the
// boolean true (true, or a string such as 'on'; "Boolean Type").
func constTrue(n *pg.Node) bool {
	for n != nil {
		if tc := n.GetTypeCast(); tc != nil {
			n = tc.Arg
			continue
		}
		c := n.GetAConst()
		if c == nil {
			return false
		}
		if b := c.GetBoolval(); b != nil {
			return b.Boolval
		}
		if s := c.GetSval(); s != nil {
			switch strings.ToLower(strings.TrimSpace(s.Sval)) {
			case "t", "tr", "tru", "true", "y", "ye", "yes", "on", "1":
				return true
			}
		}
		if i := c.GetIval(); i != nil && !c.Isnull {
			return i.Ival == 1
		}
		return false
	}
	return false
}

// constString returns the string value of a constant, looking through casts.
func constString(n *pg.Node) (string, bool) {
	for n != nil {
		if tc := n.GetTypeCast(); tc != nil {
			n = tc.Arg
			continue
		}
		if c := n.GetAConst(); c != nil {
			if s := c.GetSval(); s != nil {
				return s.Sval, true
			}
		}
		return "", false
	}
	return "", false
}

// noteWrite records that a DML command writes rv with events ev (for the
// tables the write reaches; see applyHidden).
func (w *walker) noteWrite(rv *pg.RangeVar, ev Events, cascade bool) {
	if !w.collect || rv == nil || rv.Relname == "" {
		return
	}
	t := policy.Table{Schema: rv.Schemaname, Name: rv.Relname}
	for i := range w.wev {
		if w.wev[i].t == t {
			w.wev[i].ev |= ev
			w.wev[i].cascade = w.wev[i].cascade || cascade
			return
		}
	}
	w.wev = append(w.wev, writeEv{t: t, ev: ev, cascade: cascade})
}

// mergeEvents returns the events of MERGE's WHEN clauses (all of insert,
// update and delete when none is recognised).
func mergeEvents(n *pg.MergeStmt) Events {
	var ev Events
	for _, c := range n.MergeWhenClauses {
		mc := c.GetMergeWhenClause()
		if mc == nil {
			continue
		}
		switch mc.CommandType {
		case pg.CmdType_CMD_INSERT:
			ev |= EvInsert
		case pg.CmdType_CMD_UPDATE:
			ev |= EvUpdate
		case pg.CmdType_CMD_DELETE:
			ev |= EvDelete
		}
	}
	if ev == 0 {
		ev = EvInsert | EvUpdate | EvDelete
	}
	return ev
}

// aExpr records the operators an expression uses. BETWEEN is rewritten by
// PostgreSQL into comparisons; the others name their operator ("~~" for
// LIKE, "=" for IN, IS DISTINCT FROM and NULLIF).
func (w *walker) aExpr(n *pg.A_Expr) {
	switch n.Kind {
	case pg.A_Expr_Kind_AEXPR_BETWEEN, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN,
		pg.A_Expr_Kind_AEXPR_BETWEEN_SYM, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM:
		for _, op := range []string{">=", "<=", "<", ">"} {
			w.ops = appendOp(w.ops, policy.Func{Name: op})
		}
	default:
		w.operator(n.Name)
	}
}

// operator records an operator name list ([schema,] op).
func (w *walker) operator(names []*pg.Node) {
	schema, name := qualifiedName(names)
	if name != "" {
		w.ops = appendOp(w.ops, policy.Func{Schema: schema, Name: name})
	}
}

func appendOp(ops []policy.Func, op policy.Func) []policy.Func {
	for _, o := range ops {
		if o == op {
			return ops
		}
	}
	return append(ops, op)
}

func appendName(ns []string, n string) []string {
	for _, m := range ns {
		if m == n {
			return ns
		}
	}
	return append(ns, n)
}
