package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// PoolMode says how long a client holds a primary backend (pool_mode, as
// PgBouncer names it).
type PoolMode string

const (
	// PoolSession: a client holds its backend from login to logout.
	PoolSession PoolMode = "session"
	// PoolTransaction: a client holds a backend from the start of a request
	// until the ReadyForQuery that leaves it idle outside a transaction
	// block ('I') with nothing in flight, unless state that cannot move to
	// another backend pins it (see pinReasons).
	PoolTransaction PoolMode = "transaction"
)

// PoolOptions configure the primary lane's pools. A pool is per (database,
// user, startup parameters): backends made for different startup
// parameters (options, search_path, …) are never shared, so a client always
// finds the session defaults it asked for. In transaction mode the movable
// parameters (application_name, TimeZone, …: movable.go) do not count: they
// move with the client.
type PoolOptions struct {
	// Mode is pool_mode (default session).
	Mode PoolMode
	// Size is pool_size: the most backends a pool keeps (default 20). A login
	// always gets a backend of its own (the server authenticates it); in
	// transaction mode that backend joins the pool if the pool has room and
	// is closed after the login otherwise.
	Size int
	// ServerIdleTimeout (server_idle_timeout, default 10m) closes a backend
	// idle in the pool this long; ServerLifetime (server_lifetime, default
	// 1h) closes one this old when it is next idle in the pool. A pool that
	// cannot open backends closes only those beyond its clients' number.
	ServerIdleTimeout time.Duration
	ServerLifetime    time.Duration
	// MinSize is min_pool_size: a pool that can open backends by itself
	// (after a login txlane checked) keeps at least this many (default 0).
	MinSize int
	// ServerResetQuery (server_reset_query, default DISCARD ALL) wipes a
	// session-mode client's session before its backend goes back to the
	// pool.
	ServerResetQuery string
	// MaxDBConnections (max_db_connections) and MaxUserConnections
	// (max_user_connections) cap the backends of all pools of one database
	// and of one user (0, the default: no cap); see pool_caps.go.
	MaxDBConnections, MaxUserConnections int
	// IgnoreStartupParameters (ignore_startup_parameters) are dropped from
	// every client's startup message (startup_ignore.go).
	IgnoreStartupParameters []string
	// Overrides replace Mode or Size for some databases or users: for each,
	// the first entry that matches and sets it wins.
	Overrides []PoolOverride
}

// PoolOverride is pool_mode and pool_size for the clients of a database, a
// user, or both (an empty name matches any).
type PoolOverride struct {
	Database, User string
	Mode           PoolMode // "" keeps the mode
	Size           int      // 0 keeps the size
}

// For returns the pool mode and size of the clients of database and user.
func (o PoolOptions) For(database, user string) (PoolMode, int) {
	mode, size := o.Mode, o.Size
	modeSet, sizeSet := false, false
	for _, ov := range o.Overrides {
		if ov.Database != "" && ov.Database != database || ov.User != "" && ov.User != user {
			continue
		}
		if ov.Mode != "" && !modeSet {
			mode, modeSet = ov.Mode, true
		}
		if ov.Size > 0 && !sizeSet {
			size, sizeSet = ov.Size, true
		}
	}
	return mode, size
}

func (o *PoolOptions) setDefaults() {
	if o.Mode == "" {
		o.Mode = PoolSession
	}
	if o.Size <= 0 {
		o.Size = 20
	}
	if o.ServerIdleTimeout <= 0 {
		o.ServerIdleTimeout = 10 * time.Minute
	}
	if o.ServerLifetime <= 0 {
		o.ServerLifetime = time.Hour
	}
	if o.ServerResetQuery == "" {
		o.ServerResetQuery = "DISCARD ALL"
	}
}

// poolKey names a pool: the database, the user and the client's other
// startup parameters, in a canonical form.
type poolKey struct {
	database, user, startup string
}

// startupKey is the canonical form of the startup parameters other than
// user and database and, unless for session mode (session), other than the
// movable ones (movable.go).
func startupKey(params map[string]string, session bool) string {
	var parts []string
	for k, v := range params {
		if _, ok := movableName(k); k == "user" || k == "database" || ok && !session {
			continue
		}
		parts = append(parts, k+"\x00"+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, "\x00\x00")
}

// errPoolEmpty: the pool has no backend at all and cannot open one.
var errPoolEmpty = errors.New("no server connection left in the pool")

// serverPool is the backends of one poolKey that clients share in
// transaction mode.
//
// NOTE: a pool of its own rather than puddle's: a backend joins the pool
// from a login the server authenticated (txlane cannot open one by itself
// without credentials), and a client waits for a backend to be released
// rather than for one to be made.
type serverPool struct {
	// loginUnit is txlane.unit as its backends' logins leave it (freshUnits).
	loginUnit atomic.Pointer[string]
	key       poolKey
	opts      func() PoolOptions
	size      int // pool_size for key
	// caps are max_db_connections and max_user_connections (nil: none).
	caps *connCaps

	mu sync.Mutex
	// dial, when set, opens a backend for the pool without a client (with
	// the credentials of the pool's latest txlane-checked login); without
	// it the pool grows only through relayed logins (adopt).
	dial    func(context.Context) (*primaryConn, error)
	idle    []*primaryConn // most recently used last
	total   int            // backends that belong to the pool: idle or serving a client
	waiters []waiter
	// resetting counts backends running server_reset_query (SHOW POOLS
	// sv_tested).
	resetting int
	// login answers logins without a backend (transaction mode;
	// logincache.go).
	login loginCache
	// clients counts the clients of the pool (join to leave).
	// NOTE: a pool that cannot open a backend (dial unset: its backends
	// come from relayed logins) closes an idle or old one only while it
	// keeps as many as it has clients: closing one the clients may need
	// would leave them waiting, and closing the last one would end them all
	// (errPoolEmpty).
	clients int
	// stats (guarded by mu)
}

// waiter is a client waiting for a backend.
type waiter struct {
	ch chan *primaryConn
	// err, set before ch is closed empty, is why no backend came: the
	// server's refusal of the backend opened for the waiters (a login the
	// server refuses gets that refusal, not a bare "no server connection").
	err *error
}

// resetStarted counts backends being reset (n = 1) or done (n = -1).
func (p *serverPool) resetStarted(n int) {
	p.mu.Lock()
	p.resetting += n
	p.mu.Unlock()
}

// pooled is what a pool records of a backend; guarded by the pool's mu.
type pooled struct {
	pool      *serverPool
	created   time.Time
	idleSince time.Time
	inPool    bool // idle in the pool
	left      bool // no longer counted in total
}

// leaveLocked stops counting c in the pool, once, and sees to the clients
// waiting: a new backend is opened for them if the pool can; if the pool
// is empty and cannot, they are told at once (errPoolEmpty) rather than
// left to wait for a release that will not come. p.mu must be held.
func (p *serverPool) leaveLocked(c *primaryConn) {
	if c.pooled.left {
		return
	}
	c.pooled.left = true
	p.shrinkLocked()
	switch {
	case len(p.waiters) == 0:
	case p.dial != nil && p.growLocked():
		p.dialForWaiterLocked()
	case p.dial != nil && p.total < p.size:
		// Held back by max_db_connections or max_user_connections: served
		// when a backend of its database or user closes (pool_caps.go).
	default:
		p.failWaitersLocked()
	}
}

// dialForWaiterLocked opens a backend, reserved in total, for the longest
// waiting client; if it cannot, and the pool has no backend left, the
// waiting clients are told at once. p.mu must be held.
func (p *serverPool) dialForWaiterLocked() {
	dial := p.dial
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := dial(ctx)
		p.mu.Lock()
		if err != nil {
			p.shrinkLocked()
			p.failWaitersWithLocked(err)
			p.mu.Unlock()
			return
		}
		c.pooled = pooled{pool: p, created: time.Now()}
		p.mu.Unlock()
		p.put(c)
	}()
}

// failWaitersLocked tells the waiting clients that no backend will come,
// when the pool has none. p.mu must be held.
func (p *serverPool) failWaitersLocked() { p.failWaitersWithLocked(nil) }

// failWaitersWithLocked is failWaitersLocked telling the waiters why (nil:
// errPoolEmpty).
func (p *serverPool) failWaitersWithLocked(why error) {
	if p.total > 0 {
		return
	}
	for _, w := range p.waiters {
		if why != nil && w.err != nil {
			*w.err = why
		}
		close(w.ch)
	}
	p.waiters = nil
}

// adopt makes c, a backend a login made, one of the pool's: it reports
// false when the pool is full (the backend then serves its client until
// the client is next idle, and is closed).
func (p *serverPool) adopt(c *primaryConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.adoptRoomLocked() {
		return false
	}
	c.pooled = pooled{pool: p, created: time.Now()}
	return true
}

// join counts a client of the pool; leave stops counting it.
func (p *serverPool) join() {
	p.mu.Lock()
	p.clients++
	p.mu.Unlock()
}

func (p *serverPool) leave() {
	p.mu.Lock()
	p.clients--
	p.mu.Unlock()
}

// spareLocked reports whether the pool may close one of its backends that
// is idle and old: one that can open backends may; one that cannot keeps at
// least as many as it has clients. p.mu must be held.
func (p *serverPool) spareLocked() bool { return p.dial != nil || p.total > p.clients }

// get returns a backend idle in the pool, waiting until ctx is done for one
// to be released. The backend's owner is the pool's until the caller sets
// its own.
func (p *serverPool) get(ctx context.Context) (*primaryConn, error) {
	return p.take(ctx, nil)
}

// getWaiting is get bounded by the client's current block in the pool (w,
// between poolWait.block and unblock) rather than by a context: its timer
// and cancel channel are the session's, so a wait allocates no context.
func (p *serverPool) getWaiting(w *poolWait) (*primaryConn, error) {
	return p.take(context.Background(), w)
}

// take is get (w nil: ctx bounds the wait and a dial) and getWaiting (w
// bounds the wait and gives a dial its context; ctx is not used).
func (p *serverPool) take(ctx context.Context, w *poolWait) (*primaryConn, error) {
	p.mu.Lock()
	if c := p.takeIdleLocked(); c != nil {
		p.mu.Unlock()
		return c, nil
	}
	if dial := p.dial; dial != nil && p.growLocked() { // reserved while it opens
		p.mu.Unlock()
		if w != nil {
			var stop func()
			ctx, stop = w.dialContext()
			defer stop()
		}
		c, err := dial(ctx)
		p.mu.Lock()
		defer p.mu.Unlock()
		if err != nil {
			p.shrinkLocked()
			return nil, err
		}
		c.pooled = pooled{pool: p, created: time.Now()}
		return c, nil
	}
	if p.total == 0 && !p.cappedLocked() {
		p.mu.Unlock()
		return nil, errPoolEmpty
	}
	ch := make(chan *primaryConn, 1)
	var why error
	p.waiters = append(p.waiters, waiter{ch: ch, err: &why})
	p.mu.Unlock()
	// Nil channels never fire: ctx's or w's ends the wait.
	var done, canceled <-chan struct{}
	var timeout <-chan time.Time
	if w != nil {
		timeout, canceled = w.timer.C, w.cancelCh
	} else {
		done = ctx.Done()
	}
	var err error
	select {
	case c := <-ch:
		if c == nil {
			if why != nil {
				return nil, why // the server refused the backend opened for us
			}
			return nil, errPoolEmpty // closed by failWaitersLocked
		}
		return c, nil
	case <-done:
		err = ctx.Err()
	case <-timeout:
		err = context.DeadlineExceeded
	case <-canceled:
		err = context.Canceled
	}
	p.mu.Lock()
	if i := slices.IndexFunc(p.waiters, func(w waiter) bool { return w.ch == ch }); i >= 0 {
		p.waiters = slices.Delete(p.waiters, i, i+1)
		p.mu.Unlock()
		return nil, err
	}
	p.mu.Unlock()
	// Handed a backend as the wait ended: give it back.
	if c := <-ch; c != nil {
		p.put(c)
	}
	return nil, err
}

// tryGet returns one of the pool's idle backends, or nil when none is idle:
// get without a wait, for the common case of a pool with room.
func (p *serverPool) tryGet() *primaryConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.takeIdleLocked()
}

// takeIdleLocked takes the most recently used idle backend that is still
// usable, closing the dead ones it meets; nil if there is none.
func (p *serverPool) takeIdleLocked() *primaryConn {
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		c.pooled.inPool = false
		if c.usable() {
			return c
		}
		p.leaveLocked(c)
		go c.conn.Close()
	}
	return nil
}

// setDial sets how the pool opens backends by itself.
func (p *serverPool) setDial(dial func(context.Context) (*primaryConn, error)) {
	p.mu.Lock()
	p.dial = dial
	p.mu.Unlock()
}

// put returns c, idle outside a transaction block with nothing pinning it,
// to the pool: to the longest waiting client, or to the idle list.
func (p *serverPool) put(c *primaryConn) {
	c.setIdle()
	p.mu.Lock()
	if !c.usable() || time.Since(c.pooled.created) > p.opts().ServerLifetime && p.spareLocked() {
		p.leaveLocked(c)
		p.mu.Unlock()
		c.conn.Close()
		return
	}
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		p.mu.Unlock()
		w.ch <- c
		return
	}
	c.pooled.inPool, c.pooled.idleSince = true, time.Now()
	p.idle = append(p.idle, c)
	p.mu.Unlock()
	p.caps.idled(p)
}

// drop forgets c, which failed or was closed.
func (p *serverPool) drop(c *primaryConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i := slices.Index(p.idle, c); i >= 0 {
		p.idle = slices.Delete(p.idle, i, i+1)
	}
	p.leaveLocked(c)
}

// reap closes the backends idle longer than server_idle_timeout or
// older than server_lifetime, and opens one when the pool can and is
// below min_pool_size.
func (p *serverPool) reap(now time.Time) {
	o := p.opts()
	defer p.fill(o.MinSize)
	p.mu.Lock()
	var closing []*primaryConn
	p.idle = slices.DeleteFunc(p.idle, func(c *primaryConn) bool {
		old := now.Sub(c.pooled.idleSince) > o.ServerIdleTimeout || now.Sub(c.pooled.created) > o.ServerLifetime
		if !old || !p.spareLocked() {
			return false
		}
		c.pooled.inPool = false
		p.leaveLocked(c)
		closing = append(closing, c)
		return true
	})
	p.mu.Unlock()
	for _, c := range closing {
		c.conn.Close()
	}
}

// fill opens one backend into the idle list if the pool can open backends
// and has fewer than min (one per call: the reaper calls it each second).
func (p *serverPool) fill(min int) {
	p.mu.Lock()
	dial := p.dial
	if dial == nil || p.total >= min || !p.growQuietLocked() {
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dial(ctx)
	if err != nil {
		p.mu.Lock()
		p.shrinkLocked()
		p.mu.Unlock()
		return
	}
	p.mu.Lock()
	c.pooled = pooled{pool: p, created: time.Now()}
	p.mu.Unlock()
	p.put(c)
}

// PoolStats is what one serverPool holds. (Its waiting clients are read
// from the sessions: ClientInfo.)
type PoolStats struct {
	Database, User string
	// SvIdle counts backends idle in the pool; SvTested backends being
	// reset.
	SvIdle, SvTested int
}

func (p *serverPool) stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PoolStats{Database: p.key.database, User: p.key.user, SvIdle: len(p.idle), SvTested: p.resetting}
}

// idleOwner owns a backend idle in its pool: nothing it says reaches a
// client; if it fails it leaves the pool.
type idleOwner struct{ c *primaryConn }

var discardOut = &clientWriter{w: bufio.NewWriter(io.Discard)}

func (o *idleOwner) ownerOut() *clientWriter              { return discardOut }
func (o *idleOwner) requestDone(*request, TxStatus, bool) {}
func (o *idleOwner) parameterChanged()                    {}
func (o *idleOwner) guestArriving(*request)               {}
func (o *idleOwner) idle(*primaryConn)                    {}
func (o *idleOwner) primaryLost(err error, _ bool) error {
	o.c.conn.Close()
	if pl := o.c.pooled.pool; pl != nil {
		pl.drop(o.c)
	}
	return err
}

// poolFor returns the pool of a client with these startup parameters,
// making it at first use.
func (s *Server) poolFor(params map[string]string) *serverPool {
	db := params["database"]
	if db == "" {
		db = params["user"]
	}
	mode, _ := s.opts.Pool.For(db, params["user"])
	k := poolKey{database: db, user: params["user"], startup: startupKey(params, mode == PoolSession)}
	s.pools.Lock()
	defer s.pools.Unlock()
	if s.pools.m == nil {
		s.pools.m = make(map[poolKey]*serverPool)
	}
	p := s.pools.m[k]
	if p == nil {
		_, size := s.opts.Pool.For(k.database, k.user)
		p = &serverPool{key: k, opts: func() PoolOptions { return s.opts.Pool }, size: size, caps: s.connCapsLocked()}
		s.pools.m[k] = p
	}
	s.pools.reap.Do(func() { go s.reapPools() })
	return p
}

// reapPools closes idle backends past server_idle_timeout or
// server_lifetime, once a second, until the server closes.
func (s *Server) reapPools() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for now := range t.C {
		s.mu.Lock()
		closed := s.mu.closed
		s.mu.Unlock()
		if closed {
			return
		}
		for _, p := range s.poolList() {
			p.reap(now)
		}
	}
}

func (s *Server) poolList() []*serverPool {
	s.pools.Lock()
	defer s.pools.Unlock()
	out := make([]*serverPool, 0, len(s.pools.m))
	for _, p := range s.pools.m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].key, out[j].key
		if a.database != b.database {
			return a.database < b.database
		}
		if a.user != b.user {
			return a.user < b.user
		}
		return a.startup < b.startup
	})
	return out
}

// primaryPools describes the transaction-mode pools.
func (s *Server) primaryPools() []PoolStats {
	var out []PoolStats
	for _, p := range s.poolList() {
		out = append(out, p.stats())
	}
	return out
}

// closePools closes every backend idle in a pool.
func (s *Server) closePools() {
	for _, p := range s.poolList() {
		p.mu.Lock()
		idle := p.idle
		p.idle = nil
		for _, c := range idle {
			p.leaveLocked(c)
		}
		p.mu.Unlock()
		for _, c := range idle {
			c.conn.Close()
		}
	}
}
