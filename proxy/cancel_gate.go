package proxy

import (
	"time"

	"github.com/txlane/txlane/proxy/wire"
)

// Which cancel requests reach a backend. PostgreSQL interrupts whatever a
// backend runs when a CancelRequest with its key arrives, and ignores one
// for a backend that runs nothing (protocol "Canceling Requests in
// Progress"; the cancel may still hit the next statement, a race the
// protocol leaves to the client). A backend txlane runs also runs requests
// that are not the client's: txlane's own queries, and writes of other
// clients rerouted into its transaction (escape: reroute). A client's
// cancel must not interrupt those: the other client's write would fail, and
// with it the transaction it joined. So a client's cancel reaches a primary
// backend only while that client's own request is at the head of the
// backend's queue (the one the server runs); otherwise it is dropped, as
// PostgreSQL drops a cancel for an idle session. A request of the client's
// queued behind another one is not running yet: PostgreSQL would not cancel
// it either.

// guestRun is a request of a session rerouted onto another session's
// backend (host): while it runs there, the session's cancels go to host,
// and only while req heads host's queue.
type guestRun struct {
	host *primaryConn
	req  *request
}

// cancelTarget decides where a CancelRequest of the session goes: the
// backend returned, or nowhere (nil). Called by forwardCancel, holding
// cancelMu. With no backend running the client's request, a wait for one
// ends instead (a pooled backend, txwait.go; a holder's, reroute).
func (s *session) cancelTarget() *wire.CancelTarget {
	s.mu.Lock()
	running, g := s.mu.running, s.mu.guest
	s.mu.Unlock()
	switch {
	case running == nil:
		s.wait.cancelWait()
		return nil
	case g != nil && running == &g.host.target:
		if g.host.guestCancel(g.req) {
			return running
		}
		return nil
	}
	if p := s.pc.Load(); p != nil && running == &p.target && !p.ownerRuns() {
		return nil
	}
	// The client's own request, on its primary or a vector-lane connection
	// (which runs nothing else while lent to it).
	return running
}

// ownerRuns reports whether the request at the head of p's queue is its
// owner's own (not a guest's, not txlane's).
func (p *primaryConn) ownerRuns() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.mu.pending) == 0 {
		return false
	}
	r := p.mu.pending[0]
	return r.guest == nil && r.internal == nil
}

// guestCancel decides a cancel of the client whose request req is queued
// for p (runWhenIdle): true while req heads p's queue (the server runs it).
// Before req is queued, the cancel ends its wait instead: req will not be
// sent (pushGuest), and its client gets ERROR 57014. After its answer, the
// cancel is dropped.
func (p *primaryConn) guestCancel(req *request) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	g := req.guest
	switch {
	case len(p.mu.pending) > 0 && p.mu.pending[0] == req:
		return true
	case !g.queued && !g.canceled:
		g.canceled = true
		if g.onCancel != nil {
			g.onCancel()
		}
	}
	return false
}

// pushGuest queues req, a guest's request about to be written (behind
// req.guest.pre, txlane's own request before it), unless its client
// canceled it first (guestCancel decides under the same lock).
func (p *primaryConn) pushGuest(req *request) bool {
	p.lastRequest.Store(time.Now().UnixNano())
	p.mu.Lock()
	defer p.mu.Unlock()
	if req.guest.canceled {
		return false
	}
	req.guest.queued = true
	if pre := req.guest.pre; pre != nil {
		p.mu.pending = append(p.mu.pending, pre)
	}
	p.mu.pending = append(p.mu.pending, req)
	return true
}

// guestCanceled reports whether req's client canceled it before it was
// queued.
func (p *primaryConn) guestCanceled(req *request) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return req.guest.canceled
}
