package proxy

import (
	"context"
	"errors"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/proxy/wire"
)

// attach returns the client's primary connection with its write right
// (wsem) held. In transaction mode a client that holds none takes one from
// its pool first, waiting up to query_wait_timeout (then FATAL 08P01, as
// PgBouncer closes such a client).
func (s *session) attach() (*primaryConn, error) {
	for {
		if p := s.pc.Load(); p != nil {
			p.acquire()
			if s.pc.Load() == p {
				return p, nil
			}
			// Given back to the pool while we waited: not ours to write.
			p.release()
			continue
		}
		if s.pool == nil {
			return nil, errPrimaryGone
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.srv.live().QueryWaitTimeout)
		p, err := s.pool.get(ctx)
		cancel()
		if err != nil {
			s.srv.metrics.timeout("query_wait")
			return nil, &wire.Error{Severity: "FATAL", Code: CodeProtocolViolation,
				Message: "query_wait_timeout: no server connection became free in time",
				Detail:  "pool_mode is transaction and every server connection of this pool stayed busy (" + err.Error() + ").",
				Hint:    "Raise pool_size or query_wait_timeout in txlane's configuration."}
		}
		p.setOwner(s)
		p.acquire()
		s.pc.Store(p)
		s.mu.Lock()
		s.mu.running = &p.target
		s.mu.Unlock()
		return p, nil
	}
}

// query runs sql on the client's primary connection as txlane's own query
// (see primaryConn.query).
func (s *session) query(sql string) (*internalQuery, error) {
	p, err := s.attach()
	if err != nil {
		return nil, err
	}
	return p.query(sql)
}

// primaryGone returns a channel closed when the client's primary
// connection fails (never, while it holds none).
func (s *session) primaryGone() <-chan struct{} {
	if p := s.pc.Load(); p != nil {
		return p.gone
	}
	return nil
}

// idle is called (primaryOwner) when p is idle outside a transaction block
// with nothing in flight. In transaction mode the client gives p back to its
// pool, unless it holds units of work or state that cannot move to another
// backend pins it. What pins it is asked of the server (pinCheckSQL) when a
// statement since the last answer may have changed it (mayPin).
func (s *session) idle(p *primaryConn) {
	if s.pool == nil || s.pc.Load() != p {
		return
	}
	select {
	case p.wsem <- struct{}{}:
	default:
		return // the client is sending a request: not idle
	}
	if p.inFlight() > 0 || p.TxStatus() != TxIdle || s.unitsHeld.Load() > 0 || s.pc.Load() != p {
		p.release()
		return
	}
	if gen := s.dirtyGen.Load(); gen != s.cleanGen.Load() {
		q := &internalQuery{done: make(chan struct{}), then: func(q *internalQuery) { s.pinChecked(q, gen) }}
		if err := p.send(q, pinCheckSQL(s.startup.Parameters["user"])); err != nil {
			s.log.Debug("pin check not sent", zap.Error(err))
		}
		return // its ReadyForQuery calls idle again
	}
	if r := s.pin.Load(); r != nil && *r != "" {
		p.release()
		return
	}
	s.detach(p)
}

// detach gives p, whose wsem the caller holds, back to the pool (or closes
// it when it never joined the pool: a login's backend the full pool had no
// room for).
func (s *session) detach(p *primaryConn) {
	if !s.pc.CompareAndSwap(p, nil) {
		p.release()
		return
	}
	s.mu.Lock()
	s.mu.running = nil
	s.mu.Unlock()
	p.setOwner(&idleOwner{c: p})
	p.release()
	if p.pooled.pool == nil {
		p.conn.Close()
		return
	}
	p.pooled.pool.put(p)
}

// leavePrimary ends the client's use of its primary connection when the
// client leaves: a backend idle outside a transaction with nothing pinning
// it goes back to the pool (transaction mode); any other is closed, its
// running statement cancelled first so that its locks go now.
func (s *session) leavePrimary(err error) {
	p := s.pc.Load()
	if p == nil {
		return
	}
	if s.pool != nil && p.pooled.pool != nil && !errors.Is(err, errPrimaryGone) {
		s.srv.units.releaseAll(s)
		select {
		case p.wsem <- struct{}{}:
			r := s.pin.Load()
			if p.usable() && p.inFlight() == 0 && p.TxStatus() == TxIdle && s.dirtyGen.Load() == s.cleanGen.Load() && (r == nil || *r == "") {
				s.detach(p)
				return
			}
			p.release()
		default:
		}
	}
	if p.inFlight() > 0 && !errors.Is(err, errClientTerminated) {
		// NOTE: closing the socket alone does not stop a running statement
		// (the server notices only when it next writes); cancel it so its
		// locks go now, not when it finishes.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if cerr := wire.SendCancel(ctx, p.target); cerr != nil {
			s.log.Debug("cancel on disconnect failed", zap.Error(cerr))
		}
		cancel()
	}
	p.conn.Close()
	<-p.gone
	if pl := p.pooled.pool; pl != nil {
		pl.drop(p)
	}
}

// mayPin reports whether st may leave state in the server session that
// another backend would not have: temporary relations, session advisory
// locks, LISTEN, cursors WITH HOLD, SQL-level prepared statements, session
// settings, a role, a loaded library. Plain reads and writes, transaction
// control and SET LOCAL cannot.
func mayPin(st *policy.Statement) bool {
	const flags = policy.FlagWritingFunction | policy.FlagWritesUnknown | policy.FlagCursor | policy.FlagListen |
		policy.FlagSQLPrepare | policy.FlagMayChangeSession | policy.FlagUnproven
	pin := false
	eachPart(st, func(p *policy.Statement) {
		if p.Flags&flags != 0 || p.Discard != policy.DiscardNone || len(p.Temp) > 0 {
			pin = true
		}
		switch p.Class {
		case policy.Read, policy.LockingRead, policy.Write, policy.TxControl:
		case policy.Session:
			for _, set := range p.Settings {
				pin = pin || !set.Local
			}
		default:
			pin = true
		}
	})
	return pin
}

// pinCheckSQL asks the server what in the session would not follow the
// client to another backend, one boolean per reason in pinReasons' order.
func pinCheckSQL(user string) string {
	return `SELECT pg_catalog.pg_my_temp_schema() <> 0 AND EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema()), ` +
		`EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE pid = pg_catalog.pg_backend_pid() AND locktype = 'advisory'), ` +
		`EXISTS (SELECT 1 FROM pg_catalog.pg_listening_channels()), ` +
		`EXISTS (SELECT 1 FROM pg_catalog.pg_cursors WHERE is_holdable), ` +
		`EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_statements WHERE from_sql), ` +
		`EXISTS (SELECT 1 FROM pg_catalog.pg_settings WHERE source = 'session') OR pg_catalog.current_setting('role') <> 'none' OR session_user <> ` + quoteLiteral(user)
}

// pinReasons name, in pinCheckSQL's column order, what keeps a client on
// its backend in transaction mode (SHOW CLIENTS pinned, and the pins metric).
var pinReasons = []string{"temp_table", "advisory_lock", "listen", "hold_cursor", "sql_prepare", "set"}

// pinChecked records the server's answer to pinCheckSQL for the statements
// up to gen (in relay, before the connection is looked at again).
func (s *session) pinChecked(q *internalQuery, gen uint64) {
	var why []string
	switch {
	case q.err != nil || len(q.rows) != 1:
		// Unknown: stay pinned (fail safe).
		why = append(why, "unknown")
	default:
		for i, v := range q.rows[0] {
			if i < len(pinReasons) && string(v) == "t" {
				why = append(why, pinReasons[i])
			}
		}
	}
	if s.loaded.Load() {
		why = append(why, "load")
	}
	r := strings.Join(why, ",")
	if old := s.pin.Swap(&r); r != "" && (old == nil || *old != r) {
		for _, w := range why {
			s.srv.metrics.pinned(w)
		}
	}
	s.cleanGen.Store(gen)
}

// pinnedBy is what pins the client to its backend ("" for nothing).
func (s *session) pinnedBy() string {
	if r := s.pin.Load(); r != nil {
		return *r
	}
	return ""
}
