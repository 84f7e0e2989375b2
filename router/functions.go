package router

import (
	"strings"

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
// of a name share a row; the most volatile wins).
type CatalogFunc struct {
	Schema     string
	Name       string
	Volatility Volatility
}

// CatalogSnapshot is a [FuncCatalog] built from a list of functions, e.g.
//
//	SELECT n.nspname, p.proname, p.provolatile
//	FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
//
// It is immutable once built and safe for concurrent use.
type CatalogSnapshot struct {
	exact  map[policy.Func]bool // true = volatile
	byName map[string]bool      // any schema; true if any is volatile
}

// NewCatalogSnapshot builds a snapshot. Overloads and same-named functions in
// several schemas combine conservatively: volatile if any of them is.
func NewCatalogSnapshot(funcs []CatalogFunc) *CatalogSnapshot {
	c := &CatalogSnapshot{
		exact:  make(map[policy.Func]bool, len(funcs)),
		byName: make(map[string]bool, len(funcs)),
	}
	for _, f := range funcs {
		v := f.Volatility == Volatile
		k := policy.Func{Schema: f.Schema, Name: f.Name}
		c.exact[k] = c.exact[k] || v
		c.byName[f.Name] = c.byName[f.Name] || v
	}
	return c
}

// Volatile implements [FuncCatalog].
func (c *CatalogSnapshot) Volatile(schema, name string) (volatile, known bool) {
	if c == nil {
		return false, false
	}
	if schema == "" {
		volatile, known = c.byName[name]
		return volatile, known
	}
	volatile, known = c.exact[policy.Func{Schema: schema, Name: name}]
	return volatile, known
}

// effect is what calling a function means for routing.
type effect uint8

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
	"nextval": effWrites | effSeqArg,
	"setval":  effWrites | effSeqArg,

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
	"dblink":              effWrites | effSession,
	"dblink_exec":         effWrites | effSession,
	"dblink_connect":      effWrites | effSession,
	"dblink_connect_u":    effWrites | effSession,
	"dblink_disconnect":   effWrites | effSession,
	"dblink_open":         effWrites | effSession,
	"dblink_fetch":        effWrites | effSession,
	"dblink_close":        effWrites | effSession,
	"dblink_send_query":   effWrites | effSession,
	"dblink_get_result":   effWrites | effSession,
	"dblink_cancel_query": effWrites | effSession,
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
	"pg_backend_pid":              0,
	"pg_my_temp_schema":           effBackend,
	"pg_is_other_temp_schema":     effBackend,
	"pg_listening_channels":       effBackend,
	"inet_client_addr":            effBackend,
	"inet_client_port":            effBackend,
	"inet_server_addr":            effBackend,
	"inet_server_port":            effBackend,
	"pg_notification_queue_usage": effBackend,
}

// funcRules decides the effect of a function call. Immutable.
type funcRules struct {
	writing  []policy.Func
	readOnly []policy.Func
	catalog  FuncCatalog
}

// effect returns what calling schema.name means. Precedence:
//
//  1. built-in writing list (any schema);
//  2. configured writing list (an unqualified entry or call matches any schema);
//  3. configured read-only list (entry unqualified, or same schema as the call);
//  4. built-in read-only list (call unqualified or pg_catalog);
//  5. catalog: volatile → writes; known non-volatile → nothing; unknown →
//     writes (fail safe) unless called as pg_catalog.name;
//  6. no catalog: nothing (only the lists apply).
func (r *funcRules) effect(schema, name string) effect {
	if e, ok := builtinWriting[name]; ok {
		return e
	}
	if strings.HasPrefix(name, "lo_") {
		return effWrites
	}
	for _, f := range r.writing {
		if f.Name == name && (f.Schema == "" || schema == "" || f.Schema == schema) {
			return userWrites
		}
	}
	for _, f := range r.readOnly {
		if f.Name == name && (f.Schema == "" || f.Schema == schema) {
			return 0
		}
	}
	if schema == "" || schema == "pg_catalog" {
		if e, ok := builtinReadOnly[name]; ok {
			return e
		}
	}
	if r.catalog == nil {
		return 0
	}
	volatile, known := r.catalog.Volatile(schema, name)
	switch {
	case known && volatile:
		return userWrites
	case known, schema == "pg_catalog":
		return 0
	}
	return userWrites
}
