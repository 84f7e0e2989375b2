package proxy

import (
	"slices"
	"sync"
	"sync/atomic"
)

// max_db_connections and max_user_connections, PgBouncer's caps on the
// server connections of all pools of one database and of one user (pools
// of different users, or of different startup parameters, share a
// database's cap). They count what pool_size counts: the backends of the
// primary lane's pools (serving a client, idle, being reset or being
// opened), not the vector lane's, which read_pool.max_conns caps per
// database.
//
// A client whose pool may grow by pool_size but not by a cap waits for a
// backend as for pool_size, up to the same timeout (query_wait_timeout:
// FATAL 08P01; a login, client_login_timeout or query_wait_timeout), and
// its pool is recorded as blocked. As PgBouncer does (janitor.c,
// evict_connection and evict_user_connection), txlane then closes an idle
// backend of another pool under the same cap to make room, now or when one
// goes idle; and when any backend under the cap closes, the blocked pools
// open one for their waiting clients.
//
// A backend a relayed login made (auth_type server: the server checked the
// login on a backend of its own, which txlane cannot refuse) joins its pool
// within the caps, or when the pool has no backend at all (it could not
// serve its clients otherwise); beyond them it serves its client until the
// client is next idle, and is closed.
//
// Lock order: serverPool.mu → connCaps.mu; a pool's lock is never taken
// while connCaps.mu is held (blocked pools are woken on goroutines of
// their own).

// connCaps counts the backends of the primary pools per database and per
// user against the caps.
type connCaps struct {
	maxDB, maxUser int // 0: no cap
	pools          func() []*serverPool

	// nblocked is len(mu.blocked), read without the lock on the path of
	// every backend that goes idle.
	nblocked atomic.Int32
	mu       struct {
		sync.Mutex
		db, user map[string]int
		// blocked lists the pools with clients waiting that a cap holds
		// back, each once, in the order they were held back.
		blocked []*serverPool
	}
}

// connCapsLocked returns the server's caps, made at first use (nil when
// neither is set). s.pools must be held.
func (s *Server) connCapsLocked() *connCaps {
	o := s.opts.Pool
	if o.MaxDBConnections <= 0 && o.MaxUserConnections <= 0 {
		return nil
	}
	if s.pools.caps == nil {
		c := &connCaps{maxDB: o.MaxDBConnections, maxUser: o.MaxUserConnections, pools: s.poolList}
		c.mu.db, c.mu.user = map[string]int{}, map[string]int{}
		s.pools.caps = c
	}
	return s.pools.caps
}

// fullLocked reports which caps p's database and user have reached.
// c.mu must be held.
func (c *connCaps) fullLocked(p *serverPool) (db, user bool) {
	return c.maxDB > 0 && c.mu.db[p.key.database] >= c.maxDB,
		c.maxUser > 0 && c.mu.user[p.key.user] >= c.maxUser
}

// take counts one more backend of p when the caps allow it. When they do
// not and block is set (a client waits), p is recorded as blocked and an
// idle backend of another pool under the cap is closed, if there is one.
// Nil-safe: no caps allow everything.
func (c *connCaps) take(p *serverPool, block bool) bool {
	if c == nil {
		return true
	}
	c.mu.Lock()
	if db, user := c.fullLocked(p); !db && !user {
		c.mu.db[p.key.database]++
		c.mu.user[p.key.user]++
		c.mu.Unlock()
		return true
	}
	if !block {
		c.mu.Unlock()
		return false
	}
	if !slices.Contains(c.mu.blocked, p) {
		c.mu.blocked = append(c.mu.blocked, p)
		c.nblocked.Store(int32(len(c.mu.blocked)))
	}
	c.mu.Unlock()
	go c.evict(p)
	return false
}

// force counts one more backend of p whatever the caps say (a pool's
// first backend from a relayed login).
func (c *connCaps) force(p *serverPool) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.mu.db[p.key.database]++
	c.mu.user[p.key.user]++
	c.mu.Unlock()
}

// release counts one backend of p less, and wakes the blocked pools of its
// database or user: each opens backends for its waiting clients while the
// caps allow.
func (c *connCaps) release(p *serverPool) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.mu.db[p.key.database]--
	c.mu.user[p.key.user]--
	var wake []*serverPool
	kept := c.mu.blocked[:0]
	for _, q := range c.mu.blocked {
		if q.key.database == p.key.database || q.key.user == p.key.user {
			wake = append(wake, q)
		} else {
			kept = append(kept, q)
		}
	}
	c.mu.blocked = kept
	c.nblocked.Store(int32(len(kept)))
	c.mu.Unlock()
	for _, q := range wake {
		go q.retryCapped()
	}
}

// idled is told that p has a backend idle: if a pool under the same cap is
// blocked, an idle backend is closed to make room for it.
func (c *connCaps) idled(p *serverPool) {
	if c == nil || c.nblocked.Load() == 0 {
		return
	}
	c.mu.Lock()
	var blocked *serverPool
	for _, q := range c.mu.blocked {
		if q != p && (q.key.database == p.key.database || q.key.user == p.key.user) {
			blocked = q
			break
		}
	}
	c.mu.Unlock()
	if blocked != nil {
		go c.evict(blocked)
	}
}

// evict closes one idle backend of a pool other than p that counts against
// the caps p has reached (its database's, its user's or both), if a pool
// can spare one; closing it releases its count, which wakes p.
func (c *connCaps) evict(p *serverPool) {
	c.mu.Lock()
	dbFull, userFull := c.fullLocked(p)
	c.mu.Unlock()
	if !dbFull && !userFull {
		return
	}
	for _, q := range c.pools() {
		if q == p || dbFull && q.key.database != p.key.database || userFull && q.key.user != p.key.user {
			continue
		}
		q.mu.Lock()
		var victim *primaryConn
		if len(q.idle) > 0 && q.spareLocked() {
			victim = q.idle[0] // the least recently used
			q.idle = q.idle[1:]
			victim.pooled.inPool = false
			q.leaveLocked(victim)
		}
		q.mu.Unlock()
		if victim != nil {
			victim.conn.Close()
			return
		}
	}
}

// growLocked reserves room for one more backend for a waiting client:
// false when pool_size is reached or a cap holds it back (see take).
// p.mu must be held.
func (p *serverPool) growLocked() bool { return p.reserveLocked(true) }

// growQuietLocked is growLocked for no client in particular
// (min_pool_size): a cap refuses it without blocking or evicting.
func (p *serverPool) growQuietLocked() bool { return p.reserveLocked(false) }

func (p *serverPool) reserveLocked(block bool) bool {
	if p.total >= p.size || !p.caps.take(p, block) {
		return false
	}
	p.total++
	return true
}

// adoptRoomLocked reserves room for a backend a relayed login made: within
// pool_size and the caps, or whatever the caps say for a pool without a
// backend.
func (p *serverPool) adoptRoomLocked() bool {
	switch {
	case p.total >= p.size:
		return false
	case p.total == 0:
		p.caps.force(p)
	case !p.caps.take(p, false):
		return false
	}
	p.total++
	return true
}

// shrinkLocked stops counting a backend of p (see release).
func (p *serverPool) shrinkLocked() {
	p.total--
	p.caps.release(p)
}

// cappedLocked reports whether a cap, not pool_size, keeps a pool that can
// open backends from opening one: its clients wait rather than fail.
func (p *serverPool) cappedLocked() bool {
	return p.caps != nil && p.dial != nil && p.total < p.size
}

// retryCapped opens backends for p's waiting clients, one each, while
// pool_size and the caps allow (p is blocked again when they do not).
func (p *serverPool) retryCapped() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for n := 0; n < len(p.waiters) && p.dial != nil && p.growLocked(); n++ {
		p.dialForWaiterLocked()
	}
}
