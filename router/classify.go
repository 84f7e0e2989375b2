package router

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode"
	"unsafe"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/txlane/txlane/policy"
)

// Config holds what classification depends on. It is independent of the
// vector-table set: a cached [policy.Statement] stays valid when only
// policy.Rules change (but see [Classifier.Reset]).
type Config struct {
	// WritingFunctions are extra functions that write (policy
	// writing_functions). An unqualified entry matches any schema.
	WritingFunctions []policy.Func
	// ReadOnlyFunctions are functions trusted not to write even if the
	// catalog marks them volatile (policy read_only_functions).
	ReadOnlyFunctions []policy.Func
	// Catalog is a snapshot of function volatility, or nil. With nil only
	// the lists apply; with a catalog, a function it does not know is
	// presumed to write (fail safe), so it should include pg_catalog.
	Catalog FuncCatalog
	// CacheEntries bounds the number of cached query texts (default 10000).
	CacheEntries int
	// CacheBytes bounds the total size of cached query texts (default 32 MiB).
	// Texts over 16 KiB (typically inline vector literals, unique per query)
	// are classified but not cached.
	CacheBytes int
}

// ConfigFromRules returns a Config with the function lists of r.
func ConfigFromRules(r *policy.Rules, catalog FuncCatalog) Config {
	return Config{
		WritingFunctions:  r.WritingFunctions(),
		ReadOnlyFunctions: r.ReadOnlyFunctions(),
		Catalog:           catalog,
	}
}

// Classifier turns SQL text into a [policy.Statement], caching results by
// exact text and by the keys a text shares with others (see Classify). It is
// safe for concurrent use.
type Classifier struct {
	// cur is replaced wholesale by Reset and Update, so a classification
	// racing with them lands in the discarded generation, never in the new
	// cache with stale settings.
	cur atomic.Pointer[generation]
}

// generation is one immutable configuration plus the cache built under it.
type generation struct {
	cfg   Config
	fr    funcRules
	cache *cache
}

// NewClassifier returns a classifier for cfg.
func NewClassifier(cfg Config) *Classifier {
	c := &Classifier{}
	c.Update(cfg)
	return c
}

// Update replaces the configuration and clears the cache: call it when the
// function lists or the catalog snapshot change.
func (c *Classifier) Update(cfg Config) {
	if cfg.CacheEntries <= 0 {
		cfg.CacheEntries = 10000
	}
	if cfg.CacheBytes <= 0 {
		cfg.CacheBytes = 32 << 20
	}
	g := &generation{
		cfg:   cfg,
		fr:    newFuncRules(cfg),
		cache: newCache(cfg.CacheEntries, cfg.CacheBytes),
	}
	c.cur.Store(g)
}

// Reset clears the cache, keeping the configuration. Call it when rules or
// the vector-table set change; a changed catalog needs [Classifier.Update]
// with the new snapshot.
func (c *Classifier) Reset() {
	g := c.cur.Load()
	c.cur.Store(&generation{cfg: g.cfg, fr: g.fr, cache: newCache(g.cfg.CacheEntries, g.cfg.CacheBytes)})
}

// Len returns the number of cached texts.
func (c *Classifier) Len() int { return c.cur.Load().cache.len() }

// Classify returns the description of sql, from the cache when possible:
// under its exact text, else under the keys it shares with texts that are
// the same statement but for comments and white space (its bare key), or
// for constants too (its normalized key; see sharedKeys). A text that
// differs from a cached one only in a comment, such as a traceparent fresh
// per request, is a cache hit, and looking it up allocates nothing.
//
// NOTE: the result is shared with every other caller of the same text and
// must be treated as read-only.
func (c *Classifier) Classify(sql string) *policy.Statement {
	g := c.cur.Load()
	if st, ok := g.cache.get(sql); ok {
		return st
	}
	k := keyBufs.Get().(*sharedKeys)
	defer keyBufs.Put(k)
	hasBare, hasNorm := k.build(sql)
	// NOTE: the keys alias k's buffers only for these calls: cache.put and
	// the promotion in cache.get copy keys.
	bare, norm := unsafe.String(&k.bare[0], len(k.bare)), unsafe.String(&k.norm[0], len(k.norm))
	if hasBare {
		if st, ok := g.cache.get(bare); ok {
			return st
		}
	}
	if hasNorm {
		if st, ok := g.cache.get(norm); ok {
			return st
		}
	}
	st, constDep := g.classifyText(sql)
	g.cache.put(sql, st) // the text seen is likely to be seen again as is
	if hasBare {
		g.cache.put(bare, st)
	}
	if hasNorm && !constDep && constantFree(st) {
		g.cache.put(norm, st)
	}
	return st
}

// ClassifyBytes is Classify for a query text still in a wire buffer. The
// buffer is not retained (the cache keeps its own copy), so the caller may
// reuse it after the call.
func (c *Classifier) ClassifyBytes(sql []byte) *policy.Statement {
	if len(sql) == 0 {
		return c.Classify("")
	}
	// NOTE: the string aliases the caller's buffer only for this call:
	// cache.put copies keys, and nothing else retains sql.
	return c.Classify(unsafe.String(&sql[0], len(sql)))
}

// classifySafe never panics: a bug in the walker must not kill the proxy's
// connection goroutine, and Unknown routes to the primary lane.
func (g *generation) classifySafe(sql string, parse func(string) (*pg.ParseResult, error)) (st *policy.Statement, constDep bool) {
	defer func() {
		if r := recover(); r != nil {
			st, constDep = &policy.Statement{Class: policy.Unknown, Reason: fmt.Sprintf("internal error: %v", r)}, true
		}
	}()
	return g.classify(sql, parse)
}

// classify parses sql with parse and describes it. Not cached. constDep
// reports that the description depends on the value of a constant beyond
// what constantFree sees (see walker.constDep).
func (g *generation) classify(sql string, parse func(string) (*pg.ParseResult, error)) (*policy.Statement, bool) {
	tree, err := parse(sql)
	if err != nil {
		return &policy.Statement{Class: policy.Unknown, Reason: err.Error()}, false
	}
	if len(tree.Stmts) == 0 {
		return &policy.Statement{Class: policy.Utility, Command: "EMPTY"}, false
	}
	constDep := false
	parts := make([]policy.Statement, 0, len(tree.Stmts))
	for _, raw := range tree.Stmts {
		parts = append(parts, g.statement(raw.Stmt, &constDep))
	}
	st := policy.Merge(parts)
	return &st, constDep
}

// statement describes one parsed statement; it sets *constDep when the
// description depends on the value of a constant.
func (g *generation) statement(n *pg.Node, constDep *bool) policy.Statement {
	if n == nil {
		return policy.Statement{Class: policy.Utility, Command: "EMPTY"}
	}
	m := n.ProtoReflect()
	od := m.Descriptor().Oneofs().ByName("node")
	var inner protoreflect.Message
	if od != nil {
		if fd := m.WhichOneof(od); fd != nil {
			inner = m.Get(fd).Message()
		}
	}
	if inner == nil {
		return policy.Statement{Class: policy.Unknown, Reason: "empty statement node"}
	}

	w := &walker{fr: &g.fr, collect: g.fr.snap.Objects()}
	st := policy.Statement{Class: policy.Read}
	walkAll := true
	// hide: the statement reads or writes rows (DML, COPY, a cursor's
	// query, CREATE TABLE AS), so what its relations, operators and casts
	// run besides, and what its writes reach, count (applyHidden).
	hide := false
	switch x := inner.Interface().(type) {
	case *pg.SelectStmt:
		st.Command, hide = "SELECT", true
		if x.IntoClause != nil {
			st.Command = "SELECT INTO"
		}
	case *pg.InsertStmt:
		st.Command, st.Class, st.Flags, hide = "INSERT", policy.Write, policy.FlagWriteCommand, true
	case *pg.UpdateStmt:
		st.Command, st.Class, st.Flags, hide = "UPDATE", policy.Write, policy.FlagWriteCommand, true
	case *pg.DeleteStmt:
		st.Command, st.Class, st.Flags, hide = "DELETE", policy.Write, policy.FlagWriteCommand, true
	case *pg.MergeStmt:
		st.Command, st.Class, st.Flags, hide = "MERGE", policy.Write, policy.FlagWriteCommand, true
	case *pg.CopyStmt:
		st.Flags |= policy.FlagCopy
		walkAll, hide = false, true
		switch {
		case x.IsFrom:
			st.Command, st.Class = "COPY FROM", policy.Write
			st.Flags |= policy.FlagWriteCommand
			if x.Relation != nil {
				w.rangeVar(x.Relation, true)
				w.noteWrite(x.Relation, EvInsert, false)
			}
		default:
			st.Command = "COPY TO"
			if x.Filename != "" || x.IsProgram {
				// Writes a file or runs a program on the server host: not
				// a pure read, and it must happen where the client expects.
				st.Class = policy.Utility
			}
			if x.Relation != nil {
				w.rangeVar(x.Relation, false)
			}
		}
		w.visitNode(x.Query)
		w.visitNode(x.WhereClause)
	case *pg.TruncateStmt:
		st.Command, st.Class, st.Flags, hide = "TRUNCATE", policy.Write, policy.FlagWriteCommand, true
		w.writeMode = true
		for _, r := range x.Relations {
			w.noteWrite(r.GetRangeVar(), EvTruncate, x.Behavior == pg.DropBehavior_DROP_CASCADE)
		}
	case *pg.CreateTableAsStmt:
		if x.Objtype == pg.ObjectType_OBJECT_MATVIEW {
			st.Command, st.Class = "CREATE MATERIALIZED VIEW", policy.DDL
		} else {
			st.Command, st.Class, st.Flags, hide = "CREATE TABLE AS", policy.Write, policy.FlagWriteCommand, true
		}
		if ex := x.GetQuery().GetExecuteStmt(); ex != nil {
			// CREATE TABLE ... AS EXECUTE name: it runs a prepared
			// statement whose text is not here (as EXECUTE).
			st.PrepareName = ex.Name
			st.Flags |= policy.FlagSQLPrepare | policy.FlagWritesUnknown | policy.FlagMayChangeSession
		}
	case *pg.RefreshMatViewStmt:
		st.Command, st.Class, st.Flags, hide = "REFRESH MATERIALIZED VIEW", policy.Write, policy.FlagWriteCommand, true
		w.writeMode = true
		if w.collect && x.Relation != nil {
			w.refreshes = append(w.refreshes, policy.Table{Schema: x.Relation.Schemaname, Name: x.Relation.Relname})
		}
	case *pg.ExplainStmt:
		analyze, fromConst := explainAnalyze(x.Options)
		if fromConst {
			// EXPLAIN (ANALYZE 0) and (ANALYZE 1) normalize alike.
			*constDep = true
		}
		if analyze && x.Query != nil {
			// EXPLAIN ANALYZE executes the statement: it is that statement.
			in := g.statement(x.Query, constDep)
			in.Command = "EXPLAIN ANALYZE " + in.Command
			in.Flags |= policy.FlagExplain
			return in
		}
		// Plain EXPLAIN plans but does not execute: nothing is read or
		// written, no function runs. Utility, no tables.
		st.Command, st.Class, st.Flags = "EXPLAIN", policy.Utility, policy.FlagExplain
		walkAll = false
	case *pg.DoStmt:
		st.Command, st.Class = "DO", policy.Write
		st.Flags = policy.FlagWriteCommand | policy.FlagWritesUnknown | policy.FlagMayChangeSession
		walkAll = false
	case *pg.CallStmt:
		st.Command, st.Class = "CALL", policy.Write
		st.Flags = policy.FlagWriteCommand | policy.FlagWritesUnknown | policy.FlagMayChangeSession
	case *pg.TransactionStmt:
		st.Class, st.Command, st.Tx = policy.TxControl, txCommand(x), txControl(x)
		walkAll = false
	case *pg.VariableSetStmt:
		g.variableSet(&st, x)
		walkAll = false
	case *pg.VariableShowStmt:
		st.Command, st.Class = "SHOW", policy.Utility
		walkAll = false
	case *pg.ConstraintsSetStmt:
		st.Command, st.Class = "SET CONSTRAINTS", policy.Utility
		st.ConstraintsImmediate = !x.Deferred
		walkAll = false
	case *pg.DeclareCursorStmt:
		// The query runs at FETCH; counted now, conservatively.
		st.Command, st.Class, st.Flags, hide = "DECLARE CURSOR", policy.Utility, policy.FlagCursor, true
		st.CursorName = x.Portalname
		st.CursorHold = x.Options&cursorOptHold != 0
	case *pg.FetchStmt:
		st.Command, st.Class, st.Flags = "FETCH", policy.Utility, policy.FlagCursor
		st.CursorName = x.Portalname
		if x.Ismove {
			st.Command = "MOVE"
		}
		walkAll = false
	case *pg.ClosePortalStmt:
		st.Command, st.Class, st.Flags = "CLOSE", policy.Utility, policy.FlagCursor
		st.CursorName = x.Portalname
		walkAll = false
	case *pg.ListenStmt:
		st.Command, st.Class, st.Flags = "LISTEN", policy.Utility, policy.FlagListen
		walkAll = false
	case *pg.UnlistenStmt:
		st.Command, st.Class, st.Flags = "UNLISTEN", policy.Utility, policy.FlagListen
		walkAll = false
	case *pg.NotifyStmt:
		// NOTIFY is queued until commit: transactional, primary only.
		st.Command, st.Class = "NOTIFY", policy.Utility
		walkAll = false
	case *pg.PrepareStmt:
		// PREPARE executes nothing; the prepared query's tables are not
		// touched now.
		st.Command, st.Class, st.Flags = "PREPARE", policy.Utility, policy.FlagSQLPrepare
		st.PrepareName = x.Name
		walkAll = false
	case *pg.ExecuteStmt:
		// The prepared statement's text is not here: presume it writes.
		st.Command, st.Class, st.PrepareName = "EXECUTE", policy.Utility, x.Name
		st.Flags = policy.FlagSQLPrepare | policy.FlagWritesUnknown | policy.FlagMayChangeSession
	case *pg.DeallocateStmt:
		st.Command, st.Class, st.Flags = "DEALLOCATE", policy.Utility, policy.FlagSQLPrepare
		st.Deallocate = &policy.Deallocate{Name: x.Name, All: x.Isall}
		walkAll = false
	case *pg.DiscardStmt:
		st.Command, st.Class, st.Flags = "DISCARD", policy.Utility, policy.FlagMayChangeSession
		st.Discard = discardKind(x.Target)
		walkAll = false
	case *pg.VacuumStmt:
		st.Command, st.Class = "VACUUM", policy.Utility
		if !x.IsVacuumcmd {
			st.Command = "ANALYZE"
		}
	case *pg.LockStmt:
		// LOCK TABLE: an explicit lock blocks other backends' reads (ACCESS
		// EXCLUSIVE) for the rest of the transaction, so it counts as a
		// write of those tables.
		st.Command, st.Class = "LOCK", policy.Utility
		w.writeMode = true
	case *pg.CheckPointStmt:
		st.Command, st.Class = "CHECKPOINT", policy.Utility
		walkAll = false
	case *pg.LoadStmt:
		st.Command, st.Class, st.Flags = "LOAD", policy.Utility, policy.FlagMayChangeSession
		walkAll = false
	case *pg.AlterSystemStmt:
		st.Command, st.Class = "ALTER SYSTEM", policy.Utility
		walkAll = false
	default:
		// DDL and anything newer than this code: primary, and every
		// relation it names counts as written (DDL also marks the
		// transaction as schema-changed; see policy.TxState).
		st.Command, st.Class = ddlCommand(string(inner.Descriptor().Name())), policy.DDL
		w.writeMode = true
	}
	if walkAll {
		w.visit(inner)
	}
	if hide {
		w.applyHidden()
		st.CatalogChecked = g.fr.snap.Objects()
		st.NoDeferrableTriggers = g.fr.snap.noDeferrable()
	}

	// The flags of everything but transaction-local set_config calls.
	others := st.Flags | w.flags
	if w.localSetConfig {
		const their = policy.FlagWritingFunction | policy.FlagMayChangeSession
		st.SetConfigLocal = len(w.setConfig) == 0 && others&their == 0
	}
	if len(w.setConfig) > 0 {
		// The session changes of set_config calls with constant names are
		// named, unless anything else may change the session too (local
		// calls change nothing past the transaction).
		if others&policy.FlagMayChangeSession == 0 {
			st.SetConfig = w.setConfig
		}
		w.flags |= policy.FlagMayChangeSession
	}
	// Without the settings set_config calls write: is anything else
	// written?
	besides := policy.MorePrimaryBound(st.Class, computedClass(st.Flags|w.flags, w.writes))
	w.flags |= w.localFlags | w.configFlags
	st.Flags |= w.flags
	if g.fr.snap.dblinkInstalled() && st.Flags&(policy.FlagWritesUnknown|policy.FlagReachesUnknown|policy.FlagReadsUnknown|policy.FlagUnproven) != 0 {
		// Code txlane cannot read may call dblink_connect (fail safe).
		st.Flags |= policy.FlagDblink
	}
	st.ConfigCalls = w.configCalls
	st.CustomSettings = w.customReads
	st.Seeds = st.Seeds || w.seeds
	st.Sequences = st.Sequences || w.sequences
	*constDep = *constDep || w.constDep
	st.Reads, st.Writes, st.Temp = w.reads, w.writes, w.temp
	st.ReadsReached, st.WritesReached, st.Hidden = w.readsReached, w.writesReached, w.hidden
	st.DeferredCheck, st.FiresCode, st.SessionCall = w.deferredCheck, w.firesCode, w.sessionCall
	st.Class = policy.MorePrimaryBound(st.Class, computedClass(st.Flags, st.Writes))
	st.WritesSettingsOnly = st.Class == policy.Write && (besides == policy.Read || besides == policy.LockingRead)
	return st
}

// computedClass is the class flags and the tables written make a
// statement.
func computedClass(flags policy.Flags, writes []policy.Table) policy.Class {
	switch {
	case len(writes) > 0 || flags&(policy.FlagWriteCommand|policy.FlagWritingFunction|
		policy.FlagDataModifyingCTE|policy.FlagSelectInto|policy.FlagWritesUnknown) != 0:
		return policy.Write
	case flags.Has(policy.FlagLocking):
		return policy.LockingRead
	}
	return policy.Read
}

// explainAnalyze reports whether EXPLAIN options include a true ANALYZE,
// and whether an argument decided it (ANALYZE 0, ANALYZE 'off', which may
// be a constant).
func explainAnalyze(opts []*pg.Node) (on, arg bool) {
	for _, o := range opts {
		d := o.GetDefElem()
		if d == nil || d.Defname != "analyze" {
			continue
		}
		on = defBool(d.Arg, true)
		arg = arg || d.Arg != nil
	}
	return on, arg
}

// defBool evaluates a DefElem argument like PostgreSQL's defGetBoolean.
func defBool(arg *pg.Node, def bool) bool {
	if arg == nil {
		return def
	}
	if i := arg.GetInteger(); i != nil {
		return i.Ival != 0
	}
	if c := arg.GetAConst(); c != nil {
		if i := c.GetIval(); i != nil {
			return i.Ival != 0
		}
		if b := c.GetBoolval(); b != nil {
			return b.Boolval
		}
		if s := c.GetSval(); s != nil {
			return policyBool(s.Sval, def)
		}
	}
	if b := arg.GetBoolean(); b != nil {
		return b.Boolval
	}
	if s := arg.GetString_(); s != nil {
		return policyBool(s.Sval, def)
	}
	// Unrecognised: presume it executes (the write-safe reading).
	return true
}

func policyBool(s string, def bool) bool {
	switch strings.ToLower(s) {
	case "true", "on", "yes", "1", "t", "y":
		return true
	case "false", "off", "no", "0", "f", "n":
		return false
	}
	return def
}

// cursorOptHold is CURSOR_OPT_HOLD of DeclareCursorStmt.options
// (PostgreSQL's parsenodes.h): DECLARE ... WITH HOLD.
const cursorOptHold = 0x0020

// txKinds maps each transaction statement kind to its command name
// (Statement.Command) and its policy kind.
var txKinds = map[pg.TransactionStmtKind]struct {
	command string
	kind    policy.TxKind
}{
	pg.TransactionStmtKind_TRANS_STMT_BEGIN:             {"BEGIN", policy.TxBegin},
	pg.TransactionStmtKind_TRANS_STMT_START:             {"START TRANSACTION", policy.TxBegin},
	pg.TransactionStmtKind_TRANS_STMT_COMMIT:            {"COMMIT", policy.TxCommit},
	pg.TransactionStmtKind_TRANS_STMT_ROLLBACK:          {"ROLLBACK", policy.TxRollback},
	pg.TransactionStmtKind_TRANS_STMT_SAVEPOINT:         {"SAVEPOINT", policy.TxSavepoint},
	pg.TransactionStmtKind_TRANS_STMT_RELEASE:           {"RELEASE", policy.TxRelease},
	pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:       {"ROLLBACK TO SAVEPOINT", policy.TxRollbackTo},
	pg.TransactionStmtKind_TRANS_STMT_PREPARE:           {"PREPARE TRANSACTION", policy.TxPrepareTransaction},
	pg.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED:   {"COMMIT PREPARED", policy.TxCommitPrepared},
	pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED: {"ROLLBACK PREPARED", policy.TxRollbackPrepared},
}

// txCommand is x's command name; "TRANSACTION" for a kind txKinds lacks.
func txCommand(x *pg.TransactionStmt) string {
	if k, ok := txKinds[x.Kind]; ok {
		return k.command
	}
	return "TRANSACTION"
}

// txControl is x as policy sees it; Kind stays TxNone for a kind txKinds
// lacks.
func txControl(x *pg.TransactionStmt) policy.TxCommand {
	tc := policy.TxCommand{Kind: txKinds[x.Kind].kind, Chain: x.Chain, Savepoint: x.SavepointName, GID: x.Gid}
	if tc.Kind == policy.TxBegin {
		tc.Intent = txIntent(x.Options)
	}
	return tc
}

// txIntent reads transaction_isolation / transaction_read_only /
// transaction_deferrable DefElems (BEGIN, SET TRANSACTION, SET SESSION
// CHARACTERISTICS AS TRANSACTION).
func txIntent(opts []*pg.Node) policy.TxIntent {
	var in policy.TxIntent
	for _, o := range opts {
		d := o.GetDefElem()
		if d == nil {
			continue
		}
		switch d.Defname {
		case "transaction_isolation":
			if s, ok := constString(d.Arg); ok {
				in.Isolation, _ = policy.ParseIsolation(s)
			}
		case "transaction_read_only":
			in.ReadOnly = optBool(defBool(d.Arg, true))
		case "transaction_deferrable":
			in.Deferrable = optBool(defBool(d.Arg, true))
		}
	}
	return in
}

func optBool(b bool) policy.OptBool {
	if b {
		return policy.OptTrue
	}
	return policy.OptFalse
}

func onOff(o policy.OptBool) string {
	if o == policy.OptTrue {
		return "on"
	}
	return "off"
}

// variableSet describes SET / RESET.
func (g *generation) variableSet(st *policy.Statement, x *pg.VariableSetStmt) {
	st.Class, st.Command = policy.Session, "SET"
	name := strings.ToLower(x.Name)
	switch x.Kind {
	case pg.VariableSetKind_VAR_SET_MULTI:
		switch name {
		case "transaction", "transaction snapshot":
			// SET TRANSACTION: the current transaction only.
			st.Class, st.Command = policy.TxControl, "SET TRANSACTION"
			st.Tx = policy.TxCommand{Kind: policy.TxSetTransaction, Intent: txIntent(x.Args)}
		case "session characteristics":
			// Equivalent to setting the default_transaction_* GUCs.
			in := txIntent(x.Args)
			if in.Isolation != policy.IsolationDefault {
				st.Settings = append(st.Settings, policy.Setting{Name: "default_transaction_isolation", Value: in.Isolation.String()})
			}
			if in.ReadOnly != policy.OptUnset {
				st.Settings = append(st.Settings, policy.Setting{Name: "default_transaction_read_only", Value: onOff(in.ReadOnly)})
			}
			if in.Deferrable != policy.OptUnset {
				st.Settings = append(st.Settings, policy.Setting{Name: "default_transaction_deferrable", Value: onOff(in.Deferrable)})
			}
		default:
			st.Flags |= policy.FlagMayChangeSession
		}
	case pg.VariableSetKind_VAR_SET_VALUE:
		v, exact := settingValue(name, x.Args)
		if !exact {
			st.Flags |= policy.FlagMayChangeSession
		}
		st.Settings = append(st.Settings, policy.Setting{Name: name, Value: v, Local: x.IsLocal})
		st.Seeds = name == "seed"
	case pg.VariableSetKind_VAR_SET_DEFAULT:
		st.Settings = append(st.Settings, policy.Setting{Name: name, Local: x.IsLocal, Reset: true})
	case pg.VariableSetKind_VAR_SET_CURRENT:
		// SET x FROM CURRENT: the value is whatever the server holds.
		st.Flags |= policy.FlagMayChangeSession
		st.Settings = append(st.Settings, policy.Setting{Name: name, Local: x.IsLocal})
		st.Seeds = name == "seed"
	case pg.VariableSetKind_VAR_RESET:
		st.Command = "RESET"
		st.Settings = append(st.Settings, policy.Setting{Name: name, Reset: true})
	case pg.VariableSetKind_VAR_RESET_ALL:
		st.Command = "RESET"
		st.Settings = append(st.Settings, policy.Setting{ResetAll: true})
	default:
		st.Flags |= policy.FlagMayChangeSession
	}
}

// listQuoteGUCs are the settings PostgreSQL flags GUC_LIST_QUOTE: their list
// elements are stored as quoted identifiers when needed.
var listQuoteGUCs = map[string]bool{
	"search_path":               true,
	"temp_tablespaces":          true,
	"session_preload_libraries": true,
	"local_preload_libraries":   true,
	"shared_preload_libraries":  true,
}

// settingValue flattens SET arguments as PostgreSQL's
// flatten_set_variable_args does: items joined by ", ", and, for
// list-quoted settings, each string item quoted as an identifier when
// needed (so SET search_path = a, "B" stores `a, "B"`, and
// SET search_path = 'a, b' stores one schema named "a, b"). exact is false
// when an argument is not a plain constant (e.g. SET TIME ZONE INTERVAL ...),
// whose stored form we do not reproduce.
func settingValue(name string, args []*pg.Node) (v string, exact bool) {
	quote := listQuoteGUCs[name]
	var b strings.Builder
	exact = true
	for i, a := range args {
		if i > 0 {
			b.WriteString(", ")
		}
		c := a.GetAConst()
		if c == nil {
			exact = false
			continue
		}
		switch {
		case c.GetSval() != nil:
			s := c.GetSval().Sval
			if quote {
				s = policy.QuoteIdent(s)
			}
			b.WriteString(s)
		case c.GetIval() != nil:
			b.WriteString(strconv.Itoa(int(c.GetIval().Ival)))
		case c.GetFval() != nil:
			b.WriteString(c.GetFval().Fval)
		case c.GetBoolval() != nil:
			b.WriteString(strconv.FormatBool(c.GetBoolval().Boolval))
		default:
			exact = false
		}
	}
	if !exact {
		return "", false
	}
	return b.String(), true
}

func discardKind(m pg.DiscardMode) policy.DiscardKind {
	switch m {
	case pg.DiscardMode_DISCARD_ALL:
		return policy.DiscardAll
	case pg.DiscardMode_DISCARD_PLANS:
		return policy.DiscardPlans
	case pg.DiscardMode_DISCARD_SEQUENCES:
		return policy.DiscardSequences
	case pg.DiscardMode_DISCARD_TEMP:
		return policy.DiscardTemp
	}
	return policy.DiscardNone
}

// ddlCommands names common DDL node types; others are derived from the
// node name (AlterTableStmt → ALTER TABLE).
var ddlCommands = map[string]string{
	"CreateStmt":          "CREATE TABLE",
	"IndexStmt":           "CREATE INDEX",
	"ViewStmt":            "CREATE VIEW",
	"CreateSeqStmt":       "CREATE SEQUENCE",
	"AlterSeqStmt":        "ALTER SEQUENCE",
	"CreateTrigStmt":      "CREATE TRIGGER",
	"RuleStmt":            "CREATE RULE",
	"CreatedbStmt":        "CREATE DATABASE",
	"DropdbStmt":          "DROP DATABASE",
	"RenameStmt":          "ALTER RENAME",
	"CreateFunctionStmt":  "CREATE FUNCTION",
	"CreateExtensionStmt": "CREATE EXTENSION",
	"CreateSchemaStmt":    "CREATE SCHEMA",
	"DefineStmt":          "CREATE",
	"CompositeTypeStmt":   "CREATE TYPE",
	"CreateEnumStmt":      "CREATE TYPE",
}

func ddlCommand(node string) string {
	if c, ok := ddlCommands[node]; ok {
		return c
	}
	node = strings.TrimSuffix(node, "Stmt")
	var b strings.Builder
	for i, r := range node {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte(' ')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}
