package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/puddle/v2"
	"go.uber.org/zap"

	"github.com/txlane/txlane/proxy/wire"
)

// ReadPoolOptions configure the vector lane's connection pools (one per
// database). Zero values mean the documented defaults.
type ReadPoolOptions struct {
	// Config is the server and credentials the lane logs in with; its Database
	// is replaced by the client's. Nil disables the vector lane.
	Config *pgconn.Config
	// MaxConns caps the connections of one database's pool (default 8).
	MaxConns int
	// MinIdle is how many idle connections each pool keeps open (default 0).
	MinIdle int
	// AcquireTimeout bounds the wait for a connection (default 2s).
	AcquireTimeout time.Duration
	// MaxLifetime closes connections older than this when released (default 1h).
	MaxLifetime time.Duration
	// HealthCheckPeriod is the interval of idle-connection checks (default 30s).
	HealthCheckPeriod time.Duration
}

func (o *ReadPoolOptions) setDefaults() {
	if o.MaxConns <= 0 {
		o.MaxConns = 8
	}
	if o.MinIdle > o.MaxConns {
		o.MinIdle = o.MaxConns
	}
	if o.AcquireTimeout <= 0 {
		o.AcquireTimeout = 2 * time.Second
	}
	if o.MaxLifetime <= 0 {
		o.MaxLifetime = time.Hour
	}
	if o.HealthCheckPeriod <= 0 {
		o.HealthCheckPeriod = 30 * time.Second
	}
}

// laneConn is one vector-lane backend connection and what txlane knows of its
// session state. It is used by one session at a time (between Acquire and
// Release), which owns it completely for that time.
type laneConn struct {
	*backend
	pid     uint32
	created time.Time
	// settings holds the values txlane applied to tracked settings; a missing
	// name means the login default.
	settings map[string]string
	// stmts holds the content-derived names of statements prepared here.
	stmts *stmtLRU
	// cleanupReady: laneCleanupStmt is prepared here.
	cleanupReady bool
	// tainted: the server sent something no client read asked for (a
	// NotificationResponse: a read made the connection LISTEN). The
	// connection is closed instead of going back to the pool.
	tainted bool
}

// lanePools holds the vector lane's pools, one per database: the lane logs in
// as the read-pool user and reaches the client's database.
type lanePools struct {
	// opts are the options at start. Only opts.Config is read from here: it
	// cannot change without a restart. Sizes and timeouts are in cur.
	opts ReadPoolOptions
	// cur holds the live sizes and timeouts; reconfigure replaces it.
	cur     atomic.Pointer[ReadPoolOptions]
	log     *zap.Logger
	metrics *Metrics // nil: not observed
	// refused holds the statement texts the lane refused as writes, per
	// database (refusal.go).
	refused refusedTexts

	mu struct {
		sync.Mutex
		pools  map[string]*lanePool
		closed bool
	}
	stop chan struct{}
	wg   sync.WaitGroup
}

// lanePool is one database's pool. A pool replaced by reconfigure (its size
// changed) is retired: it serves no new acquires and closes once the
// connections acquired from it come back.
type lanePool struct {
	*puddle.Pool[*laneConn]
	maxConns int
	waiting  atomic.Int64  // acquires in progress
	retired  chan struct{} // closed when replaced or closed
}

func newLanePools(opts ReadPoolOptions, log *zap.Logger) *lanePools {
	opts.setDefaults()
	lp := &lanePools{opts: opts, log: log, stop: make(chan struct{})}
	cur := opts
	lp.cur.Store(&cur)
	lp.mu.pools = make(map[string]*lanePool)
	return lp
}

// live returns the current sizes and timeouts.
func (lp *lanePools) live() *ReadPoolOptions { return lp.cur.Load() }

// reconfigure applies new sizes and timeouts (o.Config is ignored: the
// server and credentials stay). Timeouts, lifetimes and min_idle apply from
// the next acquire or health check; a new max_conns replaces each database's
// pool with one of the new size, and the old pool closes as its connections
// are released, so no client loses a connection it is using.
//
// NOTE: until the old pool's connections are back, a database may briefly
// hold more than max_conns connections.
func (lp *lanePools) reconfigure(o ReadPoolOptions) {
	o.Config = lp.opts.Config
	o.setDefaults()
	old := lp.cur.Swap(&o)
	if old.MaxConns == o.MaxConns {
		return
	}
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if lp.mu.closed {
		return
	}
	for db, p := range lp.mu.pools {
		np, err := lp.newPool(db)
		if err != nil {
			lp.log.Warn("cannot resize vector-lane pool", zap.String("database", db), zap.Error(err))
			continue
		}
		lp.mu.pools[db] = np
		close(p.retired)
		go p.Close() // blocks until acquired connections are released
		lp.log.Info("vector-lane pool resized", zap.String("database", db),
			zap.Int("from", p.maxConns), zap.Int("to", np.maxConns))
	}
}

// errLaneClosed is returned by acquire after close.
var errLaneClosed = errors.New("vector lane closed")

// pool returns the pool for database, creating it on first use.
func (lp *lanePools) pool(database string) (*lanePool, error) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if lp.mu.closed {
		return nil, errLaneClosed
	}
	if p := lp.mu.pools[database]; p != nil {
		return p, nil
	}
	p, err := lp.newPool(database)
	if err != nil {
		return nil, err
	}
	lp.mu.pools[database] = p
	return p, nil
}

// newPool creates a pool for database with the current size and starts its
// maintenance. lp.mu is held.
func (lp *lanePools) newPool(database string) (*lanePool, error) {
	cfg := lp.opts.Config.Copy()
	cfg.Database = database
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "txlane vector lane"
	}
	// Every transaction of a lane connection is read-only (see
	// readOnlyLaneParam), whatever the read pool's DSN or role says: a
	// startup parameter outranks the role's and the database's settings and
	// the options parameter, and is what RESET returns to.
	cfg.RuntimeParams[readOnlyLaneParam] = "on"
	maxConns := lp.live().MaxConns
	pp, err := puddle.NewPool(&puddle.Config[*laneConn]{
		Constructor: func(ctx context.Context) (*laneConn, error) { return dialLane(ctx, cfg) },
		Destructor:  func(c *laneConn) { c.close() },
		MaxSize:     int32(maxConns),
	})
	if err != nil {
		return nil, err
	}
	p := &lanePool{Pool: pp, maxConns: maxConns, retired: make(chan struct{})}
	lp.wg.Add(1)
	go lp.maintain(database, p)
	return p, nil
}

// readOnlyLaneParam makes the server itself refuse writes on the vector lane.
// The classifier sends only what it believes are pure reads there, but a read
// can write where it cannot see (a view or an RLS policy calling a volatile
// function, a stable function calling a volatile one, a function listed in
// policy.read_only_functions that is not): with every lane transaction
// read-only, PostgreSQL raises 25006 instead (see laneRefusal), and txlane
// runs the statement on the client's own backend.
//
// It is a startup parameter of every lane connection, checked at login, and
// never changed after: applySQL does not set it (laneFixed), and a lane
// connection on which the server reports any ParameterStatus while a client's
// read runs (a function that ran SET default_transaction_read_only = off, say:
// the setting is reported since PostgreSQL 14) is discarded (relayLane).
const readOnlyLaneParam = "default_transaction_read_only"

func dialLane(ctx context.Context, cfg *pgconn.Config) (*laneConn, error) {
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if v := pc.ParameterStatus(readOnlyLaneParam); v != "on" {
		pc.Close(ctx)
		return nil, fmt.Errorf("vector-lane connection: the server reports %s = %q, want on (PostgreSQL 14 or newer reports it)", readOnlyLaneParam, v)
	}
	hj, err := pc.Hijack()
	if err != nil {
		pc.Close(ctx)
		return nil, err
	}
	hj.Conn.SetDeadline(time.Time{})
	network, addr := pgconn.NetworkAddress(cfg.Host, cfg.Port)
	return &laneConn{
		backend: &backend{
			conn: hj.Conn,
			r:    wire.NewReader[wire.Backend](hj.Conn, 0),
			w:    bufio.NewWriterSize(hj.Conn, wire.WriteBufSize),
			target: wire.CancelTarget{Dial: cfg.DialFunc, Network: network, Addr: addr,
				PID: hj.PID, Secret: hj.SecretKey},
		},
		pid:      hj.PID,
		created:  time.Now(),
		settings: map[string]string{},
		stmts:    newStmtLRU(maxLaneStatements),
	}, nil
}

// laneCleanupSQL runs on a lane connection right after each client's request
// (in the same write, as the prepared statement laneCleanupStmt). A function
// hidden in a read may have taken session-level advisory locks (allowed in a
// read-only transaction): on a shared connection they would outlive the read
// and block other sessions for as long as the connection lives, so they are
// released. Such a read behaves as if it had taken a transaction-level lock.
//
// NOTE: the locks are released, not detected: reading pg_locks costs about
// 200µs of server time a read, this about 35µs (a simple Query of it about
// 65µs). A LISTEN hidden in a read is caught when the first notification
// arrives (relayLane, readAnswer: tainted), which closes the connection.
const (
	laneCleanupSQL = "SELECT pg_catalog.pg_advisory_unlock_all()"
	// laneCleanupStmt is the statement's name. Client statements live on
	// lane connections under content-derived names (txlane_<hash>) only, so
	// this one cannot collide with them, nor count among them.
	laneCleanupStmt = "lane_cleanup"
)

// writeCleanup writes laneCleanupSQL's execution (preparing it first on a
// new connection) to c's buffer, without flushing.
func (c *laneConn) writeCleanup() {
	if !c.cleanupReady {
		wire.WriteMsg(c.w, &pgproto3.Parse{Name: laneCleanupStmt, Query: laneCleanupSQL})
	}
	wire.WriteMsg(c.w, &pgproto3.Bind{PreparedStatement: laneCleanupStmt})
	wire.WriteMsg(c.w, &pgproto3.Execute{})
	wire.WriteMsg(c.w, &pgproto3.Sync{})
}

// cleanedUp reads the answer to writeCleanup; false means the connection
// must not be handed on.
func (c *laneConn) cleanedUp() bool {
	if err := c.readAnswer(nil); err != nil {
		return false
	}
	c.cleanupReady = true
	return !c.tainted
}

// close sends Terminate and closes the socket.
func (c *laneConn) close() {
	c.w.Write([]byte{byte(wire.Terminate), 0, 0, 0, 4})
	c.w.Flush()
	c.conn.Close()
}

// acquire takes a connection of database's pool, waiting at most the acquire
// timeout (and no longer than ctx allows).
func (lp *lanePools) acquire(ctx context.Context, database string) (*puddle.Resource[*laneConn], error) {
	p, err := lp.pool(database)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, lp.live().AcquireTimeout)
	defer cancel()
	p.waiting.Add(1)
	start := time.Now()
	res, err := p.Acquire(ctx)
	p.waiting.Add(-1)
	if lp.metrics != nil {
		lp.metrics.observeAcquire("vector", time.Since(start))
	}
	return res, err
}

// release returns res to its pool, or destroys it when it is past its
// lifetime or its state is unknown (broken).
func (lp *lanePools) release(res *puddle.Resource[*laneConn], broken bool) {
	if broken || res.Value().tainted || time.Since(res.Value().created) > lp.live().MaxLifetime {
		res.Destroy()
		return
	}
	res.Release()
}

// maintain keeps a pool healthy until close: it retires idle connections past
// their lifetime or found dead, and tops the pool up to MinIdle.
func (lp *lanePools) maintain(database string, p *lanePool) {
	defer lp.wg.Done()
	period := lp.live().HealthCheckPeriod
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		lp.topUp(p)
		select {
		case <-lp.stop:
			return
		case <-p.retired:
			return
		case <-t.C:
		}
		live := lp.live()
		if live.HealthCheckPeriod != period {
			period = live.HealthCheckPeriod
			t.Reset(period)
		}
		for _, res := range p.AcquireAllIdle() {
			if time.Since(res.Value().created) > live.MaxLifetime || !res.Value().ping() {
				lp.log.Debug("retiring vector-lane connection", zap.String("database", database), zap.Uint32("pid", res.Value().pid))
				res.Destroy()
				continue
			}
			res.ReleaseUnused()
		}
	}
}

func (lp *lanePools) topUp(p *lanePool) {
	live := lp.live()
	for i := int(p.Stat().IdleResources()); i < live.MinIdle && int(p.Stat().TotalResources()) < p.maxConns; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), live.AcquireTimeout)
		err := p.CreateResource(ctx)
		cancel()
		if err != nil {
			lp.log.Warn("cannot open vector-lane connection", zap.Error(err))
			return
		}
	}
}

// ping checks an idle connection with an empty query.
func (c *laneConn) ping() bool {
	c.conn.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.conn.SetDeadline(noDeadline)
	wire.WriteRaw(c.w, wire.Query, []byte{0})
	if c.w.Flush() != nil {
		return false
	}
	for {
		typ, _, err := c.r.Next()
		if err != nil {
			return false
		}
		if typ == wire.ReadyForQuery {
			body, err := c.r.Body()
			return err == nil && len(body) == 1 && body[0] == wire.TxIdle && !c.tainted
		}
		if typ == wire.NotificationResponse {
			c.tainted = true
		}
		if c.r.Skip() != nil {
			return false
		}
	}
}

// close closes every pool.
func (lp *lanePools) close() {
	lp.mu.Lock()
	if lp.mu.closed {
		lp.mu.Unlock()
		return
	}
	lp.mu.closed = true
	pools := lp.mu.pools
	lp.mu.Unlock()
	close(lp.stop)
	lp.wg.Wait()
	for _, p := range pools {
		p.Close()
	}
}

// PoolStat describes one database's vector-lane pool.
type PoolStat struct {
	Database                        string
	Total, Idle, Acquired, Creating int
	// Max is the pool's size limit; Waiting the acquires in progress.
	Max, Waiting                    int
	AcquireCount, EmptyAcquireCount int64
	CanceledAcquireCount            int64
	AcquireWait                     time.Duration
}

func (lp *lanePools) stats() []PoolStat {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	var out []PoolStat
	for db, p := range lp.mu.pools {
		s := p.Stat()
		out = append(out, PoolStat{
			Database: db, Total: int(s.TotalResources()), Idle: int(s.IdleResources()),
			Acquired: int(s.AcquiredResources()), Creating: int(s.ConstructingResources()),
			Max: p.maxConns, Waiting: int(p.waiting.Load()),
			AcquireCount: s.AcquireCount(), EmptyAcquireCount: s.EmptyAcquireCount(),
			CanceledAcquireCount: s.CanceledAcquireCount(), AcquireWait: s.EmptyAcquireWaitTime(),
		})
	}
	return out
}
