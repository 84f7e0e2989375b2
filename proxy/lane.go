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
	// login is the read pool's user the connection logged in as (its
	// session_user); priv what that user can do beyond the client roles.
	login string
	priv  lanePrivileges
	// settings holds the values txlane applied to tracked settings and the
	// role (settingRole), as the server reported them; a missing name means
	// the login value.
	settings map[string]string
	// resetTo holds the custom settings txlane reset (a client that lacked
	// them followed one that had them) and the value the reset gave: the
	// name stays defined in the session (RESET does not remove a custom
	// setting), so laneCheckSQL watches it too.
	resetTo map[string]string
	// base holds the tracked and watched settings' values at login.
	base map[string]*string
	// check caches expected() and its names as laneCheckSQL's parameter
	// until settings or resetTo change (nil: to be computed).
	check *checkExpect
	// fitted is the id of the session snapshot the connection was last
	// given (runOnLane), 0 for none: a read of the same snapshot needs no
	// applyPlan. Its settings are then still that snapshot's: a read that
	// changed them failed verify, and the connection was closed.
	fitted uint64
	// stmts holds the content-derived names of statements prepared here.
	stmts *stmtLRU
	// applyReady: laneApplyStmt is prepared here.
	applyReady bool
	// checkReady: the unnamed statement holds laneCheckSQL. Any simple Query
	// replaces the unnamed statement.
	checkReady bool
	// tainted: the server sent something no client read asked for (a
	// NotificationResponse: a read made the connection LISTEN). The
	// connection is closed instead of going back to the pool.
	tainted bool
	// discard is why the connection must be closed after the current read
	// instead of going back to the pool (a discard* reason), "" if it may.
	discard string
	// use is what SHOW SERVERS shows of the connection's use (laneuse.go).
	use laneUse
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
	retired  chan struct{} // closed when replaced or closed
	// conns and waits list the pool's connections and its acquires in
	// progress (laneuse.go: SHOW SERVERS and SHOW POOLS).
	conns laneConns
	// warned: the read pool user's privileges were logged (once per pool).
	warned atomic.Bool
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
	var p *lanePool
	pp, err := puddle.NewPool(&puddle.Config[*laneConn]{
		Constructor: func(ctx context.Context) (*laneConn, error) {
			// NOTE: acquire's TryAcquire opens a connection in the
			// background with no deadline of its own: this is its bound.
			ctx, cancel := context.WithTimeout(ctx, laneDialTimeout)
			defer cancel()
			c, err := dialLane(ctx, cfg)
			if err == nil {
				p.conns.add(c)
				if p.warned.CompareAndSwap(false, true) {
					lp.warnPrivileges(database, c)
				}
			}
			return c, err
		},
		Destructor: func(c *laneConn) {
			p.conns.remove(c)
			c.close()
		},
		MaxSize: int32(maxConns),
	})
	if err != nil {
		return nil, err
	}
	p = &lanePool{Pool: pp, maxConns: maxConns, retired: make(chan struct{})}
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
// never changed after: applyPlan does not set it (laneFixed), and a lane
// connection on which the server reports any ParameterStatus while a client's
// read runs (a function that ran SET default_transaction_read_only = off, say:
// the setting is reported since PostgreSQL 14) is discarded (relayLane).
const readOnlyLaneParam = "default_transaction_read_only"

// laneDialTimeout bounds opening one vector-lane connection (connect, log
// in, read its settings), whoever asked for it.
const laneDialTimeout = 30 * time.Second

// dialLane opens one vector-lane connection and reads its login user and
// settings (the lane check's fixed values).
func dialLane(ctx context.Context, cfg *pgconn.Config) (*laneConn, error) {
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if v := pc.ParameterStatus(readOnlyLaneParam); v != "on" {
		pc.Close(ctx)
		return nil, fmt.Errorf("vector-lane connection: the server reports %s = %q, want on (PostgreSQL 14 or newer reports it)", readOnlyLaneParam, v)
	}
	res, err := pc.Exec(ctx, laneLoadVectorSQL+"; "+laneDialSQL()).ReadAll()
	if err == nil && (len(res) != 2 || len(res[1].Rows) != 1 || len(res[1].Rows[0]) != 6+len(checkFixed)) {
		err = errors.New("not the one row expected")
	}
	if err != nil {
		pc.Close(ctx)
		return nil, fmt.Errorf("vector-lane connection: reading its login user and settings: %w", err)
	}
	row := res[1].Rows[0]
	login, err := laneDialValues(row)
	if err != nil {
		pc.Close(ctx)
		return nil, fmt.Errorf("vector-lane connection: reading its login user and settings: %w", err)
	}
	hj, err := pc.Hijack()
	if err != nil {
		pc.Close(ctx)
		return nil, err
	}
	hj.Conn.SetDeadline(time.Time{})
	network, addr := pgconn.NetworkAddress(cfg.Host, cfg.Port)
	c := &laneConn{
		backend: &backend{
			conn: hj.Conn,
			r:    wire.NewReader[wire.Backend](hj.Conn, 0),
			w:    bufio.NewWriterSize(hj.Conn, wire.WriteBufSize),
			target: wire.CancelTarget{Dial: cfg.DialFunc, Network: network, Addr: addr,
				PID: hj.PID, Secret: hj.SecretKey},
		},
		pid:      hj.PID,
		created:  time.Now(),
		login:    login,
		settings: map[string]string{},
		resetTo:  map[string]string{},
		base:     map[string]*string{},
		stmts:    newStmtLRU(maxLaneStatements),
	}
	c.priv = lanePrivileges{
		superuser:  hj.ParameterStatuses["is_superuser"] == "on" || string(row[4]) == "t",
		inherit:    string(row[1]) == "t",
		bypassRLS:  string(row[2]) == "t",
		createRole: string(row[3]) == "t",
		predefined: string(row[5]),
	}
	for i, n := range checkFixed {
		if v := row[6+i]; v != nil {
			s := string(v)
			c.base[n] = &s
		}
	}
	return c, nil
}

// warnPrivileges logs, once per pool, what the read pool's user can do that
// README's set-up advises against (see lanePrivileges).
func (lp *lanePools) warnPrivileges(database string, c *laneConn) {
	if c.priv.superuser {
		lp.log.Error("the vector lane's login user is a superuser or can become one: a function hidden in a read could act as a superuser, "+
			"so this lane serves only clients whose role is a superuser, and other clients' reads run on the primary (read_pool.on_unavailable). "+
			"Give read_pool.dsn an unprivileged NOINHERIT user granted the client roles.",
			zap.String("database", database), zap.String("user", c.login))
		return
	}
	if w := c.priv.warnings(); len(w) > 0 {
		lp.log.Warn("the vector lane's login user has privileges a function hidden in a read could use (it may reset the read's role)",
			zap.String("database", database), zap.String("user", c.login), zap.Strings("privileges", w))
	}
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
	// An idle connection is taken without a context of its own (the
	// common case; a timeout context per read cost about 2.5% of txlane's
	// CPU in the mixed benchmark). Only when one is idle: with none idle and
	// room in the pool, TryAcquire would open one in the background and the
	// wait below another (which a race between the two calls may still do:
	// the pool then holds one more connection, never more than max_conns).
	if p.Stat().IdleResources() > 0 {
		if res, err := p.TryAcquire(context.Background()); err == nil {
			if lp.metrics != nil {
				lp.metrics.observeAcquire("vector", 0)
			}
			res.Value().use.acquired()
			return res, nil
		} else if !errors.Is(err, puddle.ErrNotAvailable) {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, lp.live().AcquireTimeout)
	defer cancel()
	w := p.conns.waitStart()
	res, err := p.Acquire(ctx)
	end := p.conns.waitEnd(w)
	if lp.metrics != nil {
		lp.metrics.observeAcquire("vector", end.Sub(w.start))
	}
	if err == nil {
		res.Value().use.acquired()
	}
	return res, err
}

// release returns res to its pool, or destroys it when it is past its
// lifetime or its state is unknown (broken).
func (lp *lanePools) release(res *puddle.Resource[*laneConn], broken bool) {
	c := res.Value()
	c.use.released()
	if broken || c.tainted || c.discard != "" || time.Since(c.created) > lp.live().MaxLifetime {
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
				if res.Value().tainted {
					lp.discarded(database, res.Value(), discardNotified, "", "")
				}
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
	c.checkReady = false // a simple Query replaces the unnamed statement
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

// discarded logs and counts a connection closed because its session is not
// what txlane set (reason: a discard* constant; detail: names, never values;
// fingerprint: of the read that ran last, if known).
func (lp *lanePools) discarded(database string, c *laneConn, reason, detail, fingerprint string) {
	lp.log.Warn("a read changed the session of its vector-lane connection; the connection is closed instead of reused",
		zap.String("database", database), zap.Uint32("lane_pid", c.pid), zap.String("reason", reason),
		zap.String("detail", detail), zap.String("fingerprint", fingerprint))
	if lp.metrics != nil {
		lp.metrics.laneDiscarded(reason)
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
	// Max is the pool's size limit; Waiting the acquires in progress,
	// MaxWait how long the oldest of them has waited.
	Max, Waiting                    int
	MaxWait                         time.Duration
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
			Max: p.maxConns, Waiting: p.conns.waiting(), MaxWait: p.conns.maxWait(),
			AcquireCount: s.AcquireCount(), EmptyAcquireCount: s.EmptyAcquireCount(),
			CanceledAcquireCount: s.CanceledAcquireCount(), AcquireWait: s.EmptyAcquireWaitTime(),
		})
	}
	return out
}
