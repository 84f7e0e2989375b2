package router

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/txlane/txlane/policy"
)

// FuncCatalog answers volatility questions from a snapshot of pg_proc.
//
// schema is "" when the call was written unqualified; the catalog then
// answers for every function of that name in any schema (volatile if any is),
// because the classifier does not know the search path.
//
// A catalog should cover pg_catalog too: with a catalog present, a function
// it does not know is presumed to write, unless called as pg_catalog.name.
type FuncCatalog interface {
	// Volatile reports whether schema.name is volatile, and whether the
	// catalog knows the function at all.
	Volatile(schema, name string) (volatile, known bool)
}

// Volatility is pg_proc.provolatile.
type Volatility byte

const (
	// Immutable: 'i'.
	Immutable Volatility = 'i'
	// Stable: 's'.
	Stable Volatility = 's'
	// Volatile: 'v'.
	Volatile Volatility = 'v'
)

// CatalogFunc is one row of a catalog snapshot: one function (all overloads
// of a name share a row; the most volatile wins, and what any of them runs
// counts).
type CatalogFunc struct {
	Schema     string
	Name       string
	Volatility Volatility
	// Kind is pg_proc.prokind: 'f' function, 'a' aggregate, 'w' window
	// function, 'p' procedure (0 reads as 'f'). PostgreSQL marks every
	// aggregate immutable: its support functions (Calls) are what count.
	Kind byte
	// OpaqueBody: the catalog does not describe what the body runs and
	// reads: a language other than C, internal and SQL with a BEGIN ATOMIC
	// body, unless the body was read as text (PL/pgSQL or an SQL string,
	// ReadFunctionBody). A function with an opaque body outside pg_catalog
	// that is not volatile (IMMUTABLE or STABLE) may read any table and
	// change the session (a volatile one is presumed to write anyway).
	OpaqueBody bool
	// Calls are functions that calling this one runs as well: an aggregate's
	// support functions (transition, final, combine, serial, deserial and
	// moving-aggregate ones), a planner support function, functions in
	// argument defaults or in a BEGIN ATOMIC body.
	Calls []policy.Func
	// Reads are relations a BEGIN ATOMIC body, or a body read as text,
	// reads.
	Reads []policy.Table
	// Operators, Casts and Attrs are what a body read as text uses besides
	// (FunctionBody): they count as in a statement's text.
	Operators []policy.Func
	Casts     []string
	Attrs     []string
}

// CatalogSnapshot is a [FuncCatalog] built from a list of functions, e.g.
//
//	SELECT n.nspname, p.proname, p.provolatile
//	FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
//
// or, from [NewCatalog], from a full catalog read that also describes
// relations, operators and casts. It is immutable once built and safe for
// concurrent use.
type CatalogSnapshot struct {
	exact  map[policy.Func]*funcInfo
	byName map[string][]policy.Func // every schema's function of a name

	// objects: built by NewCatalog; the fields below are set.
	objects   bool
	rels      map[policy.Table]*relInfo
	relByName map[string][]policy.Table
	ops       map[policy.Func][]policy.Func // operator → its functions
	opByName  map[string][]policy.Func      // operator name → operators
	casts     map[string][]castInfo         // by target type name
	hazards   []CatalogHazard
	// deferrable: CatalogObjects.DeferrableTriggers.
	deferrable bool
	// unread: UnreadCatalog, a stand-in for a catalog not read yet.
	unread bool
}

// NewCatalogSnapshot builds a snapshot of functions alone. Overloads and
// same-named functions in several schemas combine conservatively: volatile
// if any of them is.
func NewCatalogSnapshot(funcs []CatalogFunc) *CatalogSnapshot {
	c := &CatalogSnapshot{
		exact:  make(map[policy.Func]*funcInfo, len(funcs)),
		byName: make(map[string][]policy.Func, len(funcs)),
	}
	for _, f := range funcs {
		k := policy.Func{Schema: f.Schema, Name: f.Name}
		fi := c.exact[k]
		if fi == nil {
			fi = &funcInfo{}
			c.exact[k] = fi
			c.byName[f.Name] = append(c.byName[f.Name], k)
		}
		fi.volatile = fi.volatile || f.Volatility == Volatile
		fi.aggregate = fi.aggregate || f.Kind == 'a'
		fi.window = fi.window || f.Kind == 'w'
		fi.opaqueBody = fi.opaqueBody || (f.OpaqueBody && f.Volatility != Volatile)
		fi.opaqueAny = fi.opaqueAny || f.OpaqueBody
		for _, g := range f.Calls {
			fi.calls = appendFunc(fi.calls, g)
		}
		for _, t := range f.Reads {
			fi.reads = policy.AppendTable(fi.reads, t)
		}
		fi.ops = appendNew(fi.ops, f.Operators)
		fi.casts = appendNew(fi.casts, f.Casts)
		fi.attrs = appendNew(fi.attrs, f.Attrs)
	}
	return c
}

// Volatile implements [FuncCatalog].
func (c *CatalogSnapshot) Volatile(schema, name string) (volatile, known bool) {
	if c == nil {
		return false, false
	}
	if schema == "" {
		keys := c.byName[name]
		for _, k := range keys {
			if c.exact[k].volatile {
				return true, true
			}
		}
		return false, len(keys) > 0
	}
	fi, ok := c.exact[policy.Func{Schema: schema, Name: name}]
	if !ok {
		return false, false
	}
	return fi.volatile, true
}

// effect is what calling a function means for routing.
type effect uint16

const (
	// effWrites: the function writes, takes locks, or has effects outside
	// the query's result (a "writing function").
	effWrites effect = 1 << iota
	// effUnknownWrites: the tables it writes are not known.
	effUnknownWrites
	// effSession: it may change session state (settings).
	effSession
	// effTx: its result is tied to the current transaction.
	effTx
	// effBackend: its result is tied to the backend session.
	effBackend
	// effSeqArg: it writes the sequence named by its first argument.
	effSeqArg
)

// userWrites is the effect of a user function presumed to write.
const userWrites = effWrites | effUnknownWrites | effSession

// builtinWriting lists built-in and common extension functions that write,
// lock, or act outside the query. Matched by name in any schema: for writes,
// a false match only keeps a read on the primary.
var builtinWriting = map[string]effect{
	"nextval": effWrites | effSeqArg | effSeqState,
	"setval":  effWrites | effSeqArg | effSeqState,

	"pg_advisory_lock":                 effWrites,
	"pg_advisory_lock_shared":          effWrites,
	"pg_advisory_xact_lock":            effWrites,
	"pg_advisory_xact_lock_shared":     effWrites,
	"pg_try_advisory_lock":             effWrites,
	"pg_try_advisory_lock_shared":      effWrites,
	"pg_try_advisory_xact_lock":        effWrites,
	"pg_try_advisory_xact_lock_shared": effWrites,
	"pg_advisory_unlock":               effWrites,
	"pg_advisory_unlock_shared":        effWrites,
	"pg_advisory_unlock_all":           effWrites,

	// Large objects: writers, and descriptors that live in one backend's
	// transaction (lo_open/loread). lo_* is matched by prefix too.
	"loread":  effWrites,
	"lowrite": effWrites,

	"pg_notify":                      effWrites,
	"set_config":                     effWrites | effSession,
	"txid_current":                   effWrites | effTx,
	"pg_current_xact_id":             effWrites | effTx,
	"pg_export_snapshot":             effWrites | effTx,
	"pg_switch_wal":                  effWrites,
	"pg_terminate_backend":           effWrites,
	"pg_cancel_backend":              effWrites,
	"pg_reload_conf":                 effWrites,
	"pg_rotate_logfile":              effWrites,
	"pg_create_restore_point":        effWrites,
	"pg_logical_emit_message":        effWrites,
	"pg_promote":                     effWrites,
	"pg_backup_start":                effWrites,
	"pg_backup_stop":                 effWrites,
	"pg_wal_replay_pause":            effWrites,
	"pg_wal_replay_resume":           effWrites,
	"pg_import_system_collations":    effWrites,
	"pg_log_backend_memory_contexts": effWrites,

	"pg_create_physical_replication_slot": effWrites,
	"pg_create_logical_replication_slot":  effWrites,
	"pg_drop_replication_slot":            effWrites,
	"pg_copy_physical_replication_slot":   effWrites,
	"pg_copy_logical_replication_slot":    effWrites,
	"pg_replication_slot_advance":         effWrites,
	"pg_logical_slot_get_changes":         effWrites,
	"pg_logical_slot_get_binary_changes":  effWrites,
	"pg_replication_origin_create":        effWrites,
	"pg_replication_origin_drop":          effWrites,
	"pg_replication_origin_advance":       effWrites,
	"pg_replication_origin_session_setup": effWrites | effSession,
	"pg_replication_origin_session_reset": effWrites | effSession,
	"pg_replication_origin_xact_setup":    effWrites,
	"pg_replication_origin_xact_reset":    effWrites,

	"pg_stat_reset":                          effWrites,
	"pg_stat_reset_shared":                   effWrites,
	"pg_stat_reset_single_table_counters":    effWrites,
	"pg_stat_reset_single_function_counters": effWrites,
	"pg_stat_reset_slru":                     effWrites,
	"pg_stat_reset_replication_slot":         effWrites,
	"pg_stat_reset_subscription_stats":       effWrites,

	// dblink runs arbitrary SQL elsewhere and keeps named connections in the
	// session.
	"dblink":              effWrites | effSession | effRemote,
	"dblink_exec":         effWrites | effSession | effRemote,
	"dblink_connect":      effWrites | effSession | effRemote,
	"dblink_connect_u":    effWrites | effSession | effRemote,
	"dblink_disconnect":   effWrites | effSession | effRemote,
	"dblink_open":         effWrites | effSession | effRemote,
	"dblink_fetch":        effWrites | effSession | effRemote,
	"dblink_close":        effWrites | effSession | effRemote,
	"dblink_send_query":   effWrites | effSession | effRemote,
	"dblink_get_result":   effWrites | effSession | effRemote,
	"dblink_cancel_query": effWrites | effSession | effRemote,
}

// builtinReadOnly lists volatile (or otherwise notable) built-ins that do
// not write. Matched only when called unqualified or as pg_catalog.name, so
// that a user function of the same name in another schema is not trusted.
var builtinReadOnly = map[string]effect{
	"random":              0,
	"random_normal":       0,
	"clock_timestamp":     0,
	"timeofday":           0,
	"statement_timestamp": 0,
	"gen_random_uuid":     0,
	"uuidv4":              0,
	"uuidv7":              0,
	"uuid_generate_v1":    0,
	"uuid_generate_v1mc":  0,
	"uuid_generate_v3":    0,
	"uuid_generate_v4":    0,
	"uuid_generate_v5":    0,
	"pg_sleep":            0,
	"pg_sleep_for":        0,
	"pg_sleep_until":      0,
	"pg_trigger_depth":    0,

	"pg_relation_size":              0,
	"pg_total_relation_size":        0,
	"pg_table_size":                 0,
	"pg_indexes_size":               0,
	"pg_database_size":              0,
	"pg_tablespace_size":            0,
	"pg_current_wal_lsn":            0,
	"pg_current_wal_insert_lsn":     0,
	"pg_current_wal_flush_lsn":      0,
	"pg_is_in_recovery":             0,
	"pg_last_wal_receive_lsn":       0,
	"pg_last_wal_replay_lsn":        0,
	"pg_last_xact_replay_timestamp": 0,
	"pg_stat_clear_snapshot":        0,

	// setseed changes the session's random sequence: no write, but session
	// state (it must not run on a shared connection).
	"setseed": effSession,

	// The transaction's start time and identity.
	"now":                            effTx,
	"transaction_timestamp":          effTx,
	"txid_current_if_assigned":       effTx,
	"pg_current_xact_id_if_assigned": effTx,
	"txid_current_snapshot":          effTx,
	"pg_current_snapshot":            effTx,

	// The backend session's identity and state.
	"currval": effBackend,
	"lastval": effBackend,
	// NOTE: deliberately lane-neutral: it shows which lane ran a read (the
	// proxy's tests probe lanes with it). An offloaded read thus reports a
	// pool backend's pid; signalling that pid needs the pool role's
	// privileges, which client roles do not have.
	"pg_backend_pid":    0,
	"pg_my_temp_schema": effBackend,
	// SESSION_USER: the lane logs in as the pool's user (see walk.go).
	"session_user":                effBackend,
	"pg_is_other_temp_schema":     effBackend,
	"pg_listening_channels":       effBackend,
	"inet_client_addr":            effBackend,
	"inet_client_port":            effBackend,
	"inet_server_addr":            effBackend,
	"inet_server_port":            effBackend,
	"pg_notification_queue_usage": effBackend,

	// What the backend session holds: its prepared statements and cursors
	// (the lane's are other clients', texts and literals included), its
	// settings (pg_settings lists every setting with the lane connection's
	// values; current_setting is handled by the walker, by argument), its
	// memory, the table and function counts of its current transaction
	// (pg_stat_get_xact_*, matched by prefix), its statistics snapshot.
	"pg_prepared_statement":          effBackend,
	"pg_cursor":                      effBackend,
	"pg_show_all_settings":           effBackend,
	"pg_get_backend_memory_contexts": effBackend,
	"pg_stat_get_snapshot_timestamp": effBackend,
	"pg_stat_force_next_flush":       effBackend,
	// Names resolved through the search path, which begins with the
	// session's own temporary schema when it has one: the lane's is another.
	"current_schemas":  effBackend,
	"to_regclass":      effBackend,
	"to_regtype":       effBackend,
	"to_regtypemod":    effBackend,
	"to_regproc":       effBackend,
	"to_regprocedure":  effBackend,
	"to_regoper":       effBackend,
	"to_regoperator":   effBackend,
	"to_regcollation":  effBackend,
	"to_regnamespace":  effBackend,
	"pg_jit_available": effBackend, // the session's jit setting

	// A direct call is judged by its argument (walker.currentSetting); a
	// hidden one (in a view, a policy, a function body) shows none, so its
	// value is the backend's.
	"current_setting": effBackend,
}

// builtinRunsRelations are built-ins that read relations named only when
// they run: table_to_xml and kin read the relation their regclass argument
// names (a view's definition, its policies run), schema_to_xml and
// database_to_xml every table and view of a schema or the database
// (PostgreSQL's "Mapping Tables to XML"). Matched as builtinReadOnly.
// What they run cannot be proven: unproven, unless the walker sees a
// constant relation name (walker.relationArg).
var builtinRunsRelations = map[string]bool{
	"table_to_xml":                  true,
	"table_to_xml_and_xmlschema":    true,
	"schema_to_xml":                 true,
	"schema_to_xml_and_xmlschema":   true,
	"database_to_xml":               true,
	"database_to_xml_and_xmlschema": true,
}

// identityBuiltins are the built-ins whose value is the session's identity
// or one of its settings (current_user and current_role are the same
// function; PostgreSQL 15 stores them as SQL value functions, which the
// catalog read maps to these). A row-level security policy that uses one,
// directly or through a function, keeps reads of its table on the primary
// (see evalCtx.policyIdentity).
var identityBuiltins = map[string]bool{
	"session_user":    true,
	"current_user":    true,
	"current_role":    true,
	"user":            true,
	"current_setting": true,
}

// NotableBuiltinNames and NotableBuiltinPattern name every built-in whose
// call routing cares about even when the function is not volatile: those
// of builtinWriting, builtinReadOnly with an effect, builtinRunsRelations
// and identityBuiltins (the names, sorted), and the backend-dependent
// families (the pattern: a POSIX regular expression, as PostgreSQL's ~ and
// Go's regexp read it). A catalog read keeps the calls of other
// non-volatile pg_catalog functions out of its answer (they run nothing
// else and write nothing), which keeps it small; see proxy/catalog's
// objectsSQL. The names are a list rather than part of the pattern:
// PostgreSQL matches a long alternation slowly (about 50 µs a name).
func NotableBuiltinNames() []string { return slices.Clone(notableNames) }

// NotableBuiltinPattern: see [NotableBuiltinNames].
func NotableBuiltinPattern() string { return notablePattern }

var notableNames = func() []string {
	var names []string
	for n := range builtinWriting {
		names = append(names, n)
	}
	for n, e := range builtinReadOnly {
		if e != 0 {
			names = append(names, n)
		}
	}
	for n := range builtinRunsRelations {
		names = append(names, n)
	}
	for n := range identityBuiltins {
		names = append(names, n)
	}
	slices.Sort(names)
	return slices.Compact(names)
}()

var notablePattern = func() string {
	alts := []string{"^lo_"}
	for _, p := range builtinBackendPrefixes {
		alts = append(alts, "^"+p)
	}
	for _, x := range builtinBackendSuffixes {
		alts = append(alts, "^pg_.*"+x+"$")
	}
	return strings.Join(alts, "|")
}()

// builtinBackendPrefixes and builtinBackendSuffixes name families of
// built-ins whose results are the backend session's (matched, like
// builtinReadOnly, only unqualified or in pg_catalog): the current
// transaction's statistics counts, and the visibility of objects through
// the search path (pg_table_is_visible and its kin; see current_schemas).
var (
	builtinBackendPrefixes = []string{"pg_stat_get_xact_"}
	builtinBackendSuffixes = []string{"_is_visible"}
)

// backendBuiltin reports whether name (unqualified or in pg_catalog) is in
// one of the families of builtinBackendPrefixes and builtinBackendSuffixes.
func backendBuiltin(name string) bool {
	for _, p := range builtinBackendPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	for _, x := range builtinBackendSuffixes {
		if strings.HasPrefix(name, "pg_") && strings.HasSuffix(name, x) {
			return true
		}
	}
	return false
}

// funcRules decides the effect of a function call. Immutable once built
// (memo only caches what the rest determines).
type funcRules struct {
	writing  []policy.Func
	readOnly []policy.Func
	catalog  FuncCatalog
	// snap is catalog when it is a *CatalogSnapshot: what functions run
	// besides themselves, and, from NewCatalog, relations, operators, casts.
	snap *CatalogSnapshot
	// memo caches top-level hidden-object evaluations (see hidden.go), memoN
	// counts them; nil without snap. Shared by the generations Reset makes
	// (same catalog, same lists).
	memo  *sync.Map
	memoN *atomic.Int64
	// hazards are the catalog's hazards that may write, evaluated under
	// these rules.
	hazards []hidden
}

// source says which step of [funcRules.effect]'s precedence decided.
type source uint8

const (
	srcNone         source = iota // no catalog, not listed: nothing known
	srcBuiltin                    // built-in writing or read-only list
	srcWritingList                // policy writing_functions
	srcReadOnlyList               // policy read_only_functions
	srcVolatile                   // the catalog marks it volatile
	srcUnknown                    // the catalog does not know it
	srcCatalog                    // the catalog knows it, not volatile
)

// effect returns what calling schema.name means. Precedence:
//
//  1. built-in writing list (any schema);
//  2. configured writing list (an unqualified entry or call matches any schema);
//  3. configured read-only list (entry unqualified, or same schema as the call);
//  4. built-in read-only list (call unqualified or pg_catalog);
//  5. catalog: volatile → writes; known non-volatile → nothing; unknown →
//     writes (fail safe) unless called as pg_catalog.name;
//  6. no catalog: nothing (only the lists apply).
//
// What a known non-volatile function runs besides itself (an aggregate's
// support functions, ...) is not part of this: see evalCtx.call.
func (r *funcRules) effect(schema, name string) effect {
	e, _ := r.effectFrom(schema, name)
	return e
}

// effectFrom is effect plus the step that decided it.
func (r *funcRules) effectFrom(schema, name string) (effect, source) {
	if e, ok := builtinWriting[name]; ok {
		return e, srcBuiltin
	}
	if strings.HasPrefix(name, "lo_") {
		return effWrites, srcBuiltin
	}
	for _, f := range r.writing {
		if f.Name == name && (f.Schema == "" || schema == "" || f.Schema == schema) {
			return userWrites, srcWritingList
		}
	}
	for _, f := range r.readOnly {
		if f.Name == name && (f.Schema == "" || f.Schema == schema) {
			return 0, srcReadOnlyList
		}
	}
	if schema == "" || schema == "pg_catalog" {
		if e, ok := builtinReadOnly[name]; ok {
			return e, srcBuiltin
		}
		if builtinRunsRelations[name] {
			return unproven, srcBuiltin
		}
		if backendBuiltin(name) {
			return effBackend, srcBuiltin
		}
	}
	if r.catalog == nil {
		return 0, srcNone
	}
	volatile, known := r.catalog.Volatile(schema, name)
	switch {
	case known && volatile:
		return userWrites, srcVolatile
	case known:
		return 0, srcCatalog
	case schema == "pg_catalog":
		return 0, srcNone
	}
	return userWrites, srcUnknown
}
