package console

import (
	"context"
	"errors"
	"time"

	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/router"
)

// Proxy is the inspection and control API the console serves: everything a
// console command reads from or does to the running proxy. The proxy hands
// Serve an implementation; the console never sees the proxy's internals.
//
// Methods are called from the console connection's goroutine and must be
// safe for concurrent use (several consoles may be connected).
type Proxy interface {
	// Clients describes the logged-in clients, ordered by ID, then the
	// console's own connections (database Database, state active, as
	// PgBouncer lists its console's), ordered by ID.
	Clients() []Client
	// Pools describes the pools: the primary backends of each (database,
	// user) in use, each database's vector-lane read pool, and the
	// console's clients per user, ordered by database, user then lane.
	Pools() []Pool
	// Servers describes the backends of both lanes.
	Servers() []Server
	// Routes returns the requests routed so far, per (lane, reason),
	// ordered by lane then reason.
	Routes() []Route
	// Units describes the units of work held, ordered by unit: this
	// instance's, and with shared units those of the other instances too
	// (read from the server within ctx). On an error the units of this
	// instance are still returned, and the error says what is missing.
	Units(ctx context.Context) ([]Unit, error)
	// Policy describes the configuration and routing rules in force.
	Policy() Policy
	// Paused reports whether PAUSE is in force.
	Paused() bool
	// Version is txlane's version as the binary reports it ("txlane
	// v1.2.3", the first line of `txlane version`).
	Version() string

	// Reload reads the configuration file again and applies it. It returns
	// ErrNoReload when the proxy was not started from a file; any other
	// error means the file was refused and the last good configuration
	// stays in force (its text lists the problems).
	Reload() error
	// Pause holds new requests at a transaction boundary and returns
	// once nothing is in flight and no client is inside a transaction, or
	// ctx.Err() when ctx ends first (the pause stays in force). During a
	// graceful stop it returns ErrStopping.
	Pause(ctx context.Context) error
	// Resume releases what Pause holds.
	Resume()
	// QueryWaitTimeout is how long PAUSE waits for the proxy to become
	// quiet (query_wait_timeout).
	QueryWaitTimeout() time.Duration
	// Explain classifies and routes sql under the configured rules (not the
	// tables discovered in a catalog), for a client outside a transaction.
	Explain(sql string) router.Explanation
}

// ErrNoReload is returned by Proxy.Reload when there is no configuration
// file to read again.
var ErrNoReload = errors.New("txlane was not started from a configuration file")

// ErrStopping is returned by Proxy.Pause during a graceful stop.
var ErrStopping = errors.New("txlane is shutting down")

// Client is one logged-in client, as SHOW CLIENTS lists it.
type Client struct {
	ID              uint64
	Addr            string // host:port of the client's socket, or "unix" (a Unix-domain socket)
	User, Database  string
	ApplicationName string
	// State is PgBouncer's client state: "active" (it holds a primary
	// backend, or a request of it is under way), "idle" (neither) or
	// "waiting" (a request waits for a server: a pooled backend, or the
	// end of PAUSE).
	State string
	// WaitingFor says what a waiting client waits for: "server" (a
	// backend of its pool) or "resume" (held by PAUSE); "" when not
	// waiting. Wait is how long it has waited (0 when not waiting).
	WaitingFor string
	Wait       time.Duration
	TxStatus   byte      // transaction status: 'I', 'T' or 'E'
	Since      time.Time // when it connected
	Units      int       // units of work held
	Pinned     string    // what keeps it on its backend (pool_mode transaction)
	ServerPID  uint32    // the backend serving it (0: none)
}

// Pool is one pool, as SHOW POOLS lists it (PgBouncer's columns): the
// primary backends of one (database, user), or a database's vector-lane
// read pool.
type Pool struct {
	Database, User string
	// Lane is "primary" or "vector" (a read pool; User is its login).
	Lane     string
	PoolMode string
	// Clients not waiting (holding a backend, or idle), and waiting for a
	// server: the clients SHOW CLIENTS shows in those states. On the
	// vector lane: reads holding a connection, and reads waiting for one.
	ClActive, ClWaiting int
	// Backends serving a client, idle in the pool, running
	// server_reset_query.
	SvActive, SvIdle, SvTested int
	// MaxWait is how long the oldest waiting client has waited.
	MaxWait time.Duration
	// PoolSize is the most backends of the pool (pool_size,
	// read_pool.max_conns).
	PoolSize int
}

// Server is one backend, as SHOW SERVERS lists it.
type Server struct {
	User, Database string
	// Lane is "primary" or "vector" (a read pool's connection; User is
	// the read pool's login).
	Lane, State, Addr        string
	PID                      uint32
	ConnectTime, RequestTime time.Time
	Link                     uint64 // the client it serves (0: none)
}

// Route is how many requests went to one lane for one reason.
type Route struct {
	Lane, Reason string
	Requests     float64 // requests routed (not units of work)
}

// Unit is one unit of work held by a client, as SHOW UNITS lists it.
type Unit struct {
	// Unit is the unit's name; "" for one another instance holds that this
	// one has not seen (Key names it).
	Unit string
	// Local: held by a client of this instance (ClientID, Addr).
	Local           bool
	ClientID        uint64
	Addr            string
	User, Database  string
	ApplicationName string
	Since           time.Time
	// Failed: the holder's transaction has failed (status E).
	Failed bool
	// Instance is the holder's instance_id, BackendPID the backend running
	// its transaction (0: none known), Key the unit's advisory lock key.
	Instance   int
	BackendPID uint32
	Key        uint32
}

// Policy is the configuration and routing policy in force.
type Policy struct {
	// Settings are the configuration keys and their values as in force,
	// secrets masked.
	Settings []Setting
	// Rules are the configured rules, without discovered tables.
	Rules *policy.Rules
	// Discovered lists, by database, the vector tables found in its catalog.
	Discovered map[string][]policy.Table
}

// Setting is one configuration key, its value and where the value came
// from (default, file, env).
type Setting struct {
	Name, Value, Source string
}
