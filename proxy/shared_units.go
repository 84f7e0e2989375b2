package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/proxy/console"
	"github.com/txlane/txlane/proxy/wire"
)

// Units of work shared by several txlane instances (policy.shared_units).
//
// The only state instances share is which transaction holds which unit,
// and PostgreSQL keeps it: each holder's own backend holds a shared
// advisory lock on the unit (several transactions may hold one unit),
// taken before the first statement of the unit that does
// work (anything but transaction control and SET) runs in its
// transaction (until then, on a connection of the instance's own:
// shared_idle.go). PostgreSQL releases it when that transaction ends, when the
// backend exits (its client, txlane, closed the connection or died: the
// server notices the closed socket) or, in transaction pooling, before the
// backend can serve another client (the transaction has ended). Every
// instance checks that no other backend holds the lock before it lets a
// write carrying the unit through (an exclusive lock taken and dropped in
// one SELECT: the backend's own lock is no obstacle), and names the holder
// from pg_locks and pg_stat_activity.
//
// Keys (PostgreSQL manual, "Advisory Locks"; pg_locks): the two-int form,
// key1 = unitLockSpace, key2 = unitKey(unit), which pg_locks shows as
// classid = key1, objid = key2, objsubid = 2. An application's own
// advisory locks meet these only if it uses the two-int form with key1 =
// 1954049134; its one-bigint locks (objsubid 1) never do. Next to each unit
// lock the holder takes a shared lock (instanceLockSpace, instance_id),
// which names its instance in pg_locks.
//
// Which lock: a transaction-level lock at the top level of the transaction
// (no savepoint open), where no ROLLBACK TO SAVEPOINT can release it (one
// taken inside a savepoint is released when the client rolls back to it or
// to an older one; see TestSharedUnitsSavepoints). Where that is not
// possible (before the transaction block has begun, when the request itself
// begins it; inside a savepoint; a request that ends its transaction and
// starts another) a session-level lock, which survives any rollback, and
// which txlane turns into a transaction-level one as soon as the
// transaction is at its top level again, or drops once the transaction has
// ended (settleLocks). A session-level lock thus outlives its transaction by one
// round trip at most: a write elsewhere in that moment is refused (fail
// safe), never let through.
//
// The lock calls are txlane's own queries, run on the client's backend
// once none of the client's requests is in flight: pg_try_advisory_* never
// waits, and inside a transaction block the query runs in a savepoint of
// its own (SAVEPOINT txlane_unit ... RELEASE), rolled back to if anything
// cuts it (a statement_timeout shorter than the call, a cancel), so that a
// failed lock call never leaves the client's transaction failed.

// unitLockSpace and instanceLockSpace are the first keys of txlane's
// advisory locks ("txln" and "txlo" in ASCII).
const (
	unitLockSpace     = 0x74786c6e
	instanceLockSpace = 0x74786c6f
)

// unitKey is the second key of unit u's advisory lock: the first 32 bits
// of SHA-256 of its name. Two units whose keys collide are one for the
// locks: a write of one is refused while the other is held. Never the
// reverse: every holder holds its key's lock, the check of a write is
// exclusive, and holders found through a key are matched to this
// instance's clients by unit name and backend (localPIDs), so a collision
// can only make a holder count where it does not. With n units held at
// once a given unit collides with one of them with probability n/2^32.
func unitKey(u string) uint32 {
	sum := sha256.Sum256([]byte(u))
	return binary.BigEndian.Uint32(sum[:4])
}

// sharedSavepoint is the savepoint txlane's lock calls run in.
const sharedSavepoint = "txlane_unit"

// sharedUnits is an instance's side of the units shared through
// PostgreSQL: its instance ID and the names of unit keys it has seen (SHOW
// UNITS names other instances' units by them; pg_locks has only keys).
type sharedUnits struct {
	instance int
	// idle holds units for transactions before their first snapshot
	// (shared_idle.go).
	idle  *idleLocks
	mu    sync.Mutex
	names map[uint32]string
}

// maxUnitNames bounds sharedUnits.names: past it the map starts over.
const maxUnitNames = 4096

func newSharedUnits(instance int) *sharedUnits {
	return &sharedUnits{instance: instance, names: make(map[uint32]string)}
}

// key returns u's key and remembers its name.
func (su *sharedUnits) key(u string) uint32 {
	k := unitKey(u)
	su.mu.Lock()
	if len(su.names) >= maxUnitNames {
		clear(su.names)
	}
	su.names[k] = u
	su.mu.Unlock()
	return k
}

// nameOf returns the name of a unit key seen here ("" if none).
func (su *sharedUnits) nameOf(k uint32) string {
	su.mu.Lock()
	defer su.mu.Unlock()
	return su.names[k]
}

// sharedLocks is one session's advisory locks on units (policy
// shared_units), as far as txlane knows them. mu guards it: the client
// goroutine takes locks, relay settles them after a request.
type sharedLocks struct {
	mu sync.Mutex
	// xact: units whose transaction-level lock the open transaction holds
	// at its top level (no ROLLBACK TO SAVEPOINT can release it).
	xact map[string]bool
	// sess: units whose session-level lock the backend holds; settleLocks turns
	// each into a transaction-level lock, or drops it.
	sess map[string]bool
	// need: units the session holds whose lock could not be taken before
	// their statements ran (its transaction had failed, the request had
	// been partly sent, or the lock call failed): settleLocks takes it.
	need map[string]bool
	// coheld: units whose lock the backend holds but which another backend
	// held too when it was taken (or last checked), or for which that is not
	// known. Holding the lock proves nothing then: a write of such a unit
	// that cannot be checked first (pipelined, partly sent) is refused.
	coheld map[string]bool
	// savepoints are the open transaction's savepoints, oldest first, as
	// the statements the server completed left them.
	savepoints []string
	// worked: the open transaction ran a statement that does work (see
	// doesWork), which took its snapshot: a lock call of txlane's (a
	// SELECT, which takes one) may run in it without changing when that
	// happens (SET TRANSACTION ISOLATION LEVEL must come before it).
	worked bool
	// settling: a settleLocks goroutine is under way; again: an answer
	// came meanwhile, so it looks once more before it ends.
	settling, again bool
	// pending counts sess, for idle's look without mu.
	pending atomic.Int32
	// idle: units held for the transaction on the instance's idleLocks
	// connection (shared_idle.go), with the generation of their hold;
	// idleCount counts them, for a look without mu.
	idle      map[string]uint64
	idleCount atomic.Int32
}

// holds reports whether the backend holds u's lock (either level).
func (l *sharedLocks) holds(u string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.xact[u] || l.sess[u]
}

// hasWorked reports worked.
func (l *sharedLocks) hasWorked() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.worked
}

// depth is the number of savepoints open in the transaction.
func (l *sharedLocks) depth() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.savepoints)
}

// got records what a lock call took: u's lock at session level or for
// the transaction; coheld says another backend held it too (see
// sharedLocks.coheld).
func (l *sharedLocks) got(u string, session, coheld bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.need, u)
	l.setCoheld(u, coheld)
	if session {
		l.setSess(u, true)
	} else {
		l.xact = setKey(l.xact, u)
	}
}

// setCoheld records whether another backend holds u's lock beside this
// one (see sharedLocks.coheld). l.mu must be held.
func (l *sharedLocks) setCoheld(u string, on bool) {
	if on {
		l.coheld = setKey(l.coheld, u)
	} else {
		delete(l.coheld, u)
	}
}

// isCoheld reports coheld[u].
func (l *sharedLocks) isCoheld(u string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.coheld[u]
}

// markNeed records units whose locks settleLocks must take.
func (l *sharedLocks) markNeed(units []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, u := range units {
		l.need = setKey(l.need, u)
	}
}

// setSess adds (on) or removes u from sess. l.mu must be held.
func (l *sharedLocks) setSess(u string, on bool) {
	switch {
	case on && !l.sess[u]:
		l.sess = setKey(l.sess, u)
		l.pending.Add(1)
	case !on && l.sess[u]:
		delete(l.sess, u)
		l.pending.Add(-1)
	}
}

func setKey(m map[string]bool, k string) map[string]bool {
	if m == nil {
		m = make(map[string]bool)
	}
	m[k] = true
	return m
}

// completed follows the statements the server completed: savepoints, and
// the end of a transaction, which releases its transaction-level locks
// (with AND CHAIN the session goes on holding its units in a new
// transaction: settleLocks takes their locks again). l.mu must be held.
func (l *sharedLocks) completed(stmts []*policy.Statement) {
	for _, st := range stmts {
		eachPart(st, func(p *policy.Statement) {
			l.worked = l.worked || p.Class != policy.TxControl && p.Class != policy.Session
			switch p.Tx.Kind {
			case policy.TxSavepoint:
				l.savepoints = append(l.savepoints, p.Tx.Savepoint)
			case policy.TxRelease, policy.TxRollbackTo:
				// NOTE: the most recent savepoint of that name, as the
				// server finds it; RELEASE drops it too, ROLLBACK TO keeps it.
				for i := len(l.savepoints) - 1; i >= 0; i-- {
					if l.savepoints[i] == p.Tx.Savepoint {
						if p.Tx.Kind == policy.TxRollbackTo {
							i++
						}
						l.savepoints = l.savepoints[:i]
						break
					}
				}
			case policy.TxCommit, policy.TxRollback, policy.TxPrepareTransaction:
				l.savepoints, l.worked = nil, false
				if p.Tx.Chain {
					for u := range l.xact {
						l.need = setKey(l.need, u)
					}
				}
				clear(l.xact)
			}
		})
	}
}

// doesWork reports whether steps run a statement other than transaction
// control and SET (which take no snapshot and touch no data: a unit's
// lock is taken before the first statement that does).
func doesWork(steps []planStep) bool {
	for _, st := range steps {
		work := false
		eachPart(st.stmt, func(p *policy.Statement) {
			work = work || p.Class != policy.TxControl && p.Class != policy.Session
		})
		if work {
			return true
		}
	}
	return false
}

// setsTx reports whether steps set the characteristics of the open
// transaction (SET TRANSACTION, SET transaction_isolation and the like),
// which must come before its first snapshot.
func setsTx(steps []planStep) bool {
	sets := false
	for _, st := range steps {
		eachPart(st.stmt, func(p *policy.Statement) {
			sets = sets || p.Tx.Kind == policy.TxSetTransaction
			for _, set := range p.Settings {
				sets = sets || strings.HasPrefix(set.Name, "transaction_")
			}
		})
	}
	return sets
}

// endsTx reports whether steps end a transaction (COMMIT, ROLLBACK, PREPARE
// TRANSACTION), and whether one is PREPARE TRANSACTION.
func endsTx(steps []planStep) (ends, prepares bool) {
	for _, st := range steps {
		eachPart(st.stmt, func(p *policy.Statement) {
			switch p.Tx.Kind {
			case policy.TxCommit, policy.TxRollback:
				ends = true
			case policy.TxPrepareTransaction:
				ends, prepares = true, true
			}
		})
	}
	return ends, prepares
}

// sharedCheck is the part of checkUnits that concerns other instances, for
// the units of the current request (steps from on). holds says the request
// holds its units (see checkUnits); deferred are units sessions of this
// instance hold without a lock that this request writes: whether another
// instance holds them decides between the local rules and a refusal.
//
// It takes the locks of the units the request will hold and does work
// with, and, when the request writes, first checks that no other backend
// holds a lock of its units (a holder's lock is shared: several
// transactions may hold one unit). It returns the request's outcome when a
// write carries a unit another instance's client holds: the escape action
// for a holder on another instance (never a reroute).
func (s *session) sharedCheck(pl *requestPlan, from int, units, deferred []string, idle, holds bool, firstWrite int, whole bool) (handled bool, rej *rejection, err error) {
	steps := pl.steps[from:]
	work := doesWork(steps)
	ends, prepares := endsTx(steps)
	var lock, probe, unchecked, later []string
	for _, u := range units {
		if (holds || pl.sentEarly) && (work || idle) && (ends && !prepares || !s.shared.holds(u)) {
			// NOTE: inside a transaction block the lock is taken before the
			// first statement that does work (a lock call takes a
			// snapshot); before one, from the statement that opens it (the
			// call is its own transaction then). A request that ends its
			// transaction and does more work needs a lock that outlives the
			// end (session level). A request sent in parts takes it in its
			// first: a later part cannot (see below).
			lock = append(lock, u)
		} else if holds && !s.shared.holds(u) {
			// A request inside a block that does no work (SET LOCAL,
			// SAVEPOINT, SET TRANSACTION carrying the unit) holds it too:
			// its lock is held on the instance's own connection
			// (holdIdle) until the backend takes it, before the first
			// statement that does work or behind it (settleLocks).
			later = append(later, u)
		}
		if firstWrite >= 0 {
			// Every write is checked: another backend may hold the unit
			// beside this one.
			probe = append(probe, u)
			if !s.shared.holds(u) || slices.Contains(deferred, u) || s.shared.isCoheld(u) {
				unchecked = append(unchecked, u)
			}
		}
	}
	if len(later) > 0 {
		// Held on the idleLocks connection until the transaction's own
		// backend takes them (shared_idle.go).
		s.holdIdle(later)
		s.shared.markNeed(later)
	}
	if len(lock)+len(probe) == 0 {
		return false, nil, nil
	}
	// pipelined: requests of the client's sent before this one are in
	// flight. A query of txlane's would have to wait for their answers,
	// which may never come before the client reads (or sends) more: it is
	// never waited for (a pipelined request must get its answers).
	pipelined := s.open == nil && s.inFlight() > 0
	if s.open != nil || pipelined {
		// Part of the request, or a request before it, is at the server
		// already: no query of txlane's may run before the rest. A write
		// whose unit cannot be checked is refused (fail safe); the locks of
		// other statements are taken once the answers are in (settleLocks).
		// NOTE: a unit whose lock the session holds already, and held
		// alone when it was taken or last checked, is taken as checked (the
		// README's "Windows": another backend that began to hold it too
		// since is not seen by such a write). One another backend held too
		// is not: the session's own lock proves nothing then.
		s.shared.markNeed(lock)
		if !pipelined {
			unchecked = slices.DeleteFunc(unchecked, func(u string) bool {
				return !slices.Contains(lock, u) && !slices.Contains(deferred, u) && !s.shared.isCoheld(u)
			})
		}
		if firstWrite >= 0 && len(unchecked) > 0 {
			return false, &rejection{step: firstWrite, err: uncheckedError(unchecked[0], describeTables(pl.stmts(0)), pipelined)}, nil
		}
		return false, nil, nil
	}
	// One query checks and locks (a lock of the backend's own never
	// stands in the way of its check).
	holders := map[string]UnitHolder{}
	var taken []string
	if len(lock) > 0 {
		taken, err = s.sharedLock(lock, probe, ends && !prepares, setsTx(steps), holders)
	} else {
		err = s.sharedProbe(probe, setsTx(steps), holders)
	}
	if err != nil {
		return false, nil, err
	}
	for _, u := range probe {
		h, found := holders[u]
		if s.shared.holds(u) {
			// What the check found stands for the write behind it in a pipeline.
			s.shared.mu.Lock()
			s.shared.setCoheld(u, found)
			s.shared.mu.Unlock()
		}
		if !found || h.BackendPID != 0 && slices.Contains(s.srv.units.localPIDs(u, s), h.BackendPID) {
			continue // free, or held only by clients of this instance: the local rules apply
		}
		// Refused: the session locks this request took go at once (its
		// transaction-level ones stay with its transaction).
		s.sharedUnlock(taken)
		return s.escape(whole, firstWrite, u, h, nil)
	}
	return false, nil, nil
}

// localPIDs lists the backends of the other sessions holding u.
func (r *unitRegistry) localPIDs(u string, s *session) []uint32 {
	var pids []uint32
	for _, h := range r.others(u, s) {
		if pid := h.sess.serverPID(); pid != 0 {
			pids = append(pids, pid)
		}
	}
	// The instance's own connections holding units for transactions
	// before their first snapshot hold them for its sessions.
	if s.srv.shared != nil {
		pids = append(pids, s.srv.shared.idle.pids()...)
	}
	return pids
}

// sharedProbe asks whether another backend holds the locks of units (an
// exclusive session-level lock each, taken and dropped in one SELECT: it
// waits for nothing and keeps nothing), and fills holders with the holders
// of those held. setsTx: the request sets its transaction's isolation, which
// must come before the transaction's first snapshot: before it, nothing is
// asked (the README's "Windows").
func (s *session) sharedProbe(units []string, setsTx bool, holders map[string]UnitHolder) error {
	q, status, err := s.sharedQuery(func(status TxStatus, _ int) string {
		if status == TxActive && setsTx && !s.shared.hasWorked() {
			return ""
		}
		return "SELECT " + probeCols(s.srv.shared.keys(units))
	})
	if err != nil || q == nil {
		return err // nothing ran: a failed transaction refuses the write itself
	}
	var row [][]byte
	if q.err == nil && len(q.rows) == 1 {
		row = q.rows[0]
	}
	return s.probed(units, row, status, q, holders)
}

// probeCols are the columns of a check of keys (see sharedProbe): true
// where no other backend holds the key's lock.
func probeCols(keys []uint32) string {
	cols := make([]string, len(keys))
	for i, k := range keys {
		cols[i] = fmt.Sprintf("CASE WHEN pg_catalog.pg_try_advisory_lock(%[1]d, %[2]d) THEN pg_catalog.pg_advisory_unlock(%[1]d, %[2]d) ELSE false END", unitLockSpace, int32(k))
	}
	return strings.Join(cols, ", ")
}

// probed fills holders from a check's answer row (probeCols of units' keys;
// nil when the check failed: q, status say why).
func (s *session) probed(units []string, row [][]byte, status TxStatus, q *internalQuery, holders map[string]UnitHolder) error {
	if len(row) < len(units) {
		// NOTE: fail safe: a unit whose lock could not be checked counts
		// as held, by a transaction txlane cannot name.
		s.log.Warn("shared units: a unit's lock could not be checked; the write is refused", zap.String("status", string(rune(status))), zap.String("error", errText(q)))
		for _, u := range units {
			holders[u] = UnitHolder{Unit: u, Key: unitKey(u)}
		}
		return nil
	}
	var held []string
	for i, u := range units {
		if string(row[i]) != "t" {
			held = append(held, u)
		}
	}
	return s.sharedHolders(held, holders)
}

// sharedLock takes the locks of units for the request about to be sent
// (session-level ones with session, or where the transaction needs them:
// see the file comment), retrying a unit whose lock another backend's
// check held exclusively for a moment. Its first query also checks probe
// (see sharedProbe), filling holders. It returns the units whose
// session-level locks it took. A lock it cannot take (the transaction has
// failed, the call failed, or checks kept it) is left to settleLocks.
func (s *session) sharedLock(units, probe []string, session, setsTx bool, holders map[string]UnitHolder) (taken []string, err error) {
	inst := s.srv.shared.instance
	todo := units
	for attempt := 0; attempt < 3 && len(todo) > 0; attempt++ {
		keys := s.srv.shared.keys(todo)
		useSession := session
		q, status, err := s.sharedQuery(func(status TxStatus, depth int) string {
			if status == TxActive && setsTx && !s.shared.hasWorked() {
				return "" // the request sets its transaction's isolation first: settled after it
			}
			useSession = session || status == TxIdle || depth > 0
			// The checks of probe, whether each unit of todo is held by
			// another backend too (coheld), the locks.
			sql := "SELECT " + probeCols(keys) + ", " + strings.TrimPrefix(lockSQL(keys, inst, useSession), "SELECT ")
			if len(probe) > 0 {
				sql = "SELECT " + probeCols(s.srv.shared.keys(probe)) + ", " + strings.TrimPrefix(sql, "SELECT ")
			}
			return sql
		})
		if err != nil {
			return taken, err
		}
		var row [][]byte
		if q != nil && q.err == nil && len(q.rows) == 1 && len(q.rows[0]) == len(probe)+2*len(keys) {
			row = q.rows[0]
		}
		if len(probe) > 0 && q != nil {
			if err := s.probed(probe, row, status, q, holders); err != nil {
				return taken, err
			}
		}
		probe = nil
		if row == nil {
			if q != nil {
				s.log.Warn("shared units: lock call failed; the unit is held on this instance only until settled (settleLocks)", zap.String("status", string(rune(status))), zap.String("error", errText(q)))
			}
			// Nothing ran (a failed transaction, or one whose isolation
			// is set first), or the call failed: settled after the request.
			s.shared.markNeed(todo)
			return taken, nil
		}
		alone := row[len(row)-2*len(keys) : len(row)-len(keys)]
		row = row[len(row)-len(keys):]
		var again, got []string
		for i, v := range row {
			if string(v) == "t" {
				s.shared.got(todo[i], useSession, string(alone[i]) != "t")
				got = append(got, todo[i])
				if useSession {
					taken = append(taken, todo[i])
				}
			} else {
				again = append(again, todo[i]) // a check held it a moment ago
			}
		}
		s.releaseIdle(got)
		todo = again
	}
	s.shared.markNeed(todo)
	return taken, nil
}

// lockSQL is a SELECT of one boolean per key: whether the backend now
// holds the unit's lock, shared (other holders may hold it too; only a
// check's exclusive lock of a moment keeps it); with it the instance's
// marker, shared too, at the same level (session or transaction).
func lockSQL(keys []uint32, instance int, session bool) string {
	fn, marker := "pg_try_advisory_xact_lock_shared", "pg_try_advisory_xact_lock_shared"
	if session {
		fn, marker = "pg_try_advisory_lock_shared", "pg_try_advisory_lock_shared"
	}
	cols := make([]string, len(keys))
	for i, k := range keys {
		// NOTE: CASE evaluates the marker only once the unit is taken.
		cols[i] = fmt.Sprintf("CASE WHEN pg_catalog.%s(%d, %d) THEN pg_catalog.%s(%d, %d) ELSE false END",
			fn, unitLockSpace, int32(k), marker, instanceLockSpace, instance)
	}
	return "SELECT " + strings.Join(cols, ", ")
}

// unlockSQL drops the session-level locks of keys and their markers.
func unlockSQL(keys []uint32, instance int) string {
	cols := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		cols = append(cols, fmt.Sprintf("pg_catalog.pg_advisory_unlock_shared(%d, %d)", unitLockSpace, int32(k)),
			fmt.Sprintf("pg_catalog.pg_advisory_unlock_shared(%d, %d)", instanceLockSpace, instance))
	}
	return "SELECT " + strings.Join(cols, ", ")
}

// sharedUnlock drops the session-level locks the session took on units
// (for a request that was refused before it was sent).
func (s *session) sharedUnlock(units []string) {
	if len(units) == 0 {
		return
	}
	keys := s.srv.shared.keys(units)
	q, _, err := s.sharedQuery(func(TxStatus, int) string { return unlockSQL(keys, s.srv.shared.instance) })
	if err != nil || q == nil || q.err != nil {
		return // kept: settleLocks drops them once the transaction has ended
	}
	s.shared.mu.Lock()
	for _, u := range units {
		s.shared.setSess(u, false)
	}
	s.shared.mu.Unlock()
}

// keys returns the keys of units, remembering their names.
func (su *sharedUnits) keys(units []string) []uint32 {
	keys := make([]uint32, len(units))
	for i, u := range units {
		keys[i] = su.key(u)
	}
	return keys
}

// sharedHolders fills holders with the backends (other than the session's
// own) that hold the locks of units, read from pg_locks and
// pg_stat_activity on the session's backend.
func (s *session) sharedHolders(units []string, holders map[string]UnitHolder) error {
	if len(units) == 0 {
		return nil
	}
	byKey := map[uint32]string{}
	keys := make([]uint32, len(units))
	for i, u := range units {
		keys[i] = s.srv.shared.key(u)
		byKey[keys[i]] = u
	}
	q, _, err := s.sharedQuery(func(TxStatus, int) string { return holdersSQL(othersOf(keys)) })
	if err != nil {
		return err
	}
	if q == nil || q.err != nil {
		// NOTE: the locks are held, by whom is not known: fail safe, they
		// count as held by an unknown transaction.
		s.log.Warn("shared units: the holders of units could not be read", zap.String("error", errText(q)))
		for k, u := range byKey {
			holders[u] = UnitHolder{Unit: u, Key: k}
		}
		return nil
	}
	// NOTE: of several holders the one named is a client of another
	// instance if there is one (those of this one fall under the local
	// rules).
	for _, h := range parseHolders(q.rows) {
		if u, ok := byKey[h.Key]; ok {
			old, dup := holders[u]
			if !dup || slices.Contains(s.srv.units.localPIDs(u, s), old.BackendPID) && !slices.Contains(s.srv.units.localPIDs(u, s), h.BackendPID) {
				h.Unit = u
				holders[u] = h
			}
		}
	}
	return nil
}

// othersOf is holdersSQL's condition for the holders of keys' locks in the
// current database other than the asking backend.
func othersOf(keys []uint32) string {
	lits := make([]string, len(keys))
	for i, k := range keys {
		lits[i] = strconv.FormatUint(uint64(k), 10)
	}
	return " AND l.objid OPERATOR(pg_catalog.=) ANY ('{" + strings.Join(lits, ",") + "}'::pg_catalog.oid[])" +
		" AND (l.pid IS NULL OR l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid())" +
		" AND l.database OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database())"
}

// holdersSQL lists the holders of units' locks (every database's, and
// prepared transactions', whose pid is NULL), restricted by where (ANDed
// conditions on l, pg_locks): key, pid, instance, application_name, user,
// database, the start of the holder's transaction (Unix seconds; NULL when
// pg_stat_activity does not show it to the asking role) and its state.
func holdersSQL(where string) string {
	return fmt.Sprintf(`SELECT l.objid::pg_catalog.int8, COALESCE(l.pid, 0), `+
		`COALESCE((SELECT m.objid::pg_catalog.int8 FROM pg_catalog.pg_locks m WHERE m.pid OPERATOR(pg_catalog.=) l.pid AND m.locktype OPERATOR(pg_catalog.=) 'advisory' `+
		`AND m.classid OPERATOR(pg_catalog.=) %[2]d AND m.objsubid OPERATOR(pg_catalog.=) 2 AND m.granted LIMIT 1), 0), `+
		`COALESCE(a.application_name, ''), COALESCE(a.usename, ''), COALESCE(d.datname, ''), `+
		`EXTRACT(epoch FROM a.xact_start), COALESCE(a.state, '') `+
		`FROM pg_catalog.pg_locks l LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) l.pid `+
		`LEFT JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) l.database `+
		`WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory' AND l.classid OPERATOR(pg_catalog.=) %[1]d AND l.objsubid OPERATOR(pg_catalog.=) 2 `+
		`AND l.mode OPERATOR(pg_catalog.=) 'ShareLock' AND l.granted%[3]s `+
		`ORDER BY 1, 2`, unitLockSpace, instanceLockSpace, where)
}

// parseHolders reads holdersSQL's rows.
func parseHolders(rows [][][]byte) []UnitHolder {
	out := make([]UnitHolder, 0, len(rows))
	for _, r := range rows {
		if len(r) != 8 {
			continue
		}
		key, _ := strconv.ParseUint(string(r[0]), 10, 32)
		pid, _ := strconv.ParseUint(string(r[1]), 10, 32)
		inst, _ := strconv.Atoi(string(r[2]))
		h := UnitHolder{Key: uint32(key), BackendPID: uint32(pid), Instance: inst, Prepared: pid == 0,
			ApplicationName: string(r[3]), User: string(r[4]), Database: string(r[5]),
			Failed: string(r[7]) == "idle in transaction (aborted)"}
		if secs, err := strconv.ParseFloat(string(r[6]), 64); err == nil {
			h.Since = time.Unix(0, int64(secs*1e9))
		}
		out = append(out, h)
	}
	return out
}

// sharedQuery runs a query of txlane's own for the units on the client's
// backend, once none of the client's requests is in flight, and returns
// its answer (nil when nothing ran) and the transaction status it ran in.
// build makes its SQL for that status and the number of savepoints open.
// Outside a transaction block the query is its own implicit transaction,
// which the client's statement_timeout and lock_timeout do not cut
// (protectSQL); inside one it runs in a savepoint of its own, rolled back
// to if it fails, so that it never leaves the client's transaction failed.
// In a failed transaction nothing runs.
func (s *session) sharedQuery(build func(status TxStatus, depth int) string) (*internalQuery, TxStatus, error) {
	var p *primaryConn
	for {
		var err error
		if p, err = s.attach(); err != nil {
			return nil, 0, err
		}
		if !p.drained(true) {
			return nil, 0, errPrimaryGone
		}
		if s.pc.Load() == p {
			break
		}
		p.release() // given back to the pool while it drained
	}
	defer p.release()
	status := p.TxStatus()
	sql := build(status, s.shared.depth())
	if sql == "" {
		return nil, status, nil
	}
	switch status {
	case TxIdle:
		sql = protectSQL + sql
	case TxActive:
		sql = "SAVEPOINT " + sharedSavepoint + "; " + sql + "; RELEASE SAVEPOINT " + sharedSavepoint
	default:
		return nil, status, nil
	}
	q, err := p.queryKeep(sql, true)
	if err != nil {
		return nil, status, err
	}
	if q.err != nil && status == TxActive {
		if r, err := p.queryKeep(sharedRescueSQL, true); err != nil {
			return nil, status, err
		} else if r.err != nil {
			s.log.Error("shared units: a failed lock call could not be rolled back", zap.String("error", r.err.Message))
		}
	}
	return q, status, nil
}

// drained takes p's write right once nothing is in flight on p (the
// requests sent before, and their answers, are done); false if p closed
// first. held says the caller holds the write right already.
//
// NOTE: the next change is taken before the look at what is in flight, so
// that an answer between the two is not missed (as in runWhenIdle).
func (p *primaryConn) drained(held bool) bool {
	for {
		if !held {
			select {
			case p.wsem <- struct{}{}:
			case <-p.gone:
				return false
			}
		}
		changed := p.nextChange()
		if p.inFlight() == 0 {
			return true
		}
		// Requests still in flight may sit in the write buffer (a client's
		// pipelined request waits there to coalesce with the next): out
		// they go, or their answers never come.
		p.w.Flush()
		if held {
			p.release() // the caller's write right: others may wait for it
		} else {
			<-p.wsem // nothing changed: no signal (a signal would wake this loop at once)
		}
		held = false
		select {
		case <-changed:
		case <-p.gone:
			return false
		}
	}
}

// sharedRescueSQL undoes a lock call that failed inside the client's
// transaction block: the transaction is as it was before the call.
const sharedRescueSQL = "ROLLBACK TO SAVEPOINT " + sharedSavepoint + "; RELEASE SAVEPOINT " + sharedSavepoint

func errText(q *internalQuery) string {
	if q == nil || q.err == nil {
		return ""
	}
	return q.err.Code + " " + q.err.Message
}

// sharedDone follows a request the server answered (relay, from
// requestDone): the savepoints and ends of transactions its completed
// statements made, and, once nothing of the client is in flight, the
// session-level locks and missing locks to settle (settleLocks).
func (s *session) sharedDone(req *request, status TxStatus, last bool) {
	l := &s.shared
	l.mu.Lock()
	if req != nil && req.internal == nil {
		l.completed(req.replies.done)
	}
	if status == TxIdle {
		clear(l.xact)
		clear(l.need)
		clear(l.coheld)
		l.savepoints, l.worked = nil, false
	}
	due := last && req != nil && req.internal == nil && len(l.sess)+len(l.need) > 0
	if due && l.settling {
		// NOTE: the settling under way looks again before it ends: it may
		// have looked before this answer came.
		l.again, due = true, false
	}
	l.settling = l.settling || due
	l.mu.Unlock()
	if due {
		s.startSettling()
	}
}

// settleSoon settles the session's locks (see sharedDone) once nothing of
// the client's is in flight on p, as sharedDone does after an answer: for
// a unit txlane learnt of behind a request (units_stale.go).
func (s *session) settleSoon() {
	l := &s.shared
	l.mu.Lock()
	due := !l.settling
	if !due {
		l.again = true
	}
	l.settling = true
	l.mu.Unlock()
	if due {
		s.startSettling()
	}
}

// startSettling runs settleLocks until it needs no other look; the
// caller has set settling.
func (s *session) startSettling() {
	if p := s.pc.Load(); p != nil {
		// NOTE: not in relay: the client goroutine may hold the write
		// right still (it gives it back after the request's last byte, and
		// the answer may come first).
		go func() {
			for s.settleLocks(p) {
			}
		}()
		return
	}
	s.doneSettling()
}

// doneSettling ends a settling, unless an answer came meanwhile that asks
// for another look (again): then it reports true.
func (s *session) doneSettling() (again bool) {
	l := &s.shared
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.again {
		l.again = false
		return true
	}
	l.settling = false
	return false
}

// settleLocks brings the session's locks in line with its transaction,
// once the client has nothing in flight on p: outside a transaction block
// its session-level locks go; at the top level of a transaction block they
// become transaction-level ones, and the locks of units taken without one
// are taken. If the client sends a request meanwhile, that request's answer
// settles instead: the locks are held a little longer, never shorter. It
// reports whether to look again (see doneSettling).
func (s *session) settleLocks(p *primaryConn) (again bool) {
	if !p.drained(false) {
		s.doneSettling()
		return false
	}
	if s.pc.Load() != p {
		again = s.doneSettling()
		p.release()
		return again
	}
	status := p.TxStatus()
	l := &s.shared
	l.mu.Lock()
	var conv, need []string
	inSavepoint := len(l.savepoints) > 0
	switch {
	case status == TxIdle:
		conv = sortedKeys(l.sess)
	case status != TxActive || !l.worked:
		// Failed: nothing runs. Before the transaction's first snapshot a
		// SELECT of txlane's would take it: after its first statement that
		// does work.
	case !inSavepoint:
		conv, need = sortedKeys(l.sess), sortedKeys(l.need)
	default:
		need = sortedKeys(l.need) // taken at session level, kept
	}
	l.mu.Unlock()
	if len(conv)+len(need) == 0 {
		again = s.doneSettling()
		p.release()
		return again
	}
	inst := s.srv.shared.instance
	sql := settleSQL(s.srv.shared.keys(conv), s.srv.shared.keys(need), inst, status, inSavepoint)
	if status == TxIdle {
		sql = protectSQL + sql
	} else {
		sql = "SAVEPOINT " + sharedSavepoint + "; " + sql + "; RELEASE SAVEPOINT " + sharedSavepoint
	}
	q, err := p.queryKeep(sql, true)
	switch {
	case err != nil:
	case q.err != nil:
		s.log.Debug("shared units: settling locks failed; kept until the next answer", zap.String("error", errText(q)))
		if status == TxActive {
			p.queryKeep(sharedRescueSQL, true)
		}
	default:
		s.releaseIdle(s.settled(q.rows, status, inSavepoint, conv, need))
	}
	again = s.doneSettling()
	p.release()
	// The relay may have found the backend idle while this held the write
	// right, and left it to us (transaction mode: back to the pool).
	s.idle(p)
	return again
}

// settleSQL is settleLocks' SELECT: for each key of conv, outside a transaction
// block its session-level lock dropped, inside one turned into a
// transaction-level lock; for each key of need, its lock taken (at session
// level inside a savepoint), one boolean saying whether it was, then for
// each key of need whether no other backend holds it (probeCols).
func settleSQL(conv, need []uint32, instance int, status TxStatus, inSavepoint bool) string {
	var cols []string
	if len(conv) > 0 {
		if status == TxActive {
			cols = append(cols, strings.TrimPrefix(lockSQL(conv, instance, false), "SELECT "))
		}
		cols = append(cols, strings.TrimPrefix(unlockSQL(conv, instance), "SELECT "))
	}
	if len(need) > 0 {
		cols = append(cols, strings.TrimPrefix(lockSQL(need, instance, inSavepoint), "SELECT "), probeCols(need))
	}
	return "SELECT " + strings.Join(cols, ", ")
}

// settled records settleLocks' answer: the row of settleSQL. It returns the
// units of need whose locks were taken.
func (s *session) settled(rows [][][]byte, status TxStatus, inSavepoint bool, conv, need []string) (taken []string) {
	if len(rows) != 1 {
		return nil
	}
	row := rows[0]
	l := &s.shared
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, u := range conv {
		l.setSess(u, false)
		if status == TxActive {
			l.xact = setKey(l.xact, u)
		}
	}
	for i, u := range need {
		delete(l.need, u)
		// The columns end with need's locks, then whether each was free of
		// other holders.
		l.setCoheld(u, len(row) < 2*len(need) || string(row[len(row)-len(need)+i]) != "t")
		if j := len(row) - 2*len(need) + i; j >= 0 && string(row[j]) == "t" {
			taken = append(taken, u)
			if inSavepoint {
				l.setSess(u, true)
			} else {
				l.xact = setKey(l.xact, u)
			}
		}
	}
	return taken
}

// uncheckedError refuses a write carrying unit u whose lock could not be
// taken (or checked) first because part of its request had been sent
// already, or, with pipelined, because the client's earlier requests were
// still in flight (SQLSTATE 25L01).
func uncheckedError(u, table string, pipelined bool) *wire.Error {
	if pipelined {
		return &wire.Error{Severity: "ERROR", Code: CodeEscapedWrite,
			Message: fmt.Sprintf("write to %s could not be checked against the other txlane instances' holders of unit %q", table, u),
			Detail: "policy.shared_units: the unit's lock is taken (or checked) on the connection's own backend before the write, and the client's earlier requests in this pipeline were still running there. " +
				"Nothing was written.",
			Hint: "Send the write once the answers of the earlier requests are in, or carry the unit (or SET LOCAL txlane.unit) in an earlier request of the transaction."}
	}
	return &wire.Error{Severity: "ERROR", Code: CodeEscapedWrite,
		Message: fmt.Sprintf("write to %s could not be checked against the other txlane instances' holders of unit %q", table, u),
		Detail: "policy.shared_units: the unit's lock is taken before the first statement that carries it, and part of this request had already gone to the server (a Flush before Sync, or more than 1 MiB). " +
			"Nothing was written.",
		Hint: "Send the request whole, or carry the unit from its first part on (or set it with SET LOCAL txlane.unit first)."}
}

// remoteText describes a holder found through its lock.
func (h UnitHolder) remoteText() string {
	switch {
	case h.Prepared:
		return "a prepared transaction (PREPARE TRANSACTION) that has not been committed or rolled back"
	case h.BackendPID == 0:
		return "a transaction txlane could not rule out or name: the unit's lock, or pg_locks, could not be read (see txlane's log)"
	}
	who := "another txlane instance"
	if h.Instance != 0 {
		who = "txlane instance " + strconv.Itoa(h.Instance)
	}
	text := fmt.Sprintf("a transaction of a client of %s (backend pid %d, application_name %q, user %q, database %q", who, h.BackendPID, h.ApplicationName, h.User, h.Database)
	if !h.Since.IsZero() {
		text += ", open since " + console.Timestamp(h.Since)
	}
	return text + ")"
}

// SharedUnits lists the units of work held: this instance's (Local), and,
// with policy.shared_units, those other instances' clients hold, read from
// pg_locks and pg_stat_activity through a connection of the primary DSN's
// own user and database, sorted by unit then instance. A unit another
// instance holds has its name only if this instance has seen it.
func (s *Server) SharedUnits(ctx context.Context) ([]UnitHolder, error) {
	local := s.Units()
	if s.shared == nil {
		return local, nil
	}
	conn, err := pgconn.ConnectConfig(ctx, s.opts.Primary.Copy())
	if err != nil {
		return local, fmt.Errorf("connecting to the primary: %w", err)
	}
	defer conn.Close(context.Background())
	res, err := conn.Exec(ctx, holdersSQL("")).ReadAll()
	if err != nil {
		return local, err
	}
	var rows [][][]byte
	for _, r := range res {
		rows = append(rows, r.Rows...)
	}
	mine := map[uint32]bool{}
	for _, pid := range s.shared.idle.pids() {
		mine[pid] = true // held for a client listed above
	}
	for _, h := range local {
		if h.BackendPID != 0 {
			mine[h.BackendPID] = true
		}
	}
	out := local
	for _, h := range parseHolders(rows) {
		if mine[h.BackendPID] {
			continue // listed with its client above
		}
		h.Unit = s.shared.nameOf(h.Key)
		h.Local = s.shared.instance != 0 && h.Instance == s.shared.instance
		out = append(out, h)
	}
	slices.SortStableFunc(out, func(a, b UnitHolder) int {
		if c := strings.Compare(a.Unit, b.Unit); c != 0 {
			return c
		}
		return a.Instance - b.Instance
	})
	return out, nil
}
