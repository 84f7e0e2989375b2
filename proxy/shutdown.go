package proxy

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/txlane/txlane/proxy/wire"
)

// shutdownPoll is how often a graceful stop and PAUSE look at the sessions.
const shutdownPoll = 20 * time.Millisecond

// Shutdown stops the server gracefully: it stops accepting clients at once,
// closes admin console connections, and closes each session with FATAL
// 57P01 ("txlane is shutting down") as soon as it is idle outside a
// transaction with nothing in flight. A session inside a transaction keeps
// working until the transaction ends (COMMIT or ROLLBACK), and is closed
// then; a statement in flight is answered first.
//
// When ctx is done before every client has left, the remaining clients are
// closed at once (with the same FATAL between two messages, and their
// running statements cancelled; PostgreSQL rolls back their transactions)
// and Shutdown returns ctx.Err(). It returns nil when every client left in
// time. Either way the server is closed when Shutdown returns, as after
// Close.
func (s *Server) Shutdown(ctx context.Context) error {
	s.setGate(func(g *gateState) { g.stopping = true })
	s.mu.Lock()
	s.mu.closed = true
	for ln := range s.mu.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	s.closeAdmins(shutdownError())

	t := time.NewTicker(shutdownPoll)
	defer t.Stop()
	var err error
	logged := false
	for {
		for _, e := range s.entries() {
			s.closeIf(e, shutdownError(), false, e.sess.idleOutsideTx)
		}
		if s.clients.Load() == 0 {
			break
		}
		if !logged {
			logged = true
			s.log.Info("graceful stop: waiting for transactions and statements in flight",
				zap.Int64("clients", s.clients.Load()))
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-t.C:
			continue
		}
		break
	}
	if err != nil {
		left := s.entries()
		s.log.Warn("graceful stop cut short: closing the remaining clients", zap.Int("clients", len(left)), zap.Error(err))
		for _, e := range left {
			s.closeIf(e, shutdownError(), true, func() bool { return true })
		}
		// Give the closers a moment to tell their clients why.
		deadline := time.After(time.Second)
		for _, e := range left {
			select {
			case <-e.gone:
			case <-deadline:
			}
		}
	}
	s.Close()
	return err
}

// Pause holds new requests at dispatch (see admit) and waits until no
// session is inside a transaction or has a request in flight, or until ctx
// is done (then the pause stays in force and ctx.Err() is returned).
// Requests of a transaction in progress are not held, so that it can
// finish. During a graceful stop it returns errStopping at once.
func (s *Server) Pause(ctx context.Context) error {
	s.setGate(func(g *gateState) { g.paused = true })
	t := time.NewTicker(shutdownPoll)
	defer t.Stop()
	for {
		if s.ops.gate.Load().stopping {
			return errStopping
		}
		if s.quiet() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// errStopping is returned by Pause during a graceful stop.
var errStopping = errors.New("txlane is shutting down")

// Resume ends a pause: the held requests go on.
func (s *Server) Resume() {
	s.setGate(func(g *gateState) { g.paused = false })
}

// Paused reports whether the server is paused.
func (s *Server) Paused() bool { return s.ops.gate.Load().paused }

// quiet reports whether no session is dispatching, inside a transaction or
// waiting for an answer.
func (s *Server) quiet() bool {
	for _, e := range s.entries() {
		e.mu.Lock()
		busy := e.mu.busy && !e.mu.closed
		e.mu.Unlock()
		if busy || !e.sess.idleOutsideTx() {
			return false
		}
	}
	return true
}

// closeGrace is how long Close waits for its sessions to end once their
// clients are closed, before it cancels what they still run on a server and
// closes their server connections under them: a statement waiting for a
// lock would otherwise hold the stop (shutdown_timeout, a second signal)
// until it ends.
const closeGrace = time.Second

// waitSessions waits until every session has ended (Close), cutting those
// still running after closeGrace (abortServer).
func (s *Server) waitSessions() {
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-time.After(closeGrace):
	}
	left := s.entries()
	s.log.Warn("closing the server connections of sessions still running after their clients were closed", zap.Int("sessions", len(left)))
	for _, e := range left {
		go e.sess.abortServer()
	}
	<-done
}

// abortServer cancels the statement the session runs on a server (a
// CancelRequest, as the client's own would be forwarded) and closes its
// primary backend and the vector-lane connection of a read in progress,
// which ends the session's reads of them. Only Close calls it, once the
// session's client is closed: PostgreSQL rolls back what the closed
// connections had open.
func (sess *session) abortServer() {
	sess.cancelMu.Lock()
	running := sess.cancelTarget()
	sess.cancelMu.Unlock()
	if running != nil {
		ctx, cancel := context.WithTimeout(context.Background(), cancelTimeout)
		wire.SendCancel(ctx, *running)
		cancel()
	}
	if c := sess.lane.Load(); c != nil {
		c.conn.Close()
	}
	if p := sess.pc.Load(); p != nil {
		p.conn.Close()
	}
}
