package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/txlane/txlane/policy"

	"github.com/txlane/txlane/proxy/wire"
)

// Options configure a Server. Zero values mean the defaults documented on
// each field; Primary is required.
type Options struct {
	// Primary is the server the primary lane connects to. Host, port, TLS and
	// runtime-parameter defaults come from it; user and database come from
	// each client's startup message.
	Primary *pgconn.Config
	// TLS, when set, lets clients negotiate TLS with txlane.
	TLS *tls.Config
	// MaxClientConn caps concurrent client connections (default 1000). Beyond
	// it a client is refused with SQLSTATE 53300.
	MaxClientConn int
	// MaxMessageSize caps the body of one client message in bytes (default 64 MiB).
	MaxMessageSize int
	// ClientLoginTimeout bounds the startup phase, TLS and authentication
	// included (default 60s).
	ClientLoginTimeout time.Duration
	// Logger receives the proxy's logs (default: no logs).
	Logger *zap.Logger
	// Version is txlane's release version, as `txlane version` prints it
	// after "txlane " (default "dev", an unversioned build's); the admin
	// console's SHOW VERSION shows "txlane " and it.
	Version string

	// ReadPool configures the vector lane; a nil ReadPool.Config disables it
	// (every statement then runs on the primary lane).
	ReadPool ReadPoolOptions
	// Rules is the routing policy as configured; tables discovered in each
	// database's catalog are added to VectorTables when Discover is set.
	Rules policy.RulesConfig
	// Discover finds vector tables (vector, halfvec, sparsevec columns) and
	// what classification reads from a catalog (function volatility, views,
	// policies, operators, aggregates, casts, triggers, rules, foreign keys)
	// in each database's catalog, at first use, every DiscoverInterval
	// (default 1m), after committed DDL and on reload. Without it only the
	// configured function lists apply and views, triggers and the like are
	// not seen.
	Discover         bool
	DiscoverInterval time.Duration
	// Metrics receives the proxy's metrics (default: a private set).
	Metrics *Metrics
	// OpsOptions hold the operational settings: timeouts, the admin
	// console, reload (ops_options.go).
	OpsOptions
	// RerouteWaitTimeout bounds how long a write rerouted into another
	// connection's transaction waits for that connection to be idle, and
	// how long a transaction beginning to hold a unit waits for a write of
	// it still running on another connection (units_inflight.go) (default
	// 5s).
	RerouteWaitTimeout time.Duration
	// Pool configures the primary lane's backends: pool_mode and the pools
	// of transaction mode (pool.go).
	Pool PoolOptions
	// Auth says who authenticates clients (login.go); the zero value
	// relays every login to the server.
	Auth AuthOptions
	// Instances make txlane one of several instances serving one database
	// (instances.go); the zero value is a standalone instance.
	Instances InstanceOptions
}

func (o *Options) setDefaults() {
	o.OpsOptions.setDefaults()
	o.Pool.setDefaults()
	if o.MaxClientConn <= 0 {
		o.MaxClientConn = 1000
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = 64 << 20
	}
	if o.ClientLoginTimeout <= 0 {
		o.ClientLoginTimeout = 60 * time.Second
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.RerouteWaitTimeout <= 0 {
		o.RerouteWaitTimeout = 5 * time.Second
	}
	if o.DiscoverInterval <= 0 {
		o.DiscoverInterval = time.Minute
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
}

// policyState is the configured policy, validated: swapped whole on reload.
type policyState struct {
	cfg   policy.RulesConfig
	rules *policy.Rules
}

// Server accepts PostgreSQL clients and proxies them. A Server is safe for
// concurrent use.
type Server struct {
	opts Options
	log  *zap.Logger
	keys *cancelKeys
	auth *authState // login.go
	// lanes is the vector lane; nil when no read pool is configured.
	lanes   *lanePools
	metrics *Metrics
	policy  atomic.Pointer[policyState]

	routeMu  sync.Mutex
	dbRoutes map[string]*dbRouting // by database

	// units maps units of work to the sessions holding them.
	units *unitRegistry
	// shared, with policy.shared_units, is what this instance knows of
	// the units held through PostgreSQL (shared_units.go); nil otherwise.
	shared *sharedUnits

	// pools are the primary backends clients share in transaction mode.
	pools struct {
		sync.Mutex
		m    map[poolKey]*serverPool
		reap sync.Once
		caps *connCaps // max_db_connections, max_user_connections (pool_caps.go)
	}

	clients atomic.Int64 // connections past accept, in any phase
	nextID  atomic.Uint64

	mu struct {
		sync.Mutex
		listeners map[net.Listener]struct{}
		conns     map[net.Conn]struct{}
		closed    bool
	}
	wg sync.WaitGroup

	// workers run accepted connections (connworkers.go).
	workers connWorkers

	// ops is the operational state: live options, the session registry,
	// PAUSE and graceful stop (ops.go).
	ops opsState
}

// New returns a Server for opts.
func New(opts Options) (*Server, error) {
	if opts.Primary == nil {
		return nil, errors.New("proxy: Options.Primary is required")
	}
	opts.setDefaults()
	rules, err := policy.NewRules(opts.Rules)
	if err != nil {
		return nil, fmt.Errorf("proxy: policy: %w", err)
	}
	if err := opts.Instances.check(); err != nil {
		return nil, fmt.Errorf("proxy: instances: %w", err)
	}
	s := &Server{opts: opts, log: opts.Logger, keys: newCancelKeys(opts.Instances.ID), metrics: opts.Metrics,
		dbRoutes: make(map[string]*dbRouting), units: newUnitRegistry()}
	if opts.Instances.SharedUnits {
		s.shared = newSharedUnits(opts.Instances.ID)
		s.shared.idle = newIdleLocks(opts.Primary, opts.Instances.ID, opts.Logger)
	}
	s.policy.Store(&policyState{cfg: opts.Rules, rules: rules})
	s.auth = newAuthState(&opts)
	if opts.ReadPool.Config != nil {
		s.lanes = newLanePools(opts.ReadPool, opts.Logger)
	}
	s.mu.listeners = make(map[net.Listener]struct{})
	s.mu.conns = make(map[net.Conn]struct{})
	s.workers.init()
	s.initOps()
	return s, nil
}

// Serve accepts clients on ln until Close. It returns nil after Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.mu.listeners[ln] = struct{}{}
	s.mu.Unlock()

	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.mu.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if !s.track(conn) {
			conn.Close()
			continue
		}
		s.wg.Add(1)
		s.run(conn) // connworkers.go
	}
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return false
	}
	s.mu.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.mu.conns, c)
	s.mu.Unlock()
}

// Close stops accepting, closes every client connection (and with it its
// backends) and waits for the sessions to end.
func (s *Server) Close() error {
	s.mu.Lock()
	s.mu.closed = true
	for ln := range s.mu.listeners {
		ln.Close()
	}
	for c := range s.mu.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.workers.stopWaiting()
	s.waitSessions()
	s.closePools()
	if s.shared != nil {
		s.shared.idle.close()
	}
	s.stopOps()
	s.auth.close()
	if s.lanes != nil {
		s.lanes.close()
	}
	return nil
}

// Clients returns the number of client connections currently open.
func (s *Server) Clients() int { return int(s.clients.Load()) }

// handle runs one client connection from its first byte to its close.
func (s *Server) handle(raw net.Conn) {
	defer raw.Close()
	n := s.clients.Add(1)
	defer s.clients.Add(-1)

	id := s.nextID.Add(1)
	// NOTE: WithLazy and a Stringer: a client's logger costs nothing until
	// it logs (at the default level most clients never do); building it
	// eagerly was about 4% of txlane's CPU under connection churn
	// (pgbench -S -C).
	log := s.log.WithLazy(zap.Uint64("client", id), zap.Stringer("addr", clientAddrOf{raw}))
	live := s.live() // the limits in force when the client arrived
	raw.SetDeadline(time.Now().Add(live.ClientLoginTimeout))

	hello, err := wire.ReadHello(raw, s.opts.TLS)
	if err != nil {
		s.refuseHello(raw, log, err)
		return
	}
	if hello.Cancel != nil {
		s.cancel(log, hello.Cancel.ProcessID, hello.Cancel.SecretKey, hello.Forwarded)
		hello.Release()
		return
	}
	if isAdminStartup(hello.Startup) {
		s.serveAdmin(hello, id, log) // the admin console (admin.go)
		return
	}
	// This goroutine is the client's only reader, and its last read is done
	// when handle returns (clientbuf.go).
	defer hello.Release()
	dropIgnored(hello.Startup, s.opts.Pool.IgnoreStartupParameters)
	sess := &session{
		srv:     s,
		id:      id,
		client:  hello.Conn,
		cr:      wire.NewReader[wire.Frontend](hello.BR, live.MaxMessageSize),
		out:     clientWriter{w: newClientWriter(hello.Conn)},
		startup: hello.Startup,
		db:      startupDatabase(hello.Startup.Parameters),
		proto:   hello.Proto,
		log: log.WithLazy(zap.String("user", hello.Startup.Parameters["user"]),
			zap.String("database", hello.Startup.Parameters["database"]),
			zap.String("application_name", hello.Startup.Parameters["application_name"])),
	}
	defer sess.out.retire()
	if n > int64(live.MaxClientConn) {
		log.Warn("refusing client: max_client_conn reached", zap.Int("max_client_conn", live.MaxClientConn))
		sess.fail(wire.Fatalf(CodeTooManyConnections, "no more connections allowed (max_client_conn)"))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), live.ClientLoginTimeout)
	err = sess.login(ctx)
	cancel()
	if sess.keyPID != 0 {
		defer s.keys.unregister(sess.keyPID)
	}
	if err != nil {
		return
	}
	hello.Conn.SetDeadline(time.Time{})
	if p := sess.pc.Load(); p != nil { // nil: a login answered from the login cache
		p.conn.SetDeadline(time.Time{})
	}
	sess.log.Debug("client logged in")
	s.register(sess)
	defer s.unregister(sess)
	sess.serve()
}

// refuseHello reports a failed startup phase: protocol-level failures are
// answered with an ErrorResponse, handshake violations are logged and closed.
func (s *Server) refuseHello(raw net.Conn, log *zap.Logger, err error) {
	var pe *wire.Error
	var he *wire.HandshakeError
	var old *wire.OldProtocolError
	switch {
	case errors.As(err, &old):
		log.Info("refusing client", zap.Error(err))
		wire.WriteOldProtocolError(raw, old)
	case errors.As(err, &pe):
		log.Info("refusing client", zap.Error(err))
		w := bufio.NewWriter(raw)
		wire.WriteError(w, pe)
		w.Flush()
	case errors.As(err, &he):
		log.Warn("closing client: startup protocol violation", zap.String("reason", he.Error()))
	case isClosedConn(err):
		log.Debug("client closed before startup")
	default:
		log.Info("client startup failed", zap.Error(err))
	}
}

// forwardCancel passes a client's CancelRequest to the backend running that
// client's request. Unknown keys are ignored, as PostgreSQL does.
func (s *Server) forwardCancel(log *zap.Logger, pid uint32, secret []byte) {
	sess := s.keys.lookup(pid, secret)
	if sess == nil {
		log.Info("cancel request with unknown key ignored")
		s.metrics.cancel("dropped")
		return
	}
	s.metrics.cancel("backend")
	ctx, cancel := context.WithTimeout(context.Background(), cancelTimeout)
	defer cancel()
	// NOTE: cancelMu is held until the server has taken the cancel, and a
	// session takes it before it hands a borrowed backend back (see
	// restorePrimary): a cancel meant for this client cannot reach a
	// vector-lane connection after another client got it.
	sess.cancelMu.Lock()
	defer sess.cancelMu.Unlock()
	// Only a request of the client's own is canceled (cancel_gate.go).
	running := sess.cancelTarget()
	if running == nil {
		return
	}
	target := *running
	if testCancelHook != nil {
		testCancelHook()
	}
	if err := wire.SendCancel(ctx, target); err != nil {
		log.Warn("forwarding cancel request failed", zap.Error(err))
	}
}

var noDeadline time.Time

// testCancelHook, when set (tests only), runs in forwardCancel between the
// choice of the backend and the cancel's sending.
var testCancelHook func()

// Metrics returns the server's metrics.
func (s *Server) Metrics() *Metrics { return s.metrics }
