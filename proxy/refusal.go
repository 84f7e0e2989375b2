package proxy

import (
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/router"
)

// A vector-lane connection runs every transaction read-only
// (readOnlyLaneParam), so a write hidden in what the classifier took for a
// read is refused by the server itself. These are the SQLSTATEs PostgreSQL
// raises for that:
//
//   - 25006 read_only_sql_transaction: "cannot execute INSERT (UPDATE,
//     DELETE, MERGE, CREATE TABLE, nextval(), SELECT FOR UPDATE, ...) in a
//     read-only transaction" (PreventCommandIfReadOnly, ExecCheckXactReadOnly);
//   - 25001 active_sql_transaction: "transaction read-write mode must be set
//     before any query", when hidden code tries SET transaction_read_only =
//     off (check_transaction_read_only).
//
// Running such a statement again on the primary is always safe: nothing it
// did on the lane survives (the lane's transaction failed and was read-only),
// and the primary answers as PostgreSQL would have, error or not.
//
// NOTE: a read-only transaction does not stop everything. Advisory locks
// (released after each read: laneCheckSQL), NOTIFY / pg_notify, large
// objects (lo_create, lo_unlink, lo_from_bytea succeed in a read-only
// transaction on PostgreSQL 15), dblink, pg_stat_reset and other functions
// acting outside the database's tables still run on the lane; a function that
// catches the 25006 itself (an EXCEPTION block) carries on without its write.
var laneRefusalCodes = map[string]bool{"25006": true, "25001": true}

// laneRefusal is what relayLane returns when the lane refused a write before
// any of the request's answer reached the client: the request runs on the primary.
type laneRefusal struct {
	code string // the SQLSTATE
	// exec counts the Execute messages of the request that had completed when
	// the refusal came, which names the statement that wrote (extended
	// protocol; 0 for a simple Query).
	exec int
}

func (e *laneRefusal) Error() string {
	return "the vector lane refused a write (SQLSTATE " + e.code + ")"
}

// Outcomes of a refused write, the label of txlane_lane_refused_writes_total.
const (
	refusedRerun = "rerun" // nothing had reached the client: it ran again on the primary
	refusedError = "error" // part of the answer had: the client got the server's error
)

// maxRefusedTexts bounds the statement texts remembered per database. Past
// it the oldest is forgotten: it runs on the lane again, is refused again,
// and is remembered again (a cost, never a wrong answer).
const maxRefusedTexts = 1024

// refusedTexts remembers, per database, the statement texts the vector lane
// refused as writes; they run on the primary from then on. It belongs to the
// server's lane pools, so it survives catalog refreshes and reloads (a
// function that writes keeps writing) and ends with the process.
type refusedTexts struct {
	// n counts the texts remembered in every database: while it is 0, a
	// lookup costs one atomic load.
	n  atomic.Int64
	mu sync.RWMutex
	// byDB is guarded by mu.
	byDB map[string]*textSet
}

// textSet is one database's remembered texts, forgotten oldest first.
type textSet struct {
	has   map[string]struct{}
	order []string // ring of at most maxRefusedTexts
	next  int      // the ring's oldest entry once full
}

// refusalKey is the text a statement is remembered by: sql without a
// trailing sqlcommenter comment, so that a per-request comment (traceparent)
// does not make every request a new statement.
func refusalKey(sql string) string {
	_, stripped := router.ExtractUnits(sql, nil)
	return stripped
}

// add remembers sql for database.
func (r *refusedTexts) add(database, sql string) {
	key := refusalKey(sql)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byDB == nil {
		r.byDB = map[string]*textSet{}
	}
	set := r.byDB[database]
	if set == nil {
		set = &textSet{has: map[string]struct{}{}}
		r.byDB[database] = set
	}
	if _, ok := set.has[key]; ok {
		return
	}
	set.has[key] = struct{}{}
	if len(set.order) < maxRefusedTexts {
		set.order = append(set.order, key)
		r.n.Add(1)
		return
	}
	delete(set.has, set.order[set.next])
	set.order[set.next] = key
	set.next = (set.next + 1) % maxRefusedTexts
}

// has reports whether sql was refused in database.
func (r *refusedTexts) has(database, sql string) bool {
	if r.n.Load() == 0 {
		return false
	}
	key := refusalKey(sql)
	r.mu.RLock()
	defer r.mu.RUnlock()
	set := r.byDB[database]
	if set == nil {
		return false
	}
	_, ok := set.has[key]
	return ok
}

// refusedBefore reports whether the current request runs a statement text
// the vector lane has refused as a write; such a request goes to the primary
// (lane_refused_write), and is counted so.
func (s *session) refusedBefore() bool {
	r := &s.srv.lanes.refused
	if r.n.Load() == 0 {
		return false
	}
	db := s.database()
	for _, st := range s.plans.cur.steps {
		if st.sql != "" && r.has(db, st.sql) {
			s.routed(policy.Primary, policy.ReasonLaneRefusedWrite)
			return true
		}
	}
	return false
}

// laneRefused handles a write the lane refused in the current request: the
// statement that wrote (all of the request's, when it cannot be told) is
// remembered for the database, logged (fingerprint and tables, never values)
// and counted with outcome. With outcome refusedRerun the request is about to
// run on the primary and is counted as routed there (lane_refused_write).
func (s *session) laneRefused(ref *laneRefusal, outcome string) {
	texts := s.plans.cur.sqlTexts()
	if len(texts) > 1 && ref.exec < len(texts) {
		texts = texts[ref.exec : ref.exec+1]
	}
	cl := s.routing().classifier
	var tables []string
	for _, sql := range texts {
		s.srv.lanes.refused.add(s.database(), sql)
		for _, t := range cl.Classify(sql).Reads {
			tables = append(tables, t.String())
		}
	}
	s.srv.metrics.laneRefusedWrite(outcome)
	s.log.Warn("the vector lane refused a write hidden in a read; the statement runs on the primary from now on",
		zap.String("sqlstate", ref.code), zap.String("outcome", outcome),
		zap.String("fingerprint", router.Fingerprint(texts)), zap.Strings("tables", tables))
	if outcome != refusedRerun {
		return
	}
	s.routed(policy.Primary, policy.ReasonLaneRefusedWrite)
}

// forgetLaneParses drops the client's named statements that the current
// request parsed from its registry, before it runs again on the primary: the
// lane's ParseComplete recorded them, but the client never saw it, and the
// primary must parse them as the client asked.
func (s *session) forgetLaneParses() {
	for _, name := range s.plans.cur.parsed {
		// NOTE: the name was free before the request (a request that
		// redefines a statement stays off the lane).
		s.dropStmt(name)
	}
}
