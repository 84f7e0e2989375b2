package proxy

import (
	"errors"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/txlane/txlane/proxy/wire"
)

// opsState is what operating a Server needs beyond proxying: the options a
// reload replaces, the registry of live sessions (SHOW CLIENTS, graceful
// stop, idle-in-transaction timeout), the admin console's connections, and
// the gate that PAUSE and shutdown close in front of new requests.
//
// Lock order: clientEntry.mu, then session.mu; ops.mu is never held while
// taking either (callers copy the registry first).
type opsState struct {
	// live holds the options in force: the Options given to New, with the
	// fields Reload may change replaced. Immutable once stored.
	live atomic.Pointer[Options]
	// gate is the current PAUSE / shutdown state. Immutable once stored.
	gate atomic.Pointer[gateState]
	// held counts requests waiting at the gate.
	held atomic.Int64

	mu struct {
		sync.Mutex
		clients map[uint64]*clientEntry  // by session id
		admins  map[net.Conn]adminClient // admin console connections
	}
	stopOnce  sync.Once
	stopSweep chan struct{}
	sweepDone chan struct{}
}

// gateState is a snapshot of the gate. changed is closed when the snapshot
// is replaced, which wakes the requests waiting at the gate.
type gateState struct {
	paused   bool
	stopping bool
	changed  chan struct{}
}

// clientEntry is a session as the registry sees it.
type clientEntry struct {
	sess  *session
	since time.Time
	// lastActive is when the session last finished a request (unix
	// nanoseconds): the start of an idle period.
	lastActive atomic.Int64
	// heldSince is when a request of the session began to wait at the gate
	// (PAUSE), in unix nanoseconds; 0 while none waits there.
	heldSince atomic.Int64

	mu struct {
		sync.Mutex
		// busy: the client goroutine is dispatching a request. A closer never
		// closes a busy session (except a forced stop).
		busy bool
		// closed: a closer has taken the session down, or is doing so.
		closed bool
	}
	// gone is closed once the closer has told the client why and closed its
	// socket.
	gone chan struct{}
}

// errClosedByTxlane ends a session that txlane closed (shutdown, timeout)
// after telling the client why: serve has nothing more to report.
var errClosedByTxlane = errors.New("session closed by txlane")

// shutdownError is what clients hear when txlane stops.
func shutdownError() *wire.Error {
	return &wire.Error{Severity: "FATAL", Code: CodeAdminShutdown, Message: "txlane is shutting down"}
}

// initOps sets up the operational state of a new Server and starts the
// sweeper that enforces idle_in_transaction_timeout.
func (s *Server) initOps() {
	live := s.opts
	s.ops.live.Store(&live)
	s.ops.gate.Store(&gateState{changed: make(chan struct{})})
	s.ops.mu.clients = make(map[uint64]*clientEntry)
	s.ops.mu.admins = make(map[net.Conn]adminClient)
	s.ops.stopSweep = make(chan struct{})
	s.ops.sweepDone = make(chan struct{})
	if s.lanes != nil {
		s.lanes.metrics = s.metrics
	}
	go s.sweep()
}

// stopOps stops the sweeper. It is idempotent.
func (s *Server) stopOps() {
	s.ops.stopOnce.Do(func() {
		close(s.ops.stopSweep)
		<-s.ops.sweepDone
	})
}

// live returns the options in force.
func (s *Server) live() *Options { return s.ops.live.Load() }

// setGate replaces the gate state through f and wakes the waiting requests.
func (s *Server) setGate(f func(*gateState)) {
	for {
		old := s.ops.gate.Load()
		next := *old
		next.changed = make(chan struct{})
		f(&next)
		if s.ops.gate.CompareAndSwap(old, &next) {
			close(old.changed)
			return
		}
	}
}

// register adds a logged-in session to the registry.
func (s *Server) register(sess *session) {
	e := &clientEntry{sess: sess, since: time.Now(), gone: make(chan struct{})}
	e.lastActive.Store(e.since.UnixNano())
	sess.ops = e
	s.ops.mu.Lock()
	s.ops.mu.clients[sess.id] = e
	s.ops.mu.Unlock()
}

// unregister removes a session whose serve has returned.
func (s *Server) unregister(sess *session) {
	s.ops.mu.Lock()
	delete(s.ops.mu.clients, sess.id)
	s.ops.mu.Unlock()
}

// entries returns the registered sessions, ordered by id.
func (s *Server) entries() []*clientEntry {
	s.ops.mu.Lock()
	out := make([]*clientEntry, 0, len(s.ops.mu.clients))
	for _, e := range s.ops.mu.clients {
		out = append(out, e)
	}
	s.ops.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].sess.id < out[j].sess.id })
	return out
}

// admit is the gate in front of each request, called by the session's
// client goroutine before it routes the request in sess.cur. When it returns
// done, the request must not be dispatched: either it has been answered (held
// past query_wait_timeout while paused) or the session is ending with err.
//
// Only a session at a transaction boundary (status I, no request partly sent)
// is held or refused: a transaction in progress may always finish, which is
// what lets PAUSE and a graceful stop complete.
func (s *Server) admit(sess *session) (done bool, err error) {
	e := sess.ops
	if e == nil {
		return false, nil
	}
	start := time.Now()
	held := false
	defer func() {
		if held {
			s.ops.held.Add(-1)
			e.heldSince.Store(0)
		}
	}()
	for {
		gate := s.ops.gate.Load()
		e.mu.Lock()
		if e.mu.closed {
			e.mu.Unlock()
			<-e.gone
			return true, errClosedByTxlane
		}
		boundary := sess.open == nil && sess.TxStatus() == TxIdle
		switch {
		case gate.stopping && boundary:
			e.mu.closed = true
			close(e.gone)
			e.mu.Unlock()
			return true, shutdownError()
		case gate.paused && boundary && !gate.stopping:
			e.mu.Unlock()
			if !held {
				held = true
				s.ops.held.Add(1)
				e.heldSince.Store(start.UnixNano())
			}
			wait := s.live().QueryWaitTimeout - time.Since(start)
			if wait <= 0 {
				s.metrics.timeout("query_wait")
				sess.log.Info("request held by PAUSE past query_wait_timeout")
				return true, sess.refuseAtBoundary(&wire.Error{Severity: "ERROR", Code: CodeQueryCanceled,
					Message: "canceling request: query_wait_timeout reached while txlane is paused",
					Detail:  "An administrator ran PAUSE on the txlane admin console; requests wait until RESUME.",
					Hint:    "Retry later, or ask for RESUME."})
			}
			t := time.NewTimer(wait)
			select {
			case <-gate.changed:
			case <-t.C:
			case <-sess.primaryGone():
				t.Stop()
				return true, errors.New("primary connection lost while paused")
			}
			t.Stop()
			continue
		}
		e.mu.busy = true
		e.mu.Unlock()
		if held {
			// Only requests PAUSE held: txlane_pool_acquire_wait_seconds{lane="primary"}
			// is the time held, not an observation per request.
			s.metrics.observeAcquire("primary", time.Since(start))
		}
		return false, nil
	}
}

// dispatched marks the end of a request's dispatch (its answer may still be on
// the way from the primary).
func (s *Server) dispatched(sess *session) {
	e := sess.ops
	if e == nil {
		return
	}
	e.lastActive.Store(time.Now().UnixNano())
	e.mu.Lock()
	e.mu.busy = false
	e.mu.Unlock()
}

// requestDone is called by observeReadyForQuery, with sess.mu held, when the
// primary answers request req (nil for an unsolicited ReadyForQuery).
func (s *Server) requestDone(sess *session, req *request) {
	now := time.Now()
	if e := sess.ops; e != nil {
		e.lastActive.Store(now.UnixNano())
	}
	if req != nil && req.internal == nil && !req.sent.IsZero() {
		s.metrics.observeRequest("primary", now.Sub(req.sent))
	}
}

// refuseAtBoundary answers the request in s.cur with e while the client is
// idle outside a transaction: an ErrorResponse, then ReadyForQuery. A
// request refused before its Sync gets its ReadyForQuery at that Sync, as
// from a server that skips to it after an error.
func (s *session) refuseAtBoundary(e *wire.Error) error {
	s.out.mu.Lock()
	defer s.out.mu.Unlock()
	wire.WriteError(s.out.w, e)
	if s.cur.synced {
		wire.WriteRaw(s.out.w, wire.ReadyForQuery, []byte{byte(TxIdle)})
	} else {
		s.skipToSync = true
	}
	return s.out.w.Flush()
}

// closeIf closes the session of e with the error pe when it is not
// dispatching and cond holds, and reports whether it did. cond runs with
// e.mu held. force closes even a busy session (the end of a graceful stop).
func (s *Server) closeIf(e *clientEntry, pe *wire.Error, force bool, cond func() bool) bool {
	e.mu.Lock()
	if e.mu.closed || (e.mu.busy && !force) || !cond() {
		e.mu.Unlock()
		return false
	}
	e.mu.closed = true
	e.mu.Unlock()
	go func() {
		defer close(e.gone)
		sess := e.sess
		sess.log.Info("closing client", zap.String("code", pe.Code), zap.String("reason", pe.Message))
		// NOTE: a client that does not read must not hold the closer up.
		sess.client.SetWriteDeadline(time.Now().Add(time.Second))
		sess.fail(pe)
		sess.client.Close()
	}()
	return true
}

// idleOutsideTx reports whether sess is outside a transaction with nothing
// in flight.
func (sess *session) idleOutsideTx() bool {
	return sess.TxStatus() == TxIdle && sess.inFlight() == 0
}

// sweep enforces idle_in_transaction_timeout until stopOps.
func (s *Server) sweep() {
	defer close(s.ops.sweepDone)
	for {
		timeout := s.live().IdleInTransactionTimeout
		period := time.Second
		if timeout > 0 {
			period = min(max(timeout/10, 10*time.Millisecond), time.Second)
		}
		t := time.NewTimer(period)
		select {
		case <-s.ops.stopSweep:
			t.Stop()
			return
		case <-t.C:
		}
		if timeout <= 0 {
			continue
		}
		now := time.Now()
		for _, e := range s.entries() {
			closed := s.closeIf(e, &wire.Error{Severity: "FATAL", Code: CodeIdleInTransactionTimeout,
				Message: "terminating connection due to idle-in-transaction timeout",
				Detail:  "The client stayed idle inside a transaction longer than txlane's idle_in_transaction_timeout (" + timeout.String() + ")."},
				false, func() bool {
					st := e.sess.TxStatus()
					return (st == TxActive || st == TxFailed) && e.sess.inFlight() == 0 &&
						now.Sub(time.Unix(0, e.lastActive.Load())) > timeout
				})
			if closed {
				s.metrics.timeout("idle_in_transaction")
			}
		}
	}
}

// CodeIdleInTransactionTimeout is PostgreSQL's
// idle_in_transaction_session_timeout SQLSTATE.
const CodeIdleInTransactionTimeout = "25P03"
