package proxy

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
)

// Units held by a transaction that has done no work yet (policy
// shared_units).
//
// A transaction block that begins to hold a unit through statements that
// do no work (SET LOCAL txlane.unit, SAVEPOINT, SET TRANSACTION, a tagged
// SET LOCAL) has not taken its first snapshot. A lock call of txlane's in
// it, a SELECT, would take it: SET TRANSACTION ISOLATION LEVEL, SET
// TRANSACTION SNAPSHOT and [NOT] DEFERRABLE must come before a
// transaction's first query (PostgreSQL manual, "SET TRANSACTION"), and a
// REPEATABLE READ transaction would see the data as of txlane's call. No
// statement that runs a function in the transaction goes without a snapshot
// (only transaction control, SET, SHOW, LOCK, SET CONSTRAINTS, FETCH,
// LISTEN, NOTIFY, UNLISTEN and CHECKPOINT do).
//
// So the lock is held for it elsewhere until it can be taken on its own
// backend: on a connection of txlane's own to the same database (the lock
// spaces are per database), one per database and instance, which holds the
// unit's shared lock at session level for as long as some session of the
// instance is in that state, next to the instance's marker, so that other
// instances name the instance (and this connection's pid and
// application_name, idleLocksApp) as the holder. The lock is taken before
// the request that makes the transaction hold the unit is sent, and dropped
// once the transaction holds the lock on its own backend (its first
// statement that does work, or settleLocks), ends, or its client leaves:
// it may outlive its holder by a round trip of txlane's (fail safe: a write
// in that moment is refused). If the connection fails, its locks are gone:
// they are taken on the transaction's own backend behind its first
// statement that does work, as without this connection (the README's
// "Windows").

// idleLocksApp is the application_name of the connections holding locks
// for idle transactions.
const idleLocksApp = "txlane (units of transactions before their first snapshot)"

// idleLocks are an instance's connections holding units for transactions
// before their first snapshot, by database.
type idleLocks struct {
	cfg      *pgconn.Config
	instance int
	log      *zap.Logger
	mu       sync.Mutex
	conns    map[string]*idleConn
	closed   bool
}

// idleConn is one database's connection and the number of sessions each
// unit key is held for. gen changes when the connection is lost (with it
// its locks): a release from before then is void.
type idleConn struct {
	mu     sync.Mutex
	conn   *pgconn.PgConn
	counts map[uint32]int
	gen    uint64
}

// idleQueryTimeout bounds a query of an idleLocks connection (a lock call
// never waits: pg_try_*).
const idleQueryTimeout = 5 * time.Second

func newIdleLocks(cfg *pgconn.Config, instance int, log *zap.Logger) *idleLocks {
	return &idleLocks{cfg: cfg, instance: instance, log: log, conns: make(map[string]*idleConn)}
}

func (il *idleLocks) connFor(db string) *idleConn {
	il.mu.Lock()
	defer il.mu.Unlock()
	if il.closed {
		return nil
	}
	c := il.conns[db]
	if c == nil {
		c = &idleConn{counts: make(map[uint32]int)}
		il.conns[db] = c
	}
	return c
}

// pids are the backends of the connections.
func (il *idleLocks) pids() []uint32 {
	il.mu.Lock()
	defer il.mu.Unlock()
	var out []uint32
	for _, c := range il.conns {
		c.mu.Lock()
		if c.conn != nil {
			out = append(out, c.conn.PID())
		}
		c.mu.Unlock()
	}
	return out
}

// acquire holds keys in database db, and reports which it holds and the
// generation to release them with.
func (il *idleLocks) acquire(db string, keys []uint32) (gen uint64, held []bool) {
	held = make([]bool, len(keys))
	c := il.connFor(db)
	if c == nil {
		return 0, held
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := il.connect(c, db); err != nil {
		il.log.Warn("shared units: no connection for the units of transactions before their first snapshot", zap.String("database", db), zap.Error(err))
		return c.gen, held
	}
	var todo []int
	for i, k := range keys {
		if c.counts[k] > 0 {
			c.counts[k]++
			held[i] = true
		} else {
			todo = append(todo, i)
		}
	}
	// NOTE: a check of another backend holds a key exclusively for a
	// moment: tried again, as in sharedLock.
	for attempt := 0; attempt < 3 && len(todo) > 0; attempt++ {
		some := make([]uint32, len(todo))
		for j, i := range todo {
			some[j] = keys[i]
		}
		row, err := il.query(c, idleLockSQL(some), len(some))
		if err != nil {
			il.log.Warn("shared units: lock call for a transaction before its first snapshot failed", zap.Error(err))
			return c.gen, held
		}
		var again []int
		for j, i := range todo {
			if row[j] == "t" {
				c.counts[keys[i]] = 1
				held[i] = true
			} else {
				again = append(again, i)
			}
		}
		todo = again
	}
	return c.gen, held
}

// release drops one hold of each of keys taken in generation gen.
func (il *idleLocks) release(db string, gen uint64, keys []uint32) {
	c := il.connFor(db)
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen || c.conn == nil {
		return // lost with the connection
	}
	var drop []uint32
	for _, k := range keys {
		switch c.counts[k] {
		case 0:
		case 1:
			delete(c.counts, k)
			drop = append(drop, k)
		default:
			c.counts[k]--
		}
	}
	if len(drop) > 0 {
		if _, err := il.query(c, idleUnlockSQL(drop), len(drop)); err != nil {
			il.log.Warn("shared units: unlock for a transaction before its first snapshot failed; the connection is closed", zap.Error(err))
		}
	}
}

// connect opens c's connection if it has none, with the instance's marker
// held. c.mu must be held.
func (il *idleLocks) connect(c *idleConn, db string) error {
	if c.conn != nil {
		return nil
	}
	cfg := il.cfg.Copy()
	cfg.Database = db
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = idleLocksApp
	ctx, cancel := context.WithTimeout(context.Background(), idleQueryTimeout)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	c.conn = conn
	_, err = il.query(c, instanceMarkSQL(il.instance), 1)
	return err
}

// idleLockSQL tries a shared hold of each unit lock key (one boolean column
// each); idleUnlockSQL drops one hold of each; instanceMarkSQL takes the
// instance's marker (see sharedUnits).
func idleLockSQL(keys []uint32) string {
	return idleKeysSQL("pg_try_advisory_lock_shared", keys)
}

func idleUnlockSQL(keys []uint32) string { return idleKeysSQL("pg_advisory_unlock_shared", keys) }

func idleKeysSQL(fn string, keys []uint32) string {
	cols := make([]string, len(keys))
	for i, k := range keys {
		cols[i] = fmt.Sprintf("pg_catalog.%s(%d, %d)", fn, unitLockSpace, int32(k))
	}
	return "SELECT " + strings.Join(cols, ", ")
}

func instanceMarkSQL(instance int) string {
	return fmt.Sprintf("SELECT pg_catalog.pg_advisory_lock_shared(%d, %d)", instanceLockSpace, instance)
}

// query runs sql on c's connection and returns its one row of n columns
// as text. On failure the connection is closed and its locks are forgotten.
// c.mu must be held.
func (il *idleLocks) query(c *idleConn, sql string, n int) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), idleQueryTimeout)
	defer cancel()
	res, err := c.conn.Exec(ctx, sql).ReadAll()
	if err == nil && (len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != n) {
		err = fmt.Errorf("unexpected answer to %q", sql)
	}
	if err != nil {
		c.conn.Close(context.Background())
		c.conn = nil
		clear(c.counts)
		c.gen++
		return nil, err
	}
	row := make([]string, n)
	for i, v := range res[0].Rows[0] {
		row[i] = string(v)
	}
	return row, nil
}

// close closes the connections (their locks go with them).
func (il *idleLocks) close() {
	il.mu.Lock()
	il.closed = true
	conns := il.conns
	il.conns = nil
	il.mu.Unlock()
	for _, c := range conns {
		c.mu.Lock()
		if c.conn != nil {
			c.conn.Close(context.Background())
			c.conn = nil
		}
		c.mu.Unlock()
	}
}

// holdIdle holds units for the session's transaction, which holds them and
// has not taken its first snapshot (see above), before its request is sent.
func (s *session) holdIdle(units []string) {
	l := &s.shared
	l.mu.Lock()
	var todo []string
	for _, u := range units {
		if _, ok := l.idle[u]; !ok {
			todo = append(todo, u)
		}
	}
	l.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	gen, held := s.srv.shared.idle.acquire(s.database(), s.srv.shared.keys(todo))
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, u := range todo {
		if held[i] {
			if l.idle == nil {
				l.idle = make(map[string]uint64)
			}
			l.idle[u] = gen
		}
	}
	l.idleCount.Store(int32(len(l.idle)))
}

// releaseIdle drops the session's holds of units (all with nil) on the
// idleLocks connection, without waiting: its transaction holds their locks
// on its own backend now, or has ended.
func (s *session) releaseIdle(units []string) {
	l := &s.shared
	if l.idleCount.Load() == 0 {
		return
	}
	l.mu.Lock()
	byGen := map[uint64][]string{}
	for u, gen := range l.idle {
		if units == nil || slices.Contains(units, u) {
			byGen[gen] = append(byGen[gen], u)
			delete(l.idle, u)
		}
	}
	l.idleCount.Store(int32(len(l.idle)))
	l.mu.Unlock()
	db := s.database()
	for gen, us := range byGen {
		keys := s.srv.shared.keys(us)
		go s.srv.shared.idle.release(db, gen, keys)
	}
}
