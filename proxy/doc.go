// Package proxy is txlane's server: it accepts PostgreSQL clients, relays
// their login to the primary (or checks their password itself and logs in
// with pass-through credentials, login.go), and carries out each request on
// the primary lane (the client's own backend) or the vector lane (a shared
// read pool), enforcing the unit-of-work rules on the way. The protocol itself is in
// package wire, SQL classification in router, routing decisions in policy,
// the admin console in proxy/console, catalog reading in proxy/catalog and
// SCRAM, md5 and secrets in proxy/auth.
//
// Files:
//
//	server.go        Server, Options, accept loop, client startup dispatch
//	connworkers.go   accepted connections run on goroutines kept from
//	                 earlier clients
//	clientbuf.go     the pool of clients' write buffers; retiring a
//	                 client's writer when its session ends
//	login.go         AuthOptions; logins txlane checks itself (auth_type other
//	                 than server); backendDialer: more backends for a
//	                 session's (database, user) without its client
//	session.go       session: one client; clientLoop (client → requests),
//	                 dispatch and the primary sender
//	primary.go       primaryConn: a primary backend, its pending requests,
//	                 observed state and held statements; relay (primary →
//	                 clients); runWhenIdle (a request of another session)
//	pool.go          PoolMode, PoolOptions; serverPool: the backends clients
//	                 share in transaction mode, waiting, reaping
//	pool_caps.go     max_db_connections, max_user_connections: backends
//	                 counted across pools, blocked pools, eviction
//	startup_ignore.go ignore_startup_parameters: dropped at startup
//	txpool.go        a session in transaction mode: attach, idle/detach,
//	                 what pins it (asked of the server)
//	txwait.go        a cancel request ends a client's wait for a backend;
//	                 when that wait blocked (SHOW CLIENTS state waiting)
//	movable.go       startup parameters that move with a client (pool key,
//	                 login values, set on attach, RESET)
//	logincache.go    a pool's login cache: transaction-mode logins answered
//	                 without a backend (server values, applied values)
//	pins.go          which pin reasons are new (txlane_pins_total)
//	seqstate.go      sequence state (currval, lastval): DISCARD SEQUENCES
//	                 before a backend serves a client other than the one
//	                 whose nextval may have set it
//	dblink.go        a client that called dblink keeps its backend (pin
//	                 dblink), which is closed when it leaves
//	unlisted.go      settings pg_settings does not list: a client that seeds
//	                 its backend's random sequence keeps it (the next client
//	                 gets it seeded afresh); settings hidden from its role
//	plan.go          planner: a request resolved once into a requestPlan
//	sqlexecute.go    SQL EXECUTE planned as the prepared statement it runs
//	                 (its text known: PREPAREs, protocol statements, server)
//	batch.go         the messages of the current request not yet sent
//	parsememo.go     a client's recent statement texts and names (no copy, no hash again)
//	replies.go       replyTracker: server replies attributed to the messages
//	                 sent; registry: the client's prepared statements
//	stmts.go         content-named statements on shared backends (LRU)
//	parseenv.go      the settings a statement was parsed under (its parse
//	                 environment): recorded at Parse and PREPARE, part of
//	                 its key; statements parsed again under their own
//	vector.go        the vector lane: offload, shared-backend writer, relayLane
//	lane.go          the read pools (puddle), lane connections, cleanup
//	laneuse.go       each read pool's connections and waits, for SHOW
//	                 SERVERS and SHOW POOLS
//	lanecheck.go     after each read, the lane connection proves its session
//	                 is what txlane set (laneCheckSQL), or is closed
//	lane_customs.go  a read of a custom setting the client holds no value of
//	                 (or an empty one: a placeholder) runs on the primary
//	refusal.go       reads the read-only lane refused as writes
//	settings.go      session state mirrored on the lane (snapshot, applySQL)
//	enctext.go       txlane's own SQL in any client_encoding: values read
//	                 as hex of UTF-8, sent as ASCII text
//	snapstate.go     when the snapshot must be read again (transaction ends,
//	                 what may change session state)
//	units.go         units of work: holders, checks, escape actions, reroute
//	reroute_bar.go   where a request may not run in another client's transaction
//	reroute_local.go a holder's transaction-local settings (SET LOCAL,
//	                 set_config(…, true), SET TRANSACTION) keep writes out
//	reroute_iso.go   a rerouted request first checks the holder's isolation
//	                 (READ COMMITTED, READ WRITE) on its backend
//	reroute_code.go  what a request runs besides its text keeps it out of
//	                 another client's transaction: deferred checks, triggers,
//	                 defaults and rules that may change the session
//	guest_wrap.go    what runs in a client's transaction besides its own
//	                 requests leaves it as it was: a rerouted write between a
//	                 savepoint of txlane's and its release, on a portal of
//	                 txlane's; txlane's own queries in extended form
//	units_request.go a unit set inside the request that writes (set_config
//	                 constants and bind parameters; unreadable setters)
//	units_inflight.go writes outside a transaction marked in flight; a
//	                 transaction beginning to hold their unit waits for them
//	units_stale.go   units set unseen (set_config, a function): read back
//	                 behind the request, held as unknown until then
//	endwork.go       a transaction's end (COMMIT, PREPARE TRANSACTION, SET
//	                 CONSTRAINTS IMMEDIATE) that runs end work the planner
//	                 saw queued is a write of unknown tables
//	reached.go       tables a rerouted write reached
//	catalog.go       per-database routing snapshots and catalog refresh
//	backend.go       a server connection (socket, reader, writer, cancel target)
//	cancel.go        txlane's own BackendKeyData → session; the instance ID
//	cancel_gate.go   a cancel reaches a backend only while its client's request runs
//	                 in its process IDs
//	instances.go     InstanceOptions: several instances serving one
//	                 database; a CancelRequest for another instance's client
//	                 forwarded to it, once
//	shared_units.go  units of work shared by the instances through
//	                 PostgreSQL advisory locks (policy.shared_units): taking,
//	                 checking and settling the locks, holders from pg_locks
//	shared_idle.go   the locks of units held by transactions before their
//	                 first snapshot, on a connection of the instance's own
//	ops.go, ops_options.go, shutdown.go, reload.go
//	                 PAUSE gate, timeouts, graceful stop, live options
//	stats.go, metrics.go
//	                 what SHOW CLIENTS, POOLS and SERVERS list (client
//	                 state, pools); Prometheus collectors and counters
//	metrics_tx.go    transactions ended (txEnds) and server errors per lane
//	metrics_pool.go  pool gauges per lane, database and user; pool waits
//	console.go, console_login.go, peer.go, peer_*.go
//	                 the admin console's API and who may log in to it (the
//	                 peer's uid: SO_PEERCRED, /proc/net/tcp); a client's addr
//	console_clients.go the console's own connections in SHOW CLIENTS, POOLS
//	errors.go        SQLSTATEs of the public API
//
// Goroutines: the accept loop (Server.Serve); per client, the session's own
// goroutine (clientLoop: reads the client, plans and dispatches requests,
// and reads vector-lane answers, since it waits for them; it may have served
// earlier clients, and up to 64 wait for the next: connworkers.go) and its
// primary connection's relay (reads the primary, writes the client, or a guest's);
// per lane pool, a maintenance goroutine; per database, a catalog refresh
// when due; one reaper for the transaction-mode pools (pool.go); the
// idle-in-transaction and shutdown timers (ops.go); with auth_user set, the
// auth_query connections' reaper (proxy/auth); with shared units, a short
// goroutine per settling of a session's locks after a request
// (shared_units.go, settleLocks).
//
// Lock order (a lock may be taken while holding those to its left):
//
//	clientEntry.mu → session.mu
//	session.out.mu → primaryConn.mu, session.mu (one at a time)
//	session.cancelMu → session.mu
//	session.mu → registry.mu, planner.confirmedMu, unitRegistry.mu (one at a time)
//	serverPool.mu → connCaps.mu (pool_caps.go)
//	heldStmts.mu, loginCache.mu, sharedLocks.mu, sharedUnits.mu, laneConns.mu, ownSplits.mu, envState.mu, envState.checkMu: each taken alone
//	Server.routeMu → dbRouting.mu
//
// No lock is held across a network read, except cancelMu across a cancel
// request's round trip; opsState.mu is never held while taking a session's
// locks.
package proxy
