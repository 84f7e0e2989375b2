package proxy

import (
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// What SHOW SERVERS and SHOW POOLS show of the vector lane: each read
// pool's connections (puddle lists none of its resources, so the pool's
// constructor and destructor keep a list), whether each is acquired, by
// which client and since when, and the acquires in progress with their
// start, for PgBouncer's maxwait.

// laneUse is what is known of a lane connection's use. Written by the
// session that acquired the connection, read by the console. No clock is
// read for it: a client's read is timed already (vector.go).
type laneUse struct {
	// busy: acquired (serving a read, or txlane's catalog read).
	busy atomic.Bool
	// link is the id of the client whose read the connection serves (0:
	// none, or txlane's own query).
	link atomic.Uint64
	// lastRead is when the connection last began a client's read (Unix
	// nanoseconds; 0: never).
	lastRead atomic.Int64
}

// acquired records an acquire.
func (u *laneUse) acquired() { u.busy.Store(true) }

// serve records the client whose read the acquired connection runs, from
// at.
func (u *laneUse) serve(client uint64, at time.Time) {
	u.link.Store(client)
	u.lastRead.Store(at.UnixNano())
}

// released records the connection's return to its pool (or its close).
func (u *laneUse) released() {
	u.link.Store(0)
	u.busy.Store(false)
}

// laneConns lists one read pool's open connections and its acquires in
// progress.
type laneConns struct {
	mu    sync.Mutex
	conns map[*laneConn]struct{}
	// waits are the acquires in progress, oldest first; few at a time (at
	// most the sessions waiting for this database's lane).
	waits []laneWait
	next  uint64
}

// laneWait is one acquire in progress.
type laneWait struct {
	id    uint64
	start time.Time
}

func (l *laneConns) add(c *laneConn) {
	l.mu.Lock()
	if l.conns == nil {
		l.conns = map[*laneConn]struct{}{}
	}
	l.conns[c] = struct{}{}
	l.mu.Unlock()
}

func (l *laneConns) remove(c *laneConn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// list returns the open connections, oldest first.
func (l *laneConns) list() []*laneConn {
	l.mu.Lock()
	out := make([]*laneConn, 0, len(l.conns))
	for c := range l.conns {
		out = append(out, c)
	}
	l.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].created.Before(out[j].created) })
	return out
}

// waitStart records an acquire beginning now; waitEnd its end, and
// returns the time it ended.
func (l *laneConns) waitStart() laneWait {
	w := laneWait{start: time.Now()}
	l.mu.Lock()
	l.next++
	w.id = l.next
	l.waits = append(l.waits, w)
	l.mu.Unlock()
	return w
}

func (l *laneConns) waitEnd(w laneWait) time.Time {
	l.mu.Lock()
	if i := slices.IndexFunc(l.waits, func(x laneWait) bool { return x.id == w.id }); i >= 0 {
		l.waits = slices.Delete(l.waits, i, i+1)
	}
	l.mu.Unlock()
	return time.Now()
}

// waiting counts the acquires in progress.
func (l *laneConns) waiting() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.waits)
}

// maxWait is how long the oldest acquire in progress has waited (0 for
// none).
func (l *laneConns) maxWait() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.waits) == 0 {
		return 0
	}
	return time.Since(l.waits[0].start)
}

// servers describes the vector lane's connections, as SHOW SERVERS lists
// them: per database (in order), oldest first.
func (lp *lanePools) servers() []ServerInfo {
	lp.mu.Lock()
	dbs := make([]string, 0, len(lp.mu.pools))
	pools := make(map[string]*lanePool, len(lp.mu.pools))
	for db, p := range lp.mu.pools {
		dbs = append(dbs, db)
		pools[db] = p
	}
	lp.mu.Unlock()
	slices.Sort(dbs)
	var out []ServerInfo
	for _, db := range dbs {
		for _, c := range pools[db].conns.list() {
			info := ServerInfo{Lane: laneVector, User: c.login, Database: db, State: "idle", Addr: c.target.Addr,
				PID: c.pid, ConnectTime: c.created, Link: c.use.link.Load()}
			if c.use.busy.Load() {
				info.State = "active"
			}
			if t := c.use.lastRead.Load(); t != 0 {
				info.RequestTime = time.Unix(0, t)
			}
			out = append(out, info)
		}
	}
	return out
}
