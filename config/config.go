package config

import (
	"fmt"
	"strconv"
	"time"
)

// Config is a complete, validated txlane configuration. The YAML key of each
// field is given in its documentation; nested structs are nested mappings.
//
// A Config is immutable once returned by Load or Parse (see the package
// documentation).
type Config struct {
	// Listen (`listen`) is the client-facing host:port txlane accepts
	// PostgreSQL connections on. Default 127.0.0.1:6432.
	Listen string

	// ListenReuseport (`listen_reuseport`) opens Listen with SO_REUSEPORT,
	// so that several txlane processes on one host share its port (the
	// kernel spreads new connections over them). Default false.
	ListenReuseport bool

	// Primary (`primary`) is the libpq connection string of the primary, as a
	// URL (postgres://...) or key=value DSN. It supplies the host, port, TLS
	// settings and connection defaults; each client's own user and database
	// are used for its primary-lane connection. Required; there is no default.
	Primary string

	// ReadPool (`read_pool`) configures the vector lane.
	ReadPool ReadPool

	// Policy (`policy`) holds the routing and transaction-boundary rules.
	Policy Policy

	// Admin (`admin`) configures the administrative endpoints.
	Admin Admin

	// Log (`log`) configures logging.
	Log Log

	// TLS (`tls`) configures TLS towards clients.
	TLS TLS

	// AuthType (`auth_type`) is who authenticates clients: AuthServer (the
	// server, through a relayed login), or txlane itself with AuthSCRAM,
	// AuthMD5 or AuthTrust. Default server.
	AuthType AuthType

	// AuthFile (`auth_file`) is the path of a file of users and their
	// secrets in PgBouncer's userlist.txt format ("user" "secret" per
	// line), read at start and at every reload. Default "".
	AuthFile string

	// AuthUser (`auth_user`) is the user txlane runs AuthQuery as, for
	// users AuthFile does not list; it logs in with its AuthFile entry, or
	// the primary DSN's password when the DSN names the same user. Default
	// "" (no query).
	AuthUser string

	// AuthQuery (`auth_query`) returns a user's name and secret for $1
	// (DefaultAuthQuery: PgBouncer's, every name schema-qualified; it
	// reads pg_authid). Default SELECT rolname, CASE WHEN rolvaliduntil
	// OPERATOR(pg_catalog.<) pg_catalog.now() THEN NULL ELSE rolpassword END
	// FROM pg_catalog.pg_authid WHERE rolname OPERATOR(pg_catalog.=) $1 AND
	// rolcanlogin.
	AuthQuery string

	// AuthDBName (`auth_dbname`) is the database AuthQuery runs in; ""
	// means the database the client asks for. Default "".
	AuthDBName string

	// UnixSocketDir (`unix_socket_dir`) is a directory where txlane also
	// listens on a Unix-domain socket named as PostgreSQL names its own,
	// .s.PGSQL.PORT with listen's port, so that `psql -h DIR -p PORT`
	// reaches txlane. Empty: no socket. Default "".
	UnixSocketDir string

	// MaxClientConn (`max_client_conn`) is the most client connections txlane
	// accepts at once; beyond it new clients are refused with SQLSTATE 53300
	// (too_many_connections). At least 1. Default 1000.
	MaxClientConn int

	// MaxMessageSize (`max_message_size`) caps the body of one client
	// protocol message, in bytes. Written as an integer or as a string with a
	// unit (64MB, 64MiB, 1GB; see ParseSize). Between 8KiB and the protocol's
	// 32-bit limit. Default 64MiB.
	MaxMessageSize Size

	// ClientLoginTimeout (`client_login_timeout`) bounds the time from accept
	// to a completed login. Positive. Default 60s.
	ClientLoginTimeout time.Duration

	// QueryWaitTimeout (`query_wait_timeout`) bounds how long a request may
	// wait for a backend connection. Positive. Default 120s.
	QueryWaitTimeout time.Duration

	// IdleInTransactionTimeout (`idle_in_transaction_timeout`) closes a client
	// that stays idle inside a transaction longer than this. 0 disables it.
	// Default 0s.
	IdleInTransactionTimeout time.Duration

	// ShutdownTimeout (`shutdown_timeout`) is how long a graceful shutdown
	// waits for clients to finish before closing them. Positive. Default 30s.
	ShutdownTimeout time.Duration

	// PoolMode (`pool_mode`) is how long a client holds a primary backend:
	// session (login to logout) or transaction (one transaction at a time;
	// state that cannot move pins the client). Default session.
	PoolMode PoolMode
	// PoolSize (`pool_size`) is the most backends a transaction-mode pool
	// (per database, user and startup parameters) keeps. At least 1.
	// Default 20.
	PoolSize int
	// MaxDBConnections (`max_db_connections`) caps the backends of all the
	// pools of one database together, PgBouncer's setting: clients wait as
	// for pool_size. At least 0; 0 means no cap. Default 0.
	MaxDBConnections int
	// MaxUserConnections (`max_user_connections`) caps the backends of all
	// the pools of one user together, as max_db_connections. Default 0.
	MaxUserConnections int
	// IgnoreStartupParameters (`ignore_startup_parameters`) lists startup
	// parameters dropped from every client's startup message, PgBouncer's
	// setting: neither the server nor the pool key sees them, so clients
	// that differ only in them share a pool. Not user or database. Default
	// [].
	IgnoreStartupParameters []string
	// MinPoolSize (`min_pool_size`) is how many backends a pool keeps open
	// once txlane can open them itself (after a login it checked; see
	// auth_type). At least 0. Default 0.
	MinPoolSize int
	// ServerResetQuery (`server_reset_query`) wipes a session-mode client's
	// server session before its backend goes back to the pool. Default
	// DISCARD ALL.
	ServerResetQuery string
	// ServerIdleTimeout (`server_idle_timeout`) closes a pooled backend idle
	// this long (a pool that cannot open backends: while it has more
	// backends than clients). Positive. Default 10m.
	ServerIdleTimeout time.Duration
	// ServerLifetime (`server_lifetime`) closes a pooled backend this old
	// when it is next idle (a pool that cannot open backends: while it has
	// more backends than clients). Positive. Default 1h.
	ServerLifetime time.Duration
	// PoolOverrides (`pool_overrides`) set pool_mode or pool_size for some
	// databases or users (as PgBouncer's [databases] and [users] sections):
	// for each setting the first entry that matches the client and sets it
	// wins. Default [].
	PoolOverrides []PoolOverride

	// InstanceID (`instance_id`) is this txlane instance's number among
	// the instances serving one database, 1 to MaxInstanceID, as
	// PgBouncer's peer_id: the process IDs of the BackendKeyData it hands
	// clients carry it, so that any instance can tell where a CancelRequest
	// belongs. 0: a standalone instance. Default 0.
	InstanceID int

	// Peers (`peers`) are the other instances: a CancelRequest for a client
	// of one of them is forwarded to it, once. Default [].
	Peers []Peer
}

// MaxInstanceID is the largest instance_id: the ID sits in bits 21 to 30 of
// the process IDs txlane hands out (proxy.MaxInstanceID; a test keeps the
// two equal).
const MaxInstanceID = 1023

// Peer is one entry of peers: another txlane instance.
type Peer struct {
	// ID (`id`) is its instance_id. Required.
	ID int
	// Addr (`addr`) reaches it alone: the host:port its clients connect
	// to, or the path of its Unix-domain socket (DIR/.s.PGSQL.PORT, for
	// instances that share one port with listen_reuseport). Required.
	Addr string
}

// PoolOverride is one entry of pool_overrides.
type PoolOverride struct {
	// Database (`database`) and User (`user`) name the clients the entry
	// is for; an empty one matches any. At least one is required.
	Database, User string
	// PoolMode, when set, replaces the pool mode for them.
	PoolMode PoolMode
	// PoolSize, when positive, replaces the pool size for them.
	PoolSize int
}

// PoolMode is pool_mode: how long a client holds a primary backend.
type PoolMode string

// The values of PoolMode.
const (
	PoolSession     PoolMode = "session"
	PoolTransaction PoolMode = "transaction"
)

var poolModeValues = []PoolMode{PoolSession, PoolTransaction}

// ReadPool configures the vector lane: the pool of backend connections that
// serves pure reads of vector tables.
type ReadPool struct {
	// DSN (`read_pool.dsn`) is the libpq connection string of the vector
	// lane's server, e.g. a replica, logging in as a user that has been granted
	// the client roles (the lane uses SET ROLE). Empty means the same server
	// as Primary. Default "".
	DSN string

	// MaxConns (`read_pool.max_conns`) is the most connections the pool holds
	// per database. At least 1. Default 8.
	MaxConns int

	// MinIdle (`read_pool.min_idle`) is how many idle connections the pool
	// keeps open. Between 0 and MaxConns. Default 0.
	MinIdle int

	// AcquireTimeout (`read_pool.acquire_timeout`) bounds the wait for a pool
	// connection; past it OnUnavailable applies. Positive. Default 2s.
	AcquireTimeout time.Duration

	// MaxLifetime (`read_pool.max_lifetime`) is the age after which a pool
	// connection is closed once released. Positive. Default 1h.
	MaxLifetime time.Duration

	// HealthCheckPeriod (`read_pool.health_check_period`) is the interval of
	// the pool's health checks of idle connections. Positive. Default 30s.
	HealthCheckPeriod time.Duration

	// OnUnavailable (`read_pool.on_unavailable`) says what happens to a vector
	// read when the lane is unreachable or exhausted. Default primary.
	OnUnavailable OnUnavailable
}

// Policy holds the routing and transaction-boundary rules.
type Policy struct {
	// VectorTables (`policy.vector_tables`) lists vector tables by name,
	// optionally schema-qualified (table or schema.table). Default
	// [optimization_logs].
	VectorTables []string

	// DiscoverVectorTables (`policy.discover_vector_tables`) also treats as
	// vector tables those the catalog shows with a vector, halfvec or
	// sparsevec column. Default true.
	DiscoverVectorTables bool

	// DiscoverInterval (`policy.discover_interval`) is how often the catalog
	// is searched again when DiscoverVectorTables is on. Positive. Default 1m.
	DiscoverInterval time.Duration

	// AfterWrite (`policy.after_write`) says which reads stay on the primary
	// lane once a transaction has written. Default table.
	AfterWrite AfterWrite

	// Escape (`policy.escape`) is what happens to a write that would escape
	// a transaction held by another connection for the same unit of work.
	// Default reject.
	Escape Escape

	// EscapeOverrides (`policy.escape_overrides`) replaces Escape for writes
	// to matching tables. The first matching override wins. Default [].
	EscapeOverrides []EscapeOverride

	// UnitCommentKeys (`policy.unit_comment_keys`) lists the sqlcommenter keys
	// whose value names the unit of work. traceparent is always read in
	// addition. Default [unit].
	UnitCommentKeys []string

	// RerouteWaitTimeout (`policy.reroute_wait_timeout`) bounds how long a
	// rerouted write waits for the holder's backend to become idle, and how
	// long a transaction beginning to hold a unit waits for a write of it
	// still running elsewhere. Positive.
	// Default 5s.
	RerouteWaitTimeout time.Duration

	// SharedUnits (`policy.shared_units`) shares units of work with every
	// txlane instance serving the database, through PostgreSQL advisory
	// locks on the holders' backends. Needs instance_id. Default false.
	SharedUnits bool

	// WritingFunctions (`policy.writing_functions`) lists extra functions,
	// optionally schema-qualified, whose calls are treated as writes.
	// Default [].
	WritingFunctions []string

	// ReadOnlyFunctions (`policy.read_only_functions`) lists volatile
	// functions, optionally schema-qualified, known not to write. Default [].
	ReadOnlyFunctions []string
}

// EscapeOverride is one entry of policy.escape_overrides: the escape action
// for writes to tables matching a pattern.
type EscapeOverride struct {
	// Table (`table`) is a glob (path.Match syntax: *, ?, [...]) matched
	// against schema.table. Required.
	Table string

	// Escape (`escape`) is the action for matching tables. Required.
	Escape Escape
}

// Admin configures the administrative endpoints.
type Admin struct {
	// Listen (`admin.listen`) is the host:port of the HTTP endpoint serving
	// /metrics, /healthz and /readyz. Empty disables it. Must differ from
	// Listen. Default 127.0.0.1:9187.
	Listen string

	// Users (`admin.users`) lists the users allowed on the admin console
	// (the virtual database "txlane"); each logs in with its own PostgreSQL
	// password, checked by the primary server. Empty means only local
	// connections from the OS user running txlane (Linux). Default [].
	Users []string

	// Pprof (`admin.pprof`) serves Go's runtime profiles (net/http/pprof)
	// under /debug/pprof/ on the admin HTTP endpoint; off, those paths are
	// 404. Live: an operator can profile a running process without
	// restarting it, which would lose the state being diagnosed. Default
	// false.
	Pprof bool
}

// Log configures logging.
type Log struct {
	// Level (`log.level`) is the minimum level logged. Default info.
	Level LogLevel

	// Format (`log.format`) is the log encoding. Default console.
	Format LogFormat
}

// TLS configures TLS towards clients. Cert and Key are both set or both empty.
type TLS struct {
	// Cert (`tls.cert`) is the path of a PEM certificate (chain). With Key
	// set, clients may negotiate TLS. Default "" (TLS off).
	Cert string

	// Key (`tls.key`) is the path of the PEM private key for Cert. Default "".
	Key string
}

// AuthType is who authenticates clients (`auth_type`).
type AuthType string

// The values of AuthType.
const (
	// AuthServer relays each login to the server, which decides; txlane
	// reads no secret.
	AuthServer AuthType = "server"
	// AuthSCRAM: txlane checks clients with SCRAM-SHA-256 (-PLUS on TLS).
	AuthSCRAM AuthType = "scram-sha-256"
	// AuthMD5: txlane checks clients with md5, or SCRAM-SHA-256 for users
	// whose secret is a SCRAM verifier.
	AuthMD5 AuthType = "md5"
	// AuthTrust: txlane checks nothing (tests and local development only).
	AuthTrust AuthType = "trust"
)

// DefaultAuthQuery is PgBouncer's default auth_query (it reads pg_authid,
// which takes a superuser) with every function, operator and relation
// schema-qualified, so that a search_path set for auth_user or its database
// (ALTER ROLE/DATABASE ... SET) cannot put other code in its place.
const DefaultAuthQuery = "SELECT rolname, CASE WHEN rolvaliduntil OPERATOR(pg_catalog.<) pg_catalog.now() THEN NULL ELSE rolpassword END FROM pg_catalog.pg_authid WHERE rolname OPERATOR(pg_catalog.=) $1 AND rolcanlogin"

// OnUnavailable is what happens to a vector read when the vector lane is
// unreachable or exhausted past its acquire timeout.
type OnUnavailable string

// The values of OnUnavailable.
const (
	// OnUnavailablePrimary runs the read on the primary lane instead.
	OnUnavailablePrimary OnUnavailable = "primary"
	// OnUnavailableError fails the read with an error.
	OnUnavailableError OnUnavailable = "error"
)

// AfterWrite says which reads stay on the primary lane after a transaction
// has written.
type AfterWrite string

// The values of AfterWrite.
const (
	// AfterWriteTable keeps a read in the transaction only if the transaction
	// wrote a table the read touches.
	AfterWriteTable AfterWrite = "table"
	// AfterWriteAny keeps every read in the transaction after its first write:
	// the safe choice when triggers or cascades write vector tables.
	AfterWriteAny AfterWrite = "any"
)

// Escape is the action for a write that would escape a transaction held by
// another connection for the same unit of work.
type Escape string

// The values of Escape.
const (
	// EscapeReject fails the write with a clear error; nothing is written.
	EscapeReject Escape = "reject"
	// EscapeReroute runs the write on the holder's backend, inside its
	// transaction.
	EscapeReroute Escape = "reroute"
	// EscapeLog allows the write, logs it and counts it.
	EscapeLog Escape = "log"
	// EscapeAllow allows the write.
	EscapeAllow Escape = "allow"
)

// LogLevel is the minimum level of logged messages.
type LogLevel string

// The values of LogLevel.
const (
	LogDebug LogLevel = "debug"
	LogInfo  LogLevel = "info"
	LogWarn  LogLevel = "warn"
	LogError LogLevel = "error"
)

// LogFormat is the encoding of log output.
type LogFormat string

// The values of LogFormat.
const (
	// LogConsole is human-readable output.
	LogConsole LogFormat = "console"
	// LogJSON is one JSON object per line.
	LogJSON LogFormat = "json"
)

// The allowed values of each enum, in the order they are documented.
var (
	onUnavailableValues = []OnUnavailable{OnUnavailablePrimary, OnUnavailableError}
	afterWriteValues    = []AfterWrite{AfterWriteTable, AfterWriteAny}
	escapeValues        = []Escape{EscapeReject, EscapeReroute, EscapeLog, EscapeAllow}
	logLevelValues      = []LogLevel{LogDebug, LogInfo, LogWarn, LogError}
	logFormatValues     = []LogFormat{LogConsole, LogJSON}
	authTypeValues      = []AuthType{AuthServer, AuthSCRAM, AuthMD5, AuthTrust}
)

// Default returns a new Config holding every default. The defaults are the
// key table's (keyTable in keys.go), the only place they are set. Primary has
// no default, so Default() alone is not a valid configuration.
func Default() *Config {
	c := &Config{}
	for _, k := range keyTable {
		k.v.setDefault(c)
	}
	return c
}

// Size is a number of bytes.
type Size int64

// Byte multiples accepted by ParseSize. Following PostgreSQL, kB/MB/GB/TB are
// binary multiples, the same as KiB/MiB/GiB/TiB.
const (
	B   Size = 1
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
	TiB Size = 1 << 40
)

// String formats s with the largest binary unit that divides it exactly, e.g.
// 64MiB, 1500B.
func (s Size) String() string {
	for _, u := range []struct {
		n    Size
		name string
	}{{TiB, "TiB"}, {GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}} {
		if s != 0 && s%u.n == 0 {
			return strconv.FormatInt(int64(s/u.n), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// sizeUnits maps a lower-cased unit suffix to its multiple.
var sizeUnits = map[string]Size{
	"": B, "b": B,
	"k": KiB, "kb": KiB, "kib": KiB,
	"m": MiB, "mb": MiB, "mib": MiB,
	"g": GiB, "gb": GiB, "gib": GiB,
	"t": TiB, "tb": TiB, "tib": TiB,
}

// ParseSize parses a byte count: a decimal integer optionally followed by a
// unit, with or without a space: 67108864, 64MB, 64 MiB, 1GB, 512kB. Units are
// case-insensitive; B, k/kB/KiB, M/MB/MiB, G/GB/GiB and T/TB/TiB are accepted,
// and, as in PostgreSQL, kB/MB/GB/TB are binary multiples (1MB = 1MiB =
// 1048576 bytes). A leading minus sign parses, so that callers can report a
// negative size as such.
func ParseSize(s string) (Size, error) {
	i := 0
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		i++
	}
	start := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == start {
		return 0, fmt.Errorf("invalid size %q (want bytes, or a number with a unit such as 64MB, 64MiB, 1GB)", s)
	}
	num, unitText := s[:i], s[i:]
	if len(unitText) > 0 && unitText[0] == ' ' {
		unitText = unitText[1:]
	}
	unit, ok := sizeUnits[lower(unitText)]
	if !ok {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (want B, kB, MB, GB, TB or KiB, MiB, GiB, TiB)", s, unitText)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > int64(maxSize/unit) || n < -int64(maxSize/unit) {
		return 0, fmt.Errorf("invalid size %q: out of range", s)
	}
	return Size(n) * unit, nil
}

// maxSize is the largest representable Size.
const maxSize = Size(1<<63 - 1)

// lower is strings.ToLower for ASCII.
func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
