package proxy

import (
	"fmt"
	"slices"
	"time"

	"github.com/txlane/txlane/proxy/wire"
)

// Check, then write. A write is checked when it arrives: with no
// transaction holding its unit it is sent, and runs on its own connection.
// A transaction that begins to hold the unit while that write still runs
// would see it commit while the unit is held (outside the transaction,
// which might roll back). So a write of units that no other connection
// held when it was checked, sent outside a transaction of its own (it holds
// nothing: a lone autocommit statement), marks its units as written in
// flight until its session's backend is idle again (releaseAll, after the
// ReadyForQuery that ends it); a transaction that would begin to hold one
// of them waits for that first (holdAfterWriters), at most
// policy.reroute_wait_timeout, and is refused (25L01) if the write still
// runs then. The mark and the hold are each taken under the registry's
// lock after looking for the other, so one of the two always sees the
// other: a write that finds a holder that came after its check is handled
// as any write of a held unit (escapeHolds).
//
// NOTE: this instance's clients only: with policy.shared_units a write
// on another instance and a transaction here (or the reverse) still race
// as before (see README, Known gaps).

// writeMark is a session's writes in flight outside a transaction.
type writeMark struct {
	units []string
	done  chan struct{} // closed when the writes have ended
}

// markWriting marks units as written in flight by s, unless another
// session holds one of them by now: then it returns that unit and its
// holds (oldest first), and marks nothing.
func (r *unitRegistry) markWriting(s *session, units []string) (string, []*unitHold) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, u := range units {
		var others []*unitHold
		for _, h := range r.holders[u] {
			if h.sess != s {
				others = append(others, h)
			}
		}
		if len(others) > 0 {
			return u, others
		}
	}
	m := r.writing[s]
	if m == nil {
		m = &writeMark{done: make(chan struct{})}
		r.writing[s] = m
		s.unitWriting.Store(true)
	}
	for _, u := range units {
		if !slices.Contains(m.units, u) {
			m.units = append(m.units, u)
		}
	}
	return "", nil
}

// unmark ends s's writes in flight.
func (r *unitRegistry) unmark(s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unmarkLocked(s)
}

// unmarkLocked ends s's writes in flight; r.mu must be held.
func (r *unitRegistry) unmarkLocked(s *session) {
	if m, ok := r.writing[s]; ok {
		close(m.done)
		delete(r.writing, s)
		s.unitWriting.Store(false)
	}
}

// holdAfterWriters makes s a holder of u once no other session writes u in
// flight, waiting at most until timeout fires. It returns the session whose
// write still ran then (nothing held), or nil.
func (r *unitRegistry) holdAfterWriters(u string, s *session, timeout func() <-chan time.Time) *session {
	for {
		r.mu.Lock()
		if r.holdsLocked(u, s) {
			r.mu.Unlock()
			return nil
		}
		var who *session
		var ch chan struct{}
		for o, m := range r.writing {
			if o != s && slices.Contains(m.units, u) {
				who, ch = o, m.done
				break
			}
		}
		if ch == nil {
			r.holdLocked(u, s)
			r.mu.Unlock()
			return nil
		}
		r.mu.Unlock()
		select {
		case <-ch:
		case <-timeout():
			return who
		}
	}
}

// takeHolds makes s a holder of units, after the writes of them in flight
// on other connections (see the file comment); a refusal of the current
// request's step when one still runs at the deadline.
func (s *session) takeHolds(units []string, step int) *rejection {
	var deadline <-chan time.Time
	timeout := func() <-chan time.Time {
		if deadline == nil {
			t := time.NewTimer(s.srv.live().RerouteWaitTimeout)
			deadline = t.C
		}
		return deadline
	}
	for _, u := range units {
		o := s.srv.units.holdAfterWriters(u, s, timeout)
		if o == nil {
			continue
		}
		pl := &s.plans.cur
		return &rejection{step: step, err: &wire.Error{Severity: "ERROR", Code: CodeEscapedWrite,
			Message: fmt.Sprintf("transaction cannot take unit %q: a write of it from client %d is still running", u, o.id),
			Detail: fmt.Sprintf("Client %d at %s (application_name %q) sent a write of unit %q before this transaction carried it, and it ran longer than policy.reroute_wait_timeout (%s). "+
				"Had this transaction taken the unit, that write would have committed outside it. Nothing of this request (%s) ran.",
				o.id, clientAddr(o.client), o.startup.Parameters["application_name"], u, s.srv.live().RerouteWaitTimeout, describeTables(pl.stmts(0))),
			Hint: "Retry once that write has ended, or raise policy.reroute_wait_timeout."}}
	}
	return nil
}
